"""The Pulumi program under `pulumi.runtime.set_mocks`: what it registers, which ports it opens, what stays secret.

Runs the real `__main__.py` through `preview_runner.run_program` (set_mocks + set_all_config with the
values the engine would pass), then asserts on the recorded registrations and on the Outputs of the
program's components.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import Output
from pulumi.runtime.sync_await import _sync_await

from gpu_inference.config import load_stack_config, read_stack_file
from gpu_inference.constants import DCGM_EXPORTER_PORT, NODE_EXPORTER_PORT, PROJECT_DIR, PROMETHEUS_PORT, VLLM_IMAGE, VLLM_PORT
from gpu_inference.errors import ConfigError
from gpu_inference.preview_runner import ProgramRun, RecordedResource, engine_config, run_program
from gpu_inference.secrets import REDACTED, SecretValue

STACKS = Path(__file__).parent / "stacks"
DROPLET = "digitalocean:index/droplet:Droplet"
DO_FIREWALL = "digitalocean:index/firewall:Firewall"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
RESERVED_IP_ASSIGNMENT = "digitalocean:index/reservedIpAssignment:ReservedIpAssignment"
ENI = "aws:ec2/networkInterface:NetworkInterface"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
DO_VOLUME = "digitalocean:index/volume:Volume"
DO_VOLUME_ATTACHMENT = "digitalocean:index/volumeAttachment:VolumeAttachment"
EBS_VOLUME = "aws:ebs/volume:Volume"
EBS_ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
LB = "gpu-inference-lb"
SMOKE = "command:local:Command"
PROMETHEUS = "gpu-inference-monitoring-prometheus"
WORLD = {"0.0.0.0/0", "::/0"}
INTERNAL_PORTS = {VLLM_PORT, NODE_EXPORTER_PORT, DCGM_EXPORTER_PORT, PROMETHEUS_PORT}
PLACEHOLDER = SecretValue(ciphertext="x").reveal()


def stack_path(stack: str) -> Path:
    return PROJECT_DIR / f"Pulumi.{stack}.yaml" if "/" not in stack and not stack.endswith(".yaml") else Path(stack)


def run(stack: str, overrides: dict[str, Any] | None = None, **mock_options: Any) -> ProgramRun:
    """Run the program for a stack file, optionally with some `gpu-inference:*` values replaced."""
    path = stack_path(stack)
    raw = dict(read_stack_file(path))
    raw.update({f"gpu-inference:{k}": v for k, v in (overrides or {}).items()})
    cfg = load_stack_config(path)
    config, secret_keys = engine_config(raw)
    return run_program(PROJECT_DIR, path.stem.removeprefix("Pulumi."), config, secret_keys, cfg.provider, cfg.region,
                       **mock_options)


def value(output: Output[Any]) -> Any:
    return _sync_await(output.future())


def is_secret(output: Output[Any]) -> bool:
    return bool(_sync_await(output.is_secret()))


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run("dev")


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return run("prod")


@pytest.fixture(scope="module")
def aws() -> ProgramRun:
    return run(str(STACKS / "aws-spot.yaml"))


def of_type(program: ProgramRun, token: str) -> list[RecordedResource]:
    return [r for r in program.recorded if r.type == token]


def ingress(r: RecordedResource) -> list[tuple[int, int, set[str], list[str]]]:
    """(from port, to port, CIDR sources, peer sources) of every inbound rule of a firewall / security group."""
    rules = []
    for rule in r.inputs.get("inboundRules") or r.inputs.get("ingress") or []:
        if "portRange" in rule:
            low, _, high = str(rule["portRange"]).partition("-")
            ports = (int(low), int(high or low))
        else:
            ports = (int(rule["fromPort"]), int(rule["toPort"]))
        cidrs = set(rule.get("sourceAddresses") or []) | set(rule.get("cidrBlocks") or []) | set(
            rule.get("ipv6CidrBlocks") or []
        )
        peers = list(rule.get("sourceTags") or []) + list(rule.get("securityGroups") or [])
        rules.append((*ports, cidrs, peers))
    return rules


def firewalls(program: ProgramRun) -> list[RecordedResource]:
    return of_type(program, DO_FIREWALL) + [r for r in of_type(program, SECURITY_GROUP) if r.name.endswith("-fw")]


# ---------------------------------------------------------------------------------------------
# What is registered
# ---------------------------------------------------------------------------------------------


def test_dev_registers_one_gpu_droplet_lb_and_prometheus(dev: ProgramRun) -> None:
    counts = Counter(r.type for r in dev.recorded)
    assert counts == {
        DROPLET: 3,
        DO_FIREWALL: 3,
        "digitalocean:index/vpc:Vpc": 1,
        "digitalocean:index/tag:Tag": 3,
        RESERVED_IP: 2,  # the endpoint's and prometheusUrl's addresses, assigned to the Nginx / Prometheus droplets
        RESERVED_IP_ASSIGNMENT: 2,
        DO_VOLUME: 1,  # Prometheus' TSDB
        DO_VOLUME_ATTACHMENT: 1,
        "gpu-inference:index:LoadBalancedPool": 1,
        "gpu-inference:index:VllmService": 1,
        "gpu-inference:index:GpuInferenceNode": 1,
        "gpu-inference:index:MonitoringStack": 1,
        SMOKE: 1,  # the post-deploy smoke check (issue 14)
    }
    sizes = sorted(r.inputs["size"] for r in of_type(dev, DROPLET))
    assert sizes == ["gpu-l40sx1-48gb", "s-1vcpu-2gb", "s-2vcpu-4gb"]
    gpu = next(r for r in of_type(dev, DROPLET) if r.inputs["size"] == "gpu-l40sx1-48gb")
    assert gpu.inputs["image"] == "gpu-h100x1-base"
    assert gpu.inputs["region"] == "tor1"
    assert gpu.inputs["vpcUuid"]  # in the stack's VPC
    # Every firewall is attached to exactly its own droplet.
    droplet_ids = {r.id for r in of_type(dev, DROPLET)}
    attached = [str(i) for fw in of_type(dev, DO_FIREWALL) for i in fw.inputs["dropletIds"]]
    assert sorted(attached) == sorted(droplet_ids)


def test_prod_registers_a_droplet_and_firewall_per_node(prod: ProgramRun) -> None:
    gpu = [r for r in of_type(prod, DROPLET) if r.inputs["size"] == "gpu-h100x1-80gb"]
    assert len(gpu) == 3
    assert len(of_type(prod, DO_FIREWALL)) == 5
    assert len(of_type(prod, "gpu-inference:index:VllmService")) == 3
    assert all(r.inputs["sshKeys"] == ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"] for r in gpu)
    assert all("env:prod" in r.inputs["tags"] for r in gpu)
    assert len(prod.outputs["nodeAddresses"]) == 3


def test_aws_instances_on_the_nvidia_ami_with_imdsv2_gp3_and_spot(aws: ProgramRun) -> None:
    instances = of_type(aws, INSTANCE)
    gpu = [r for r in instances if r.inputs["instanceType"] == "g6e.xlarge"]
    assert len(gpu) == 2 and len(instances) == 4
    for r in instances:
        assert r.inputs["metadataOptions"]["httpTokens"] == "required"
        assert r.inputs["rootBlockDevice"]["volumeType"] == "gp3"
        assert r.inputs["rootBlockDevice"]["encrypted"] is True
        assert r.inputs["keyName"] == "ops-2026"
        if r.name in (LB, PROMETHEUS):
            continue  # launched on their own network interfaces: see the ENI tests below
        assert len(r.inputs["vpcSecurityGroupIds"]) == 2  # its own rules + its role's identity group
        assert r.inputs["associatePublicIpAddress"] is True and r.inputs["subnetId"]
    for r in gpu:
        assert r.inputs["instanceMarketOptions"]["marketType"] == "spot"
        assert r.inputs["userDataReplaceOnChange"] is True
        # weights (~16 GB) x 2.5 + 20 GB image
        assert 50 <= r.inputs["rootBlockDevice"]["volumeSize"] <= 70
        assert r.inputs["tags"]["gpu-inference:model"] == "Qwen/Qwen3-8B"
        assert r.inputs["tags"]["gpu-inference:maxModelLen"] == "8192"
    ami_lookups = [args for token, args in aws.calls if token == "aws:ec2/getAmi:getAmi"]
    gpu_lookup = next(a for a in ami_lookups if "Nvidia Driver" in json.dumps(a))
    assert gpu_lookup["mostRecent"] is True and gpu_lookup["owners"] == ["amazon"]
    names = next(f["values"] for f in gpu_lookup["filters"] if f["name"] == "name")
    assert names == ["Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"]
    # Its own VPC, with a subnet in an AZ EC2 says offers the GPU type.
    assert len(of_type(aws, "aws:ec2/vpc:Vpc")) == 1
    assert of_type(aws, "aws:ec2/subnet:Subnet")[0].inputs["availabilityZone"] == "us-east-1a"
    assert of_type(aws, "pulumi:providers:aws")[0].inputs["region"] == "us-east-1"


def test_aws_root_volume_is_never_smaller_than_the_ami_snapshot() -> None:
    # EC2 refuses "Volume of size N is smaller than snapshot": the Deep Learning AMI's root is far bigger
    # than the ~57 GB this model's weights ask for.
    big = run(str(STACKS / "aws-spot.yaml"), ami_root_gb=150)
    instances = of_type(big, INSTANCE)
    assert instances and all(r.inputs["rootBlockDevice"]["volumeSize"] == 150 for r in instances)


def test_aws_instances_ignore_a_newer_ami(aws: ProgramRun) -> None:
    # get_ami(most_recent=True) moves to each new AWS release: without ignore_changes every later `pulumi up`
    # would replace every instance (the load balancer delete-first, an outage).
    instances = of_type(aws, INSTANCE)
    assert instances and all(r.ignore_changes == ["ami"] for r in instances)


# ---------------------------------------------------------------------------------------------
# A stable endpoint: the load balancer's public address outlives the load balancer
# ---------------------------------------------------------------------------------------------


def one(program: ProgramRun, token: str) -> RecordedResource:
    [resource] = of_type(program, token)
    return resource


def test_do_endpoint_is_the_reserved_ip_assigned_to_the_lb_droplet(dev: ProgramRun) -> None:
    reserved = named(dev, RESERVED_IP, f"{LB}-ip")
    assignment = named(dev, RESERVED_IP_ASSIGNMENT, f"{LB}-ip-assignment")
    lb = next(r for r in of_type(dev, DROPLET) if r.name.endswith("-lb"))
    assert reserved.inputs == {"region": "tor1"}  # created on its own, not through the droplet's dropletId
    address = value(dev.namespace["pool"].lb.public_ip)
    assert assignment.inputs["ipAddress"] == address and str(assignment.inputs["dropletId"]) == lb.id
    assert dev.outputs["endpoint"] == f"http://{address}/v1"
    # The droplet's own address is not what clients are given.
    assert address != lb.addresses["public"]


def test_aws_lb_launches_on_an_eni_with_an_eip(aws: ProgramRun) -> None:
    eni, eip = named(aws, ENI, f"{LB}-eni"), named(aws, EIP, f"{LB}-ip")
    association = named(aws, EIP_ASSOCIATION, f"{LB}-ip-association")
    lb = next(r for r in of_type(aws, INSTANCE) if r.name.endswith("-lb"))
    lb_fw = next(r for r in of_type(aws, SECURITY_GROUP) if r.name.endswith("-lb-fw"))
    lb_identity = next(r for r in of_type(aws, SECURITY_GROUP) if r.name.endswith("-lb-id"))
    subnet = one(aws, "aws:ec2/subnet:Subnet")
    assert eni.inputs["subnetId"] == subnet.id
    assert sorted(eni.inputs["securityGroups"]) == sorted([lb_fw.id, lb_identity.id])
    assert eip.inputs["domain"] == "vpc"
    assert association.inputs["allocationId"] == eip.id and association.inputs["networkInterfaceId"] == eni.id
    assert lb.inputs["primaryNetworkInterface"] == {"networkInterfaceId": eni.id}
    # The provider refuses these beside a network interface, and EC2 would not honour them anyway.
    for key in ("subnetId", "vpcSecurityGroupIds", "associatePublicIpAddress", "networkInterfaces"):
        assert key not in lb.inputs, key
    address = value(aws.namespace["pool"].lb.public_ip)
    assert address == value(aws.namespace["pool"].lb.instance.public_ip)  # the EIP is what the instance shows
    assert aws.outputs["endpoint"] == f"http://{address}/v1"
    # Prometheus scrapes the interface's private address, which the interface keeps too.
    assert value(aws.namespace["pool"].lb_private_ip) == eni.addresses["private"] == lb.addresses["private"]


def test_aws_lb_waits_for_its_eip_and_is_replaced_delete_first(aws: ProgramRun) -> None:
    # The interface can be the primary of one instance only: the old one must go before the new one launches.
    lb = next(r for r in of_type(aws, INSTANCE) if r.name.endswith("-lb"))
    assert lb.delete_before_replace is True
    assert named(aws, EIP_ASSOCIATION, f"{LB}-ip-association").urn in lb.dependencies
    nodes = [r for r in of_type(aws, INSTANCE) if r.name not in (LB, PROMETHEUS)]
    assert nodes and not any(r.delete_before_replace for r in nodes)


@pytest.mark.parametrize(
    ("stack", "static_types"),
    [("dev", (RESERVED_IP, RESERVED_IP_ASSIGNMENT, DO_VOLUME)),
     (str(STACKS / "aws-spot.yaml"), (ENI, EIP, EIP_ASSOCIATION, EBS_VOLUME))],
)
def test_scaling_the_pool_keeps_the_endpoint_and_prometheus_address_and_data(
    stack: str, static_types: tuple[str, ...]
) -> None:
    small, large = run(stack, {"nodeCount": 1}), run(stack, {"nodeCount": 3})
    for token in static_types:
        # Both static-address hosts, and the TSDB volume: the same inputs, so the engine keeps them.
        before = {r.name: r.inputs for r in of_type(small, token)}
        after = {r.name: r.inputs for r in of_type(large, token)}
        assert before == after and before, token
    for host in (LB, PROMETHEUS):
        names = {r.name for token in static_types for r in of_type(small, token)}
        assert any(n.startswith(f"{host}-") for n in names), host
    # ... while both hosts are rebuilt with the new node list.
    field = "user_data_base64" if "aws" in stack else "user_data"
    for host in (lambda p: p.namespace["pool"].lb.instance, lambda p: p.namespace["monitoring"].host.instance):
        assert value(getattr(host(small), field)) != value(getattr(host(large), field))
    assert small.outputs["endpoint"] == large.outputs["endpoint"]
    assert small.outputs["prometheusUrl"] == large.outputs["prometheusUrl"]
    assert len(large.outputs["nodeAddresses"]) == 3


def test_do_prometheus_url_is_its_reserved_ip_and_its_tsdb_volume_is_attached(dev: ProgramRun) -> None:
    host = named(dev, DROPLET, PROMETHEUS)
    reserved = named(dev, RESERVED_IP, f"{PROMETHEUS}-ip")
    assignment = named(dev, RESERVED_IP_ASSIGNMENT, f"{PROMETHEUS}-ip-assignment")
    address = value(dev.namespace["monitoring"].public_ip)
    assert reserved.inputs == {"region": "tor1"}
    assert assignment.inputs["ipAddress"] == address and str(assignment.inputs["dropletId"]) == host.id
    assert dev.outputs["prometheusUrl"] == f"http://{address}:{PROMETHEUS_PORT}" and address != host.addresses["public"]
    volume = named(dev, DO_VOLUME, f"{PROMETHEUS}-data")
    # Nothing of the droplet in the volume's inputs: replacing the host never replaces its data.
    assert volume.inputs["name"] == "gpu-inference-dev-prometheus-data"
    assert volume.inputs["size"] == 20 and volume.inputs["region"] == "tor1"
    assert "description" not in volume.inputs  # ForceNew in the provider: rewording it would replace the volume
    assert not set(volume.dependencies) & {host.urn, named(dev, RESERVED_IP_ASSIGNMENT, f"{PROMETHEUS}-ip-assignment").urn}
    attachment = named(dev, DO_VOLUME_ATTACHMENT, f"{PROMETHEUS}-data-attachment")
    assert attachment.inputs["volumeId"] == volume.id and str(attachment.inputs["dropletId"]) == host.id
    # One droplet at a time: the old attachment is released before the new one is made.
    assert attachment.delete_before_replace is True
    user_data = value(dev.namespace["monitoring"].host.instance.user_data)
    assert "/dev/disk/by-id/scsi-0DO_Volume_gpu-inference-dev-prometheus-data" in user_data


def test_aws_prometheus_on_an_eni_with_an_eip_and_an_ebs_volume_in_its_zone(aws: ProgramRun) -> None:
    host = named(aws, INSTANCE, PROMETHEUS)
    eni = named(aws, ENI, f"{PROMETHEUS}-eni")
    eip = named(aws, EIP, f"{PROMETHEUS}-ip")
    assert host.inputs["primaryNetworkInterface"] == {"networkInterfaceId": eni.id}
    assert host.delete_before_replace is True
    assert "associatePublicIpAddress" not in host.inputs  # the EIP is its only public address (and bill line)
    identity = named(aws, SECURITY_GROUP, "gpu-inference-monitoring-id")
    assert identity.id in eni.inputs["securityGroups"]  # what the nodes' and the LB's rules admit
    assert aws.outputs["prometheusUrl"] == f"http://{value(aws.namespace['monitoring'].public_ip)}:{PROMETHEUS_PORT}"
    assert value(aws.namespace["monitoring"].public_ip) == eip.addresses["public"]
    volume = named(aws, EBS_VOLUME, f"{PROMETHEUS}-data")
    subnet = one(aws, "aws:ec2/subnet:Subnet")
    assert volume.inputs["availabilityZone"] == subnet.inputs["availabilityZone"]
    assert volume.inputs["type"] == "gp3" and volume.inputs["size"] == 20 and volume.inputs["encrypted"] is True
    attachment = named(aws, EBS_ATTACHMENT, f"{PROMETHEUS}-data-attachment")
    assert attachment.inputs["volumeId"] == volume.id and attachment.inputs["instanceId"] == host.id
    assert attachment.inputs["deviceName"] == "/dev/sdf"
    # The old instance is stopped (Prometheus shut down, filesystem unmounted) before the volume leaves it.
    assert attachment.inputs["stopInstanceBeforeDetaching"] is True and attachment.delete_before_replace is True
    assert "skipDestroy" not in attachment.inputs


def test_aws_prometheus_user_data_finds_its_volume_by_id(aws: ProgramRun) -> None:
    import base64
    import gzip

    volume = named(aws, EBS_VOLUME, f"{PROMETHEUS}-data")
    text = gzip.decompress(base64.b64decode(value(aws.namespace["monitoring"].host.instance.user_data_base64))).decode()
    assert f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume.id.replace('-', '')}" in text


@pytest.mark.parametrize("stack", ["dev", str(STACKS / "aws-spot.yaml")])
@pytest.mark.parametrize("change", [{"nodeCount": 3}, {"monthlyBudgetUsd": 99999}])
def test_scaling_or_rebudgeting_keeps_the_gpu_nodes(stack: str, change: dict[str, Any]) -> None:
    # User data is immutable on both clouds (DigitalOcean: ForceNew; AWS: userDataReplaceOnChange), so a
    # stack-wide value in a node's cloud-init would replace every GPU node on a scale-out or a budget edit.
    before, after = run(stack, {"nodeCount": 1}), run(stack, {"nodeCount": 1, **change})
    node = lambda program: program.namespace["pool"].services[0].user_data  # noqa: E731
    assert value(node(before)) == value(node(after))


@pytest.mark.parametrize("stack_name", ["qa_1", "dev.eu"])
def test_a_stack_name_digitalocean_names_cannot_carry_is_refused_before_anything(stack_name: str) -> None:
    # `pulumi stack init` accepts '_' and '.', but a droplet name takes no '_' and a tag no '.'.
    path = stack_path("dev")
    config, secret_keys = engine_config(dict(read_stack_file(path)))
    with pytest.raises(ConfigError, match="stack name"):
        run_program(PROJECT_DIR, stack_name, config, secret_keys, "digitalocean", "tor1")
    assert run_program(PROJECT_DIR, "qa-1", config, secret_keys, "digitalocean", "tor1").outputs["endpoint"]


def test_a_stack_name_too_long_for_the_prometheus_volume_name_is_refused_before_anything() -> None:
    # "gpu-inference-<stack>-prometheus-data" must fit DigitalOcean's 64 characters: 34 for the stack name.
    path = stack_path("dev")
    config, secret_keys = engine_config(dict(read_stack_file(path)))
    with pytest.raises(ConfigError, match="at most 34 characters"):
        run_program(PROJECT_DIR, "s" * 35, config, secret_keys, "digitalocean", "tor1")
    assert run_program(PROJECT_DIR, "s" * 34, config, secret_keys, "digitalocean", "tor1").outputs["prometheusUrl"]


def test_a_kubernetes_stack_name_too_long_for_the_node_pool_label_is_refused() -> None:
    # The pods' nodeSelector is the pool name ("gpu-inference-gpu-<stack>"), a label value: 63 characters at most.
    path = STACKS / "kubernetes.yaml"
    config, secret_keys = engine_config(dict(read_stack_file(path)))
    longest = "k" * (63 - len("gpu-inference-gpu-"))
    with pytest.raises(ConfigError, match="label value"):
        run_program(PROJECT_DIR, longest + "k", config, secret_keys, "kubernetes", "tor1")
    fits = run_program(PROJECT_DIR, longest, config, secret_keys, "kubernetes", "tor1")
    pool = next(r for r in fits.recorded if r.type == "digitalocean:index/kubernetesNodePool:KubernetesNodePool")
    assert len(pool.inputs["name"]) == 63


# ---------------------------------------------------------------------------------------------
# Network exposure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_internal_ports_never_face_the_world(fixture: str, request: pytest.FixtureRequest) -> None:
    program: ProgramRun = request.getfixturevalue(fixture)
    assert firewalls(program)
    for fw in firewalls(program):
        for low, high, cidrs, _peers in ingress(fw):
            if any(low <= port <= high for port in INTERNAL_PORTS):
                assert not cidrs & WORLD, f"{fw.name} opens {low}-{high} to {cidrs}"


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_gpu_ports_only_from_lb_and_monitoring(fixture: str, request: pytest.FixtureRequest) -> None:
    program: ProgramRun = request.getfixturevalue(fixture)
    node_fws = [fw for fw in firewalls(program) if "-vllm-" in fw.name]
    assert node_fws
    for fw in node_fws:
        rules = {low: (cidrs, peers) for low, _high, cidrs, peers in ingress(fw)}
        assert rules[VLLM_PORT][0] == set() and len(rules[VLLM_PORT][1]) == 2  # LB and Prometheus
        for port in (NODE_EXPORTER_PORT, DCGM_EXPORTER_PORT):
            assert rules[port][0] == set() and len(rules[port][1]) == 1  # Prometheus only
        assert set(rules) == {VLLM_PORT, NODE_EXPORTER_PORT, DCGM_EXPORTER_PORT, 22}


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_ssh_only_from_allowed_cidrs(fixture: str, request: pytest.FixtureRequest) -> None:
    program: ProgramRun = request.getfixturevalue(fixture)
    allowed = set(program.namespace["cfg"].allowed_cidrs)
    for fw in firewalls(program):
        ssh = [cidrs for low, high, cidrs, _ in ingress(fw) if low <= 22 <= high]
        assert ssh == [allowed], fw.name


def test_no_ssh_rule_at_all_without_allowed_cidrs() -> None:
    program = run("dev", {"allowedCidrs": []})
    for fw in firewalls(program):
        assert all(not (low <= 22 <= high) for low, high, _, _ in ingress(fw)), fw.name
    prom = next(fw for fw in firewalls(program) if "prometheus" in fw.name)
    assert ingress(prom) == []  # Prometheus then only reachable through an SSH tunnel... which is closed too


def test_public_endpoint_false_limits_http_to_allowed_cidrs(aws: ProgramRun) -> None:
    lb = next(fw for fw in firewalls(aws) if fw.name.endswith("-lb-fw"))
    http = [cidrs for low, _, cidrs, _ in ingress(lb) if low == 80]
    assert http == [{"198.51.100.0/24", "2001:db8::/32"}]


def test_public_endpoint_opens_http_to_everyone_but_not_443_without_tls(dev: ProgramRun) -> None:
    lb = next(fw for fw in firewalls(dev) if fw.name.endswith("-lb-fw"))
    ports = {low: cidrs for low, _, cidrs, _ in ingress(lb)}
    assert ports[80] == WORLD and 443 not in ports


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_user_data_and_api_key_are_secret(fixture: str, request: pytest.FixtureRequest) -> None:
    program: ProgramRun = request.getfixturevalue(fixture)
    ns = program.namespace
    for svc in ns["pool"].services:
        assert is_secret(svc.user_data)
        assert PLACEHOLDER in value(svc.user_data)  # the key is in there, inside the secret
    assert is_secret(ns["api_key"])
    assert program.outputs["apiKey"] == REDACTED
    for r in program.recorded:
        if r.type in (DROPLET, INSTANCE) and "-prometheus" not in r.name:
            key = "userData" if r.type == DROPLET else "userDataBase64"
            assert key in r.secret_inputs and r.inputs[key] == REDACTED, r.name


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_every_machine_registers_its_user_data_as_a_secret_output(fixture: str, request: pytest.FixtureRequest) -> None:
    # CrossGuard's SDK strips secret markers from props: additional_secret_outputs is all it sees, and it
    # also keeps the engine's state of the user data encrypted. Prometheus included (nothing secret today,
    # but nothing then depends on that staying true).
    program: ProgramRun = request.getfixturevalue(fixture)
    machines = of_type(program, DROPLET) + of_type(program, INSTANCE)
    assert len(machines) == program.namespace["cfg"].node_count + 2
    for r in machines:
        expected = ["userData"] if r.type == DROPLET else ["userData", "userDataBase64"]
        assert r.additional_secret_outputs == expected, r.name
    # (The AWS provider resource marks its own credentials: that is the SDK's doing, not ours.)
    others = [r for r in program.recorded if r.type not in (DROPLET, INSTANCE) and not r.type.startswith("pulumi:")]
    assert not any(r.additional_secret_outputs for r in others)


@pytest.mark.parametrize("fixture", ["dev", "prod", "aws"])
def test_no_plaintext_secret_in_plain_outputs_or_inputs(fixture: str, request: pytest.FixtureRequest) -> None:
    program: ProgramRun = request.getfixturevalue(fixture)
    assert PLACEHOLDER not in json.dumps(program.outputs)
    assert PLACEHOLDER not in json.dumps([r.model_dump() for r in program.recorded])


# ---------------------------------------------------------------------------------------------
# Config reaches vLLM
# ---------------------------------------------------------------------------------------------


def flag(text: str, name: str, expected: str) -> bool:
    # The unit wraps long ExecStart lines with " \\\n"; a flag and its value may straddle one.
    return re.search(rf"{re.escape(name)}[\s\\]+{re.escape(expected)}(\s|$)", text) is not None


def test_every_config_flag_reaches_the_vllm_command_line(prod: ProgramRun) -> None:
    cfg = prod.namespace["cfg"]
    for svc in prod.namespace["pool"].services:
        text = value(svc.user_data)
        assert flag(text, "--model", "Qwen/Qwen2.5-32B-Instruct")
        assert flag(text, "--served-model-name", cfg.served_model_name)
        assert flag(text, "--quantization", "fp8")
        assert flag(text, "--kv-cache-dtype", "fp8")
        assert flag(text, "--max-model-len", str(cfg.max_model_len))
        assert flag(text, "--max-num-seqs", str(cfg.max_num_seqs))
        assert flag(text, "--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}")
        assert flag(text, "--tensor-parallel-size", "1")
        assert flag(text, "--dtype", cfg.dtype)
        assert (cfg.vllm_image or VLLM_IMAGE) in text  # unset: the NVIDIA default image of the pinned release


def test_changed_config_changes_the_rendered_command() -> None:
    program = run("dev", {"maxModelLen": 4096, "maxNumSeqs": 32, "gpuMemoryUtilization": 0.85, "kvCacheDtype": "fp8"})
    text = value(program.namespace["pool"].services[0].user_data)
    assert flag(text, "--max-model-len", "4096")
    assert flag(text, "--max-num-seqs", "32")
    assert flag(text, "--gpu-memory-utilization", "0.85")
    assert flag(text, "--kv-cache-dtype", "fp8")


def test_aws_user_data_is_gzipped_under_the_16_kb_limit(aws: ProgramRun) -> None:
    for host in [*(s.node for s in aws.namespace["pool"].services), aws.namespace["pool"].lb, aws.namespace["monitoring"].host]:
        instance = getattr(host, "instance", None)
        encoded = value(instance.user_data_base64)
        assert len(base64.b64decode(encoded)) < 16 * 1024
        assert gzip.decompress(base64.b64decode(encoded)).decode().startswith("#cloud-config")
        assert encoded == value(instance.user_data_base64)  # deterministic: no replacement on every `up`


def test_lb_and_prometheus_are_configured_from_the_node_addresses(prod: ProgramRun) -> None:
    ns = prod.namespace
    nodes = prod.outputs["nodeAddresses"]
    assert all(ipaddress.ip_address(a).is_private for a in nodes)
    lb_text = value(ns["pool"].lb.instance.user_data)
    prom_text = value(ns["monitoring"].host.instance.user_data)
    for address in nodes:
        assert f"{address}:{VLLM_PORT}" in lb_text
        assert f"{address}:{VLLM_PORT}" in prom_text and f"{address}:{DCGM_EXPORTER_PORT}" in prom_text


# ---------------------------------------------------------------------------------------------
# Component props (what the policies read) and exports
# ---------------------------------------------------------------------------------------------


def test_vllm_service_props_carry_the_spec(prod: ProgramRun) -> None:
    svc = of_type(prod, "gpu-inference:index:VllmService")[0]
    expected = {
        "model": "Qwen/Qwen2.5-32B-Instruct", "gpu": "gpu-h100x1-80gb", "gpuCount": 1, "nodeCount": 3,
        "tensorParallelSize": 1, "maxModelLen": 16384, "maxNumSeqs": 64, "dtype": "auto", "quantization": "fp8",
        "kvCacheDtype": "fp8", "gpuMemoryUtilization": 0.92, "vllmVersion": "0.19.0", "typicalRequestTokens": 4096,
        "provider": "digitalocean", "region": "tor1", "apiKeySet": True, "monthlyBudgetUsd": 7600,
    }  # fmt: skip
    assert {k: svc.inputs[k] for k in expected} == expected
    assert svc.inputs["gpuName"].startswith("NVIDIA H100")
    node = of_type(prod, "gpu-inference:index:GpuInferenceNode")[0]
    assert node.parent == svc.urn
    assert of_type(prod, DROPLET)[0].parent is not None


def test_vllm_service_outputs_carry_the_spec_for_stack_policies(prod: ProgramRun) -> None:
    # AnalyzeStack (the budget policy) sees a component's register_outputs, not its props.
    for svc in of_type(prod, "gpu-inference:index:VllmService"):
        assert svc.outputs is not None
        spec = {k: v for k, v in svc.inputs.items() if k != "nodeIndex"}
        assert {k: svc.outputs[k] for k in spec} == spec
        assert svc.outputs["monthlyBudgetUsd"] == 7600 and svc.outputs["nodeCount"] == 3
        assert svc.outputs["userData"] == REDACTED  # still secret
        assert ipaddress.ip_address(svc.outputs["privateIp"]).is_private


def test_exports(dev: ProgramRun) -> None:
    out = dev.outputs
    assert out["endpoint"].startswith("http://") and out["endpoint"].endswith("/v1")
    assert out["prometheusUrl"].endswith(f":{PROMETHEUS_PORT}")
    assert out["monthlyCostUsd"] == pytest.approx(1184.10)  # 1182.10 + the Prometheus volume, 20 GB x $0.10
    assert out["kvCacheTokensPerNode"] > 100_000
    assert out["maxConcurrencyPerNode"] > 1


def test_program_bill_matches_the_recorded_registrations(aws: ProgramRun) -> None:
    from gpu_inference.pricing import bill_for_resources

    bill = bill_for_resources((r.type, r.name, r.inputs) for r in aws.recorded if r.custom)
    assert aws.outputs["monthlyCostUsd"] == pytest.approx(round(bill.total_monthly_usd, 2))


# ---------------------------------------------------------------------------------------------
# Bad config: one message, nothing registered
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"nodeCount": 0}, "gpu-inference:nodeCount"),
        ({"gpu": "gpu-l40sx9-48gb"}, "gpu-inference:gpu"),
        ({"gpuMemoryUtilization": 1.7}, "gpu-inference:gpuMemoryUtilization"),
        ({"provider": "azure"}, "gpu-inference:provider"),
        ({"maxModelLength": 8192}, "gpu-inference:maxModelLength"),
    ],
)
def test_bad_config_stops_the_program_before_any_registration(overrides: dict[str, Any], key: str) -> None:
    path = PROJECT_DIR / "Pulumi.dev.yaml"
    raw = {**read_stack_file(path), **{f"gpu-inference:{k}": v for k, v in overrides.items()}}
    config, secret_keys = engine_config(raw)
    # run_program raises PreviewError instead if anything was registered before the error.
    with pytest.raises(ConfigError) as info:
        run_program(PROJECT_DIR, "dev", config, secret_keys, "digitalocean", "tor1")
    assert len(info.value.messages) == 1 and key in info.value.messages[0]


def named(program: ProgramRun, rtype: str, name: str) -> RecordedResource:
    [found] = [r for r in of_type(program, rtype) if r.name == name]
    return found


K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@pytest.fixture(scope="module")
def kube() -> ProgramRun:
    return run(str(STACKS / "kubernetes.yaml"))


def test_kubernetes_gpu_pool_on_an_existing_doks_cluster(kube: ProgramRun) -> None:
    program = kube
    pool = of_type(program, "digitalocean:index/kubernetesNodePool:KubernetesNodePool")
    assert len(pool) == 1
    assert pool[0].inputs["clusterId"] == "8d3b5f0e-2c4a-4f5e-9b1d-3a6c7e8f9a0b"
    assert pool[0].inputs["size"] == "gpu-l40sx1-48gb" and pool[0].inputs["nodeCount"] == 2
    assert not of_type(program, "digitalocean:index/kubernetesCluster:KubernetesCluster")  # read, never managed

    [statefulset] = of_type(program, "kubernetes:apps/v1:StatefulSet")
    spec = statefulset.inputs["spec"]
    assert spec["replicas"] == 2 and spec["serviceName"] == "vllm-pods" and spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.19.0"
    # The L40S droplet's 8 vCPUs / 64 GiB (catalog) less the node's own reservation; requests = limits (Guaranteed QoS).
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "cpu": "7", "memory": "57Gi"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"doks.digitalocean.com/node-pool": pool[0].inputs["name"]}
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    text = " ".join(container["args"])
    assert flag(text, "--max-model-len", "8192") and flag(text, "--max-num-seqs", "64")
    assert container["envFrom"][0]["secretRef"]["name"] == "vllm-secrets"
    assert statefulset.inputs["metadata"]["namespace"] == "llm"
    # No Deployment of vLLM any more: only Nginx and Prometheus are Deployments.
    assert {r.name for r in of_type(program, K8S_DEPLOYMENT)} == {"gpu-inference-nginx", "gpu-inference-prometheus"}

    secret = named(program, "kubernetes:core/v1:Secret", "gpu-inference-secrets")
    assert secret.inputs["stringData"] == REDACTED and "stringData" in secret.secret_inputs
    provider = of_type(program, "pulumi:providers:kubernetes")[0]
    assert "kubeconfig" in provider.secret_inputs

    headless = named(program, K8S_SERVICE, "gpu-inference-vllm-pods")
    assert headless.inputs["spec"]["clusterIP"] == "None"
    assert headless.inputs["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert headless.inputs["spec"]["ports"][0]["port"] == VLLM_PORT

    svc = of_type(program, "gpu-inference:index:VllmService")
    assert len(svc) == 1 and svc[0].inputs["provider"] == "kubernetes" and svc[0].inputs["nodeCount"] == 2
    assert statefulset.parent == svc[0].urn and headless.parent == svc[0].urn
    assert svc[0].outputs is not None and svc[0].outputs["monthlyBudgetUsd"] == 2400
    assert program.outputs["endpoint"].startswith("http://")
    # Two GPU nodes, the load balancer, and Prometheus' 20 GiB volume claim at $0.10/GiB-month.
    assert program.outputs["monthlyCostUsd"] == pytest.approx(2 * 1.57 * 730 + 12.0 + 20 * 0.10)
    assert PLACEHOLDER not in json.dumps([r.model_dump() for r in program.recorded])


def test_kubernetes_public_service_points_at_nginx_not_vllm(kube: ProgramRun) -> None:
    nginx = named(kube, K8S_DEPLOYMENT, "gpu-inference-nginx")
    nginx_labels = nginx.inputs["spec"]["selector"]["matchLabels"]
    [public] = [r for r in of_type(kube, K8S_SERVICE) if r.inputs["spec"].get("type") == "LoadBalancer"]
    assert public.name == "gpu-inference-lb" and public.inputs["metadata"]["name"] == "vllm"  # same LB as before
    assert public.inputs["spec"]["selector"] == nginx_labels
    assert public.inputs["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 80}]
    assert public.inputs["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
    assert public.inputs["metadata"]["annotations"]["service.beta.kubernetes.io/do-loadbalancer-size-unit"] == "1"
    # Every other Service is in-cluster only.
    assert all(r.inputs["spec"].get("type") in (None, "ClusterIP") for r in of_type(kube, K8S_SERVICE) if r is not public)

    pod = nginx.inputs["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "nginx:1.30.6-alpine"
    assert container["command"][:3] == ["nginx", "-c", "/etc/nginx/gpu-inference/nginx.conf"]
    conf = named(kube, "kubernetes:core/v1:ConfigMap", "gpu-inference-nginx-conf").inputs["data"]["nginx.conf"]
    from gpu_inference.config import load_stack_config
    from gpu_inference.render.kubernetes import kubernetes_nginx_conf
    from gpu_inference.stack import resolve_stack

    assert conf == kubernetes_nginx_conf(resolve_stack(load_stack_config(STACKS / "kubernetes.yaml"), "kubernetes"))
    assert nginx.inputs["spec"]["template"]["metadata"]["annotations"]["gpu-inference/config-sha256"]
    auth = named(kube, "kubernetes:core/v1:Secret", "gpu-inference-nginx-auth")
    assert auth.inputs["stringData"] == REDACTED and "stringData" in auth.secret_inputs
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "nginx-auth" and volumes["conf"]["configMap"]["name"] == "nginx-conf"
    assert "include /etc/nginx/gpu-inference-auth/auth.conf;" in conf


def test_kubernetes_prometheus_scrapes_the_pods_in_cluster(kube: ProgramRun) -> None:
    prom = named(kube, K8S_DEPLOYMENT, "gpu-inference-prometheus")
    [container] = prom.inputs["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "prom/prometheus:v3.13.1"
    assert "--config.file=/etc/prometheus/gpu-inference/prometheus.yml" in container["args"]
    assert "--storage.tsdb.retention.time=15d" in container["args"]
    data = named(kube, "kubernetes:core/v1:ConfigMap", "gpu-inference-prometheus-conf").inputs["data"]
    config = yaml.safe_load(data["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/gpu-inference/gpu-inference.rules.yml"]
    vllm = next(job for job in config["scrape_configs"] if job["job_name"] == "vllm")
    assert [c["targets"][0] for c in vllm["static_configs"]] == [
        "vllm-0.vllm-pods.llm.svc.cluster.local:8000", "vllm-1.vllm-pods.llm.svc.cluster.local:8000"]
    assert yaml.safe_load(data["gpu-inference.rules.yml"])["groups"][0]["rules"]
    service = named(kube, K8S_SERVICE, "gpu-inference-prometheus")
    assert service.inputs["spec"]["type"] == "ClusterIP" and service.inputs["spec"]["ports"][0]["port"] == PROMETHEUS_PORT
    [monitoring] = of_type(kube, "gpu-inference:index:MonitoringStack")
    assert prom.parent == monitoring.urn
    assert kube.outputs["prometheusUrl"] == "http://prometheus.llm.svc.cluster.local:9090"


def test_kubernetes_without_monitoring_or_api_key() -> None:
    path = STACKS / "kubernetes.yaml"
    raw = {k: v for k, v in read_stack_file(path).items() if k != "gpu-inference:apiKey"}
    raw["gpu-inference:monitoring"] = {"enabled": False}
    config, secret_keys = engine_config(raw)
    program = run_program(PROJECT_DIR, "kubernetes", config, secret_keys, "kubernetes", "tor1")
    names = {r.name for r in program.recorded}
    assert "gpu-inference-prometheus" not in names and "gpu-inference-nginx-auth" not in names
    assert program.outputs["prometheusUrl"] is None
    conf = named(program, "kubernetes:core/v1:ConfigMap", "gpu-inference-nginx-conf").inputs["data"]["nginx.conf"]
    assert "auth.conf" not in conf and "gpu_inference_authorized" not in conf
    pod = named(program, K8S_DEPLOYMENT, "gpu-inference-nginx").inputs["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["conf"]


def test_kubernetes_bill_matches_the_recorded_registrations(kube: ProgramRun) -> None:
    from gpu_inference.pricing import bill_for_resources

    bill = bill_for_resources((r.type, r.name, r.inputs) for r in kube.recorded if r.custom)
    assert kube.outputs["monthlyCostUsd"] == pytest.approx(round(bill.total_monthly_usd, 2))
    assert {line.resource_name for line in bill.lines} == {
        "gpu-inference-gpu-pool", "gpu-inference-lb", "gpu-inference-prometheus-data"}
    [volume] = [line for line in bill.lines if line.resource_name == "gpu-inference-prometheus-data"]
    assert volume.monthly_usd == pytest.approx(20 * 0.10) and "do-block-storage" in volume.description


def test_kubernetes_prometheus_keeps_its_tsdb_on_a_block_storage_claim(kube: ProgramRun) -> None:
    [claim] = of_type(kube, "kubernetes:core/v1:PersistentVolumeClaim")
    spec = claim.inputs["spec"]
    assert spec["storageClassName"] == "do-block-storage" and spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["resources"]["requests"]["storage"] == "20Gi"  # monitoring.storageGb
    prom = named(kube, K8S_DEPLOYMENT, "gpu-inference-prometheus")
    pod = prom.inputs["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": claim.inputs["metadata"]["name"]}}
    assert "emptyDir" not in json.dumps(volumes["data"])
    # The image runs as nobody: the fresh volume must be writable by its group.
    assert pod["securityContext"]["fsGroup"] == 65534 and pod["securityContext"]["runAsUser"] == 65534
    [container] = pod["containers"]
    assert "--storage.tsdb.retention.size=16GB" in container["args"]
    # A ReadWriteOnce volume: the old pod must be gone before the new one mounts it.
    assert prom.inputs["spec"]["strategy"]["type"] == "Recreate"


def test_plaintext_api_key_in_engine_config_is_refused() -> None:
    raw = {**read_stack_file(PROJECT_DIR / "Pulumi.dev.yaml"), "gpu-inference:apiKey": "sk-plain"}
    config, _ = engine_config(raw)
    with pytest.raises(ConfigError, match="apiKey is stored in plain text"):
        run_program(PROJECT_DIR, "dev", config, [], "digitalocean", "tor1")


def test_two_runs_in_one_process_do_not_leak_into_each_other(dev: ProgramRun) -> None:
    again = run("dev")
    assert [(r.type, r.name) for r in again.recorded] == [(r.type, r.name) for r in dev.recorded]
    assert again.outputs == dev.outputs


def test_config_from_the_engine_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Newer CLIs hand config over as PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS; the program reads those too."""
    config, secret_keys = engine_config(read_stack_file(PROJECT_DIR / "Pulumi.prod.yaml"))
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(secret_keys))
    program = run_program(PROJECT_DIR, "prod", {}, [], "digitalocean", "tor1")
    assert len([r for r in of_type(program, DROPLET) if r.inputs["size"] == "gpu-h100x1-80gb"]) == 3
    assert program.outputs["apiKey"] == REDACTED
    assert is_secret(program.namespace["api_key"])


@pytest.mark.parametrize("public", [False, True])
def test_kubernetes_security_policy_on_the_registered_objects(public: bool) -> None:
    """Nginx in front, vLLM only in-cluster: a public endpoint with an API key is as clean as a restricted one."""
    from gpu_inference.policy_rules import check_security
    from gpu_inference.preview_runner import _policy_views

    program = run(str(STACKS / "kubernetes.yaml"), {"publicEndpoint": public})
    [lb] = [r for r in of_type(program, K8S_SERVICE) if r.inputs["spec"].get("type") == "LoadBalancer"]
    expected = ["0.0.0.0/0", "::/0"] if public else ["198.51.100.0/24"]
    assert lb.inputs["spec"]["loadBalancerSourceRanges"] == expected
    assert check_security(_policy_views(program.recorded)) == []


def test_kubernetes_public_endpoint_without_api_key_is_the_only_finding() -> None:
    from gpu_inference.policy_rules import check_security
    from gpu_inference.preview_runner import _policy_views

    raw = {k: v for k, v in read_stack_file(STACKS / "kubernetes.yaml").items() if k != "gpu-inference:apiKey"}
    raw["gpu-inference:publicEndpoint"] = True
    config, secret_keys = engine_config(raw)
    program = run_program(PROJECT_DIR, "kubernetes", config, secret_keys, "kubernetes", "tor1")
    [(name, message)] = check_security(_policy_views(program.recorded))
    assert name == "gpu-inference-vllm" and "without an API key" in message  # not an open vLLM port


@pytest.mark.parametrize(("fixture", "expected"), [("dev", 20 * 0.10), ("aws", 20 * 0.08)])
def test_prometheus_volume_is_priced_per_gb_month_and_its_attachment_is_free(
    fixture: str, expected: float, request: pytest.FixtureRequest
) -> None:
    from gpu_inference.pricing import bill_for_resources

    program: ProgramRun = request.getfixturevalue(fixture)
    bill = bill_for_resources((r.type, r.name, r.inputs) for r in program.recorded if r.custom)
    lines = bill.by_resource()
    line = lines[f"{PROMETHEUS}-data"]
    assert line.monthly_usd == pytest.approx(expected) and line.quantity == 20 and line.unit == "GB-month"
    assert line.price_source and line.price_date
    assert f"{PROMETHEUS}-data-attachment" not in lines
    # The program's own export prices the same registrations.
    assert program.outputs["monthlyCostUsd"] == pytest.approx(round(bill.total_monthly_usd, 2))


def test_monitoring_storage_gb_sizes_the_volume() -> None:
    program = run("dev", {"monitoring": {"storageGb": 100}})
    assert named(program, DO_VOLUME, f"{PROMETHEUS}-data").inputs["size"] == 100
    assert program.outputs["monthlyCostUsd"] == pytest.approx(1184.10 + 80 * 0.10)


def test_the_served_model_name_is_a_stack_output_for_clients_and_the_ci_smoke_step(dev: ProgramRun, prod: ProgramRun) -> None:
    # deploy.yml's smoke step passes `steps.up.outputs.servedModelName` as `--model`.
    assert dev.outputs["servedModelName"] == "Qwen/Qwen3-8B"  # no servedModelName in dev: the repo id
    assert prod.outputs["servedModelName"] == "qwen2.5-32b"
