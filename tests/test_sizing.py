"""vLLM memory arithmetic: exact reproductions of logged startups, refusals, and monotonicity properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_inference import sizing
from gpu_inference.model_arch import resolve_model
from gpu_inference.sizing import SizingRequest, SizingResult, calibration_for, size_deployment

H100 = 79.19


def size(model_id: str, **kwargs: object) -> SizingResult:
    params: dict[str, object] = {"gpu_memory_gib": H100, "gpu_name": "H100-80GB"}
    params.update(kwargs)
    return size_deployment(SizingRequest(model=resolve_model(model_id), **params))  # type: ignore[arg-type]


# ---- exact reproductions of logged vLLM startups --------------------------------------------------


def test_llama31_8b_h100_v019_matches_the_log() -> None:
    # llm-d-planner v0.19 log: 58.11 GiB available, 476,016 tokens, 58.11x at 8192
    result = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192)
    assert result.fits and result.vllm_version == "0.19.0"
    assert result.kv_cache_tokens == pytest.approx(476_016, rel=0.02)
    assert result.max_concurrency == pytest.approx(58.11, rel=0.02)
    assert result.weights_gib == pytest.approx(14.99, abs=0.02)
    assert result.kv_cache_gib == pytest.approx(58.11, abs=0.1)
    assert result.kv_cache_bytes_per_token == 131072


def test_fp8_kv_cache_doubles_tokens_not_gib() -> None:
    auto = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192)
    fp8 = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
               kv_cache_dtype="fp8")
    assert fp8.kv_cache_gib == auto.kv_cache_gib
    assert abs(fp8.kv_cache_tokens - 2 * auto.kv_cache_tokens) <= 16
    assert fp8.kv_cache_tokens == pytest.approx(952_032, rel=0.02)  # logged


def test_runtime_fp8_weights_and_fp32() -> None:
    fp8 = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
               quantization="fp8")
    assert fp8.weights_gib == pytest.approx(8.49, abs=0.02)  # embeddings and lm_head stay bf16
    fp32 = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
                dtype="float32")
    assert fp32.weights_gib == pytest.approx(29.98, abs=0.03)
    assert fp32.kv_cache_tokens == pytest.approx(175_296, rel=0.02)


def test_tensor_and_pipeline_parallel_reproduce_the_log() -> None:
    tp2 = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
               tensor_parallel_size=2)
    assert tp2.weights_gib == pytest.approx(7.51, abs=0.02) and tp2.non_torch_gib > 2
    assert tp2.kv_cache_tokens == pytest.approx(1_044_688, rel=0.02)
    pp2 = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
               pipeline_parallel_size=2)
    assert pp2.kv_cache_tokens == pytest.approx(1_075_312, rel=0.02)
    assert len(pp2.gpus) == 2 and {g.stage for g in pp2.gpus} == {0, 1}
    # vLLM takes the minimum over stages: the stage with the sampler binds
    per_stage = [int(g.kv_cache_gib * 2**30 // (16 * 16 * 8 * 128 * 2 * 2)) for g in pp2.gpus]
    assert pp2.kv_cache_blocks == min(per_stage)


def test_deepseek_v2_lite_mla_bytes_per_token() -> None:
    for tp in (1, 2):
        result = size("deepseek-ai/DeepSeek-V2-Lite", tensor_parallel_size=tp, max_model_len=8192)
        assert result.kv_cache_bytes_per_token == 31104  # 27 × 576 × 2, not split by TP


def test_qwen3_235b_kv_heads_replicated_beyond_tp4() -> None:
    tp4 = size("Qwen/Qwen3-235B-A22B-FP8", tensor_parallel_size=4, max_model_len=32768)
    tp8 = size("Qwen/Qwen3-235B-A22B-FP8", tensor_parallel_size=8, max_model_len=32768)
    assert tp4.kv_cache_bytes_per_token == tp8.kv_cache_bytes_per_token == 47 * 1024


def test_qwen3_235b_on_8x_l40s_v0102_matches_the_log() -> None:
    result = size("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", gpu_memory_gib=44.42, gpu_name="L40S",
                  tensor_parallel_size=8, max_model_len=32768, vllm_version="0.10.2")
    assert result.weights_gib == pytest.approx(27.72, abs=0.1)
    assert result.kv_cache_tokens == pytest.approx(238_208, rel=0.02)
    assert result.max_concurrency == pytest.approx(7.27, rel=0.02)


def test_gemma3_hybrid_groups_and_concurrency() -> None:
    model = resolve_model("google/gemma-3-4b-it")
    kinds = model.layer_kinds()
    layout = sizing._kv_layout(model, kinds, kinds, tp=1, kv_bytes=2, block_size=16)
    # 5 full + 29 sliding: group size 5 -> 1 full group + 6 sliding groups (one padded)
    assert layout.layers_per_block == 5 and len(layout.group_kinds) == 7
    per_request = sum(sizing._blocks_per_request(g, model, 8192, 16, 8192) for g in layout.group_kinds)
    assert per_request == 512 + 6 * 513
    assert 204_817 / per_request == pytest.approx(57.05, abs=0.01)  # vLLM v0.19 log
    result = size("google/gemma-3-4b-it", gpu_memory_utilization=0.95, max_model_len=8192)
    assert result.max_concurrency == pytest.approx(result.kv_cache_blocks / per_request, abs=0.01)
    assert result.kv_cache_tokens == result.kv_cache_blocks // 7 * 16
    # at 128K a sliding group needs cdiv(1023 + 8192, 16) + 1 = 577 blocks per request, not 8192
    long = size("google/gemma-3-4b-it", gpu_memory_utilization=0.95, max_model_len=131072)
    assert long.max_concurrency == pytest.approx(long.kv_cache_blocks / (8192 + 6 * 577), abs=0.01)


@pytest.mark.parametrize(
    ("model_id", "logged_blocks", "logged_concurrency"),
    [("google/gemma-3-4b-it", 204_817, 57.05), ("google/gemma-3-12b-it", 48_867, 15.88),
     ("google/gemma-3-27b-it", 15_997, 4.46)],
)
def test_gemma3_v019_runs(model_id: str, logged_blocks: int, logged_concurrency: float) -> None:
    """llm-d-planner v0.19 H100 runs at util 0.95 (model-architectures.csv); vision term fitted on them."""
    result = size(model_id, gpu_memory_utilization=0.95, max_model_len=8192)
    assert result.kv_cache_blocks == pytest.approx(logged_blocks, rel=0.02)
    assert result.max_concurrency == pytest.approx(logged_concurrency, rel=0.02)


def test_gemma7b_and_kimi_vl_v019_runs() -> None:
    gemma = size("google/gemma-7b", gpu_memory_utilization=0.95, max_model_len=8192)
    assert gemma.kv_cache_bytes_per_token == 448 * 1024
    assert gemma.kv_cache_tokens == pytest.approx(129_760, rel=0.02)
    kimi = size("moonshotai/Kimi-VL-A3B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192)
    assert kimi.kv_cache_bytes_per_token == 31104  # MLA, not 16 heads × 128 MHA
    assert kimi.kv_cache_tokens == pytest.approx(1_426_368, rel=0.02)


def test_v0_sizes_sliding_layers_as_full_attention() -> None:
    v0 = size("google/gemma-3-4b-it", max_model_len=8192, vllm_version="0.8.3", engine="v0")
    assert v0.kv_cache_tokens == v0.kv_cache_blocks * 16
    assert v0.kv_cache_bytes_per_token == 34 * 2 * 4 * 256 * 2


def test_cuda_graphs_outside_budget_before_v021_and_inside_after() -> None:
    v19 = size("meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    v21 = size("meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192, vllm_version="0.21.0")
    assert v21.kv_cache_gib == pytest.approx(v19.kv_cache_gib - v19.cuda_graph_gib, abs=1e-3)
    assert v19.physical_peak_gib == pytest.approx(
        v19.weights_gib + v19.activation_gib + v19.non_torch_gib + v19.kv_cache_gib + v19.cuda_graph_gib, abs=1e-3
    )


def test_activation_grows_with_vocabulary_and_batch() -> None:
    granite = size("ibm-granite/granite-3.1-8b-instruct", max_model_len=8192)
    qwen = size("Qwen/Qwen2.5-7B-Instruct", max_model_len=8192)
    assert granite.activation_gib < qwen.activation_gib  # 49K vs 152K vocabulary logits
    small = size("Qwen/Qwen2.5-7B-Instruct", max_model_len=8192, max_num_seqs=64)
    assert small.activation_gib < qwen.activation_gib


def test_rule_of_thumb_is_reported_beside_the_exact_figure() -> None:
    result = size("meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    assert result.rule_of_thumb_gib == pytest.approx(8.03 * 2 * 1.2 * 1e9 / 2**30, abs=0.01)
    assert "20 to 30" in result.rule_of_thumb_note and "1.2" in result.rule_of_thumb_note


# ---- refusals ------------------------------------------------------------------------------------


def test_refuses_tp_not_dividing_heads() -> None:
    result = size("Qwen/Qwen2.5-7B-Instruct", tensor_parallel_size=8, max_model_len=8192)
    assert not result.fits
    assert any("attention heads (28)" in p and "(8)" in p for p in result.problems)


def test_refuses_tp_not_dividing_vocabulary() -> None:
    result = size("Qwen/Qwen3-14B", tensor_parallel_size=5, max_model_len=8192)
    assert not result.fits and any("vocabulary (151936" in p for p in result.problems)


def test_refuses_weights_larger_than_the_gpu() -> None:
    result = size("meta-llama/Llama-3.1-70B-Instruct", max_model_len=8192)
    assert not result.fits
    assert any("CUDA out of memory" in p and "add GPUs" in p for p in result.problems)
    assert result.max_model_len_that_fits is None


def test_refuses_when_nothing_is_left_for_kv() -> None:
    # llm-d-benchmark v0.11: Llama-3.3-70B FP8 on one H100 -> "No available memory for the cache blocks"
    result = size("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", gpu_memory_gib=79.18, max_model_len=16000,
                  gpu_memory_utilization=0.9, vllm_version="0.11.0")
    assert not result.fits and result.kv_cache_gib < 0
    assert any(p.startswith("No available memory for the cache blocks") for p in result.problems)


def test_refuses_kv_smaller_than_one_request_and_estimates_max_len() -> None:
    # llm-d-benchmark v0.11: Qwen3-32B at 32,000 tokens on one H100 does not start
    result = size("Qwen/Qwen3-32B", gpu_memory_gib=79.18, max_model_len=32000, vllm_version="0.11.0")
    assert not result.fits
    estimate = result.max_model_len_that_fits
    assert estimate is not None and 0 < estimate < 32000
    assert any(f"estimated maximum model length is {estimate}" in p for p in result.problems)
    assert size("Qwen/Qwen3-32B", gpu_memory_gib=79.18, max_model_len=estimate, vllm_version="0.11.0").fits
    assert not size("Qwen/Qwen3-32B", gpu_memory_gib=79.18, max_model_len=estimate + 1,
                    vllm_version="0.11.0").fits


def test_refuses_v0_cache_smaller_than_max_len() -> None:
    # vllm#10517: RTX 3090, Llama-3.1-8B, v0.6.4, 29,000 tokens -> 23,648 tokens in KV cache
    result = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_gib=23.58, gpu_name="RTX 3090",
                  max_model_len=29000, vllm_version="0.6.4")
    assert not result.fits and result.kv_cache_tokens == pytest.approx(23_648, rel=0.02)
    ok = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_gib=23.58, gpu_name="RTX 3090",
              max_model_len=20000, vllm_version="0.6.4")
    assert ok.fits and ok.kv_cache_tokens == pytest.approx(31_232, rel=0.02)


def test_refuses_max_model_len_above_positions() -> None:
    result = size("microsoft/phi-2", max_model_len=8192)
    assert not result.fits
    assert any("max_position_embeddings=2048" in p and "(8192)" in p for p in result.problems)


def test_refuses_fp8_on_gpu_without_fp8() -> None:
    kv = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_gib=79.15, gpu_name="A100-80GB",
              gpu_supports_fp8=False, kv_cache_dtype="fp8", max_model_len=8192)
    assert not kv.fits and any("fp8" in p and "A100-80GB" in p for p in kv.problems)
    weights = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_gib=79.15, gpu_name="A100-80GB",
                   gpu_supports_fp8=False, quantization="fp8", max_model_len=8192)
    assert not weights.fits and any("quantization fp8" in p for p in weights.problems)


def test_refuses_more_pipeline_stages_than_layers() -> None:
    result = size("meta-llama/Llama-3.2-1B-Instruct", pipeline_parallel_size=32, max_model_len=8192)
    assert not result.fits and any("pipeline_parallel_size 32" in p for p in result.problems)


def test_uneven_pipeline_split_warns() -> None:
    result = size("Qwen/Qwen2.5-7B-Instruct", pipeline_parallel_size=3, max_model_len=8192)
    assert any("do not split evenly" in w for w in result.warnings)


def test_version_ranges_resolve() -> None:
    assert calibration_for("0.19.0").name == "v1-0.17-0.20"
    assert calibration_for("0.8.5", "v0").engine == "v0"
    assert calibration_for("0.8.5").engine == "v1"
    assert calibration_for("0.6.4").name == "v0-legacy"
    assert sizing.parse_version("v0.8.5.post1") == (0, 8, 5)


# ---- properties ----------------------------------------------------------------------------------

PROPERTY_MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-30B-A3B",
    "google/gemma-2b", "google/gemma-3-4b-it", "deepseek-ai/DeepSeek-V2-Lite", "openai/gpt-oss-20b",
    "mistralai/Mistral-7B-v0.1", "microsoft/phi-2", "Qwen/Qwen2.5-7B-Instruct-AWQ",
]
VERSIONS = ["0.19.0", "0.11.0", "0.21.0", "0.8.5", "0.6.4"]


@st.composite
def requests(draw: st.DrawFn) -> SizingRequest:
    model = resolve_model(draw(st.sampled_from(PROPERTY_MODELS)))
    max_len = draw(st.integers(min_value=256, max_value=min(model.max_position_embeddings, 65536)))
    return SizingRequest(
        model=model,
        gpu_memory_gib=draw(st.floats(min_value=8, max_value=200)),
        gpu_memory_utilization=draw(st.floats(min_value=0.5, max_value=0.98)),
        max_model_len=max_len,
        tensor_parallel_size=draw(st.sampled_from([1, 2])),
        pipeline_parallel_size=draw(st.sampled_from([1, 1, 2])),
        kv_cache_dtype=draw(st.sampled_from(["auto", "fp8"])),
        vllm_version=draw(st.sampled_from(VERSIONS)),
        # fixed batch limits: vLLM's defaults jump at 70 GiB, which is a different deployment
        max_num_seqs=draw(st.sampled_from([64, 256, 1024])),
        max_num_batched_tokens=draw(st.sampled_from([2048, 8192])),
    )


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(requests(), st.floats(min_value=0, max_value=100))
def test_more_gpu_memory_never_fewer_tokens(req: SizingRequest, extra: float) -> None:
    bigger = req.model_copy(update={"gpu_memory_gib": req.gpu_memory_gib + extra})
    assert size_deployment(bigger).kv_cache_tokens >= size_deployment(req).kv_cache_tokens


@PROPERTY_SETTINGS
@given(requests(), st.floats(min_value=0, max_value=0.5))
def test_higher_utilization_never_fewer_tokens(req: SizingRequest, extra: float) -> None:
    higher = req.model_copy(update={"gpu_memory_utilization": min(1.0, req.gpu_memory_utilization + extra)})
    assert size_deployment(higher).kv_cache_tokens >= size_deployment(req).kv_cache_tokens


@PROPERTY_SETTINGS
@given(requests())
def test_fp8_kv_never_fewer_tokens(req: SizingRequest) -> None:
    auto = size_deployment(req.model_copy(update={"kv_cache_dtype": "auto"}))
    fp8 = size_deployment(req.model_copy(update={"kv_cache_dtype": "fp8"}))
    assert fp8.kv_cache_tokens >= auto.kv_cache_tokens


@PROPERTY_SETTINGS
@given(requests(), st.integers(min_value=1, max_value=65536))
def test_longer_max_model_len_never_higher_concurrency(req: SizingRequest, extra: int) -> None:
    assert req.max_model_len is not None
    longer_len = min(req.max_model_len + extra, req.model.max_position_embeddings)
    longer = req.model_copy(update={"max_model_len": longer_len})
    assert size_deployment(longer).max_concurrency <= size_deployment(req).max_concurrency


@PROPERTY_SETTINGS
@given(requests())
def test_tp2_never_less_capacity_than_tp1(req: SizingRequest) -> None:
    one = req.model_copy(update={"tensor_parallel_size": 1, "gpu_memory_gib": max(req.gpu_memory_gib, 16)})
    two = one.model_copy(update={"tensor_parallel_size": 2})
    model = req.model
    if model.num_attention_heads % 2 or (not model.is_mla and model.num_key_value_heads % 2):
        return  # heads do not divide: TP=2 is refused, nothing to compare
    assert size_deployment(two).max_concurrency >= size_deployment(one).max_concurrency


@PROPERTY_SETTINGS
@given(requests())
def test_tokens_are_whole_blocks(req: SizingRequest) -> None:
    result = size_deployment(req)
    assert result.kv_cache_tokens % req.block_size == 0
    assert result.kv_cache_tokens >= 0 and result.kv_cache_blocks >= 0


@PROPERTY_SETTINGS
@given(requests())
def test_fits_implies_room_for_one_max_length_request(req: SizingRequest) -> None:
    result = size_deployment(req)
    if not result.fits:
        return
    windowed = set(req.model.layer_kinds()) != {"full"} and calibration_for(
        req.vllm_version, req.engine).hybrid_kv_cache_manager
    if windowed:
        # sliding/chunked layers keep only their window and hybrid models log tokens per KV group, so a
        # max-length request can fit in fewer logged tokens than max_model_len: check concurrency instead
        assert result.max_concurrency >= 0.9
    else:
        assert result.kv_cache_tokens >= result.max_model_len
    assert result.max_model_len_that_fits is None or result.max_model_len_that_fits >= result.max_model_len
    assert not math.isnan(result.max_concurrency)


def test_quantization_must_match_the_checkpoint() -> None:
    # awq on a bf16 model means "its AWQ release" (fit advice relies on it): sized, with a warning
    awq_on_bf16 = size("Qwen/Qwen2.5-7B-Instruct", quantization="awq", max_model_len=8192)
    assert awq_on_bf16.fits and any("AWQ checkpoint" in w for w in awq_on_bf16.warnings)
    assert awq_on_bf16.weights_gib == pytest.approx(5.2, abs=0.15)
    fp8_on_awq = size("Qwen/Qwen2.5-7B-Instruct-AWQ", quantization="fp8", max_model_len=8192)
    assert not fp8_on_awq.fits and any("does not match" in p for p in fp8_on_awq.problems)
    same = size("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", quantization="fp8", tensor_parallel_size=2,
                max_model_len=8192)
    assert same.fits and same.quantization == "compressed-tensors-fp8"
    planning = size("Qwen/Qwen2.5-7B-Instruct", quantization="int4", max_model_len=8192)
    assert planning.fits and any("AWQ/GPTQ checkpoint" in w for w in planning.warnings)
    assert planning.weights_gib < 6  # 4-bit layers, 16-bit embeddings and lm_head


def test_quantized_checkpoint_keeps_16bit_embeddings() -> None:
    awq = size("Qwen/Qwen2.5-7B-Instruct-AWQ", gpu_memory_gib=15.99, max_model_len=32768)
    assert awq.weights_gib == pytest.approx(5.29, rel=0.03)  # logged on a 16 GB card; 3.8 GiB if all 4-bit
    oss = size("openai/gpt-oss-20b", gpu_memory_gib=79.18, max_model_len=16000, vllm_version="0.11.0",
               gpu_memory_utilization=0.9)
    assert oss.weights_gib == pytest.approx(13.47, rel=0.02)  # mxfp4 experts, bf16 attention/embeddings
    assert oss.kv_cache_gib == pytest.approx(50.28, rel=0.02)


def test_pcie_only_gpus_skip_custom_allreduce_buffers() -> None:
    assert sizing._is_pcie_only("NVIDIA L40S 48GB GDDR6") and sizing._is_pcie_only("2x RTX 4090")
    assert not sizing._is_pcie_only("NVIDIA A100 80GB HBM3 (SXM)")  # "A10" must not match "A100"
    l40s = size("Qwen/Qwen3-235B-A22B-FP8", gpu_memory_gib=44.42, gpu_name="NVIDIA L40S 48GB GDDR6",
                tensor_parallel_size=8, max_model_len=32768)
    h100 = size("Qwen/Qwen3-235B-A22B-FP8", tensor_parallel_size=8, max_model_len=32768)
    assert l40s.non_torch_gib < 1 < h100.non_torch_gib


def test_every_request_field_is_documented() -> None:
    undocumented = [name for name, info in SizingRequest.model_fields.items() if not info.description]
    assert not undocumented, f"SizingRequest fields without a docstring: {undocumented}"


# ---- profile-run mechanisms (v0.19 llm-d-planner logs, bench rows 102+) -----------------------------------


@pytest.mark.parametrize(
    ("model_id", "tp", "logged_tokens"),
    [
        ("Qwen/Qwen3-30B-A3B", 1, 168_288),  # MoE: modular-kernel workspace held through the sampler
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 2, 465_936),  # MoE at TP 2: forward workspace > sampler
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 4, 365_968),  # MoE + vision tower sharded over TP 4
        ("Qwen/Qwen2.5-72B-Instruct", 2, 19_920),  # 3 GiB KV pool: 2% is 0.06 GiB
        ("moonshotai/Kimi-Dev-72B", 2, 19_776),
        ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", 1, 184_752),  # VLM: dummy image batch
    ],
)
def test_v019_runs_outside_the_calibration_within_two_percent(model_id: str, tp: int, logged_tokens: int) -> None:
    result = size(model_id, gpu_memory_utilization=0.95, max_model_len=8192, tensor_parallel_size=tp)
    assert result.fits
    assert result.kv_cache_tokens == pytest.approx(logged_tokens, rel=0.02)


def test_weights_count_the_caching_allocators_rounding() -> None:
    # down_proj of Qwen2.5-72B at TP 2 is 231 MiB: a 232 MiB segment, 1 MiB left, not split
    assert sizing.allocator_rounding_bytes(231 * 2**20) == 2**20
    assert sizing.allocator_rounding_bytes(232 * 2**20) == 0
    assert sizing.allocator_rounding_bytes(24.5 * 2**20) == 0  # 1.5 MiB left: the block is split
    assert sizing.allocator_rounding_bytes(4 * 2**20) == 0  # carved from a 20 MiB segment
    qwen72 = size("Qwen/Qwen2.5-72B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
                  tensor_parallel_size=2)
    assert qwen72.weights_gib == pytest.approx(67.80, abs=0.01)  # logged "Model loading took 67.8 GiB"
    llama = size("meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.95, max_model_len=8192)
    assert llama.weights_gib == pytest.approx(14.99, abs=0.01)  # every tensor a multiple of 2 MiB


def test_scaled_rope_caches_and_vision_weights() -> None:
    # Gemma 3: linear factor 8 on the global rope + a local rope -> 9 × 131072 cached rows
    assert resolve_model("google/gemma-3-4b-it").rotary_cache_positions == 9 * 131072
    assert size("google/gemma-3-4b-it", gpu_memory_utilization=0.95, max_model_len=8192).weights_gib == \
        pytest.approx(8.58, abs=0.02)
    # Llama 4's vision tower shards over TP like the text model (logged 53.12 GiB per rank at TP 4)
    scout = size("meta-llama/Llama-4-Scout-17B-16E-Instruct", gpu_memory_utilization=0.95, max_model_len=8192,
                 tensor_parallel_size=4)
    assert scout.weights_gib == pytest.approx(53.12, abs=0.03)


def test_profile_run_terms() -> None:
    from gpu_inference.profile_run import mm_dummy_items, moe_workspace_bytes

    qwen3_moe = resolve_model("Qwen/Qwen3-30B-A3B")
    # 8192 tokens × top-8 × max(768, 2048) twice, bf16: 0.5 GiB kept by the WorkspaceManager
    assert moe_workspace_bytes(qwen3_moe, tp=1, tokens=8192, dtype_bytes=2, quant="none") == 2**29
    gpt_oss = resolve_model("openai/gpt-oss-20b")
    assert moe_workspace_bytes(gpt_oss, tp=1, tokens=8192, dtype_bytes=2, quant="mxfp4") == 0
    # the logs' "profiled with N image items" for an 8192-token encoder budget
    for model_id, items in (("google/gemma-3-4b-it", 32), ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", 2),
                            ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 3)):
        assert mm_dummy_items(resolve_model(model_id), batched_tokens=8192, max_num_seqs=1024,
                              max_model_len=8192) == items
    # gpt-oss: the sampler alone (2.87 GiB logged); Qwen3-30B-A3B: sampler + workspace (2.68 GiB logged)
    assert size("openai/gpt-oss-20b", gpu_memory_utilization=0.95, max_model_len=8192).activation_gib == \
        pytest.approx(2.87, abs=0.03)
    assert size("Qwen/Qwen3-30B-A3B", gpu_memory_utilization=0.95, max_model_len=8192).activation_gib == \
        pytest.approx(2.68, abs=0.03)


def test_few_sequences_make_the_forward_pass_the_peak() -> None:
    # 64 sampled rows cannot need less than the 8192-token MLP intermediate (gate_up + act = 3 × 27648 wide)
    result = size("Qwen/Qwen2.5-32B-Instruct", max_model_len=16384, max_num_seqs=64, quantization="fp8")
    assert result.activation_gib > 8192 * 3 * 27648 * 2 / 2**30


def test_startup_free_memory_below_the_budget_is_refused() -> None:
    # llm-d-planner v0.19 CodeLlama-34B TP2: another process held 18 GiB of GPU 1
    kwargs: dict[str, object] = {"gpu_memory_utilization": 0.95, "max_model_len": 8192, "tensor_parallel_size": 2}
    refused = size("codellama/CodeLlama-34b-hf", gpu_free_memory_gib=60.87, **kwargs)
    assert not refused.fits and "Free memory on device (60.87/79.19 GiB)" in refused.problems[0]
    assert size("codellama/CodeLlama-34b-hf", gpu_free_memory_gib=77.66, **kwargs).fits
    assert size("codellama/CodeLlama-34b-hf", gpu_free_memory_gib=60.87, vllm_version="0.10.2", **kwargs).fits


def test_rocm_non_torch_memory_is_the_logged_mi300x_figure() -> None:
    """An AMD GPU (ROCm) reserves the 6.07 GiB non-torch memory of the one ROCm startup in the bench data
    (calibration row 100), not CUDA's quarter GiB: the KV cache shrinks by the difference."""
    from gpu_inference.model_arch import resolve_model
    from gpu_inference.sizing import SizingRequest, size_deployment

    model = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
    common = dict(model=model, gpu_memory_gib=191.98, gpu_name="AMD Instinct MI300X 192GB HBM3", max_model_len=8192)
    cuda = size_deployment(SizingRequest(**common))
    rocm = size_deployment(SizingRequest(**common, gpu_vendor="amd"))
    assert rocm.non_torch_gib == pytest.approx(6.07)
    assert cuda.kv_cache_gib - rocm.kv_cache_gib == pytest.approx(6.07 - cuda.non_torch_gib, abs=0.01)


def test_an_amd_stack_sizes_with_rocm_non_torch_memory() -> None:
    from gpu_inference.config import parse_stack_config
    from gpu_inference.stack import resolve_stack

    cfg = parse_stack_config({"provider": "digitalocean", "region": "atl1", "gpu": "gpu-mi300x1-192gb",
                              "model": "Qwen/Qwen3-8B", "monthlyBudgetUsd": 2000})
    assert resolve_stack(cfg).sizing.non_torch_gib == pytest.approx(6.07)
