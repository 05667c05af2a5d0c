"""`plan`: candidates, their bills (the same as `cost`), the fixed JSON keys and a written stack that previews."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_inference.cli import main
from gpu_inference.config import stack_file_path
from gpu_inference.model_arch import resolve_model
from gpu_inference.planner import (
    HEADROOM,
    JSON_KEYS,
    PERFORMANCE_ONLY_KEYS,
    Plan,
    PlanRequest,
    make_plan,
    stack_config,
    stack_file_text,
)
from gpu_inference.preview_runner import run_preview

WORKED = ["Qwen/Qwen3-8B", "--rps", "5", "--input-tokens", "1000", "--output-tokens", "300", "--itl-ms", "50",
          "--ttft-ms", "1000"]  # fmt: skip


def fake_pricer(cfg: dict[str, Any]) -> float:
    """A stand-in bill for logic tests: $1000 per node (the real bill has its own tests below)."""
    return 1000.0 * cfg["nodeCount"]


def request(**kw: Any) -> PlanRequest:
    fields: dict[str, Any] = {"model": resolve_model("Qwen/Qwen3-8B"), "model_ref": "Qwen/Qwen3-8B", "rps": 5,
                              "input_tokens": 1000, "output_tokens": 300}
    fields.update(kw)
    return PlanRequest(**fields)


@pytest.fixture(scope="module")
def do_plan_json() -> dict[str, Any]:
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["plan", *WORKED, "--provider", "digitalocean", "--region", "tor1", "--json"])
    assert code == 0
    return json.loads(buffer.getvalue())


def test_json_candidates_have_exactly_the_fixed_keys_sorted_by_bill(do_plan_json: dict[str, Any]) -> None:
    candidates = do_plan_json["candidates"]
    assert candidates
    for c in candidates:
        assert tuple(c) == JSON_KEYS
        assert c["provider"] == "digitalocean" and c["region"] == "tor1"
        assert c["itl_ms"] <= 50 and c["ttft_ms"] <= 1000
    bills = [c["monthly_usd"] for c in candidates]
    assert bills == sorted(bills)


def _preview_bill(cfg: dict[str, Any], tmp_path: Path, name: str = "plan") -> float:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(stack_file_text(cfg, "test"))
    return run_preview(str(path), None).monthly_cost_usd


def test_each_bill_is_what_the_preview_and_cost_bill_for_that_stack(tmp_path: Path) -> None:
    plan = make_plan(request(providers=("digitalocean", "aws"), itl_ms=50.0))
    shown = [*plan.candidates[:2], next(c for c in plan.candidates if c.provider == "aws")]
    multi = next((c for c in plan.candidates if c.node_count > 1), None)
    for c in [*shown, *([multi] if multi else [])]:
        assert c.monthly_usd == pytest.approx(_preview_bill(c.config, tmp_path), abs=0.01), c.offering
    assert plan.previews < len(plan.candidates)  # configs differing only in vLLM flags share a preview


@pytest.mark.parametrize("provider,gpu,region", [("digitalocean", "gpu-l40sx1-48gb", "tor1"), ("aws", "g6e.xlarge",
                                                                                                 "us-east-1")])
def test_performance_only_keys_never_change_the_bill(tmp_path: Path, provider: str, gpu: str, region: str) -> None:
    from gpu_inference.catalog import load_catalog

    offering = load_catalog().offering(gpu)
    base = stack_config(request(), provider, region, offering, 1, None, "auto", 2, 64, 8192, 100_000)
    bill = _preview_bill(base, tmp_path)
    changed = {"tensorParallelSize": None, "kvCacheDtype": "fp8", "maxNumSeqs": 8, "maxModelLen": 16384,
               "typicalRequestTokens": 512, "monthlyBudgetUsd": 99_999}
    assert set(changed) == PERFORMANCE_ONLY_KEYS
    for key, value in changed.items():
        cfg = {**base, key: value} if value is not None else {k: v for k, v in base.items() if k != key}
        assert _preview_bill(cfg, tmp_path) == pytest.approx(bill), key
    assert _preview_bill({**base, "nodeCount": 3}, tmp_path) > bill  # and a priced key does


def test_nodes_carry_the_traffic_with_headroom() -> None:
    plan = make_plan(request(rps=40, itl_ms=60.0), pricer=fake_pricer)
    assert plan.candidates
    for c in plan.candidates:
        per_node_rps = c.output_tokens_per_s_per_node / 300
        assert c.node_count * per_node_rps * HEADROOM >= 40 * (1 - 1e-3), c.offering
        assert (c.node_count - 1) * per_node_rps * HEADROOM < 40 * (1 + 1e-3) or c.node_count == 1
        assert c.usd_per_mtok == pytest.approx(c.monthly_usd / (40 * 300 * 730 * 3600) * 1e6, rel=1e-3)


def test_fp8_only_where_the_gpu_has_it() -> None:
    plan = make_plan(request(providers=("aws",)), pricer=fake_pricer)
    ampere = {c.offering for c in plan.candidates if c.gpu in ("A10G", "A100-40GB", "A100-80GB")}
    assert ampere  # A10G and A100 offerings are candidates ...
    for c in plan.candidates:
        if c.gpu in ("A10G", "A100-40GB", "A100-80GB"):  # ... but never with fp8
            assert c.quantization is None and c.kv_cache_dtype == "auto", c
    # ... and not even tried there (not merely refused by the sizing core afterwards)
    assert not [r for r in plan.rejected if r.gpu in ("A10G", "A100-40GB", "A100-80GB")
                and (r.quantization == "fp8" or r.kv_cache_dtype == "fp8")]
    assert any(c.quantization == "fp8" for c in plan.candidates if c.gpu == "L40S")


def test_targets_budget_and_region_reject_with_reasons() -> None:
    impossible = make_plan(request(itl_ms=1.0), pricer=fake_pricer)
    assert not impossible.candidates
    assert all("misses the targets" in r.reason or "does not fit" in r.reason for r in impossible.rejected)
    cheap: Plan = make_plan(request(max_monthly_usd=1500), pricer=fake_pricer)
    assert all(c.monthly_usd <= 1500 for c in cheap.candidates)
    assert any(r.reason.startswith("over budget") for r in cheap.rejected)
    regional = make_plan(request(region="atl1"), pricer=fake_pricer)
    assert {c.offering for c in regional.candidates} <= {"gpu-mi300x1-192gb", "gpu-mi300x8-1536gb"}
    assert any("not offered in atl1" in r.reason for r in regional.rejected)


def test_a_tighter_itl_target_never_plans_fewer_nodes() -> None:
    loose = {(c.offering, c.tensor_parallel_size, c.quantization, c.kv_cache_dtype): c.node_count
             for c in make_plan(request(itl_ms=80.0), pricer=fake_pricer).candidates}
    tight = make_plan(request(itl_ms=30.0), pricer=fake_pricer).candidates
    assert tight
    for c in tight:
        assert c.node_count >= loose[(c.offering, c.tensor_parallel_size, c.quantization, c.kv_cache_dtype)]


@pytest.fixture
def stack_name() -> Iterator[str]:
    name = "plan-test-written"
    yield name
    stack_file_path(name).unlink(missing_ok=True)


def test_write_stack_passes_preview_unchanged(capsys: pytest.CaptureFixture[str], stack_name: str) -> None:
    code = main(["plan", *WORKED, "--provider", "digitalocean", "--json", "--write-stack", stack_name])
    out, err = capsys.readouterr()
    assert code == 0, err
    cheapest = json.loads(out)["candidates"][0]
    path = stack_file_path(stack_name)
    assert path.is_file() and "passes" in err
    assert main(["preview", stack_name, "--no-files", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["monthly_cost_usd"] == pytest.approx(cheapest["monthly_usd"], abs=0.01)
    assert report["budget_usd"] == math.ceil(cheapest["monthly_usd"] * 1.1 / 10) * 10
    text = path.read_text()
    assert f"gpu-inference:gpu: {cheapest['offering']}" in text
    assert f"gpu-inference:nodeCount: {cheapest['node_count']}" in text


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *WORKED, "--write-stack", "bad name!"]) == 2
    assert "--write-stack" in capsys.readouterr().err
    assert main(["plan", "Qwen/Qwen3-8b-typo", "--rps", "1", "--input-tokens", "1", "--output-tokens", "1"]) == 2
    with pytest.raises(SystemExit):
        main(["plan", *WORKED, "--provider", "gcp"])


def test_no_candidate_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "Qwen/Qwen3-8B", "--rps", "1", "--input-tokens", "100", "--output-tokens", "100",
                 "--itl-ms", "0.5", "--provider", "digitalocean", "--region", "tor1"]) == 1
    assert "no candidate" in capsys.readouterr().out
