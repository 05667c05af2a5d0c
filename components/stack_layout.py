"""A whole stack from its config: the layout its cloud uses, and one typed result whichever it is.

``__main__.py`` calls :func:`deploy`; the registry (``gpu_inference.clouds``) says which layout a provider
uses. ``machines``: a LoadBalancedPool of VMs and a MonitoringStack host beside it. ``kubernetes``: a
KubernetesGpuPool on an existing cluster, monitoring inside it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from components.args import StackArgs
from components.load_balanced_pool import LoadBalancedPool
from components.monitoring_stack import MonitoringStack, MonitoringStackArgs
from components.stack_args import resolve
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.clouds import Layout
from gpu_inference.stack import ResolvedStack

if TYPE_CHECKING:  # imported for real only by Kubernetes stacks (pulumi_kubernetes is slow to import)
    from components.kubernetes_gpu_pool import KubernetesGpuPool


@dataclass(frozen=True)
class StackLayout:
    """What a stack's layout gives back: the addresses to export and what it registered for pricing."""

    stack: ResolvedStack
    pool: "LoadBalancedPool | KubernetesGpuPool"
    monitoring: MonitoringStack | None
    endpoint: pulumi.Output[str]
    node_addresses: pulumi.Input[list[str]]
    """The GPU nodes' private addresses (none on Kubernetes: the Service is the address)."""
    prometheus_url: pulumi.Input[str | None]
    registrations: tuple[Registration, ...]
    """Every paid resource, as registered: the program prices its own bill from these."""


def _machines(args: StackArgs, stack: ResolvedStack) -> StackLayout:
    pool = LoadBalancedPool(naming.POOL, args)
    monitoring = None
    if stack.config.monitoring.enabled:
        monitoring = MonitoringStack(
            naming.MONITORING,
            MonitoringStackArgs(**args, network=pool.network.args, node_private_ips=pool.node_private_ips,  # type: ignore[typeddict-item]
                                lb_private_ip=pool.lb_private_ip),
            pulumi.ResourceOptions(providers=list(pool.providers)),
        )
    return StackLayout(
        stack=stack, pool=pool, monitoring=monitoring, endpoint=pool.endpoint, node_addresses=pool.node_private_ips,
        prometheus_url=monitoring.prometheus_url if monitoring else None,
        registrations=(*pool.registrations, *(monitoring.registrations if monitoring else ())),
    )


def _kubernetes(args: StackArgs, stack: ResolvedStack) -> StackLayout:
    from components.kubernetes_gpu_pool import KubernetesGpuPool

    pool = KubernetesGpuPool(naming.POOL, args)
    return StackLayout(
        stack=stack, pool=pool, monitoring=getattr(pool, "monitoring", None), endpoint=pool.endpoint,
        node_addresses=[], prometheus_url=pool.prometheus_url, registrations=pool.registrations,
    )


LAYOUTS: dict[Layout, Callable[[StackArgs, ResolvedStack], StackLayout]] = {
    "machines": _machines,
    "kubernetes": _kubernetes,
}


def deploy(args: StackArgs) -> StackLayout:
    """Every resource of the stack ``args`` describe (validated first: a bad value registers nothing)."""
    stack, _secrets = resolve(args)
    return LAYOUTS[stack.cloud.layout](args, stack)
