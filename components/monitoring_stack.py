"""MonitoringStack: Prometheus scraping every node (vLLM, node_exporter, DCGM) and evaluating the alert rules.

On a machine cloud it is a host of its own with its TSDB on a block volume; on Kubernetes a Deployment in the
pool's namespace (``components/kubernetes_gpu_pool.py`` builds it).
"""

from typing import Any

import pulumi

from components.args import MonitoringStackArgs
from components.clouds import DataVolume, IngressRule, MachineSpec, VolumeSpec, machine_cloud
from components.stack_args import resolve
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.constants import GRAFANA_PORT, PROMETHEUS_PORT
from gpu_inference.gpu_vendor import vendor_for
from gpu_inference.render import monitoring_cloud_init, monitoring_targets, nginx_metrics_targets
from gpu_inference.render.grafana import grafana_enabled, grafana_unreachable_note
from gpu_inference.render.grafana_proxy import grafana_behind_lb, grafana_public_url
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:MonitoringStack"


def monitoring_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    cidrs = tuple(stack.config.allowed_cidrs)
    return (
        IngressRule(PROMETHEUS_PORT, "Prometheus UI/API from allowedCidrs", cidrs=cidrs),
        IngressRule(22, "SSH from allowedCidrs", cidrs=cidrs),
        *grafana_ingress(stack),
    )


def grafana_ingress(stack: ResolvedStack) -> tuple[IngressRule, ...]:
    """Grafana's port when the host runs Grafana: from the load balancer only when it serves Grafana over TLS
    (render/grafana_proxy.py), else from allowedCidrs (like Prometheus')."""
    if not grafana_enabled(stack):
        return ()
    if grafana_behind_lb(stack):
        return (IngressRule(GRAFANA_PORT, "Grafana: the load balancer only (it serves /grafana/ over TLS)",
                            peers=("lb",)),)
    return (IngressRule(GRAFANA_PORT, "Grafana from allowedCidrs", cidrs=tuple(stack.config.allowed_cidrs)),)


MONITORING_KEYS = ("network", "node_private_ips", "lb_private_ip", "cluster")


class MonitoringStack(pulumi.ComponentResource):
    """Prometheus with the stack's alert rules, scraping every vLLM node and host."""

    prometheus_url: pulumi.Output[str]
    """Prometheus' UI/API: its static public address on a machine cloud, its in-cluster URL on Kubernetes."""
    grafana_url: pulumi.Output[str | None]
    """Grafana on the monitoring host (machine clouds with monitoring.grafana); None elsewhere."""

    def __init__(self, name: str, args: MonitoringStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, secrets = resolve(args, MONITORING_KEYS)
        mon = stack.config.monitoring
        on_kubernetes = stack.cloud.layout == "kubernetes"
        props: dict[str, Any] = {
            "scrapeIntervalSeconds": mon.scrape_interval_seconds,
            "retention": mon.retention,
            "allowedCidrs": list(stack.config.allowed_cidrs),
        }
        # The TSDB's volume: a block volume beside the host, or a claim of DOKS's block storage on Kubernetes.
        props = {**props, "storageGb": mon.storage_gb}
        if not on_kubernetes:
            props = {"size": stack.monitoring_size, **props}
        super().__init__(TOKEN, name, props, opts)
        self.registrations: tuple[Registration, ...] = ()
        self.grafana_url = pulumi.Output.from_input(None)
        if on_kubernetes:
            from components.kubernetes_gpu_pool import prometheus_deployment

            if "cluster" not in args:
                raise ValueError(f"MonitoringStack {name!r} on provider {stack.config.provider} needs `cluster`")
            self.prometheus_url, self.registrations = prometheus_deployment(self, name, stack, args["cluster"])
            if mon.grafana:
                from components.kubernetes_gpu_pool import dashboard_config_maps

                self.dashboards = dashboard_config_maps(self, stack, args["cluster"])
        else:
            self.prometheus_url = self._host(name, stack, args, secrets.grafana_admin_password)
            if grafana_behind_lb(stack):
                self.grafana_url = pulumi.Output.from_input(grafana_public_url(stack))
            elif grafana_enabled(stack):
                self.grafana_url = pulumi.Output.concat("http://", self.public_ip, f":{GRAFANA_PORT}")
            if note := grafana_unreachable_note(stack):
                pulumi.log.warn(note)  # the offline preview lists it among its notes
        self.register_outputs({"prometheusUrl": self.prometheus_url, "grafanaUrl": self.grafana_url})

    def _host(self, name: str, stack: ResolvedStack, args: MonitoringStackArgs,
              grafana_admin_password: pulumi.Output[str | None]) -> pulumi.Output[str]:
        """A Prometheus host with its TSDB on a block volume, behind a static address."""
        for key in ("network", "node_private_ips", "lb_private_ip"):
            if key not in args:
                raise ValueError(f"MonitoringStack {name!r} on provider {stack.config.provider} needs `{key}`")
        mon = stack.config.monitoring
        cloud = machine_cloud(stack)
        child = pulumi.ResourceOptions(parent=self)

        def render(values: list[Any]) -> str:
            # The same target lists the offline preview renders: vLLM and DCGM on every node,
            # node_exporter on every host including the load balancer.
            # values[3]: Grafana's admin password (plaintext only inside this apply; the Output stays secret).
            targets = monitoring_targets(values[0], values[1], vendor_for(stack).exporter.port)
            return monitoring_cloud_init(stack, *targets, data_devices=values[2],
                                         grafana_admin_password=values[3],
                                         nginx_targets=nginx_metrics_targets(values[1]), lb_address=values[1])

        host_name = naming.prometheus_host(name)
        # The TSDB's volume comes first and owes nothing to the host: a host replaced by a scale-out (its
        # prometheus.yml lists the nodes) gets the same volume back, history included.
        self.volume: DataVolume = cloud.volume(
            naming.data_volume(host_name),
            VolumeSpec(role="monitoring", purpose=naming.PROMETHEUS_VOLUME_PURPOSE, size_gb=mon.storage_gb),
            args["network"],
            stack,
            child,
        )
        self.host = cloud.machine(
            host_name,
            # Like the Nginx host: a static address keeps prometheusUrl across the replacement.
            MachineSpec(
                role="monitoring",
                size=stack.monitoring_size,
                user_data=pulumi.Output.all(args["node_private_ips"], args["lb_private_ip"], self.volume.devices,
                                            grafana_admin_password).apply(render),
                ingress=monitoring_ingress(stack),
                static_ip=True,
                volumes=(self.volume,),
            ),
            args["network"],
            stack,
            child,
        )
        self.registrations = (*self.volume.registrations, *self.host.registrations)
        self.public_ip = self.host.public_ip
        return pulumi.Output.concat("http://", self.public_ip, f":{PROMETHEUS_PORT}")
