"""The cheapest change that makes a model fit, when it does not.

Candidates, each re-sized with the sizing core and priced from the catalog (GPU nodes only: the rest
of the stack costs the same whichever fix is chosen):

1. quantize the weights: fp8 where the GPU has FP8 tensor cores, else awq (4-bit, needs an AWQ checkpoint);
2. lower max-model-len to the largest that fits (the sizing core computes it);
3. a larger GPU offering of the same cloud in the same region (same GPU count, TP unchanged), or
   one no larger but with FP8 (an L4 serves fp8 where an A10G of the same size cannot);
4. a multi-GPU offering with tensor parallelism across all its GPUs (TP = N);

and 3/4 combined with 1, because "fp8 on one H100" is often far cheaper than "bf16 on eight". The
list comes back cheapest first; at equal price the order above wins (the smaller change).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gpu_inference.catalog import Offering
from gpu_inference.config import NAMESPACE
from gpu_inference.stack import ResolvedStack

FixKind = Literal["quantize", "max-model-len", "larger-gpu", "other-gpu", "more-gpus"]
_ORDER: dict[FixKind, int] = {"quantize": 0, "max-model-len": 1, "larger-gpu": 2, "other-gpu": 3, "more-gpus": 4}

# Below this context a chat/completions deployment is not useful, so a shorter max-model-len is
# not offered as a fix (a 300-token context "fits" but serves nothing).
MIN_USEFUL_MAX_MODEL_LEN = 1024


class FitFix(BaseModel):
    """One change to the stack config that makes the model fit, with its re-sized result and price."""

    model_config = ConfigDict(frozen=True)

    kind: FixKind
    kinds: tuple[FixKind, ...]
    """Every change involved (a larger GPU plus fp8 is ("larger-gpu", "quantize"))."""
    summary: str
    """What to change, as stack config keys, e.g. ``gpu-inference:quantization = fp8``."""
    config_changes: dict[str, Any]
    """camelCase config key → new value."""
    offering_id: str
    gpu_id: str
    gpu_count: int
    tensor_parallel_size: int
    monthly_usd: float
    """GPU nodes only (offering x node count at 730 h)."""
    kv_cache_tokens: int
    max_concurrency: float
    max_model_len: int

    def line(self) -> str:
        return (
            f"{self.summary} → ${self.monthly_usd:,.0f}/month for the GPU nodes, "
            f"{self.kv_cache_tokens:,} KV tokens, {self.max_concurrency:.1f}× at {self.max_model_len}"
        )


def _quant_for(rs: ResolvedStack, gpu_fp8: bool) -> str | None:
    """The quantization to try, or None when the checkpoint is already quantized or quantization is set."""
    if rs.model.quantization.method != "none" and rs.config.quantization in (None, rs.model.quantization.method):
        return None  # a pre-quantized checkpoint: vLLM cannot re-quantize it further
    if rs.config.quantization not in (None, "none"):
        return None  # already quantized: the candidates below try bigger hardware instead
    return "fp8" if gpu_fp8 else "awq"


def _variant(rs: ResolvedStack, offering: Offering | None = None, **config: Any) -> ResolvedStack:
    offering = offering or rs.offering
    if offering is not rs.offering:
        config["gpu"] = offering.id
        config["tensor_parallel_size"] = offering.gpu_count
    return replace(
        rs,
        config=rs.config.model_copy(update=config),
        offering=offering,
        gpu=rs.catalog.gpu(offering.gpu),
    )


def _describe(rs: ResolvedStack, changes: dict[str, Any]) -> str:
    parts: list[str] = []
    if "gpu" in changes:
        o = rs.catalog.offering(changes["gpu"])
        gpus = f"{o.gpu_count} × {o.gpu}"
        tp = f", {NAMESPACE}:tensorParallelSize = {o.gpu_count}" if o.gpu_count > 1 else ""
        parts.append(f"{NAMESPACE}:gpu = {o.id} ({gpus}{tp})")
    if "quantization" in changes:
        q = changes["quantization"]
        note = " (online FP8 quantization of the bf16 checkpoint)" if q == "fp8" else (
            f" with {NAMESPACE}:modelRepo set to an AWQ checkpoint of the model (vLLM cannot make AWQ at load)")
        parts.append(f"{NAMESPACE}:quantization = {q}{note}")
    if "maxModelLen" in changes:
        parts.append(f"{NAMESPACE}:maxModelLen = {changes['maxModelLen']}")
    return " and ".join(parts)


def _fix(rs: ResolvedStack, variant: ResolvedStack, kinds: tuple[FixKind, ...]) -> FitFix | None:
    try:
        result = variant.sizing
    except (ValueError, LookupError):
        return None  # a combination the sizing core refuses (e.g. heads not divisible by TP)
    if not result.fits:
        return None
    changes: dict[str, Any] = {}
    if variant.offering.id != rs.offering.id:
        changes["gpu"] = variant.offering.id
        changes["tensorParallelSize"] = variant.offering.gpu_count
    if variant.config.quantization != rs.config.quantization:
        changes["quantization"] = variant.config.quantization
    if variant.config.max_model_len != rs.config.max_model_len:
        changes["maxModelLen"] = variant.config.max_model_len
    kind = max(kinds, key=_ORDER.__getitem__)  # the heaviest change names the fix
    return FitFix(
        kind=kind,
        kinds=kinds,
        summary=_describe(rs, changes),
        config_changes=changes,
        offering_id=variant.offering.id,
        gpu_id=variant.gpu.id,
        gpu_count=variant.offering.gpu_count,
        tensor_parallel_size=variant.tensor_parallel_size,
        monthly_usd=round(variant.offering.monthly_usd * rs.config.node_count, 2),
        kv_cache_tokens=int(result.kv_cache_tokens),
        max_concurrency=float(result.max_concurrency),
        max_model_len=variant.config.max_model_len,
    )


def candidate_offerings(rs: ResolvedStack) -> list[Offering]:
    """Every other offering of the same cloud, region and GPU vendor (the image differs: CUDA vs ROCm).

    Not filtered by memory: a same-size GPU with FP8 can be the cheapest fix, and the sizing core,
    not a memory comparison here, decides what fits.
    """
    return [
        o for o in rs.catalog.offerings_for(rs.cloud.catalog_cloud)
        if o.id != rs.offering.id and rs.config.region in o.regions and rs.catalog.gpu(o.gpu).vendor == rs.gpu.vendor
    ]


def _offering_kind(rs: ResolvedStack, offering: Offering) -> FixKind:
    if offering.gpu_count > rs.offering.gpu_count:
        return "more-gpus"
    larger = rs.catalog.gpu(offering.gpu).usable_memory_gib > rs.gpu.usable_memory_gib
    return "larger-gpu" if larger else "other-gpu"


def advise_fit(rs: ResolvedStack, limit: int = 3) -> list[FitFix]:
    """Fixes that make ``rs`` fit, cheapest first (at most ``limit``); empty when it already fits or nothing helps."""
    base = rs.sizing
    if base.fits:
        return []
    fixes: list[FitFix] = []

    quant = _quant_for(rs, rs.gpu.fp8)
    if quant:
        fix = _fix(rs, _variant(rs, quantization=quant), ("quantize",))
        if fix:
            fixes.append(fix)

    best_len = base.max_model_len_that_fits
    if best_len and MIN_USEFUL_MAX_MODEL_LEN <= best_len < rs.config.max_model_len:
        fix = _fix(rs, _variant(rs, max_model_len=int(best_len)), ("max-model-len",))
        if fix:
            fixes.append(fix)

    for offering in candidate_offerings(rs):
        kind = _offering_kind(rs, offering)
        fix = _fix(rs, _variant(rs, offering), (kind,))
        if fix:
            fixes.append(fix)
            continue  # it fits unquantized: quantizing on the same offering cannot be cheaper
        q = _quant_for(rs, rs.catalog.gpu(offering.gpu).fp8)
        if q:
            fix = _fix(rs, _variant(rs, offering, quantization=q), (kind, "quantize"))
            if fix:
                fixes.append(fix)

    # Cheapest first; at equal price the smaller change (fewer knobs, earlier in the list above).
    fixes.sort(key=lambda f: (f.monthly_usd, len(f.kinds), _ORDER[f.kind]))
    return fixes[:limit]


def format_fixes(fixes: list[FitFix]) -> str:
    """The cheapest fix first, then the alternatives, one sentence."""
    if not fixes:
        return ""
    text = fixes[0].line()
    if len(fixes) > 1:
        text += ". Alternatives: " + "; ".join(f.line() for f in fixes[1:])
    return text + "."
