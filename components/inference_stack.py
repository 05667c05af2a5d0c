"""InferenceStack: everything a stack file gives, as one component of any Pulumi program.

The same layout `__main__.py` builds (``components.stack_layout.deploy``), from the same config-shaped args, with
the stack's outputs as the component's outputs. For a consumer in another language: ``pulumi package add`` this
repository, then ``new gpuinference.InferenceStack("llm", {provider: "aws", ...})``.
"""

import pulumi

from components.args import StackArgs
from components.stack_args import resolve
from components.stack_layout import deploy
from gpu_inference.service_spec import ServiceSpec

TOKEN = "gpu-inference:index:InferenceStack"


class InferenceStack(pulumi.ComponentResource):
    """A monitored, policy-checked vLLM endpoint on the stack config's cloud: GPU nodes, Nginx, Prometheus."""

    endpoint: pulumi.Output[str]
    """The OpenAI-compatible base URL (``…/v1``)."""
    node_addresses: pulumi.Output[list[str]]
    """The GPU nodes' private addresses (empty on Kubernetes: the Service is the address)."""
    prometheus_url: pulumi.Output[str | None]
    """Prometheus' URL (None when monitoring is disabled)."""
    grafana_url: pulumi.Output[str | None]
    """Grafana's URL: https://<tlsDomain>/grafana/ through the load balancer, else the monitoring host's port 3000
    (None on Kubernetes, where the cluster's own Grafana loads the dashboards, or with Grafana off)."""
    monthly_cost_usd: pulumi.Output[float | None]
    """The stack's monthly bill (730 h, catalog list prices); None when the catalog cannot price a size."""
    kv_cache_tokens_per_node: pulumi.Output[int]
    """KV-cache tokens one node's vLLM holds, as vLLM will compute them."""
    max_concurrency_per_node: pulumi.Output[float]
    """Requests of maxModelLen tokens one node serves at once from its KV cache."""

    def __init__(self, name: str, args: StackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, _secrets = resolve(args)
        super().__init__(TOKEN, name, ServiceSpec.from_stack(stack).props(), opts)
        layout = deploy(args, name=name, opts=pulumi.ResourceOptions(parent=self))
        self.endpoint = layout.endpoint
        self.node_addresses = pulumi.Output.from_input(layout.node_addresses)
        self.prometheus_url = pulumi.Output.from_input(layout.prometheus_url)
        self.grafana_url = layout.monitoring.grafana_url if layout.monitoring else pulumi.Output.from_input(None)
        self.monthly_cost_usd = pulumi.Output.from_input(layout.monthly_cost_usd())
        self.kv_cache_tokens_per_node = pulumi.Output.from_input(stack.sizing.kv_cache_tokens)
        self.max_concurrency_per_node = pulumi.Output.from_input(stack.sizing.max_concurrency)
        self.register_outputs({
            "endpoint": self.endpoint, "nodeAddresses": self.node_addresses, "prometheusUrl": self.prometheus_url,
            "grafanaUrl": self.grafana_url,
            "monthlyCostUsd": self.monthly_cost_usd, "kvCacheTokensPerNode": self.kv_cache_tokens_per_node,
            "maxConcurrencyPerNode": self.max_concurrency_per_node,
        })
