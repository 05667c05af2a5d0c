"""Each component on its own: plain-data args (the stack config's keys), no stack file, no __main__.py."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks

from gpu_inference.errors import ConfigError
from gpu_inference.preview_runner import RecordingMocks, RecordingMonitor, _ensure_event_loop

ARGS: dict[str, Any] = {
    "provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
    "node_count": 2, "monthly_budget_usd": 5000, "allowed_cidrs": ["203.0.113.0/24"],
}


@pytest.fixture
def monitor() -> RecordingMonitor:
    _ensure_event_loop()
    pulumi.runtime.settings.ROOT.set(None)
    fake = RecordingMocks("digitalocean", "tor1")
    recording = RecordingMonitor(fake)
    mocks.set_mocks(fake, project="gpu-inference", stack="standalone", preview=True, monitor=recording)
    return recording


def settle() -> None:
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    _sync_await(wait_for_rpcs())


def test_a_load_balanced_pool_from_plain_args_registers_its_nodes_and_lb(monitor: RecordingMonitor) -> None:
    from components.load_balanced_pool import LoadBalancedPool

    pool = LoadBalancedPool("llm", ARGS)  # type: ignore[arg-type]
    settle()
    droplets = sorted(r.name for r in monitor.recorded if r.type == "digitalocean:index/droplet:Droplet")
    assert droplets == ["llm-lb", "llm-vllm-0-node", "llm-vllm-1-node"]
    # Its bill is the paid resources it created (two GPU droplets, the LB droplet, its reserved IP).
    assert sorted(r.name for r in pool.registrations) == ["llm-lb", "llm-lb-ip", "llm-vllm-0-node", "llm-vllm-1-node"]
    [svc] = [r for r in monitor.recorded if r.name == "llm-vllm-0"]
    assert svc.type == "gpu-inference:index:VllmService" and svc.inputs["nodeCount"] == 2
    assert svc.inputs["apiKeySet"] is False  # derived from the args: no api_key given


def test_a_component_refuses_a_bad_value_with_the_stack_files_message(monitor: RecordingMonitor) -> None:
    from components.load_balanced_pool import LoadBalancedPool

    with pytest.raises(ConfigError, match=r"gpu-inference:nodeCount = 0 is out of range: allowed ≥ 1, ≤ 64"):
        LoadBalancedPool("llm", {**ARGS, "node_count": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"gpu-inference:gpu = 'gpu-l40s' is not in the catalog"):
        LoadBalancedPool("llm", {**ARGS, "gpu": "gpu-l40s"})  # type: ignore[arg-type]
    settle()
    assert monitor.recorded == []  # nothing registered before the refusal


def test_a_value_that_decides_which_resources_exist_must_be_plain(monitor: RecordingMonitor) -> None:
    from components.vllm_service import VllmService

    with pytest.raises(ConfigError, match="gpu-inference:nodeCount must be a plain value"):
        VllmService("llm", {**ARGS, "node_count": pulumi.Output.from_input(2)})  # type: ignore[arg-type]


def test_numbers_from_another_language_arrive_as_floats_and_still_validate(monitor: RecordingMonitor) -> None:
    from components.load_balanced_pool import LoadBalancedPool

    LoadBalancedPool("llm", {**ARGS, "node_count": 1.0, "max_model_len": 8192.0})  # type: ignore[arg-type]
    settle()
    droplets = sorted(r.name for r in monitor.recorded if r.type == "digitalocean:index/droplet:Droplet")
    assert droplets == ["llm-lb", "llm-vllm-0-node"]
