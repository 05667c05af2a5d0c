"""What every cloud module knows, as one small pure interface.

A cloud is the value of ``gpu-inference:provider``. Its module in this package holds everything pure about it:
the resource type tokens its Pulumi module registers, how those are priced, which names and tags it
accepts, how its firewall rules read to the security policy, how the offline preview mocks its resources,
and where a block volume shows up on its machines. Its Pulumi module (``pulumi_module``) creates the
resources. Nothing here imports Pulumi.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from gpu_inference.constants import PROJECT_NAME

if TYPE_CHECKING:
    from gpu_inference.bill import CostLine
    from gpu_inference.catalog import Catalog
    from gpu_inference.config import StackConfig

Layout = Literal["machines", "kubernetes"]
"""How a cloud serves a stack: ``machines`` (a LoadBalancedPool of VMs, a MonitoringStack host) or
``kubernetes`` (a KubernetesGpuPool on an existing cluster, monitoring in-cluster)."""


@dataclass(frozen=True)
class OpenPort:
    """One inbound rule of a firewall-like resource, as the security policy reads it."""

    low: int
    high: int
    sources: tuple[str, ...]
    """CIDRs the rule admits (peer groups / tags are not addresses and are left out)."""
    rule: str
    """How to name the rule in a message, e.g. ``inboundRules 22``."""
    peers: tuple[str, ...] = ()
    """Non-address sources (``tag:<name>``, ``sg:<id>``): shown in the preview, never world-open."""


@dataclass(frozen=True)
class FakeAddress:
    """What the offline preview hands one resource: a stable number and the addresses derived from it."""

    n: int
    public: str
    private: str


class CloudMocks:
    """How the offline preview mocks one cloud's resources (fresh per run: some clouds link resources,
    e.g. an AWS instance takes its addresses from the interface it launches on)."""

    def new_resource(
        self, typ: str, name: str, inputs: Mapping[str, Any], resource_id: str | None, fake: FakeAddress, region: str
    ) -> tuple[str, dict[str, Any]] | None:
        """(id, state) for a resource type of this cloud; None: not one of this cloud's types."""
        return None

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any] | None:
        """The result of an invoke of this cloud; None: not one of this cloud's functions."""
        return None


class Cloud:
    """The pure facts of one cloud. Subclasses set the class attributes and override what applies."""

    name: ClassVar[str]
    """The ``gpu-inference:provider`` value."""
    summary: ClassVar[str]
    """What a stack on this cloud gets, in a few words (the README's config table lists it)."""
    catalog_cloud: ClassVar[str]
    """Whose catalog rows (offerings, hosts, storage) a stack on this cloud buys."""
    layout: ClassVar[Layout]
    pulumi_module: ClassVar[str]
    """The module of ``components`` that creates this cloud's resources."""
    packages: ClassVar[frozenset[str]] = frozenset()
    """Pulumi packages whose resource types this module prices (a type of such a package that is neither
    priced nor listed in ``free_types`` raises, so a new paid resource is never $0)."""
    free_types: ClassVar[frozenset[str]] = frozenset()
    gpu_image: ClassVar[str | None] = None
    """Machine clouds: the GPU image its nodes boot, in words (it ships Docker and the NVIDIA toolkit: the GPU
    node's bootstrap says so and only installs what is missing)."""
    private_ipv4_lookup: ClassVar[str | None] = None
    """Machine clouds: a bash command (one line, no secrets) that prints the machine's private IPv4 from the
    cloud's metadata service; the GPU node publishes its containers' ports on that address only."""
    supports_spot: ClassVar[bool] = False
    spot_metadata_endpoint: ClassVar[str | None] = None
    """Spot clouds: the instance metadata service whose ``/latest/meta-data/spot/instance-action`` (IMDSv2)
    posts the interruption notice; spot GPU nodes run the watcher (gpu_inference/render/spot.py) against it."""
    private_network: ClassVar[ipaddress.IPv4Network] = ipaddress.IPv4Network("10.10.0.0/24")
    """Where the offline preview draws private addresses from (what the cloud would hand out)."""

    def config_problems(self, cfg: StackConfig) -> list[str]:
        """Messages for config values this cloud cannot honour (checked with the rest of the config)."""
        return []

    def stack_name_problems(self, stack_name: str, cfg: StackConfig) -> list[str]:
        """Messages for a stack name this cloud's cloud-side names cannot carry."""
        return []

    def price(self, resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog) -> list[CostLine] | None:
        """Cost lines of one registered resource of this cloud ([] when free); None when the type is not its own."""
        if resource_type in self.free_types:
            return []
        return None

    def open_ports(self, resource_type: str, props: Mapping[str, Any]) -> Iterator[OpenPort]:
        """Every inbound TCP/UDP range a firewall-like resource of this cloud opens, with its sources."""
        return iter(())

    def mocks(self, **options: Any) -> CloudMocks:
        """Fresh mocks for one preview run; ``options`` tune a cloud's fakes (unknown ones are ignored)."""
        return CloudMocks()

    def volume_devices(self, volume: str) -> list[str]:
        """Stable device paths of a block volume on a machine, to try in order (``volume``: ``volume_ref``)."""
        raise ValueError(f"no block volumes on provider {self.name!r}")

    def volume_ref(self, inputs: Mapping[str, Any], resource_id: str | None) -> str | None:
        """What a registered volume's device is found by (its name or its id), from its registration."""
        return None

    def placeholder_volume(self, stack_name: str) -> str:
        """``volume_ref`` of the stack's Prometheus volume when no real one exists (golden files)."""
        raise ValueError(f"no block volumes on provider {self.name!r}")


# TTL of the TLS domain's record: the address behind it is static (it outlives the load balancer host), so a
# long cache costs nothing; 5 minutes still lets a user who moves the name see it move quickly.
DNS_TTL_SECONDS = 300


def tls_domain_in_zone_problems(cfg: StackConfig, zone_word: str) -> list[str]:
    """A ``loadBalancer.dnsZone`` needs the ``tlsDomain`` whose record it gets (both clouds' rule)."""
    lb = cfg.load_balancer
    if lb.dns_zone and not lb.tls_domain:
        return [
            f"{PROJECT_NAME}:loadBalancer.dnsZone = {lb.dns_zone!r} needs {PROJECT_NAME}:loadBalancer.tlsDomain: "
            f"the {zone_word} gets an A record for that name (set tlsDomain, or remove dnsZone)"
        ]
    return []


def port_range(text: Any) -> tuple[int, int]:
    """A port range as clouds write it ("22", "8000-8001", "all", "1-65535", "0") → inclusive range.

    An unparsable range is treated as every port: the security policy fails closed.
    """
    value = str(text or "all").strip().lower()
    if value in ("all", "0", ""):
        return (1, 65535)
    low, _, high = value.partition("-")
    try:
        return (int(low), int(high or low))
    except ValueError:
        return (1, 65535)
