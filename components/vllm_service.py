"""VllmService: one vLLM service and its deployment spec (what the policies read), wherever it runs.

On a machine cloud it is one replica: its cloud-init (API key and HF token secret end to end) and its GPU node.
On Kubernetes it is the StatefulSet of every replica (``components/kubernetes_gpu_pool.py`` builds it). Either
way its props and outputs are the :class:`~gpu_inference.service_spec.ServiceSpec`, so the policies find it
the same way.
"""

import pulumi

from components.args import GpuInferenceNodeArgs, VllmServiceArgs
from components.gpu_inference_node import GpuInferenceNode
from components.stack_args import plain_int, resolve
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.render import gpu_node_cloud_init
from gpu_inference.service_spec import ServiceSpec

TOKEN = "gpu-inference:index:VllmService"


SERVICE_KEYS = ("node_index", "network", "cluster")


class VllmService(pulumi.ComponentResource):
    """A vLLM OpenAI-compatible server: its spec, and the machine or pods that run it."""

    private_ip: pulumi.Output[str | None]
    """Machine clouds: the node's private address (None on Kubernetes: the pods' DNS names are the addresses)."""
    public_ip: pulumi.Output[str | None]
    """Machine clouds: the node's public address."""

    def __init__(self, name: str, args: VllmServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, secrets = resolve(args, SERVICE_KEYS)
        index = plain_int(args, "node_index") if "node_index" in args else 0
        spec = ServiceSpec.from_stack(stack).props()
        super().__init__(TOKEN, name, {**spec, "nodeIndex": index}, opts)
        self.registrations: tuple[Registration, ...] = ()
        if stack.cloud.layout == "kubernetes":
            from components.kubernetes_gpu_pool import vllm_statefulset

            if "cluster" not in args:
                raise ValueError(f"VllmService {name!r} on provider {stack.config.provider} needs `cluster`")
            self.statefulset = vllm_statefulset(self, name, stack, args["cluster"])
            self.private_ip = pulumi.Output.from_input(None)
            self.public_ip = pulumi.Output.from_input(None)
            self.register_outputs({**spec, "statefulSet": self.statefulset.metadata.name})
            return
        if "network" not in args:
            raise ValueError(f"VllmService {name!r} on provider {stack.config.provider} needs `network`")
        rendered = pulumi.Output.all(secrets.api_key, secrets.hf_token).apply(
            lambda values: gpu_node_cloud_init(stack, index, values[0], values[1])
        )
        # Secret even when the stack has neither key: the file still names the gated model's token slot.
        self.user_data: pulumi.Output[str] = pulumi.Output.secret(rendered)
        node_args = {k: v for k, v in args.items() if k not in SERVICE_KEYS}
        self.node = GpuInferenceNode(
            naming.gpu_node(name),
            GpuInferenceNodeArgs(**node_args, node_index=index, user_data=self.user_data,  # type: ignore[typeddict-item]
                                 network=args["network"]),
            pulumi.ResourceOptions(parent=self),
        )
        self.registrations = self.node.registrations
        self.private_ip = self.node.private_ip
        self.public_ip = self.node.public_ip
        # The spec again: the budget StackValidationPolicy sees components' outputs, not their inputs, and
        # reads monthlyBudgetUsd from here (without it, only the PULUMI_CONFIG fallback knows the budget).
        self.register_outputs(
            {**spec, "privateIp": self.private_ip, "publicIp": self.public_ip, "userData": self.user_data}
        )
