"""MonitoringStack: a Prometheus host scraping every node (vLLM, node_exporter, DCGM) with the alert rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.providers import (
    PROMETHEUS_VOLUME_PURPOSE,
    CloudProvider,
    DataVolume,
    IngressRule,
    MachineSpec,
    Network,
    VolumeSpec,
)
from gpu_inference.constants import PROMETHEUS_PORT
from gpu_inference.render import monitoring_cloud_init, monitoring_targets
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:MonitoringStack"


def monitoring_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    cidrs = tuple(stack.config.allowed_cidrs)
    return (
        IngressRule(PROMETHEUS_PORT, "Prometheus UI/API from allowedCidrs", cidrs=cidrs),
        IngressRule(22, "SSH from allowedCidrs", cidrs=cidrs),
    )


def monitoring_size(stack: ResolvedStack) -> str:
    return stack.config.monitoring.size or stack.catalog.default_infra_size(stack.config.provider, "monitoring")


@dataclass(frozen=True)
class MonitoringStackArgs:
    stack: ResolvedStack
    provider: CloudProvider
    network: Network
    node_private_ips: pulumi.Output[list[str]]
    lb_private_ip: pulumi.Output[str]


class MonitoringStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack = args.stack
        mon = stack.config.monitoring
        props = {
            "size": monitoring_size(stack),
            "scrapeIntervalSeconds": mon.scrape_interval_seconds,
            "retention": mon.retention,
            "storageGb": mon.storage_gb,
            "allowedCidrs": list(stack.config.allowed_cidrs),
        }
        super().__init__(TOKEN, name, props, opts)

        def render(values: list[Any]) -> str:
            # The same target lists the offline preview renders: vLLM and DCGM on every node,
            # node_exporter on every host including the load balancer.
            return monitoring_cloud_init(stack, *monitoring_targets(values[0], values[1]), data_devices=values[2])

        host_name = f"{name}-prometheus"
        # The TSDB's volume comes first and owes nothing to the host: a host replaced by a scale-out (its
        # prometheus.yml lists the nodes) gets the same volume back, history included.
        self.volume: DataVolume = args.provider.volume(
            f"{host_name}-data",
            VolumeSpec(role="monitoring", purpose=PROMETHEUS_VOLUME_PURPOSE, size_gb=mon.storage_gb),
            args.network,
            stack,
            self,
        )
        self.host = args.provider.machine(
            host_name,
            # Like the Nginx host: a static address keeps prometheusUrl across the replacement.
            MachineSpec(
                role="monitoring",
                size=monitoring_size(stack),
                user_data=pulumi.Output.all(args.node_private_ips, args.lb_private_ip, self.volume.devices).apply(render),
                ingress=monitoring_ingress(stack),
                static_ip=True,
                volumes=(self.volume,),
            ),
            args.network,
            stack,
            self,
        )
        self.public_ip = self.host.public_ip
        self.prometheus_url: pulumi.Output[str] = pulumi.Output.concat("http://", self.public_ip, f":{PROMETHEUS_PORT}")
        self.register_outputs({"prometheusUrl": self.prometheus_url})
