"""The program's post-deploy smoke check (issue 14) under `pulumi.runtime.set_mocks` (tests/test_program.py style).

Asserts the registered `command:local:Command`: its type token, that it runs exactly the `smoke` CLI against
the stack's endpoint, that it depends on the load balancer and every node, that the API key reaches it only as
a secret environment variable, and what its triggers re-run it on.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from pulumi import Output
from pulumi.runtime.sync_await import _sync_await

from gpu_inference.cli import build_parser
from gpu_inference.config import load_stack_config, read_stack_file
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.errors import ConfigError
from gpu_inference.preview_runner import ProgramRun, RecordedResource, engine_config, run_preview, run_program
from gpu_inference.secrets import SecretValue
from gpu_inference.smoke import API_KEY_ENV

STACKS = Path(__file__).parent / "stacks"
SMOKE = "command:local:Command"
DROPLET = "digitalocean:index/droplet:Droplet"
INSTANCE = "aws:ec2/instance:Instance"
PLACEHOLDER = SecretValue(ciphertext="x").reveal()


def run(stack: str, overrides: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> ProgramRun:
    path = PROJECT_DIR / f"Pulumi.{stack}.yaml" if "/" not in stack else Path(stack)
    raw = {k: v for k, v in read_stack_file(path).items() if k.removeprefix("gpu-inference:") not in drop}
    raw.update({f"gpu-inference:{k}": v for k, v in (overrides or {}).items()})
    cfg = load_stack_config(path)
    config, secret_keys = engine_config(raw)
    return run_program(PROJECT_DIR, path.stem.removeprefix("Pulumi."), config, secret_keys, cfg.provider, cfg.region)


def value(output: Output[Any]) -> Any:
    return _sync_await(output.future())


def is_secret(output: Output[Any]) -> bool:
    return bool(_sync_await(output.is_secret()))


def smoke_of(program: ProgramRun) -> RecordedResource:
    [command] = [r for r in program.recorded if r.type == SMOKE]
    return command


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return run("prod")


@pytest.fixture(scope="module")
def kube() -> ProgramRun:
    return run(str(STACKS / "kubernetes.yaml"))


def test_the_command_runs_exactly_the_smoke_cli_against_the_endpoint(prod: ProgramRun) -> None:
    command = smoke_of(prod)
    assert command.name == "gpu-inference-smoke" and command.parent is None and command.custom
    argv = shlex.split(command.inputs["create"])
    assert argv[1:] == ["-m", "gpu_inference", "smoke", "--endpoint", prod.outputs["endpoint"],
                        "--model", "qwen2.5-32b", "--timeout", "3600"]  # servedModelName
    # The interpreter that ran the program (it has gpu_inference), and a command line our own CLI accepts.
    assert argv[0].endswith("python") or "python" in Path(argv[0]).name
    parsed = build_parser().parse_args(argv[3:])
    assert parsed.command == "smoke" and parsed.endpoint == prod.outputs["endpoint"]
    assert PLACEHOLDER not in command.inputs["create"]  # the key never on the command line (errors print it)


def test_the_command_waits_for_the_lb_and_every_node(prod: ProgramRun) -> None:
    deps = set(smoke_of(prod).dependencies)
    droplets = [r for r in prod.recorded if r.type == DROPLET]
    gpu = [r for r in droplets if r.inputs["size"] == "gpu-h100x1-80gb"]
    lb = [r for r in droplets if r.name == "gpu-inference-lb"]
    assert len(gpu) == 3 and len(lb) == 1
    assert {r.urn for r in gpu + lb} <= deps
    # ...and what makes the endpoint answer at all: the LB's address assignment and every firewall of the pool.
    for needed in ("reservedIpAssignment:ReservedIpAssignment::gpu-inference-lb-ip-assignment",
                   "firewall:Firewall::gpu-inference-lb-fw", "firewall:Firewall::gpu-inference-vllm-2-node-fw"):
        assert any(d.endswith(needed) for d in deps), needed
    assert not any("MonitoringStack$" in d for d in deps)  # Prometheus is not on the request path


def test_the_key_is_a_secret_environment_variable_and_a_secret_trigger(prod: ProgramRun) -> None:
    command = smoke_of(prod)
    assert {"environment", "triggers"} <= set(command.secret_inputs)
    smoke = prod.namespace["layout"].smoke
    assert is_secret(smoke.environment) and value(smoke.environment) == {API_KEY_ENV: PLACEHOLDER}
    assert is_secret(smoke.triggers) and PLACEHOLDER in value(smoke.triggers)


def test_the_triggers_are_every_node_the_lb_the_model_and_vllm(prod: ProgramRun) -> None:
    triggers = value(prod.namespace["layout"].smoke.triggers)
    droplets = {r.name: r.id for r in prod.recorded if r.type == DROPLET}
    for name in ("gpu-inference-vllm-0-node", "gpu-inference-vllm-1-node", "gpu-inference-vllm-2-node",
                 "gpu-inference-lb"):
        assert droplets[name] in triggers, name
    assert droplets["gpu-inference-monitoring-prometheus"] not in triggers
    assert "model=qwen2.5-32b" in triggers
    [vllm] = [t for t in triggers if isinstance(t, str) and t.startswith("vllm=")]
    assert "vllm/vllm-openai:v0.19.0" in vllm and "--max-model-len 16384" in vllm


@pytest.mark.parametrize(("change", "differs"), [
    ({"nodeCount": 2}, "a node fewer"),
    ({"servedModelName": "qwen-32b"}, "the model name"),
    ({"maxModelLen": 8192}, "a vLLM flag"),
])
def test_changing_a_node_the_model_or_vllm_changes_the_triggers(prod: ProgramRun, change: dict[str, Any],
                                                                 differs: str) -> None:
    before = value(prod.namespace["layout"].smoke.triggers)
    after = value(run("prod", change).namespace["layout"].smoke.triggers)
    assert before != after, differs


def test_a_new_key_changes_the_environment_and_the_triggers(prod: ProgramRun) -> None:
    new = "rotated-key-0123456789abcdef"  # a decrypted value, as the engine hands it over (secret key listed)
    config, secret_keys = engine_config(read_stack_file(PROJECT_DIR / "Pulumi.prod.yaml"))
    config["gpu-inference:apiKey"] = new
    assert "gpu-inference:apiKey" in secret_keys
    other = run_program(PROJECT_DIR, "prod", config, secret_keys, "digitalocean", "tor1")
    smoke = other.namespace["layout"].smoke
    assert value(smoke.environment) == {API_KEY_ENV: new} and new in value(smoke.triggers)


def test_smoke_test_false_registers_no_command_and_the_timeout_reaches_the_cli() -> None:
    assert not [r for r in run("dev", {"smokeTest": False}).recorded if r.type == SMOKE]
    command = smoke_of(run("dev", {"smokeTimeoutSeconds": 900}))
    assert shlex.split(command.inputs["create"])[-2:] == ["--timeout", "900"]


@pytest.mark.parametrize("bad", [0, -5, 30, 1e9, "nan", "inf", "soon"])
def test_a_bad_smoke_timeout_stops_the_program_before_anything(bad: Any) -> None:
    raw = dict(read_stack_file(PROJECT_DIR / "Pulumi.dev.yaml"))
    raw["gpu-inference:smokeTimeoutSeconds"] = bad
    config, secret_keys = engine_config(raw)
    with pytest.raises(ConfigError) as info:
        run_program(PROJECT_DIR, "dev", config, secret_keys, "digitalocean", "tor1")
    assert len(info.value.messages) == 1 and "smokeTimeoutSeconds" in info.value.messages[0]


def test_a_private_endpoint_warns_that_the_runner_must_be_inside_allowed_cidrs() -> None:
    program = run(str(STACKS / "aws-spot.yaml"))
    assert smoke_of(program)  # still checked: the runner may well be inside 198.51.100.0/24
    [note] = [line for line in program.log if "smoke check" in line]
    assert note.startswith("warning: ") and "198.51.100.0/24" in note and "pulumi up" in note
    instances = {r.urn for r in program.recorded if r.type == INSTANCE and "MonitoringStack$" not in r.urn}
    assert len(instances) == 3 and instances <= set(smoke_of(program).dependencies)  # 2 GPU nodes + the LB


def test_a_private_endpoint_without_allowed_cidrs_skips_the_check_and_says_so() -> None:
    program = run("dev", {"publicEndpoint": False, "allowedCidrs": []})
    assert not [r for r in program.recorded if r.type == SMOKE]
    [note] = [line for line in program.log if "smokeTest" in line]
    assert note.startswith("warning: ") and "skipped" in note and "allowedCidrs is empty" in note


def test_a_stack_without_a_key_passes_no_environment() -> None:
    program = run("dev", drop=("apiKey",))
    command = smoke_of(program)
    assert "environment" not in command.inputs or not command.inputs["environment"]
    assert not any(isinstance(t, str) and t == PLACEHOLDER for t in value(program.namespace["layout"].smoke.triggers))


def test_kubernetes_checks_the_load_balancer_service_after_the_pods(kube: ProgramRun) -> None:
    command = smoke_of(kube)
    endpoint = kube.outputs["endpoint"]
    assert endpoint.startswith("http://203.0.113.") and endpoint.endswith("/v1")  # the Service's ingress address
    assert shlex.split(command.inputs["create"])[4:6] == ["--endpoint", endpoint]
    deps = set(command.dependencies)
    for rtype in ("kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service",
                  "digitalocean:index/kubernetesNodePool:KubernetesNodePool"):
        assert any(r.urn in deps for r in kube.recorded if r.type == rtype), rtype
    pool = next(r for r in kube.recorded if r.type == "digitalocean:index/kubernetesNodePool:KubernetesNodePool")
    assert pool.id in value(kube.namespace["layout"].smoke.triggers)


def test_the_preview_lists_the_command_at_no_cost_and_shows_the_note() -> None:
    report = run_preview(str(STACKS / "aws-spot.yaml"), None)
    [command] = [r for r in report.resources if r.type == SMOKE]
    assert not [line for line in report.cost_lines if line["resource_name"] == command.name]
    assert any("allowedCidrs" in note and "smoke check" in note for note in report.notes)
    dev = run_preview("dev", None)
    assert dev.monthly_cost_usd == pytest.approx(1184.10) and not dev.notes  # public endpoint: nothing to say


def test_the_preview_prints_the_command_line_and_the_note(capsys: pytest.CaptureFixture[str]) -> None:
    from gpu_inference.cli import main

    assert main(["preview", str(STACKS / "aws-spot.yaml"), "--no-files"]) == 0
    out = capsys.readouterr().out
    [line] = [row for row in out.splitlines() if SMOKE in row]
    assert "gpu-inference-smoke  create=" in line and "-m gpu_inference smoke --endpoint http://" in line
    assert "environment=[secret]" in line and PLACEHOLDER not in out
    notes = out.split("\nNotes:\n", 1)[1].split("\n\n", 1)[0]
    assert notes.startswith("  NOTE the smoke check runs where `pulumi up` runs") and "198.51.100.0/24" in notes
