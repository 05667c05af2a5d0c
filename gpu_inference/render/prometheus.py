"""Prometheus: scrape config, alert rules, and the promtool unit tests of those rules."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpu_inference.gpu_vendor import ERROR_WINDOW, GpuMetrics, vendor_for, vllm_image
from gpu_inference.render._common import MODEL_CACHE_MOUNTPOINT, dump_yaml, node_name
from gpu_inference.render.healthcheck import grace_seconds

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

RULES_PATH = "/etc/prometheus/rules/gpu-inference.yml"
RUNBOOK_BASE = "docs/runbooks.md"
GROUP_NAME = "gpu-inference"

# Fixed alert timings (not in the stack config), each with its reason.
# vLLM exposes /metrics only once the engine is up; a missing metric for longer than a model load means
# the pinned image renamed it (alerts built on it would be silently blind) or every node is down.
METRICS_ABSENT_FOR = "15m"
# GPU memory and temperature: a few scrapes above the line, not a single spike.
GPU_MEMORY_FOR = "5m"
GPU_TEMPERATURE_FOR = "5m"
# Any XID is worth a look at once (61/62/79 mean the GPU fell off the bus or the driver crashed).
XID_FOR = "0m"
# The GPU hardware-error alert (XIDs on NVIDIA, uncorrectable ECC on AMD) looks back this far and resolves
# this long after the error (gpu_vendor.py says why per vendor).
XID_WINDOW = ERROR_WINDOW
DISK_FOR = "5m"
# predict_linear over 6 h, looking 24 h ahead; it must hold for a while so that one download burst
# (a model being pulled into the cache) does not page anyone.
DISK_PREDICT_RANGE = "6h"
DISK_PREDICT_HORIZON_SECONDS = 24 * 3600
DISK_PREDICT_FOR = "30m"
TTFT_WINDOW = "5m"
# Scale advice on fixed machines (issue 16): a queue for longer than a burst, and longer than a new node takes
# to boot and load (so acting on it is worth it); idle for an hour before a node is worth removing.
SCALE_OUT_FOR = "15m"
SCALE_IN_FOR = "1h"
# KV-cache usage below which every node is idle enough that one fewer would do.
IDLE_KV_USAGE = 0.2
MAX_NODE_COUNT = 64  # StackConfig.node_count's limit

_NODE_FS = f'mountpoint="{MODEL_CACHE_MOUNTPOINT}",fstype!~"tmpfs|overlay|squashfs"'


# ---------------------------------------------------------------------------------------------
# The loading window: when a down vLLM target is a model load, not an outage
# ---------------------------------------------------------------------------------------------
#
# vLLM serves /metrics only once the engine is up, so `up{job="vllm"}` is 0 for the whole load (minutes for a
# 70B model: download, weights, CUDA graphs), and on Kubernetes a pod that is not ready has no DNS record at
# all. Neither TargetDown nor VllmMetricsAbsent may page for that. The health check already knows how long a
# load of this stack may take (healthcheck.grace_seconds: 15 min + 12 s per GB of weights, the same window in
# which it leaves vLLM alone), so the rules use that window G and call a down vLLM target *loading* when:
#
# - first start: it has not answered once in the last G, and Prometheus has known it for less than G
#   (no sample G ago: `unless … (up offset G)`): a deploy, a scale-out, or a fresh Prometheus. This also
#   covers the GPU node's exporters, which start after the images are pulled on first boot;
# - restart: it answered within the last G (`max_over_time(up[G]) > 0`) and its machine is alive — the same
#   node's node_exporter answers now. A crash, an OOM at load or a health-check restart reloads the model
#   while the machine stays up. A machine that died takes node_exporter with it, so a node dead after it
#   was serving is not loading and TargetDown fires after its usual `for`.
#   On Kubernetes no node_exporter runs (see components/kubernetes_gpu_pool.py), so a restart is any down
#   pod that answered within G: kubelet restarts it like systemd does, and a pod that never comes back
#   fires once G has passed.
#
# Past G it is no longer a load: a server stuck loading, or one that crash-loops, fires as before.
# Why not `for: G` on the vLLM target instead: a node that was serving and died would then page only after
# the whole window (up to an hour for a large model), and the machine signal is what tells the two apart.


def loading_window(stack: ResolvedStack) -> str:
    """G: how long a (re)start of this stack's vLLM may stay unreachable, as a Prometheus duration."""
    return f"{math.ceil(grace_seconds(stack) / 60)}m"


def _first_start(window: str, job: str | None = None) -> str:
    """GPU-node targets (those sharing a node label with a vLLM target) not yet up since Prometheus met them."""
    sel = f'{{job="{job}"}}' if job else ""
    return (
        f"(max_over_time(up{sel}[{window}]) == 0 unless on (job, instance, node) (up{sel} offset {window})) "
        'and on (node) group by (node) (up{job="vllm"})'
    )


def _restart(window: str, machine_signal: bool) -> str:
    """vLLM targets down now that answered within the window, on a machine that is still alive."""
    expr = f'(up{{job="vllm"}} == 0 and on (job, instance, node) max_over_time(up{{job="vllm"}}[{window}]) > 0)'
    if machine_signal:
        expr = f'({expr} and on (node) up{{job="node"}} == 1)'
    return expr


def _machine_signal(stack: ResolvedStack) -> bool:
    # Machine layouts run node_exporter beside vLLM on every GPU node; the Kubernetes layout scrapes none.
    return stack.cloud.layout == "machines"


def target_down_expr(stack: ResolvedStack) -> str:
    window = loading_window(stack)
    return (
        f"up == 0 unless on (job, instance, node) (({_first_start(window)}) or "
        f"{_restart(window, _machine_signal(stack))})"
    )


def metrics_absent_expr(stack: ResolvedStack) -> str:
    window = loading_window(stack)
    return (
        'absent(vllm:num_requests_running{job="vllm"}) unless on () '
        f'(({_first_start(window, "vllm")}) or {_restart(window, _machine_signal(stack))})'
    )


def duration_seconds(text: str) -> float:
    """A Prometheus duration (2m, 30s, 1h, 500ms) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if not match:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return int(match.group(1)) * units[match.group(2)]


# ---------------------------------------------------------------------------------------------
# Scrape config
# ---------------------------------------------------------------------------------------------


def _named(targets: Sequence[str] | Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(targets, Mapping):
        return list(targets.items())
    return [(node_name(i), t) for i, t in enumerate(targets)]


def _static(targets: Sequence[str] | Mapping[str, str]) -> list[dict[str, Any]]:
    # One static_config per target so each carries its node label (the node's name, not its address).
    return [{"targets": [target], "labels": {"node": name}} for name, target in _named(targets)]


def prometheus_config(
    stack: ResolvedStack,
    vllm_targets: Sequence[str] | Mapping[str, str],
    node_targets: Sequence[str] | Mapping[str, str],
    dcgm_targets: Sequence[str] | Mapping[str, str],
    rule_files: Sequence[str] = (RULES_PATH,),
    vllm_discovery: Mapping[str, Any] | None = None,
    nginx_targets: Mapping[str, str] | None = None,
) -> str:
    """prometheus.yml. Targets are host:port; a list is named node-0, node-1, …; a mapping gives names.
    ``vllm_discovery`` (service-discovery keys of the vllm job) replaces its static targets when the
    replicas come and go (an autoscaled pool).
    ``nginx_targets``: the load balancer's mtail (Nginx requests by status, render/nginx_metrics.py), if any.
    """
    mon = stack.config.monitoring
    interval = f"{mon.scrape_interval_seconds}s"
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            # Scrapes must finish within the interval; vLLM's /metrics is fast, 10 s at most.
            "scrape_timeout": f"{min(mon.scrape_interval_seconds, 10)}s",
            "external_labels": {"stack": stack.name},
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": "vllm",
                # vLLM checks the API key only on /v1/*; /metrics is open, so no bearer token is needed
                # (and none is stored here). The node firewall limits port 8000 to the LB and this host.
                "metrics_path": "/metrics",
                **(dict(vllm_discovery) if vllm_discovery is not None else {"static_configs": _static(vllm_targets)}),
            },
            {"job_name": "node", "static_configs": _static(node_targets)},
            # The GPU vendor's exporter (job dcgm on NVIDIA, amd-metrics on AMD).
            {"job_name": _gpu_metrics(stack).job, "static_configs": _static(dcgm_targets)},
            *([{"job_name": "nginx", "static_configs": _static(nginx_targets)}] if nginx_targets else []),
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": ["localhost:9090"], "labels": {"node": "monitoring"}}],
            },
        ],
    }
    return dump_yaml(doc, f"# Rendered by gpu-inference for stack {stack.name}; do not edit on the machine.\n")


# ---------------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE}#{self.name.lower()}"

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
        }


def _num(value: float) -> str:
    """A threshold as PromQL and humans write it (20, 0.9, 2.5)."""
    return f"{value:g}"


def alerts(stack: ResolvedStack) -> list[Alert]:
    """Every alert of the stack: the shared ones, and scale advice where nothing scales by itself."""
    found = _health_alerts(stack)
    if stack.cloud.layout == "machines":
        from gpu_inference.planner import node_capacity_requests

        found += scale_alerts(stack, node_capacity_requests(stack))
    return found


def _health_alerts(stack: ResolvedStack) -> list[Alert]:
    mon = stack.config.monitoring
    by = "job, instance, node, model_name"
    return [
        Alert(
            "VllmQueueDepthHigh",
            f"sum by ({by}) (vllm:num_requests_waiting) > {mon.queue_depth_threshold}",
            mon.queue_depth_for,
            "warning",
            "vLLM request queue is backing up on {{ $labels.node }}",
            f"{{{{ $value }}}} requests are waiting on {{{{ $labels.node }}}} ({{{{ $labels.instance }}}}), "
            f"above {mon.queue_depth_threshold} for {mon.queue_depth_for}: the node is saturated.",
        ),
        Alert(
            "VllmKvCachePressure",
            f"max by ({by}) (vllm:kv_cache_usage_perc) > {_num(mon.kv_cache_usage_threshold)}",
            mon.kv_cache_for,
            "warning",
            "vLLM KV cache nearly full on {{ $labels.node }}",
            "KV-cache usage is {{ $value | humanizePercentage }} on {{ $labels.node }} ({{ $labels.instance }}), "
            f"above {mon.kv_cache_usage_threshold:.0%} for {mon.kv_cache_for}; requests will be preempted.",
        ),
        Alert(
            "VllmTtftP95High",
            f"histogram_quantile(0.95, sum by (le, job, instance, node) "
            f"(rate(vllm:time_to_first_token_seconds_bucket[{TTFT_WINDOW}]))) > {_num(mon.ttft_p95_seconds)}",
            mon.ttft_for,
            "warning",
            "p95 time to first token is high on {{ $labels.node }}",
            "p95 time to first token over 5m is {{ $value | humanizeDuration }} on {{ $labels.node }} "
            f"({{{{ $labels.instance }}}}), above {_num(mon.ttft_p95_seconds)}s for {mon.ttft_for}.",
        ),
        Alert(
            "TargetDown",
            # Not while a vLLM target (or a GPU node's exporter on first boot) is inside its loading window.
            target_down_expr(stack),
            mon.target_down_for,
            "critical",
            "{{ $labels.job }} target on {{ $labels.node }} is down",
            "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }} ({{ $labels.node }}) "
            f"for {mon.target_down_for}.",
        ),
        Alert(
            "VllmMetricsAbsent",
            metrics_absent_expr(stack),
            METRICS_ABSENT_FOR,
            "critical",
            "No vLLM metrics at all",
            f"No vLLM target has reported vllm:num_requests_running for {METRICS_ABSENT_FOR}: every node is "
            f"down, or the pinned image ({vllm_image(stack)}) renamed the metrics the alerts rely on.",
        ),
        *_gpu_alerts(stack),
        Alert(
            "DiskFillingUp",
            f"node_filesystem_avail_bytes{{{_NODE_FS}}} / node_filesystem_size_bytes{{{_NODE_FS}}} "
            f"< {_num(mon.disk_free_ratio)}",
            DISK_FOR,
            "warning",
            "Model-cache disk almost full on {{ $labels.node }}",
            "Only {{ $value | humanizePercentage }} of {{ $labels.mountpoint }} is free on {{ $labels.node }} "
            f"(threshold {mon.disk_free_ratio:.0%}); model downloads and logs will fail.",
        ),
        Alert(
            "DiskFillingUpPredicted",
            f"predict_linear(node_filesystem_avail_bytes{{{_NODE_FS}}}[{DISK_PREDICT_RANGE}], "
            f"{DISK_PREDICT_HORIZON_SECONDS}) < 0",
            DISK_PREDICT_FOR,
            "warning",
            "Model-cache disk on {{ $labels.node }} fills up within 24h",
            "At the rate of the last 6h, {{ $labels.mountpoint }} on {{ $labels.node }} runs out of space "
            "within 24 hours.",
        ),
    ]


def _gpu_alerts(stack: ResolvedStack) -> list[Alert]:
    """Memory, temperature and hardware errors of each GPU, on the metric names of the vendor's exporter."""
    mon = stack.config.monitoring
    m = _gpu_metrics(stack)
    gpu = f"{{{{ $labels.{m.gpu_label} }}}}"
    return [
        Alert(
            "GpuMemoryNearlyFull",
            f"{m.memory_ratio} > {_num(mon.gpu_memory_usage_threshold)}",
            GPU_MEMORY_FOR,
            "warning",
            f"GPU {gpu} memory nearly full on {{{{ $labels.node }}}}",
            f"GPU {gpu} on {{{{ $labels.node }}}} uses {{{{ $value | humanizePercentage }}}} of its memory "
            f"(threshold {mon.gpu_memory_usage_threshold:.0%}); vLLM preallocates "
            f"{stack.config.gpu_memory_utilization:.0%}, so something else is holding memory.",
        ),
        Alert(
            "GpuTemperatureHigh",
            f"{m.temperature} > {_num(mon.gpu_temperature_celsius)}",
            GPU_TEMPERATURE_FOR,
            "warning",
            f"GPU {gpu} running hot on {{{{ $labels.node }}}}",
            f"GPU {gpu} on {{{{ $labels.node }}}} is at {{{{ $value }}}}°C{m.temperature_what}, "
            f"above {_num(mon.gpu_temperature_celsius)}°C for {GPU_TEMPERATURE_FOR}; it will throttle.",
        ),
        Alert(m.error_alert, m.error_expr, XID_FOR, "critical", m.error_summary, m.error_description),
    ]


def _gpu_metrics(stack: ResolvedStack) -> GpuMetrics:
    metrics = vendor_for(stack).exporter.metrics
    assert metrics is not None, "every vendor's exporter names its metrics"
    return metrics


def _sum(metric: str) -> str:
    return f'sum({metric}{{job="vllm"}})'


def scale_alerts(stack: ResolvedStack, capacity: int | None) -> list[Alert]:
    """ScaleOut / ScaleIn: advice to change ``nodeCount`` on a fixed-machine stack, whose value is the
    suggested count when the planner knows one node's capacity (``capacity`` requests at once), else one more
    or one fewer node. Advisory (severity info): nothing scales by itself on droplets or instances."""
    n = stack.config.node_count
    key = "gpu-inference:nodeCount"
    demand = f"({_sum('vllm:num_requests_running')} + {_sum('vllm:num_requests_waiting')})"
    waiting = _sum("vllm:num_requests_waiting")
    idle = f'max(vllm:kv_cache_usage_perc{{job="vllm"}}) < {_num(IDLE_KV_USAGE)}'
    per_node = f"at {capacity} requests at once per node, the planner's capacity of one node"
    if capacity is not None:
        out_expr = (f"(clamp_max(ceil({demand} / {capacity}), {MAX_NODE_COUNT}) > {n}) "
                    f"and on() ({waiting} > 0)")
        out_text = (f"For {SCALE_OUT_FOR} requests queued and the running plus waiting ones needed "
                    f"{{{{ $value }}}} nodes ({per_node}): suggested {key}: {{{{ $value }}}} (now {n}).")
    else:
        threshold = n * stack.config.monitoring.queue_depth_threshold
        out_expr = f"{waiting} > {threshold}"
        out_text = (f"For {SCALE_OUT_FOR} more than {threshold} requests waited across the {n} node(s) "
                    f"({{{{ $value }}}} now): suggested {key}: {min(n + 1, MAX_NODE_COUNT)} (now {n}).")
    advice = [Alert("ScaleOut", out_expr, SCALE_OUT_FOR, "info", f"The queue says {key} {n} is too few", out_text)]
    if n > 1:
        if capacity is not None:
            in_expr = (f"(clamp_min(ceil({demand} / {capacity}), 1) < {n}) and on() ({idle}) "
                       f"and on() ({waiting} == 0)")
            in_text = (f"For {SCALE_IN_FOR} the KV cache stayed below {IDLE_KV_USAGE:.0%} on every node with no "
                       f"queue, and the requests needed {{{{ $value }}}} nodes ({per_node}): "
                       f"suggested {key}: {{{{ $value }}}} (now {n}).")
        else:
            in_expr = f"({idle}) and on() ({waiting} == 0)"
            in_text = (f"For {SCALE_IN_FOR} the KV cache stayed below {IDLE_KV_USAGE:.0%} on every node with no "
                       f"queue: suggested {key}: {n - 1} (now {n}).")
        advice.append(Alert("ScaleIn", in_expr, SCALE_IN_FOR, "info", f"{key} {n} is more than the load needs",
                            in_text))
    return advice


def alert_rules(stack: ResolvedStack) -> str:
    """The rules file (one group) Prometheus loads from /etc/prometheus/rules/."""
    doc = {"groups": [{"name": GROUP_NAME, "rules": [a.rule() for a in alerts(stack)]}]}
    return dump_yaml(doc, f"# Rendered by gpu-inference for stack {stack.name}; runbooks: {RUNBOOK_BASE}.\n")


# ---------------------------------------------------------------------------------------------
# promtool tests
# ---------------------------------------------------------------------------------------------

# Test series are sampled every minute; the bad condition starts at ONSET (after some normal samples).
_STEP_S = 60
_ONSET_MIN = 5
_TEST_MINUTES = 120

_VLLM = {"job": "vllm", "instance": "10.0.0.2:8000", "node": "node-0", "model_name": "test-model", "engine": "0"}
_NODE = {"job": "node", "instance": "10.0.0.2:9100", "node": "node-0", "mountpoint": "/", "fstype": "ext4",
         "device": "/dev/vda1"}


def _sel(metric: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def _fmt(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _steady(value: float, minutes: int = _TEST_MINUTES) -> str:
    return f"{_fmt(value)}x{minutes}"


def _step(normal: float, bad: float) -> str:
    """`normal` for the first ONSET minutes (samples 0..ONSET-1), then `bad` until the end."""
    return f"{_fmt(normal)}x{_ONSET_MIN - 1} {_fmt(bad)}x{_TEST_MINUTES - _ONSET_MIN}"


def _minutes(seconds: float) -> int:
    return math.ceil(seconds / _STEP_S)


def _ts(minutes: int) -> str:
    return f"{minutes}m"


def _expected(alert: Alert, labels: Mapping[str, str], description: str) -> dict[str, Any]:
    return {
        "exp_labels": {**labels, "severity": alert.severity},
        "exp_annotations": {
            "summary": _render(alert.summary, labels),
            "description": description,
            "runbook_url": alert.runbook_url,
        },
    }


def _render(template: str, labels: Mapping[str, str]) -> str:
    """Fill {{ $labels.x }} like Prometheus does (summaries use nothing else)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _pct(value: float) -> str:
    """Prometheus' humanizePercentage: value*100 formatted with %.4g, then '%'."""
    return _go_g4(value * 100) + "%"


def _go_g4(value: float) -> str:
    text = f"{value:.4g}"
    return text


def _case(
    alert: Alert,
    name: str,
    series: list[dict[str, str]],
    labels: Mapping[str, str],
    description: str,
    fire_after_onset_s: float | None = None,
    onset: int = _ONSET_MIN,
) -> dict[str, Any]:
    """A test that the alert is quiet just before it may fire, then fires with exact labels/annotations."""
    hold = fire_after_onset_s if fire_after_onset_s is not None else duration_seconds(alert.for_)
    fire_at = onset + _minutes(hold)
    quiet_at = fire_at - 1  # either still below the threshold or still pending inside `for`
    return {
        "name": name,
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": _ts(quiet_at), "alertname": alert.name, "exp_alerts": []},
            {"eval_time": _ts(fire_at), "alertname": alert.name, "exp_alerts": [_expected(alert, labels, description)]},
        ],
    }


def alert_rule_tests(stack: ResolvedStack, rules_file: str = "gpu-inference.yml") -> str:
    """promtool test rules file: per alert a named case (quiet first, then firing), plus an all-quiet case."""
    mon = stack.config.monitoring
    by_name = {a.name: a for a in alerts(stack)}
    vllm_key = {k: _VLLM[k] for k in ("job", "instance", "node", "model_name")}
    cases: list[dict[str, Any]] = []

    # Queue depth: twice the threshold waiting.
    a = by_name["VllmQueueDepthHigh"]
    waiting = mon.queue_depth_threshold * 2
    cases.append(_case(
        a, "VllmQueueDepthHigh fires once the queue stays above the threshold for its duration",
        [{"series": _sel("vllm:num_requests_waiting", _VLLM), "values": _step(0, waiting)}],
        vllm_key,
        f"{waiting} requests are waiting on node-0 (10.0.0.2:8000), above {mon.queue_depth_threshold} "
        f"for {mon.queue_depth_for}: the node is saturated.",
    ))

    # KV cache: halfway between the threshold and 100 %.
    a = by_name["VllmKvCachePressure"]
    kv = round((mon.kv_cache_usage_threshold + 1.0) / 2, 4)
    cases.append(_case(
        a, "VllmKvCachePressure fires once KV-cache usage stays above the threshold",
        [{"series": _sel("vllm:kv_cache_usage_perc", _VLLM), "values": _step(0.1, kv)}],
        vllm_key,
        f"KV-cache usage is {_pct(kv)} on node-0 (10.0.0.2:8000), above {mon.kv_cache_usage_threshold:.0%} "
        f"for {mon.kv_cache_for}; requests will be preempted.",
    ))

    # TTFT: 60 requests a minute; normal ones land in the lowest bucket, bad ones in a bucket whose
    # lower bound is 2x the threshold, so p95 lies well inside it whatever the threshold.
    a = by_name["VllmTtftP95High"]
    slow_lo = mon.ttft_p95_seconds * 2
    slow_hi = mon.ttft_p95_seconds * 4
    fast = mon.ttft_p95_seconds / 10
    buckets = [fast, slow_lo, slow_hi]
    ttft_series = []
    for le in [*buckets, math.inf]:
        le_text = "+Inf" if le == math.inf else _fmt(le)
        # Cumulative counters: before onset all 60/min are fast (<= every bucket); after onset all slow.
        fast_incr = 60
        slow_incr = 60 if le >= slow_hi else 0
        values = f"0+{fast_incr}x{_ONSET_MIN - 1} {60 * (_ONSET_MIN - 1) + slow_incr}+{slow_incr}x{_TEST_MINUTES - _ONSET_MIN}"
        ttft_series.append({
            "series": _sel("vllm:time_to_first_token_seconds_bucket", {**_VLLM, "le": le_text}),
            "values": values,
        })
    # p95 of a rate window that holds only slow requests: slow_lo + 0.95 * (slow_hi - slow_lo).
    p95 = slow_lo + 0.95 * (slow_hi - slow_lo)
    # The 5m rate window is all-slow only 5 minutes after onset; before that the quantile is a blend
    # that already exceeds the threshold (>5 % slow), so the alert goes pending at the first slow sample.
    cases.append(_case(
        a, "VllmTtftP95High fires once p95 time to first token stays above the threshold",
        ttft_series,
        {"job": "vllm", "instance": _VLLM["instance"], "node": "node-0"},
        f"p95 time to first token over 5m is {_humanize_duration(p95)} on node-0 (10.0.0.2:8000), above "
        f"{_num(mon.ttft_p95_seconds)}s for {mon.ttft_for}.",
        fire_after_onset_s=duration_seconds(mon.ttft_for),
    ))
    # The alert fires at onset+for, but its value (p95) must be the all-slow figure: only true when
    # for >= window. Otherwise compare at a later time where the window is all slow.
    if duration_seconds(mon.ttft_for) < duration_seconds(TTFT_WINDOW):
        cases[-1]["alert_rule_test"][1]["eval_time"] = _ts(_ONSET_MIN + _minutes(duration_seconds(TTFT_WINDOW)))

    # Target down, one case per scraped job. The vLLM target dies with its machine (no node_exporter
    # answers): on Kubernetes, where there is no machine signal, _loading_cases covers the vLLM target.
    a = by_name["TargetDown"]
    gm = _gpu_metrics(stack)
    gpu_labels = gm.sample_labels
    exporter = (gm.job, vendor_for(stack).exporter.port)
    jobs = (("vllm", 8000), ("node", 9100), exporter) if _machine_signal(stack) else (("node", 9100), exporter)
    for job, port in jobs:
        labels = {"job": job, "instance": f"10.0.0.2:{port}", "node": "node-0"}
        cases.append(_case(
            a, f"TargetDown fires when the {job} target stays unreachable",
            [{"series": _sel("up", labels), "values": _step(1, 0)}],
            labels,
            f"Prometheus cannot scrape {job} at 10.0.0.2:{port} (node-0) for {mon.target_down_for}.",
        ))

    # Metrics absent: only `up` exists (the server answers but has no vLLM metrics), from t=0.
    a = by_name["VllmMetricsAbsent"]
    hold = _minutes(duration_seconds(a.for_))
    cases.append({
        "name": "VllmMetricsAbsent fires when no vLLM metric is reported for its duration",
        "interval": "1m",
        "input_series": [{"series": _sel("up", {"job": "vllm", "instance": "10.0.0.2:8000", "node": "node-0"}),
                          "values": _steady(1)}],
        "alert_rule_test": [
            {"eval_time": _ts(hold - 1), "alertname": a.name, "exp_alerts": []},
            {"eval_time": _ts(hold), "alertname": a.name, "exp_alerts": [_expected(
                a, {"job": "vllm"},
                f"No vLLM target has reported vllm:num_requests_running for {a.for_}: every node is down, "
                f"or the pinned image ({vllm_image(stack)}) renamed the metrics the alerts rely on.",
            )]},
        ],
    })

    # GPU memory: in the exporter's unit (MiB of a 48 GiB card on DCGM, MB of a 192 GB MI300X on AMD's).
    a = by_name["GpuMemoryNearlyFull"]
    total = gm.memory_total
    used_bad = math.ceil(total * (mon.gpu_memory_usage_threshold + 1) / 2)
    if used_bad >= total:
        used_bad = total
    used_ok = int(total * stack.config.gpu_memory_utilization * 0.95)
    ratio = used_bad / total
    ok_values, bad_values = gm.memory_series(used_ok, total), gm.memory_series(used_bad, total)
    cases.append(_case(
        a, "GpuMemoryNearlyFull fires once framebuffer use stays above the threshold",
        [{"series": _sel(metric, gpu_labels), "values": _step(ok_values[metric], bad_values[metric])}
         for metric in ok_values],
        gpu_labels,
        f"GPU 0 on node-0 uses {_pct(ratio)} of its memory (threshold {mon.gpu_memory_usage_threshold:.0%}); "
        f"vLLM preallocates {stack.config.gpu_memory_utilization:.0%}, so something else is holding memory.",
    ))

    a = by_name["GpuTemperatureHigh"]
    hot = mon.gpu_temperature_celsius + 5
    cases.append(_case(
        a, "GpuTemperatureHigh fires once the GPU stays above the temperature threshold",
        [{"series": _sel(gm.temperature, gpu_labels), "values": _step(60, hot)}],
        gpu_labels,
        f"GPU 0 on node-0 is at {_fmt(hot)}°C{gm.temperature_what}, above {_num(mon.gpu_temperature_celsius)}°C for "
        f"{GPU_TEMPERATURE_FOR}; it will throttle.",
    ))

    a = by_name[gm.error_alert]
    error_case = _case(
        a, gm.error_test_name,
        [{"series": _sel(gm.error_metric, gpu_labels), "values": gm.error_series(_TEST_MINUTES)}],
        gpu_labels,
        gm.error_test_description,
    )
    # The exporter keeps reporting the bad value for the rest of the test (DCGM's XID is sticky, AMD's ECC
    # count never goes down): the alert must not stay.
    error_case["alert_rule_test"].append({
        "eval_time": _ts(_ONSET_MIN + _minutes(duration_seconds(XID_WINDOW)) + 1), "alertname": a.name,
        "exp_alerts": [],
    })
    cases.append(error_case)

    # Disk: 1 TB filesystem; bad = half the threshold free.
    a = by_name["DiskFillingUp"]
    size = 1_000_000_000_000
    free_bad = int(size * mon.disk_free_ratio / 2)
    cases.append(_case(
        a, "DiskFillingUp fires once free space on the model-cache mount stays below the threshold",
        [
            {"series": _sel("node_filesystem_avail_bytes", _NODE), "values": _step(size // 2, free_bad)},
            {"series": _sel("node_filesystem_size_bytes", _NODE), "values": _steady(size)},
        ],
        _NODE,
        f"Only {_pct(free_bad / size)} of / is free on node-0 (threshold {mon.disk_free_ratio:.0%}); "
        "model downloads and logs will fail.",
    ))

    # Predicted: free space shrinks 1 GB a minute from 90 % free (1.44 TB a day: zero within 24 h) but stays
    # above the ratio threshold for the whole test. The trend exists from the second sample (minute 1) on.
    a = by_name["DiskFillingUpPredicted"]
    start_free = int(size * 0.9)
    cases.append(_case(
        a, "DiskFillingUpPredicted fires once the 6h trend reaches zero within 24h",
        [
            {"series": _sel("node_filesystem_avail_bytes", _NODE), "values": f"{start_free}-1000000000x{_TEST_MINUTES}"},
            {"series": _sel("node_filesystem_size_bytes", _NODE), "values": _steady(size)},
        ],
        _NODE,
        "At the rate of the last 6h, / on node-0 runs out of space within 24 hours.",
        onset=1,
    ))

    cases += _scale_cases(stack, by_name)
    cases += _loading_cases(stack, by_name)

    # Normal operation: every input at a healthy value, nothing fires at any point.
    normal_series = [
        {"series": _sel("up", {"job": "vllm", "instance": "10.0.0.2:8000", "node": "node-0"}), "values": _steady(1)},
        {"series": _sel("vllm:num_requests_running", _VLLM), "values": _steady(4)},
        {"series": _sel("vllm:num_requests_waiting", _VLLM), "values": _steady(max(mon.queue_depth_threshold // 2, 0))},
        {"series": _sel("vllm:kv_cache_usage_perc", _VLLM), "values": _steady(round(mon.kv_cache_usage_threshold / 2, 4))},
        *[
            {"series": _sel("vllm:time_to_first_token_seconds_bucket", {**_VLLM, "le": le}), "values": "0+60x120"}
            for le in (_fmt(fast), _fmt(slow_lo), "+Inf")
        ],
        *[{"series": _sel(metric, gpu_labels), "values": _steady(value)} for metric, value in ok_values.items()],
        {"series": _sel(gm.temperature, gpu_labels), "values": _steady(60)},
        {"series": _sel(gm.error_metric, gpu_labels), "values": _steady(0)},
        {"series": _sel("node_filesystem_avail_bytes", _NODE), "values": _steady(size // 2)},
        {"series": _sel("node_filesystem_size_bytes", _NODE), "values": _steady(size)},
    ]
    cases.append({
        "name": "Nothing fires under normal load",
        "interval": "1m",
        "input_series": normal_series,
        "alert_rule_test": [
            {"eval_time": t, "alertname": name, "exp_alerts": []}
            for t in ("30m", "119m")
            for name in by_name
        ],
    })

    doc = {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": cases}
    return dump_yaml(doc, f"# promtool test rules for stack {stack.name}: `promtool test rules <this file>`.\n")


def _scale_cases(stack: ResolvedStack, by_name: Mapping[str, Alert]) -> list[dict[str, Any]]:
    """ScaleOut fires on a queue of one more node's worth, ScaleIn on an idle pool; each names the count."""
    if "ScaleOut" not in by_name:
        return []
    from gpu_inference.planner import node_capacity_requests

    n, cap = stack.config.node_count, node_capacity_requests(stack)
    key = "gpu-inference:nodeCount"
    cases: list[dict[str, Any]] = []
    a = by_name["ScaleOut"]
    if cap is not None:
        # cap running and n*cap waiting on node-0: (n+1) nodes' worth of requests.
        series = [
            {"series": _sel("vllm:num_requests_running", _VLLM), "values": _step(1, cap)},
            {"series": _sel("vllm:num_requests_waiting", _VLLM), "values": _step(0, n * cap)},
        ]
        text = (f"For {SCALE_OUT_FOR} requests queued and the running plus waiting ones needed {n + 1} nodes "
                f"(at {cap} requests at once per node, the planner's capacity of one node): suggested {key}: "
                f"{n + 1} (now {n}).")
    else:
        threshold = n * stack.config.monitoring.queue_depth_threshold
        series = [{"series": _sel("vllm:num_requests_waiting", _VLLM), "values": _step(0, threshold + 1)}]
        text = (f"For {SCALE_OUT_FOR} more than {threshold} requests waited across the {n} node(s) "
                f"({threshold + 1} now): suggested {key}: {n + 1} (now {n}).")
    cases.append(_case(a, "ScaleOut fires on a sustained queue and names the suggested nodeCount", series, {}, text))
    if "ScaleIn" in by_name:
        a = by_name["ScaleIn"]
        busy = cap * n if cap is not None else 4
        series = [
            {"series": _sel("vllm:num_requests_running", _VLLM), "values": _step(busy, 1)},
            {"series": _sel("vllm:num_requests_waiting", _VLLM), "values": _steady(0)},
            {"series": _sel("vllm:kv_cache_usage_perc", _VLLM), "values": _step(0.5, 0.05)},
        ]
        if cap is not None:
            text = (f"For {SCALE_IN_FOR} the KV cache stayed below {IDLE_KV_USAGE:.0%} on every node with no queue, "
                    f"and the requests needed 1 nodes (at {cap} requests at once per node, the planner's capacity "
                    f"of one node): suggested {key}: 1 (now {n}).")
        else:
            text = (f"For {SCALE_IN_FOR} the KV cache stayed below {IDLE_KV_USAGE:.0%} on every node with no queue: "
                    f"suggested {key}: {n - 1} (now {n}).")
        cases.append(_case(a, "ScaleIn fires on an idle pool and names the suggested nodeCount", series, {}, text))
    return cases


def _humanize_duration(seconds: float) -> str:
    """Prometheus' humanizeDuration for values of 1 s to 60 s: '%.4g' then 's'."""
    if not 1 <= seconds < 60:
        raise ValueError("test TTFT values are expected between 1 s and 60 s")
    return f"{seconds:.4g}s"


# The loading window in promtool cases (see "The loading window" above). Label sets of the GPU node's targets:
_UP_VLLM = {"job": "vllm", "instance": "10.0.0.2:8000", "node": "node-0"}
_UP_NODE = {"job": "node", "instance": "10.0.0.2:9100", "node": "node-0"}


def _up_gpu_exporter(stack: ResolvedStack) -> dict[str, str]:
    """The GPU vendor's exporter target on that node (job dcgm on NVIDIA, amd-metrics on AMD)."""
    exporter = vendor_for(stack).exporter
    job = exporter.metrics.job if exporter.metrics else exporter.container
    return {"job": job, "instance": f"10.0.0.2:{exporter.port}", "node": "node-0"}


# The load the issue names: ten minutes of a 70B model (any stack's window is at least BASE_GRACE_SECONDS).
LOAD_MINUTES = 10
# Every loading-window case's name starts with this (tests tell them from the one-alert-per-case ones).
LOADING_CASE_PREFIX = "Loading window: "


def _quiet(names: Sequence[str], minutes: range) -> list[dict[str, Any]]:
    return [{"eval_time": _ts(t), "alertname": n, "exp_alerts": []} for t in minutes for n in names]


def _loading_cases(stack: ResolvedStack, by_name: Mapping[str, Alert]) -> list[dict[str, Any]]:
    """A deploy and a restart that load for LOAD_MINUTES raise nothing; a node dead after serving, and a server
    stuck loading past the window, still fire TargetDown (and VllmMetricsAbsent when no node serves)."""
    mon = stack.config.monitoring
    window = _minutes(duration_seconds(loading_window(stack)))
    assert window > LOAD_MINUTES, "the loading window is shorter than the load the tests model"
    down_for = _minutes(duration_seconds(mon.target_down_for))
    absent_for = _minutes(duration_seconds(METRICS_ABSENT_FOR))
    total = max(_TEST_MINUTES, 3 * window + 30)
    machines = _machine_signal(stack)
    up_gpu = _up_gpu_exporter(stack)
    td, absent = by_name["TargetDown"], by_name["VllmMetricsAbsent"]
    watched = (td.name, absent.name)
    running = _sel("vllm:num_requests_running", _VLLM)

    def gpu_series(vllm: str, node: str, metrics: str) -> list[dict[str, str]]:
        series = [{"series": _sel("up", _UP_VLLM), "values": vllm}, {"series": running, "values": metrics}]
        if machines:  # node_exporter and the GPU exporter share the GPU node; Kubernetes scrapes neither
            series += [{"series": _sel("up", _UP_NODE), "values": node}, {"series": _sel("up", up_gpu), "values": node}]
        return series

    def down(labels: Mapping[str, str]) -> dict[str, Any]:
        return _expected(td, labels, f"Prometheus cannot scrape {labels['job']} at {labels['instance']} "
                                     f"({labels['node']}) for {mon.target_down_for}.")

    absent_alert = _expected(
        absent, {"job": "vllm"},
        f"No vLLM target has reported vllm:num_requests_running for {absent.for_}: every node is down, "
        f"or the pinned image ({vllm_image(stack)}) renamed the metrics the alerts rely on.",
    )
    load = LOAD_MINUTES
    cases: list[dict[str, Any]] = [
        {
            # Deploy: Prometheus meets the node while its exporters start (after the image pulls, 3 minutes
            # here) and vLLM loads for LOAD_MINUTES; then it serves.
            "name": f"{LOADING_CASE_PREFIX}a first start that loads for {load} minutes raises nothing (loading window {window}m)",
            "interval": "1m",
            "input_series": gpu_series(f"0x{load - 1} 1x{total - load}", f"0x2 1x{total - 3}",
                                       f"_x{load - 1} 4x{total - load}"),
            "alert_rule_test": _quiet(watched, range(0, load + window + absent_for + 5)),
        },
        {
            # Restart (crash, health-check restart, rollout): serving for 30 minutes, reloading for
            # LOAD_MINUTES while the machine stays up, serving again.
            "name": f"{LOADING_CASE_PREFIX}a restart that reloads for {load} minutes raises nothing",
            "interval": "1m",
            "input_series": gpu_series(f"1x29 0x{load - 1} 1x{total - 30 - load}", f"1x{total}",
                                       f"4x29 _x{load - 1} 4x{total - 30 - load}"),
            "alert_rule_test": _quiet(watched, range(0, 30 + load + window + absent_for + 5)),
        },
    ]
    # Dead after serving: everything on the node stops answering at `dead` (long after the node was met).
    dead = window + 10
    gone = f"1x{dead - 1} 0x{total - dead}"
    if machines:
        # Its node_exporter is gone too, so it is not a reload: TargetDown after the usual `for`, for every
        # target of the node; with no other node serving, VllmMetricsAbsent follows.
        tests = [
            {"eval_time": _ts(dead + down_for - 1), "alertname": td.name, "exp_alerts": []},
            {"eval_time": _ts(dead + down_for), "alertname": td.name,
             "exp_alerts": [down(_UP_VLLM), down(_UP_NODE), down(up_gpu)]},
            {"eval_time": _ts(dead + absent_for - 1), "alertname": absent.name, "exp_alerts": []},
            # The last sample stays visible for the 5-minute lookback, then `absent` holds for its `for`.
            {"eval_time": _ts(dead + 5 + absent_for + 1), "alertname": absent.name, "exp_alerts": [absent_alert]},
        ]
    else:
        # No machine signal on Kubernetes: a pod that answered within the window may be reloading, so the
        # page comes once the window has passed since its last answer (plus the usual `for`).
        tests = [
            {"eval_time": _ts(dead + window - 2), "alertname": td.name, "exp_alerts": []},
            {"eval_time": _ts(dead + window + down_for), "alertname": td.name, "exp_alerts": [down(_UP_VLLM)]},
            {"eval_time": _ts(dead + window - 2), "alertname": absent.name, "exp_alerts": []},
            {"eval_time": _ts(dead + window + absent_for), "alertname": absent.name, "exp_alerts": [absent_alert]},
        ]
    cases.append({
        "name": f"{LOADING_CASE_PREFIX}a node dead after it was serving fires TargetDown",
        "interval": "1m",
        "input_series": gpu_series(gone, gone, f"4x{dead - 1} _x{total - dead}"),
        "alert_rule_test": tests,
    })
    # Stuck: the machine is up but vLLM never answers. The window is the limit: then TargetDown, and
    # VllmMetricsAbsent once it has held for its own `for`.
    cases.append({
        "name": f"{LOADING_CASE_PREFIX}a server still loading when the window ends fires TargetDown, then VllmMetricsAbsent",
        "interval": "1m",
        # No vllm:num_requests_running series at all: the server never got that far.
        "input_series": [s for s in gpu_series(f"0x{total}", f"1x{total}", "") if s["series"] != running],
        "alert_rule_test": [
            {"eval_time": _ts(window + down_for - 1), "alertname": td.name, "exp_alerts": []},
            {"eval_time": _ts(window + down_for), "alertname": td.name, "exp_alerts": [down(_UP_VLLM)]},
            {"eval_time": _ts(window + absent_for - 1), "alertname": absent.name, "exp_alerts": []},
            {"eval_time": _ts(window + absent_for), "alertname": absent.name, "exp_alerts": [absent_alert]},
        ],
    })
    return cases
