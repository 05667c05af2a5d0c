"""VRAM sizing with vLLM's own memory arithmetic: weights, activation peak, KV-cache blocks, concurrency.

Per GPU, as vLLM works it out (each term cites its source in gpu_inference/data/vllm_calibration.yaml):

    budget       = total_gpu_memory × gpu_memory_utilization
    available_kv = budget − weights − activation_peak − non_torch (− cuda_graph from v0.21)
    num_blocks   = available_kv // (page_bytes × layers_per_kv_group), then min() over TP ranks and PP stages
    tokens       = num_blocks × block_size           (hybrid models: num_blocks // groups × block_size)

Weights and KV pages are computed exactly from the architecture; activation peak, non-torch memory and
CUDA-graph memory are empirical, per vLLM version range, from ``data/vllm_calibration.yaml``.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.constants import DATA_DIR, KV_BLOCK_SIZE, VLLM_VERSION
from gpu_inference.model_arch import QUANT_BYTES_PER_PARAM, ModelArchitecture
from gpu_inference.profile_run import ProfileRunTerms, mm_dummy_batch_bytes, profile_peak
from gpu_inference.vocabulary import (
    DEFAULT_DTYPE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_KV_CACHE_DTYPE,
    Dtype,
    KvCacheDtype,
    Quantization,
)

GiB = 2**30

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Rule-of-thumb multiplier, quoted from the seeds (001): "weight memory in gigabytes is roughly the parameter
# count in billions times the bytes per parameter ... Add 20 to 30 percent on top for the KV cache ... and
# runtime overhead." We use the low end.
RULE_OF_THUMB_OVERHEAD = 1.2

RuntimeQuant = Quantization  # the config's choices (gpu_inference/vocabulary.py)


# ---- version-dependent calibration ---------------------------------------------------------------


def parse_version(version: str) -> tuple[int, int, int]:
    """'0.19.0' / 'v0.8.5.post1' / '0.10' -> (0, 19, 0)."""
    text = version.strip().lstrip("vV~").split("+")[0]
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if not piece.isdigit() else piece
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    if not parts:
        raise ValueError(f"not a vLLM version: {version!r}")
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


class ActivationTerms(BaseModel):
    """Peak activation (torch_peak_increase) = intercept + Σ coefficient × feature, in GiB.

    Features: logits_gib = min(max_num_seqs, max_num_batched_tokens) × vocab × 4 B (the fp32 logits of the
    dummy sampler run); hidden_gib = max_num_batched_tokens × hidden_size × dtype bytes; mlp_gib =
    max_num_batched_tokens × (hidden_size + intermediate/TP) × dtype bytes (V0's profiled forward pass);
    moe_gib = max_num_batched_tokens × experts_per_token × (2·moe_intermediate/TP + hidden) × dtype bytes.
    """

    model_config = ConfigDict(extra="forbid")
    intercept_gib: float = 0.0
    per_logits_gib: float = 0.0
    per_hidden_gib: float = 0.0
    per_mlp_gib: float = 0.0
    per_moe_gib: float = 0.0
    pp_non_last_stage_extra_gib: float = 0.0
    """Non-last pipeline stages run no sampler; they show a fixed extra (PP intermediate buffers)."""
    profile_run: ProfileRunTerms | None = None
    """Set: the peak is computed term by term (profile_run.py) and the linear terms above are unused."""


class NonTorchTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")
    single_gpu_gib: float
    pipeline_stage_gib: float
    tensor_parallel_gib: float
    """TP≥2: NCCL and custom all-reduce buffers."""
    tensor_parallel_per_rank_gib: float = 0.0
    tensor_parallel_pcie_gib: float | None = None
    """TP over PCIe-only GPUs (no NVLink): vLLM skips the custom all-reduce buffers beyond two GPUs."""


class CudaGraphTerms(BaseModel):
    """CUDA-graph pool ≈ base + per_layer × layers_on_stage / sqrt(TP)."""

    model_config = ConfigDict(extra="forbid")
    base_gib: float
    per_layer_gib: float
    subtract_from_kv_budget: bool


class VersionCalibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    min_version: str
    max_version: str | None = None
    """Exclusive upper bound; None = open ended."""
    engine: Literal["v0", "v1"]
    hybrid_kv_cache_manager: bool
    """Sliding-window / chunked-local layers keep only their window (else every layer is sized as full)."""
    concurrency_formula: Literal["v0_tokens", "v1_tokens", "v1_blocks"]
    kv_check: Literal["v0_tokens", "v1_bytes"]
    large_gpu_max_num_seqs: int
    large_gpu_max_num_batched_tokens: int
    small_gpu_max_num_seqs: int
    small_gpu_max_num_batched_tokens: int
    v0_chunked_prefill_above_len: int | None = None
    activation: ActivationTerms
    non_torch: NonTorchTerms
    cuda_graph: CudaGraphTerms
    fit_features: list[str] = Field(default_factory=list)
    """Activation constants bench/sizing_accuracy.py --fit solves for in this range (ActivationTerms fields, or
    ProfileRunTerms fields where the range models the profile run)."""
    fit_non_torch: bool = False
    """Non-torch constants are medians / a TP line of this range's logged non-torch memory."""
    excluded_from_fit: dict[int, str] = Field(default_factory=dict)
    """Calibration rows left out of the fit, with the reason (inconsistent or non-CUDA logs)."""
    note: str = ""

    def contains(self, version: tuple[int, int, int]) -> bool:
        if version < parse_version(self.min_version):
            return False
        return self.max_version is None or version < parse_version(self.max_version)


@functools.cache
def load_calibration(path: Path = DATA_DIR / "vllm_calibration.yaml") -> tuple[VersionCalibration, ...]:
    raw = yaml.safe_load(Path(path).read_text())
    return tuple(VersionCalibration.model_validate(entry) for entry in raw["ranges"])


@functools.cache
def rocm_non_torch_gib(path: Path = DATA_DIR / "vllm_calibration.yaml") -> float:
    """Least non-torch memory per GPU on ROCm (AMD GPUs), from the one logged ROCm startup (see the yaml)."""
    return float(yaml.safe_load(Path(path).read_text())["rocm_non_torch_gib"])


def calibration_for(vllm_version: str, engine: Literal["v0", "v1"] | None = None) -> VersionCalibration:
    """The calibration range holding this version (and engine, for the 0.7–0.10 years with both)."""
    version = parse_version(vllm_version)
    matches = [c for c in load_calibration() if c.contains(version)]
    # V1 became the default engine in v0.8; V0 was removed in v0.11
    wanted = engine or ("v1" if version >= (0, 8, 0) else "v0")
    matches = [c for c in matches if c.engine == wanted] or matches
    if not matches:
        raise ValueError(f"no vLLM calibration covers version {vllm_version}")
    return matches[0]


# ---- request / result ------------------------------------------------------------------------------


class SizingRequest(BaseModel):
    """One deployment to size: a model on one GPU type with vLLM's serving flags."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    model: ModelArchitecture
    """The architecture (catalog entry or a fine-tune's config.json)."""
    gpu_memory_gib: float = Field(gt=0)
    """Usable total per GPU as CUDA reports it (torch.cuda.mem_get_info total), GiB."""
    gpu_name: str | None = None
    """GPU model name; decides vLLM's batch defaults (A100 vs others) and NVLink-less all-reduce."""
    gpu_supports_fp8: bool = True
    """False on pre-Ada GPUs: fp8 KV cache and runtime fp8 quantization are refused."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """vLLM --tensor-parallel-size."""
    pipeline_parallel_size: int = Field(default=1, ge=1)
    """vLLM --pipeline-parallel-size."""
    max_model_len: int | None = Field(default=None, gt=0)
    """None -> the model's max_position_embeddings (vLLM's default)."""
    gpu_memory_utilization: float = Field(default=DEFAULT_GPU_MEMORY_UTILIZATION, gt=0, le=1)
    """Fraction of each GPU's total memory vLLM may use (weights + activation + non-torch + KV)."""
    dtype: Dtype = DEFAULT_DTYPE
    """vLLM --dtype; auto keeps the checkpoint's 16-bit type."""
    quantization: RuntimeQuant | None = None
    """None -> the checkpoint's own; fp8 quantizes a 16-bit checkpoint at load; awq/gptq/int4/int8 size the
    model's quantized release."""
    kv_cache_dtype: KvCacheDtype = DEFAULT_KV_CACHE_DTYPE
    """vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    max_num_seqs: int | None = Field(default=None, gt=0)
    """None -> vLLM's default for this GPU and version (1024 on ≥70 GiB non-A100 GPUs in V1, else 256)."""
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    """None -> vLLM's default (V1 API server: 8192 on large GPUs, else 2048; V0: max(max_model_len, 2048))."""
    vllm_version: str = VLLM_VERSION
    """vLLM release the deployment runs; picks the calibration range."""
    engine: Literal["v0", "v1"] | None = None
    """None -> the version's default engine (V1 from 0.8); set "v0" for VLLM_USE_V1=0 runs."""
    block_size: int = Field(default=KV_BLOCK_SIZE, gt=0)
    """Tokens per KV-cache block (vLLM --block-size)."""
    gpu_free_memory_gib: float | None = Field(default=None, ge=0)
    """Free memory per GPU when vLLM starts (other processes' use subtracted); None -> the whole GPU is free."""
    gpu_vendor: Literal["nvidia", "amd"] = "nvidia"
    """The GPU's vendor (catalog ``vendor``): on AMD, vLLM runs on ROCm, whose non-torch memory is larger."""
    gpu_multiprocessors: int | None = Field(default=None, gt=0)
    """Streaming multiprocessors per GPU (catalog ``multiprocessors``); None -> the H100's 132. Sizes the
    sampler's top-k/top-p buffer only."""


class GpuSizing(BaseModel):
    """One GPU (TP rank of one PP stage)."""

    rank: int
    stage: int
    num_layers: int
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    budget_gib: float
    kv_cache_gib: float
    kv_cache_tokens: int
    kv_cache_blocks: int
    max_concurrency: float
    fits: bool
    problems: list[str] = Field(default_factory=list)


class SizingResult(BaseModel):
    model_id: str
    gpu_name: str | None
    gpu_memory_gib: float
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    dtype: str
    quantization: str
    kv_cache_dtype: str
    gpu_memory_utilization: float
    vllm_version: str
    engine: str
    max_num_seqs: int
    max_num_batched_tokens: int
    calibration_range: str
    gpus: list[GpuSizing]
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_cache_gib: float
    kv_cache_tokens: int
    kv_cache_blocks: int
    kv_cache_bytes_per_token: int
    """Per GPU, all layers of the binding stage, as if all were full attention."""
    max_concurrency: float
    fits: bool
    problems: list[str]
    max_model_len_that_fits: int | None
    rule_of_thumb_gib: float
    rule_of_thumb_note: str
    physical_peak_gib: float
    warnings: list[str]

    def summary(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"{self.model_id} on {self.tensor_parallel_size * self.pipeline_parallel_size}× "
            f"{self.gpu_name or f'{self.gpu_memory_gib:g} GiB GPU'} (vLLM {self.vllm_version}): {verdict}; "
            f"weights {self.weights_gib:.2f} GiB/GPU, KV {self.kv_cache_gib:.2f} GiB = "
            f"{self.kv_cache_tokens:,} tokens, {self.max_concurrency:.2f}× at {self.max_model_len:,} tokens"
        )


# ---- weights ---------------------------------------------------------------------------------------


def _linear_bytes(model: ModelArchitecture, quant: str, dtype_bytes: int) -> tuple[float, float]:
    """(bytes per param of dense linear layers, bytes per param of MoE experts)."""
    if quant == "none":
        return dtype_bytes, dtype_bytes
    ckpt = model.quantization
    if quant == ckpt.method:
        per = _grouped_bytes(quant, ckpt.group_size)
        return (dtype_bytes, per) if ckpt.experts_only else (per, per)
    # runtime quantization of a 16-bit checkpoint
    if quant == "mxfp4":
        mxfp4 = QUANT_BYTES_PER_PARAM["mxfp4"]
        return (dtype_bytes, mxfp4) if model.moe is not None else (mxfp4, mxfp4)
    if quant in ("fp8", "int8"):
        return 1.0, 1.0
    four_bit = _grouped_bytes("awq", 128)
    return four_bit, four_bit


def linear_bytes_per_param(model: ModelArchitecture, quant: str, dtype_bytes: int) -> tuple[float, float]:
    """Stored bytes per parameter of (dense linear layers, MoE experts) for a resolved quantization
    (``SizingResult.quantization``); the capacity model reads the weights at these sizes."""
    return _linear_bytes(model, quant, dtype_bytes)


def _grouped_bytes(method: str, group_size: int) -> float:
    if method in ("awq", "gptq"):
        return 0.5 + 2.5 / group_size  # 4-bit weights + fp16 scale + 4-bit zero point per group
    return QUANT_BYTES_PER_PARAM[method]


def pipeline_layer_counts(num_layers: int, pipeline_parallel_size: int) -> list[int]:
    """vLLM's get_pp_indices: even split, remainder layers go to the stages just before the last."""
    base = num_layers // pipeline_parallel_size
    parts = [base] * pipeline_parallel_size
    for i in range(2, num_layers % pipeline_parallel_size + 2):
        parts[-i] += 1
    return parts


# PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp): requests above 10 MiB (kMinLargeAlloc)
# get a fresh segment rounded up to 2 MiB (kRoundLarge), and a block is split only when more than 1 MiB
# (kSmallSize) would remain, so up to 1 MiB per large tensor is counted as allocated without being asked for.
# vLLM's "Model loading took" is torch.cuda.memory_allocated() (platforms/cuda.py get_current_memory_usage),
# so it includes this: Qwen2.5-72B TP2's down_proj (231 MiB -> 232) is 80 MiB over 80 layers (log 67.80 GiB).
_MIB = 2**20


def allocator_rounding_bytes(nbytes: float) -> float:
    """Bytes the caching allocator counts beyond ``nbytes`` for one tensor allocated into a fresh segment."""
    size = math.ceil(nbytes / 512) * 512
    if size < 10 * _MIB:
        return size - nbytes  # small pool, or carved from a 20 MiB segment that is split
    remaining = math.ceil(size / (2 * _MIB)) * 2 * _MIB - size
    return size - nbytes + (remaining if remaining <= _MIB else 0)


def _layer_tensor_bytes(model: ModelArchitecture, layer: int, tp: int, dense_bytes: float, expert_bytes: float,
                        dtype_bytes: int, expert_pad: int) -> list[float]:
    """The large per-rank parameter tensors of one layer as vLLM allocates them (fused qkv_proj and
    gate_up_proj: QKVParallelLinear / MergedColumnParallelLinear; FusedMoE's w13_weight and w2_weight)."""
    h = model.hidden_size
    tensors: list[float] = []
    if model.is_mla:
        assert model.kv_lora_rank is not None and model.qk_rope_head_dim is not None
        nope, v_dim = model.qk_nope_head_dim or 128, model.v_head_dim or 128
        heads = model.num_attention_heads / tp
        if model.q_lora_rank:
            tensors += [h * model.q_lora_rank, model.q_lora_rank * heads * (nope + model.qk_rope_head_dim)]
        else:
            tensors.append(h * heads * (nope + model.qk_rope_head_dim))
        tensors += [h * (model.kv_lora_rank + model.qk_rope_head_dim), model.kv_lora_rank * heads * (nope + v_dim),
                    heads * v_dim * h]
    else:
        q = model.num_attention_heads * model.head_dim / tp
        tensors += [(q + 2 * model.kv_heads_per_gpu(tp) * model.head_dim) * h, q * h]
    tensors = [t * dense_bytes for t in tensors]
    moe = model.moe
    if moe is not None and model.is_moe_layer(layer):
        per_rank = math.ceil(moe.moe_intermediate_size / tp / expert_pad) * expert_pad
        tensors += [moe.num_experts * 2 * per_rank * h * expert_bytes, moe.num_experts * per_rank * h * expert_bytes]
        widths = [moe.shared_expert_intermediate_size] if moe.shared_expert_intermediate_size else []
    elif moe is not None:
        widths = [moe.dense_intermediate_size or model.intermediate_size]
    else:
        widths = [model.intermediate_size]
    for width in widths:
        per_rank_width = width / tp
        first = (2 if model.mlp_gated else 1) * per_rank_width * h
        tensors += [first * dense_bytes, per_rank_width * h * dense_bytes]
    return tensors


def stage_weights_bytes(
    model: ModelArchitecture,
    *,
    tensor_parallel_size: int,
    first_layer: int,
    num_layers: int,
    is_first_stage: bool,
    is_last_stage: bool,
    quant: str,
    dtype_bytes: int,
) -> float:
    """Bytes of weights one TP rank of one PP stage loads (vLLM's "Model loading took X GiB")."""
    tp = tensor_parallel_size
    dense_bytes, expert_bytes = _linear_bytes(model, quant, dtype_bytes)
    # mxfp4 MoE kernels on Hopper pad each rank's expert intermediate to a multiple of 256
    # (reproduces gpt-oss-20b 13.47 GiB and gpt-oss-120b 64.38 GiB).
    expert_pad = 256 if quant == "mxfp4" else 1
    total = 0.0
    for layer in range(first_layer, first_layer + num_layers):
        total += sum(allocator_rounding_bytes(t) for t in _layer_tensor_bytes(
            model, layer, tp, dense_bytes, expert_bytes, dtype_bytes, expert_pad))
        total += model.attention_params_per_layer(tp) * dense_bytes
        moe = model.moe
        if moe is not None and model.is_moe_layer(layer):
            router = model.hidden_size * moe.num_experts  # replicated, kept in 16-bit
            shared = model.dense_mlp_params(moe.shared_expert_intermediate_size, tp)
            total += router * dtype_bytes + shared * dense_bytes
            total += model.expert_params_per_layer(tp, expert_pad) * expert_bytes
        else:
            total += model.non_expert_mlp_params_per_layer(layer, tp) * dense_bytes
        total += 2 * model.hidden_size * dtype_bytes  # replicated norms
    embedding = model.padded_vocab_size * model.hidden_size / tp * dtype_bytes  # 16-bit even when quantized
    embedding += allocator_rounding_bytes(embedding)
    if is_first_stage:
        # vision towers shard their linears over TP like the text model (siglip.py, pixtral.py, moonvit.py,
        # mllama4.py Llama4VisionMLP: ColumnParallelLinear/RowParallelLinear unless mm_encoder_tp_mode="data")
        total += embedding + model.vision_params_b * 1e9 * dtype_bytes / tp
    if is_last_stage:
        total += model.hidden_size * dtype_bytes
        # tied embeddings share one tensor, except across PP where the last stage needs its own lm_head
        if not model.tie_word_embeddings or not is_first_stage:
            total += embedding
    # rotary cos/sin cache: max_position × rotary dim in the model dtype (32 MiB for Llama-3.1 bf16)
    # (RotaryEmbedding.__init__ registers cos_sin_cache in the model dtype; scaled ropes cache more rows)
    rotary_dim = model.qk_rope_head_dim if model.is_mla and model.qk_rope_head_dim else model.head_dim
    rotary_rows = model.rotary_cache_positions or model.max_position_embeddings
    total += rotary_rows * rotary_dim * dtype_bytes * (1 if num_layers else 0)
    return total


# ---- KV cache layout ------------------------------------------------------------------------------


class _KvLayout(BaseModel):
    """KV groups vLLM builds for one stage (kv_cache_utils._get_kv_cache_groups_uniform_page_size)."""

    page_bytes: int
    layers_per_block: int
    """Layers whose pages make up one pool block on this stage (group size; all layers if uniform)."""
    group_kinds: list[str]
    """One entry per KV group: "full", "sliding" or "chunked"."""
    stage_layer_kinds: list[str]


def _kv_layout(
    model: ModelArchitecture,
    stage_kinds: list[str],
    all_kinds: list[str],
    *,
    tp: int,
    kv_bytes: int,
    block_size: int,
) -> _KvLayout:
    page = block_size * model.kv_bytes_per_token_per_layer(kv_bytes, tp)
    counts = {k: all_kinds.count(k) for k in dict.fromkeys(all_kinds)}
    if len(counts) == 1:
        kind = next(iter(counts))
        return _KvLayout(page_bytes=page, layers_per_block=max(len(stage_kinds), 1), group_kinds=[kind],
                         stage_layer_kinds=stage_kinds)
    min_layers, max_layers = min(counts.values()), max(counts.values())
    group_size = max_layers if max_layers < min_layers * 1.5 else min_layers
    groups: list[str] = []
    per_block = 0
    for kind, count in counts.items():
        num_groups = math.ceil(count / group_size)
        groups += [kind] * num_groups
        # layers[i::num_groups] striding spreads a stage's layers of this kind over the kind's groups
        per_block = max(per_block, math.ceil(stage_kinds.count(kind) / num_groups))
    return _KvLayout(page_bytes=page, layers_per_block=max(per_block, 1), group_kinds=groups,
                     stage_layer_kinds=stage_kinds)


def _blocks_per_request(kind: str, model: ModelArchitecture, max_model_len: int, block_size: int,
                        max_num_batched_tokens: int) -> int:
    """Blocks one max-length request needs in one group (KVCacheSpec.max_memory_usage_bytes / page)."""
    if kind == "sliding":
        assert model.sliding_window is not None
        span = min(model.sliding_window - 1 + max_num_batched_tokens, max_model_len)
        return math.ceil(span / block_size) + 1
    if kind == "chunked":
        assert model.attention_chunk_size is not None
        span = min(model.attention_chunk_size - 1 + max_num_batched_tokens, max_model_len)
        return math.ceil(span / block_size)
    return math.ceil(max_model_len / block_size)


def _needed_bytes_one_request(layout: _KvLayout, model: ModelArchitecture, max_model_len: int,
                              block_size: int, max_num_batched_tokens: int, v0_full: bool) -> int:
    """check_enough_kv_cache_memory: Σ over this stage's layers of max_memory_usage_bytes."""
    total = 0
    for kind in layout.stage_layer_kinds:
        k = "full" if v0_full else kind
        total += _blocks_per_request(k, model, max_model_len, block_size, max_num_batched_tokens)
    return total * layout.page_bytes


# ---- the sizing ------------------------------------------------------------------------------------


def _resolve_dtype(req: SizingRequest) -> str:
    if req.dtype != "auto":
        return req.dtype
    return "bfloat16"  # vLLM "auto" keeps the checkpoint's bf16/fp16; both are 2 bytes


# Runtime --quantization values that name the same storage as a checkpoint's quantization_config.
_SAME_METHOD = {"fp8": {"fp8", "compressed-tensors-fp8"}, "int8": {"compressed-tensors-w8a8"},
                "int4": {"awq", "gptq", "compressed-tensors-w4a16"}}


def _resolve_quant(req: SizingRequest) -> str:
    """The storage the weights will have: the checkpoint's own unless a runtime quantization applies."""
    ckpt = req.model.quantization.method
    wanted = req.quantization
    if wanted is None or wanted == "none" or ckpt != "none":
        return ckpt  # a pre-quantized checkpoint is served as stored (mismatches are refused)
    return wanted


def _quantization_problems(req: SizingRequest) -> tuple[list[str], list[str]]:
    """vLLM's quantization checks: (refusals, warnings)."""
    ckpt = req.model.quantization.method
    wanted = req.quantization
    problems: list[str] = []
    warnings: list[str] = []
    if wanted is None or wanted == ckpt or ckpt in _SAME_METHOD.get(wanted, set()):
        return problems, warnings
    if ckpt != "none" and wanted == "none":
        warnings.append(f"{req.model.id} is a {ckpt} checkpoint; vLLM serves it as stored, sized as {ckpt}.")
    elif ckpt != "none":
        problems.append(
            f"Quantization method in the model config ({ckpt}) does not match the requested quantization "
            f"({wanted}); leave quantization unset for {req.model.id} or pick an unquantized checkpoint."
        )
    elif wanted in ("awq", "gptq", "mxfp4", "int4", "int8"):
        # Sized as the model's pre-quantized release: vLLM cannot quantize bf16 weights to these at load.
        release = {"int4": "AWQ/GPTQ", "int8": "W8A8"}.get(wanted, wanted.upper())
        warnings.append(
            f"quantization {wanted} is sized as a {release} checkpoint of {req.model.id}; serve that checkpoint "
            f"(vLLM refuses --quantization {wanted} on the unquantized weights)."
        )
    return problems, warnings


def _is_large_gpu(req: SizingRequest) -> bool:
    # vllm/engine/arg_utils.py EngineArgs.get_batch_defaults: ≥70 GiB and not an A100 (PR #17885) gets
    # max_num_seqs 1024 and, for the API server, max_num_batched_tokens 8192; other GPUs 256 / 2048.
    name = (req.gpu_name or "").lower()
    return req.gpu_memory_gib >= 70 and "a100" not in name


def _activation_gib(
    cal: VersionCalibration,
    model: ModelArchitecture,
    *,
    tp: int,
    is_last_stage: bool,
    is_first_stage: bool,
    max_num_seqs: int,
    batched_tokens: int,
    dtype_bytes: int,
    max_model_len: int = 8192,
    stage_has_moe: bool = True,
    quant: str = "none",
    multiprocessors: int | None = None,
) -> float:
    """torch_peak_increase of one stage's profile run, GiB."""
    act = cal.activation
    if act.profile_run is not None:
        peak = profile_peak(
            model, tp=tp, is_first_stage=is_first_stage, is_last_stage=is_last_stage,
            stage_has_moe=stage_has_moe and model.moe is not None, max_num_seqs=max_num_seqs,
            batched_tokens=batched_tokens, max_model_len=max_model_len, dtype_bytes=dtype_bytes, quant=quant,
            multiprocessors=multiprocessors, topk_topp_buffer=act.profile_run.topk_topp_triton_buffer,
        )
        return max(peak.total(act.profile_run), 0.0)
    hidden_gib = batched_tokens * model.hidden_size * dtype_bytes / GiB
    mlp_gib = batched_tokens * (model.hidden_size + model.intermediate_size / tp) * dtype_bytes / GiB
    moe_gib = 0.0
    if model.moe is not None:
        width = 2 * model.moe.moe_intermediate_size / tp + model.hidden_size
        moe_gib = batched_tokens * model.moe.experts_per_token * width * dtype_bytes / GiB
    value = act.intercept_gib + act.per_hidden_gib * hidden_gib + act.per_mlp_gib * mlp_gib
    value += act.per_moe_gib * moe_gib
    if is_first_stage:
        # every engine profiles multimodal models with dummy images (V1 profile_run, V0 dummy_data_for_profiling)
        value += mm_dummy_batch_bytes(model, batched_tokens=batched_tokens, max_num_seqs=max_num_seqs,
                                      max_model_len=max_model_len, dtype_bytes=dtype_bytes) / GiB
    if is_last_stage:
        logits_gib = min(max_num_seqs, batched_tokens) * model.vocab_size * 4 / GiB
        value += act.per_logits_gib * logits_gib
    else:
        value += act.pp_non_last_stage_extra_gib
    return max(value, 0.0)


# GPUs sold without NVLink: vLLM's custom all-reduce needs full NVLink connectivity beyond two ranks.
# Whole-word patterns so "A10" does not match "A100".
_PCIE_ONLY_GPUS = re.compile(r"\b(l4|l40s?|a10g?|a40|t4|rtx\w*|4090|3090|a[456]000)\b")


def _is_pcie_only(gpu_name: str | None) -> bool:
    return bool(_PCIE_ONLY_GPUS.search((gpu_name or "").lower().replace("-", " ")))


def _non_torch_gib(cal: VersionCalibration, tp: int, pp: int, gpu_name: str | None = None,
                   vendor: str = "nvidia") -> float:
    cuda = _cuda_non_torch_gib(cal, tp, pp, gpu_name)
    # ROCm's HIP runtime and RCCL/hipBLASLt workspaces take far more than CUDA's context (vllm_calibration.yaml).
    return max(cuda, rocm_non_torch_gib()) if vendor == "amd" else cuda


def _cuda_non_torch_gib(cal: VersionCalibration, tp: int, pp: int, gpu_name: str | None) -> float:
    nt = cal.non_torch
    if tp > 1:
        if nt.tensor_parallel_pcie_gib is not None and tp > 2 and _is_pcie_only(gpu_name):
            return nt.tensor_parallel_pcie_gib
        return nt.tensor_parallel_gib + nt.tensor_parallel_per_rank_gib * tp
    if pp > 1:
        return nt.pipeline_stage_gib
    return nt.single_gpu_gib


class _Evaluation(BaseModel):
    """Internal: everything computed for one max_model_len."""

    gpus: list[GpuSizing]
    binding: int
    num_blocks: int
    tokens: int
    concurrency: float
    kv_fits: bool
    available_min_gib: float
    needed_gib: float
    groups: int
    bytes_per_token: int


def _evaluate(req: SizingRequest, cal: VersionCalibration, max_model_len: int) -> _Evaluation:
    model = req.model
    tp, pp, bs = req.tensor_parallel_size, req.pipeline_parallel_size, req.block_size
    dtype_bytes = DTYPE_BYTES[_resolve_dtype(req)]
    quant = _resolve_quant(req)
    kv_bytes = 1 if req.kv_cache_dtype == "fp8" else dtype_bytes
    large = _is_large_gpu(req)
    max_num_seqs = req.max_num_seqs or (cal.large_gpu_max_num_seqs if large else cal.small_gpu_max_num_seqs)
    batched = _batched_tokens(req, cal, max_model_len)
    v0_full = not cal.hybrid_kv_cache_manager
    all_kinds: list[str] = ["full"] * model.num_hidden_layers if v0_full else list(model.layer_kinds())
    budget = req.gpu_memory_gib * req.gpu_memory_utilization

    gpus: list[GpuSizing] = []
    layouts: list[_KvLayout] = []
    available: list[float] = []
    first = 0
    for stage, n_layers in enumerate(pipeline_layer_counts(model.num_hidden_layers, pp)):
        is_first, is_last = stage == 0, stage == pp - 1
        stage_kinds = all_kinds[first:first + n_layers]
        layout = _kv_layout(model, stage_kinds, all_kinds, tp=tp, kv_bytes=kv_bytes, block_size=bs)
        weights = stage_weights_bytes(
            model, tensor_parallel_size=tp, first_layer=first, num_layers=n_layers, is_first_stage=is_first,
            is_last_stage=is_last, quant=quant, dtype_bytes=dtype_bytes,
        ) / GiB
        stage_has_moe = any(model.is_moe_layer(i) for i in range(first, first + n_layers))
        activation = _activation_gib(cal, model, tp=tp, is_last_stage=is_last, is_first_stage=is_first,
                                     max_num_seqs=max_num_seqs, batched_tokens=batched, dtype_bytes=dtype_bytes,
                                     max_model_len=max_model_len, stage_has_moe=stage_has_moe, quant=quant,
                                     multiprocessors=req.gpu_multiprocessors)
        non_torch = _non_torch_gib(cal, tp, pp, req.gpu_name, req.gpu_vendor)
        cuda_graph = cal.cuda_graph.base_gib + cal.cuda_graph.per_layer_gib * n_layers / math.sqrt(tp)
        avail = budget - weights - activation - non_torch
        if cal.cuda_graph.subtract_from_kv_budget:
            avail -= cuda_graph
        first += n_layers
        # every TP rank of a stage holds the same shapes, so one computation stands for all of them
        for rank_in_stage in range(tp):
            gpus.append(GpuSizing(
                rank=stage * tp + rank_in_stage, stage=stage, num_layers=n_layers,
                weights_gib=round(weights, 4), activation_gib=round(activation, 4),
                non_torch_gib=round(non_torch, 4), cuda_graph_gib=round(cuda_graph, 4),
                budget_gib=round(budget, 4), kv_cache_gib=round(avail, 4),
                kv_cache_tokens=0, kv_cache_blocks=0, max_concurrency=0.0, fits=True,
            ))
        layouts.append(layout)
        available.append(avail)

    # each stage: blocks its memory allows; vLLM then uses the minimum everywhere
    stage_blocks = [
        max(0, int(max(avail, 0.0) * GiB // (layout.page_bytes * layout.layers_per_block)))
        for avail, layout in zip(available, layouts, strict=True)
    ]
    binding_stage = min(range(pp), key=lambda s: stage_blocks[s])
    num_blocks = stage_blocks[binding_stage]
    groups = layouts[0].group_kinds
    tokens = num_blocks // len(groups) * bs
    per_request = sum(_blocks_per_request("full" if v0_full else g, model, max_model_len, bs, batched)
                      for g in groups)
    # v0.9+ divides blocks by what one request needs in every group; older logs divide tokens by length
    concurrency = num_blocks / per_request if cal.concurrency_formula == "v1_blocks" else tokens / max_model_len

    needed = [
        _needed_bytes_one_request(layout, model, max_model_len, bs, batched, v0_full) / GiB for layout in layouts
    ]
    if cal.kv_check == "v1_bytes":
        kv_fits = all(avail >= need for avail, need in zip(available, needed, strict=True))
    else:
        kv_fits = tokens >= max_model_len
    for gpu in gpus:
        gpu.kv_cache_blocks = num_blocks
        gpu.kv_cache_tokens = tokens
        gpu.max_concurrency = round(concurrency, 2)
    binding_rank = binding_stage * tp
    bytes_per_token = model.kv_bytes_per_token_per_layer(kv_bytes, tp) * len(layouts[binding_stage].stage_layer_kinds)
    return _Evaluation(
        gpus=gpus, binding=binding_rank, num_blocks=num_blocks, tokens=tokens, concurrency=concurrency,
        kv_fits=kv_fits and num_blocks > 0, available_min_gib=min(available),
        needed_gib=needed[binding_stage], groups=len(groups), bytes_per_token=bytes_per_token,
    )


def _batched_tokens(req: SizingRequest, cal: VersionCalibration, max_model_len: int) -> int:
    if req.max_num_batched_tokens is not None:
        return req.max_num_batched_tokens
    if cal.engine == "v0":
        chunked_above = cal.v0_chunked_prefill_above_len
        if chunked_above is not None and max_model_len > chunked_above:
            return cal.small_gpu_max_num_batched_tokens  # chunked prefill auto-enabled: fixed token budget
        return max(max_model_len, 2048)
    return cal.large_gpu_max_num_batched_tokens if _is_large_gpu(req) else cal.small_gpu_max_num_batched_tokens


def _config_problems(req: SizingRequest, max_model_len: int, quant: str) -> list[str]:
    """vLLM's config validation: refusals that happen before any memory is touched."""
    model = req.model
    tp, pp = req.tensor_parallel_size, req.pipeline_parallel_size
    problems: list[str] = []
    if model.num_attention_heads % tp:
        problems.append(
            f"Total number of attention heads ({model.num_attention_heads}) must be divisible by tensor "
            f"parallel size ({tp}); pick a tensor_parallel_size that divides {model.num_attention_heads}."
        )
    kv = model.num_key_value_heads
    if not model.is_mla and (kv % tp if kv >= tp else tp % kv):
        problems.append(
            f"{kv} KV heads cannot be split or replicated evenly over tensor parallel size {tp}."
        )
    if model.padded_vocab_size % tp:
        problems.append(
            f"The vocabulary ({model.vocab_size}, padded to {model.padded_vocab_size}) is not divisible by "
            f"tensor parallel size {tp}; vLLM cannot shard the embedding. Use a power-of-two TP size."
        )
    if pp > model.num_hidden_layers:
        problems.append(
            f"pipeline_parallel_size {pp} exceeds the model's {model.num_hidden_layers} layers; "
            "some stages would hold no layers."
        )
    if max_model_len > model.max_position_embeddings:
        problems.append(
            f"User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
            f"(max_position_embeddings={model.max_position_embeddings}); lower max_model_len."
        )
    requested = req.gpu_memory_gib * req.gpu_memory_utilization
    # vllm/v1/worker/utils.py request_memory (v0.11+; v0.19.0): the budget must be free when the worker starts
    if (req.gpu_free_memory_gib is not None and req.gpu_free_memory_gib < requested
            and parse_version(req.vllm_version) >= (0, 11, 0)):
        problems.append(
            f"Free memory on device ({req.gpu_free_memory_gib:.2f}/{req.gpu_memory_gib:.2f} GiB) on startup is "
            f"less than desired GPU memory utilization ({req.gpu_memory_utilization}, {requested:.2f} GiB). "
            "Decrease gpu_memory_utilization or reduce GPU memory used by other processes."
        )
    if not req.gpu_supports_fp8:
        gpu = req.gpu_name or "this GPU"
        if req.kv_cache_dtype == "fp8":
            problems.append(f"kv_cache_dtype fp8 needs fp8 support, which {gpu} lacks; use kv_cache_dtype auto.")
        if req.quantization in ("fp8", "mxfp4"):
            problems.append(
                f"quantization {req.quantization} needs fp8 support, which {gpu} lacks; choose a GPU with fp8 "
                "(Ada/Hopper or newer) or serve the checkpoint unquantized."
            )
    return problems


def _max_len_that_fits(req: SizingRequest, cal: VersionCalibration, upper: int) -> int | None:
    """estimate_max_model_len: the largest max_model_len whose one request fits (binary search)."""

    def ok(length: int) -> bool:
        return _evaluate(req, cal, length).kv_fits

    if upper < 1 or not ok(1):
        return None
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _rule_of_thumb(req: SizingRequest, quant: str) -> tuple[float, str]:
    bytes_per_param = {"none": DTYPE_BYTES[_resolve_dtype(req)], "fp8": 1.0, "int8": 1.0,
                       "compressed-tensors-fp8": 1.0, "compressed-tensors-w8a8": 1.0}.get(quant, 0.5)
    params_b = req.model.params_b
    gib = params_b * bytes_per_param * RULE_OF_THUMB_OVERHEAD * 1e9 / GiB
    note = (
        f"Rule of thumb: {params_b:g}B params × {bytes_per_param:g} bytes × {RULE_OF_THUMB_OVERHEAD} ≈ "
        f"{gib:.1f} GiB in total (\"parameter count in billions times the bytes per parameter ... add 20 to 30 "
        "percent on top for the KV cache and runtime overhead\"). vLLM instead claims "
        f"{req.gpu_memory_utilization:.0%} of every GPU and fills what weights and activations leave with KV "
        "cache, so the exact figure is per GPU and the KV share is whatever remains."
    )
    return round(gib, 2), note


def size_deployment(req: SizingRequest, *, calibration: VersionCalibration | None = None) -> SizingResult:
    """Size one deployment the way vLLM will at startup, and say whether vLLM would refuse it.

    ``calibration`` overrides the version's empirical terms (the accuracy bench uses it for held-out fits).
    """
    model = req.model
    cal = calibration or calibration_for(req.vllm_version, req.engine)
    max_model_len = req.max_model_len or model.max_position_embeddings
    quant = _resolve_quant(req)
    dtype = _resolve_dtype(req)
    problems = _config_problems(req, max_model_len, quant)
    quant_problems, warnings = _quantization_problems(req)
    problems += quant_problems
    ev = _evaluate(req, cal, max_model_len)
    binding = ev.gpus[ev.binding]

    max_weights = max(g.weights_gib for g in ev.gpus)
    if max_weights >= req.gpu_memory_gib:
        problems.append(
            f"CUDA out of memory while loading weights: {max_weights:.2f} GiB per GPU exceeds the GPU's "
            f"{req.gpu_memory_gib:.2f} GiB; add GPUs (tensor/pipeline parallel) or use a quantized checkpoint."
        )
    elif ev.available_min_gib <= 0 or ev.num_blocks <= 0:
        problems.append(
            "No available memory for the cache blocks: weights, activation and non-torch memory "
            f"({binding.budget_gib - ev.available_min_gib:.2f} GiB) use the whole budget of "
            f"{binding.budget_gib:.2f} GiB ({req.gpu_memory_utilization} × {req.gpu_memory_gib:.2f} GiB). "
            "Try increasing gpu_memory_utilization, adding GPUs or quantizing."
        )
    elif not ev.kv_fits:
        estimate = _max_len_that_fits(req, cal, max_model_len)
        estimate_text = (
            f" Based on the available memory, the estimated maximum model length is {estimate}."
            if estimate else ""
        )
        problems.append(
            f"To serve at least one request with the model's max seq len ({max_model_len}), "
            f"{ev.needed_gib:.2f} GiB KV cache is needed, which is larger than the available KV cache memory "
            f"({ev.available_min_gib:.2f} GiB).{estimate_text} Try increasing gpu_memory_utilization or "
            "decreasing max_model_len."
        )
    if model.num_hidden_layers % req.pipeline_parallel_size:
        warnings.append(
            f"{model.num_hidden_layers} layers do not split evenly over {req.pipeline_parallel_size} pipeline "
            "stages; the stage with more layers binds the KV cache."
        )
    if not req.gpu_supports_fp8 and quant in ("fp8", "compressed-tensors-fp8") and req.quantization is None:
        warnings.append("fp8 checkpoint on a GPU without fp8: vLLM runs it weight-only (Marlin), slower.")

    physical_peak = max(
        g.weights_gib + g.activation_gib + g.non_torch_gib + max(g.kv_cache_gib, 0.0) + g.cuda_graph_gib
        for g in ev.gpus
    )
    if not cal.cuda_graph.subtract_from_kv_budget and physical_peak > req.gpu_memory_gib and not problems:
        warnings.append(
            f"Peak usage including CUDA graphs (~{physical_peak:.2f} GiB) exceeds the GPU's "
            f"{req.gpu_memory_gib:.2f} GiB: vLLM may OOM while capturing graphs or warming up the sampler; "
            "lower gpu_memory_utilization."
        )

    fits = not problems
    max_len_fit: int | None
    if problems and not ev.kv_fits and ev.num_blocks > 0:
        max_len_fit = _max_len_that_fits(req, cal, min(max_model_len, model.max_position_embeddings))
    elif ev.num_blocks <= 0:
        max_len_fit = None
    else:
        max_len_fit = _max_len_that_fits(req, cal, model.max_position_embeddings)
    for gpu in ev.gpus:
        gpu.fits = fits
        gpu.problems = list(problems)
    rule_gib, rule_note = _rule_of_thumb(req, quant)
    large = _is_large_gpu(req)
    return SizingResult(
        model_id=model.id, gpu_name=req.gpu_name, gpu_memory_gib=req.gpu_memory_gib,
        tensor_parallel_size=req.tensor_parallel_size, pipeline_parallel_size=req.pipeline_parallel_size,
        max_model_len=max_model_len, dtype=dtype, quantization=quant, kv_cache_dtype=req.kv_cache_dtype,
        gpu_memory_utilization=req.gpu_memory_utilization, vllm_version=req.vllm_version, engine=cal.engine,
        max_num_seqs=req.max_num_seqs or (cal.large_gpu_max_num_seqs if large else cal.small_gpu_max_num_seqs),
        max_num_batched_tokens=_batched_tokens(req, cal, max_model_len), calibration_range=cal.name,
        gpus=ev.gpus, weights_gib=binding.weights_gib, activation_gib=binding.activation_gib,
        non_torch_gib=binding.non_torch_gib, cuda_graph_gib=binding.cuda_graph_gib,
        kv_cache_gib=binding.kv_cache_gib, kv_cache_tokens=ev.tokens, kv_cache_blocks=ev.num_blocks,
        kv_cache_bytes_per_token=ev.bytes_per_token, max_concurrency=round(ev.concurrency, 2), fits=fits,
        problems=problems, max_model_len_that_fits=max_len_fit, rule_of_thumb_gib=rule_gib,
        rule_of_thumb_note=rule_note, physical_peak_gib=round(physical_peak, 3), warnings=warnings,
    )


def describe_calibration(vllm_version: str) -> dict[str, Any]:
    """The calibration range a version falls in, for reports."""
    return calibration_for(vllm_version).model_dump()
