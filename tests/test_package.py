"""The components as a Pulumi component package: the inferred schema, and `construct` as another language calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.provider.experimental.server import ComponentInitError
from pulumi.runtime import mocks

from components import package
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.preview_runner import RecordingMocks, RecordingMonitor, _ensure_event_loop

KEY = "sk-test-package-0123456789abcdef"
# What a TypeScript or YAML program sends: camelCase names, every number a double.
DO_INPUTS: dict[str, Any] = {
    "provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
    "nodeCount": 2.0, "maxModelLen": 8192.0, "monthlyBudgetUsd": 5000.0, "allowedCidrs": ["203.0.113.0/24"],
    "monitoring": {"scrapeIntervalSeconds": 15.0},
}


def test_the_schema_is_the_golden_one() -> None:
    golden = (PROJECT_DIR / "schema.json").read_text(encoding="utf-8")
    assert package.schema_text() == golden, "the package interface changed: run .venv/bin/python scripts/update_schema.py"


def test_every_component_is_in_the_schema_under_its_own_type_token() -> None:
    resources = package.schema()["resources"]
    for component in package.COMPONENTS:
        module = __import__(component.__module__, fromlist=["TOKEN"])
        assert module.TOKEN in resources, component.__name__
        assert resources[module.TOKEN]["isComponent"] is True
    stack = resources["gpu-inference:index:InferenceStack"]
    assert set(stack["requiredInputs"]) == {"provider", "region", "gpu", "model", "monthlyBudgetUsd"}
    assert stack["inputProperties"]["nodeCount"]["description"].startswith("How many GPU nodes")
    assert {"endpoint", "monthlyCostUsd", "kvCacheTokensPerNode"} <= set(stack["properties"])


def test_closed_choices_are_enums_in_the_schema() -> None:
    types = package.schema()["types"]
    assert [e["value"] for e in types["gpu-inference:index:Provider"]["enum"]] == ["digitalocean", "aws", "kubernetes"]
    assert {e["value"] for e in types["gpu-inference:index:Quantization"]["enum"]} >= {"fp8", "awq", "none"}


@pytest.fixture
def monitor() -> RecordingMonitor:
    _ensure_event_loop()
    pulumi.runtime.settings.ROOT.set(None)
    fake = RecordingMocks("digitalocean", "tor1")
    recording = RecordingMonitor(fake)
    mocks.set_mocks(fake, project="consumer", stack="dev", preview=True, monitor=recording)
    return recording


def settle() -> None:
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    _sync_await(wait_for_rpcs())


def provider() -> package.GpuInferenceProvider:
    return package.GpuInferenceProvider(package.COMPONENTS, package.PACKAGE_NAME, None, package.VERSION)


def test_construct_an_inference_stack_from_another_languages_inputs(monitor: RecordingMonitor) -> None:
    inputs = {**DO_INPUTS, "apiKey": pulumi.Output.secret(KEY)}
    result = provider().construct("llm", "gpu-inference:index:InferenceStack", inputs)
    settle()
    # The stack's outputs are the component's, Grafana's URL among them (the monitoring host's port 3000 here).
    assert {"endpoint", "prometheusUrl", "grafanaUrl", "monthlyCostUsd"} <= set(result.state)
    [stack] = [r for r in monitor.recorded if r.type == "gpu-inference:index:InferenceStack"]
    [pool] = [r for r in monitor.recorded if r.type == "gpu-inference:index:LoadBalancedPool"]
    assert stack.name == pool.name == "llm" and pool.parent == stack.urn
    by_name = {r.name: r for r in monitor.recorded if r.custom or r.name != "llm"}
    droplets = sorted(r.name for r in monitor.recorded if r.type == "digitalocean:index/droplet:Droplet")
    assert droplets == ["llm-lb", "llm-monitoring-prometheus", "llm-vllm-0-node", "llm-vllm-1-node"]
    assert by_name["llm-vllm-0"].inputs["nodeCount"] == 2 and by_name["llm-vllm-0"].inputs["apiKeySet"] is True
    # The key went into the load balancer's and the nodes' user data, which are secret; nowhere in plain text.
    for name in ("llm-lb", "llm-vllm-0-node"):
        assert "userData" in by_name[name].secret_inputs
    assert KEY not in json.dumps([r.model_dump() for r in monitor.recorded])


def test_construct_each_component_on_its_own(monitor: RecordingMonitor) -> None:
    network = {"vpcId": "vpc-1", "gpuIdentity": "gpu-tag", "lbIdentity": "lb-tag", "monitoringIdentity": "mon-tag"}
    p = provider()
    p.construct("svc", "gpu-inference:index:VllmService", {**DO_INPUTS, "nodeIndex": 1.0, "network": network})
    p.construct("mon", "gpu-inference:index:MonitoringStack",
                {**DO_INPUTS, "network": network, "nodePrivateIps": ["10.0.0.2"], "lbPrivateIp": "10.0.0.3"})
    p.construct("pool", "gpu-inference:index:LoadBalancedPool", DO_INPUTS)
    settle()
    names = {r.name: r for r in monitor.recorded if not r.custom}
    assert names["svc"].inputs["nodeIndex"] == 1 and names["svc-node"].type == "gpu-inference:index:GpuInferenceNode"
    [fw] = [r for r in monitor.recorded if r.name == "svc-node-fw"]
    assert {"lb-tag", "mon-tag"} <= set(fw.inputs["inboundRules"][0]["sourceTags"])  # the given network's identities
    droplets = {r.name for r in monitor.recorded if r.type == "digitalocean:index/droplet:Droplet"}
    assert {"svc-node", "mon-prometheus", "pool-lb"} <= droplets


@pytest.mark.parametrize(("change", "message"), [
    ({"nodeCount": 0.0}, "gpu-inference:nodeCount = 0 is out of range: allowed ≥ 1, ≤ 64"),
    ({"provider": "azure"}, "gpu-inference:provider = 'azure' is not allowed: choose one of digitalocean, aws, kubernetes"),
    ({"gpuMemoryUtilization": 1.5}, "gpu-inference:gpuMemoryUtilization = 1.5 is out of range"),
    ({"nodeCount": 2.5}, "gpu-inference:nodeCount"),
    ({"model": "meta-llama/Llama-3.3-70B-Instruct"}, "does not fit 1 × L40S"),
    ({"region": "nyc2"}, "is not offered in digitalocean/nyc2"),
    ({"quantization": "awq"}, "gpu-inference:quantization = awq needs AWQ weights"),
    ({"model": "meta-llama/Llama-3.1-8B-Instruct"}, "gpu-inference:hfToken is not set"),
])
def test_construct_refuses_what_a_stack_file_is_refused_with_the_same_line(
    monitor: RecordingMonitor, change: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ComponentInitError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        provider().construct("llm", "gpu-inference:index:InferenceStack", {**DO_INPUTS, **change})
    assert "\n" not in str(info.value) or str(info.value).count("\n") <= 1
    settle()
    assert monitor.recorded == []  # refused before anything is registered


def test_the_yaml_example_parses_and_uses_only_schema_inputs() -> None:
    example = yaml.safe_load((PROJECT_DIR / "examples" / "yaml" / "Pulumi.yaml").read_text(encoding="utf-8"))
    resources = package.schema()["resources"]
    assert example["runtime"] == "yaml" and "gpu-inference" in (example.get("packages") or {})
    for resource in example["resources"].values():
        schema = resources[resource["type"]]
        unknown = set(resource.get("properties", {})) - set(schema["inputProperties"])
        assert not unknown, unknown
        assert set(schema.get("requiredInputs", [])) <= set(resource["properties"])


def test_the_plugin_manifest_names_the_provider_host() -> None:
    manifest = yaml.safe_load((PROJECT_DIR / "PulumiPlugin.yaml").read_text(encoding="utf-8"))
    assert manifest["runtime"] == "python"
    assert (PROJECT_DIR / manifest["main"]).is_file()
    assert "host()" in Path(PROJECT_DIR / manifest["main"]).read_text(encoding="utf-8")
