"""`estimate MODEL --gpu GPU ...`: predicted latency and throughput of one vLLM replica (capacity model).

The flags and JSON keys are fixed (other tools read them): --gpu, --tensor-parallel-size, --quantization,
--kv-cache-dtype, --max-model-len, --max-num-seqs, --vllm-version, --input-tokens, --output-tokens,
--concurrency, --json; keys itl_ms, ttft_ms, output_tokens_per_s, request_throughput_rps,
effective_concurrency, bound. Exit 0 when the deployment fits, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
from typing import get_args

from gpu_inference.commands.size import find_gpu
from gpu_inference.config import KvCacheDtype, Quantization
from gpu_inference.constants import VLLM_VERSION
from gpu_inference.estimate import Estimate, EstimateRequest, estimate
from gpu_inference.model_arch import resolve_model

FIXED_KEYS = (
    "itl_ms", "ttft_ms", "output_tokens_per_s", "request_throughput_rps", "effective_concurrency", "bound",
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="predicted ITL, TTFT and tokens/s of one vLLM replica at a concurrency",
        description="Roofline prediction for MODEL on GPU with C requests of I prompt and O output tokens in flight.",
    )
    p.add_argument("model", metavar="MODEL", help="catalog model id (e.g. Qwen/Qwen3-8B) or path to a config.json")
    p.add_argument("--gpu", required=True, metavar="GPU", help="catalog GPU (H100-80GB, L40S, ...) or an offering id")
    p.add_argument("--tensor-parallel-size", type=_positive_int, default=1, metavar="N")
    p.add_argument("--quantization", choices=get_args(Quantization), default=None,
                   help="omitted: the checkpoint's own")
    p.add_argument("--kv-cache-dtype", choices=get_args(KvCacheDtype), default="auto")
    p.add_argument("--max-model-len", type=_positive_int, default=None, metavar="L",
                   help="default: the model's max positions (vLLM's default)")
    p.add_argument("--max-num-seqs", type=_positive_int, default=None, metavar="S",
                   help="default: vLLM's own for the GPU and version")
    p.add_argument("--vllm-version", default=VLLM_VERSION, metavar="V", help=f"default: {VLLM_VERSION}")
    p.add_argument("--input-tokens", type=_positive_int, required=True, metavar="I")
    p.add_argument("--output-tokens", type=_positive_int, required=True, metavar="O")
    p.add_argument("--concurrency", type=_positive_int, required=True, metavar="C")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def render_text(args: argparse.Namespace, result: Estimate) -> str:
    r = result
    lines = [
        f"{args.model} on {args.gpu} (TP={args.tensor_parallel_size}), {args.concurrency} requests of "
        f"{args.input_tokens} in / {args.output_tokens} out, vLLM {args.vllm_version}",
        f"  inter-token latency   {r.itl_ms:10.2f} ms",
        f"  time to first token   {r.ttft_ms:10.1f} ms (without queueing)",
        f"  output tokens/s       {r.output_tokens_per_s:10.1f} (whole replica)",
        f"  requests/s            {r.request_throughput_rps:10.3f}",
        f"  effective concurrency {r.effective_concurrency:10d} (max_num_seqs {r.max_num_seqs}, KV cache holds "
        f"{r.kv_capacity_requests} such requests: {r.kv_cache_tokens:,} tokens)",
        f"  bound: {r.bound}. {r.explanation}",
    ]
    lines += [f"  problem: {p}" for p in r.problems]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    request = EstimateRequest(
        model=resolve_model(args.model),
        gpu=find_gpu(args.gpu),
        tensor_parallel_size=args.tensor_parallel_size,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        vllm_version=args.vllm_version,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        concurrency=args.concurrency,
    )
    result = estimate(request)
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        print(render_text(args, result))
    return 0 if result.fits else 1
