"""Network isolation behind the cloud firewall (issue 11): GPU node containers publish their ports on the
private interface only, and on Kubernetes a NetworkPolicy lets only Nginx and Prometheus reach vLLM."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from render_fixtures import dev, kube, prod
from test_program import of_type, run
from test_validators import shellcheck, write

from gpu_inference.constants import DCGM_EXPORTER_PORT, NODE_EXPORTER_PORT, VLLM_PORT
from gpu_inference.render import dcgm_exporter_unit, node_exporter_unit, vllm_unit
from gpu_inference.render._common import NETWORK_ENV_FILE, PRIVATE_IP_VAR, Expanded, systemd_quote
from gpu_inference.render.cloud_init import private_ip_lines
from gpu_inference.render.kubernetes import render_kubernetes, vllm_network_policy

STACKS = Path(__file__).parent / "stacks"
PRIVATE = f"${{{PRIVATE_IP_VAR}}}"

# ---------------------------------------------------------------------------------------------
# GPU nodes: -p <private ip>:port:port, never every interface
# ---------------------------------------------------------------------------------------------


def published(unit: str) -> list[str]:
    return re.findall(r"-p (\S+)", unit)


@pytest.mark.parametrize("scenario", [dev, prod])
def test_gpu_node_containers_publish_on_the_private_address_and_loopback_only(scenario: object) -> None:
    stack = scenario().stack  # type: ignore[operator]
    for unit, port in ((vllm_unit(stack), VLLM_PORT), (dcgm_exporter_unit(), DCGM_EXPORTER_PORT)):
        assert published(unit) == [f"127.0.0.1:{port}:{port}", f"{PRIVATE}:{port}:{port}"]
        assert f"EnvironmentFile={NETWORK_ENV_FILE}" in unit
    # node_exporter shares the host's network: its listen address is the private one.
    exporter = node_exporter_unit()
    assert f"--web.listen-address={PRIVATE}:{NODE_EXPORTER_PORT}" in exporter
    assert f"EnvironmentFile={NETWORK_ENV_FILE}" in exporter and "-p " not in exporter


def test_the_bootstrap_writes_the_private_address_before_starting_any_unit() -> None:
    for scenario in (dev, prod):
        files = scenario().render()
        boot = files["nodes/node-0/bootstrap.sh"]
        assert boot.index(f"> {NETWORK_ENV_FILE}") < boot.index("systemctl enable --now node-exporter.service")


def test_each_cloud_reads_the_private_address_from_its_metadata_service() -> None:
    do_lines = private_ip_lines(dev().stack)
    assert "http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address" in do_lines
    aws_lines = private_ip_lines(prod().stack)
    # IMDSv2: a session token first (the instances refuse token-less IMDSv1).
    assert "-X PUT" in aws_lines and "/latest/api/token" in aws_lines
    assert "X-aws-ec2-metadata-token: $token" in aws_lines and "/latest/meta-data/local-ipv4" in aws_lines


def _run_lines(lines: str, tmp_path: Path, curl_output: str) -> subprocess.CompletedProcess[str]:
    """The rendered lines in bash, with curl answering like the metadata service and sleep a no-op."""
    bin_dir = tmp_path / "bin"
    write(bin_dir / "curl", f"#!/bin/sh\nprintf '%s' {curl_output!r}\n").chmod(0o755)
    write(bin_dir / "sleep", "#!/bin/sh\nexit 0\n").chmod(0o755)
    script = 'set -euo pipefail\nlog() { echo "$*"; }\ndie() { log "ERROR: $*"; exit 1; }\n' + lines
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env=env, check=False)


@pytest.mark.parametrize("scenario", [dev, prod])
def test_private_address_lines_write_the_env_file_or_stop_the_boot(scenario: object, tmp_path: Path) -> None:
    stack = scenario().stack  # type: ignore[operator]
    env_file = tmp_path / "etc" / "network.env"
    lines = private_ip_lines(stack, env_file=str(env_file))
    result = _run_lines(lines, tmp_path / "ok", "10.42.1.7")
    assert result.returncode == 0, result.stderr
    assert env_file.read_text() == f"{PRIVATE_IP_VAR}=10.42.1.7\n"
    env_file.unlink()
    # An answer that is not an address (an error page, nothing): five tries, then the boot stops.
    result = _run_lines(lines, tmp_path / "bad", "<html>404</html>")
    assert result.returncode == 1 and "refusing to publish ports on every interface" in result.stdout
    assert result.stdout.count("failed; retrying") == 5
    assert not env_file.exists()
    assert shellcheck(write(tmp_path / "lines.sh", "#!/usr/bin/env bash\nlog() { :; }\ndie() { exit 1; }\n" + lines)
                      ).returncode == 0


def test_expanded_arguments_stay_unescaped_and_refuse_anything_but_a_reference() -> None:
    assert systemd_quote(Expanded(f"{PRIVATE}:8000:8000")) == f"{PRIVATE}:8000:8000"
    assert systemd_quote(f"{PRIVATE}:8000:8000") == f'"$${{{PRIVATE_IP_VAR}}}:8000:8000"'  # plain text is escaped
    for bad in ("$(id)", "${X}; rm", "a b", "%n"):
        with pytest.raises(ValueError):
            Expanded(bad)


# ---------------------------------------------------------------------------------------------
# Kubernetes: NetworkPolicy on the vLLM pods
# ---------------------------------------------------------------------------------------------

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


@pytest.fixture(scope="module")
def kube_run():  # type: ignore[no-untyped-def]
    return run(str(STACKS / "kubernetes.yaml"))


def _template_labels(program, token: str, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    [obj] = [r for r in of_type(program, token) if r.inputs["metadata"]["name"] == name]
    return obj.inputs["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def test_only_nginx_and_prometheus_pods_reach_the_vllm_port(kube_run) -> None:  # type: ignore[no-untyped-def]
    [policy] = of_type(kube_run, NETWORK_POLICY)
    spec = policy.inputs["spec"]
    vllm = _template_labels(kube_run, "kubernetes:apps/v1:StatefulSet", "vllm")
    nginx = _template_labels(kube_run, "kubernetes:apps/v1:Deployment", "nginx")
    prometheus = _template_labels(kube_run, "kubernetes:apps/v1:Deployment", "prometheus")
    # It selects exactly the vLLM pods, isolates them for ingress, and names only the two peers.
    assert spec["podSelector"]["matchLabels"] == vllm
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [nginx, prometheus]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # no namespace or CIDR widening it
    assert rule["ports"] == [{"protocol": "TCP", "port": VLLM_PORT}]
    [statefulset] = of_type(kube_run, "kubernetes:apps/v1:StatefulSet")
    [container] = statefulset.inputs["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [VLLM_PORT]  # the one port the pods open
    # The deployed object is the rendered manifest (what the preview writes).
    assert spec == vllm_network_policy(kube(), "gpu-inference")["spec"]
    assert policy.inputs["metadata"]["name"] == "vllm-ingress"


def test_rendered_network_policy_is_the_manifest() -> None:
    doc = yaml.safe_load(render_kubernetes(kube())["kubernetes/vllm-network-policy.yaml"])
    assert doc["apiVersion"] == "networking.k8s.io/v1" and doc["kind"] == "NetworkPolicy"
    assert doc["metadata"]["namespace"] == "llm"
    assert doc == vllm_network_policy(kube(), "gpu-inference")


def test_network_policy_manifest_passes_the_kubernetes_schema(tmp_path: Path) -> None:
    """The rendered manifest against the Kubernetes API schema (kubernetes-validate, strict: no unknown field)."""
    validate = pytest.importorskip("kubernetes_validate")
    doc = yaml.safe_load(render_kubernetes(kube())["kubernetes/vllm-network-policy.yaml"])
    validate.validate(doc, "1.37.0", strict=True)
    bad = {**doc, "spec": {**doc["spec"], "policyType": ["Ingress"]}}  # negative control: a misspelt field
    with pytest.raises(validate.ValidationError):
        validate.validate(bad, "1.37.0", strict=True)
