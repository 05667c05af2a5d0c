"""The CLI as other tools call it: `size` and `cost` flags, JSON keys and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpu_inference.cli import main
from gpu_inference.commands.size import PER_GPU_KEYS
from gpu_inference.constants import HOURS_PER_MONTH, PROJECT_DIR

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_size_json_has_the_fixed_keys_per_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "size", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100-80GB",
        "--tensor-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.95", "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert len(data["gpus"]) == 2
    for gpu in data["gpus"]:
        assert set(PER_GPU_KEYS) <= set(gpu)
        assert gpu["fits"] is True and gpu["problems"] == []
        assert gpu["kv_cache_tokens"] % 16 == 0
    # The reproduction the calibration log shows for this exact run (v0.19, TP2): 1,044,688 tokens.
    assert data["kv_cache_tokens"] == pytest.approx(1_044_688, rel=0.02)


def test_size_accepts_every_fixed_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "size", "Qwen/Qwen2.5-7B-Instruct", "--gpu-memory-gib", "79.19",
        "--tensor-parallel-size", "1", "--pipeline-parallel-size", "2", "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.9", "--dtype", "bfloat16", "--quantization", "fp8",
        "--kv-cache-dtype", "fp8", "--vllm-version", "0.19.0", "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert [g["stage"] for g in data["gpus"]] == [0, 1]
    assert data["kv_cache_dtype"] == "fp8" and data["quantization"] == "fp8"


def test_size_does_not_fit_exits_1_with_problems(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "size", "meta-llama/Llama-3.3-70B-Instruct", "--gpu", "L40S", "--max-model-len", "8192", "--json"
    )
    assert code == 1
    data = json.loads(out)
    assert data["fits"] is False
    assert any("out of memory" in p.lower() for p in data["gpus"][0]["problems"])


def test_size_table_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "size", "Qwen/Qwen3-8B", "--gpu", "gpu-l40sx1-48gb", "--max-model-len", "8192")
    assert code == 0
    assert "FITS" in out and "KV tokens" in out and "Rule of thumb" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["size", "Qwen/Qwen3-8b-typo", "--gpu", "L40S"], "Did you mean: Qwen/Qwen3-8B"),
        (["size", "Qwen/Qwen3-8B", "--gpu", "L40"], "did you mean 'L40S'"),
        (["size", "Qwen/Qwen3-8B", "--gpu-memory-gib", "-3"], "--gpu-memory-gib"),
    ],
)
def test_size_bad_input_exits_2_with_one_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert fragment in err and "Traceback" not in err


def test_cost_dev_matches_hand_computed_bill(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "cost", "dev", "--tokens-per-second", "1000", "--api-price-per-mtok", "0.6",
                           "--utilization", "0.5", "--json")
    assert code == 0
    data = json.loads(out)
    # 1 × gpu-l40sx1-48gb at $1.57/h, Nginx s-1vcpu-2gb capped at $12, Prometheus s-2vcpu-4gb capped at $24,
    # its 20 GB data volume at $0.10/GB-month.
    expected = 1.57 * HOURS_PER_MONTH + 12.00 + 24.00 + 20 * 0.10
    assert data["monthly_cost_usd"] == pytest.approx(expected, abs=0.01)
    assert sum(line["monthly_usd"] for line in data["cost_lines"]) == pytest.approx(data["monthly_cost_usd"])
    assert data["within_budget"] is True and data["budget_usd"] == 1250
    stack_hourly = expected / HOURS_PER_MONTH  # the month as billed, caps included
    econ = data["economics"]
    # $/Mtok = hourly / (tps × utilization × 3600 / 1e6), one node at 1000 tok/s.
    assert econ["usd_per_million_tokens"] == pytest.approx(stack_hourly / (1000 * 0.5 * 3600 / 1e6))
    assert econ["break_even_utilization"] == pytest.approx(stack_hourly * 1e6 / (1000 * 3600 * 0.6))


def test_cost_over_budget_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    doc["config"]["gpu-inference:monthlyBudgetUsd"] = 500
    stack_file = tmp_path / "Pulumi.tight.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    code, out, _ = run_cli(capsys, "cost", str(stack_file))
    assert code == 1
    assert "OVER BUDGET" in out


def test_cli_runs_as_a_module_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpu_inference", "size", "nope/nope", "--gpu", "L40S"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope/nope" in proc.stderr


def test_cost_without_a_measured_throughput_uses_the_estimate_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from gpu_inference.config import load_stack_config
    from gpu_inference.estimate import throughput_for_stack
    from gpu_inference.stack import resolve_stack

    assert main(["cost", "dev", "--json"]) == 0
    econ = json.loads(capsys.readouterr().out)["economics"]
    expected = throughput_for_stack(resolve_stack(load_stack_config("dev"), name="dev"))
    assert econ["tokens_per_second_source"] == "predicted by estimate"
    assert econ["tokens_per_second_per_node"] == pytest.approx(expected)
    assert main(["cost", "dev", "--json", "--tokens-per-second", "900"]) == 0
    measured = json.loads(capsys.readouterr().out)["economics"]
    assert measured["tokens_per_second_per_node"] == 900 and measured["tokens_per_second_source"].startswith("given")
