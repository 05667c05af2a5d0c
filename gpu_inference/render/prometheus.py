"""Prometheus: scrape config, alert rules, and the promtool unit tests of those rules."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpu_inference.render._common import MODEL_CACHE_MOUNTPOINT, dump_yaml, node_name

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
# DCGM_FI_DEV_XID_ERRORS holds the last XID code until the exporter restarts (NVIDIA/dcgm-exporter#500,
# NVIDIA/DCGM#277): the alert fires when a new code appears and resolves this long after, instead of
# firing forever after one application fault (XID 13/31/43 when vLLM crashes).
XID_WINDOW = "15m"
DISK_FOR = "5m"
# predict_linear over 6 h, looking 24 h ahead; it must hold for a while so that one download burst
# (a model being pulled into the cache) does not page anyone.
DISK_PREDICT_RANGE = "6h"
DISK_PREDICT_HORIZON_SECONDS = 24 * 3600
DISK_PREDICT_FOR = "30m"
TTFT_WINDOW = "5m"

_NODE_FS = f'mountpoint="{MODEL_CACHE_MOUNTPOINT}",fstype!~"tmpfs|overlay|squashfs"'


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
    nginx_targets: Mapping[str, str] | None = None,
) -> str:
    """prometheus.yml. Targets are host:port; a list is named node-0, node-1, …; a mapping gives names.

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
                "static_configs": _static(vllm_targets),
            },
            {"job_name": "node", "static_configs": _static(node_targets)},
            {"job_name": "dcgm", "static_configs": _static(dcgm_targets)},
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
            "up == 0",
            mon.target_down_for,
            "critical",
            "{{ $labels.job }} target on {{ $labels.node }} is down",
            "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }} ({{ $labels.node }}) "
            f"for {mon.target_down_for}.",
        ),
        Alert(
            "VllmMetricsAbsent",
            'absent(vllm:num_requests_running{job="vllm"})',
            METRICS_ABSENT_FOR,
            "critical",
            "No vLLM metrics at all",
            f"No vLLM target has reported vllm:num_requests_running for {METRICS_ABSENT_FOR}: every node is "
            f"down, or the pinned image ({stack.config.vllm_image}) renamed the metrics the alerts rely on.",
        ),
        Alert(
            "GpuMemoryNearlyFull",
            "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) "
            f"> {_num(mon.gpu_memory_usage_threshold)}",
            GPU_MEMORY_FOR,
            "warning",
            "GPU {{ $labels.gpu }} memory nearly full on {{ $labels.node }}",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} uses {{ $value | humanizePercentage }} of its memory "
            f"(threshold {mon.gpu_memory_usage_threshold:.0%}); vLLM preallocates "
            f"{stack.config.gpu_memory_utilization:.0%}, so something else is holding memory.",
        ),
        Alert(
            "GpuTemperatureHigh",
            f"DCGM_FI_DEV_GPU_TEMP > {_num(mon.gpu_temperature_celsius)}",
            GPU_TEMPERATURE_FOR,
            "warning",
            "GPU {{ $labels.gpu }} running hot on {{ $labels.node }}",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value }}°C, "
            f"above {_num(mon.gpu_temperature_celsius)}°C for {GPU_TEMPERATURE_FOR}; it will throttle.",
        ),
        Alert(
            "GpuXidErrors",
            # `and` keeps the left-hand value: the XID code, for the description.
            f"DCGM_FI_DEV_XID_ERRORS != 0 and changes(DCGM_FI_DEV_XID_ERRORS[{XID_WINDOW}]) > 0",
            XID_FOR,
            "critical",
            "GPU {{ $labels.gpu }} reported an XID error on {{ $labels.node }}",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} reported XID {{ $value }} "
            f"(the last XID code, new within {XID_WINDOW}); check dmesg and consider replacing the node.",
        ),
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
_DCGM = {"job": "dcgm", "instance": "10.0.0.2:9400", "node": "node-0", "gpu": "0",
         "UUID": "GPU-00000000-0000-0000-0000-000000000000", "modelName": "NVIDIA L40S"}


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

    # Target down, one case per scraped job.
    a = by_name["TargetDown"]
    for job, port in (("vllm", 8000), ("node", 9100), ("dcgm", 9400)):
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
                f"or the pinned image ({stack.config.vllm_image}) renamed the metrics the alerts rely on.",
            )]},
        ],
    })

    # GPU memory: framebuffer in MiB, 48 GiB card.
    a = by_name["GpuMemoryNearlyFull"]
    total = 46068
    used_bad = math.ceil(total * (mon.gpu_memory_usage_threshold + 1) / 2)
    if used_bad >= total:
        used_bad = total
    used_ok = int(total * stack.config.gpu_memory_utilization * 0.95)
    ratio = used_bad / total
    cases.append(_case(
        a, "GpuMemoryNearlyFull fires once framebuffer use stays above the threshold",
        [
            {"series": _sel("DCGM_FI_DEV_FB_USED", _DCGM), "values": _step(used_ok, used_bad)},
            {"series": _sel("DCGM_FI_DEV_FB_FREE", _DCGM), "values": _step(total - used_ok, total - used_bad)},
        ],
        _DCGM,
        f"GPU 0 on node-0 uses {_pct(ratio)} of its memory (threshold {mon.gpu_memory_usage_threshold:.0%}); "
        f"vLLM preallocates {stack.config.gpu_memory_utilization:.0%}, so something else is holding memory.",
    ))

    a = by_name["GpuTemperatureHigh"]
    hot = mon.gpu_temperature_celsius + 5
    cases.append(_case(
        a, "GpuTemperatureHigh fires once the GPU stays above the temperature threshold",
        [{"series": _sel("DCGM_FI_DEV_GPU_TEMP", _DCGM), "values": _step(60, hot)}],
        _DCGM,
        f"GPU 0 on node-0 is at {_fmt(hot)}°C, above {_num(mon.gpu_temperature_celsius)}°C for "
        f"{GPU_TEMPERATURE_FOR}; it will throttle.",
    ))

    a = by_name["GpuXidErrors"]
    xid_case = _case(
        a, "GpuXidErrors fires as soon as DCGM reports an XID, and resolves although the value stays",
        [{"series": _sel("DCGM_FI_DEV_XID_ERRORS", _DCGM), "values": _step(0, 79)}],
        _DCGM,
        f"GPU 0 on node-0 reported XID 79 (the last XID code, new within {XID_WINDOW}); check dmesg and "
        "consider replacing the node.",
    )
    # DCGM keeps reporting 79 for the rest of the test (the value is sticky): the alert must not stay.
    xid_case["alert_rule_test"].append({
        "eval_time": _ts(_ONSET_MIN + _minutes(duration_seconds(XID_WINDOW)) + 1), "alertname": a.name,
        "exp_alerts": [],
    })
    cases.append(xid_case)

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
        {"series": _sel("DCGM_FI_DEV_FB_USED", _DCGM), "values": _steady(used_ok)},
        {"series": _sel("DCGM_FI_DEV_FB_FREE", _DCGM), "values": _steady(total - used_ok)},
        {"series": _sel("DCGM_FI_DEV_GPU_TEMP", _DCGM), "values": _steady(60)},
        {"series": _sel("DCGM_FI_DEV_XID_ERRORS", _DCGM), "values": _steady(0)},
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


def _humanize_duration(seconds: float) -> str:
    """Prometheus' humanizeDuration for values of 1 s to 60 s: '%.4g' then 's'."""
    if not 1 <= seconds < 60:
        raise ValueError("test TTFT values are expected between 1 s and 60 s")
    return f"{seconds:.4g}s"
