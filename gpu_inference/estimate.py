"""How fast one vLLM replica serves: a roofline per engine step, fed by the sizing core.

One engine step (vLLM V1 runs one forward pass per step over every running request):

    step = overhead + max(bytes read / bandwidth, FLOPs / tensor throughput) + all-reduce (TP > 1)

- bytes read: every weight once per step (MoE: only the experts the step's tokens route to; the expected
  share for T tokens is 1 - (1 - k/E)^T, so a small batch reads the active experts and a large one all of
  them), plus each decoding sequence's KV cache (sliding-window layers only their window);
- FLOPs: 2 x the active linear parameters per token, plus attention over the context;
- all-reduce: two per layer (after attention and after the MLP), ring over the GPU's interconnect;
- prefill rides in the same steps, chunked by ``max_num_batched_tokens`` as vLLM's scheduler does: in a
  steady state with C requests of I prompt and O output tokens in flight, every step decodes C tokens and
  prefills C·I/O prompt tokens; when that exceeds the token budget the budget binds and requests wait.

Bandwidth and tensor throughput are the data-sheet peaks in the GPU catalog times an achieved share per
GPU generation; the shares and the two fixed costs come from ``data/perf_calibration.yaml``, fitted on
published benchmark results (``bench/planner_accuracy.py``). Effective concurrency is capped by
``max_num_seqs`` and by the KV cache ``sizing.size_deployment`` computes; the rest queue.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.catalog import Gpu
from gpu_inference.constants import DATA_DIR, VLLM_VERSION
from gpu_inference.model_arch import ModelArchitecture
from gpu_inference.sizing import (
    DTYPE_BYTES,
    GiB,
    RuntimeQuant,
    SizingRequest,
    SizingResult,
    linear_bytes_per_param,
    size_deployment,
)

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

Bound = Literal["memory-bandwidth", "compute", "kv-capacity", "overhead"]
BOUNDS: tuple[Bound, ...] = ("memory-bandwidth", "compute", "kv-capacity", "overhead")
# Bytes per activation element all-reduced between TP ranks (vLLM keeps activations in bf16/fp16).
ACTIVATION_BYTES = 2
# `cost` prices a stack from its typicalRequestTokens when no prompt/output split is given: chat traffic is
# prompt-heavy, so three quarters prompt, one quarter output.
TYPICAL_PROMPT_SHARE = 0.75


class PerfCalibration(BaseModel):
    """The capacity model's fitted constants (``data/perf_calibration.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    memory_efficiency: dict[str, float]
    """Achieved share of peak memory bandwidth, per GPU architecture (``Gpu.architecture``)."""
    compute_efficiency: dict[str, float]
    """Achieved share of peak dense tensor throughput, per GPU architecture."""
    step_overhead_ms: float = Field(ge=0)
    """Fixed cost of one engine step."""
    sequence_overhead_ms: float = Field(ge=0)
    """Cost per running sequence per step outside the GPU kernels (sampling, output processing)."""
    request_overhead_ms: float = Field(ge=0)
    """Fixed cost before a request's first token (API server, tokenizer, scheduling)."""
    allreduce_latency_us: dict[str, float]
    """Fixed cost of one small all-reduce, per interconnect (not fitted)."""
    fitted_generations: list[str] = Field(default_factory=list)
    """Architectures the benchmark points cover; the others keep their prior."""
    fitted_on: str = ""


@functools.cache
def load_perf_calibration(path: Path = DATA_DIR / "perf_calibration.yaml") -> PerfCalibration:
    return PerfCalibration.model_validate(yaml.safe_load(Path(path).read_text()))


class EstimateRequest(BaseModel):
    """One vLLM replica under a closed-loop load of ``concurrency`` requests of fixed size."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: ModelArchitecture
    gpu: Gpu
    tensor_parallel_size: int = Field(default=1, ge=1)
    quantization: RuntimeQuant | None = None
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    max_model_len: int | None = Field(default=None, gt=0)
    """None -> the model's max_position_embeddings (vLLM's default)."""
    max_num_seqs: int | None = Field(default=None, gt=0)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    vllm_version: str = VLLM_VERSION
    input_tokens: float = Field(gt=0)
    output_tokens: float = Field(ge=1)
    concurrency: int = Field(ge=1)


class StepTimes(BaseModel):
    """One steady-state engine step, milliseconds."""

    memory_ms: float
    compute_ms: float
    allreduce_ms: float
    overhead_ms: float
    decode_tokens: float
    prefill_tokens: float

    @property
    def total_ms(self) -> float:
        return self.overhead_ms + max(self.memory_ms, self.compute_ms) + self.allreduce_ms


class Estimate(BaseModel):
    """What ``estimate`` prints; the first six keys are fixed (other tools read them)."""

    itl_ms: float
    """Mean inter-token latency of a decoding request."""
    ttft_ms: float
    """Time to first token of a request that does not queue."""
    output_tokens_per_s: float
    """Generated tokens per second, summed over the replica."""
    request_throughput_rps: float
    effective_concurrency: int
    """Requests the replica runs at once: concurrency capped by max_num_seqs and the KV cache."""
    bound: Bound
    explanation: str
    fits: bool
    problems: list[str]
    kv_cache_tokens: int
    kv_capacity_requests: int
    """Requests of input + output tokens the KV cache holds at once."""
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    step: StepTimes
    weights_read_gib: float
    """Weights one GPU reads per decode step (MoE: the routed share)."""


def _weights_dtype_bytes(sizing: SizingResult) -> int:
    return DTYPE_BYTES.get(sizing.dtype, 2)


class _Shape(BaseModel):
    """Per-GPU quantities of one model under one sizing, computed once per estimate."""

    static_bytes: float
    """Weights read every step whatever the batch (everything but routed experts)."""
    expert_bytes: float
    """All routed experts on one GPU (0 for dense models)."""
    experts_per_token_share: float
    """k / E (1 for dense models)."""
    active_params: float
    """Linear parameters one token multiplies on one GPU."""
    kv_bytes_per_layer_token: float
    layer_windows: list[int | None]
    """Per layer: the tokens attention keeps (None = the whole context)."""
    attn_width: float
    """Query heads per GPU x head size: attention FLOPs per context token are 4x this per layer."""
    layers: int
    hidden: int
    fp8_compute: bool


def _shape(req: EstimateRequest, sizing: SizingResult) -> _Shape:
    model, tp = req.model, req.tensor_parallel_size
    dtype_bytes = _weights_dtype_bytes(sizing)
    dense_b, expert_b = linear_bytes_per_param(model, sizing.quantization, dtype_bytes)
    weights = sizing.weights_gib * GiB
    embedding = model.padded_vocab_size * model.hidden_size / tp * dtype_bytes
    # Token embeddings are looked up, not read whole; a tied table is read once, as the LM head.
    lookup_only = 0.0 if model.tie_word_embeddings else embedding
    weights -= lookup_only + model.vision_params_b * 1e9 * dtype_bytes
    moe_layers = sum(1 for i in range(model.num_hidden_layers) if model.is_moe_layer(i))
    expert_bytes = 0.0
    share = 1.0
    active = 0.0
    for i in range(model.num_hidden_layers):
        active += model.attention_params_per_layer(tp) + model.non_expert_mlp_params_per_layer(i, tp)
    active += model.padded_vocab_size * model.hidden_size / tp  # LM head
    if model.moe is not None and moe_layers:
        per_layer = model.expert_params_per_layer(tp)
        expert_bytes = moe_layers * per_layer * expert_b
        share = model.moe.experts_per_token / model.moe.num_experts
        active += moe_layers * per_layer * share
    kv_bytes = 1 if req.kv_cache_dtype == "fp8" else dtype_bytes
    windows: list[int | None] = []
    for kind in model.layer_kinds():
        if kind == "sliding":
            windows.append(model.sliding_window)
        elif kind == "chunked":
            windows.append(model.attention_chunk_size)
        else:
            windows.append(None)
    heads_per_gpu = model.num_attention_heads / tp
    quantized_fp8 = sizing.quantization in ("fp8", "compressed-tensors-fp8", "compressed-tensors-w8a8")
    del dense_b
    return _Shape(
        static_bytes=max(weights - expert_bytes, 0.0),
        expert_bytes=expert_bytes,
        experts_per_token_share=share,
        active_params=active,
        kv_bytes_per_layer_token=model.kv_bytes_per_token_per_layer(kv_bytes, tp),
        layer_windows=windows,
        attn_width=heads_per_gpu * model.head_dim,
        layers=model.num_hidden_layers,
        hidden=model.hidden_size,
        fp8_compute=quantized_fp8 and req.gpu.perf.fp8_dense_tflops is not None,
    )


def _weights_read(shape: _Shape, tokens: float) -> float:
    """Weight bytes one GPU reads in a step of ``tokens`` tokens: MoE experts only as far as tokens route to them
    (each token picks k of E experts, so a given expert is idle with probability (1 - k/E)^tokens)."""
    touched = 1.0 - (1.0 - shape.experts_per_token_share) ** tokens if shape.expert_bytes else 0.0
    return shape.static_bytes + shape.expert_bytes * touched


def _context_tokens(shape: _Shape, context: float) -> float:
    """Context tokens summed over layers (each layer keeps at most its window)."""
    return sum(context if w is None else min(context, float(w)) for w in shape.layer_windows)


def _step(
    req: EstimateRequest, shape: _Shape, cal: PerfCalibration, decode: float, prefill: float
) -> StepTimes:
    """One engine step decoding ``decode`` sequences and prefilling ``prefill`` prompt tokens."""
    gpu = req.gpu.perf
    tokens = decode + prefill
    decode_context = req.input_tokens + req.output_tokens / 2  # mean context while a request decodes
    prefill_context = req.input_tokens / 2  # mean prefix a prompt token attends to
    read = _weights_read(shape, tokens) + decode * _context_tokens(shape, decode_context) * shape.kv_bytes_per_layer_token
    mem_eff = cal.memory_efficiency.get(req.gpu.architecture, min(cal.memory_efficiency.values()))
    memory_s = read / (gpu.memory_bandwidth_gb_s * 1e9 * mem_eff)

    def flops(context: float) -> float:
        return 2 * shape.active_params + 4 * shape.attn_width * _context_tokens(shape, context)

    peak = gpu.fp8_dense_tflops if shape.fp8_compute and gpu.fp8_dense_tflops else gpu.bf16_dense_tflops
    comp_eff = cal.compute_efficiency.get(req.gpu.architecture, min(cal.compute_efficiency.values()))
    compute_s = (decode * flops(decode_context) + prefill * flops(prefill_context)) / (peak * 1e12 * comp_eff)
    tp = req.tensor_parallel_size
    allreduce_s = 0.0
    if tp > 1:
        message = tokens * shape.hidden * ACTIVATION_BYTES
        ring = 2 * (tp - 1) / tp * message / (gpu.interconnect_gb_s * 1e9)
        latency = cal.allreduce_latency_us.get(gpu.interconnect, max(cal.allreduce_latency_us.values())) * 1e-6
        allreduce_s = 2 * shape.layers * (latency + ring)
    return StepTimes(
        memory_ms=memory_s * 1e3,
        compute_ms=compute_s * 1e3,
        allreduce_ms=allreduce_s * 1e3,
        overhead_ms=cal.step_overhead_ms + cal.sequence_overhead_ms * decode,
        decode_tokens=decode,
        prefill_tokens=prefill,
    )


def sizing_request(req: EstimateRequest) -> SizingRequest:
    return SizingRequest(
        model=req.model,
        gpu_memory_gib=req.gpu.usable_memory_gib,
        gpu_name=req.gpu.name,
        gpu_supports_fp8=req.gpu.fp8,
        gpu_vendor=req.gpu.vendor,
        tensor_parallel_size=req.tensor_parallel_size,
        max_model_len=req.max_model_len,
        gpu_memory_utilization=req.gpu_memory_utilization,
        quantization=req.quantization,
        kv_cache_dtype=req.kv_cache_dtype,
        max_num_seqs=req.max_num_seqs,
        max_num_batched_tokens=req.max_num_batched_tokens,
        vllm_version=req.vllm_version,
    )


def _explain(bound: Bound, step: StepTimes, est_concurrency: int, asked: int, kv_requests: int,
             max_num_seqs: int) -> str:
    if bound == "kv-capacity":
        return (
            f"The KV cache holds only {kv_requests} requests of this size at once, so {est_concurrency} of the "
            f"{asked} in flight run and the rest queue: more KV memory (fp8 KV cache, a larger GPU or more "
            "GPUs) would raise throughput."
        )
    if bound == "overhead":
        if step.allreduce_ms > max(step.memory_ms, step.compute_ms):
            return (
                f"Each step spends {step.allreduce_ms:.2f} ms in tensor-parallel all-reduces, more than reading "
                "the weights or computing: the interconnect, not the GPUs, sets the pace."
            )
        return (
            f"Each step is mostly fixed cost ({step.overhead_ms:.2f} ms of scheduling and kernel launches against "
            f"{max(step.memory_ms, step.compute_ms):.2f} ms of GPU work): a larger batch would come almost free."
        )
    if bound == "compute":
        return (
            f"Each step's {step.decode_tokens + step.prefill_tokens:.0f} tokens take {step.compute_ms:.2f} ms of "
            f"tensor math, more than the {step.memory_ms:.2f} ms to read weights and KV cache: prefill and large "
            "batches make it compute bound, so more requests raise latency almost one for one."
        )
    capped = f" (capped at max_num_seqs {max_num_seqs})" if est_concurrency < asked else ""
    return (
        f"Each step reads the weights and KV cache in {step.memory_ms:.2f} ms, more than its "
        f"{step.compute_ms:.2f} ms of math: memory bandwidth sets the pace, so up to the compute limit more "
        f"concurrent requests{capped} add throughput at little latency cost."
    )


def estimate(
    req: EstimateRequest, calibration: PerfCalibration | None = None, sizing: SizingResult | None = None
) -> Estimate:
    """Predict latency and throughput of one replica with ``req.concurrency`` requests in flight.

    ``sizing`` reuses a sizing of the same deployment (the planner sizes each variant once for many
    concurrencies); by default it is computed from ``req``.
    """
    cal = calibration or load_perf_calibration()
    sizing = sizing or size_deployment(sizing_request(req))
    shape = _shape(req, sizing)
    inp, out = req.input_tokens, req.output_tokens
    per_request = math.ceil(inp + out)
    kv_requests = sizing.kv_cache_tokens // per_request if per_request else 0
    problems = list(sizing.problems)
    if sizing.fits and kv_requests < 1:
        problems.append(
            f"The KV cache ({sizing.kv_cache_tokens:,} tokens) cannot hold one request of {per_request:,} tokens."
        )
    if per_request > sizing.max_model_len:
        problems.append(
            f"A request of {inp:g} + {out:g} tokens exceeds max_model_len {sizing.max_model_len}; raise it."
        )
    fits = sizing.fits and not problems
    seqs = req.max_num_seqs or sizing.max_num_seqs
    budget = sizing.max_num_batched_tokens
    concurrency = max(1, min(req.concurrency, seqs, max(kv_requests, 1)))

    # Steady state: every step decodes the running requests and prefills their successors' prompts.
    decode, prefill = float(concurrency), concurrency * inp / out
    if decode + prefill > budget:  # the token budget binds: requests wait for their prefill
        decode = budget * out / (inp + out)
        prefill = budget - decode
    step = _step(req, shape, cal, decode, prefill)
    itl = step.total_ms

    # TTFT without queueing: the prompt in chunks of what the budget leaves beside the decoding requests.
    others = max(decode - 1, 0.0)
    chunk = max(budget - others, 1.0)
    full_chunks, rest = divmod(inp, chunk)
    ttft = cal.request_overhead_ms + full_chunks * _step(req, shape, cal, others, chunk).total_ms
    if rest > 0 or full_chunks == 0:
        ttft += _step(req, shape, cal, others, rest or inp).total_ms

    closed_loop = concurrency * out / ((ttft + (out - 1) * itl) / 1e3)
    tokens_per_s = min(closed_loop, decode / (itl / 1e3))

    asked = min(req.concurrency, seqs)
    bound: Bound
    if kv_requests < asked:
        bound = "kv-capacity"
    elif step.overhead_ms + step.allreduce_ms >= max(step.memory_ms, step.compute_ms):
        bound = "overhead"
    elif step.compute_ms >= step.memory_ms:
        bound = "compute"
    else:
        bound = "memory-bandwidth"
    read_gib = _weights_read(shape, decode + prefill) / GiB
    return Estimate(
        itl_ms=round(itl, 3),
        ttft_ms=round(ttft, 2),
        output_tokens_per_s=round(tokens_per_s, 2),
        request_throughput_rps=round(tokens_per_s / out, 4),
        effective_concurrency=concurrency,
        bound=bound,
        explanation=(
            _explain(bound, step, concurrency, req.concurrency, kv_requests, seqs) if fits
            else f"It does not fit, so the figures are hypothetical: {problems[0]}"
        ),
        fits=fits,
        problems=problems,
        kv_cache_tokens=sizing.kv_cache_tokens,
        kv_capacity_requests=kv_requests,
        max_num_seqs=seqs,
        max_num_batched_tokens=budget,
        max_model_len=sizing.max_model_len,
        step=step,
        weights_read_gib=round(read_gib, 3),
    )


def naive_itl_ms(req: EstimateRequest) -> float:
    """The textbook roofline: all weights once per token at peak bandwidth, nothing else."""
    sizing = size_deployment(sizing_request(req))
    return sizing.weights_gib * GiB / (req.gpu.perf.memory_bandwidth_gb_s * 1e9) * 1e3


def throughput_for_stack(
    stack: ResolvedStack,
    input_tokens: float | None = None,
    output_tokens: float | None = None,
    concurrency: int | None = None,
) -> float:
    """Predicted output tokens/s of ONE node of ``stack`` when busy (what `cost --tokens-per-second` asks).

    Defaults: ``maxNumSeqs`` requests in flight, each of ``typicalRequestTokens`` split
    ``TYPICAL_PROMPT_SHARE`` prompt / the rest output.
    """
    cfg = stack.config
    total = cfg.typical_request_tokens
    inp = input_tokens if input_tokens is not None else max(1.0, round(total * TYPICAL_PROMPT_SHARE))
    out = output_tokens if output_tokens is not None else max(1.0, total - inp)
    result = estimate(EstimateRequest(
        model=stack.model,
        gpu=stack.gpu,
        tensor_parallel_size=stack.tensor_parallel_size,
        quantization=cfg.quantization,
        kv_cache_dtype=cfg.kv_cache_dtype,
        max_model_len=cfg.max_model_len,
        max_num_seqs=cfg.max_num_seqs,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        vllm_version=cfg.vllm_version,
        input_tokens=inp,
        output_tokens=out,
        concurrency=concurrency or cfg.max_num_seqs,
    ))
    return result.output_tokens_per_s
