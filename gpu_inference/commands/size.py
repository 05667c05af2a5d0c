"""`size MODEL`: vLLM's own memory arithmetic for one model on one GPU type, per GPU.

The flags are fixed (other tools call this command): --gpu / --gpu-memory-gib,
--tensor-parallel-size, --pipeline-parallel-size, --max-model-len, --gpu-memory-utilization,
--dtype, --quantization, --kv-cache-dtype, --vllm-version, --json.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, get_args

from gpu_inference.catalog import Gpu, UnknownCatalogEntry, load_catalog
from gpu_inference.constants import VLLM_VERSION
from gpu_inference.model_arch import resolve_model
from gpu_inference.sizing import SizingRequest, SizingResult, size_deployment
from gpu_inference.vocabulary import (
    DEFAULT_DTYPE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_KV_CACHE_DTYPE,
    Dtype,
    KvCacheDtype,
    Quantization,
)

# Keys every per-GPU entry of the JSON carries; tests and other tools read exactly these.
PER_GPU_KEYS = (
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "cuda_graph_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "max_concurrency",
    "fits",
    "problems",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "size",
        help="memory fit of a model on a GPU, per GPU, as vLLM computes it",
        description="KV-cache tokens, max concurrency and fit of MODEL (a catalog id or a config.json path).",
    )
    p.add_argument("model", metavar="MODEL", help="catalog model id (e.g. Qwen/Qwen3-8B) or path to a config.json")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", metavar="NAME", help="catalog GPU (L40S, H100-80GB, ...) or an offering id")
    where.add_argument("--gpu-memory-gib", type=float, metavar="X", help="total memory per GPU as CUDA reports it")
    p.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N")
    p.add_argument("--pipeline-parallel-size", type=int, default=1, metavar="N")
    p.add_argument("--max-model-len", type=int, default=None, metavar="N", help="default: the model's max positions")
    p.add_argument("--gpu-memory-utilization", type=float, default=DEFAULT_GPU_MEMORY_UTILIZATION, metavar="F")
    p.add_argument(
        "--max-num-seqs",
        type=int,
        default=None,
        metavar="N",
        help="vLLM --max-num-seqs (sizes the sampler's activation); default: vLLM's own for the GPU",
    )
    p.add_argument("--dtype", choices=get_args(Dtype), default=DEFAULT_DTYPE)
    p.add_argument("--quantization", choices=get_args(Quantization), default=None, help="omitted: the checkpoint's own")
    p.add_argument("--kv-cache-dtype", choices=get_args(KvCacheDtype), default=DEFAULT_KV_CACHE_DTYPE)
    p.add_argument("--vllm-version", default=VLLM_VERSION, metavar="X.Y.Z", help=f"default: {VLLM_VERSION}")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def find_gpu(name: str) -> Gpu:
    """A GPU by catalog id or marketing name (case-insensitive), or the GPU of an offering id."""
    catalog = load_catalog()
    wanted = name.strip().lower()
    for gpu in catalog.gpus.values():
        if wanted in {gpu.id.lower(), gpu.name.lower()}:
            return gpu
    try:
        return catalog.gpu_of(name)
    except UnknownCatalogEntry:
        pass
    return catalog.gpu(name)  # raises UnknownCatalogEntry with close matches


def request_from_args(args: argparse.Namespace) -> SizingRequest:
    model = resolve_model(args.model)
    if args.gpu:
        gpu = find_gpu(args.gpu)
        memory, gpu_name, fp8, sms = gpu.usable_memory_gib, gpu.name, gpu.fp8, gpu.multiprocessors
        vendor = gpu.vendor
    else:
        if args.gpu_memory_gib <= 0:
            raise ValueError(f"--gpu-memory-gib = {args.gpu_memory_gib} must be > 0")
        memory, gpu_name, fp8, sms = args.gpu_memory_gib, None, True, None
        vendor = "nvidia"
    return SizingRequest(
        model=model,
        gpu_memory_gib=memory,
        gpu_name=gpu_name,
        gpu_supports_fp8=fp8,
        gpu_vendor=vendor,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        vllm_version=args.vllm_version,
        max_num_seqs=args.max_num_seqs,
        gpu_multiprocessors=sms,
    )


def result_to_json(result: SizingResult) -> dict[str, Any]:
    data = result.model_dump(mode="json")
    # Per-GPU entries carry the fixed keys whatever else the sizing model grows.
    for entry in data.get("gpus", []):
        missing = [k for k in PER_GPU_KEYS if k not in entry]
        assert not missing, f"sizing result lacks {missing}"
    return data


def render_table(result: SizingResult) -> str:
    r = result
    lines = [
        f"{r.model_id} on {r.gpu_name or 'GPU'} × {r.tensor_parallel_size * r.pipeline_parallel_size} "
        f"(TP={r.tensor_parallel_size}, PP={r.pipeline_parallel_size}), max_model_len={r.max_model_len}, "
        f"util={r.gpu_memory_utilization}, vLLM {r.vllm_version}",
        "",
        f"{'rank':>4} {'budget':>8} {'weights':>8} {'activ.':>7} {'non-torch':>9} {'cudagraph':>9} "
        f"{'KV GiB':>8} {'KV tokens':>11} {'concurrency':>11}  fits",
    ]
    for g in r.gpus:
        lines.append(
            f"{g.rank:>4} {g.budget_gib:>8.2f} {g.weights_gib:>8.2f} {g.activation_gib:>7.2f} {g.non_torch_gib:>9.2f} "
            f"{g.cuda_graph_gib:>9.2f} {g.kv_cache_gib:>8.2f} {g.kv_cache_tokens:>11,} {g.max_concurrency:>10.2f}x  "
            f"{'yes' if g.fits else 'NO'}"
        )
    lines.append("")
    verdict = "FITS" if r.fits else "DOES NOT FIT"
    lines.append(
        f"{verdict}: {r.kv_cache_tokens:,} KV tokens, {r.max_concurrency:.2f}x requests of {r.max_model_len} tokens"
    )
    lines.append(r.rule_of_thumb_note)
    for problem in r.problems:
        lines.append(f"  problem: {problem}")
    for warning in getattr(r, "warnings", []) or []:
        lines.append(f"  warning: {warning}")
    if not r.fits and r.max_model_len_that_fits:
        lines.append(f"  largest max_model_len that fits: {r.max_model_len_that_fits:,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = size_deployment(request_from_args(args))
    if args.json:
        print(json.dumps(result_to_json(result), indent=2))
    else:
        print(render_table(result))
    return 0 if result.fits else 1
