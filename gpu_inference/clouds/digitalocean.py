"""DigitalOcean: GPU Droplets in a VPC, a Cloud Firewall per Droplet, reserved IPs and block volumes.

Everything pure the project knows about DigitalOcean; ``components/clouds/digitalocean.py`` creates the
resources. The Kubernetes layout (DOKS) buys DigitalOcean sizes too and reuses the name rules and the node
pool price below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from gpu_inference import bill, naming
from gpu_inference.clouds.base import (
    Cloud,
    CloudMocks,
    FakeAddress,
    Layout,
    OpenPort,
    port_range,
    tls_domain_in_zone_problems,
)
from gpu_inference.constants import PROJECT_NAME

if TYPE_CHECKING:
    from gpu_inference.bill import CostLine
    from gpu_inference.catalog import Catalog
    from gpu_inference.config import StackConfig

NAME = "digitalocean"

# Resource type tokens of the pulumi-digitalocean SDK this project registers (or reads).
DROPLET = "digitalocean:index/droplet:Droplet"
VOLUME = "digitalocean:index/volume:Volume"
VOLUME_ATTACHMENT = "digitalocean:index/volumeAttachment:VolumeAttachment"
RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
RESERVED_IP_ASSIGNMENT = "digitalocean:index/reservedIpAssignment:ReservedIpAssignment"
FIREWALL = "digitalocean:index/firewall:Firewall"
VPC = "digitalocean:index/vpc:Vpc"
TAG = "digitalocean:index/tag:Tag"
KUBERNETES_NODE_POOL = "digitalocean:index/kubernetesNodePool:KubernetesNodePool"
KUBERNETES_CLUSTER = "digitalocean:index/kubernetesCluster:KubernetesCluster"
# The TLS domain's A record in a domain the account already has in DigitalOcean DNS (free, like the domain).
DNS_RECORD = "digitalocean:index/dnsRecord:DnsRecord"
# A DigitalOcean domain is a DNS name: RFC 1123 labels of 1-63 characters, at least two of them.
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

# DigitalOcean's AI/ML-ready images (Ubuntu + NVIDIA driver + container toolkit, or ROCm for AMD). The
# "h100" in the NVIDIA slugs is historical: gpu-h100x1-base serves every single-GPU NVIDIA plan
# (L40S, RTX 4000/6000 Ada, H100, H200) and gpu-h100x8-base the 8-GPU ones.
GPU_IMAGE_NVIDIA_1 = "gpu-h100x1-base"
GPU_IMAGE_NVIDIA_8 = "gpu-h100x8-base"
# "AMD AI/ML Ready" (Ubuntu + ROCm + amd-smi): slug as `doctl compute image list --public` lists it (image 189723042,
# created 2025-06-09, in a public capture of that output found via the code index, 2026-12-02); public MI300X
# run reports name the same slug for gpu-mi300x1-192gb in atl1.
GPU_IMAGE_AMD = "gpu-amd-base"
# Nginx and Prometheus hosts: the current Ubuntu LTS; the renderers' cloud-init targets Ubuntu.
BASE_IMAGE = "ubuntu-24-04-x64"

# DigitalOcean rejects a droplet name outside hostname characters ("422 Only valid hostname characters are
# allowed. (a-z, A-Z, 0-9, . and -)", digitalocean/doctl#257) and a tag outside [A-Za-z0-9_:-]; the stack
# name is in both (``naming.cloud_name``, ``naming.stack_tag``), so only what both accept will do.
STACK_NAME = re.compile(r"[A-Za-z0-9-]+")
# DigitalOcean volume names: lowercase letters, digits and '-', starting with a letter, at most 64 characters.
VOLUME_NAME_MAX = 64
RENAME_HINT = "(create it with `pulumi stack init <name>`, or `pulumi stack rename`)"

# Things that cost nothing on DigitalOcean (firewalls, VPCs, tags, attaching a volume or an address).
FREE_TYPES = frozenset({
    FIREWALL, VPC, TAG, VOLUME_ATTACHMENT, RESERVED_IP_ASSIGNMENT,
    "digitalocean:index/sshKey:SshKey",
    "digitalocean:index/project:Project",
    "digitalocean:index/projectResources:ProjectResources",
    "digitalocean:index/domain:Domain",
    DNS_RECORD,
    "digitalocean:index/certificate:Certificate",
})  # fmt: skip


def gpu_image(gpu_count: int, vendor: str | None) -> str:
    """The GPU Droplet image for a size: ROCm for AMD, the 8-GPU NVIDIA image for 8-GPU sizes."""
    if vendor == "amd":
        return GPU_IMAGE_AMD
    return GPU_IMAGE_NVIDIA_8 if gpu_count >= 8 else GPU_IMAGE_NVIDIA_1


def droplet_tags(stack: str, role: str, identity: str, extra: list[str]) -> list[str]:
    """Tags of a Droplet: the identity tag is what peers' firewalls admit; the others find and bill the stack."""
    return [naming.PROJECT_TAG, naming.stack_tag(stack), naming.role_tag(role), identity, *extra]


def volume_tags(stack: str, role: str, extra: list[str]) -> list[str]:
    return [naming.PROJECT_TAG, naming.stack_tag(stack), naming.role_tag(role), *extra]


def stack_name_problems(stack_name: str) -> list[str]:
    """A stack name Droplet names and tags cannot carry (shared by the Kubernetes layout's pool and tags)."""
    if STACK_NAME.fullmatch(stack_name):
        return []
    return [
        f"stack name {stack_name!r} cannot be part of DigitalOcean droplet names and tags: use only letters, "
        f"digits and '-' {RENAME_HINT}"
    ]


def dns_record_name(domain: str, zone: str) -> str:
    """A DnsRecord's ``name``: relative to its domain, ``@`` for the domain itself (pulumi_digitalocean
    dns_record.py: "Use `@` for records on domain's name itself")."""
    domain, zone = domain.lower().rstrip("."), zone.lower().rstrip(".")
    return "@" if domain == zone else domain.removesuffix(f".{zone}")


def dns_zone_problems(cfg: StackConfig) -> list[str]:
    """loadBalancer.dnsZone on DigitalOcean: a domain of the account's DNS that holds the tlsDomain."""
    problems = tls_domain_in_zone_problems(cfg, "DigitalOcean domain")
    zone, domain = cfg.load_balancer.dns_zone, cfg.load_balancer.tls_domain
    if problems or not zone or not domain:
        return problems
    if not _DOMAIN.fullmatch(zone):
        return [f"{PROJECT_NAME}:loadBalancer.dnsZone = {zone!r} is not a DigitalOcean domain: use a DNS name such "
                "as example.com (the domain as DigitalOcean DNS lists it)"]
    lower_domain, lower_zone = domain.lower().rstrip("."), zone.lower().rstrip(".")
    if lower_domain != lower_zone and not lower_domain.endswith(f".{lower_zone}"):
        return [f"{PROJECT_NAME}:loadBalancer.dnsZone = {zone!r} does not hold {PROJECT_NAME}:loadBalancer.tlsDomain "
                f"= {domain!r}: the domain must be the zone or a name under it"]
    return []


def price_node_pool(name: str, inputs: Mapping[str, Any], catalog: Catalog) -> list[CostLine]:
    """A DOKS node pool: its nodes, billed like Droplets of the pool's size (an autoscaling one at maxNodes)."""
    size = bill.machine_size(catalog, NAME, str(bill.require(inputs, "size", KUBERNETES_NODE_POOL, name)),
                             "DigitalOcean Droplet size")
    high, low = bill.node_range(inputs, KUBERNETES_NODE_POOL, name)
    return [bill.scaling_machines(KUBERNETES_NODE_POOL, name, size, high, low, "node")]


class DigitalOcean(Cloud):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "DigitalOcean GPU Droplets in a VPC of the stack's own"
    catalog_cloud: ClassVar[str] = NAME
    layout: ClassVar[Layout] = "machines"
    pulumi_module: ClassVar[str] = "components.clouds.digitalocean"
    gpu_image: ClassVar[str | None] = "DigitalOcean's GPU droplet image"
    # Droplet metadata, Network Interfaces: /metadata/v1/interfaces/private/0/ipv4/address is the VPC address
    # (docs.digitalocean.com/reference/api/metadata/network-interfaces).
    private_ipv4_lookup: ClassVar[str | None] = (
        "curl -fsS --max-time 5 http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address"
    )
    packages: ClassVar[frozenset[str]] = frozenset({"digitalocean"})
    free_types: ClassVar[frozenset[str]] = FREE_TYPES

    def config_problems(self, cfg: StackConfig) -> list[str]:
        return dns_zone_problems(cfg)

    def stack_name_problems(self, stack_name: str, cfg: StackConfig) -> list[str]:
        problems = stack_name_problems(stack_name)
        if not problems and cfg.monitoring.enabled:
            volume = naming.volume_cloud_name(stack_name, naming.PROMETHEUS_VOLUME_PURPOSE)
            if len(volume) > VOLUME_NAME_MAX:
                problems.append(
                    f"stack name {stack_name!r} makes the Prometheus volume's name {volume!r} {len(volume)} characters: "
                    f"DigitalOcean allows at most {VOLUME_NAME_MAX}, so use at most "
                    f"{len(stack_name) - len(volume) + VOLUME_NAME_MAX} characters {RENAME_HINT}"
                )
        return problems

    def price(self, resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog) -> list[CostLine] | None:
        if resource_type == DROPLET:
            size = bill.machine_size(catalog, NAME, str(bill.require(inputs, "size", resource_type, name)),
                                     "DigitalOcean Droplet size")
            return [bill.machines(resource_type, name, size, 1, "droplet")]
        if resource_type == KUBERNETES_NODE_POOL:
            return price_node_pool(name, inputs, catalog)
        if resource_type == VOLUME:
            size_gb = bill.positive_number(bill.require(inputs, "size", resource_type, name), f"{resource_type} {name!r} size")
            return [bill.storage(catalog, resource_type, name, NAME, "volume", size_gb, "DigitalOcean volume")]
        if resource_type == RESERVED_IP:
            # Free while assigned, and the program always assigns it (ReservedIpAssignment): a $0 line with its
            # source, never an unknown.
            return [bill.address(catalog, resource_type, name, NAME, "reserved-ipv4-assigned",
                                 "reserved IPv4 at {hourly} while assigned to a Droplet "
                                 "(DigitalOcean bills reserved IPv4s only while unassigned)")]
        return super().price(resource_type, name, inputs, catalog)

    def open_ports(self, resource_type: str, props: Mapping[str, Any]) -> Iterator[OpenPort]:
        if resource_type != FIREWALL:
            return
        for rule in props.get("inboundRules") or []:
            if str(rule.get("protocol")).lower() == "icmp":
                continue
            low, high = port_range(rule.get("portRange"))
            yield OpenPort(low, high, tuple(str(s) for s in rule.get("sourceAddresses") or []),
                           f"inboundRules {rule.get('portRange') or 'all'}",
                           peers=tuple(f"tag:{t}" for t in rule.get("sourceTags") or []))

    def mocks(self, **options: Any) -> CloudMocks:
        return _Mocks()

    def volume_devices(self, volume: str) -> list[str]:
        # DigitalOcean exposes a volume by its name.
        return [f"/dev/disk/by-id/scsi-0DO_Volume_{volume}"]

    def volume_ref(self, inputs: Mapping[str, Any], resource_id: str | None) -> str | None:
        return str(inputs["name"]) if inputs.get("name") else None

    def placeholder_volume(self, stack_name: str) -> str:
        return naming.volume_cloud_name(stack_name, naming.PROMETHEUS_VOLUME_PURPOSE)


class _Mocks(CloudMocks):
    def new_resource(
        self, typ: str, name: str, inputs: Mapping[str, Any], resource_id: str | None, fake: FakeAddress, region: str
    ) -> tuple[str, dict[str, Any]] | None:
        state = dict(inputs)
        n = fake.n
        if typ == DROPLET:
            rid = str(500_000_000 + n)
            state.update(ipv4Address=fake.public, ipv4AddressPrivate=fake.private, status="active",
                         urn=f"do:droplet:{rid}")
        elif typ == RESERVED_IP:
            rid = fake.public
            state.update(ipAddress=fake.public, urn=f"do:reservedip:{fake.public}")
        elif typ == RESERVED_IP_ASSIGNMENT:
            rid = f"{inputs.get('dropletId')}-{inputs.get('ipAddress')}-preview"
        elif typ == VOLUME:
            rid = f"00000000-0000-4000-9000-{n:012d}"
            state.update(filesystemType="", dropletIds=[], urn=f"do:volume:{rid}")
        elif typ == VOLUME_ATTACHMENT:
            rid = f"{inputs.get('dropletId')}-{inputs.get('volumeId')}-preview"
        elif typ == VPC:
            rid = f"00000000-0000-4000-8000-{n:012d}"
            state.setdefault("ipRange", str(DigitalOcean.private_network.supernet(new_prefix=20)))
        elif typ == KUBERNETES_CLUSTER:
            rid = str(resource_id or name)
            state["kubeConfigs"] = [{"rawConfig": "apiVersion: v1\nkind: Config\n# preview placeholder\n"}]
        elif typ == TAG:
            rid = str(inputs.get("name") or name)
        elif typ == DNS_RECORD:
            rid = str(100_000_000 + n)
            record = str(inputs.get("name") or "@")
            zone = str(inputs.get("domain") or "")
            state.update(fqdn=zone if record == "@" else f"{record}.{zone}", ttl=inputs.get("ttl") or 1800)
        elif typ.startswith("digitalocean:"):
            rid = f"{name}-id"
        else:
            return None
        return rid, state


CLOUD = DigitalOcean()
