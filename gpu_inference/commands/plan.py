"""`plan MODEL --rps R --input-tokens I --output-tokens O ...`: the cheapest offering, TP size and node count
that carry R requests/s within the latency targets, ranked by the monthly bill `cost` would print.

Fixed flags: --rps, --input-tokens, --output-tokens, --ttft-ms, --itl-ms, --provider (repeatable),
--region, --max-monthly-usd, --json, --write-stack NAME. ``--json`` prints ``{"candidates": [...]}`` with the
keys of ``planner.JSON_KEYS``, sorted by monthly_usd. Exit 0 with at least one candidate, 1 with none (or when
the written stack fails its preview), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys

from gpu_inference import clouds
from gpu_inference.config import stack_file_path
from gpu_inference.constants import VLLM_VERSION
from gpu_inference.model_arch import resolve_model
from gpu_inference.planner import (
    CLUSTER_PLACEHOLDER,
    DEFAULT_PROVIDERS,
    HEADROOM,
    Candidate,
    Plan,
    PlanRequest,
    candidate_json,
    make_plan,
    stack_file_text,
    summarize_rejections,
    written_config,
)

SHOWN = 15
# A stack name every cloud's cloud-side names can carry (each cloud's stack_name_problems is stricter;
# this refuses before anything is written).
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):  # nan passes `<= 0`, inf overflows the node count
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
        return value  # type: ignore[no-any-return]

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="cheapest GPU offering, TP size and node count for a traffic within latency targets",
        description="Rank every catalog offering for MODEL at R requests/s of I prompt and O output tokens.",
    )
    p.add_argument("model", metavar="MODEL", help="catalog model id (e.g. Qwen/Qwen3-8B) or path to a config.json")
    p.add_argument("--rps", type=_positive(float), required=True, metavar="R", help="requests per second to carry")
    p.add_argument("--input-tokens", type=_positive(int), required=True, metavar="I")
    p.add_argument("--output-tokens", type=_positive(int), required=True, metavar="O")
    p.add_argument("--ttft-ms", type=_positive(float), default=None, metavar="T", help="time-to-first-token target")
    p.add_argument("--itl-ms", type=_positive(float), default=None, metavar="L", help="inter-token latency target")
    p.add_argument("--provider", action="append", choices=clouds.names(), default=None, metavar="P",
                   help=f"repeatable; default: {' and '.join(DEFAULT_PROVIDERS)}")
    p.add_argument("--region", default=None, metavar="X", help="only offerings in this region")
    p.add_argument("--max-monthly-usd", type=_positive(float), default=None, metavar="B")
    p.add_argument("--vllm-version", default=VLLM_VERSION, metavar="V", help=f"default: {VLLM_VERSION}")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--write-stack", metavar="NAME", default=None,
                   help="write Pulumi.NAME.yaml for the cheapest candidate and check it with `preview NAME`")


def _label(c: Candidate) -> str:
    return f"{c.quantization or 'ckpt'}/kv-{c.kv_cache_dtype}"


def render_text(req: PlanRequest, plan: Plan) -> str:
    targets = [f"ITL <= {req.itl_ms:g} ms" if req.itl_ms else "", f"TTFT <= {req.ttft_ms:g} ms" if req.ttft_ms else ""]
    target_text = " and ".join(t for t in targets if t) or "no latency target"
    lines = [
        f"Plan for {req.model_ref}: {req.rps:g} req/s of {req.input_tokens} in / {req.output_tokens} out, "
        f"{target_text}.",
        f"Headroom: each node is planned at {HEADROOM:.0%} of its predicted capacity at the concurrency "
        "(maxNumSeqs) that meets the targets. Bills: the stack as `cost` prices it (GPU nodes + load balancer + "
        "Prometheus, 730 h/month).",
        "",
        f"{'#':>2} {'offering':<20} {'provider':<12} {'region':<10} {'TP':>2} {'precision':<14} {'nodes':>5} "
        f"{'$/month':>11} {'$/Mtok':>8} {'ITL ms':>7} {'TTFT ms':>8} {'tok/s/node':>10} {'seqs':>5}  bound",
    ]
    for i, c in enumerate(plan.candidates[:SHOWN], 1):
        lines.append(
            f"{i:>2} {c.offering:<20} {c.provider:<12} {c.region:<10} {c.tensor_parallel_size:>2} {_label(c):<14} "
            f"{c.node_count:>5} {c.monthly_usd:>11,.2f} {c.usd_per_mtok:>8.3f} {c.itl_ms:>7.1f} {c.ttft_ms:>8.0f} "
            f"{c.output_tokens_per_s_per_node:>10.0f} {c.max_num_seqs:>5}  {c.bound}"
        )
    if len(plan.candidates) > SHOWN:
        lines.append(f"   ... {len(plan.candidates) - SHOWN} more (--json lists all)")
    if not plan.candidates:
        lines.append("   no candidate carries this traffic within the targets")
    if plan.rejected:
        lines += ["", f"Not candidates ({len(plan.rejected)}):"]
        for reason, count, labels in summarize_rejections(plan.rejected):
            example = next(r.reason for r in plan.rejected if r.reason.split(":")[0] == reason)
            lines.append(f"  {count:>3} x {reason}: e.g. {labels[0]}: {example}")
    return "\n".join(lines)


def write_stack(name: str, req: PlanRequest, candidate: Candidate, argv: str) -> int:
    """Write Pulumi.NAME.yaml for ``candidate`` and check it with the real preview; 0 when it passes."""
    from gpu_inference.preview_runner import run_preview

    cfg = written_config(candidate)
    path = stack_file_path(name)
    header = (
        f"Written by `python -m gpu_inference {argv}`.\n"
        f"{candidate.node_count} x {candidate.offering} ({candidate.gpu}, TP {candidate.tensor_parallel_size}, "
        f"{_label(candidate)}) for {req.rps:g} req/s of {req.input_tokens} in / {req.output_tokens} out: predicted "
        f"ITL {candidate.itl_ms:.1f} ms, TTFT {candidate.ttft_ms:.0f} ms, {candidate.output_tokens_per_s_per_node:.0f} "
        f"output tokens/s per node at {candidate.max_num_seqs} concurrent requests, each node planned at "
        f"{HEADROOM:.0%} of that.\n"
        f"Bill ${candidate.monthly_usd:,.2f}/month (730 h); the budget adds a margin.\n"
        "Set an API key before exposing it: pulumi config set --secret gpu-inference:apiKey ..."
    )
    path.write_text(stack_file_text(cfg, header), encoding="utf-8")
    report = run_preview(name, None)
    print(f"wrote {path} ({candidate.offering} x {candidate.node_count}, budget ${cfg['monthlyBudgetUsd']:,})",
          file=sys.stderr)
    if clouds.cloud_for(candidate.provider).layout == "kubernetes":
        print(f"set gpu-inference:kubernetes.clusterId in {path} (written as {CLUSTER_PLACEHOLDER})", file=sys.stderr)
    if abs(report.monthly_cost_usd - candidate.monthly_usd) > 0.01:
        print(f"error: preview bills ${report.monthly_cost_usd:,.2f}, the plan said ${candidate.monthly_usd:,.2f}",
              file=sys.stderr)
        return 1
    if report.exit_code != 0:
        failed = [v["name"] for v in report.policies if not v["passed"] and v["level"] == "mandatory"]
        print(f"error: `preview {name}` fails: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"`preview {name}` passes: ${report.monthly_cost_usd:,.2f} of ${report.budget_usd:,.2f}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.write_stack is not None and not _STACK_NAME.fullmatch(args.write_stack):
        raise ValueError(
            f"--write-stack = {args.write_stack!r}: a stack name is 1-40 letters, digits and '-', starting with a "
            "letter or digit"
        )
    req = PlanRequest(
        model=resolve_model(args.model),
        model_ref=args.model,
        rps=args.rps,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        providers=tuple(dict.fromkeys(args.provider or DEFAULT_PROVIDERS)),
        region=args.region,
        max_monthly_usd=args.max_monthly_usd,
        vllm_version=args.vllm_version,
    )
    plan = make_plan(req)
    if args.json:
        print(json.dumps({"candidates": [candidate_json(c) for c in plan.candidates],
                          "rejected": [r.model_dump(mode="json") for r in plan.rejected]}, indent=2))
    else:
        print(render_text(req, plan))
    if not plan.candidates:
        return 1
    if args.write_stack:
        argv = " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["plan"] else "plan ..."
        return write_stack(args.write_stack, req, plan.candidates[0], argv)
    return 0
