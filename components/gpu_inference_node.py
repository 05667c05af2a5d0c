"""GpuInferenceNode: one GPU machine and its firewall, on whichever provider the stack names."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.providers import CloudProvider, IngressRule, MachineSpec, Network
from gpu_inference.constants import DCGM_EXPORTER_PORT, NODE_EXPORTER_PORT, VLLM_PORT
from gpu_inference.render.healthcheck import weights_gb
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:GpuInferenceNode"
# Disk for the OS, Docker and the vLLM image (~10 GB compressed, more unpacked).
IMAGE_DISK_GB = 20
# Weights are downloaded to the HF cache, and safetensors may be converted or re-sharded beside them
# (and a new revision lands next to the old): 2.5 x the checkpoint leaves room for that.
WEIGHTS_DISK_FACTOR = 2.5


def node_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    """vLLM only from the load balancer and Prometheus, exporters only from Prometheus, SSH only from allowedCidrs."""
    cidrs = tuple(stack.config.allowed_cidrs)
    return (
        IngressRule(VLLM_PORT, "vLLM OpenAI API: load balancer and Prometheus only", peers=("lb", "monitoring")),
        IngressRule(NODE_EXPORTER_PORT, "node_exporter: Prometheus only", peers=("monitoring",)),
        IngressRule(DCGM_EXPORTER_PORT, "dcgm-exporter: Prometheus only", peers=("monitoring",)),
        IngressRule(22, "SSH from allowedCidrs", cidrs=cidrs),
    )


def node_disk_gb(stack: ResolvedStack) -> int:
    """Root disk where the provider sells it separately (AWS): config diskGb, else sized from the weights."""
    if stack.config.disk_gb:
        return stack.config.disk_gb
    gib = weights_gb(stack) * 1e9 / 2**30
    return math.ceil(gib * WEIGHTS_DISK_FACTOR + IMAGE_DISK_GB)


def machine_labels(spec: dict[str, Any]) -> dict[str, str]:
    """The spec as `gpu-inference:<key>` tags: AWS tag values are strings, so lists and booleans as JSON."""
    return {f"gpu-inference:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in spec.items()}


@dataclass(frozen=True)
class GpuInferenceNodeArgs:
    stack: ResolvedStack
    provider: CloudProvider
    network: Network
    node_index: int
    user_data: pulumi.Output[str]
    spec: dict[str, Any] = field(default_factory=dict)


class GpuInferenceNode(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuInferenceNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack = args.stack
        ingress = node_ingress(stack)
        props = {
            "provider": stack.config.provider,
            "region": stack.config.region,
            "size": stack.offering.id,
            "gpuCount": stack.offering.gpu_count,
            "nodeIndex": args.node_index,
            "ingress": [
                {"port": r.port_range, "cidrs": list(r.cidrs), "peers": list(r.peers)} for r in ingress if not r.is_empty
            ],
        }
        super().__init__(TOKEN, name, props, opts)
        self.machine = args.provider.machine(
            name,
            MachineSpec(
                role="gpu",
                size=stack.offering.id,
                user_data=args.user_data,
                ingress=ingress,
                gpu_count=stack.offering.gpu_count,
                gpu_vendor=stack.gpu.vendor,
                disk_gb=node_disk_gb(stack),
                spot=stack.config.spot,
                labels=machine_labels(args.spec),
            ),
            args.network,
            stack,
            self,
        )
        self.instance = self.machine.instance
        self.firewall = self.machine.firewall
        self.private_ip: pulumi.Output[str] = self.machine.private_ip
        self.public_ip: pulumi.Output[str] = self.machine.public_ip
        self.register_outputs({"id": self.machine.id, "privateIp": self.private_ip, "publicIp": self.public_ip})
