"""The closed choices of a deployment, defined once: the stack config, the sizing core and the CLI all use these.

Each ``Literal`` is the set vLLM (or this project) accepts; the defaults are vLLM's own, so an omitted value
means what it means to vLLM. ``typing.get_args`` turns a choice into a CLI ``choices=`` list.
"""

from typing import Literal

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
"""vLLM --dtype: ``auto`` keeps the checkpoint's 16-bit type."""
DEFAULT_DTYPE: Dtype = "auto"

Quantization = Literal["none", "fp8", "int8", "int4", "awq", "gptq", "mxfp4"]
"""Weight quantization as the stack config names it; omitted (None) means "the checkpoint's own"."""

KvCacheDtype = Literal["auto", "fp8"]
"""vLLM --kv-cache-dtype: ``fp8`` halves the bytes per cached token."""
DEFAULT_KV_CACHE_DTYPE: KvCacheDtype = "auto"

# vLLM's --gpu-memory-utilization default (vllm/config/cache.py, CacheConfig.gpu_memory_utilization).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
