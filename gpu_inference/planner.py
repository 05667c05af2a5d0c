"""Which GPU, how many nodes and what bill carry a given traffic within latency targets.

For every catalog offering of the chosen providers (in the region, when one is named), every tensor-parallel
size up to the node's GPU count, and the quantizations that make sense there (the checkpoint as stored, and
fp8 weights and/or fp8 KV cache where the GPU has FP8), the capacity model (``estimate.py``) finds the
largest concurrency per node whose predicted ITL and TTFT meet the targets and the KV cache holds. Nodes
are then sized with headroom: each node planned at ``HEADROOM`` of its predicted capacity there.

The bill is the one `cost` and `preview` print: the stack config each candidate would be is written to a
scratch stack file and the real Pulumi program prices it under the preview mocks (``preview_runner``), so GPU
nodes, the Nginx and Prometheus hosts, their volumes and addresses are priced by ``pricing`` exactly as for a
deployed stack. Configs that differ only in keys that never reach a bill (``PERFORMANCE_ONLY_KEYS``, checked
by a test) share one preview; a plan of a few hundred candidates runs some tens of previews (~0.1-0.3 s each).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.catalog import Catalog, Gpu, Offering, load_catalog
from gpu_inference.clouds import CLOUDS, cloud_for
from gpu_inference.config import NAMESPACE, parse_stack_config
from gpu_inference.constants import HOURS_PER_MONTH, VLLM_VERSION
from gpu_inference.estimate import TYPICAL_PROMPT_SHARE, Estimate, EstimateRequest, estimate, sizing_request
from gpu_inference.model_arch import ModelArchitecture
from gpu_inference.sizing import SizingResult, size_deployment

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# Each node is planned at this share of its predicted capacity at the chosen concurrency: Poisson-ish arrivals,
# a node being replaced and prediction error all need slack before the latency targets break.
HEADROOM = 0.8
# Concurrencies tried per node (the largest that meets the targets wins); vLLM's own ceiling is 1024.
CONCURRENCY_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
MAX_NODES = 64  # StackConfig.node_count's limit
# --write-stack sets monthlyBudgetUsd to the bill plus this margin, rounded up to $10.
BUDGET_MARGIN = 0.10
# Config keys that only become vLLM flags or policy thresholds, never a priced resource input: candidates
# differing only in these share one pricing preview (tests/test_planner.py checks the bill ignores each).
PERFORMANCE_ONLY_KEYS = frozenset(
    {"tensorParallelSize", "kvCacheDtype", "maxNumSeqs", "maxModelLen", "typicalRequestTokens", "monthlyBudgetUsd"}
)
# A budget no candidate reaches, for the pricing preview (the budget policy must not be what fails it).
_PRICING_BUDGET = 10_000_000
# By default the clouds whose stacks need nothing that already exists (a Kubernetes stack needs a cluster).
DEFAULT_PROVIDERS = tuple(name for name, cloud in CLOUDS.items() if cloud.layout == "machines")
# A Kubernetes stack must name its cluster; the planner cannot know it.
CLUSTER_PLACEHOLDER = "SET-YOUR-CLUSTER-ID"


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: ModelArchitecture
    model_ref: str
    """The model as the user named it (written to the stack as ``model``)."""
    rps: float = Field(gt=0)
    input_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    ttft_ms: float | None = Field(default=None, gt=0)
    itl_ms: float | None = Field(default=None, gt=0)
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    region: str | None = None
    max_monthly_usd: float | None = Field(default=None, gt=0)
    vllm_version: str = VLLM_VERSION


class Candidate(BaseModel):
    """One way to carry the traffic; the first fourteen fields are the fixed ``plan --json`` keys."""

    offering: str
    provider: str
    region: str
    gpu: str
    tensor_parallel_size: int
    quantization: str | None
    """``None``: the checkpoint as stored."""
    kv_cache_dtype: str
    node_count: int
    monthly_usd: float
    usd_per_mtok: float
    """Whole-stack dollars per million output tokens at the planned traffic."""
    itl_ms: float
    ttft_ms: float
    output_tokens_per_s_per_node: float
    max_num_seqs: int
    max_model_len: int
    bound: str
    config: dict[str, Any] = Field(repr=False)
    """The stack config (camelCase, no namespace) this candidate is."""


JSON_KEYS = (
    "offering", "provider", "region", "gpu", "tensor_parallel_size", "quantization", "kv_cache_dtype",
    "node_count", "monthly_usd", "usd_per_mtok", "itl_ms", "ttft_ms", "output_tokens_per_s_per_node",
)


class Rejected(BaseModel):
    offering: str
    provider: str
    gpu: str
    tensor_parallel_size: int
    quantization: str | None
    kv_cache_dtype: str
    reason: str


class Plan(BaseModel):
    candidates: list[Candidate]
    rejected: list[Rejected]
    headroom: float = HEADROOM
    previews: int = 0
    """How many pricing previews ran."""


def plan_max_model_len(model: ModelArchitecture, input_tokens: int, output_tokens: int) -> int:
    """Room for one request, and never below the stacks' usual 8192 (capped at the model's own limit)."""
    wanted = max(8192, math.ceil((input_tokens + output_tokens) / 1024) * 1024)
    return min(wanted, model.max_position_embeddings)


def _variants(model: ModelArchitecture, gpu: Gpu) -> list[tuple[str | None, str]]:
    """(quantization, kv_cache_dtype) worth trying: fp8 only where the GPU has it, never re-quantizing."""
    quants: list[str | None] = [None]
    if gpu.fp8 and model.quantization.method == "none":
        quants.append("fp8")
    kvs = ["auto", "fp8"] if gpu.fp8 else ["auto"]
    return [(q, kv) for q in quants for kv in kvs]


def _tp_sizes(gpu_count: int) -> list[int]:
    return [tp for tp in (1, 2, 4, 8, 16) if tp <= gpu_count]


def _region(offering: Offering, wanted: str | None) -> str | None:
    if wanted is None:
        return offering.regions[0]
    return wanted if wanted in offering.regions else None


def best_concurrency(
    req: PlanRequest, base: EstimateRequest, sizing: SizingResult
) -> tuple[int, Estimate] | str:
    """The largest concurrency meeting the targets, with its estimate, or why none does."""
    chosen: tuple[int, Estimate] | None = None
    first: Estimate | None = None
    for c in CONCURRENCY_LADDER:
        est = estimate(base.model_copy(update={"concurrency": c, "max_num_seqs": c}), sizing=sizing)
        if not est.fits:
            return "; ".join(est.problems) or "does not fit"
        first = first or est
        if c > est.kv_capacity_requests:
            break
        if (req.itl_ms and est.itl_ms > req.itl_ms) or (req.ttft_ms and est.ttft_ms > req.ttft_ms):
            break
        chosen = (c, est)
    if chosen is None:
        assert first is not None
        misses = []
        if req.itl_ms and first.itl_ms > req.itl_ms:
            misses.append(f"ITL {first.itl_ms:.1f} ms > {req.itl_ms:g} ms")
        if req.ttft_ms and first.ttft_ms > req.ttft_ms:
            misses.append(f"TTFT {first.ttft_ms:.0f} ms > {req.ttft_ms:g} ms")
        if first.kv_capacity_requests < 1:
            misses.append("the KV cache holds no request of this size")
        return f"misses the targets even at concurrency 1: {', '.join(misses) or 'no concurrency fits'}"
    return chosen


def stack_config(
    req: PlanRequest, provider: str, region: str, offering: Offering, tp: int, quant: str | None, kv: str,
    node_count: int, max_num_seqs: int, max_model_len: int, budget: float,
) -> dict[str, Any]:
    """The camelCase stack config of one candidate; validated by the same parser every stack goes through."""
    cfg: dict[str, Any] = {
        "provider": provider,
        "region": region,
        "gpu": offering.id,
        "nodeCount": node_count,
        "model": req.model_ref,
        "maxModelLen": max_model_len,
        "maxNumSeqs": max_num_seqs,
        "tensorParallelSize": tp,
        "kvCacheDtype": kv,
        "typicalRequestTokens": req.input_tokens + req.output_tokens,
        "monthlyBudgetUsd": budget,
    }
    if quant is not None:
        cfg["quantization"] = quant
    if cloud_for(provider).layout == "kubernetes":
        cfg["kubernetes"] = {"clusterId": CLUSTER_PLACEHOLDER}
    parse_stack_config(cfg, secret_keys=set())  # a value StackConfig refuses is a planner bug: fail loudly
    return cfg


def stack_file_text(cfg: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump({"config": {f"{NAMESPACE}:{k}": v for k, v in cfg.items()}}, sort_keys=False)
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + body


Pricer = Callable[[dict[str, Any]], float]


def preview_pricer(project_dir: Path | None = None) -> tuple[Pricer, Callable[[], int]]:
    """Bills from the real program under the preview mocks, one preview per distinct priced config."""
    from gpu_inference.constants import PROJECT_DIR
    from gpu_inference.preview_runner import run_preview

    root = project_dir or PROJECT_DIR
    cache: dict[str, float] = {}

    def price(cfg: dict[str, Any]) -> float:
        priced = {k: v for k, v in cfg.items() if k not in PERFORMANCE_ONLY_KEYS}
        key = yaml.safe_dump(priced, sort_keys=True)
        if key not in cache:
            with tempfile.TemporaryDirectory(prefix="gpu-inference-plan-") as scratch:
                path = Path(scratch) / "Pulumi.plan.yaml"
                path.write_text(stack_file_text({**cfg, "monthlyBudgetUsd": _PRICING_BUDGET}, "pricing preview"))
                cache[key] = float(run_preview(str(path), None, root).monthly_cost_usd)
        return cache[key]

    return price, lambda: len(cache)


def _evaluate(
    req: PlanRequest, pricer: Pricer, provider: str, offering: Offering, gpu: Gpu, region: str | None, tp: int,
    quant: str | None, kv: str, max_model_len: int,
) -> Candidate | Rejected:
    """One (offering, TP, precision): the candidate it makes, or why it is none."""

    def reject(reason: str) -> Rejected:
        return Rejected(offering=offering.id, provider=provider, gpu=offering.gpu, tensor_parallel_size=tp,
                        quantization=quant, kv_cache_dtype=kv, reason=reason)

    if region is None:
        return reject(f"not offered in {req.region} (offered in {', '.join(offering.regions)})")
    base = EstimateRequest(
        model=req.model, gpu=gpu, tensor_parallel_size=tp, quantization=quant,  # type: ignore[arg-type]
        kv_cache_dtype=kv, max_model_len=max_model_len, max_num_seqs=CONCURRENCY_LADDER[-1],  # type: ignore[arg-type]
        vllm_version=req.vllm_version, input_tokens=req.input_tokens, output_tokens=req.output_tokens, concurrency=1,
    )
    try:
        # Sized once at the largest max_num_seqs tried: its activation peak is the largest, so the KV cache it
        # leaves is a floor for every smaller maxNumSeqs written.
        sizing = size_deployment(sizing_request(base))
    except (ValueError, LookupError) as exc:
        return reject(f"cannot be sized: {exc}")
    if not sizing.fits:
        return reject("does not fit: " + "; ".join(p.rstrip(".") for p in sizing.problems))
    found = best_concurrency(req, base, sizing)
    if isinstance(found, str):
        return reject(found)
    concurrency, est = found
    per_node_rps = est.request_throughput_rps
    nodes = max(1, math.ceil(req.rps / (HEADROOM * per_node_rps)))
    if nodes > MAX_NODES:
        return reject(f"needs {nodes} nodes at {per_node_rps:.2f} req/s each; a stack runs at most {MAX_NODES}")
    cfg = stack_config(req, provider, region, offering, tp, quant, kv, nodes, concurrency, max_model_len,
                       _PRICING_BUDGET)
    monthly = pricer(cfg)
    if req.max_monthly_usd is not None and monthly > req.max_monthly_usd:
        return reject(f"over budget: ${monthly:,.2f}/month with {nodes} node(s) exceeds ${req.max_monthly_usd:,.2f}")
    tokens_per_month = req.rps * req.output_tokens * HOURS_PER_MONTH * 3600
    return Candidate(
        offering=offering.id, provider=provider, region=region, gpu=offering.gpu, tensor_parallel_size=tp,
        quantization=quant, kv_cache_dtype=kv, node_count=nodes, monthly_usd=round(monthly, 2),
        usd_per_mtok=round(monthly / tokens_per_month * 1e6, 4), itl_ms=est.itl_ms, ttft_ms=est.ttft_ms,
        output_tokens_per_s_per_node=est.output_tokens_per_s, max_num_seqs=concurrency, max_model_len=max_model_len,
        bound=est.bound, config=cfg,
    )


def make_plan(req: PlanRequest, pricer: Pricer | None = None, catalog: Catalog | None = None) -> Plan:
    """Every candidate (cheapest first) and every rejected combination with its reason."""
    cat = catalog or load_catalog()
    previews: Callable[[], int] = lambda: 0  # noqa: E731
    if pricer is None:
        pricer, previews = preview_pricer()
    max_model_len = plan_max_model_len(req.model, req.input_tokens, req.output_tokens)
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for provider in req.providers:
        for offering in cat.offerings_for(cloud_for(provider).catalog_cloud):
            gpu = cat.gpu(offering.gpu)
            region = _region(offering, req.region)
            for tp in _tp_sizes(offering.gpu_count):
                for quant, kv in _variants(req.model, gpu):
                    outcome = _evaluate(req, pricer, provider, offering, gpu, region, tp, quant, kv, max_model_len)
                    if isinstance(outcome, Candidate):
                        candidates.append(outcome)
                    else:
                        rejected.append(outcome)
    candidates.sort(key=lambda c: (c.monthly_usd, c.itl_ms, c.node_count, c.offering, c.tensor_parallel_size))
    return Plan(candidates=candidates, rejected=rejected, previews=previews())


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    data = candidate.model_dump(mode="json")
    return {key: data[key] for key in JSON_KEYS}


def written_config(candidate: Candidate) -> dict[str, Any]:
    """The candidate's config with its budget: the bill plus ``BUDGET_MARGIN``, rounded up to $10."""
    budget = math.ceil(candidate.monthly_usd * (1 + BUDGET_MARGIN) / 10) * 10
    return {**candidate.config, "monthlyBudgetUsd": budget}


def summarize_rejections(rejected: Iterable[Rejected]) -> list[tuple[str, int, list[str]]]:
    """(reason with figures stripped to its kind, count, offerings) for a short text report."""
    groups: dict[str, list[str]] = {}
    for r in rejected:
        kind = r.reason.split(":")[0]
        label = f"{r.offering} TP{r.tensor_parallel_size} {r.quantization or 'ckpt'}/kv-{r.kv_cache_dtype}"
        groups.setdefault(kind, []).append(label)
    return sorted(((k, len(v), v) for k, v in groups.items()), key=lambda t: -t[1])


__all__: Sequence[str] = [
    "HEADROOM", "JSON_KEYS", "Candidate", "Plan", "PlanRequest", "Rejected", "make_plan", "stack_file_text",
    "written_config",
]  # fmt: skip


def node_capacity_requests(stack: ResolvedStack) -> int | None:
    """Requests one node of ``stack`` serves at once as the planner plans it: the capacity model's effective
    concurrency at ``maxNumSeqs`` (capped by the KV cache) at ``HEADROOM``; None when the model has no
    estimate for the stack (the scale-advice alerts then fall back to one node more or fewer)."""
    cfg = stack.config
    inp = max(1.0, round(cfg.typical_request_tokens * TYPICAL_PROMPT_SHARE))
    try:
        est = estimate(EstimateRequest(
            model=stack.model, gpu=stack.gpu, tensor_parallel_size=stack.tensor_parallel_size,
            quantization=cfg.quantization, kv_cache_dtype=cfg.kv_cache_dtype, max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs, gpu_memory_utilization=cfg.gpu_memory_utilization,
            vllm_version=cfg.vllm_version, input_tokens=inp, output_tokens=max(1.0, cfg.typical_request_tokens - inp),
            concurrency=cfg.max_num_seqs,
        ))
    except (ValueError, LookupError):
        return None
    if not est.fits or est.effective_concurrency < 1:
        return None
    return max(1, math.floor(est.effective_concurrency * HEADROOM))
