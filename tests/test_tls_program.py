"""prod is HTTPS, in the program and the policy: the DNS record for tlsDomain, the https endpoint, and the
security policy refusing a prod stack that takes its API key over plain HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_preview import preview
from test_program import LB, RESERVED_IP, STACKS, named, of_type, run, value

from gpu_inference.clouds import aws as aws_facts
from gpu_inference.clouds import digitalocean as do_facts
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.policy_rules import PolicySettings, ResourceView, security
from gpu_inference.preview_runner import ProgramRun
from gpu_inference.pricing import bill_for_resources

EIP = "aws:ec2/eip:Eip"
AWS_ZONE = "Z0123456789ABCDEFGHIJ"
AWS_LB = {"tlsDomain": "api.example.net", "dnsZone": AWS_ZONE}


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return run("prod")


@pytest.fixture(scope="module")
def aws_tls() -> ProgramRun:
    return run(str(STACKS / "aws-spot.yaml"), {"loadBalancer": AWS_LB})


def test_prod_points_its_domain_at_the_reserved_ip_and_serves_https(prod: ProgramRun) -> None:
    [record] = of_type(prod, do_facts.DNS_RECORD)
    address = value(prod.namespace["pool"].lb.public_ip)
    assert named(prod, RESERVED_IP, f"{LB}-ip")  # the static address, not the droplet's own
    assert record.name == f"{LB}-dns-a"
    assert record.inputs == {"domain": "example.com", "type": "A", "name": "llm", "value": address, "ttl": 300}
    assert prod.outputs["endpoint"] == "https://llm.example.com/v1"


def test_aws_creates_a_route53_a_record_on_the_elastic_ip(aws_tls: ProgramRun) -> None:
    [record] = of_type(aws_tls, aws_facts.ROUTE53_RECORD)
    eip = named(aws_tls, EIP, f"{LB}-ip")
    assert record.inputs["zoneId"] == AWS_ZONE and record.inputs["name"] == "api.example.net"
    assert record.inputs["type"] == "A" and record.inputs["ttl"] == 300
    assert record.inputs["records"] == [value(aws_tls.namespace["pool"].lb.public_ip)]
    assert eip.id  # the Elastic IP exists and is what the record names
    assert aws_tls.outputs["endpoint"] == "https://api.example.net/v1"


def test_no_dns_record_without_a_zone() -> None:
    dev = run("dev")
    assert not of_type(dev, do_facts.DNS_RECORD)
    tls_only = run("dev", {"loadBalancer": {"tlsDomain": "llm.example.com"}})
    assert not of_type(tls_only, do_facts.DNS_RECORD)  # the user points the name at lbPublicIp
    assert tls_only.outputs["endpoint"] == "https://llm.example.com/v1"


@pytest.mark.parametrize("token", [do_facts.DNS_RECORD, aws_facts.ROUTE53_RECORD])
def test_dns_records_cost_nothing_and_are_known_to_the_pricing(token: str) -> None:
    bill = bill_for_resources([(token, "r", {"name": "llm"})])
    assert bill.total_monthly_usd == 0
    assert token in (do_facts.FREE_TYPES | aws_facts.FREE_TYPES)


def test_prod_bill_is_unchanged_by_the_record(prod: ProgramRun) -> None:
    assert prod.outputs["monthlyCostUsd"] == pytest.approx(7462.10)


# ---------------------------------------------------------------------------------------------
# security policy: no API key over plain HTTP in prod
# ---------------------------------------------------------------------------------------------


def service(**props: object) -> ResourceView:
    base = {"model": "Qwen/Qwen3-8B", "gpu": "gpu-l40sx1-48gb", "provider": "digitalocean", "region": "tor1",
            "monthlyBudgetUsd": 2000, "apiKeySet": True, "publicEndpoint": True, "nodeIndex": 0}  # fmt: skip
    return ResourceView(type="gpu-inference:index:VllmService", name="llm-0", props={**base, **props})


def test_security_refuses_an_api_key_over_plain_http_in_prod_only() -> None:
    prod_settings = PolicySettings.for_stack("prod")
    [message] = security(service(), prod_settings)[0]
    assert "plain HTTP" in message and "loadBalancer.tlsDomain" in message
    assert security(service(tlsDomain="llm.example.com"), prod_settings)[0] == []
    assert security(service(apiKeySet=False, publicEndpoint=False), prod_settings)[0] == []  # no key to leak
    assert security(service(), PolicySettings.for_stack("dev"))[0] == []
    # Said once per stack, not once per node.
    assert security(service(nodeIndex=1), prod_settings)[0] == []


def test_prod_preview_without_tls_exits_1_on_the_security_policy(tmp_path: Path) -> None:
    text = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()
    assert "tlsDomain: llm.example.com" in text
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(("tlsDomain:", "dnsZone:", "acmeEmail:"))]
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text("\n".join(lines) + "\n")
    proc = preview(str(stack), "--json", "--no-files")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [p for p in json.loads(proc.stdout)["policies"] if p["name"] == "security" and not p["passed"]]
    assert [p["level"] for p in failed] == ["mandatory"] and "plain HTTP" in failed[0]["message"]
    shipped = preview("prod", "--json", "--no-files")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert json.loads(shipped.stdout)["outputs"]["endpoint"] == "https://llm.example.com/v1"


def test_private_endpoint_with_tls_opens_only_port_80_to_the_world_for_acme() -> None:
    """HTTP-01 validation comes from the ACME server's own (unpublished) addresses: with TLS, port 80 (which
    serves no API) faces the world even when the endpoint is private; 443 stays with allowedCidrs."""
    from test_program import firewalls, ingress

    program = run(str(STACKS / "aws-spot.yaml"), {"loadBalancer": AWS_LB})  # publicEndpoint: false
    lb = next(fw for fw in firewalls(program) if fw.name.endswith("-lb-fw"))
    ports = {low: cidrs for low, _, cidrs, _ in ingress(lb)}
    assert ports[80] == {"0.0.0.0/0", "::/0"}
    assert ports[443] == {"198.51.100.0/24", "2001:db8::/32"}
    # ... and the security policy does not read that port 80 as a public API endpoint.
    views = [ResourceView(type=r.type, name=r.name, props=r.inputs) for r in program.recorded]
    settings = PolicySettings.for_stack("prod", allowed_cidrs=["198.51.100.0/24", "2001:db8::/32"]).with_facts_from(views)
    assert settings.tls is True
    assert [m for v in views for m in security(v, settings)[0]] == []
    # Without TLS the same world-open port 80 on a private, keyless endpoint is still refused.
    no_key = settings.model_copy(update={"tls": False, "api_key_set": False})
    lb_view = next(v for v in views if v.name == lb.name)
    assert any("without an API key" in m for m in security(lb_view, no_key)[0])


def test_the_crossguard_pack_refuses_plain_http_with_a_key_for_a_prod_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule through the pack the engine runs (PULUMI_STACK picks prod), with CrossGuard's own args."""
    import importlib

    from test_policies import VLLM, resource_args, spec, violations

    from policies import gpu_inference_policies as gp

    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.setenv("PULUMI_STACK", "prod")
    try:
        pack = importlib.reload(gp)
        [message] = violations(pack.security_policy, resource_args(VLLM, "llm-0", spec()))
        assert "plain HTTP" in message
        assert violations(pack.security_policy, resource_args(VLLM, "llm-0", spec(tlsDomain="llm.example.com"))) == []
        monkeypatch.setenv("PULUMI_STACK", "dev")
        assert violations(importlib.reload(gp).security_policy, resource_args(VLLM, "llm-0", spec())) == []
    finally:
        monkeypatch.delenv("PULUMI_STACK")
        importlib.reload(gp)
