"""The machine interface every machine cloud implements: a private network, machines with their own firewall,
and block volumes. ``LoadBalancedPool``, ``GpuInferenceNode`` and ``MonitoringStack`` speak only this interface;
each cloud's module here implements it, and ``machine_cloud`` picks the stack's one from the registry
(``gpu_inference.clouds``: the pure facts of each cloud live there).

Firewall rules name their sources by *role* (``lb``, ``monitoring``) rather than by machine: the GPU nodes must
admit the load balancer and Prometheus, but those two hosts are configured from the GPU nodes' addresses, so a
rule that pointed at their ids or IPs would be a dependency cycle. Each role therefore gets an identity created
before any machine (a tag, a security group: each cloud module chooses) and every machine of that role carries it.

The network travels between components as plain data (``NetworkArgs``: ids and names), so a component can be
given an existing network by any Pulumi program; dependencies ride on those Outputs.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pulumi
from pulumi import _types as pulumi_types
from pydantic.alias_generators import to_camel

from components.placement import NetworkArgs
from gpu_inference.bill import Registration
from gpu_inference.stack import ResolvedStack

Role = Literal["gpu", "lb", "monitoring"]
ROLES: tuple[Role, ...] = ("gpu", "lb", "monitoring")

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"


def identity(network: NetworkArgs, role: Role) -> pulumi.Output[str]:
    key = {"gpu": "gpu_identity", "lb": "lb_identity", "monitoring": "monitoring_identity"}[role]
    return pulumi.Output.from_input(network[key])  # type: ignore[literal-required]


@dataclass(frozen=True)
class IngressRule:
    """One inbound TCP allowance. A rule with neither CIDRs nor peer roles admits nobody and is dropped."""

    port: int
    description: str
    cidrs: tuple[str, ...] = ()
    peers: tuple[Role, ...] = ()
    to_port: int | None = None

    @property
    def port_range(self) -> str:
        return str(self.port) if self.to_port in (None, self.port) else f"{self.port}-{self.to_port}"

    @property
    def is_empty(self) -> bool:
        return not self.cidrs and not self.peers


@dataclass(frozen=True)
class MachineSpec:
    """What a component asks of a cloud; the cloud module picks image, disk and network details."""

    role: Role
    size: str
    """Size slug / instance type (from the catalog or the stack config)."""
    user_data: pulumi.Input[str]
    """cloud-init user data; a secret Output (GPU nodes' holds the API key and HF token)."""
    ingress: tuple[IngressRule, ...]
    gpu_count: int = 0
    gpu_vendor: str | None = None
    disk_gb: int | None = None
    spot: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    """The deployment spec as key/value labels (AWS tags); policies read them from the machine itself."""
    static_ip: bool = False
    """Give the machine a public IPv4 that outlives it (a reserved IP, or an Elastic IP on its own network
    interface): a machine replaced because its user data changed keeps the address clients use.
    The Nginx host and the Prometheus host both ask for one (their config lists the GPU nodes)."""
    volumes: tuple["DataVolume", ...] = ()
    """Block volumes (from ``MachineCloud.volume``) to attach to the machine; they outlive it."""


@dataclass(frozen=True)
class VolumeSpec:
    """A block volume that outlives the machines it is attached to (the Prometheus TSDB)."""

    role: Role
    purpose: str
    """Short lowercase word(s) for cloud-side names and tags, e.g. ``prometheus-data``."""
    size_gb: int


@dataclass(frozen=True)
class DataVolume:
    """A created block volume: its resource, and the device paths it shows up under on a machine.

    ``devices`` are stable paths (``/dev/disk/by-id/...``) to try in order; the first that exists is the
    volume. They depend only on the volume (its name or id), never on the machine.
    """

    name: str
    """Its Pulumi name; an attachment is ``naming.attachment(name)``."""
    resource: pulumi.CustomResource
    id: pulumi.Output[str]
    devices: pulumi.Output[list[str]]
    registrations: tuple[Registration, ...] = ()


@dataclass(frozen=True)
class Network:
    """A created network: its plain description for other components, the explicit providers its resources
    use (children must be created with ``ResourceOptions(providers=...)``), and what it bills (nothing today)."""

    args: NetworkArgs
    providers: tuple[pulumi.ProviderResource, ...] = ()


@dataclass(frozen=True)
class Machine:
    """A created machine and its firewall, with the addresses other hosts and the exports need."""

    instance: pulumi.CustomResource
    firewall: pulumi.CustomResource
    id: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    """The static address when ``MachineSpec.static_ip``, else the machine's own (changes with the machine)."""
    private_ip: pulumi.Output[str]
    registrations: tuple[Registration, ...] = ()
    """The paid resources created for it, as registered (the machine, its static address)."""


# Python property names (the SDK translates them to wire names, userData / userDataBase64): the engine
# then marks these outputs secret in state, and CrossGuard, whose SDK strips secret markers from the
# props it hands a policy, only learns that user data is secret from this option.
DROPLET_SECRET_OUTPUTS = ["user_data"]
INSTANCE_SECRET_OUTPUTS = ["user_data", "user_data_base64"]


class MachineCloud(Protocol):
    def network(self, name: str, stack: ResolvedStack, opts: pulumi.ResourceOptions) -> Network:
        """Create the private network and the role identities (with ``opts``: the caller's parent)."""
        ...

    def machine(
        self, name: str, spec: MachineSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> Machine:
        """Create one machine named ``name`` and its firewall, and attach ``spec.volumes``. ``opts`` carries the
        parent and the network's providers."""
        ...

    def volume(
        self, name: str, spec: VolumeSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> DataVolume:
        """Create a block volume named ``name``, before and independent of any machine: replacing the machine
        it is attached to never replaces it."""
        ...

    def dns_record(
        self, name: str, zone: str, domain: str, address: pulumi.Input[str], stack: ResolvedStack,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.CustomResource:
        """Create the A record ``domain`` → ``address`` in the user's existing ``zone`` (``loadBalancer.dnsZone``:
        its meaning is the cloud's, checked by its ``config_problems``)."""
        ...


def machine_cloud(stack: ResolvedStack) -> MachineCloud:
    """The machine cloud of a stack, from its cloud's ``pulumi_module`` (imported lazily: a stack never loads
    another cloud's SDK)."""
    cloud = stack.cloud
    if cloud.layout != "machines":
        raise ValueError(f"provider {cloud.name!r} has no machines (layout {cloud.layout!r})")
    module = importlib.import_module(cloud.pulumi_module)
    return module.MACHINE_CLOUD  # type: ignore[no-any-return]


def wire_inputs(value: Any) -> Any:
    """Resource arguments as the engine registers them: camelCase wire names, nested input types as dicts.

    Outputs (ids, secrets, addresses) are left out: nothing the bill depends on is an Output, and the
    known part is all a real `pulumi preview` would see too.
    """
    if isinstance(value, pulumi.Output):
        return None
    if pulumi_types.is_input_type(type(value)):
        value = pulumi_types.input_type_to_dict(value)
        return {k: wire_inputs(v) for k, v in value.items() if not isinstance(v, pulumi.Output)}
    if isinstance(value, dict):
        return {to_camel(k) if "_" in k else k: wire_inputs(v) for k, v in value.items() if not isinstance(v, pulumi.Output)}
    if isinstance(value, (list, tuple)):
        return [wire_inputs(v) for v in value]
    return value


def registration(token: str, name: str, args: Any, **priced_as: Any) -> Registration:
    """What a paid resource is billed from: its registered arguments (an SDK ``*Args`` object, wire names),
    with ``priced_as`` values that are Outputs at registration time but known to the program (e.g. the root
    disk it asked for)."""
    return Registration(token, name, {**wire_inputs(args), **priced_as})
