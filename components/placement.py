"""Where a component runs, as plain data, and the fields each component takes beyond the stack config.

``NetworkArgs`` and ``ClusterPlacementArgs`` are the values one component hands another (a machine pool's
network, a Kubernetes pool's namespace). The ``*Extras`` classes are the component-specific fields: the
generator (``scripts/update_component_args.py``) copies them, with their docstrings, after the stack config's
fields into each component's flat args TypedDict in ``components/args.py`` (Pulumi's schema inference reads
each field's docstring from the class that declares it, so the args are flat, not inherited).
"""

from collections.abc import Sequence
from typing import Required, TypedDict

import pulumi


class NetworkArgs(TypedDict, total=False):
    """A stack's private network and the identities firewall rules admit, as plain values."""

    vpc_id: Required[pulumi.Input[str]]
    """The VPC the machines join."""
    gpu_identity: Required[pulumi.Input[str]]
    """What GPU nodes carry so other firewalls can admit them (a tag name or a security group id)."""
    lb_identity: Required[pulumi.Input[str]]
    """The load balancer's identity (a tag name or a security group id)."""
    monitoring_identity: Required[pulumi.Input[str]]
    """The Prometheus host's identity (a tag name or a security group id)."""
    subnet_id: pulumi.Input[str]
    """Clouds with subnets: the subnet machines launch in (it carries the route to the internet)."""
    availability_zone: pulumi.Input[str]
    """Clouds with zones: where volumes are created (they attach only within their zone)."""


class ClusterPlacementArgs(TypedDict):
    """Where a vLLM service runs on a Kubernetes cluster (from a KubernetesGpuPool)."""

    namespace: pulumi.Input[str]
    """The namespace of the service's objects."""
    node_pool: pulumi.Input[str]
    """The GPU node pool whose nodes the pods are scheduled on (its name, as the nodes' pool label)."""
    secret_name: pulumi.Input[str]
    """The Secret holding VLLM_API_KEY and HF_TOKEN."""
    instance: str
    """The pool's name: the ``app.kubernetes.io/instance`` label of its objects, and their names' prefix."""


class GpuInferenceNodeExtras(TypedDict, total=False):
    """The stack's config plus which node this is, its cloud-init and the network it joins."""

    node_index: Required[pulumi.Input[int]]
    """Which node of the pool (0-based): names its hostname and files."""
    user_data: Required[pulumi.Input[str]]
    """The node's cloud-init (a secret: it holds the API key and HF token)."""
    network: Required[NetworkArgs]
    """The private network and role identities to join (from a LoadBalancedPool)."""


class VllmServiceExtras(TypedDict, total=False):
    """The stack's config plus where this service runs: a node of a machine cloud, or a cluster."""

    node_index: pulumi.Input[int]
    """Machine clouds: which node of the pool this service is (0-based)."""
    network: NetworkArgs
    """Machine clouds: the private network and role identities its node joins."""
    cluster: ClusterPlacementArgs
    """Kubernetes: the namespace, node pool and Secret of the pool it belongs to."""


class MonitoringStackExtras(TypedDict, total=False):
    """The stack's config plus what Prometheus scrapes and where it runs."""

    network: NetworkArgs
    """Machine clouds: the private network and role identities the Prometheus host joins."""
    node_private_ips: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Machine clouds: the GPU nodes' private addresses (vLLM, DCGM and node_exporter targets)."""
    lb_private_ip: pulumi.Input[str]
    """Machine clouds: the load balancer's private address (a node_exporter target)."""
    cluster: ClusterPlacementArgs
    """Kubernetes: the namespace of the pool it watches."""
