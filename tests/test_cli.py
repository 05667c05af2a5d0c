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


# ---------------------------------------------------------------------------------------------
# Issue 11: no traceback, ever; invalid input is exit 2 with one line in the stack config's words
# ---------------------------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def _config_json(tmp_path: Path, **changes: object) -> Path:
    config = json.loads((FIXTURES / "llama31-8b-finetune-config.json").read_text())
    config.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "errors.pydantic.dev" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--tensor-parallel-size", "0"], ["--tensor-parallel-size = 0 is out of range: allowed ≥ 1"]),
        (["--pipeline-parallel-size", "0"], ["--pipeline-parallel-size = 0 is out of range: allowed ≥ 1"]),
        (["--max-model-len", "-1"], ["--max-model-len = -1 is out of range: allowed > 0"]),
        (["--gpu-memory-utilization", "2"], ["--gpu-memory-utilization = 2.0 is out of range: allowed ≤ 1"]),
        (["--max-num-seqs", "0"], ["--max-num-seqs = 0 is out of range"]),
    ],
)
def test_size_flags_out_of_range_get_one_line_not_a_pydantic_dump(
    capsys: pytest.CaptureFixture[str], flags: list[str], fragments: list[str]
) -> None:
    code, _, err = run_cli(capsys, "size", "Qwen/Qwen3-8B", "--gpu", "L40S", *flags)
    line = _one_error_line(err)
    assert code == 2
    assert all(f in line for f in fragments), line


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "must hold a JSON object"),
        ("not json", "is not valid JSON"),
        ('{"text_config": [1]}', "must hold a JSON object"),
        (None, "hidden_size = 0 is out of range: allowed > 0"),
        ("{}", "hidden_size is required"),
    ],
)
@pytest.mark.parametrize("command", [
    ["size", "--gpu", "L40S"],
    ["estimate", "--gpu", "L40S", "--input-tokens", "10", "--output-tokens", "10", "--concurrency", "1"],
    ["plan", "--rps", "1", "--input-tokens", "10", "--output-tokens", "10"],
])
def test_a_bad_config_json_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, fragment: str, command: list[str]
) -> None:
    if content is None:
        path = _config_json(tmp_path, hidden_size=0)
    else:
        path = tmp_path / "config.json"
        path.write_text(content)
    code, _, err = run_cli(capsys, command[0], str(path), *command[1:])
    line = _one_error_line(err)
    assert code == 2 and fragment in line and str(path) in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "Infinity", "1e400"])
@pytest.mark.parametrize("argv", [
    ["cost", "dev", "--tokens-per-second", "{}"],
    ["cost", "dev", "--api-price-per-mtok", "{}"],
    ["cost", "dev", "--utilization", "{}"],
    ["size", "Qwen/Qwen3-8B", "--gpu-memory-gib", "{}"],
    ["size", "Qwen/Qwen3-8B", "--gpu", "L40S", "--gpu-memory-utilization", "{}"],
    ["plan", "Qwen/Qwen3-8B", "--rps", "{}", "--input-tokens", "1", "--output-tokens", "1"],
    ["plan", "Qwen/Qwen3-8B", "--rps", "1", "--input-tokens", "1", "--output-tokens", "1", "--ttft-ms", "{}"],
    ["plan", "Qwen/Qwen3-8B", "--rps", "1", "--input-tokens", "1", "--output-tokens", "1", "--itl-ms", "{}"],
    ["plan", "Qwen/Qwen3-8B", "--rps", "1", "--input-tokens", "1", "--output-tokens", "1", "--max-monthly-usd", "{}"],
])
def test_every_float_flag_refuses_non_finite_numbers(capsys: pytest.CaptureFixture[str], argv: list[str], value: str) -> None:
    with pytest.raises(SystemExit) as excinfo:  # argparse: usage and one error line, exit 2
        main([a.replace("{}", value) for a in argv])
    _, err = capsys.readouterr()
    assert excinfo.value.code == 2 and "finite" in err and "Traceback" not in err


def test_every_float_flag_of_every_command_is_covered() -> None:
    """A new float flag must use a finite-checking type (commands.finite_float or plan's _positive)."""
    from gpu_inference.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    raw_float = [f"{name} {opt}" for name, p in sub.choices.items() for a in p._actions  # type: ignore[attr-defined]
                 if a.type is float for opt in a.option_strings[:1]]
    assert raw_float == []


def test_preview_out_that_is_a_file_is_refused_before_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        code, stdout, err = run_cli(capsys, "preview", "dev", "--out", str(out))
        line = _one_error_line(err)
        assert code == 2 and "is a file, not a directory" in line and stdout == ""


def test_preview_out_that_cannot_be_written_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "preview", "dev", "--out", "/proc/gpu-inference-nope")
    line = _one_error_line(err)
    assert code == 2 and "--out /proc/gpu-inference-nope" in line


def test_preview_of_a_directory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "preview", str(tmp_path / "Pulumi.x.yaml").replace("Pulumi.x.yaml", ""), "--no-files")
    line = _one_error_line(err)
    assert code == 2 and "is a directory" in line


@pytest.mark.parametrize("target", ["dir", "/proc/gpu-inference-nope/x.md"])
def test_cost_diff_unwritable_output_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    out = str(tmp_path) if target == "dir" else target
    code, _, err = run_cli(capsys, "cost-diff", "--base-file", "Pulumi.dev.yaml", "--head-file", "Pulumi.dev.yaml",
                           "-o", out)
    line = _one_error_line(err)
    assert code == 2 and f"-o {out}" in line


def test_an_unexpected_error_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gpu_inference.commands.size as size

    def boom(args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(size, "run", boom)
    monkeypatch.delenv("GPU_INFERENCE_TRACEBACK", raising=False)
    code, _, err = run_cli(capsys, "size", "Qwen/Qwen3-8B", "--gpu", "L40S")
    line = _one_error_line(err)
    assert code == 70 and "internal error (RuntimeError: boom second line)" in line


@pytest.mark.parametrize("text", ["", "config: [\n", "config:\n  gpu-inference:nodeCount: 1\n  gpu-inference:nodeCount: 2\n",
                                  "a: &a [1, 1, 1]\nb: [*a, *a, *a]\n", "config:\n  gpu-inferenc:nodeCount: 1\n"])
@pytest.mark.parametrize("command", ["cost", "preview"])
def test_bad_stack_files_are_one_line_exit_2_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, command: str
) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    code, stdout, err = run_cli(capsys, command, str(path), *(["--no-files"] if command == "preview" else []))
    _one_error_line(err)
    assert code == 2 and stdout == ""


def test_an_empty_output_path_is_refused_not_taken_as_the_current_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["preview", "dev", "--out", ""], ["cost-diff", "--base-file", "Pulumi.dev.yaml", "--head-file",
                                                    "Pulumi.dev.yaml", "-o", ""]):
        with pytest.raises(SystemExit) as excinfo:
            main(argv)
        assert excinfo.value.code == 2 and "empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written where the command ran


def test_an_absurd_gpu_memory_is_out_of_range_not_a_nan_crash(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "size", "Qwen/Qwen3-8B", "--gpu-memory-gib", "1e300")
    assert code == 2 and "--gpu-memory-gib = 1e+300 is out of range: allowed ≤ 4096" in _one_error_line(err)
