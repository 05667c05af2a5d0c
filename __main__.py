"""gpu-inference: vLLM on rented GPUs behind an Nginx least-connections host, with Prometheus beside it.

Run by `pulumi up`, and offline by `python -m gpu_inference preview` under recording mocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from components.config_source import read_stack_config
from components.load_balanced_pool import LoadBalancedPool, LoadBalancedPoolArgs
from components.monitoring_stack import MonitoringStack, MonitoringStackArgs
from components.providers import check_stack_name, provider_for
from gpu_inference.catalog import UnknownCatalogEntry
from gpu_inference.errors import ConfigError
from gpu_inference.pricing import bill_for_resources
from gpu_inference.stack import resolve_stack

if TYPE_CHECKING:  # imported for real only by kubernetes stacks (pulumi_kubernetes is slow to import)
    from components.providers.kubernetes import KubernetesGpuPool

try:
    stack = resolve_stack(read_stack_config(), name=pulumi.get_stack())
    check_stack_name(stack)
    provider = provider_for(stack) if stack.config.provider != "kubernetes" else None
except ConfigError as exc:
    # One readable message, and nothing registered: a half-created stack is worse than none.
    pulumi.log.error(exc.render())
    raise pulumi.RunError("stopped before creating anything: fix the stack config above") from exc

cfg = stack.config
# Secrets stay Outputs from here on: the engine encrypts them in state and masks them in logs.
api_key = pulumi.Output.secret(cfg.api_key.reveal()) if cfg.api_key else pulumi.Output.from_input(None)
hf_token = pulumi.Output.secret(cfg.hf_token.reveal()) if cfg.hf_token else pulumi.Output.from_input(None)

monitoring = None
prometheus_url: pulumi.Input[str | None] = None
pool: LoadBalancedPool | KubernetesGpuPool
if provider is None:
    from components.providers.kubernetes import KubernetesGpuPool, KubernetesGpuPoolArgs

    pool = KubernetesGpuPool(
        "gpu-inference",
        KubernetesGpuPoolArgs(stack=stack, api_key=api_key, hf_token=hf_token, api_key_set=cfg.api_key is not None),
    )
    node_addresses: pulumi.Input[list[str]] = []  # pods, not hosts: the Service is the address
    # In-cluster URL of the Prometheus Service (None when monitoring is disabled).
    prometheus_url = pool.prometheus_url
else:
    vm_pool = LoadBalancedPool(
        "gpu-inference",
        LoadBalancedPoolArgs(stack=stack, provider=provider, api_key=api_key, hf_token=hf_token,
                             api_key_set=cfg.api_key is not None),
    )
    pool = vm_pool
    node_addresses = vm_pool.node_private_ips
    if cfg.monitoring.enabled:
        monitoring = MonitoringStack(
            "gpu-inference-monitoring",
            MonitoringStackArgs(stack=stack, provider=provider, network=vm_pool.network,
                                node_private_ips=vm_pool.node_private_ips, lb_private_ip=vm_pool.lb_private_ip),
        )
        prometheus_url = monitoring.prometheus_url

try:
    # Priced from the paid resources as registered, with the same function the preview and policies use.
    monthly_cost: float | None = round(bill_for_resources(pool.priced).total_monthly_usd, 2)
except UnknownCatalogEntry as exc:
    # A size the catalog has no price for must not block a deploy; the preview and budget policy refuse it.
    pulumi.log.warn(f"monthlyCostUsd unknown: {exc}")
    monthly_cost = None

sizing = stack.sizing
pulumi.export("endpoint", pool.endpoint)
pulumi.export("nodeAddresses", node_addresses)
pulumi.export("prometheusUrl", prometheus_url)
pulumi.export("monthlyCostUsd", monthly_cost)
pulumi.export("kvCacheTokensPerNode", sizing.kv_cache_tokens)
pulumi.export("maxConcurrencyPerNode", sizing.max_concurrency)
if cfg.api_key is not None:
    pulumi.export("apiKey", api_key)
