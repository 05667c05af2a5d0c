"""VllmService: one vLLM replica: its cloud-init (API key and HF token secret end to end) and its GPU node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.gpu_inference_node import GpuInferenceNode, GpuInferenceNodeArgs
from components.providers import CloudProvider, Network
from gpu_inference.render import gpu_node_cloud_init
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:VllmService"


def service_spec(stack: ResolvedStack, api_key_set: bool) -> dict[str, Any]:
    """The deployment spec the policies read (vram-fit, kv-headroom, security), as plain values.

    Keys are camelCase like the stack config; the same dict becomes `gpu-inference:<key>` tags on
    AWS instances, because CrossGuard may not be shown component resources.
    """
    cfg = stack.config
    return {
        "model": cfg.model,
        "servedModelName": cfg.name_for_clients,
        "gpu": stack.offering.id,
        "gpuName": stack.gpu.name,
        "gpuCount": stack.offering.gpu_count,
        "gpuMemoryGib": stack.gpu.usable_memory_gib,
        "nodeCount": cfg.node_count,
        "tensorParallelSize": stack.tensor_parallel_size,
        "maxModelLen": cfg.max_model_len,
        "maxNumSeqs": cfg.max_num_seqs,
        "dtype": cfg.dtype,
        "quantization": cfg.quantization or "checkpoint",
        "kvCacheDtype": cfg.kv_cache_dtype,
        "gpuMemoryUtilization": cfg.gpu_memory_utilization,
        "vllmVersion": cfg.vllm_version,
        "vllmImage": cfg.vllm_image,
        "typicalRequestTokens": cfg.typical_request_tokens,
        "provider": cfg.provider,
        "region": cfg.region,
        "apiKeySet": api_key_set,
        # Stack-wide values the budget and security policies need next to the spec.
        "monthlyBudgetUsd": cfg.monthly_budget_usd,
        "allowedCidrs": list(cfg.allowed_cidrs),
        "publicEndpoint": cfg.public_endpoint,
    }


@dataclass(frozen=True)
class VllmServiceArgs:
    stack: ResolvedStack
    provider: CloudProvider
    network: Network
    node_index: int
    api_key: pulumi.Output[str | None]
    """Secret Output (or Output of None when the stack has no key)."""
    hf_token: pulumi.Output[str | None]
    api_key_set: bool


class VllmService(pulumi.ComponentResource):
    """cloud-init for one vLLM node, rendered inside ``apply`` so the secrets never leave Outputs."""

    def __init__(self, name: str, args: VllmServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec = service_spec(args.stack, args.api_key_set)
        super().__init__(TOKEN, name, {**spec, "nodeIndex": args.node_index}, opts)
        self.spec = spec
        stack, index = args.stack, args.node_index
        rendered = pulumi.Output.all(args.api_key, args.hf_token).apply(
            lambda secrets: gpu_node_cloud_init(stack, index, secrets[0], secrets[1])
        )
        # Secret even when the stack has neither key: the file still names the gated model's token slot.
        self.user_data: pulumi.Output[str] = pulumi.Output.secret(rendered)
        self.node = GpuInferenceNode(
            f"{name}-node",
            GpuInferenceNodeArgs(
                stack=stack, provider=args.provider, network=args.network, node_index=index,
                user_data=self.user_data, spec=spec,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.private_ip = self.node.private_ip
        self.public_ip = self.node.public_ip
        # The spec again: the budget StackValidationPolicy sees components' outputs, not their inputs, and
        # reads monthlyBudgetUsd from here (without it, only the PULUMI_CONFIG fallback knows the budget).
        self.register_outputs(
            {**spec, "privateIp": self.private_ip, "publicIp": self.public_ip, "userData": self.user_data}
        )
