"""LoadBalancedPool: the private network, N vLLM nodes, and the Nginx least-connections host in front."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.providers import WORLD_V4, WORLD_V6, CloudProvider, IngressRule, MachineSpec, Network
from components.vllm_service import VllmService, VllmServiceArgs, service_spec
from gpu_inference.constants import NGINX_HTTP_PORT, NGINX_HTTPS_PORT, NODE_EXPORTER_PORT, VLLM_PORT
from gpu_inference.render import load_balancer_cloud_init
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:LoadBalancedPool"


def lb_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    """HTTP(S) to the world when publicEndpoint, else to allowedCidrs; SSH only from allowedCidrs."""
    cfg = stack.config
    clients = (WORLD_V4, WORLD_V6) if cfg.public_endpoint else tuple(cfg.allowed_cidrs)
    rules = [IngressRule(NGINX_HTTP_PORT, "OpenAI API via Nginx (HTTP)", cidrs=clients)]
    if cfg.load_balancer.tls_domain:
        # 443 only when Nginx serves TLS: an open port with nothing behind it is just attack surface.
        rules.append(IngressRule(NGINX_HTTPS_PORT, "OpenAI API via Nginx (HTTPS)", cidrs=clients))
    rules.append(IngressRule(NODE_EXPORTER_PORT, "node_exporter: Prometheus only", peers=("monitoring",)))
    rules.append(IngressRule(22, "SSH from allowedCidrs", cidrs=tuple(cfg.allowed_cidrs)))
    return tuple(rules)


def lb_size(stack: ResolvedStack) -> str:
    return stack.config.load_balancer.size or stack.catalog.default_infra_size(stack.config.provider, "loadbalancer")


@dataclass(frozen=True)
class LoadBalancedPoolArgs:
    stack: ResolvedStack
    provider: CloudProvider
    api_key: pulumi.Output[str | None]
    hf_token: pulumi.Output[str | None]
    api_key_set: bool


class LoadBalancedPool(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancedPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack = args.stack
        cfg = stack.config
        ingress = lb_ingress(stack)
        super().__init__(TOKEN, name, {**service_spec(stack, args.api_key_set), "lbSize": lb_size(stack)}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network: Network = args.provider.network(name, stack, self)
        self.services = [
            VllmService(
                f"{name}-vllm-{i}",
                VllmServiceArgs(
                    stack=stack, provider=args.provider, network=self.network, node_index=i,
                    api_key=args.api_key, hf_token=args.hf_token, api_key_set=args.api_key_set,
                ),
                child,
            )
            for i in range(cfg.node_count)
        ]
        self.node_private_ips: pulumi.Output[list[str]] = pulumi.Output.all(*[s.private_ip for s in self.services])
        lb_user_data = pulumi.Output.all(self.node_private_ips, args.api_key).apply(
            lambda v: load_balancer_cloud_init(stack, [f"{ip}:{VLLM_PORT}" for ip in v[0]], v[1])
        )
        self.lb = args.provider.machine(
            f"{name}-lb",
            # nginx.conf lists the nodes, so scaling the pool replaces this host: a static address keeps
            # the endpoint (and any DNS record pointing at it) the same across that replacement.
            MachineSpec(role="lb", size=lb_size(stack), user_data=pulumi.Output.secret(lb_user_data), ingress=ingress,
                        static_ip=True),
            self.network,
            stack,
            self,
        )
        self.priced = self.network.priced
        self.lb_public_ip = self.lb.public_ip
        self.lb_private_ip = self.lb.private_ip
        tls_domain = cfg.load_balancer.tls_domain
        self.endpoint: pulumi.Output[str] = (
            pulumi.Output.from_input(f"https://{tls_domain}/v1") if tls_domain
            else pulumi.Output.concat("http://", self.lb.public_ip, "/v1")
        )
        self.register_outputs(
            {"endpoint": self.endpoint, "lbPublicIp": self.lb_public_ip, "nodePrivateIps": self.node_private_ips}
        )
