"""Accuracy of gpu_inference.sizing against real vLLM startup logs (vllm-memory-calibration.csv).

    .venv/bin/python bench/sizing_accuracy.py [--csv PATH] [--fit]

For every row the tool can answer it prints logged vs predicted KV tokens (KV GiB when the log has no token
count), the error, logged vs predicted max concurrency, and for FAILED rows whether the sizing refused too.
Rows whose inputs are missing (model, version, GPU memory, utilization) are listed as skipped with the reason.

The activation / non-torch terms in gpu_inference/data/vllm_calibration.yaml were fitted on this same CSV, so
the main figures are in-sample. ``--fit`` refits the activation coefficients by least squares and prints a
leave-one-row-out figure for the activation rows (each row predicted with coefficients fitted without it).
Exit status is non-zero when a target is missed: ≥ 90 % of answered rows within ±2 % on KV, every logged
refusal caught, no ``fits: true`` for a row vLLM refused.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpu_inference.model_arch import ModelArchitecture, UnknownModel, resolve_model  # noqa: E402
from gpu_inference.sizing import (  # noqa: E402
    ActivationTerms,
    SizingRequest,
    SizingResult,
    VersionCalibration,
    calibration_for,
    load_calibration,
    size_deployment,
)

TOLERANCE = 0.02
TARGET_WITHIN = 0.90

# Totals CUDA reports (GiB) for GPUs named without a figure; from the reference's table of observed totals.
GPU_TOTALS_GIB = {
    "h100": 79.19,
    "a100-80": 79.15,
    "a100 80": 79.15,
    "a100 40": 39.5,
    "l40s": 44.42,
    "rtx 3090": 23.58,
    "rtx 4090": 23.55,
    "mi300x": 191.98,
}


def default_csv() -> Path:
    env = os.environ.get("GPU_INFERENCE_CALIBRATION_CSV")
    if env:
        return Path(env)
    # In the repo, with each row's source in its `source` column (bench/data/README.md).
    return REPO / "bench" / "data" / "vllm-memory-calibration.csv"


def _first_number(text: str) -> float | None:
    match = re.search(r"-?\d[\d,]*\.?\d*", text or "")
    if not match:
        return None
    return float(match.group(0).replace(",", ""))


def _first_int(text: str) -> int | None:
    value = _first_number(text)
    return int(value) if value is not None else None


def _flag(notes: str, name: str) -> int | None:
    match = re.search(rf"--{name}[ =](\d+)", notes or "")
    return int(match.group(1)) if match else None


@dataclass
class Row:
    raw: dict[str, str]
    id: str
    request: SizingRequest | None = None
    skip_reason: str = ""
    refused_in_log: bool = False
    logged_tokens: int | None = None
    logged_kv_gib: float | None = None
    logged_concurrency: float | None = None
    logged_activation: float | None = None
    notes: list[str] = field(default_factory=list)


def _version(text: str) -> str | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return f"{match.group(1)}.{match.group(2)}.{match.group(3) or 0}"


def _model(text: str) -> ModelArchitecture | None:
    cleaned = re.sub(r"\(.*?\)", "", text or "").strip().strip("'\"")
    if not cleaned or " " in cleaned:
        return None
    try:
        return resolve_model(cleaned)
    except UnknownModel:
        return None


def _gpu_total(row: dict[str, str]) -> float | None:
    reported = _first_number(row["gpu_total_gib_reported"].lstrip("~"))
    if reported is not None:
        return reported
    mib = re.search(r"(\d[\d,]*) MiB", row["gpu"])  # e.g. '96 GB GPU (97,887 MiB; ...)': nvidia-smi's total
    if mib:
        return round(float(mib.group(1).replace(",", "")) / 1024, 2)
    name = row["gpu"].lower()
    for key, total in GPU_TOTALS_GIB.items():
        if key in name:
            return total
    return None


def _quantization(row_quant: str, model: ModelArchitecture) -> str | None:
    text = (row_quant or "").lower()
    if not text or text.startswith("none") or text.startswith("("):
        return None
    ckpt = model.quantization.method
    if ckpt != "none":
        return None  # a pre-quantized checkpoint: its own config decides
    if "fp8" in text:
        return "fp8"
    if "bitsandbytes" in text or "int4" in text or "4-bit" in text:
        return "int4"
    if "int8" in text or "w8a8" in text:
        return "int8"
    return None


def parse_row(raw: dict[str, str]) -> Row:
    row = Row(raw=raw, id=raw["id"])
    row.refused_in_log = raw["outcome"].strip().upper().startswith("FAILED")
    row.logged_tokens = _first_int(raw["kv_cache_tokens"])
    row.logged_kv_gib = _first_number(raw["kv_cache_gib_per_gpu"])
    row.logged_concurrency = _first_number(raw["max_concurrency"])
    act = raw["activation_peak_gib"]
    row.logged_activation = None if "peak_torch" in act else _first_number(act)
    peak_text = act if "peak_torch" in act else raw["notes"]
    match = re.search(r"peak_torch_memory=([\d.]+)", peak_text)
    if match and row.logged_activation is None:  # V0 ~0.6.4 logs peak torch memory including the weights
        peak, weights = float(match.group(1)), _first_number(raw["weights_gib_per_gpu"])
        if peak is not None and weights is not None:
            row.logged_activation = round(peak - weights, 3)

    version = _version(raw["vllm_version"])
    model = _model(raw["model_id"])
    total = _gpu_total(raw)
    util = _first_number(raw["gpu_memory_utilization"])
    tp = _first_int(raw["tensor_parallel_size"]) or 1
    if version is None:
        row.skip_reason = f"vLLM version not stated ({raw['vllm_version'][:40]!r})"
    elif model is None:
        row.skip_reason = f"model not identified in the log ({raw['model_id'][:50]!r})"
    elif total is None:
        row.skip_reason = f"GPU total memory unknown ({raw['gpu'][:40]!r})"
    elif util is None:
        row.skip_reason = "gpu_memory_utilization not stated"
    elif "INFERRED" in raw["tensor_parallel_size"]:
        row.skip_reason = "tensor parallel size inferred, not logged"
    if row.skip_reason:
        return row
    assert model is not None and version is not None and total is not None and util is not None
    dtype_text = raw["dtype"].split()[0] if raw["dtype"].strip() else "auto"
    dtype = dtype_text if dtype_text in ("bfloat16", "float16", "float32") else "auto"
    engine_text = raw["engine"].strip().upper()
    engine: Literal["v0", "v1"] | None = (
        "v0" if engine_text.startswith("V0") else "v1" if engine_text.startswith("V1") else None
    )
    notes = raw["notes"]
    row.request = SizingRequest(
        model=model,
        gpu_memory_gib=total,
        gpu_name=raw["gpu"],
        tensor_parallel_size=tp,
        pipeline_parallel_size=_first_int(raw["pipeline_parallel_size"]) or 1,
        max_model_len=_first_int(raw["max_model_len"]),
        gpu_memory_utilization=util,
        dtype=dtype,  # type: ignore[arg-type]
        quantization=_quantization(raw["quantization"], model),  # type: ignore[arg-type]
        kv_cache_dtype="fp8" if raw["kv_cache_dtype"].strip() == "fp8" else "auto",
        max_num_seqs=_flag(notes, "max-num-seqs"),
        max_num_batched_tokens=_flag(notes, "max-num-batched-tokens"),
        vllm_version=version,
        engine=engine,
        block_size=_first_int(raw["block_size"].split("(")[0]) or 16,
        gpu_free_memory_gib=_free_at_startup(notes),
    )
    max_len = row.request.max_model_len
    if max_len and max_len > model.max_position_embeddings and "yarn" in notes.lower():
        row.request = None
        row.skip_reason = "max_model_len extended by a YaRN rope-scaling override, which the sizing does not model"
        return row
    inconsistent = _inconsistency(row, total * util)
    if inconsistent:
        row.request = None
        row.skip_reason = inconsistent
        return row
    if row.request.max_model_len is None:
        row.notes.append("max_model_len not logged: model default")
    return row


def _free_at_startup(notes: str) -> float | None:
    match = re.search(r"init free=([\d.]+) GiB", notes or "")
    return float(match.group(1)) if match else None


def _inconsistency(row: Row, budget: float) -> str:
    """A log whose own terms do not add up (budget − weights − activation − non-torch ≠ its KV GiB) cannot be
    answered by any model of those terms. PP rows are exempt: their terms come from different stages."""
    raw = row.raw
    weights, non_torch = _first_number(raw["weights_gib_per_gpu"]), _first_number(raw["non_torch_gib"])
    if None in (weights, row.logged_activation, non_torch, row.logged_kv_gib) or row.refused_in_log:
        return ""
    if (_first_int(raw["pipeline_parallel_size"]) or 1) > 1:
        return ""
    assert weights is not None and non_torch is not None and row.logged_activation is not None
    assert row.logged_kv_gib is not None
    implied = budget - weights - row.logged_activation - non_torch
    if abs(implied - row.logged_kv_gib) <= 0.05 + 0.02 * abs(row.logged_kv_gib):
        return ""
    return (f"the log's terms disagree: budget {budget:.2f} − weights − activation − non-torch = {implied:.2f} GiB, "
            f"but it logs {row.logged_kv_gib:.2f} GiB of KV cache")


@dataclass
class Outcome:
    row: Row
    result: SizingResult
    error: float | None
    metric: str


def evaluate(row: Row, calibration: VersionCalibration | None = None) -> Outcome:
    assert row.request is not None
    result = size_deployment(row.request, calibration=calibration)
    if row.logged_tokens:
        predicted = result.kv_cache_tokens
        error = (predicted - row.logged_tokens) / row.logged_tokens
        metric = "tokens"
    elif row.logged_kv_gib is not None and row.logged_kv_gib > 0:
        stage0 = result.gpus[0].kv_cache_gib  # logs come from rank 0
        error = (stage0 - row.logged_kv_gib) / row.logged_kv_gib
        metric = "KV GiB"
    else:
        error, metric = None, "-"
    return Outcome(row=row, result=result, error=error, metric=metric)


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(outcomes: list[Outcome], skipped: list[Row], total_rows: int, in_fit: set[str],
           loo: list[tuple[Row, float]], lovo: list[tuple[Row, float]]) -> bool:
    print(f"{'id':>4} {'model':44} {'vLLM':8} {'GPU':12} {'TP/PP':5} {'metric':7} {'logged':>11} "
          f"{'predicted':>11} {'err%':>7} {'conc log':>8} {'conc pred':>9} fit  outcome")
    for o in outcomes:
        r, res = o.row, o.result
        req = r.request
        assert req is not None
        if o.metric == "tokens":
            logged, predicted = _fmt(r.logged_tokens, ","), _fmt(res.kv_cache_tokens, ",")
        elif o.metric == "KV GiB":
            logged, predicted = _fmt(r.logged_kv_gib, ".2f"), _fmt(res.gpus[0].kv_cache_gib, ".2f")
        else:
            logged, predicted = "-", _fmt(res.kv_cache_tokens, ",")
        err = "-" if o.error is None else f"{o.error * 100:+.2f}"
        outcome = "ok" if res.fits else "REFUSED"
        if r.refused_in_log:
            outcome = f"log FAILED; {'refused (caught)' if not res.fits else 'fits: true (MISSED)'}"
        elif not res.fits:
            outcome = f"log ok; REFUSED (false refusal): {res.problems[0][:60]}"
        print(f"{r.id:>4} {req.model.id[:44]:44} {req.vllm_version:8} {r.raw['gpu'][:12]:12} "
              f"{req.tensor_parallel_size}/{req.pipeline_parallel_size:<3} {o.metric:7} {logged:>11} {predicted:>11} "
              f"{err:>7} {_fmt(r.logged_concurrency, '.2f'):>8} {res.max_concurrency:>9.2f} "
              f"{'fit' if r.id in in_fit else '   '}  {outcome}")
    print()
    print("Skipped rows (inputs insufficient):")
    for r in skipped:
        print(f"  {r.id:>4}: {r.skip_reason}")
    measured = [o for o in outcomes if o.error is not None]
    within = [o for o in measured if abs(o.error or 0) <= TOLERANCE]
    refusals = [o for o in outcomes if o.row.refused_in_log]
    caught = [o for o in refusals if not o.result.fits]
    false_fits = len(refusals) - len(caught)
    false_refusals = [o for o in outcomes if not o.row.refused_in_log and not o.result.fits]
    share = len(within) / len(measured) if measured else 0.0
    print()
    print(f"rows answered: {len(outcomes)} / {total_rows} ({len(skipped)} skipped)")
    print(f"KV within ±{TOLERANCE:.0%}: {len(within)} / {len(measured)} = {share:.1%} "
          f"(target ≥ {TARGET_WITHIN:.0%}) [in-sample: the calibration was fitted on these rows]")
    v19 = [o for o in measured if o.row.request and o.row.request.vllm_version.startswith("0.19")]
    if v19:
        v19_within = sum(abs(o.error or 0) <= TOLERANCE for o in v19)
        print(f"  of which pinned v0.19: {v19_within} / {len(v19)}")
    outside = [o for o in measured if o.row.id not in in_fit]
    outside_within = sum(abs(o.error or 0) <= TOLERANCE for o in outside)
    print(f"  out-of-sample rows (no logged term of theirs entered the calibration; no 'fit' mark): "
          f"{outside_within} / {len(outside)} within ±{TOLERANCE:.0%}")
    if loo:
        loo_within = sum(abs(err) <= TOLERANCE for _, err in loo)
        print(f"  held-out (leave-one-configuration-out refit of the activation terms): {loo_within} / {len(loo)} "
              f"within ±{TOLERANCE:.0%} on KV")
    if lovo:
        lovo_within = sum(abs(err) <= TOLERANCE for _, err in lovo)
        print(f"  held-out by version (activation refitted without the row's vLLM version): {lovo_within} / "
              f"{len(lovo)} within ±{TOLERANCE:.0%} on KV")
    print(f"refusals caught: {len(caught)} / {len(refusals)} logged refusals (target all)")
    print(f"fits: true for rows vLLM refused: {false_fits} (target 0)")
    print(f"false refusals (vLLM started, sizing refused): {len(false_refusals)}")
    return share >= TARGET_WITHIN and len(caught) == len(refusals) and false_fits == 0


# ---- refit (activation) ----------------------------------------------------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Least squares via the normal equations (tiny systems; no numpy in the venv)."""
    n = len(a[0])
    ata = [[sum(row[i] * row[j] for row in a) + (1e-9 if i == j else 0.0) for j in range(n)] for i in range(n)]
    atb = [sum(row[i] * y for row, y in zip(a, b, strict=True)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(ata[r][col]))
        ata[col], ata[pivot] = ata[pivot], ata[col]
        atb[col], atb[pivot] = atb[pivot], atb[col]
        for r in range(n):
            if r != col and ata[col][col]:
                factor = ata[r][col] / ata[col][col]
                ata[r] = [x - factor * y for x, y in zip(ata[r], ata[col], strict=True)]
                atb[r] -= factor * atb[col]
    return [atb[i] / ata[i][i] if ata[i][i] else 0.0 for i in range(n)]


def _features(row: Row, names: list[str]) -> list[float]:
    from gpu_inference import sizing

    req = row.request
    assert req is not None
    cal = calibration_for(req.vllm_version, req.engine)
    result = size_deployment(req)
    values = []
    for name in names:
        probe = cal.model_copy(update={"activation": ActivationTerms(**{name: 1.0})})
        values.append(sizing._activation_gib(
            probe, req.model, tp=req.tensor_parallel_size, is_last_stage=True, is_first_stage=True,
            max_num_seqs=result.max_num_seqs, batched_tokens=result.max_num_batched_tokens,
            dtype_bytes=sizing.DTYPE_BYTES[result.dtype],
        ))
    return values


def _fit_sets(rows: list[Row]) -> dict[str, list[tuple[Row, list[float]]]]:
    """Rows that enter the activation fit, per calibration range, identical inputs counted once."""
    by_range: dict[str, list[tuple[Row, list[float]]]] = {}
    for r in rows:
        if r.request is None or r.logged_activation is None or r.request.pipeline_parallel_size > 1:
            continue
        cal = calibration_for(r.request.vllm_version, r.request.engine)
        if int(r.id) in cal.excluded_from_fit or not cal.fit_features:
            continue
        x = _features(r, cal.fit_features)
        members = by_range.setdefault(cal.name, [])
        if not any(x == other and r.logged_activation == o.logged_activation for o, other in members):
            members.append((r, x))
    return by_range


def _with_coefficients(cal: VersionCalibration, coef: list[float]) -> VersionCalibration:
    terms = cal.activation.model_copy(update=dict(zip(cal.fit_features, coef, strict=True)))
    return cal.model_copy(update={"activation": terms})


def fitted_rows(rows: list[Row]) -> set[str]:
    """Rows whose own logged terms (activation, non-torch) informed the calibration: in-sample rows.

    Rows the calibration excludes, and rows that log only KV figures, are out of sample.
    """
    ids: set[str] = set()
    for r in rows:
        if r.request is None:
            continue
        cal = calibration_for(r.request.vllm_version, r.request.engine)
        logged_terms = r.logged_activation is not None or _first_number(r.raw["non_torch_gib"]) is not None
        if logged_terms and int(r.id) not in cal.excluded_from_fit:
            ids.add(r.id)
    return ids


def _key(r: Row) -> tuple[object, ...]:
    req = r.request
    assert req is not None
    return (req.model.id, req.vllm_version, req.dtype, req.quantization, req.tensor_parallel_size,
            req.gpu_memory_gib)


def held_out(rows: list[Row]) -> list[tuple[Row, float]]:
    """Leave-one-configuration-out: each fit row's KV predicted with coefficients fitted without it."""
    results: list[tuple[Row, float]] = []
    for name, members in _fit_sets(rows).items():
        cal = next(c for c in load_calibration() if c.name == name)
        if len(members) <= len(cal.fit_features):
            continue  # too few rows to leave one out
        xs = [x for _, x in members]
        ys = [r.logged_activation or 0.0 for r, _ in members]
        for i, (left_out, _) in enumerate(members):
            coef = _solve(xs[:i] + xs[i + 1:], ys[:i] + ys[i + 1:])
            probe = _with_coefficients(cal, coef)
            for r in rows:
                if r.request is None or _key(r) != _key(left_out):
                    continue
                outcome = evaluate(r, probe)
                if outcome.error is not None:
                    results.append((r, outcome.error))
    return results


def held_out_by_version(rows: list[Row]) -> list[tuple[Row, float]]:
    """Leave-one-version-out: rows of each vLLM version predicted with coefficients fitted on the others."""
    results: list[tuple[Row, float]] = []
    for name, members in _fit_sets(rows).items():
        cal = next(c for c in load_calibration() if c.name == name)
        versions = {r.request.vllm_version for r, _ in members if r.request is not None}
        if len(versions) < 2:
            continue
        for version in sorted(versions):
            kept = [(r, x) for r, x in members if r.request is not None and r.request.vllm_version != version]
            if len(kept) < len(cal.fit_features):
                continue  # not enough other versions to fit every coefficient
            coef = _solve([x for _, x in kept], [r.logged_activation or 0.0 for r, _ in kept])
            probe = _with_coefficients(cal, coef)
            for r in rows:
                if r.request is None or r.request.vllm_version != version:
                    continue
                if calibration_for(r.request.vllm_version, r.request.engine).name != name:
                    continue
                outcome = evaluate(r, probe)
                if outcome.error is not None:
                    results.append((r, outcome.error))
    return results


def refit(rows: list[Row]) -> None:
    """Print least-squares activation coefficients per calibration range, with leave-one-out activation."""
    for name, members in _fit_sets(rows).items():
        cal = next(c for c in load_calibration() if c.name == name)
        xs = [x for _, x in members]
        ys = [r.logged_activation or 0.0 for r, _ in members]
        coef = _solve(xs, ys)
        print(f"[{name}] {len(members)} distinct rows: "
              + ", ".join(f"{n}={c:.4f}" for n, c in zip(cal.fit_features, coef, strict=True)))
        for i, (r, x) in enumerate(members):
            fitted = sum(c * f for c, f in zip(coef, x, strict=True))
            held = None
            if len(members) > len(cal.fit_features):
                loo = _solve(xs[:i] + xs[i + 1:], ys[:i] + ys[i + 1:])
                held = sum(c * f for c, f in zip(loo, x, strict=True))
            assert r.request is not None
            print(f"   row {r.id:>4} {r.request.model.id[:40]:40} logged {ys[i]:6.2f} fitted {fitted:6.2f} "
                  f"held-out {_fmt(held, '6.2f')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=default_csv())
    parser.add_argument("--fit", action="store_true", help="refit activation coefficients, print held-out errors")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        print(f"calibration CSV not found: {args.csv} (set GPU_INFERENCE_CALIBRATION_CSV)", file=sys.stderr)
        return 2
    with args.csv.open(newline="") as handle:
        raws = list(csv.DictReader(handle))
    rows = [parse_row(raw) for raw in raws]
    if args.fit:
        refit(rows)
        return 0
    answered = [r for r in rows if r.request is not None]
    skipped = [r for r in rows if r.request is None]
    outcomes = [evaluate(r) for r in answered]
    ok = report(outcomes, skipped, len(rows), fitted_rows(rows), held_out(rows), held_out_by_version(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
