"""can-start: what vLLM cannot start from (issue 12) is a mandatory failure naming the fix, in the pack and the
offline preview alike (one registry entry); and what vLLM is told about a pre-quantized checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_policy_rules import evaluate, service

from gpu_inference.config import parse_stack_config
from gpu_inference.errors import ConfigError
from gpu_inference.policy_rules import (
    POLICY_BY_NAME,
    PolicySettings,
    ResourceView,
    can_start,
    check_can_start,
    resolve_service,
)
from gpu_inference.stack import resolve_stack

ROCM_IMAGE = "vllm/vllm-openai-rocm:v0.19.0"


def passes(view: ResourceView) -> bool:
    """The service resolves (a pass is a real check, not 'cannot be resolved') and can start."""
    assert not isinstance(resolve_service(view), list), resolve_service(view)
    return check_can_start(view) == []

# --- quantization the checkpoint does not have -------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["awq", "gptq"])
def test_awq_or_gptq_on_an_unquantized_checkpoint_fails_and_names_both_fixes(quantization: str) -> None:
    problems = check_can_start(service(quantization=quantization))
    assert len(problems) == 1
    text = problems[0]
    assert f"gpu-inference:quantization = {quantization}" in text and "Qwen/Qwen3-8B is unquantized" in text
    assert f"Cannot find the config file for {quantization}" in text
    assert "gpu-inference:modelRepo" in text and "pre-quantized" in text
    assert "gpu-inference:quantization = fp8" in text  # the L40S has FP8: vLLM quantizes at load


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_int8_or_int4_on_a_bf16_checkpoint_fails_because_vllm_would_serve_bf16(quantization: str) -> None:
    (text,) = check_can_start(service(quantization=quantization))
    assert "would serve the weights in 16 bits" in text and "gpu-inference:modelRepo" in text


def test_the_fp8_fix_is_not_offered_on_a_gpu_without_fp8() -> None:
    (text,) = check_can_start(service(gpu="g5.xlarge", gpuName=None, provider="aws", region="us-east-1",
                                      quantization="awq"))
    assert "has no FP8" in text and "quantization = fp8 (vLLM" not in text


@pytest.mark.parametrize(("props"), [
    {"quantization": "fp8"},                                              # quantized at load
    {"quantization": "none"},
    {"model": "Qwen/Qwen2.5-7B-Instruct-AWQ", "quantization": "awq"},     # the checkpoint is AWQ
    {"model": "Qwen/Qwen2.5-7B-Instruct-AWQ"},
    {"modelRepo": "Qwen/Qwen3-8B-AWQ", "quantization": "awq"},            # a pre-quantized repo named by modelRepo
    {"modelRepo": "Qwen/Qwen3-8B-AWQ", "quantization": "int4"},
])  # fmt: skip
def test_servable_quantizations_pass(props: dict[str, Any]) -> None:
    assert passes(service(**props))


def test_a_fine_tune_config_json_without_quantization_config_cannot_take_awq(tmp_path: Path) -> None:
    import json

    from gpu_inference.model_arch import load_model_catalog

    base = load_model_catalog()["Qwen/Qwen3-8B"]
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": base.hidden_size,
           "num_attention_heads": base.num_attention_heads, "num_key_value_heads": base.num_key_value_heads,
           "head_dim": base.head_dim, "num_hidden_layers": base.num_hidden_layers,
           "intermediate_size": base.intermediate_size, "vocab_size": base.vocab_size,
           "max_position_embeddings": 40960}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    (text,) = check_can_start(service(model=str(path), modelRepo="acme/qwen3-8b-ft", quantization="awq"))
    assert "acme/qwen3-8b-ft is unquantized (its config.json has no quantization_config)" in text


# --- gated repositories ---------------------------------------------------------------------------------------


def test_a_gated_catalog_model_without_hf_token_fails_naming_the_key() -> None:
    (text,) = check_can_start(service(model="meta-llama/Llama-3.1-8B-Instruct"))
    assert "meta-llama/Llama-3.1-8B-Instruct is a gated Hugging Face repository" in text
    assert "gpu-inference:hfToken" in text and "401" in text and "Llama Community License" in text


def test_a_gated_model_with_a_token_passes() -> None:
    assert passes(service(model="meta-llama/Llama-3.1-8B-Instruct", hfTokenSet=True))


def test_aliases_resolve_to_the_gated_canonical_repo() -> None:
    assert check_can_start(service(model="meta-llama/Meta-Llama-3.1-8B-Instruct"))


def test_an_open_re_upload_of_a_gated_model_is_not_gated() -> None:
    # extends inherits the architecture, never the gate
    assert passes(service(model="RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8"))


def test_model_gated_says_so_for_a_custom_repo() -> None:
    assert passes(service(modelRepo="acme/private-llama-ft"))
    (text,) = check_can_start(service(modelRepo="acme/private-llama-ft", modelGated=True))
    assert "acme/private-llama-ft is a gated Hugging Face repository (gpu-inference:modelGated = true)" in text
    # and it can declare a catalog repo open (a mirror, or a gate lifted)
    assert passes(service(model="meta-llama/Llama-3.1-8B-Instruct", modelGated=False))


def test_the_catalog_records_where_each_gate_comes_from() -> None:
    from gpu_inference.model_arch import load_model_catalog

    gated = {m.id for m in load_model_catalog().values() if m.gated}
    assert {"meta-llama/Llama-3.1-8B-Instruct", "google/gemma-3-27b-it", "mistralai/Mistral-7B-Instruct-v0.3"} <= gated
    assert "Qwen/Qwen3-8B" not in gated
    assert all(m.gated_source for m in load_model_catalog().values() if m.gated)


# --- AMD where the layout has no ROCm path ----------------------------------------------------------------------


def test_an_amd_offering_on_the_kubernetes_layout_fails_naming_what_is_missing() -> None:
    (text,) = check_can_start(service(gpu="gpu-mi300x1-192gb", provider="kubernetes", region="atl1",
                                      clusterId="c-1", vllmImage=ROCM_IMAGE))
    assert "AMD GPUs (MI300X)" in text and "amd.com/gpu" in text and "provider digitalocean" in text


def test_a_spec_naming_only_the_vllm_version_runs_the_vendors_image() -> None:
    failures, ok = can_start(service(gpu="gpu-mi300x1-192gb", region="atl1"), PolicySettings())  # vllmVersion only
    assert failures == [] and "vllm/vllm-openai-rocm:v0.19.0" in ok


def test_amd_droplets_can_start() -> None:
    failures, ok = can_start(service(gpu="gpu-mi300x1-192gb", region="atl1", vllmImage=ROCM_IMAGE), PolicySettings())
    assert failures == [] and "on ROCm with vllm/vllm-openai-rocm:v0.19.0" in ok


# --- one registry entry, mandatory --------------------------------------------------------------------------------


def test_can_start_is_a_mandatory_registry_policy_the_preview_evaluates() -> None:
    assert POLICY_BY_NAME["can-start"].default_level == "mandatory"
    verdicts = [v for v in evaluate([service(quantization="awq")], 5000, PolicySettings()) if v.name == "can-start"]
    assert len(verdicts) == 1 and verdicts[0].blocks


# --- vllmImage of the wrong vendor: a config error -----------------------------------------------------------------


def test_the_cuda_image_on_an_amd_offering_is_a_config_error() -> None:
    cfg = parse_stack_config({"provider": "digitalocean", "region": "atl1", "gpu": "gpu-mi300x1-192gb",
                              "model": "Qwen/Qwen3-8B", "monthlyBudgetUsd": 2000,
                              "vllmImage": "vllm/vllm-openai:v0.19.0"})
    with pytest.raises(ConfigError) as err:
        resolve_stack(cfg)
    assert "gpu-inference:vllmImage = 'vllm/vllm-openai:v0.19.0' is vLLM's CUDA image" in str(err.value)
    assert "vllm/vllm-openai-rocm:v0.19.0" in str(err.value)
