"""Refit the per-version constants of gpu_inference/data/vllm_calibration.yaml from logged startups.

What is fitted, per calibration range, and only from rows whose logs carry the term:
- activation: the range's ``fit_features`` by least squares on logged ``torch peak memory increase``
  (profile-run ranges: intercept, fp32 copies of the sampler, hidden-sized tensors of the forward pass, with the
  phase that peaks chosen from the current constants and refined twice);
- non-torch memory: single GPU (median), pipeline stage (median), tensor parallel (a + b·TP least squares, or
  the median with the shipped per-rank slope when one TP size is logged).

Everything else (weights, KV pages, the mechanisms of profile_run.py) is computed, not fitted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gpu_inference import sizing
from gpu_inference.profile_run import ProfilePeak, ProfileRunTerms, profile_peak
from gpu_inference.sizing import ActivationTerms, SizingRequest, VersionCalibration, calibration_for


@dataclass(frozen=True)
class FitPoint:
    """One row's contribution to a range's fit."""

    row_id: str
    request: SizingRequest
    logged_activation: float | None
    logged_non_torch: float | None


def _stage_inputs(req: SizingRequest, cal: VersionCalibration) -> dict[str, object]:
    result = sizing.size_deployment(req, calibration=cal)
    return {
        "max_num_seqs": result.max_num_seqs,
        "batched_tokens": result.max_num_batched_tokens,
        "dtype_bytes": sizing.DTYPE_BYTES[result.dtype],
        "max_model_len": result.max_model_len,
        "quant": result.quantization,
    }


def profile_components(req: SizingRequest, cal: VersionCalibration) -> ProfilePeak:
    """The profile-run components of a single-stage request (the rows the activation fit uses)."""
    inputs = _stage_inputs(req, cal)
    assert cal.activation.profile_run is not None
    return profile_peak(
        req.model, tp=req.tensor_parallel_size, is_first_stage=True, is_last_stage=True,
        stage_has_moe=req.model.moe is not None, max_num_seqs=int(str(inputs["max_num_seqs"])),
        batched_tokens=int(str(inputs["batched_tokens"])), max_model_len=int(str(inputs["max_model_len"])),
        dtype_bytes=int(str(inputs["dtype_bytes"])), quant=str(inputs["quant"]),
        multiprocessors=req.gpu_multiprocessors, topk_topp_buffer=cal.activation.profile_run.topk_topp_triton_buffer,
    )


def _legacy_activation(req: SizingRequest, cal: VersionCalibration, terms: ActivationTerms) -> float:
    inputs = _stage_inputs(req, cal)
    probe = cal.model_copy(update={"activation": terms})
    return sizing._activation_gib(
        probe, req.model, tp=req.tensor_parallel_size, is_last_stage=True, is_first_stage=True,
        max_num_seqs=int(str(inputs["max_num_seqs"])), batched_tokens=int(str(inputs["batched_tokens"])),
        dtype_bytes=int(str(inputs["dtype_bytes"])), max_model_len=int(str(inputs["max_model_len"])),
        quant=str(inputs["quant"]), multiprocessors=req.gpu_multiprocessors,
    )


def solve_least_squares(a: list[list[float]], b: list[float]) -> list[float]:
    """Normal equations with Gauss-Jordan elimination (tiny systems; no numpy in the venv)."""
    n = len(a[0])
    ata = [[sum(row[i] * row[j] for row in a) + (1e-12 if i == j else 0.0) for j in range(n)] for i in range(n)]
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


def _fit_profile_run(points: list[FitPoint], cal: VersionCalibration) -> ProfileRunTerms:
    terms = cal.activation.profile_run
    assert terms is not None
    names = [n for n in cal.fit_features if n in ("intercept_gib", "sampler_fp32_copies", "forward_hidden_units")]
    peaks = [(profile_components(p.request, cal), p.logged_activation or 0.0) for p in points]
    for _ in range(3):
        rows: list[list[float]] = []
        ys: list[float] = []
        for peak, logged in peaks:
            copies = max(terms.sampler_fp32_copies - peak.sampler_copies_skipped, 0.0)
            sampler = peak.sampler_fixed_gib + copies * peak.sampler_copy_gib
            forward = peak.forward_fixed_gib + terms.forward_hidden_units * peak.forward_unit_gib
            on_sampler = peak.runs_sampler and sampler >= forward
            feature = {
                "intercept_gib": 1.0,
                "sampler_fp32_copies": peak.sampler_copy_gib if on_sampler else 0.0,
                "forward_hidden_units": 0.0 if on_sampler else peak.forward_unit_gib,
            }
            fixed = peak.persistent_gib
            if on_sampler:
                fixed += peak.sampler_fixed_gib - peak.sampler_copies_skipped * peak.sampler_copy_gib
            else:
                fixed += peak.forward_fixed_gib
            # a coefficient this range does not fit keeps its shipped value
            for name in ("intercept_gib", "sampler_fp32_copies", "forward_hidden_units"):
                if name not in names:
                    fixed += feature[name] * getattr(terms, name)
            rows.append([feature[n] for n in names])
            ys.append(logged - fixed)
        active = [i for i, n in enumerate(names) if any(abs(r[i]) > 0 for r in rows)]
        if not active:
            return terms
        coef = solve_least_squares([[r[i] for i in active] for r in rows], ys)
        terms = terms.model_copy(update={names[i]: c for i, c in zip(active, coef, strict=True)})
    return terms


def _fit_linear_activation(points: list[FitPoint], cal: VersionCalibration) -> ActivationTerms:
    base = cal.activation
    zero = ActivationTerms()
    xs: list[list[float]] = []
    ys: list[float] = []
    for p in points:
        fixed = _legacy_activation(p.request, cal, zero)
        xs.append([_legacy_activation(p.request, cal, ActivationTerms(**{n: 1.0})) - fixed for n in cal.fit_features])
        ys.append((p.logged_activation or 0.0) - fixed)
    coef = solve_least_squares(xs, ys)
    return base.model_copy(update=dict(zip(cal.fit_features, coef, strict=True)))


def _fit_non_torch(points: list[FitPoint], cal: VersionCalibration) -> VersionCalibration:
    nt = cal.non_torch
    logged = [p for p in points if p.logged_non_torch is not None]
    single = [p.logged_non_torch or 0.0 for p in logged
              if p.request.tensor_parallel_size == 1 and p.request.pipeline_parallel_size == 1]
    stages = [p.logged_non_torch or 0.0 for p in logged
              if p.request.tensor_parallel_size == 1 and p.request.pipeline_parallel_size > 1]
    tp = [p for p in logged if p.request.tensor_parallel_size > 1
          and not (p.request.tensor_parallel_size > 2 and sizing._is_pcie_only(p.request.gpu_name))]
    update: dict[str, float] = {}
    if single:
        update["single_gpu_gib"] = round(statistics.median(single), 3)
    if stages:
        update["pipeline_stage_gib"] = round(statistics.median(stages), 3)
    sizes = {p.request.tensor_parallel_size for p in tp}
    if len(sizes) >= 2:
        a, b = solve_least_squares([[1.0, float(p.request.tensor_parallel_size)] for p in tp],
                                   [p.logged_non_torch or 0.0 for p in tp])
        update.update(tensor_parallel_gib=round(a, 3), tensor_parallel_per_rank_gib=round(b, 4))
    elif tp:
        size = next(iter(sizes))
        update["tensor_parallel_gib"] = round(
            statistics.median(p.logged_non_torch or 0.0 for p in tp) - nt.tensor_parallel_per_rank_gib * size, 3)
    return cal.model_copy(update={"non_torch": nt.model_copy(update=update)})


def fit_range(cal: VersionCalibration, points: list[FitPoint]) -> VersionCalibration:
    """The range's constants refitted on ``points`` (constants without data keep their shipped values)."""
    activation_points = [p for p in points if p.logged_activation is not None
                         and p.request.pipeline_parallel_size == 1]
    if cal.fit_features and len(_distinct(activation_points)) > len(cal.fit_features):
        if cal.activation.profile_run is not None:
            terms = _fit_profile_run(activation_points, cal)
            cal = cal.model_copy(update={"activation": cal.activation.model_copy(update={"profile_run": terms})})
        else:
            cal = cal.model_copy(update={"activation": _fit_linear_activation(activation_points, cal)})
    if cal.fit_non_torch:
        cal = _fit_non_torch(points, cal)
    return cal


def _distinct(points: Iterable[FitPoint]) -> list[FitPoint]:
    seen: set[tuple[object, ...]] = set()
    kept: list[FitPoint] = []
    for p in points:
        r = p.request
        key = (r.model.id, r.tensor_parallel_size, r.dtype, r.quantization, r.kv_cache_dtype, r.max_num_seqs,
               r.gpu_memory_gib, r.vllm_version, p.logged_activation)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept


def fit_all(points: list[FitPoint], shipped: tuple[VersionCalibration, ...]) -> dict[str, VersionCalibration]:
    """Every range refitted on the points that fall in it."""
    by_range: dict[str, list[FitPoint]] = {}
    for p in points:
        name = calibration_for(p.request.vllm_version, p.request.engine).name
        by_range.setdefault(name, []).append(p)
    return {cal.name: fit_range(cal, by_range.get(cal.name, [])) for cal in shipped}


def predictor(fitted: dict[str, VersionCalibration]) -> Callable[[SizingRequest], VersionCalibration]:
    def pick(req: SizingRequest) -> VersionCalibration:
        return fitted[calibration_for(req.vllm_version, req.engine).name]
    return pick
