"""Accuracy of the capacity model (gpu_inference/estimate.py) against published vLLM benchmark results.

    .venv/bin/python bench/planner_accuracy.py [--csv PATH] [--fit]

For every point of bench/data/vllm-throughput-points.csv it prints measured vs predicted output tokens/s and
mean ITL, the error, the naive roofline beside it (all weights once per token at peak bandwidth: ITL =
weights / bandwidth, tokens/s = concurrency / ITL), and the point's source. Then the median absolute error
and the share of points within +-25 % (tokens/s) and +-20 % (ITL at concurrency <= 8), for both models.

``--fit`` refits the few constants of data/perf_calibration.yaml (memory-bandwidth share per GPU generation
present in the data, one compute share, the per-step and per-request overheads) by a coordinate search on the
log errors, prints them and the figures they give, and a leave-one-source-out figure (each source's points
predicted with constants fitted without that source). It does not write the YAML: copy the values there.
Exit status 1 when a target is missed (tokens/s within +-25 % on >= 70 % of points, ITL within +-20 % on
>= 80 % of the points at concurrency <= 8).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpu_inference.catalog import load_catalog  # noqa: E402
from gpu_inference.constants import VLLM_VERSION  # noqa: E402
from gpu_inference.estimate import (  # noqa: E402
    EstimateRequest,
    PerfCalibration,
    estimate,
    load_perf_calibration,
    naive_itl_ms,
)
from gpu_inference.model_arch import resolve_model  # noqa: E402

TPS_TOLERANCE = 0.25
ITL_TOLERANCE = 0.20
ITL_MAX_CONCURRENCY = 8
TPS_TARGET = 0.70
ITL_TARGET = 0.80
DEFAULT_CSV = REPO / "bench" / "data" / "vllm-throughput-points.csv"
# Where every fit starts (not the YAML's fitted values: a held-out source must not leak into its own fit).
NEUTRAL_START = {"memory_efficiency": 0.8, "compute_efficiency": 0.5, "step_overhead_ms": 1.0,
                 "sequence_overhead_ms": 0.02, "request_overhead_ms": 40.0}


@dataclass
class Point:
    id: str
    request: EstimateRequest
    measured_tps: float | None
    measured_itl: float | None
    concurrency: int
    source: str
    source_key: str


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_points(path: Path) -> list[Point]:
    catalog = load_catalog()
    points: list[Point] = []
    for row in csv.DictReader(path.open()):
        concurrency = int(row["concurrency"])
        request = EstimateRequest(
            model=resolve_model(row["model"]),
            gpu=catalog.gpu(row["gpu"]),
            tensor_parallel_size=int(row["tensor_parallel_size"]),
            quantization=row["quantization"] or None,  # type: ignore[arg-type]
            kv_cache_dtype=row["kv_cache_dtype"] or "auto",  # type: ignore[arg-type]
            vllm_version=row["vllm_version"] or VLLM_VERSION,
            input_tokens=float(row["input_tokens"]),
            output_tokens=float(row["output_tokens"]),
            concurrency=concurrency,
        )
        points.append(Point(
            id=row["id"], request=request, measured_tps=_float(row["output_tokens_per_s"]),
            measured_itl=_float(row["mean_itl_ms"]), concurrency=concurrency, source=row["source"],
            source_key=row["id"].split("-")[0],
        ))
    return points


def _err(predicted: float, measured: float) -> float:
    return predicted / measured - 1


@dataclass
class Scores:
    tps_errors: list[float]
    itl_errors: list[float]

    @property
    def tps_within(self) -> float:
        return _share(self.tps_errors, TPS_TOLERANCE)

    @property
    def itl_within(self) -> float:
        return _share(self.itl_errors, ITL_TOLERANCE)


def _share(errors: list[float], tolerance: float) -> float:
    return sum(abs(e) <= tolerance for e in errors) / len(errors) if errors else float("nan")


def _median_abs(errors: list[float]) -> float:
    return statistics.median(abs(e) for e in errors) if errors else float("nan")


def score(points: list[Point], cal: PerfCalibration) -> Scores:
    tps: list[float] = []
    itl: list[float] = []
    for p in points:
        est = estimate(p.request, cal)
        if p.measured_tps:
            tps.append(_err(est.output_tokens_per_s, p.measured_tps))
        if p.measured_itl and p.concurrency <= ITL_MAX_CONCURRENCY:
            itl.append(_err(est.itl_ms, p.measured_itl))
    return Scores(tps, itl)


def _loss(points: list[Point], cal: PerfCalibration) -> float:
    total = 0.0
    for p in points:
        est = estimate(p.request, cal)
        if p.measured_tps:
            total += math.log(est.output_tokens_per_s / p.measured_tps) ** 2
        if p.measured_itl and p.concurrency <= ITL_MAX_CONCURRENCY:
            total += math.log(est.itl_ms / p.measured_itl) ** 2
    return total


def neutral(template: PerfCalibration) -> PerfCalibration:
    """``template`` with every fitted constant reset to ``NEUTRAL_START`` (unfitted priors are kept)."""
    update: dict[str, object] = {k: v for k, v in NEUTRAL_START.items() if not k.endswith("efficiency")}
    for field in ("memory_efficiency", "compute_efficiency"):
        update[field] = {a: NEUTRAL_START[field] if a in template.fitted_generations else v
                         for a, v in getattr(template, field).items()}
    return template.model_copy(update=update)


def fit(points: list[Point], start: PerfCalibration) -> PerfCalibration:
    """Coordinate search over the few constants, each within a physically sensible range, from ``start``."""
    archs = sorted({p.request.gpu.architecture for p in points})
    cal = start.model_copy(update={"fitted_generations": archs})
    knobs: list[tuple[str, float, float]] = [(f"memory_efficiency:{a}", 0.3, 1.0) for a in archs]
    knobs += [(f"compute_efficiency:{a}", 0.15, 1.0) for a in archs]
    knobs += [("step_overhead_ms", 0.0, 5.0), ("sequence_overhead_ms", 0.0, 0.5), ("request_overhead_ms", 0.0, 200.0)]

    def with_value(c: PerfCalibration, knob: str, value: float) -> PerfCalibration:
        field, _, arch = knob.partition(":")
        if arch:
            return c.model_copy(update={field: {**getattr(c, field), arch: value}})
        return c.model_copy(update={field: value})

    def value_of(c: PerfCalibration, knob: str) -> float:
        field, _, arch = knob.partition(":")
        return float(getattr(c, field)[arch]) if arch else float(getattr(c, field))

    best = _loss(points, cal)
    for _ in range(6):
        for knob, low, high in knobs:
            current = value_of(cal, knob)
            span = (high - low) / 2
            for _ in range(12):
                candidates = [min(high, max(low, current + d)) for d in (-span, span)]
                for value in candidates:
                    trial = with_value(cal, knob, value)
                    loss = _loss(points, trial)
                    if loss < best:
                        best, cal, current = loss, trial, value
                span /= 2
    return cal


def report(points: list[Point], cal: PerfCalibration) -> Scores:
    print(f"{'point':<36} {'conc':>5} {'tok/s meas':>10} {'pred':>9} {'err':>7} {'naive':>9} {'err':>7} "
          f"{'ITL meas':>8} {'pred':>7} {'err':>7} {'naive':>6} {'bound':<16} source")
    naive_tps: list[float] = []
    naive_itl: list[float] = []
    for p in points:
        est = estimate(p.request, cal)
        n_itl = naive_itl_ms(p.request)
        n_tps = p.concurrency * 1e3 / n_itl
        tps_txt = itl_txt = " " * 34
        if p.measured_tps:
            e = _err(est.output_tokens_per_s, p.measured_tps)
            ne = _err(n_tps, p.measured_tps)
            naive_tps.append(ne)
            tps_txt = f"{p.measured_tps:>10.1f} {est.output_tokens_per_s:>9.1f} {e:>+7.0%} {n_tps:>9.0f} {ne:>+7.0%}"
        else:
            tps_txt = f"{'-':>10} {est.output_tokens_per_s:>9.1f} {'':>7} {n_tps:>9.0f} {'':>7}"
        if p.measured_itl:
            e = _err(est.itl_ms, p.measured_itl)
            ne = _err(n_itl, p.measured_itl)
            if p.concurrency <= ITL_MAX_CONCURRENCY:
                naive_itl.append(ne)
            itl_txt = f"{p.measured_itl:>8.2f} {est.itl_ms:>7.2f} {e:>+7.0%} {n_itl:>6.2f}"
        else:
            itl_txt = f"{'-':>8} {est.itl_ms:>7.2f} {'':>7} {n_itl:>6.2f}"
        print(f"{p.id:<36} {p.concurrency:>5} {tps_txt} {itl_txt} {est.bound:<16} {p.source[:70]}")
    scores = score(points, cal)
    print()
    print(f"points: {len(points)} ({len(scores.tps_errors)} with tokens/s, {len(scores.itl_errors)} with ITL at "
          f"concurrency <= {ITL_MAX_CONCURRENCY})")
    print(f"model : tokens/s median |error| {_median_abs(scores.tps_errors):.1%}, within +-25%: "
          f"{scores.tps_within:.0%} (target >= {TPS_TARGET:.0%}); ITL median |error| "
          f"{_median_abs(scores.itl_errors):.1%}, within +-20%: {scores.itl_within:.0%} (target >= {ITL_TARGET:.0%})")
    print(f"naive : tokens/s median |error| {_median_abs(naive_tps):.1%}, within +-25%: "
          f"{_share(naive_tps, TPS_TOLERANCE):.0%}; ITL median |error| {_median_abs(naive_itl):.1%}, "
          f"within +-20%: {_share(naive_itl, ITL_TOLERANCE):.0%}")
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--fit", action="store_true", help="refit the constants and print them")
    args = parser.parse_args()
    points = load_points(args.csv)
    cal = load_perf_calibration()
    prior = neutral(cal)
    if args.fit:
        cal = fit(points, prior)
        print("fitted constants (copy into gpu_inference/data/perf_calibration.yaml):")
        print(f"  memory_efficiency: {{{', '.join(f'{k}: {v:.3f}' for k, v in cal.memory_efficiency.items())}}}")
        print(f"  compute_efficiency: {{{', '.join(f'{k}: {v:.3f}' for k, v in cal.compute_efficiency.items())}}}")
        print(f"  step_overhead_ms: {cal.step_overhead_ms:.3f}")
        print(f"  sequence_overhead_ms: {cal.sequence_overhead_ms:.4f}")
        print(f"  request_overhead_ms: {cal.request_overhead_ms:.2f}")
        print(f"  fitted_generations: {cal.fitted_generations}\n")
        held: list[float] = []
        held_itl: list[float] = []
        for key in sorted({p.source_key for p in points}):
            train = [p for p in points if p.source_key != key]
            test = [p for p in points if p.source_key == key]
            if not train:
                continue
            s = score(test, fit(train, prior))  # from the neutral start: the held-out source cannot leak in
            held += s.tps_errors
            held_itl += s.itl_errors
        print(f"leave-one-source-out: tokens/s within +-25%: {_share(held, TPS_TOLERANCE):.0%}, "
              f"ITL within +-20%: {_share(held_itl, ITL_TOLERANCE):.0%}\n")
    scores = report(points, cal)
    ok = scores.tps_within >= TPS_TARGET and scores.itl_within >= ITL_TARGET
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
