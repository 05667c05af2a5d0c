"""Model catalog and config.json loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_inference.model_arch import (
    ModelArchitecture,
    UnknownModel,
    load_model_catalog,
    model_from_hf_config,
    resolve_model,
)

FIXTURES = Path(__file__).parent / "fixtures"

REQUIRED_MODELS = [
    "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf",
    "codellama/CodeLlama-7b-hf", "codellama/CodeLlama-13b-hf", "codellama/CodeLlama-34b-hf",
    "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-4-Scout-17B-16E-Instruct", "Qwen/Qwen1.5-MoE-A2.7B",
    "Qwen/Qwen1.5-7B-Chat", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen/Qwen3-0.6B",
    "Qwen/Qwen3-8B", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B",
    "mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "mistralai/Mistral-Small-3.2-24B-Instruct-2506", "mistralai/Mixtral-8x7B-Instruct-v0.1", "google/gemma-2b",
    "google/gemma-7b", "google/gemma-2-2b-it", "google/gemma-2-9b-it", "google/gemma-2-27b-it", "google/gemma-3-4b-it",
    "google/gemma-3-12b-it", "google/gemma-3-27b-it", "microsoft/phi-2", "microsoft/phi-4",
    "deepseek-ai/DeepSeek-V2-Lite", "moonshotai/Kimi-VL-A3B-Instruct", "ibm-granite/granite-3.1-8b-instruct",
    "ibm-granite/granite-3.3-8b-instruct", "ibm-granite/granite-3.1-2b-instruct", "ibm-granite/granite-3.3-2b-instruct",
    "ibm-granite/granite-vision-3.3-2b", "openai/gpt-oss-20b", "openai/gpt-oss-120b",
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic",
]


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_required_models_resolve(model_id: str) -> None:
    model = resolve_model(model_id)
    assert model.kv_cache_bytes_per_token(2) > 0
    assert model.source, f"{model_id} has no source"


def test_every_entry_cites_a_source_and_lists_unverified_fields() -> None:
    for model in {m.id: m for m in load_model_catalog().values()}.values():
        assert model.source
        if not model.verified:
            assert model.unverified_fields, f"{model.id}: unverified but no unverified_fields"


def test_computed_params_agree_with_recorded_totals() -> None:
    """The shapes reproduce the published parameter counts (a check on every field at once)."""
    for model in {m.id: m for m in load_model_catalog().values()}.values():
        if model.total_params_b is None:
            continue
        computed = model.computed_params / 1e9
        assert computed == pytest.approx(model.total_params_b, rel=0.03), model.id


def test_aliases_and_case_insensitive_lookup() -> None:
    a = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert resolve_model("meta-llama/Meta-Llama-3.1-8B-Instruct") is a
    assert resolve_model("META-LLAMA/llama-3.1-8b-instruct") is a
    catalog = load_model_catalog()
    assert catalog["meta-llama/Meta-Llama-3.1-8B-Instruct"] is catalog["meta-llama/Llama-3.1-8B-Instruct"]


def test_unknown_model_names_value_and_close_matches() -> None:
    with pytest.raises(UnknownModel) as info:
        resolve_model("meta-llama/Llama-3.1-8B-Instruckt")
    err = info.value
    assert err.value == "meta-llama/Llama-3.1-8B-Instruckt"
    assert "meta-llama/Llama-3.1-8B-Instruct" in err.close_matches
    assert "Llama-3.1-8B-Instruckt" in str(err) and "meta-llama/Llama-3.1-8B-Instruct" in str(err)
    assert isinstance(err, LookupError)


def test_kv_bytes_per_token_reference_values() -> None:
    assert resolve_model("meta-llama/Llama-3.1-8B-Instruct").kv_cache_bytes_per_token(2) == 131072
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct").kv_cache_bytes_per_token(2) == 57344
    # MLA: one latent of kv_lora_rank + qk_rope_head_dim, no factor 2, not split by TP
    lite = resolve_model("deepseek-ai/DeepSeek-V2-Lite")
    assert lite.kv_cache_bytes_per_token(2) == 31104
    assert lite.kv_cache_bytes_per_token(2, tensor_parallel_size=4) == 31104
    assert resolve_model("moonshotai/Kimi-VL-A3B-Instruct").kv_cache_bytes_per_token(2) == 31104
    # GQA with fewer KV heads than TP ranks: replicated, one head per GPU
    big = resolve_model("Qwen/Qwen3-235B-A22B")
    assert big.kv_cache_bytes_per_token(2, 4) == big.kv_cache_bytes_per_token(2, 8) == 47 * 1024


def test_layer_patterns() -> None:
    gemma3 = resolve_model("google/gemma-3-4b-it").layer_kinds()
    assert gemma3.count("full") == 5 and gemma3.count("sliding") == 29 and gemma3[5] == "full"
    gemma2 = resolve_model("google/gemma-2-9b-it").layer_kinds()
    assert gemma2[0] == "sliding" and gemma2[1] == "full"
    scout = resolve_model("meta-llama/Llama-4-Scout-17B-16E-Instruct").layer_kinds()
    assert scout.count("full") == 12 and scout.count("chunked") == 36
    assert set(resolve_model("mistralai/Mistral-7B-v0.1").layer_kinds()) == {"sliding"}
    assert set(resolve_model("meta-llama/Llama-3.1-8B-Instruct").layer_kinds()) == {"full"}


def test_quantized_checkpoints_record_their_method() -> None:
    assert resolve_model("openai/gpt-oss-20b").quantization.method == "mxfp4"
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct-AWQ").quantization.method == "awq"
    assert resolve_model("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic").quantization.method == (
        "compressed-tensors-fp8"
    )


def test_finetune_config_json_loads_like_its_base() -> None:
    path = FIXTURES / "llama31-8b-finetune-config.json"
    tuned = resolve_model(str(path))
    base = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert tuned.id == str(path)
    assert tuned.kv_cache_bytes_per_token(2) == base.kv_cache_bytes_per_token(2)
    assert tuned.computed_params == pytest.approx(base.computed_params)
    with pytest.raises(UnknownModel):  # a folder without a config.json is not a model
        resolve_model(str(FIXTURES))


def test_multimodal_config_reads_text_config_and_sliding_pattern() -> None:
    model = resolve_model(str(FIXTURES / "gemma3-4b-finetune-config.json"))
    catalog = resolve_model("google/gemma-3-4b-it")
    assert model.num_hidden_layers == 34 and model.tie_word_embeddings
    assert model.layer_kinds() == catalog.layer_kinds()
    assert model.sliding_window == 1024


def test_mla_config_with_quantization() -> None:
    model = resolve_model(str(FIXTURES / "deepseek-v2-lite-awq-config.json"))
    assert model.attention_kind == "mla" and model.kv_cache_bytes_per_token(2) == 31104
    assert model.quantization.method == "awq" and model.quantization.bits == 4
    assert model.moe is not None and model.moe.num_experts == 64 and model.moe.first_k_dense_layers == 1


def test_layer_types_and_compressed_tensors_from_config() -> None:
    config = json.loads((FIXTURES / "llama31-8b-finetune-config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
    }
    assert model_from_hf_config(config, "x").quantization.method == "compressed-tensors-fp8"
    oss = {
        "architectures": ["GptOssForCausalLM"], "hidden_size": 2880, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "num_hidden_layers": 4, "vocab_size": 201088,
        "intermediate_size": 2880, "sliding_window": 128, "max_position_embeddings": 131072,
        "layer_types": ["sliding_attention", "full_attention"] * 2, "num_local_experts": 32,
        "experts_per_token": 4, "quantization_config": {"quant_method": "mxfp4"},
    }
    model = model_from_hf_config(oss, "oss")
    assert model.layer_kinds() == ["sliding", "full", "sliding", "full"]
    assert model.quantization.method == "mxfp4" and model.quantization.experts_only
    assert model.moe is not None and model.moe.experts_per_token == 4


def test_validation_rejects_inconsistent_attention() -> None:
    with pytest.raises(ValueError, match="MLA"):
        ModelArchitecture(
            id="x", architecture="X", num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            head_dim=64, hidden_size=128, intermediate_size=256, vocab_size=100, max_position_embeddings=10,
            attention_kind="mla",
        )


def test_rotary_cache_rows_follow_rope_scaling() -> None:
    """vLLM caches max_position × factor rows for linear/dynamic ropes, original × factor for YaRN, plus
    Gemma 3's local rope; a plain or llama3 rope caches max_position rows (field left unset)."""
    base = {"architectures": ["X"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": 128, "intermediate_size": 128, "max_position_embeddings": 1024}
    gemma3 = {**base, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "rope_local_base_freq": 10000.0}
    assert model_from_hf_config(gemma3, "g").rotary_cache_positions == 9 * 1024
    yarn = {**base, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}}
    assert model_from_hf_config(yarn, "y").rotary_cache_positions is None  # 256 × 4 = max_position
    llama3 = {**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert model_from_hf_config(llama3, "l").rotary_cache_positions is None
    dynamic = {**base, "rope_scaling": {"type": "dynamic", "factor": 2.0}}
    assert model_from_hf_config(dynamic, "d").rotary_cache_positions == 2048
