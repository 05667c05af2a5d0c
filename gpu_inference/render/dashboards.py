"""Grafana dashboards as code: "Serving" (vLLM and the request path) and "GPU nodes" (DCGM, node_exporter).

Built with Grafana's own ``grafana-foundation-sdk`` (generated from Grafana's schemas, so the JSON model is the
one Grafana loads; chosen over grafanalib, which is community-maintained and hand-mirrors the schema). The
panels are described once as plain data (:class:`PanelSpec`); the same specs give the dashboard JSON,
``docs/dashboards.md`` and the list of queries the data-plane test evaluates on a real Prometheus.

Every query filters on the ``node`` label the scrape config gives each target (``$node``, a multi-value
variable), and reads its data source from the ``datasource`` variable, so the same JSON works on the
monitoring host's Grafana and on a cluster's own Grafana (the Kubernetes ConfigMaps).

Threshold lines come from the stack config values the alert rules use (:func:`alert_thresholds`): a
panel draws the line at exactly the value its alert fires at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from gpu_inference.gpu_vendor import VENDORS, vendor_for
from gpu_inference.render._common import MODEL_CACHE_MOUNTPOINT

if TYPE_CHECKING:
    from gpu_inference.gpu_vendor import GpuVendor
    from gpu_inference.stack import ResolvedStack

# The template variables every query may use; the data-plane test substitutes them (see `concrete_query`).
NODE_VAR = "node"
DATASOURCE_VAR = "datasource"
NODE = f'node=~"${NODE_VAR}"'
RATE = "$__rate_interval"
# Grafana's folder for the provisioned dashboards and the tag they share.
FOLDER = "gpu-inference"
TAG = "gpu-inference"
# Where the monitoring host's provider loads the JSON files from (outside /etc/grafana: Grafana's package
# owns that tree) and the provisioned data source's uid the dashboards pick by default.
DASHBOARDS_DIR = "/var/lib/grafana/dashboards/gpu-inference"
DATASOURCE_UID = "gpu-inference-prometheus"
# The label Grafana's Helm chart sidecar (k8s-sidecar) watches for dashboard ConfigMaps; kube-prometheus-stack
# configures it as `sidecar.dashboards.label: grafana_dashboard`, `labelValue: "1"`.
SIDECAR_LABEL = {"grafana_dashboard": "1"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class ThresholdLine:
    """A dashed line at `value`, the threshold of alert `alert` (same config value)."""

    value: float
    alert: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    threshold: ThresholdLine | None = None
    min: float | None = 0
    max: float | None = None
    stack_series: bool = False


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    file_name: str
    rows: tuple[RowSpec, ...]

    @property
    def panels(self) -> list[PanelSpec]:
        return [p for r in self.rows for p in r.panels]


# ---------------------------------------------------------------------------------------------
# GPU vendor metrics: the names come from gpu_vendor.py, the one source the alert rules read too
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuQueries:
    """PromQL per GPU signal for one vendor's exporter, built from its metric names
    (``gpu_vendor.<VENDOR>.exporter.metrics``). Each yields one series per GPU with the ``node`` label (the
    scrape config adds it) and the vendor's GPU label (``gpu`` for DCGM, ``gpu_id`` for AMD's exporter)."""

    vendor: str
    exporter: str
    gpu_label: str
    utilisation_ratio: str
    memory_used_ratio: str
    memory_used_bytes: str
    temperature_celsius: str
    power_watts: str
    error: str
    error_title: str
    error_description: str
    error_alert: str


def _select(expr: str, metrics: Iterable[str], selector: str) -> str:
    """``expr`` with ``selector`` (``{...}``) after every bare occurrence of the named metrics."""
    for name in sorted(set(metrics), key=len, reverse=True):
        expr = re.sub(rf"(?<![A-Za-z0-9_:]){re.escape(name)}(?![A-Za-z0-9_:{{])", name + selector, expr)
    return expr


def gpu_queries(vendor: GpuVendor) -> GpuQueries:
    """The GPU panels' queries for ``vendor``'s exporter."""
    m = vendor.exporter.metrics
    if m is None:
        raise ValueError(f"GPU vendor {vendor.name} names no exporter metrics")
    sel = "{" + NODE + "}"
    # The alerts' memory ratio (used / total, or used / (used + free)) over the series its promtool tests write.
    memory_metrics = m.memory_series(0, m.memory_total)
    error = f"{m.error_metric}{sel}"
    return GpuQueries(
        vendor=vendor.name,
        exporter=vendor.exporter.container,
        gpu_label=m.gpu_label,
        utilisation_ratio=f"{m.utilisation_percent}{sel} / 100",
        memory_used_ratio=_select(m.memory_ratio, memory_metrics, sel),
        memory_used_bytes=f"{m.memory_used}{sel} * {m.memory_unit_bytes}",
        temperature_celsius=f"{m.temperature}{sel}",
        power_watts=f"{m.power_watts}{sel}",
        error=f"increase({error}[{RATE}])" if m.error_counter else error,
        error_title=m.error_panel_title,
        error_description=m.error_panel_description,
        error_alert=m.error_alert,
    )


# vendor → its exporter's queries: every vendor gpu_vendor.py knows.
GPU_METRICS: dict[str, GpuQueries] = {name: gpu_queries(v) for name, v in VENDORS.items()}


def gpu_metrics(stack: ResolvedStack) -> GpuQueries:
    """The queries of the exporter the stack's GPU nodes run (its GPU's vendor, a catalog fact)."""
    return GPU_METRICS[vendor_for(stack).name]


# ---------------------------------------------------------------------------------------------
# Thresholds: the alert rules' values
# ---------------------------------------------------------------------------------------------


def alert_thresholds(stack: ResolvedStack) -> dict[str, float]:
    """Alert name → the threshold its rule compares with (prometheus.alerts reads the same fields)."""
    mon = stack.config.monitoring
    return {
        "VllmQueueDepthHigh": float(mon.queue_depth_threshold),
        "VllmKvCachePressure": mon.kv_cache_usage_threshold,
        "VllmTtftP95High": mon.ttft_p95_seconds,
        "GpuMemoryNearlyFull": mon.gpu_memory_usage_threshold,
        "GpuTemperatureHigh": mon.gpu_temperature_celsius,
        "DiskFillingUp": mon.disk_free_ratio,
    }


def _line(stack: ResolvedStack, alert: str) -> ThresholdLine:
    return ThresholdLine(alert_thresholds(stack)[alert], alert)


# ---------------------------------------------------------------------------------------------
# The panels
# ---------------------------------------------------------------------------------------------

_VLLM = f'job="vllm",{NODE}'
_NGINX = f'job="nginx",{NODE}'


def _quantiles(metric: str, qs: Sequence[float]) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q:g}, sum by (le, node) (rate({metric}_bucket{{{_VLLM}}}[{RATE}])))",
            f"p{round(q * 100)} {{{{node}}}}",
        )
        for q in qs
    )


def serving_dashboard(stack: ResolvedStack) -> DashboardSpec:
    traffic = RowSpec("Traffic", (
        PanelSpec(
            "Requests per second (Nginx)",
            "Every request the load balancer answered, by HTTP status (from its access log through mtail): "
            "what clients see, refusals at the edge included.",
            "reqps",
            (Query(f"sum by (status) (rate(nginx_http_requests_total{{{_NGINX}}}[{RATE}]))", "{{status}}"),),
        ),
        PanelSpec(
            "Errors per second (Nginx)",
            "4xx and 5xx the load balancer answered: 502/504 when no node could take the request, 401 for a "
            "wrong API key, 413 for a body over clientMaxBodySizeMb.",
            "reqps",
            (Query(f'sum by (status) (rate(nginx_http_requests_total{{{_NGINX},status=~"[45].."}}[{RATE}]))',
                   "{{status}}"),),
        ),
        PanelSpec(
            "Requests per second (vLLM)",
            "Finished requests per node, by why they finished (stop, length, abort).",
            "reqps",
            (Query(f"sum by (node, finished_reason) (rate(vllm:request_success_total{{{_VLLM}}}[{RATE}]))",
                   "{{node}} {{finished_reason}}"),),
        ),
        PanelSpec(
            "HTTP errors per second (vLLM API)",
            "4xx and 5xx answers of vLLM's API server per node (http_requests_total of its FastAPI "
            "instrumentator); Nginx retries a 502/503 on another node before the client sees it.",
            "reqps",
            (Query(f'sum by (node, status) (rate(http_requests_total{{{_VLLM},status=~"[45].."}}[{RATE}]))',
                   "{{node}} {{status}}"),),
        ),
        PanelSpec(
            "Requests running vs waiting",
            "Running: in the batch; waiting: queued for a sequence slot or KV cache. The line is the queue "
            "depth alert (VllmQueueDepthHigh).",
            "short",
            (
                Query(f"sum by (node) (vllm:num_requests_running{{{_VLLM}}})", "running {{node}}"),
                Query(f"sum by (node) (vllm:num_requests_waiting{{{_VLLM}}})", "waiting {{node}}"),
            ),
            threshold=_line(stack, "VllmQueueDepthHigh"),
        ),
    ))
    latency = RowSpec("Latency", (
        PanelSpec(
            "Time to first token",
            "p50/p95/p99 of the time from arrival to the first token (queueing + prefill). The line is the "
            "p95 alert (VllmTtftP95High).",
            "s",
            _quantiles("vllm:time_to_first_token_seconds", (0.5, 0.95, 0.99)),
            threshold=_line(stack, "VllmTtftP95High"),
        ),
        PanelSpec(
            "Inter-token latency",
            "p50/p95 of the gap between streamed tokens (decode speed as a client sees it).",
            "s",
            _quantiles("vllm:inter_token_latency_seconds", (0.5, 0.95)),
        ),
        PanelSpec(
            "End-to-end request latency",
            "p50/p95/p99 of arrival to last token.",
            "s",
            _quantiles("vllm:e2e_request_latency_seconds", (0.5, 0.95, 0.99)),
        ),
    ))
    engine = RowSpec("Engine", (
        PanelSpec(
            "Tokens per second",
            "Prompt (prefill) and generated (decode) tokens per second per node.",
            "short",
            (
                Query(f"sum by (node) (rate(vllm:prompt_tokens_total{{{_VLLM}}}[{RATE}]))", "prompt {{node}}"),
                Query(f"sum by (node) (rate(vllm:generation_tokens_total{{{_VLLM}}}[{RATE}]))",
                      "generation {{node}}"),
            ),
        ),
        PanelSpec(
            "KV cache usage",
            "Share of the KV-cache blocks in use per node; near 1, new requests wait and running ones are "
            "preempted. The line is the KV-cache alert (VllmKvCachePressure).",
            "percentunit",
            (Query(f"max by (node) (vllm:kv_cache_usage_perc{{{_VLLM}}})", "{{node}}"),),
            threshold=_line(stack, "VllmKvCachePressure"),
            max=1,
        ),
        PanelSpec(
            "Preemptions per second",
            "Running requests evicted to free KV cache (recomputed later): sustained preemption means the "
            "node is over its KV capacity.",
            "short",
            (Query(f"sum by (node) (rate(vllm:num_preemptions_total{{{_VLLM}}}[{RATE}]))", "{{node}}"),),
        ),
    ))
    return DashboardSpec(
        uid="gpu-inference-serving",
        title="gpu-inference / Serving",
        description=f"Nginx and vLLM serving {stack.config.model} on stack {stack.name}: traffic, latency, engine "
                    "pressure.",
        file_name="serving.json",
        rows=(traffic, latency, engine),
    )


def _per_gpu(stack: ResolvedStack, signal: str) -> tuple[Query, ...]:
    gpu = gpu_metrics(stack)
    return (Query(getattr(gpu, signal), f"{{{{node}}}} GPU {{{{{gpu.gpu_label}}}}}"),)


_FS = f'{NODE},mountpoint="{MODEL_CACHE_MOUNTPOINT}",fstype!~"tmpfs|overlay|squashfs"'


def gpu_nodes_dashboard(stack: ResolvedStack) -> DashboardSpec:
    gpu = gpu_metrics(stack)
    gpus = RowSpec("GPUs", (
        PanelSpec("GPU utilisation", "Share of time a kernel ran on the GPU.", "percentunit",
                  _per_gpu(stack, "utilisation_ratio"), max=1),
        PanelSpec(
            "GPU framebuffer used",
            "Share of GPU memory in use. vLLM preallocates gpuMemoryUtilization of it at start; the line is "
            "the GPU memory alert (GpuMemoryNearlyFull).",
            "percentunit",
            _per_gpu(stack, "memory_used_ratio"),
            threshold=_line(stack, "GpuMemoryNearlyFull"),
            max=1,
        ),
        PanelSpec("GPU framebuffer used (bytes)", "GPU memory in use.", "bytes",
                  _per_gpu(stack, "memory_used_bytes")),
        PanelSpec("GPU temperature", "The line is the temperature alert (GpuTemperatureHigh).", "celsius",
                  _per_gpu(stack, "temperature_celsius"), threshold=_line(stack, "GpuTemperatureHigh")),
        PanelSpec("GPU power draw", "Board power.", "watt", _per_gpu(stack, "power_watts")),
        PanelSpec(gpu.error_title, gpu.error_description, "none", _per_gpu(stack, "error")),
    ))
    hosts = RowSpec("Hosts", (
        PanelSpec(
            "CPU busy",
            "Share of CPU time not idle, per host (GPU nodes, load balancer, monitoring).",
            "percentunit",
            (Query(f'1 - avg by (node) (rate(node_cpu_seconds_total{{job="node",{NODE},mode="idle"}}[{RATE}]))',
                   "{{node}}"),),
            max=1,
        ),
        PanelSpec(
            "Memory used",
            "Share of RAM not available to new allocations.",
            "percentunit",
            (Query(f'1 - node_memory_MemAvailable_bytes{{job="node",{NODE}}} / '
                   f'node_memory_MemTotal_bytes{{job="node",{NODE}}}', "{{node}}"),),
            max=1,
        ),
        PanelSpec(
            "Model-cache disk free",
            f"Free share of {MODEL_CACHE_MOUNTPOINT} (the model cache). The line is the disk alert (DiskFillingUp).",
            "percentunit",
            (Query(f"node_filesystem_avail_bytes{{{_FS}}} / node_filesystem_size_bytes{{{_FS}}}",
                   "{{node}} {{mountpoint}}"),),
            threshold=_line(stack, "DiskFillingUp"),
            max=1,
        ),
    ))
    return DashboardSpec(
        uid="gpu-inference-gpu-nodes",
        title="gpu-inference / GPU nodes",
        description=f"GPU health ({gpu.exporter}) and host "
                    f"CPU, memory and disk of stack {stack.name}.",
        file_name="gpu-nodes.json",
        rows=(gpus, hosts),
    )


def dashboards(stack: ResolvedStack) -> tuple[DashboardSpec, ...]:
    return (serving_dashboard(stack), gpu_nodes_dashboard(stack))


# ---------------------------------------------------------------------------------------------
# Grafana JSON through the SDK
# ---------------------------------------------------------------------------------------------

_DS = common.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VAR}}}")
_PANEL_HEIGHT = 8
_PANEL_WIDTH = 8  # three panels a row on Grafana's 24-column grid


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_DS)
        .unit(spec.unit)
        .height(_PANEL_HEIGHT)
        .span(_PANEL_WIDTH)
        .fill_opacity(10)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    )
    if spec.min is not None:
        panel = panel.min(spec.min)
    if spec.max is not None:
        panel = panel.max(spec.max)
    for ref, q in zip("ABCDEFGH", spec.queries, strict=False):
        panel = panel.with_target(
            prometheus.Dataquery().expr(q.expr).legend_format(q.legend).ref_id(ref).range()
            .datasource(_DS)
        )
    if spec.threshold is not None:
        # Grafana's first step has no value (-Infinity): below the line is "ok", from it on red.
        panel = (
            panel.thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
                model.Threshold(value=None, color="green"),
                model.Threshold(value=spec.threshold.value, color="red"),
            ]))
            .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        )
    return panel


def _variables(builder: dash.Dashboard) -> dash.Dashboard:
    datasource = (
        dash.DatasourceVariable(DATASOURCE_VAR).label("Data source").type("prometheus")
        .current(model.VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID))
    )
    node = (
        dash.QueryVariable(NODE_VAR).label("Node").datasource(_DS)
        .query({"query": "label_values(up, node)", "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .definition("label_values(up, node)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    return builder.with_variable(datasource).with_variable(node)


def dashboard_model(spec: DashboardSpec) -> dict[str, object]:
    builder = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .readonly()
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
    builder = _variables(builder)
    # Stable, unique panel ids (links to a panel use them; Grafana would otherwise number them on load).
    next_id = 1
    for row in spec.rows:
        builder = builder.with_row(dash.Row(row.title).id(next_id))
        next_id += 1
        for p in row.panels:
            builder = builder.with_panel(_panel(p, next_id))
            next_id += 1
    encoded: dict[str, object] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def dashboard_json(spec: DashboardSpec) -> str:
    return json.dumps(dashboard_model(spec), indent=2, sort_keys=True) + "\n"


def dashboard_files(stack: ResolvedStack) -> dict[str, str]:
    """File name → dashboard JSON."""
    return {spec.file_name: dashboard_json(spec) for spec in dashboards(stack)}


def panel_queries(stack: ResolvedStack) -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, query) for every query of every panel."""
    return [(d.title, p.title, q.expr) for d in dashboards(stack) for p in d.panels for q in p.queries]


def concrete_query(expr: str, rate_interval: str, node_regex: str = ".+") -> str:
    """A panel query as Grafana sends it: `$node` as the All regex, `$__rate_interval` as a duration."""
    return expr.replace(f"${NODE_VAR}", node_regex).replace(RATE, rate_interval)


# ---------------------------------------------------------------------------------------------
# docs/dashboards.md
# ---------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def dashboards_markdown(stack: ResolvedStack) -> str:
    """docs/dashboards.md: every panel with its queries (from the same specs as the JSON)."""
    lines = [
        "# Dashboards",
        "",
        "<!-- Generated by `.venv/bin/python -m scripts.update_dashboards_doc` from gpu_inference/render/dashboards.py;"
        " tests/test_dashboards.py fails when this file drifts. -->",
        "",
        "Grafana on the monitoring host loads these from files (provisioned, read-only); on Kubernetes they are "
        "ConfigMaps labelled `grafana_dashboard: \"1\"` for the cluster's Grafana sidecar. Every query filters on "
        f"the `${NODE_VAR}` variable (the scrape config's `node` label; All by default) and uses "
        f"`{RATE}`. Threshold lines are the alert rules' values from `gpu-inference:monitoring` "
        f"(shown here with the defaults, stack `{stack.name}`).",
        "",
        "## Where to open them",
        "",
        "- **Machine clouds:** the monitoring host runs Grafana (pinned `gpu-inference:monitoring.grafanaVersion`, from "
        "Grafana's apt repository) at the stack output `grafanaUrl`. Log in as `admin` with "
        "`gpu-inference:grafanaAdminPassword` (a Pulumi secret: "
        "`pulumi config set --secret gpu-inference:grafanaAdminPassword ...`); when it is not set, the host "
        "generated one at first boot: `sudo cat /etc/grafana/gpu-inference/admin-password` on the host. Anonymous "
        "access and sign-up are off; the dashboards are provisioned read-only into the `gpu-inference` folder, "
        "with the local Prometheus as the default data source.",
        "- **With `loadBalancer.tlsDomain`:** `grafanaUrl` is `https://<domain>/grafana/`: the load balancer's "
        "nginx, which holds the stack's certificate, serves it on 443 to `allowedCidrs` only (403 for anyone else) "
        "and proxies it to Grafana on the monitoring host, whose port 3000 then admits the load balancer alone. "
        "The monitoring host registers its address with the load balancer a minute after boot and every 5 minutes "
        "(`gpu-inference-grafana-register.timer` → `gpu-inference-grafana-registrar.service` on the load balancer, "
        "port 9101, monitoring host only); until then the page answers 503 \"not registered yet\". Why a "
        "registration: the monitoring host is created after the load balancer (Prometheus scrapes it) and "
        "not every cloud can reserve a machine's private address in advance (`gpu_inference/render/grafana_proxy.py`).",
        "- **Without a domain:** `grafanaUrl` is `http://<monitoring address>:3000`, reachable from `allowedCidrs` "
        "only, plain HTTP: the login crosses the network unencrypted. From a network you do not trust, open it "
        "through SSH instead: `ssh -L 3000:localhost:3000 root@<monitoring address>`, then `http://localhost:3000`.",
        "- **Kubernetes:** no Grafana is installed; each dashboard is a ConfigMap labelled "
        "`grafana_dashboard: \"1\"` in the stack's namespace, which the Grafana sidecar of kube-prometheus-stack "
        "(or the Grafana Helm chart with `sidecar.dashboards.enabled`) loads. Pick the Prometheus that scrapes "
        "the vLLM pods in the `Data source` variable: the stack's NetworkPolicy admits only its own Nginx and "
        "Prometheus pods to vLLM's port, so add that Prometheus (the stack output `prometheusUrl`, in-cluster) as "
        "a data source rather than a cluster-wide one scraping the pods. The GPU nodes dashboard stays empty there unless that "
        "Prometheus scrapes DCGM and node_exporter with a `node` label: this stack runs no exporters on nodes it "
        "does not own; so do the Nginx panels (the Nginx Deployment runs no mtail).",
        "- `gpu-inference:monitoring.grafana: false` turns both off.",
        "",
        "GPU panels query the exporter of the stack's GPU vendor, with the metric names the alert rules use "
        "(`gpu_inference/gpu_vendor.py`, `GpuMetrics`): " + ", ".join(
            f"{m.vendor}: {m.exporter}" for m in GPU_METRICS.values()) + f". The tables show stack "
        f"`{stack.name}` ({gpu_metrics(stack).vendor}); [GPU queries per vendor](#gpu-queries-per-vendor) lists "
        "every vendor's.",
        "",
    ]
    for d in dashboards(stack):
        lines += [f"## {d.title}", "", d.description, "", f"`{d.file_name}`, uid `{d.uid}`.", ""]
        for row in d.rows:
            lines += [f"### {row.title}", "", "| panel | unit | query | legend | threshold line |",
                      "|---|---|---|---|---|"]
            for p in row.panels:
                for i, q in enumerate(p.queries):
                    threshold = (f"{p.threshold.value:g} ({p.threshold.alert})" if p.threshold and i == 0 else "")
                    title = f"**{p.title}**" if i == 0 else ""
                    unit = p.unit if i == 0 else ""
                    lines.append(f"| {_md_cell(title)} | {unit} | `{_md_cell(q.expr)}` | "
                                 f"`{_md_cell(q.legend)}` | {threshold} |")
            lines.append("")
    lines += _vendor_table(stack)
    return "\n".join(lines)


def _vendor_table(stack: ResolvedStack) -> list[str]:
    """The GPU row's queries for every vendor: an AMD (ROCm) stack's dashboard reads its exporter's names."""
    vendors = list(GPU_METRICS.values())
    panels = [p for r in gpu_nodes_dashboard(stack).rows if r.title == "GPUs" for p in r.panels]
    signals = ["utilisation_ratio", "memory_used_ratio", "memory_used_bytes", "temperature_celsius", "power_watts",
               "error"]
    lines = ["## GPU queries per vendor", "",
             "| panel | " + " | ".join(f"{v.vendor} ({v.exporter})" for v in vendors) + " |",
             "|---|" + "---|" * len(vendors)]
    for panel, signal in zip(panels, signals, strict=True):
        title = panel.title if signal != "error" else " / ".join(v.error_title for v in vendors)
        lines.append(f"| {_md_cell(title)} | " + " | ".join(f"`{_md_cell(getattr(v, signal))}`" for v in vendors) + " |")
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------
# Provisioning files (the monitoring host's Grafana)
# ---------------------------------------------------------------------------------------------


def datasource_provisioning(prometheus_url: str) -> dict[str, object]:
    """Grafana's data source provisioning document: the local Prometheus, the default, not editable."""
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "type": "prometheus",
            "uid": DATASOURCE_UID,
            "access": "proxy",
            "url": prometheus_url,
            "isDefault": True,
            "editable": False,
            "jsonData": {"httpMethod": "POST"},
        }],
    }


def dashboard_provisioning(path: str = DASHBOARDS_DIR) -> dict[str, object]:
    """Grafana's dashboard provider document: load every JSON file under `path` into one folder."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "gpu-inference",
            "orgId": 1,
            "folder": FOLDER,
            "type": "file",
            "disableDeletion": True,
            # Rendered from code: edits in the UI are not kept, so do not offer them.
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": path, "foldersFromFilesStructure": False},
        }],
    }


def validate_dashboard(model_json: Mapping[str, object]) -> model.Dashboard:
    """Parse a dashboard JSON model back through the SDK's types (raises on a malformed model)."""
    return model.Dashboard.from_json(dict(model_json))
