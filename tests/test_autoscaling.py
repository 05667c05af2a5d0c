"""Issue 16, capacity that flexes: the autoscaling config, its price range, and the objects that scale.

Kubernetes: KEDA's ScaledObject over the vLLM StatefulSet, KEDA's Helm release, the autoscaling DOKS pool.
Every test here fails on the code before issue 16 (no `autoscaling` key: the stack file is refused).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_inference.cli import main
from gpu_inference.config import load_stack_config, parse_stack_config, read_stack_file
from gpu_inference.constants import HOURS_PER_MONTH, PROJECT_DIR
from gpu_inference.errors import ConfigError
from gpu_inference.policy_rules import ResourceView, check_budget
from gpu_inference.preview_runner import ProgramRun, RecordedResource, engine_config, run_program

STACKS = Path(__file__).parent / "stacks"
AUTOSCALE = STACKS / "kubernetes-autoscale.yaml"
KUBE = {
    "provider": "kubernetes", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
    "monthlyBudgetUsd": 5000, "kubernetes": {"clusterId": "c-1"},
}
SCALING = {"minNodes": 1, "maxNodes": 4}
L40S_MONTH = 1.57 * HOURS_PER_MONTH
LB_MONTH = 12.00
# Prometheus' TSDB claim (monitoring.storageGb, 20 GB default) priced as a DigitalOcean volume at $0.10/GB-month;
# it does not scale with the pool, so it is in both ends of the range.
CLAIM_MONTH = 20 * 0.10
POOL = "digitalocean:index/kubernetesNodePool:KubernetesNodePool"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
RELEASE = "kubernetes:helm.sh/v3:Release"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def problems(**cfg: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_stack_config(cfg, secret_keys=set())
    return info.value.messages


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_autoscaling_config_defaults_and_node_count_is_its_floor() -> None:
    cfg = parse_stack_config({**KUBE, "autoscaling": {"minNodes": 2, "maxNodes": 5}})
    assert cfg.autoscaling is not None
    assert (cfg.autoscaling.min_nodes, cfg.autoscaling.max_nodes) == (2, 5)
    assert cfg.autoscaling.target_queue_depth == 8 and cfg.autoscaling.target_kv_cache_usage == 0.75
    assert cfg.autoscaling.scale_down_delay_seconds == 900
    assert cfg.node_count == 2 and cfg.max_node_count == 5
    assert "2-5 (autoscaling)" in cfg.describe()


@pytest.mark.parametrize(("scaling", "expected"), [
    ({"minNodes": 4, "maxNodes": 3},
     "gpu-inference:autoscaling.minNodes = 4 is above gpu-inference:autoscaling.maxNodes = 3: "
     "minNodes must be at most maxNodes"),
    ({"minNodes": 0, "maxNodes": 3}, "gpu-inference:autoscaling.minNodes = 0 is out of range: allowed ≥ 1, ≤ 64"),
    ({"minNodes": 1, "maxNodes": 65}, "gpu-inference:autoscaling.maxNodes = 65 is out of range: allowed ≥ 1, ≤ 64"),
    ({"minNodes": 1, "maxNodes": 2, "targetKvCacheUsage": float("nan")},
     "gpu-inference:autoscaling.targetKvCacheUsage = NaN is invalid: Input should be a finite number (allowed > 0, ≤ 1)"),
    ({"minNodes": 1, "maxNodes": 2, "targetKvCacheUsage": 1.5},
     "gpu-inference:autoscaling.targetKvCacheUsage = 1.5 is out of range: allowed > 0, ≤ 1"),
    ({"minNodes": 1, "maxNodes": 2, "targetQueueDepth": 0},
     "gpu-inference:autoscaling.targetQueueDepth = 0 is out of range: allowed ≥ 1, ≤ 4096"),
    ({"minNodes": 1, "maxNodes": 2, "scaleDownDelaySeconds": 60},
     "gpu-inference:autoscaling.scaleDownDelaySeconds = 60 is out of range: allowed ≥ 300, ≤ 3600"),
    ({"maxNodes": 2}, "gpu-inference:autoscaling.minNodes is required: Fewest GPU nodes (vLLM replicas) ever "
     "running; at least 1, so the endpoint never waits for a cold start."),
    ({"minNodes": 1, "maxNodes": 2, "minReplicas": 1}, "gpu-inference:autoscaling.minReplicas is not a known key"),
])
def test_each_bad_autoscaling_value_gets_one_message(scaling: dict[str, Any], expected: str) -> None:
    [message] = problems(**KUBE, autoscaling=scaling)
    assert message.startswith(expected)


def test_node_count_beside_autoscaling_is_refused() -> None:
    [message] = problems(**KUBE, nodeCount=2, autoscaling=SCALING)
    assert message == ("gpu-inference:nodeCount = 2 is not allowed beside gpu-inference:autoscaling: remove nodeCount "
                       "(autoscaling.minNodes and maxNodes set the count)")


@pytest.mark.parametrize("provider", ["digitalocean", "aws"])
def test_autoscaling_on_machines_is_refused_naming_the_kubernetes_provider(provider: str) -> None:
    region, gpu = ("tor1", "gpu-l40sx1-48gb") if provider == "digitalocean" else ("us-east-1", "g6e.xlarge")
    [message] = problems(provider=provider, region=region, gpu=gpu, model="Qwen/Qwen3-8B", monthlyBudgetUsd=5000,
                         autoscaling=SCALING)
    assert message == (f"gpu-inference:autoscaling is not supported with provider {provider} (fixed machines): "
                       "use provider kubernetes, or remove autoscaling and set nodeCount")


def test_autoscaling_needs_the_in_cluster_prometheus() -> None:
    [message] = problems(**KUBE, autoscaling=SCALING, monitoring={"enabled": False})
    assert "autoscaling needs gpu-inference:monitoring.enabled = true" in message


def test_cli_refuses_autoscaling_on_droplets_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    doc["config"]["gpu-inference:autoscaling"] = SCALING
    doc["config"].pop("gpu-inference:nodeCount", None)
    path = tmp_path / "Pulumi.scaled.yaml"
    path.write_text(yaml.safe_dump(doc))
    for command in ("preview", "cost"):
        code = main([command, str(path)])
        _out, err = capsys.readouterr()
        assert code == 2
        assert "autoscaling is not supported with provider digitalocean" in err and "use provider kubernetes" in err
        assert "Traceback" not in err
    assert not (PROJECT_DIR / "build" / "scaled").exists()


# ---------------------------------------------------------------------------------------------
# Price: the budget at maxNodes, the range min-max
# ---------------------------------------------------------------------------------------------


def pool_view(**inputs: Any) -> ResourceView:
    return ResourceView(type=POOL, name="pool", props={"size": "gpu-l40sx1-48gb", **inputs})


def test_budget_policy_prices_an_autoscaling_pool_at_max_nodes() -> None:
    scaled = pool_view(autoScale=True, minNodes=1, maxNodes=4)
    # Four nodes cost 4 x $1,146.10 = $4,584.40: a $3,000 budget covers the floor, not the ceiling.
    [message] = check_budget([scaled], 3000)
    assert "$4,584.40/month (730 h) at maxNodes ($1,146.10 at minNodes)" in message and "a lower maxNodes" in message
    assert check_budget([scaled], 4600) == []


@pytest.fixture(scope="module")
def autoscaled() -> ProgramRun:
    cfg = load_stack_config(AUTOSCALE)
    config, secret_keys = engine_config(read_stack_file(AUTOSCALE))
    return run_program(PROJECT_DIR, "kubernetes-autoscale", config, secret_keys, cfg.provider, cfg.region)


def test_cost_json_shows_the_monthly_range_and_checks_the_budget_at_max(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cost", str(AUTOSCALE), "--json", "--tokens-per-second", "1000", "--utilization", "0.5"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    low, high = data["monthly_cost_range_usd"]
    assert low == pytest.approx(L40S_MONTH + LB_MONTH + CLAIM_MONTH, abs=0.01)
    assert high == pytest.approx(4 * L40S_MONTH + LB_MONTH + CLAIM_MONTH, abs=0.01)
    assert data["monthly_cost_usd"] == pytest.approx(high) and data["within_budget"] is True
    # $/Mtok at the ceiling: maxNodes' bill for maxNodes' tokens (4 nodes at 1000 tok/s, half busy).
    per_mtok = high / HOURS_PER_MONTH / (4 * 1000 * 0.5 * 3600 / 1e6)
    assert data["economics"]["usd_per_million_tokens"] == pytest.approx(per_mtok)


def test_cost_and_preview_text_print_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("cost", "preview"):
        main([command, str(AUTOSCALE)])
        out = capsys.readouterr().out
        assert "$1,160.10 to $4,598.40 per month (autoscaling: minNodes to maxNodes" in out, command


def test_preview_json_carries_the_floor_and_exports_the_ceiling(autoscaled: ProgramRun) -> None:
    from gpu_inference.preview_runner import run_preview

    report = run_preview(str(AUTOSCALE), out_dir=None)
    assert report.monthly_cost_min_usd == pytest.approx(L40S_MONTH + LB_MONTH + CLAIM_MONTH, abs=0.01)
    assert report.monthly_cost_usd == pytest.approx(4 * L40S_MONTH + LB_MONTH + CLAIM_MONTH, abs=0.01)
    assert autoscaled.outputs["monthlyCostUsd"] == pytest.approx(report.monthly_cost_usd)
    fixed = run_preview(str(STACKS / "kubernetes.yaml"), out_dir=None)
    assert fixed.monthly_cost_min_usd is None
    # A fixed stack registers no autoscaler and keeps its nodeCount.
    assert not [r for r in fixed.resources if r.type in (SCALED_OBJECT, RELEASE)]
    [pool] = [r for r in fixed.resources if r.type == POOL]
    assert pool.inputs["nodeCount"] == 2 and "autoScale" not in pool.inputs


# ---------------------------------------------------------------------------------------------
# Kubernetes objects under mocks
# ---------------------------------------------------------------------------------------------


def of_type(program: ProgramRun, token: str) -> list[RecordedResource]:
    return [r for r in program.recorded if r.type == token]


def test_the_doks_pool_autoscales_between_min_and_max(autoscaled: ProgramRun) -> None:
    [pool] = of_type(autoscaled, POOL)
    assert pool.inputs["autoScale"] is True
    assert (pool.inputs["minNodes"], pool.inputs["maxNodes"]) == (1, 4)
    assert "nodeCount" not in pool.inputs  # it would reset the autoscaled pool on every update


def test_the_statefulset_leaves_replicas_to_keda(autoscaled: ProgramRun) -> None:
    [statefulset] = of_type(autoscaled, STATEFULSET)
    assert "replicas" not in statefulset.inputs["spec"]
    assert statefulset.inputs["metadata"]["name"] == "vllm"


def test_scaled_object_targets_the_vllm_statefulset_on_vllm_metrics(autoscaled: ProgramRun) -> None:
    [scaled] = of_type(autoscaled, SCALED_OBJECT)
    assert scaled.inputs["apiVersion"] == "keda.sh/v1alpha1" and scaled.inputs["kind"] == "ScaledObject"
    assert scaled.inputs["metadata"]["namespace"] == "llm"
    spec = scaled.inputs["spec"]
    [statefulset] = of_type(autoscaled, STATEFULSET)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "name": statefulset.inputs["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert {t["type"] for t in spec["triggers"]} == {"prometheus"}
    server = "http://prometheus.llm.svc.cluster.local:9090"
    assert autoscaled.outputs["prometheusUrl"] == server  # the Prometheus the stack runs, nothing new
    assert triggers["queue-depth"]["metadata"] == {
        "serverAddress": server, "query": 'sum(vllm:num_requests_waiting{job="vllm"})', "threshold": "8"}
    assert triggers["kv-cache-usage"]["metadata"] == {
        "serverAddress": server, "query": 'sum(vllm:kv_cache_usage_perc{job="vllm"})', "threshold": "0.75"}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    # Up at once; down only after the load stayed low for scaleDownDelaySeconds (> a 5-minute model load),
    # one pod per 5 minutes.
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900 >= 300
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert spec["cooldownPeriod"] == 900


def test_the_metrics_the_triggers_query_are_the_ones_the_alerts_use() -> None:
    # The alert rules (promtool-tested against vLLM's metric names at the pinned version) and KEDA read the
    # same gauges: a rename would break both, and the alert tests would catch it.
    from test_render import REMOVED_METRICS, V019_METRICS

    from gpu_inference.render.kubernetes import KV_CACHE_METRIC, QUEUE_METRIC, scaling_queries
    from gpu_inference.render.prometheus import alert_rules
    from gpu_inference.stack import resolve_stack

    stack = resolve_stack(load_stack_config(AUTOSCALE), "kubernetes-autoscale")
    rules = alert_rules(stack)
    assert QUEUE_METRIC in rules and KV_CACHE_METRIC in rules
    # vLLM v0.19's names (vllm/v1/metrics/loggers.py), not the removed vllm:gpu_cache_usage_perc.
    queried = {m for q in scaling_queries(stack).values() for m in re.findall(r"vllm:[a-z_]+", q)}
    assert queried == {QUEUE_METRIC, KV_CACHE_METRIC} and queried <= V019_METRICS and not queried & REMOVED_METRICS


def test_keda_is_installed_from_its_pinned_chart_and_the_scaled_object_waits_for_it(autoscaled: ProgramRun) -> None:
    [release] = of_type(autoscaled, RELEASE)
    assert release.inputs["chart"] == "keda" and release.inputs["version"] == "2.20.2"
    assert release.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert release.inputs["namespace"] == "keda" and release.inputs["createNamespace"] is True
    [scaled] = of_type(autoscaled, SCALED_OBJECT)
    assert release.urn in scaled.dependencies


def test_keda_installed_skips_the_chart() -> None:
    raw = dict(read_stack_file(AUTOSCALE))
    raw["gpu-inference:kubernetes"] = {**raw["gpu-inference:kubernetes"], "kedaInstalled": True}
    config, secret_keys = engine_config(raw)
    program = run_program(PROJECT_DIR, "kubernetes-autoscale", config, secret_keys, "kubernetes", "tor1")
    assert not of_type(program, RELEASE)
    [scaled] = of_type(program, SCALED_OBJECT)
    assert not [d for d in scaled.dependencies if RELEASE in d]


def test_nginx_lists_every_possible_pod_and_prometheus_discovers_the_live_ones(autoscaled: ProgramRun) -> None:
    maps = {r.name: r for r in of_type(autoscaled, "kubernetes:core/v1:ConfigMap")}
    conf = maps["gpu-inference-nginx-conf"].inputs["data"]["nginx.conf"]
    assert all(f"vllm-{i}.vllm-pods.llm.svc.cluster.local:8000" in conf for i in range(4))
    assert "vllm-4." not in conf
    prom = yaml.safe_load(maps["gpu-inference-prometheus-conf"].inputs["data"]["prometheus.yml"])
    vllm = next(job for job in prom["scrape_configs"] if job["job_name"] == "vllm")
    assert "static_configs" not in vllm  # absent pods would be TargetDown below maxNodes
    assert vllm["dns_sd_configs"] == [{"names": ["_http._tcp.vllm-pods.llm.svc.cluster.local"], "type": "SRV",
                                       "refresh_interval": "30s"}]
    [relabel] = vllm["relabel_configs"]
    assert relabel["source_labels"] == ["__meta_dns_srv_record_target"] and relabel["target_label"] == "node"
    headless = next(r for r in autoscaled.recorded if r.name == "gpu-inference-vllm-pods")
    assert headless.inputs["spec"]["ports"][0]["name"] == "http"  # the SRV record's _http


def test_promtool_accepts_the_autoscaled_prometheus_config(tmp_path: Path) -> None:
    from test_validators import run, tool, write

    from gpu_inference.render.kubernetes import PROMETHEUS_CONF_DIR, PROMETHEUS_RULES_FILE, render_kubernetes
    from gpu_inference.stack import resolve_stack

    files = render_kubernetes(resolve_stack(load_stack_config(AUTOSCALE), "kubernetes-autoscale"))
    rules = write(tmp_path / "rules.yml", files["monitoring/rules/gpu-inference.yml"])
    text = files["monitoring/prometheus.yml"].replace(f"{PROMETHEUS_CONF_DIR}/{PROMETHEUS_RULES_FILE}", str(rules))
    assert "dns_sd_configs" in text
    result = run([tool("promtool"), "check", "config", str(write(tmp_path / "prometheus.yml", text))])
    assert result.returncode == 0, result.stdout + result.stderr
