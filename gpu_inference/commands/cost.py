"""`cost STACK`: the monthly bill of a stack, per resource and in total against its budget.

The bill prices exactly the resources the Pulumi program registers (the offline preview runs it
under recording mocks), so `cost`, `preview`, the budget policy and `cost-diff` never disagree.
A month is 730 hours. It adds $ per million tokens at `--tokens-per-second` (measured), else at the
throughput `estimate` predicts for one node (and says so), and, with
`--api-price-per-mtok`, the break-even utilization against a per-token API.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gpu_inference.bill import bill_table
from gpu_inference.catalog import load_catalog
from gpu_inference.config import load_stack_config
from gpu_inference.constants import HOURS_PER_MONTH
from gpu_inference.estimate import throughput_for_stack
from gpu_inference.pricing import break_even_utilization, cost_per_million_tokens, spot_savings
from gpu_inference.stack import resolve_stack


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cost",
        help="monthly bill of a stack per resource, against its budget; $/Mtok and break-even",
        description="Monthly bill (730 h) of STACK per resource and in total against monthlyBudgetUsd.",
    )
    p.add_argument("stack", metavar="STACK", help="stack name (dev → Pulumi.dev.yaml) or a stack file path")
    p.add_argument(
        "--tokens-per-second",
        type=float,
        metavar="N",
        help="aggregate generated tokens/s of ONE node when busy (measure it: e.g. vLLM benchmark_serving); "
        "default: the estimate command's prediction",
    )
    p.add_argument(
        "--utilization",
        type=float,
        default=0.5,
        metavar="U",
        help="share of paid hours the nodes are busy, 0 < U ≤ 1 (default 0.5)",
    )
    p.add_argument(
        "--api-price-per-mtok",
        type=float,
        metavar="USD",
        help="a per-token API's price per million output tokens, for the break-even utilization",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def economics(
    stack_hourly_usd: float,
    node_count: int,
    tokens_per_second: float | None,
    utilization: float,
    api_price_per_mtok: float | None,
) -> dict[str, Any] | None:
    """$/Mtok of the whole stack (GPU nodes plus load balancer and monitoring) at a throughput."""
    if tokens_per_second is None:
        return None
    stack_tps = tokens_per_second * node_count
    result: dict[str, Any] = {
        "tokens_per_second_per_node": tokens_per_second,
        "utilization": utilization,
        "usd_per_million_tokens": cost_per_million_tokens(stack_hourly_usd, stack_tps, utilization),
        "break_even_utilization": None,
        "api_price_per_mtok": api_price_per_mtok,
    }
    if api_price_per_mtok is not None:
        result["break_even_utilization"] = break_even_utilization(stack_hourly_usd, stack_tps, api_price_per_mtok)
    return result


def run(args: argparse.Namespace) -> int:
    if not 0 < args.utilization <= 1:
        raise ValueError(f"--utilization = {args.utilization} must be in (0, 1]")
    cfg = load_stack_config(args.stack)
    # Imported here: the preview runner imports Pulumi, which the rest of the CLI does not need.
    from gpu_inference.preview_runner import run_preview, stack_name_of

    report = run_preview(str(args.stack), out_dir=None).model_dump(mode="json")
    tokens_per_second, predicted = args.tokens_per_second, False
    if tokens_per_second is None:
        # No measured throughput: the capacity planner's prediction for one node at maxNumSeqs requests of
        # typicalRequestTokens (gpu_inference/estimate.py), said as such.
        tokens_per_second = throughput_for_stack(resolve_stack(cfg, name=stack_name_of(str(args.stack))))
        predicted = True
    lines = report["cost_lines"]
    total = float(report["monthly_cost_usd"])
    budget = float(report["budget_usd"])
    # Effective hourly rate of the month as billed (capped droplets bill less than hourly × 730).
    stack_hourly = total / HOURS_PER_MONTH
    spot = spot_savings(load_catalog().offering(cfg.gpu))
    # The bill is at maxNodes for an autoscaled stack: so is the throughput it buys.
    econ = economics(stack_hourly, cfg.max_node_count, tokens_per_second, args.utilization, args.api_price_per_mtok)
    if econ is not None:
        econ["tokens_per_second_source"] = "predicted by estimate" if predicted else "given (--tokens-per-second)"

    if args.json:
        print(
            json.dumps(
                {
                    "stack": str(args.stack),
                    "hours_per_month": HOURS_PER_MONTH,
                    "cost_lines": lines,
                    "monthly_cost_usd": total,
                    # With autoscaling: [minNodes month, maxNodes month]; the budget verdict is at the maximum.
                    "monthly_cost_range_usd": [report.get("monthly_cost_min_usd") or total, total],
                    "budget_usd": budget,
                    "within_budget": total <= budget,
                    "spot": spot.model_dump(mode="json") if spot else None,
                    "economics": econ,
                },
                indent=2,
            )
        )
        return 0 if total <= budget else 1

    print(f"Monthly bill of stack {args.stack} ({cfg.describe()})")
    print(f"Convention: {HOURS_PER_MONTH:.0f} hours per month; catalog list prices with their dates.\n")
    print("\n".join(bill_table(lines, total, budget)))
    if spot:
        print(
            f"\nSpot: {spot.offering_id} ${spot.spot_monthly_usd:,.2f} vs ${spot.on_demand_monthly_usd:,.2f} on demand "
            f"per node-month, saves {spot.savings_fraction:.0%} (price of {spot.price_date}); "
            f"{'in use' if cfg.spot else 'set gpu-inference:spot: true to use it'}"
        )
    else:
        print(f"\nSpot: the catalog has no spot price for {cfg.gpu} ({cfg.provider}).")
    if econ:
        source = (f" ({econ['tokens_per_second_source']}: measure it and pass --tokens-per-second to replace it)"
                  if predicted else "")
        print(
            f"\n$ per million tokens at {econ['tokens_per_second_per_node']:,.0f} tok/s per node{source} and "
            f"{econ['utilization']:.0%} utilization (whole stack): ${econ['usd_per_million_tokens']:,.3f}"
        )
        if econ["break_even_utilization"] is not None:
            be = econ["break_even_utilization"]
            verdict = "never (above 100%)" if be > 1 else f"{be:.1%}"
            print(f"Break-even utilization vs an API at ${econ['api_price_per_mtok']}/Mtok: {verdict}")
    return 0 if total <= budget else 1
