"""The CrossGuard pack, driven through pulumi-policy's own argument types.

Props are built exactly as the SDK's analyzer server builds them (pulumi_policy/policy.py, Analyze and
AnalyzeStack): a protobuf Struct from the engine → ``json_format.MessageToDict`` →
``deserialize_properties`` (which strips Pulumi's secret markers) → ``unknown_checking_proxy``. The
module is imported, never ``policies/__main__.py`` (building the PolicyPack starts a server and blocks).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from gpu_inference import policy_rules as rules
from policies import gpu_inference_policies as gp

VLLM = "gpu-inference:index:VllmService"
DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
FAKE_KEY = "sk-test-0123456789abcdefABCDEF"
REPO = Path(__file__).resolve().parents[1]


def spec(**props: Any) -> dict[str, Any]:
    """VllmService props as components/vllm_service.py registers them (ServiceSpec.props() + nodeIndex); a prop
    given as None is left out, as an older component would."""
    out: dict[str, Any] = {
        "model": "Qwen/Qwen3-8B", "servedModelName": "Qwen/Qwen3-8B", "gpu": "gpu-l40sx1-48gb",
        "gpuName": "NVIDIA L40S 48GB GDDR6", "gpuCount": 1, "gpuMemoryGib": 44.42,
        "nodeCount": 1, "tensorParallelSize": 1, "maxModelLen": 8192, "maxNumSeqs": 64, "dtype": "auto",
        "quantization": "checkpoint", "kvCacheDtype": "auto", "gpuMemoryUtilization": 0.9, "vllmVersion": "0.19.0",
        "vllmImage": "vllm/vllm-openai:v0.19.0", "typicalRequestTokens": 2048, "provider": "digitalocean",
        "region": "tor1", "apiKeySet": True, "monthlyBudgetUsd": 1250.0, "allowedCidrs": [], "nodeIndex": 0,
    }
    out.update(props)
    return {k: v for k, v in out.items() if v is not None}


def wire(props: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(props)
    return struct


def sdk_props(props: dict[str, Any]) -> Any:
    """What a validator receives as ``args.props`` (policy.py Analyze: deserialize, then proxy)."""
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(wire(props))))


def secret(value: Any) -> dict[str, Any]:
    """A value as the engine sends a Pulumi secret to analyzers (KeepSecrets: true)."""
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def options(additional_secret_outputs: tuple[str, ...] = (), parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(additional_secret_outputs), parent)


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::gpu-inference::{type_}::{name}"


def resource_args(type_: str, name: str, props: dict[str, Any], config: dict[str, Any] | None = None,
                  secret_outputs: tuple[str, ...] = ()) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_, sdk_props(props), urn(type_, name), name, options(secret_outputs), None, config)


def stack_args(resources: list[tuple[str, str, dict[str, Any]]], config: dict[str, Any] | None = None) -> StackValidationArgs:
    return StackValidationArgs(
        [PolicyResource(t, sdk_props(p), urn(t, n), n, options(), None, None, [], {}) for t, n, p in resources], config
    )


def violations(policy: ResourceValidationPolicy | StackValidationPolicy, args: Any) -> list[str]:
    messages: list[str] = []
    policy.validate(args, lambda message, urn=None: messages.append(message))
    return messages


def do_stack(**svc: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """A DigitalOcean stack's outputs as AnalyzeStack sees them (IP addresses unknown during preview)."""
    return [
        (VLLM, "llm-0", spec(**svc)),
        (DROPLET, "llm-0-node", {"size": "gpu-l40sx1-48gb", "region": "tor1", "ipv4Address": UNKNOWN_STRING_VALUE,
                                 "userData": secret("#cloud-config\n")}),
        (DROPLET, "lb", {"size": "s-1vcpu-2gb", "region": "tor1", "ipv4Address": UNKNOWN_STRING_VALUE}),
        (FIREWALL, "lb-fw", {"inboundRules": [{"protocol": "tcp", "portRange": "80", "sourceAddresses": ["0.0.0.0/0"]}],
                             "dropletIds": [UNKNOWN_STRING_VALUE]}),
    ]


@pytest.fixture(autouse=True)
def _no_stack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine sets these for a real pack; a developer's shell must not leak into the tests.
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.delenv("PULUMI_STACK", raising=False)


# --- the module ---------------------------------------------------------------------------------------


def test_the_module_defines_the_policies_without_building_a_pack() -> None:
    assert [p.name for p in gp.POLICIES] == ["vram-fit", "can-start", "kv-headroom", "gpu-availability", "security",
                                             "budget"]
    assert isinstance(gp.budget_policy, StackValidationPolicy)
    assert all(isinstance(p, ResourceValidationPolicy) for p in gp.POLICIES[:5])
    levels = {p.name: p.enforcement_level for p in gp.POLICIES}
    assert levels == {
        "vram-fit": EnforcementLevel.MANDATORY, "kv-headroom": EnforcementLevel.ADVISORY,
        "gpu-availability": EnforcementLevel.MANDATORY, "security": EnforcementLevel.ADVISORY,
        "budget": EnforcementLevel.MANDATORY, "can-start": EnforcementLevel.MANDATORY,
    }
    assert set(gp.budget_policy.config_schema.properties) == {"monthlyBudgetUsd", "slackUsd"}
    assert "PolicyPack(" in (REPO / "policies" / "__main__.py").read_text()


@pytest.fixture
def prod_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("PULUMI_STACK", "prod")
    yield importlib.reload(gp)
    monkeypatch.delenv("PULUMI_STACK")
    importlib.reload(gp)


def test_security_is_mandatory_when_the_engine_runs_the_pack_for_a_prod_stack(prod_module: Any) -> None:
    assert prod_module.security_policy.enforcement_level == EnforcementLevel.MANDATORY
    assert prod_module.kv_headroom_policy.enforcement_level == EnforcementLevel.ADVISORY


def test_plain_turns_preview_unknowns_into_none_instead_of_raising() -> None:
    props = sdk_props({"a": UNKNOWN_STRING_VALUE, "b": [{"c": UNKNOWN_STRING_VALUE, "d": 1}]})
    assert gp.plain(props) == {"a": None, "b": [{"c": None, "d": 1}]}


# --- vram-fit -----------------------------------------------------------------------------------------


def test_vram_fit_passes_a_model_that_fits() -> None:
    assert violations(gp.vram_fit_policy, resource_args(VLLM, "llm-0", spec())) == []


def test_vram_fit_refuses_llama_70b_bf16_on_one_l40s() -> None:
    [message] = violations(gp.vram_fit_policy, resource_args(VLLM, "llm-0", spec(model="meta-llama/Llama-3.3-70B-Instruct")))
    assert "Llama-3.3-70B-Instruct (bf16) does not fit 1 × L40S" in message
    assert "131.4 GiB" in message and "39.98 GiB usable at 0.90" in message
    assert "Cheapest fix:" in message


def test_vram_fit_checks_only_vllm_services() -> None:
    assert violations(gp.vram_fit_policy, resource_args(DROPLET, "n", {"size": "gpu-l40sx1-48gb"})) == []


def test_vram_fit_says_when_the_spec_is_unknown_during_preview() -> None:
    [message] = violations(gp.vram_fit_policy, resource_args(VLLM, "llm-0", spec(model=UNKNOWN_STRING_VALUE)))
    assert "no 'model' prop" in message


# --- kv-headroom and gpu-availability --------------------------------------------------------------------


def test_kv_headroom_warns_and_honours_the_typical_length_config() -> None:
    [message] = violations(gp.kv_headroom_policy, resource_args(VLLM, "llm-0", spec(maxNumSeqs=256)))
    assert "maxNumSeqs is 256" in message and "set gpu-inference:maxNumSeqs to" in message
    relaxed = resource_args(VLLM, "llm-0", spec(maxNumSeqs=256), config={"typicalRequestTokens": 128})
    assert violations(gp.kv_headroom_policy, relaxed) == []


def test_gpu_availability() -> None:
    assert violations(gp.gpu_availability_policy, resource_args(VLLM, "llm-0", spec())) == []
    [message] = violations(gp.gpu_availability_policy, resource_args(VLLM, "llm-0", spec(region="nyc2")))
    assert "not offered in digitalocean/nyc2 (offered in: tor1)" in message


# --- security -----------------------------------------------------------------------------------------------


def test_security_refuses_world_open_vllm_and_exporter_ports() -> None:
    fw = {"inboundRules": [
        {"protocol": "tcp", "portRange": "8000", "sourceAddresses": ["0.0.0.0/0"]},
        {"protocol": "tcp", "portRange": "9400", "sourceTags": ["monitoring"]},
    ]}
    [message] = violations(gp.security_policy, resource_args(FIREWALL, "node-fw", fw))
    assert "port 8000 (vLLM API) to 0.0.0.0/0" in message
    sg = {"ingress": [{"protocol": "tcp", "fromPort": 9100, "toPort": 9100, "cidrBlocks": ["0.0.0.0/0"]}]}
    [message] = violations(gp.security_policy, resource_args(SECURITY_GROUP, "node-sg", sg))
    assert "port 9100 (node_exporter)" in message


def test_security_ssh_only_from_allowed_cidrs_given_by_config_or_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    fw = {"inboundRules": [{"protocol": "tcp", "portRange": "22", "sourceAddresses": ["198.51.100.0/24"]}]}
    assert violations(gp.security_policy, resource_args(FIREWALL, "fw", fw)) == []  # nothing to compare with
    [message] = violations(gp.security_policy, resource_args(FIREWALL, "fw", fw, config={"allowedCidrs": ["203.0.113.0/24"]}))
    assert "198.51.100.0/24, not in gpu-inference:allowedCidrs" in message
    # The engine hands the pack the stack's config as PULUMI_CONFIG (structured values as JSON text).
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"gpu-inference:allowedCidrs": '["203.0.113.0/24"]'}))
    assert violations(gp.security_policy, resource_args(FIREWALL, "fw", fw)) != []


def test_security_requires_an_api_key_when_public(monkeypatch: pytest.MonkeyPatch) -> None:
    [message] = violations(gp.security_policy, resource_args(VLLM, "llm-0", spec(apiKeySet=False)))
    assert "without an API key" in message
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"gpu-inference:publicEndpoint": "false"}))
    assert violations(gp.security_policy, resource_args(VLLM, "llm-0", spec(apiKeySet=False))) == []


def test_the_sdk_strips_secret_markers_so_additional_secret_outputs_is_what_counts() -> None:
    user_data = secret(f"#cloud-config\nwrite_files:\n- content: VLLM_API_KEY={FAKE_KEY}\n")
    args = resource_args(DROPLET, "node", {"size": "gpu-l40sx1-48gb", "userData": user_data})
    assert args.props["userData"].startswith("#cloud-config")  # the marker is gone by the time we see it
    [message] = violations(gp.security_policy, args)
    assert "userData holds an API/HF token variable (VLLM_API_KEY)" in message and FAKE_KEY not in message
    marked = resource_args(DROPLET, "node", {"size": "gpu-l40sx1-48gb", "userData": user_data}, secret_outputs=("userData",))
    assert violations(gp.security_policy, marked) == []


def test_security_survives_unknown_values() -> None:
    fw = {"inboundRules": [{"protocol": "tcp", "portRange": "8000", "sourceAddresses": UNKNOWN_STRING_VALUE}]}
    assert violations(gp.security_policy, resource_args(FIREWALL, "fw", fw)) == []


# --- budget ---------------------------------------------------------------------------------------------------


def test_budget_within_and_over_the_configured_budget() -> None:
    assert violations(gp.budget_policy, stack_args(do_stack(), config={"monthlyBudgetUsd": 2000})) == []
    [message] = violations(gp.budget_policy, stack_args(do_stack(), config={"monthlyBudgetUsd": 500}))
    assert "costs $1,158.10/month (730 h), $658.10 over the $500.00 budget" in message
    assert "llm-0-node (gpu-l40sx1-48gb (1x L40S) at $1.57/h) $1,146.10" in message and "lb (s-1vcpu-2gb" in message


def test_budget_slack() -> None:
    assert violations(gp.budget_policy, stack_args(do_stack(), config={"monthlyBudgetUsd": 1150})) != []
    assert violations(gp.budget_policy, stack_args(do_stack(), config={"monthlyBudgetUsd": 1150, "slackUsd": 10})) == []


def test_budget_comes_from_the_service_or_the_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert violations(gp.budget_policy, stack_args(do_stack(monthlyBudgetUsd=100))) != []
    [missing] = violations(gp.budget_policy, stack_args(do_stack(monthlyBudgetUsd=None)))
    assert "no monthly budget is known" in missing
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"gpu-inference:monthlyBudgetUsd": "1250", "aws:region": "x"}))
    assert violations(gp.budget_policy, stack_args(do_stack(monthlyBudgetUsd=None))) == []


# --- through the SDK's analyzer server, as the engine calls it -------------------------------------------------


def analyzer(config: dict[str, dict[str, Any]] | None = None) -> _PolicyAnalyzerServicer:
    """The servicer PolicyPack would serve (constructed directly: PolicyPack itself blocks)."""
    servicer = _PolicyAnalyzerServicer(gp.PACK_NAME, "0.1.0", gp.POLICIES, EnforcementLevel.ADVISORY)
    # Like the engine, send every configured policy's level: the SDK's Configure takes the level from
    # each entry unconditionally, so an entry without one would read as advisory.
    defaults = {p.name: p.enforcement_level for p in gp.POLICIES}
    request = proto.ConfigureAnalyzerRequest()
    for name, values in (config or {}).items():
        level = EnforcementLevel(values.pop("enforcementLevel", defaults[name].value))
        cfg = proto.PolicyConfig(properties=wire(values))
        cfg.enforcementLevel = proto.MANDATORY if level == EnforcementLevel.MANDATORY else proto.ADVISORY
        request.policyConfig[name].CopyFrom(cfg)
    servicer.Configure(request, None)
    return servicer


def test_engine_round_trip_analyze_and_analyze_stack() -> None:
    servicer = analyzer({"budget": {"monthlyBudgetUsd": 500}, "security": {"enforcementLevel": "mandatory"}})
    info = servicer.GetAnalyzerInfo(None, None)
    assert {p.name for p in info.policies} == {p.name for p in gp.POLICIES}

    svc = spec(model="meta-llama/Llama-3.3-70B-Instruct", apiKeySet=False)
    response = servicer.Analyze(proto.AnalyzeRequest(
        type=VLLM, name="llm-0", urn=urn(VLLM, "llm-0"), properties=wire(svc), options=proto.AnalyzerResourceOptions(),
    ), None)
    by_policy = {d.policyName: d for d in response.diagnostics}
    assert set(by_policy) == {"vram-fit", "security", "can-start"}  # can-start: a gated repo without hfToken
    assert by_policy["vram-fit"].enforcementLevel == proto.MANDATORY and "70B" in by_policy["vram-fit"].message
    assert by_policy["security"].enforcementLevel == proto.MANDATORY  # raised by the policy config

    resources = [
        proto.AnalyzerResource(type=t, name=n, urn=urn(t, n), properties=wire(p), options=proto.AnalyzerResourceOptions())
        for t, n, p in do_stack()
    ]
    response = servicer.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources), None)
    [diag] = response.diagnostics
    assert diag.policyName == "budget" and diag.enforcementLevel == proto.MANDATORY
    assert "over the $500.00 budget" in diag.message


# --- acceptance --------------------------------------------------------------------------------------------------


def test_acceptance_crossguard_refuses_llama_70b_on_one_l40s_and_the_overrun() -> None:
    svc = spec(model="meta-llama/Llama-3.3-70B-Instruct", quantization="none")
    [fit] = violations(gp.vram_fit_policy, resource_args(VLLM, "llm-0", svc))
    assert "70B" in fit and "L40S" in fit and "Cheapest fix:" in fit
    [budget] = violations(gp.budget_policy, stack_args(do_stack(model="meta-llama/Llama-3.3-70B-Instruct"),
                                                       config={"monthlyBudgetUsd": 500}))
    assert "over the $500.00 budget" in budget


def acceptance_stack(tmp_path: Path) -> Path:
    """Pulumi.dev.yaml with Llama-3.3-70B-Instruct (bf16) on the same single L40S, budget $500."""
    text = (REPO / "Pulumi.dev.yaml").read_text()
    assert "gpu-inference:model: Qwen/Qwen3-8B" in text and "gpu-inference:gpu: gpu-l40sx1-48gb" in text
    text = text.replace("gpu-inference:model: Qwen/Qwen3-8B", "gpu-inference:model: meta-llama/Llama-3.3-70B-Instruct")
    text = text.replace("gpu-inference:monthlyBudgetUsd: 1250", "gpu-inference:monthlyBudgetUsd: 500")
    stack_file = tmp_path / "Pulumi.acceptance.yaml"
    stack_file.write_text(text)
    return stack_file


def test_acceptance_offline_preview_refuses_llama_70b_on_one_l40s(tmp_path: Path) -> None:
    preview_runner = pytest.importorskip("gpu_inference.preview_runner")
    report = preview_runner.run_preview(str(acceptance_stack(tmp_path)), None)
    failed = {p["name"]: p for p in report.policies if not p["passed"] and p["level"] == "mandatory"}
    assert set(failed) == {"vram-fit", "budget", "can-start"}  # can-start: gated repo, dev has no hfToken
    assert "gpu-inference:hfToken is not set" in failed["can-start"]["message"]
    assert "70B" in failed["vram-fit"]["message"] and "L40S" in failed["vram-fit"]["message"]
    assert "Cheapest fix:" in failed["vram-fit"]["message"]
    assert "over the $500.00 budget" in failed["budget"]["message"]
    assert report.exit_code == 1


def crossguard_on_recorded(report: Any, budget_config: dict[str, Any]) -> dict[str, list[str]]:
    """Every CrossGuard policy over the registrations the real program made under the preview mocks."""
    found: dict[str, list[str]] = {}
    for policy in gp.POLICIES[:4]:
        for r in report.resources:
            # Only the registered option reaches a policy: the SDK strips secret markers from the props.
            args = resource_args(r.type, r.name, r.inputs, secret_outputs=tuple(r.additional_secret_outputs))
            found.setdefault(policy.name, []).extend(violations(policy, args))
    stack = stack_args([(r.type, r.name, r.inputs) for r in report.resources], config=budget_config)
    found["budget"] = violations(gp.budget_policy, stack)
    return found


@pytest.mark.parametrize("which", ["dev", "acceptance"])
def test_crossguard_and_the_offline_preview_agree_on_the_real_program(tmp_path: Path, which: str) -> None:
    preview_runner = pytest.importorskip("gpu_inference.preview_runner")
    stack = "dev" if which == "dev" else str(acceptance_stack(tmp_path))
    report = preview_runner.run_preview(stack, None)
    found = crossguard_on_recorded(report, {"monthlyBudgetUsd": report.budget_usd})
    preview_failed = {p["name"] for p in report.policies if not p["passed"]}
    assert {name for name, messages in found.items() if messages} == preview_failed


# --- the real program's registration options and component outputs, as CrossGuard gets them ---------------------


def program_run(stack: str, overrides: dict[str, Any] | None = None) -> Any:
    """The real program under the preview mocks (the same run the offline preview makes)."""
    from gpu_inference.config import load_stack_config, read_stack_file
    from gpu_inference.preview_runner import engine_config, run_program

    path = REPO / f"Pulumi.{stack}.yaml"
    raw = {**read_stack_file(path), **{f"gpu-inference:{k}": v for k, v in (overrides or {}).items()}}
    cfg = load_stack_config(path)
    config, secret_keys = engine_config(raw)
    return run_program(REPO, stack, config, secret_keys, cfg.provider, cfg.region)


@pytest.fixture(scope="module")
def dev_program() -> Any:
    return program_run("dev")


def test_crossguard_sees_droplet_user_data_as_secret_only_through_the_registered_option(dev_program: Any) -> None:
    from pulumi.runtime.sync_await import _sync_await

    droplets = {r.name: r for r in dev_program.recorded if r.type == DROPLET}
    assert len(droplets) == 3  # GPU node, Nginx, Prometheus: every one registers the option
    assert all(r.additional_secret_outputs == ["userData"] for r in droplets.values())
    pool = dev_program.namespace["pool"]
    texts = {s.node.instance._name: _sync_await(s.node.instance.user_data.future()) for s in pool.services}
    texts[pool.lb.instance._name] = _sync_await(pool.lb.instance.user_data.future())
    checked = 0
    for name, text in texts.items():
        r = droplets[name]
        # The engine sends the real text, secret-marked; the SDK strips the marker before the policy runs.
        props = {**r.inputs, "userData": secret(text)}
        if not rules.find_credentials(text):
            continue
        checked += 1
        assert violations(gp.security_policy, resource_args(DROPLET, name, props,
                                                            secret_outputs=tuple(r.additional_secret_outputs))) == []
        [message] = violations(gp.security_policy, resource_args(DROPLET, name, props))  # the option removed
        assert f"{name!r}: userData holds" in message and "additional_secret_outputs" in message
    assert checked >= 1  # at least the GPU node's env file carries the API key


def test_crossguard_budget_reads_the_budget_from_vllm_service_outputs(
    dev_program: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AnalyzeStack sends each resource's outputs: for a component, what it passed to register_outputs.
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    [svc] = [r for r in dev_program.recorded if r.type == VLLM]
    assert svc.outputs is not None and svc.outputs["monthlyBudgetUsd"] == 1250
    assert svc.outputs["userData"] == "[secret]" and "privateIp" in svc.outputs
    resources = [(r.type, r.name, r.outputs if not r.custom else r.inputs) for r in dev_program.recorded]
    resources = [(t, n, p) for t, n, p in resources if p is not None]
    assert violations(gp.budget_policy, stack_args(resources)) == []  # within $1,250, no PULUMI_CONFIG needed
    tight = program_run("dev", {"monthlyBudgetUsd": 900})
    resources = [(r.type, r.name, r.outputs if not r.custom else r.inputs) for r in tight.recorded]
    [message] = violations(gp.budget_policy, stack_args([(t, n, p) for t, n, p in resources if p is not None]))
    assert "over the $900.00 budget" in message


def test_the_shipped_prod_policy_config_only_sets_what_the_policies_accept() -> None:
    config = json.loads((REPO / "policies" / "prod-config.json").read_text())
    by_name = {p.name: p for p in rules.POLICIES}
    for name, values in config.items():
        assert name in by_name, name
        unknown = set(values) - set(by_name[name].config) - {"enforcementLevel"}
        assert not unknown, (name, unknown)
        assert values.get("enforcementLevel", "mandatory") in ("advisory", "mandatory", "disabled")
