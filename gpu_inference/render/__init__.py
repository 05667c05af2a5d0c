"""Renderers: every file a machine of the stack gets, as pure functions of a ResolvedStack.

The Pulumi components call these inside ``Output.apply`` (where secrets are plaintext); the offline
preview calls :func:`render_all` with placeholders. Each output is checked by its real validator in
tests/test_validators.py and has a golden copy under tests/golden/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_inference.constants import DCGM_EXPORTER_PORT, MTAIL_PORT, NODE_EXPORTER_PORT, VLLM_PORT
from gpu_inference.gpu_vendor import vendor_for
from gpu_inference.render._common import node_name
from gpu_inference.render.acme import cert_unit, deploy_hook_script, obtain_script
from gpu_inference.render.cloud_init import (
    gpu_exporter_unit_for,
    gpu_node_bootstrap,
    gpu_node_cloud_init,
    lb_bootstrap,
    load_balancer_cloud_init,
    monitoring_bootstrap,
    monitoring_cloud_init,
    node_exporter_unit,
    prometheus_data_dropin,
)
from gpu_inference.render.dashboards import dashboard_files
from gpu_inference.render.healthcheck import healthcheck_script, healthcheck_units
from gpu_inference.render.lb_healthcheck import agent_script, healthcheck_unit, settings, settings_json, upstream_include
from gpu_inference.render.nginx import NginxPaths, nginx_conf
from gpu_inference.render.nginx_metrics import MTAIL_UNIT, mtail_program, mtail_unit
from gpu_inference.render.prometheus import alert_rule_tests, alert_rules, alerts, prometheus_config
from gpu_inference.render.spot import has_spot_watcher, spot_watcher_script, spot_watcher_unit
from gpu_inference.render.vllm import vllm_args, vllm_env_file, vllm_unit

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

__all__ = [
    "NginxPaths",
    "alert_rule_tests",
    "alert_rules",
    "alerts",
    "gpu_exporter_unit_for",
    "gpu_node_cloud_init",
    "healthcheck_script",
    "healthcheck_units",
    "load_balancer_cloud_init",
    "monitoring_cloud_init",
    "monitoring_targets",
    "nginx_conf",
    "nginx_metrics_targets",
    "node_exporter_unit",
    "prometheus_config",
    "render_all",
    "render_stack",
    "vllm_args",
    "vllm_env_file",
    "vllm_unit",
]


def monitoring_targets(
    node_addresses: list[str], lb_address: str, gpu_exporter_port: int = DCGM_EXPORTER_PORT
) -> tuple[list[str], dict[str, str], list[str]]:
    """(vLLM, node_exporter, GPU exporter) scrape targets; node_exporter runs on every host, the LB included.
    ``gpu_exporter_port``: the port of the GPU vendor's exporter (``gpu_vendor.vendor_for(stack).exporter``)."""
    vllm = [f"{a}:{VLLM_PORT}" for a in node_addresses]
    dcgm = [f"{a}:{gpu_exporter_port}" for a in node_addresses]
    nodes = {node_name(i): f"{a}:{NODE_EXPORTER_PORT}" for i, a in enumerate(node_addresses)}
    nodes["loadbalancer"] = f"{lb_address}:{NODE_EXPORTER_PORT}"
    nodes["monitoring"] = f"localhost:{NODE_EXPORTER_PORT}"
    return vllm, nodes, dcgm


def nginx_metrics_targets(lb_address: str) -> dict[str, str]:
    """The load balancer's mtail (Nginx requests by status), named like its node_exporter target."""
    return {"loadbalancer": f"{lb_address}:{MTAIL_PORT}"}


def render_all(
    stack: ResolvedStack,
    node_addresses: list[str],
    lb_address: str,
    api_key: str | None,
    hf_token: str | None,
    monitoring_volume: str | None = None,
    grafana_admin_password: str | None = None,
) -> dict[str, str]:
    """Relative path → content of every rendered file (what the offline preview writes).

    ``monitoring_volume`` is what the Prometheus volume's device is found by on its cloud (its name or its
    id: ``Cloud.volume_ref``); None renders a placeholder (golden files).
    """
    files: dict[str, str] = {}
    hc_service, hc_timer = healthcheck_units(stack)
    exporter = vendor_for(stack).exporter
    exporter_unit, exporter_text = gpu_exporter_unit_for(stack)
    for i, _address in enumerate(node_addresses):
        base = f"nodes/{node_name(i)}"
        files[f"{base}/cloud-init.yaml"] = gpu_node_cloud_init(stack, i, api_key, hf_token)
        files[f"{base}/vllm.service"] = vllm_unit(stack)
        files[f"{base}/vllm-healthcheck.sh"] = healthcheck_script(stack)
        files[f"{base}/vllm-healthcheck.service"] = hc_service
        files[f"{base}/vllm-healthcheck.timer"] = hc_timer
        files[f"{base}/{exporter_unit}"] = exporter_text
        for path, content in exporter.files.items():
            files[f"{base}/{exporter.container}-{path.rsplit('/', 1)[-1]}"] = content
        files[f"{base}/node-exporter.service"] = node_exporter_unit()
        files[f"{base}/bootstrap.sh"] = gpu_node_bootstrap(stack)
        if has_spot_watcher(stack, i):
            files[f"{base}/spot-interruption-watcher.sh"] = spot_watcher_script(stack)
            files[f"{base}/spot-interruption-watcher.service"] = spot_watcher_unit()
    backends = [f"{a}:{VLLM_PORT}" for a in node_addresses]
    files["loadbalancer/nginx.conf"] = nginx_conf(stack, backends, upstream_include=True)
    checks = settings(stack, backends)
    files["loadbalancer/gpu-inference-upstream.conf"] = upstream_include(checks)
    files["loadbalancer/lb-healthcheck.py"] = agent_script()
    files["loadbalancer/lb-healthcheck.json"] = settings_json(checks)
    files["loadbalancer/gpu-inference-lb-healthcheck.service"] = healthcheck_unit()
    files["loadbalancer/cloud-init.yaml"] = load_balancer_cloud_init(stack, backends, api_key)
    files["loadbalancer/bootstrap.sh"] = lb_bootstrap(stack)
    files["loadbalancer/nginx.mtail"] = mtail_program()
    files[f"loadbalancer/{MTAIL_UNIT}"] = mtail_unit()
    if stack.config.load_balancer.tls_domain:
        files["loadbalancer/cert-obtain.sh"] = obtain_script(stack)
        files["loadbalancer/cert-deploy.sh"] = deploy_hook_script(stack)
        files["loadbalancer/gpu-inference-cert.service"] = cert_unit()
    files.update(_grafana_proxy_files(stack, lb_address))
    if stack.config.monitoring.enabled:
        vllm, nodes, dcgm = monitoring_targets(node_addresses, lb_address, exporter.port)
        nginx = nginx_metrics_targets(lb_address)
        files["monitoring/prometheus.yml"] = prometheus_config(stack, vllm, nodes, dcgm, nginx_targets=nginx)
        files["monitoring/rules/gpu-inference.yml"] = alert_rules(stack)
        files["monitoring/rules/gpu-inference.test.yml"] = alert_rule_tests(stack)
        cloud = stack.cloud
        devices = cloud.volume_devices(monitoring_volume or cloud.placeholder_volume(stack.name))
        files["monitoring/cloud-init.yaml"] = monitoring_cloud_init(stack, vllm, nodes, dcgm, devices,
                                                                    grafana_admin_password, nginx, lb_address)
        files["monitoring/bootstrap.sh"] = monitoring_bootstrap(stack, devices)
        files["monitoring/prometheus-data-volume.conf"] = prometheus_data_dropin()
        files.update(_dashboard_files(stack))
        files.update(_grafana_files(stack))
    return files


def render_stack(
    stack: ResolvedStack,
    node_addresses: list[str],
    lb_address: str,
    api_key: str | None,
    hf_token: str | None,
    monitoring_volume: str | None = None,
    grafana_admin_password: str | None = None,
) -> dict[str, str]:
    """Every file the stack's layout puts on its machines (or, on Kubernetes, mounts into its pods)."""
    if stack.cloud.layout == "kubernetes":
        # Pods, not machines: no cloud-init or units, only the files the ConfigMaps carry.
        from gpu_inference.render.kubernetes import render_kubernetes

        files = render_kubernetes(stack)
        if stack.config.monitoring.enabled and stack.config.monitoring.grafana:
            # The dashboards the ConfigMaps carry for the cluster's Grafana sidecar.
            files.update(_dashboard_files(stack))
        return files
    return render_all(stack, node_addresses, lb_address, api_key, hf_token, monitoring_volume, grafana_admin_password)


def _dashboard_files(stack: ResolvedStack) -> dict[str, str]:
    """The Grafana dashboards (JSON) the monitoring host provisions, one file each."""
    return {f"monitoring/dashboards/{name}": text for name, text in dashboard_files(stack).items()}


def _grafana_proxy_files(stack: ResolvedStack, lb_address: str) -> dict[str, str]:
    """Grafana behind the load balancer's TLS: the registrar on the load balancer, the registering units on
    the monitoring host (all also inside the two cloud-inits)."""
    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render.nginx import FALLBACK_LISTEN, NginxPaths

    if not gp.grafana_behind_lb(stack):
        return {}
    service, timer = gp.register_units(lb_address)
    return {
        "loadbalancer/gpu-inference-grafana.conf": gp.placeholder_include(FALLBACK_LISTEN),
        "loadbalancer/grafana-registrar.py": gp.registrar_script(),
        "loadbalancer/grafana-registrar.json": gp.registrar_settings_json(gp.registrar_settings(NginxPaths())),
        f"loadbalancer/{gp.REGISTRAR_UNIT}": gp.registrar_unit(),
        f"monitoring/{gp.REGISTER_SERVICE}": service,
        f"monitoring/{gp.REGISTER_TIMER}": timer,
    }


def _grafana_files(stack: ResolvedStack) -> dict[str, str]:
    """Grafana's provisioning files on the monitoring host (also inside its cloud-init), for review and tests."""
    from gpu_inference.render.grafana import (
        grafana_bootstrap,
        grafana_dashboard_provider_file,
        grafana_datasource_file,
        grafana_dropin,
        grafana_enabled,
    )

    if not grafana_enabled(stack):
        return {}
    return {
        "monitoring/grafana/datasources/gpu-inference.yaml": grafana_datasource_file(),
        "monitoring/grafana/dashboards/gpu-inference.yaml": grafana_dashboard_provider_file(),
        "monitoring/grafana/grafana-server.service.d/gpu-inference.conf": grafana_dropin(stack),
        "monitoring/grafana/bootstrap.sh": grafana_bootstrap(stack, stack.config.grafana_admin_password is not None),
    }
