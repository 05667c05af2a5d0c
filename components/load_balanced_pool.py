"""LoadBalancedPool: the private network, N vLLM nodes, and the Nginx least-connections host in front."""

import pulumi

from components.args import StackArgs, VllmServiceArgs
from components.clouds import WORLD_V4, WORLD_V6, IngressRule, MachineSpec, machine_cloud
from components.stack_args import resolve
from components.vllm_service import VllmService
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.constants import (
    GRAFANA_REGISTRAR_PORT,
    MTAIL_PORT,
    NGINX_HTTP_PORT,
    NGINX_HTTPS_PORT,
    NODE_EXPORTER_PORT,
    VLLM_PORT,
)
from gpu_inference.render import load_balancer_cloud_init
from gpu_inference.render.grafana_proxy import grafana_behind_lb
from gpu_inference.service_spec import ServiceSpec
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:LoadBalancedPool"


def lb_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    """HTTP(S) to the world when publicEndpoint, else to allowedCidrs; SSH only from allowedCidrs."""
    cfg = stack.config
    clients = (WORLD_V4, WORLD_V6) if cfg.public_endpoint else tuple(cfg.allowed_cidrs)
    if cfg.load_balancer.tls_domain:
        # With TLS, port 80 serves no API (ACME challenges and a redirect), and the ACME server validates from
        # addresses it does not publish (Let's Encrypt: multiple perspectives), so it faces the world even for a
        # private endpoint. 443 only when Nginx serves TLS: an open port with nothing behind it is attack surface.
        rules = [IngressRule(NGINX_HTTP_PORT, "ACME HTTP-01 challenges and a redirect to HTTPS",
                             cidrs=(WORLD_V4, WORLD_V6)),
                 IngressRule(NGINX_HTTPS_PORT, "OpenAI API via Nginx (HTTPS)", cidrs=clients)]
    else:
        rules = [IngressRule(NGINX_HTTP_PORT, "OpenAI API via Nginx (HTTP)", cidrs=clients)]
    rules.append(IngressRule(NODE_EXPORTER_PORT, "node_exporter: Prometheus only", peers=("monitoring",)))
    rules.append(IngressRule(MTAIL_PORT, "mtail (Nginx request metrics): Prometheus only", peers=("monitoring",)))
    if grafana_behind_lb(stack):
        rules.append(IngressRule(GRAFANA_REGISTRAR_PORT, "Grafana registration: the monitoring host only",
                                 peers=("monitoring",)))
    rules.append(IngressRule(22, "SSH from allowedCidrs", cidrs=tuple(cfg.allowed_cidrs)))
    return tuple(rules)


class LoadBalancedPool(pulumi.ComponentResource):
    """GPU machines serving one model behind an Nginx least-connections host, in a private network of their own."""

    endpoint: pulumi.Output[str]
    """The OpenAI-compatible base URL clients use (``…/v1``)."""
    lb_public_ip: pulumi.Output[str]
    """The load balancer's public address (static: it outlives the host)."""
    lb_private_ip: pulumi.Output[str]
    """The load balancer's address in the private network."""
    node_private_ips: pulumi.Output[list[str]]
    """Every GPU node's private address, in node order."""

    def __init__(self, name: str, args: StackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, secrets = resolve(args)
        cfg = stack.config
        super().__init__(TOKEN, name, {**ServiceSpec.from_stack(stack).props(), "lbSize": stack.lb_size}, opts)
        cloud = machine_cloud(stack)
        self.network = cloud.network(name, stack, pulumi.ResourceOptions(parent=self))
        # The network's explicit providers (e.g. one pinning the AWS region) serve every machine of the stack.
        self.providers = self.network.providers
        child = pulumi.ResourceOptions(parent=self, providers=list(self.providers))
        self.services = [
            VllmService(
                naming.vllm_service(name, i),
                VllmServiceArgs(**args, node_index=i, network=self.network.args),  # type: ignore[typeddict-item]
                child,
            )
            for i in range(cfg.node_count)
        ]
        self.node_private_ips = pulumi.Output.all(*[s.private_ip for s in self.services])  # type: ignore[assignment]
        lb_user_data = pulumi.Output.all(self.node_private_ips, secrets.api_key).apply(
            lambda v: load_balancer_cloud_init(stack, [f"{ip}:{VLLM_PORT}" for ip in v[0]], v[1])
        )
        self.lb = cloud.machine(
            naming.lb_host(name),
            # nginx.conf lists the nodes, so scaling the pool replaces this host: a static address keeps
            # the endpoint (and any DNS record pointing at it) the same across that replacement.
            MachineSpec(role="lb", size=stack.lb_size, user_data=pulumi.Output.secret(lb_user_data),
                        ingress=lb_ingress(stack), static_ip=True),
            self.network.args,
            stack,
            child,
        )
        self.registrations: tuple[Registration, ...] = (
            *(r for s in self.services for r in s.registrations), *self.lb.registrations,
        )
        self.lb_public_ip = self.lb.public_ip
        self.lb_private_ip = self.lb.private_ip
        tls_domain = cfg.load_balancer.tls_domain
        zone = cfg.load_balancer.dns_zone
        # The name clients use, pointed at the static address: the certificate's HTTP-01 validation needs it too.
        # A only: neither cloud gives the Nginx host an IPv6 address (droplets ipv6=False, an IPv4-only subnet).
        self.dns_record = (
            cloud.dns_record(naming.dns_record(naming.lb_host(name)), zone, tls_domain, self.lb.public_ip, stack, child)
            if zone and tls_domain else None
        )
        self.endpoint = (
            pulumi.Output.from_input(f"https://{tls_domain}/v1") if tls_domain
            else pulumi.Output.concat("http://", self.lb.public_ip, "/v1")
        )
        self.register_outputs(
            {"endpoint": self.endpoint, "lbPublicIp": self.lb_public_ip, "nodePrivateIps": self.node_private_ips}
        )
