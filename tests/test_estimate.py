"""The capacity model (`estimate`): its fixed CLI contract and the physics it must never violate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpu_inference.catalog import Gpu, load_catalog
from gpu_inference.cli import main
from gpu_inference.commands.estimate import FIXED_KEYS
from gpu_inference.config import load_stack_config
from gpu_inference.estimate import BOUNDS, EstimateRequest, estimate, throughput_for_stack
from gpu_inference.model_arch import ModelArchitecture, resolve_model
from gpu_inference.stack import resolve_stack

REPO = Path(__file__).resolve().parent.parent
POINTS = REPO / "bench" / "data" / "vllm-throughput-points.csv"
CATALOG = load_catalog()
MODELS = ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
          "Qwen/Qwen3-30B-A3B", "google/gemma-2-9b-it", "openai/gpt-oss-20b"]  # fmt: skip
GPUS = ["H100-80GB", "A100-80GB", "L40S", "MI300X", "H200-141GB"]


def request(model: str = "Qwen/Qwen3-8B", gpu: str | Gpu = "H100-80GB", **kw: object) -> EstimateRequest:
    fields: dict[str, object] = {"input_tokens": 1000, "output_tokens": 300, "concurrency": 8, "max_model_len": 8192}
    fields.update(kw)
    return EstimateRequest(model=resolve_model(model), gpu=gpu if isinstance(gpu, Gpu) else CATALOG.gpu(gpu),
                           **fields)  # type: ignore[arg-type]


def with_bandwidth(gpu: Gpu, factor: float) -> Gpu:
    perf = gpu.perf.model_copy(update={"memory_bandwidth_gb_s": gpu.perf.memory_bandwidth_gb_s * factor})
    return gpu.model_copy(update={"perf": perf})


def test_cli_json_has_the_fixed_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "Qwen/Qwen3-8B", "--gpu", "gpu-l40sx1-48gb", "--input-tokens", "1000",
                 "--output-tokens", "300", "--concurrency", "16", "--max-model-len", "8192", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(FIXED_KEYS) <= set(data)
    assert data["bound"] in BOUNDS
    assert data["effective_concurrency"] == 16
    assert data["output_tokens_per_s"] == pytest.approx(data["request_throughput_rps"] * 300, rel=1e-3)


def test_cli_text_explains_the_bound_in_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "Qwen/Qwen3-8B", "--gpu", "H100-80GB", "--input-tokens", "200",
                 "--output-tokens", "200", "--concurrency", "1", "--max-model-len", "8192"])
    out = capsys.readouterr().out
    assert code == 0
    bound_line = next(line for line in out.splitlines() if "bound:" in line)
    assert "memory-bandwidth" in bound_line and "bandwidth sets the pace" in bound_line


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["--gpu", "L40", "--input-tokens", "1", "--output-tokens", "1", "--concurrency", "1"], 2, "did you mean"),
        (["--gpu", "L40S", "--input-tokens", "1", "--output-tokens", "1", "--concurrency", "0"], 2, "at least 1"),
        (["--gpu", "L40S", "--input-tokens", "1", "--output-tokens", "1", "--concurrency", "1", "--kv-cache-dtype",
          "fp16"], 2, "invalid choice"),
    ],
)
def test_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str) -> None:
    with pytest.raises(SystemExit) if "invalid choice" in fragment or "at least" in fragment else _no_raise():
        assert main(["estimate", "Qwen/Qwen3-8B", *argv]) == code
    assert fragment in capsys.readouterr().err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_a_model_that_does_not_fit_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "meta-llama/Llama-3.3-70B-Instruct", "--gpu", "L40S", "--input-tokens", "1000",
                 "--output-tokens", "300", "--concurrency", "4", "--max-model-len", "8192", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["fits"] is False and data["problems"]
    assert data["explanation"].startswith("It does not fit")


def test_concurrency_beyond_the_kv_cache_queues_and_says_so() -> None:
    est = estimate(request("Qwen/Qwen3-14B", "L40S", input_tokens=6000, output_tokens=2000, concurrency=512))
    assert est.effective_concurrency == est.kv_capacity_requests < 512
    assert est.bound == "kv-capacity"


def test_max_num_seqs_caps_concurrency() -> None:
    est = estimate(request(concurrency=300, max_num_seqs=64))
    assert est.effective_concurrency == 64


def test_moe_reads_the_active_experts_at_small_batch_and_more_as_it_grows() -> None:
    small = estimate(request("Qwen/Qwen3-30B-A3B", concurrency=1, input_tokens=1, output_tokens=300))
    large = estimate(request("Qwen/Qwen3-30B-A3B", concurrency=256, input_tokens=1, output_tokens=300))
    total = estimate(request("Qwen/Qwen3-30B-A3B", concurrency=1)).weights_read_gib  # sanity: a positive figure
    assert total > 0
    assert small.weights_read_gib < 0.35 * large.weights_read_gib  # 8 of 128 experts vs nearly all


def test_tensor_parallel_adds_all_reduce_time_and_pcie_costs_more_than_nvlink() -> None:
    one = estimate(request("Qwen/Qwen3-32B", "H100-80GB", tensor_parallel_size=1))
    two = estimate(request("Qwen/Qwen3-32B", "H100-80GB", tensor_parallel_size=2))
    assert one.step.allreduce_ms == 0 < two.step.allreduce_ms
    pcie = estimate(request("Qwen/Qwen3-8B", "L40S", tensor_parallel_size=2))
    nvlink = estimate(request("Qwen/Qwen3-8B", CATALOG.gpu("L40S").model_copy(update={
        "perf": CATALOG.gpu("L40S").perf.model_copy(update={"interconnect": "nvlink", "interconnect_gb_s": 450})
    }), tensor_parallel_size=2))
    assert pcie.step.allreduce_ms > nvlink.step.allreduce_ms


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), factor=st.floats(1.0, 4.0),
       concurrency=st.integers(1, 512), inp=st.integers(1, 4000), out=st.integers(1, 2000))
def test_more_bandwidth_is_never_slower(model: str, gpu: str, factor: float, concurrency: int, inp: int,
                                        out: int) -> None:
    base = CATALOG.gpu(gpu)
    slow = estimate(request(model, base, concurrency=concurrency, input_tokens=inp, output_tokens=out))
    fast = estimate(request(model, with_bandwidth(base, factor), concurrency=concurrency, input_tokens=inp,
                            output_tokens=out))
    assert fast.itl_ms <= slow.itl_ms * (1 + 1e-9)
    assert fast.ttft_ms <= slow.ttft_ms * (1 + 1e-9)
    assert fast.output_tokens_per_s >= slow.output_tokens_per_s * (1 - 1e-6)


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), low=st.integers(1, 600), extra=st.integers(1, 600),
       inp=st.integers(1, 4000), out=st.integers(1, 2000))
def test_more_concurrency_never_lowers_throughput(model: str, gpu: str, low: int, extra: int, inp: int,
                                                  out: int) -> None:
    """Up to the KV cache's capacity throughput never drops; beyond it the extra requests queue (flat)."""
    fewer = estimate(request(model, gpu, concurrency=low, input_tokens=inp, output_tokens=out))
    more = estimate(request(model, gpu, concurrency=low + extra, input_tokens=inp, output_tokens=out))
    assert more.output_tokens_per_s >= fewer.output_tokens_per_s * (1 - 1e-6)


def scaled(model: ModelArchitecture, layers: int, width: float) -> ModelArchitecture:
    return model.model_copy(update={
        "num_hidden_layers": model.num_hidden_layers + layers,
        "intermediate_size": int(model.intermediate_size * width),
        "total_params_b": None,
    })


@settings(max_examples=40, deadline=None)
@given(gpu=st.sampled_from(GPUS), layers=st.integers(0, 24), width=st.floats(1.0, 2.0),
       concurrency=st.integers(1, 256), inp=st.integers(1, 3000), out=st.integers(1, 1000))
def test_a_bigger_model_is_never_faster_on_the_same_gpu(gpu: str, layers: int, width: float, concurrency: int,
                                                        inp: int, out: int) -> None:
    base = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    kw = {"gpu": CATALOG.gpu(gpu), "input_tokens": inp, "output_tokens": out, "concurrency": concurrency,
          "max_model_len": 8192}
    small = estimate(EstimateRequest(model=base, **kw))  # type: ignore[arg-type]
    big = estimate(EstimateRequest(model=scaled(base, layers, width), **kw))  # type: ignore[arg-type]
    assert big.output_tokens_per_s <= small.output_tokens_per_s * (1 + 1e-6)
    # Its smaller KV cache may run fewer requests at once (lower ITL, less throughput); at equal load it is slower.
    assert big.effective_concurrency <= small.effective_concurrency
    if big.effective_concurrency == small.effective_concurrency:
        assert big.itl_ms >= small.itl_ms * (1 - 1e-9)
        assert big.ttft_ms >= small.ttft_ms * (1 - 1e-9)


def test_throughput_for_stack_is_the_estimate_at_the_stack_config() -> None:
    stack = resolve_stack(load_stack_config("dev"), name="dev")
    tps = throughput_for_stack(stack, input_tokens=1536, output_tokens=512)
    direct = estimate(request("Qwen/Qwen3-8B", "L40S", input_tokens=1536, output_tokens=512,
                              concurrency=stack.config.max_num_seqs, max_num_seqs=stack.config.max_num_seqs))
    assert tps == direct.output_tokens_per_s > 0
    assert throughput_for_stack(stack) == tps  # typicalRequestTokens 2048 split 3:1 is the same request


def test_gpu_fp8_support_and_fp8_figure_must_agree() -> None:
    row = CATALOG.gpu("A100-80GB").model_dump()
    row["fp8"] = True
    with pytest.raises(ValidationError, match="fp8_dense_tflops"):
        Gpu.model_validate(row)


def test_every_benchmark_point_names_its_source_and_resolves() -> None:
    rows = list(csv.DictReader(POINTS.open()))
    assert len(rows) >= 15
    for row in rows:
        assert row["source"].strip(), row["id"]
        resolve_model(row["model"])
        CATALOG.gpu(row["gpu"])
        assert row["output_tokens_per_s"] or row["mean_itl_ms"], row["id"]
