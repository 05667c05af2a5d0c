"""fit_advice: every fix it returns really fits (re-sized from scratch) and the first is the cheapest that does."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_inference.catalog import load_catalog
from gpu_inference.config import StackConfig
from gpu_inference.fit_advice import FitFix, advise_fit, candidate_offerings, format_fixes
from gpu_inference.stack import ResolvedStack, resolve_stack


def stack(**cfg: Any) -> ResolvedStack:
    raw: dict[str, Any] = {
        "provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
        "monthlyBudgetUsd": 10_000,
    }
    raw.update(cfg)
    return resolve_stack(StackConfig.model_validate(raw), name="test")


def apply_fix(rs: ResolvedStack, fix: FitFix) -> ResolvedStack:
    """The fix applied to the stack config the way a user would, then resolved again from scratch."""
    raw = rs.config.model_dump(by_alias=True, exclude_none=True, exclude={"api_key", "hf_token"})
    raw.update(fix.config_changes)
    return resolve_stack(StackConfig.model_validate(raw), name="fixed")


def brute_force_cheapest(rs: ResolvedStack) -> float:
    """Cheapest monthly GPU cost over every offering in the region x {as is, fp8/awq}, x shorter contexts."""
    best = float("inf")
    cat = load_catalog()
    for o in cat.offerings_for(rs.cloud.catalog_cloud):
        if rs.config.region not in o.regions or cat.gpu(o.gpu).vendor != rs.gpu.vendor:
            continue
        for quant in (None, "fp8" if cat.gpu(o.gpu).fp8 else "awq"):
            raw = rs.config.model_dump(by_alias=True, exclude_none=True, exclude={"api_key", "hf_token"})
            raw.update({"gpu": o.id, "tensorParallelSize": o.gpu_count})
            if quant:
                raw["quantization"] = quant
            candidate = resolve_stack(StackConfig.model_validate(raw))
            if candidate.sizing.fits:
                best = min(best, o.monthly_usd * rs.config.node_count)
    return best


def test_nothing_to_fix_when_it_fits() -> None:
    assert advise_fit(stack()) == []


@pytest.mark.parametrize(
    "cfg",
    [
        {"model": "meta-llama/Llama-3.3-70B-Instruct"},
        {"model": "Qwen/Qwen3-32B"},
        {"model": "Qwen/Qwen3-8B", "provider": "aws", "region": "us-east-1", "gpu": "g6.xlarge", "maxModelLen": 40960},
        {"model": "Qwen/Qwen3-14B", "provider": "aws", "region": "us-east-1", "gpu": "g5.xlarge"},
        {"model": "meta-llama/Llama-3.3-70B-Instruct", "provider": "aws", "region": "us-east-1", "gpu": "g6e.xlarge"},
    ],
)
def test_every_fix_really_fits_and_the_first_is_the_cheapest(cfg: dict[str, Any]) -> None:
    rs = stack(**cfg)
    assert not rs.sizing.fits
    fixes = advise_fit(rs, limit=10)
    assert fixes, "a fix exists for each of these"
    for fix in fixes:
        fixed = apply_fix(rs, fix)
        assert fixed.sizing.fits, fix.line()
        assert fixed.offering.monthly_usd * rs.config.node_count == pytest.approx(fix.monthly_usd, abs=0.01)
        assert fixed.sizing.kv_cache_tokens == fix.kv_cache_tokens
    assert [f.monthly_usd for f in fixes] == sorted(f.monthly_usd for f in fixes)
    assert fixes[0].monthly_usd == pytest.approx(brute_force_cheapest(rs), abs=0.01)


def test_quantize_first_when_fp8_makes_it_fit_on_the_same_gpu() -> None:
    rs = stack(model="Qwen/Qwen3-32B")
    first = advise_fit(rs)[0]
    assert first.kind == "quantize" and first.config_changes == {"quantization": "fp8"}
    assert first.monthly_usd == pytest.approx(rs.offering.monthly_usd, abs=0.01)
    assert "online FP8" in first.summary


def test_awq_on_a_gpu_without_fp8_and_a_same_size_fp8_gpu_when_cheaper() -> None:
    rs = stack(model="Qwen/Qwen3-14B", provider="aws", region="us-east-1", gpu="g5.xlarge")
    assert not rs.gpu.fp8
    fixes = advise_fit(rs, limit=5)
    # g6.xlarge (L4, same 24 GB but FP8) is cheaper than g5.xlarge and fits with fp8.
    assert fixes[0].kind == "other-gpu" and fixes[0].config_changes["gpu"] == "g6.xlarge"
    assert fixes[0].config_changes["quantization"] == "fp8"
    awq = next(f for f in fixes if f.kinds == ("quantize",))
    assert awq.config_changes == {"quantization": "awq"} and "AWQ checkpoint" in awq.summary


def test_lower_max_model_len_is_offered_when_only_the_context_is_too_long() -> None:
    rs = stack(model="Qwen/Qwen3-8B", provider="aws", region="us-east-1", gpu="g6.xlarge", maxModelLen=40960)
    fixes = advise_fit(rs, limit=5)
    shorter = next(f for f in fixes if f.kind == "max-model-len")
    assert shorter.config_changes == {"maxModelLen": rs.sizing.max_model_len_that_fits}
    assert shorter.monthly_usd == pytest.approx(rs.offering.monthly_usd, abs=0.01)
    # At equal price, quantizing (keeps the context) comes before shortening it.
    assert [f.kind for f in fixes[:2]] == ["quantize", "max-model-len"]


def test_more_gpus_sets_tensor_parallel_to_the_gpu_count() -> None:
    rs = stack(model="meta-llama/Llama-3.3-70B-Instruct")
    multi = next(f for f in advise_fit(rs, limit=10) if f.kind == "more-gpus")
    assert multi.gpu_count == multi.tensor_parallel_size == multi.config_changes["tensorParallelSize"] > 1


def test_candidates_stay_in_the_provider_region_and_vendor() -> None:
    rs = stack(model="meta-llama/Llama-3.3-70B-Instruct")
    offerings = candidate_offerings(rs)
    assert offerings and all(o.cloud == "digitalocean" and "tor1" in o.regions for o in offerings)
    assert all(load_catalog().gpu(o.gpu).vendor == "nvidia" for o in offerings)
    assert rs.offering.id not in {o.id for o in offerings}


def test_node_count_multiplies_the_price() -> None:
    one = advise_fit(stack(model="Qwen/Qwen3-32B"))[0]
    three = advise_fit(stack(model="Qwen/Qwen3-32B", nodeCount=3))[0]
    assert three.monthly_usd == pytest.approx(3 * one.monthly_usd)


def test_format_fixes_leads_with_the_cheapest() -> None:
    fixes = advise_fit(stack(model="Qwen/Qwen3-32B"))
    assert len(fixes) > 1
    text = format_fixes(fixes)
    assert text.startswith(fixes[0].summary) and "Alternatives:" in text
    assert format_fixes([]) == ""
