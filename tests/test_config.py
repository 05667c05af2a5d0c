"""Stack config: every kind of bad value gets one message naming the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpu_inference.config import (
    StackConfig,
    field_docs,
    load_stack_config,
    parse_stack_config,
    split_namespaced,
)
from gpu_inference.constants import VLLM_IMAGE
from gpu_inference.errors import ConfigError
from gpu_inference.secrets import REDACTED, SecretValue

BASE = {
    "provider": "digitalocean",
    "region": "tor1",
    "gpu": "gpu-l40sx1-48gb",
    "model": "Qwen/Qwen3-8B",
    "monthlyBudgetUsd": 1500,
}


def problems_for(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config({**BASE, **overrides}, secret_keys=set())
    return excinfo.value.messages


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_stack_config(BASE)
    assert cfg.node_count == 1
    assert cfg.gpu_memory_utilization == 0.9
    assert cfg.max_model_len == 8192
    # Unset: the GPU vendor's image of the pinned release (gpu_vendor.vllm_image), so the version is the pinned one.
    assert cfg.vllm_image is None
    assert cfg.vllm_version == VLLM_IMAGE.rsplit(":v", 1)[1]
    assert cfg.monitoring.queue_depth_threshold == 20  # the seeds' figure
    assert cfg.monitoring.kv_cache_usage_threshold == 0.9
    assert cfg.monitoring.ttft_p95_seconds == 2.0


@pytest.mark.parametrize(
    ("overrides", "must_contain"),
    [
        ({"nodeCount": 0}, ["gpu-inference:nodeCount", "0", "≥ 1"]),
        ({"nodeCount": 65}, ["gpu-inference:nodeCount", "65", "≤ 64"]),
        ({"gpuMemoryUtilization": 1.7}, ["gpu-inference:gpuMemoryUtilization", "1.7", "≤ 1"]),
        ({"gpuMemoryUtilization": 0}, ["gpu-inference:gpuMemoryUtilization", "> 0"]),
        ({"provider": "azure"}, ["gpu-inference:provider", "'azure'", "digitalocean, aws, kubernetes"]),
        ({"dtype": "bf16"}, ["gpu-inference:dtype", "did you mean 'bfloat16'"]),
        ({"quantization": "q4"}, ["gpu-inference:quantization", "fp8"]),
        ({"kvCacheDtype": "int8"}, ["gpu-inference:kvCacheDtype", "auto, fp8"]),
        ({"maxModelLen": 8}, ["gpu-inference:maxModelLen", "≥ 16"]),
        ({"maxNumSeqs": "many"}, ["gpu-inference:maxNumSeqs", "'many'"]),
        ({"monthlyBudgetUsd": -5}, ["gpu-inference:monthlyBudgetUsd", "> 0"]),
        ({"allowedCidrs": ["10.0.0.1/8"]}, ["gpu-inference:allowedCidrs", "host bits"]),
        ({"allowedCidrs": ["not-a-net"]}, ["gpu-inference:allowedCidrs", "CIDR"]),
        ({"vllmImage": "vllm/vllm-openai:latest"}, ["gpu-inference:vllmImage", "pinned release tag"]),
        (
            {"gpuMemoryUtilisation": 0.9},
            ["gpu-inference:gpuMemoryUtilisation", "did you mean gpu-inference:gpuMemoryUtilization"],
        ),
        (
            {"monitoring": {"queueDepthTreshold": 5}},
            ["gpu-inference:monitoring.queueDepthTreshold", "monitoring.queueDepthThreshold"],
        ),
        ({"monitoring": {"kvCacheFor": "5 minutes"}}, ["gpu-inference:monitoring.kvCacheFor", "'5 minutes'"]),
        ({"monitoring": {"storageGb": 5}}, ["gpu-inference:monitoring.storageGb", "≥ 10"]),
        ({"monitoring": {"storageGb": 20000}}, ["gpu-inference:monitoring.storageGb", "≤ 16384"]),
        ({"loadBalancer": {"maxFails": 0}}, ["gpu-inference:loadBalancer.maxFails", "≥ 1"]),
        ({"spot": True}, ["gpu-inference:spot", "only aws"]),
        ({"provider": "kubernetes"}, ["gpu-inference:kubernetes", "clusterId"]),
        ({"tags": ["has space"]}, ["gpu-inference:tags", "'has space'"]),
        ({"apiKey": "sk-plain"}, ["gpu-inference:apiKey", "--secret"]),
    ],
)
def test_each_bad_value_gets_one_message_naming_key_value_and_allowed(
    overrides: dict[str, object], must_contain: list[str]
) -> None:
    messages = problems_for(**overrides)
    assert len(messages) == 1, messages
    for fragment in must_contain:
        assert fragment in messages[0], (fragment, messages[0])


def test_missing_required_key_is_named() -> None:
    raw = dict(BASE)
    del raw["model"]
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config(raw)
    assert excinfo.value.messages == [
        "gpu-inference:model is required: "
        "Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."
    ]


def test_several_bad_values_get_one_message_each() -> None:
    messages = problems_for(nodeCount=0, provider="azure", gpuMemoryUtilization=2)
    assert len(messages) == 3
    assert {m.split(" ")[0] for m in messages} == {
        "gpu-inference:nodeCount",
        "gpu-inference:provider",
        "gpu-inference:gpuMemoryUtilization",
    }


def test_engine_style_string_values_are_coerced() -> None:
    # `pulumi config set` stores scalars as strings and structured values as JSON text.
    cfg = parse_stack_config(
        {**BASE, "nodeCount": "3", "spot": "false", "gpuMemoryUtilization": "0.85",
         "allowedCidrs": '["203.0.113.0/24"]', "monitoring": '{"queueDepthThreshold": 7}'}
    )
    assert cfg.node_count == 3
    assert cfg.gpu_memory_utilization == 0.85
    assert cfg.allowed_cidrs == ["203.0.113.0/24"]
    assert cfg.monitoring.queue_depth_threshold == 7


def test_secrets_stay_opaque() -> None:
    cfg = parse_stack_config({**BASE, "apiKey": "sk-live-123"}, secret_keys={"apiKey"})
    assert isinstance(cfg.api_key, SecretValue)
    assert "sk-live-123" not in repr(cfg)
    assert "sk-live-123" not in cfg.model_dump_json()
    assert REDACTED in cfg.model_dump_json()
    assert cfg.api_key.reveal() == "sk-live-123"
    offline = parse_stack_config({**BASE, "apiKey": {"secure": "v1:abc"}}, secret_keys={"apiKey"})
    assert offline.api_key is not None and not offline.api_key.is_decrypted
    assert offline.api_key.ciphertext == "v1:abc"


def test_split_namespaced_keeps_provider_keys_apart() -> None:
    ours, others = split_namespaced({"gpu-inference:nodeCount": 2, "aws:region": "us-east-1"})
    assert ours == {"nodeCount": 2}
    assert others == {"aws:region": "us-east-1"}


def test_stack_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump({"config": {f"gpu-inference:{k}": v for k, v in BASE.items()}
                                     | {"gpu-inference:apiKey": {"secure": "v1:xyz"}, "digitalocean:token": {"secure": "v1:q"}}}))
    cfg = load_stack_config(path)
    assert cfg.api_key is not None and cfg.api_key.ciphertext == "v1:xyz"


def test_stack_file_without_namespace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump({"config": {"nodeCount": 2}}))
    with pytest.raises(ConfigError, match="gpu-inference:nodeCount"):
        load_stack_config(path)


def test_missing_stack_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_stack_config(tmp_path / "Pulumi.nope.yaml")


def test_every_field_is_documented() -> None:
    from gpu_inference.config import KubernetesConfig, LoadBalancerConfig, MonitoringConfig

    for model in (StackConfig, MonitoringConfig, LoadBalancerConfig, KubernetesConfig):
        undocumented = [k for k, doc in field_docs(model).items() if not doc.strip()]
        assert not undocumented, f"{model.__name__} fields without a docstring: {undocumented}"


@given(st.integers())
def test_node_count_accepted_exactly_in_range(n: int) -> None:
    try:
        cfg = parse_stack_config({**BASE, "nodeCount": n})
    except ConfigError as exc:
        assert not 1 <= n <= 64
        assert len(exc.messages) == 1 and "gpu-inference:nodeCount" in exc.messages[0]
    else:
        assert 1 <= n <= 64 and cfg.node_count == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_utilization_accepted_exactly_in_range(u: float) -> None:
    try:
        parse_stack_config({**BASE, "gpuMemoryUtilization": u})
    except ConfigError as exc:
        assert not 0 < u <= 1
        assert "gpu-inference:gpuMemoryUtilization" in exc.messages[0]
    else:
        assert 0 < u <= 1


def test_readme_config_table_matches_the_models() -> None:
    from gpu_inference.config_docs import readme_section

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme_section() in readme, "README's config table drifted: run scripts/update_readme_config.py"


def test_tls_domain_is_refused_on_kubernetes() -> None:
    raw = {**BASE, "provider": "kubernetes", "kubernetes": {"clusterId": "c-1"},
           "loadBalancer": {"tlsDomain": "llm.example.com"}}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw)
    [message] = info.value.messages
    assert "loadBalancer.tlsDomain" in message and "kubernetes" in message
    assert parse_stack_config({**raw, "loadBalancer": {}}).provider == "kubernetes"


def test_a_private_kubernetes_endpoint_needs_allowed_cidrs() -> None:
    # loadBalancerSourceRanges: [] is no restriction in Kubernetes: the "private" Service would be world-open.
    raw = {**BASE, "provider": "kubernetes", "kubernetes": {"clusterId": "c-1"}, "publicEndpoint": False}
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw)
    [message] = info.value.messages
    assert "allowedCidrs" in message and "loadBalancerSourceRanges" in message
    assert parse_stack_config({**raw, "allowedCidrs": ["198.51.100.0/24"]}).public_endpoint is False
