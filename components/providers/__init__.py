"""The small interface every cloud implements: a private network, and a machine with its own firewall.

Components (GpuInferenceNode, LoadBalancedPool, MonitoringStack) speak only this interface, so a third
cloud is one new module here plus one line in ``PROVIDERS``.

Firewall rules name their sources by *role* (``lb``, ``monitoring``) rather than by machine: the GPU
nodes must admit the load balancer and Prometheus, but those two hosts are configured from the GPU
nodes' addresses, so a rule that pointed at their ids or IPs would be a dependency cycle. Each role
therefore gets an identity created before any machine (a DigitalOcean tag, an AWS security group)
and every machine of that role carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pulumi
from pulumi import _types as pulumi_types
from pydantic.alias_generators import to_camel

from gpu_inference.errors import ConfigError

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

Role = Literal["gpu", "lb", "monitoring"]
ROLES: tuple[Role, ...] = ("gpu", "lb", "monitoring")

# The Prometheus host's TSDB volume (MonitoringStack): its cloud name is volume_cloud_name(stack, this).
PROMETHEUS_VOLUME_PURPOSE = "prometheus-data"

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"


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
    """What a component asks of a provider; the provider picks image, disk and network details."""

    role: Role
    size: str
    """Provider size slug / instance type (from the catalog or the stack config)."""
    user_data: pulumi.Input[str]
    """cloud-init user data; for GPU nodes a secret Output (it holds the API key and HF token)."""
    ingress: tuple[IngressRule, ...]
    gpu_count: int = 0
    gpu_vendor: str | None = None
    disk_gb: int | None = None
    spot: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    """The deployment spec as key/value labels (AWS tags); policies read them from the machine itself."""
    static_ip: bool = False
    """Give the machine a public IPv4 that outlives it (DigitalOcean reserved IP, AWS Elastic IP on its own
    network interface): a machine replaced because its user data changed keeps the address clients use.
    The Nginx host and the Prometheus host both ask for one (their config lists the GPU nodes)."""
    volumes: tuple[DataVolume, ...] = ()
    """Block volumes (from ``CloudProvider.volume``) to attach to the machine; they outlive it."""


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
    """Its Pulumi name; an attachment is ``{name}-attachment``."""
    resource: pulumi.CustomResource
    id: pulumi.Output[str]
    devices: pulumi.Output[list[str]]


@dataclass
class Network:
    """A provider's private network plus the per-role identities firewall rules refer to."""

    provider: str
    vpc_id: pulumi.Output[str]
    identities: dict[Role, pulumi.Output[str]]
    """Role → DigitalOcean tag name / AWS security group id."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Provider-specific handles (the AWS provider, subnet id, route association)."""
    priced: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(type token, name, the price-relevant inputs in wire names) of every paid resource created, as it is
    registered: the program prices its own bill with ``pricing.bill_for_resources`` like the preview does."""


@dataclass
class Machine:
    """A created machine and its firewall, with the addresses other hosts and the exports need."""

    instance: pulumi.CustomResource
    firewall: pulumi.CustomResource
    id: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    """The static address when ``MachineSpec.static_ip``, else the machine's own (changes with the machine)."""
    private_ip: pulumi.Output[str]


# Python property names (the SDK translates them to wire names, userData / userDataBase64): the engine
# then marks these outputs secret in state, and CrossGuard, whose SDK strips secret markers from the
# props it hands a policy, only learns that user data is secret from this option.
DROPLET_SECRET_OUTPUTS = ["user_data"]
INSTANCE_SECRET_OUTPUTS = ["user_data", "user_data_base64"]


class CloudProvider(Protocol):
    name: str

    def network(self, name: str, stack: ResolvedStack, parent: pulumi.Resource) -> Network:
        """Create the private network and the role identities (children of ``parent``)."""
        ...

    def machine(
        self, name: str, spec: MachineSpec, network: Network, stack: ResolvedStack, parent: pulumi.Resource
    ) -> Machine:
        """Create one machine named ``name`` and its firewall ``{name}-fw`` (children of ``parent``), and
        attach ``spec.volumes`` to it (``{volume.name}-attachment``)."""
        ...

    def volume(
        self, name: str, spec: VolumeSpec, network: Network, stack: ResolvedStack, parent: pulumi.Resource
    ) -> DataVolume:
        """Create a block volume named ``name``, before and independent of any machine: replacing the machine
        it is attached to never replaces it."""
        ...


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


def priced_args(
    priced: list[tuple[str, str, dict[str, Any]]], token: str, name: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Note a paid resource's registration in ``priced`` and hand its arguments back unchanged."""
    priced.append((token, name, wire_inputs({k: v for k, v in kwargs.items() if k != "opts"})))
    return kwargs


def resource_prefix(stack: ResolvedStack) -> str:
    """Prefix of shared cloud-side names (VPC, tags): project and stack, so two stacks never collide."""
    return f"gpu-inference-{stack.name}"


def cloud_name(name: str, stack: ResolvedStack) -> str:
    """Cloud-side name of a resource whose Pulumi name is ``name``: logical names are per stack, cloud names
    are per account, so the stack name is appended (``gpu-inference-node-0-dev``)."""
    return f"{name}-{stack.name}"


# DigitalOcean rejects a droplet name outside hostname characters ("422 Only valid hostname characters are
# allowed. (a-z, A-Z, 0-9, . and -)", digitalocean/doctl#257) and a tag outside [A-Za-z0-9_:-]; the stack
# name is in both (``cloud_name``, the ``stack-<name>`` tag), so only what both accept will do.
_DO_STACK_NAME = re.compile(r"[A-Za-z0-9-]+")


# Kubernetes label values are at most 63 characters; DOKS labels each node with its pool's name
# (doks.digitalocean.com/node-pool), which the vLLM pods select on: "gpu-inference-gpu-<stack>".
K8S_LABEL_VALUE_MAX = 63
K8S_POOL_NAME_PREFIX = "gpu-inference-gpu-"


# DigitalOcean volume names: lowercase letters, digits and '-', starting with a letter, at most 64 characters.
DO_VOLUME_NAME_MAX = 64


def volume_cloud_name(stack: ResolvedStack, purpose: str) -> str:
    """Cloud-side name of a stack's block volume (``gpu-inference-dev-prometheus-data``), lowercase because
    DigitalOcean accepts nothing else; on DigitalOcean it is also what the device is named after."""
    return f"{resource_prefix(stack)}-{purpose}".lower()


def check_stack_name(stack: ResolvedStack) -> None:
    """Refuse, before anything is created, a stack name the provider's cloud-side names cannot carry."""
    rename = "(create it with `pulumi stack init <name>`, or `pulumi stack rename`)"
    if stack.config.provider in ("digitalocean", "kubernetes") and not _DO_STACK_NAME.fullmatch(stack.name):
        raise ConfigError([
            f"stack name {stack.name!r} cannot be part of DigitalOcean droplet names and tags: use only letters, "
            f"digits and '-' {rename}"
        ])
    if stack.config.provider == "digitalocean" and stack.config.monitoring.enabled:
        volume = volume_cloud_name(stack, PROMETHEUS_VOLUME_PURPOSE)
        if len(volume) > DO_VOLUME_NAME_MAX:
            raise ConfigError([
                f"stack name {stack.name!r} makes the Prometheus volume's name {volume!r} {len(volume)} characters: "
                f"DigitalOcean allows at most {DO_VOLUME_NAME_MAX}, so use at most "
                f"{len(stack.name) - len(volume) + DO_VOLUME_NAME_MAX} characters {rename}"
            ])
    longest = K8S_LABEL_VALUE_MAX - len(K8S_POOL_NAME_PREFIX)
    if stack.config.provider == "kubernetes" and len(stack.name) > longest:
        raise ConfigError([
            f"stack name {stack.name!r} is {len(stack.name)} characters: the GPU node pool's name "
            f"({K8S_POOL_NAME_PREFIX}<stack>) becomes a Kubernetes label value (at most {K8S_LABEL_VALUE_MAX}), "
            f"so use at most {longest} {rename}"
        ])


def provider_for(stack: ResolvedStack) -> CloudProvider:
    """The machine provider of a stack; imported lazily so a DigitalOcean run never loads pulumi_aws.

    ``kubernetes`` has no machines (see ``components.providers.kubernetes.KubernetesGpuPool``).
    """
    name = stack.config.provider
    if name == "digitalocean":
        from components.providers.digitalocean import DigitalOceanProvider

        return DigitalOceanProvider()
    if name == "aws":
        from components.providers.aws import AwsProvider

        return AwsProvider()
    raise ConfigError([f"gpu-inference:provider = {name!r} has no machine provider module"])
