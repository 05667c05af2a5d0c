"""Pricing of registered resources against hand-computed figures (730 h/month)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_inference.bill import CostLine
from gpu_inference.catalog import Catalog, UnknownCatalogEntry, load_catalog
from gpu_inference.clouds.aws import EBS_VOLUME, ELASTIC_IP
from gpu_inference.clouds.aws import INSTANCE as EC2_INSTANCE
from gpu_inference.clouds.digitalocean import DROPLET
from gpu_inference.clouds.digitalocean import KUBERNETES_NODE_POOL as DOKS_NODE_POOL
from gpu_inference.clouds.digitalocean import RESERVED_IP as DO_RESERVED_IP
from gpu_inference.clouds.digitalocean import VOLUME as DO_VOLUME
from gpu_inference.constants import HOURS_PER_MONTH
from gpu_inference.pricing import (
    Bill,
    bill_for_resources,
    break_even_utilization,
    cost_per_million_tokens,
    price_resources,
    spot_savings,
)


def price_resource(resource_type: str, name: str, inputs: dict[str, Any], catalog: Catalog) -> CostLine | None:
    """The first (main) cost line of one registration, or None when it is free."""
    lines = price_resources(resource_type, name, inputs, catalog)
    return lines[0] if lines else None


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def with_spot(catalog: Catalog, offering_id: str, spot: float) -> Catalog:
    offering = catalog.offering(offering_id).model_copy(update={"spot_hourly_usd": spot})
    return catalog.model_copy(update={"offerings": {**catalog.offerings, offering_id: offering}})


def test_hours_per_month_is_730() -> None:
    assert HOURS_PER_MONTH == 730.0
    assert Bill(lines=[], total_monthly_usd=0).hours_per_month == 730.0


def test_l40s_droplet(catalog: Catalog) -> None:
    line = price_resource(DROPLET, "gpu-0", {"size": "gpu-l40sx1-48gb", "region": "tor1"}, catalog)
    assert line is not None
    assert line.monthly_usd == pytest.approx(1146.10)  # 1.57 x 730
    assert line.hourly_usd == pytest.approx(1.57)
    assert (line.quantity, line.unit) == (1, "droplet")
    assert line.resource_name == "gpu-0" and line.resource_type == DROPLET
    assert line.price_date is not None and "digitalocean" in (line.price_source or "")


def test_h100x8_droplet(catalog: Catalog) -> None:
    line = price_resource(DROPLET, "big", {"size": "gpu-h100x8-640gb"}, catalog)
    assert line is not None
    assert line.monthly_usd == pytest.approx(17461.60)  # 23.92 x 730
    assert "8x H100-80GB" in line.description


def test_basic_droplet_is_capped_at_its_monthly_price(catalog: Catalog) -> None:
    line = price_resource(DROPLET, "prometheus", {"size": "s-2vcpu-4gb"}, catalog)
    assert line is not None
    assert line.hourly_usd * 730 == pytest.approx(26.07, abs=0.01)  # uncapped would be more
    assert line.monthly_usd == pytest.approx(24.00)
    assert "capped" in line.description


def test_ec2_g6e_xlarge_with_root_volume(catalog: Catalog) -> None:
    inputs: dict[str, Any] = {
        "instanceType": "g6e.xlarge",
        "rootBlockDevice": {"volumeSize": 200, "volumeType": "gp3"},
    }
    lines = price_resources(EC2_INSTANCE, "node-0", inputs, catalog)
    assert [line.resource_name for line in lines] == ["node-0", "node-0/root-volume"]
    instance, root = lines
    assert instance.monthly_usd == pytest.approx(1358.53)  # 1.861 x 730
    assert root.monthly_usd == pytest.approx(16.00)  # 200 GB x $0.08
    assert root.resource_type == EBS_VOLUME
    assert (root.quantity, root.unit) == (200, "GB-month")
    assert root.hourly_usd == pytest.approx(16.00 / 730)
    # price_resource returns the instance line; the bill has both.
    assert price_resource(EC2_INSTANCE, "node-0", inputs, catalog) == instance


def test_ebs_gp3_volume(catalog: Catalog) -> None:
    line = price_resource(EBS_VOLUME, "models", {"size": 200, "type": "gp3"}, catalog)
    assert line is not None and line.monthly_usd == pytest.approx(16.00)


def test_ebs_without_type_is_gp2_and_not_priced(catalog: Catalog) -> None:
    with pytest.raises(UnknownCatalogEntry, match="EBS volume type 'gp2'"):
        price_resource(EBS_VOLUME, "models", {"size": 200}, catalog)


def test_digitalocean_volume(catalog: Catalog) -> None:
    line = price_resource(DO_VOLUME, "weights", {"size": 250, "region": "tor1"}, catalog)
    assert line is not None and line.monthly_usd == pytest.approx(25.00)  # 250 GB x $0.10


def test_doks_node_pool(catalog: Catalog) -> None:
    line = price_resource(DOKS_NODE_POOL, "gpu-pool", {"size": "gpu-h100x1-80gb", "nodeCount": 2}, catalog)
    assert line is not None
    assert line.monthly_usd == pytest.approx(4949.40)  # 2 x 3.39 x 730
    assert line.hourly_usd == pytest.approx(6.78)
    assert (line.quantity, line.unit) == (2, "node")


def test_doks_autoscaling_pool_is_priced_at_max_nodes_with_its_floor(catalog: Catalog) -> None:
    # The bill that can be charged is maxNodes' (issue 16); the floor rides along for the range.
    inputs = {"size": "gpu-l40sx1-48gb", "autoScale": True, "minNodes": "1", "maxNodes": 3}
    line = price_resource(DOKS_NODE_POOL, "gpu-pool", inputs, catalog)
    assert line is not None and line.monthly_usd == pytest.approx(3 * 1146.10)
    assert line.min_monthly_usd == pytest.approx(1146.10) and line.min_hourly_usd == pytest.approx(1.57)
    assert "priced at maxNodes" in line.description


def test_spot_price_used_when_spot_requested(catalog: Catalog) -> None:
    spotty = with_spot(catalog, "g6e.xlarge", 0.75)
    inputs = {"instanceType": "g6e.xlarge", "instanceMarketOptions": {"marketType": "spot"}}
    line = price_resource(EC2_INSTANCE, "node-0", inputs, spotty)
    assert line is not None
    assert line.monthly_usd == pytest.approx(547.50)  # 0.75 x 730
    assert "spot" in line.description


def test_spot_requested_without_spot_price_falls_back_to_on_demand(catalog: Catalog) -> None:
    inputs = {"instanceType": "g6e.xlarge", "instanceMarketOptions": {"marketType": "spot"}}
    line = price_resource(EC2_INSTANCE, "node-0", inputs, catalog)
    assert line is not None
    assert line.monthly_usd == pytest.approx(1358.53)
    assert "priced at on-demand as an upper bound (the catalog has no sourced spot price)" in line.description


def test_spot_savings(catalog: Catalog) -> None:
    assert spot_savings(catalog.offering("g6e.xlarge")) is None
    savings = spot_savings(with_spot(catalog, "g6e.xlarge", 0.75).offering("g6e.xlarge"))
    assert savings is not None
    assert savings.on_demand_monthly_usd == pytest.approx(1358.53)
    assert savings.spot_monthly_usd == pytest.approx(547.50)
    assert savings.savings_monthly_usd == pytest.approx(811.03)
    assert savings.savings_fraction == pytest.approx(811.03 / 1358.53)


@pytest.mark.parametrize(
    ("resource_type", "inputs"),
    [
        ("digitalocean:index/firewall:Firewall", {"dropletIds": [1]}),
        ("digitalocean:index/vpc:Vpc", {"region": "tor1"}),
        ("digitalocean:index/sshKey:SshKey", {"publicKey": "ssh-ed25519 AAAA"}),
        ("digitalocean:index/tag:Tag", {}),
        ("aws:ec2/securityGroup:SecurityGroup", {"ingress": []}),
        ("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}),
        ("aws:ec2/keyPair:KeyPair", {"publicKey": "ssh-ed25519 AAAA"}),
        ("aws:ec2/networkInterface:NetworkInterface", {"subnetId": "subnet-1", "securityGroups": ["sg-1"]}),
        ("aws:ec2/eipAssociation:EipAssociation", {"allocationId": "eipalloc-1", "networkInterfaceId": "eni-1"}),
        ("digitalocean:index/reservedIpAssignment:ReservedIpAssignment", {"ipAddress": "203.0.113.7", "dropletId": 1}),
        ("kubernetes:apps/v1:Deployment", {"spec": {}}),
        ("kubernetes:core/v1:Service", {}),
        ("kubernetes:core/v1:Service", {"spec": {"type": "ClusterIP", "ports": [{"port": 9090}]}}),
        ("kubernetes:core/v1:Service", {"spec": {"clusterIP": "None", "ports": [{"port": 8000}]}}),
        ("kubernetes:core/v1:Service", {"spec": {"type": "NodePort"}}),
        ("kubernetes:core/v1:ConfigMap", {"data": {"nginx.conf": "..."}}),
        ("kubernetes:apps/v1:StatefulSet", {"spec": {"replicas": 2}}),
        ("gpu-inference:index:VllmService", {}),
        ("pulumi:providers:aws", {"region": "us-east-1"}),
    ],
)
def test_free_resources_price_as_none(catalog: Catalog, resource_type: str, inputs: dict[str, Any]) -> None:
    assert price_resource(resource_type, "x", inputs, catalog) is None


def test_unknown_size_raises_with_suggestion(catalog: Catalog) -> None:
    with pytest.raises(UnknownCatalogEntry) as info:
        price_resource(DROPLET, "gpu-0", {"size": "gpu-l40s-48gb"}, catalog)
    assert info.value.close_matches[0] == "gpu-l40sx1-48gb"
    with pytest.raises(UnknownCatalogEntry, match=r"g6e\.xlarge"):
        price_resource(EC2_INSTANCE, "node", {"instanceType": "g6e.xlarg"}, catalog)
    # An AWS type is not a Droplet size, even though both are in the catalog.
    with pytest.raises(UnknownCatalogEntry, match=r"DigitalOcean Droplet size 'g6e\.xlarge'"):
        price_resource(DROPLET, "gpu-0", {"size": "g6e.xlarge"}, catalog)


@pytest.mark.parametrize(
    "resource_type", ["aws:lb/loadBalancer:LoadBalancer", "digitalocean:index/loadBalancer:LoadBalancer"]
)
def test_unknown_paid_resource_type_raises(catalog: Catalog, resource_type: str) -> None:
    # Managed load balancers cost money: an unpriced cloud type must never count as $0.
    with pytest.raises(UnknownCatalogEntry, match=re.escape(resource_type)):
        price_resource(resource_type, "lb", {}, catalog)


def test_public_ipv4_is_billed_on_aws(catalog: Catalog) -> None:
    inputs = {"instanceType": "t3.small", "associatePublicIpAddress": True}
    lines = price_resources(EC2_INSTANCE, "lb", inputs, catalog)
    assert [line.resource_name for line in lines] == ["lb", "lb/public-ipv4"]
    assert lines[1].monthly_usd == pytest.approx(3.65)  # 0.005 x 730
    eip = price_resource("aws:ec2/eip:Eip", "ip", {"domain": "vpc"}, catalog)
    assert eip is not None and eip.monthly_usd == pytest.approx(3.65)


@pytest.mark.parametrize(
    "interface",
    [
        {"primaryNetworkInterface": {"networkInterfaceId": "eni-1"}},
        {"networkInterfaces": [{"deviceIndex": 0, "networkInterfaceId": "eni-1"}]},  # the deprecated spelling
    ],
)
def test_instance_on_a_precreated_interface_has_no_public_ipv4_line(
    catalog: Catalog, interface: dict[str, Any]
) -> None:
    # EC2 assigns no public IPv4 to an interface it did not create: the Elastic IP on it is the address line.
    inputs = {"instanceType": "t3.small", "rootBlockDevice": {"volumeSize": 20}, **interface}
    lines = price_resources(EC2_INSTANCE, "lb", inputs, catalog)
    assert [line.resource_name for line in lines] == ["lb", "lb/root-volume"]


def test_aws_lb_behind_an_elastic_ip_costs_what_its_own_public_ipv4_did(catalog: Catalog) -> None:
    before = bill_for_resources([
        (EC2_INSTANCE, "lb", {"instanceType": "t3.small", "associatePublicIpAddress": True}),
    ], catalog)
    after = bill_for_resources([
        ("aws:ec2/networkInterface:NetworkInterface", "lb-eni", {"subnetId": "subnet-1"}),
        (ELASTIC_IP, "lb-ip", {"domain": "vpc"}),
        ("aws:ec2/eipAssociation:EipAssociation", "lb-ip-association", {"allocationId": "eipalloc-1"}),
        (EC2_INSTANCE, "lb", {"instanceType": "t3.small", "primaryNetworkInterface": {"networkInterfaceId": "eni-1"}}),
    ], catalog)  # fmt: skip
    assert [line.resource_name for line in after.lines] == ["lb-ip", "lb"]
    assert after.by_resource()["lb-ip"].monthly_usd == pytest.approx(3.65)  # 0.005 x 730
    assert after.total_monthly_usd == pytest.approx(before.total_monthly_usd)
    assert after.total_monthly_usd == pytest.approx((0.0208 + 0.005) * 730)


def test_do_reserved_ip_is_free_while_assigned(catalog: Catalog) -> None:
    row = catalog.address_price("digitalocean", "reserved-ipv4-assigned")
    assert row.hourly_usd == 0 and row.price_date is not None
    assert "reserved-ips" in row.price_source and "assigned reserved IPv4 addresses are free" in row.price_source
    line = price_resource(DO_RESERVED_IP, "lb-ip", {"region": "tor1"}, catalog)
    assert line is not None  # a $0 line that says why, not a silent omission
    assert (line.monthly_usd, line.hourly_usd, line.quantity, line.unit) == (0, 0, 1, "address")
    assert "while assigned to a Droplet" in line.description and "unassigned" in line.description
    assert line.price_date == row.price_date and line.price_source == row.price_source


def test_missing_size_input_is_an_error(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="'size' is required"):
        price_resource(DROPLET, "gpu-0", {"region": "tor1"}, catalog)


def test_bill_for_a_digitalocean_stack(catalog: Catalog) -> None:
    resources: list[tuple[str, str, dict[str, Any]]] = [
        (DROPLET, "gpu-0", {"size": "gpu-l40sx1-48gb"}),
        (DROPLET, "gpu-1", {"size": "gpu-l40sx1-48gb"}),
        (DROPLET, "lb", {"size": "s-1vcpu-2gb"}),
        (DROPLET, "prometheus", {"size": "s-2vcpu-4gb"}),
        (DO_VOLUME, "prometheus-data", {"size": 50}),
        ("digitalocean:index/firewall:Firewall", "fw", {}),
        ("gpu-inference:index:VllmService", "svc", {}),
    ]
    bill = bill_for_resources(resources, catalog)
    # 2 x 1146.10 + 12.00 (cap) + 24.00 (cap) + 50 x 0.10
    assert bill.total_monthly_usd == pytest.approx(2333.20)
    assert set(bill.by_resource()) == {"gpu-0", "gpu-1", "lb", "prometheus", "prometheus-data"}
    assert bill.by_resource()["lb"].monthly_usd == pytest.approx(12.00)
    assert bill.total_monthly_usd == pytest.approx(sum(line.monthly_usd for line in bill.lines))


def test_bill_for_an_aws_stack(catalog: Catalog) -> None:
    resources: list[tuple[str, str, dict[str, Any]]] = [
        (EC2_INSTANCE, "gpu-0", {"instanceType": "g6e.xlarge", "rootBlockDevice": {"volumeSize": 200}}),
        (EC2_INSTANCE, "lb", {"instanceType": "t3.small", "associatePublicIpAddress": True}),
        (EC2_INSTANCE, "prometheus", {"instanceType": "t3.medium", "rootBlockDevice": {"volumeSize": 30}}),
        ("aws:ec2/securityGroup:SecurityGroup", "sg", {}),
    ]
    bill = bill_for_resources(resources, catalog)
    expected = 1.861 * 730 + 200 * 0.08 + 0.0208 * 730 + 0.005 * 730 + 0.0416 * 730 + 30 * 0.08
    assert bill.total_monthly_usd == pytest.approx(expected)
    assert bill.total_monthly_usd == pytest.approx(1426.132)
    assert "prometheus/root-volume" in bill.by_resource()


def test_every_gpu_offering_prices_at_730_hours(catalog: Catalog) -> None:
    for offering in catalog.offerings.values():
        if offering.cloud == "digitalocean":
            line = price_resource(DROPLET, "n", {"size": offering.id}, catalog)
        else:
            line = price_resource(EC2_INSTANCE, "n", {"instanceType": offering.id}, catalog)
        assert line is not None
        assert line.monthly_usd == pytest.approx(offering.hourly_usd * 730), offering.id


def test_cost_per_million_tokens_hand_computed() -> None:
    # $3.39/h, 1000 tok/s, busy half the time: 1.8 M tokens per paid hour.
    assert cost_per_million_tokens(3.39, 1000, 0.5) == pytest.approx(3.39 / 1.8)
    assert cost_per_million_tokens(1.57, 2000, 1.0) == pytest.approx(0.218055, rel=1e-5)


def test_break_even_utilization_hand_computed() -> None:
    # L40S at $1.57/h doing 2000 tok/s vs an API at $1.00/M: 1.57 / 7.2 = 21.8 % busy.
    assert break_even_utilization(1.57, 2000, 1.00) == pytest.approx(0.218055, rel=1e-5)
    # H100 at $3.39/h and 1000 tok/s vs $0.60/M: needs 157 % utilization, i.e. never breaks even.
    assert break_even_utilization(3.39, 1000, 0.60) == pytest.approx(1.569444, rel=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, 0.0, 0.5), "tokens_per_second"),
        ((1.0, 100.0, 0.0), "utilization"),
        ((1.0, 100.0, 1.5), "utilization"),
        ((-1.0, 100.0, 0.5), "hourly_usd"),
    ],
)
def test_cost_per_million_tokens_rejects_bad_input(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cost_per_million_tokens(*args)


@given(
    hourly=st.floats(0.01, 100),
    tps=st.floats(1, 100_000),
    api=st.floats(0.01, 100),
)
def test_break_even_round_trips(hourly: float, tps: float, api: float) -> None:
    u = break_even_utilization(hourly, tps, api)
    if 0 < u <= 1:
        assert cost_per_million_tokens(hourly, tps, u) == pytest.approx(api, rel=1e-9)


def test_kubernetes_load_balancer_service_is_a_digitalocean_load_balancer(catalog: Catalog) -> None:
    service = {"metadata": {"name": "vllm"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    line = price_resource("kubernetes:core/v1:Service", "gpu-inference-lb", service, catalog)
    assert line is not None
    # $0.01786/h for 730 h is $13.04, above DigitalOcean's $12.00 monthly cap per LB node.
    assert line.hourly_usd == pytest.approx(0.01786) and line.monthly_usd == pytest.approx(12.00)
    assert line.quantity == 1 and line.price_date is not None and line.price_source
    # Sized in nodes by the cloud controller's annotation; each node is billed.
    sized = {**service, "metadata": {"annotations": {
        "service.beta.kubernetes.io/do-loadbalancer-size-unit": "3"}}}  # fmt: skip
    line3 = price_resource("kubernetes:core/v1:Service", "gpu-inference-lb", sized, catalog)
    assert line3 is not None and line3.quantity == 3 and line3.monthly_usd == pytest.approx(36.00)
    bill = bill_for_resources([
        ("kubernetes:core/v1:Service", "lb", service),
        ("kubernetes:core/v1:Service", "vllm-pods", {"spec": {"clusterIP": "None"}}),
    ])  # fmt: skip
    assert bill.total_monthly_usd == pytest.approx(12.00) and [x.resource_name for x in bill.lines] == ["lb"]


def test_a_block_storage_claim_is_priced_as_a_digitalocean_volume() -> None:
    from gpu_inference.catalog import load_catalog
    from gpu_inference.clouds.kubernetes import CLOUD, PERSISTENT_VOLUME_CLAIM

    catalog = load_catalog()
    claim = {"spec": {"storageClassName": "do-block-storage", "resources": {"requests": {"storage": "50Gi"}}}}
    [line] = CLOUD.price(PERSISTENT_VOLUME_CLAIM, "tsdb", claim, catalog) or []
    assert line.monthly_usd == pytest.approx(50 * catalog.storage_price("digitalocean", "volume").usd_per_gb_month)
    tib = {"spec": {**claim["spec"], "resources": {"requests": {"storage": "1Ti"}}}}
    assert (CLOUD.price(PERSISTENT_VOLUME_CLAIM, "tsdb", tib, catalog) or [])[0].quantity == 1024
    # Never $0 for a claim it cannot read: another class, or a size in a unit it does not write.
    for bad in ({"spec": {**claim["spec"], "storageClassName": "standard"}},
                {"spec": {**claim["spec"], "resources": {"requests": {"storage": "50G"}}}}):
        with pytest.raises(ValueError):
            CLOUD.price(PERSISTENT_VOLUME_CLAIM, "tsdb", bad, catalog)


def test_vllm_pod_resources_leave_the_node_its_reservation() -> None:
    from gpu_inference.catalog import load_catalog
    from gpu_inference.clouds.kubernetes import vllm_pod_resources

    offerings = load_catalog().offerings_for("digitalocean")
    assert offerings
    for offering in offerings:
        res = vllm_pod_resources(offering.vcpus, offering.memory_gib)
        assert 1 <= int(res["cpu"]) < offering.vcpus
        assert 0.8 * offering.memory_gib < int(res["memory"].removesuffix("Gi")) < offering.memory_gib
    assert vllm_pod_resources(8, 64) == {"cpu": "7", "memory": "57Gi"}
    assert vllm_pod_resources(20, 240) == {"cpu": "19", "memory": "227Gi"}
