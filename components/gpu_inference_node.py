"""GpuInferenceNode: one GPU machine and its firewall, on whichever machine cloud the stack names."""

import math

import pulumi

from components.args import GpuInferenceNodeArgs
from components.clouds import IngressRule, MachineSpec, machine_cloud
from components.stack_args import plain_int, resolve
from gpu_inference.bill import Registration
from gpu_inference.constants import NODE_EXPORTER_PORT, VLLM_PORT
from gpu_inference.gpu_vendor import vendor_for
from gpu_inference.render.healthcheck import weights_gb
from gpu_inference.service_spec import ServiceSpec
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
    exporter = vendor_for(stack).exporter  # DCGM on NVIDIA, AMD's device metrics exporter on ROCm
    return (
        IngressRule(VLLM_PORT, "vLLM OpenAI API: load balancer and Prometheus only", peers=("lb", "monitoring")),
        IngressRule(NODE_EXPORTER_PORT, "node_exporter: Prometheus only", peers=("monitoring",)),
        IngressRule(exporter.port, f"{exporter.container}: Prometheus only", peers=("monitoring",)),
        IngressRule(22, "SSH from allowedCidrs", cidrs=cidrs),
    )


def node_disk_gb(stack: ResolvedStack) -> int:
    """Root disk where the cloud sells it separately: config diskGb, else sized from the weights."""
    if stack.config.disk_gb:
        return stack.config.disk_gb
    gib = weights_gb(stack) * 1e9 / 2**30
    return math.ceil(gib * WEIGHTS_DISK_FACTOR + IMAGE_DISK_GB)


NODE_KEYS = ("node_index", "user_data", "network")


class GpuInferenceNode(pulumi.ComponentResource):
    """One GPU machine with its own firewall: vLLM reachable only from the load balancer and Prometheus."""

    private_ip: pulumi.Output[str]
    """The node's address in the private network (what the load balancer and Prometheus reach)."""
    public_ip: pulumi.Output[str]
    """The node's public address (SSH from allowedCidrs only)."""

    def __init__(self, name: str, args: GpuInferenceNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, _secrets = resolve(args, NODE_KEYS)
        ingress = node_ingress(stack)
        index = plain_int(args, "node_index")
        props = {
            "provider": stack.config.provider,
            "region": stack.config.region,
            "size": stack.offering.id,
            "gpuCount": stack.offering.gpu_count,
            "nodeIndex": index,
            "spot": stack.config.node_is_spot(index),
            "ingress": [
                {"port": r.port_range, "cidrs": list(r.cidrs), "peers": list(r.peers)} for r in ingress if not r.is_empty
            ],
        }
        super().__init__(TOKEN, name, props, opts)
        self.machine = machine_cloud(stack).machine(
            name,
            MachineSpec(
                role="gpu",
                size=stack.offering.id,
                user_data=args["user_data"],
                ingress=ingress,
                gpu_count=stack.offering.gpu_count,
                gpu_vendor=stack.gpu.vendor,
                disk_gb=node_disk_gb(stack),
                # The first onDemandNodes nodes stay on demand: a spot reclaim never takes the whole endpoint.
                spot=stack.config.node_is_spot(index),
                labels=ServiceSpec.from_stack(stack).labels(),
            ),
            args["network"],
            stack,
            pulumi.ResourceOptions(parent=self),
        )
        self.instance = self.machine.instance
        self.firewall = self.machine.firewall
        self.registrations: tuple[Registration, ...] = self.machine.registrations
        self.private_ip = self.machine.private_ip
        self.public_ip = self.machine.public_ip
        self.register_outputs({"id": self.machine.id, "privateIp": self.private_ip, "publicIp": self.public_ip})
