"""A whole stack from its config: the layout its cloud uses, and one typed result whichever it is.

``__main__.py`` calls :func:`deploy`; the registry (``gpu_inference.clouds``) says which layout a provider
uses. ``machines``: a LoadBalancedPool of VMs and a MonitoringStack host beside it. ``kubernetes``: a
KubernetesGpuPool on an existing cluster, monitoring inside it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from components.args import MonitoringStackArgs, StackArgs
from components.load_balanced_pool import LoadBalancedPool
from components.monitoring_stack import MonitoringStack
from components.stack_args import resolve
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.catalog import UnknownCatalogEntry
from gpu_inference.clouds import Layout
from gpu_inference.pricing import bill_for_resources
from gpu_inference.stack import ResolvedStack

if TYPE_CHECKING:  # imported for real only by Kubernetes stacks (pulumi_kubernetes is slow to import)
    from pulumi_command import local

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
    smoke: "local.Command | None" = None
    """The post-deploy smoke check (components/smoke_check.py); None when smokeTest is off or it cannot reach."""

    def monthly_cost_usd(self) -> float | None:
        """The bill of what the layout registered (730 h), priced like the preview and the budget policy;
        None when the catalog cannot price a size (the preview and the budget policy refuse it, a deploy must not
        break on it)."""
        try:
            bill = bill_for_resources((r.type, r.name, r.inputs) for r in self.registrations)
        except UnknownCatalogEntry as exc:
            pulumi.log.warn(f"monthlyCostUsd unknown: {exc}")
            return None
        return round(bill.total_monthly_usd, 2)


def _machines(name: str, args: StackArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions) -> StackLayout:
    pool = LoadBalancedPool(name, args, opts)
    monitoring = None
    if stack.config.monitoring.enabled:
        monitoring = MonitoringStack(
            naming.monitoring(name),
            MonitoringStackArgs(**args, network=pool.network.args, node_private_ips=pool.node_private_ips,  # type: ignore[typeddict-item]
                                lb_private_ip=pool.lb_private_ip),
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=list(pool.providers))),
        )
    # The LB host and every GPU machine: a replacement of any of them re-runs the smoke check.
    machine_ids = [*(s.node.machine.id for s in pool.services), pool.lb.id]
    return StackLayout(
        stack=stack, pool=pool, monitoring=monitoring, endpoint=pool.endpoint, node_addresses=pool.node_private_ips,
        prometheus_url=monitoring.prometheus_url if monitoring else None,
        registrations=(*pool.registrations, *(monitoring.registrations if monitoring else ())),
        smoke=_smoke(name, args, stack, pool, pool.endpoint, machine_ids, opts),
    )


def _kubernetes(name: str, args: StackArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions) -> StackLayout:
    from components.kubernetes_gpu_pool import KubernetesGpuPool

    pool = KubernetesGpuPool(name, args, opts)
    # The GPU node pool and the LoadBalancer Service (a new one is a new address); vLLM changes ride on the
    # smoke's own trigger on what vLLM serves.
    replaced_with = [pool.node_pool.id, pool.lb_service.id]
    return StackLayout(
        stack=stack, pool=pool, monitoring=getattr(pool, "monitoring", None), endpoint=pool.endpoint,
        node_addresses=[], prometheus_url=pool.prometheus_url, registrations=pool.registrations,
        smoke=_smoke(name, args, stack, pool, pool.endpoint, replaced_with, opts),
    )


def _smoke(name: str, args: StackArgs, stack: ResolvedStack, pool: pulumi.Resource, endpoint: pulumi.Output[str],
           replaced_with: Sequence[pulumi.Input[str]], opts: pulumi.ResourceOptions) -> "local.Command | None":
    """The smoke check after the whole pool (its load balancer and every node: depending on a component waits
    for all its children)."""
    from components.smoke_check import smoke_check

    _stack, secrets = resolve(args)
    return smoke_check(name, stack, endpoint, secrets.api_key, [pool], replaced_with, opts)


LAYOUTS: dict[Layout, Callable[[str, StackArgs, ResolvedStack, pulumi.ResourceOptions], StackLayout]] = {
    "machines": _machines,
    "kubernetes": _kubernetes,
}


def deploy(args: StackArgs, name: str = naming.POOL, opts: pulumi.ResourceOptions | None = None) -> StackLayout:
    """Every resource of the stack ``args`` describe (validated first: a bad value registers nothing).

    ``name`` names the pool (its children and the MonitoringStack beside it are named after it); ``opts`` are
    the top components' options (an InferenceStack passes itself as their parent)."""
    stack, _secrets = resolve(args)
    return LAYOUTS[stack.cloud.layout](name, args, stack, opts or pulumi.ResourceOptions())
