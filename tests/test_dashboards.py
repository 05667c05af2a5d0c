"""The Grafana dashboards: valid PromQL (promtool), the alert rules' thresholds, a sane JSON model, the doc in sync."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from render_fixtures import SCENARIOS, Scenario, amd, dev

from gpu_inference.gpu_vendor import AMD, NVIDIA, GpuVendor
from gpu_inference.render import dashboards as d
from gpu_inference.render.prometheus import alerts
from gpu_inference.stack import ResolvedStack

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "dashboards.md"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install -y $(cat .ci/validators.txt))")
    return path


def test_docs_dashboards_md_is_generated_from_the_specs() -> None:
    from scripts.update_dashboards_doc import expected

    assert DOC.read_text(encoding="utf-8") == expected(), (
        "docs/dashboards.md drifted from gpu_inference/render/dashboards.py: run "
        "`.venv/bin/python -m scripts.update_dashboards_doc`"
    )


def test_the_doc_lists_every_panel_and_query() -> None:
    text = DOC.read_text(encoding="utf-8")
    for _dash, panel, expr in d.panel_queries(dev().stack):
        assert f"**{panel}**" in text
        assert expr.replace("|", "\\|") in text


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_panel_query_is_valid_promql(scenario: str, tmp_path: Path) -> None:
    """promtool parses each query (as Grafana sends it) as a recording rule's expression."""
    stack = SCENARIOS[scenario]().stack
    queries = d.panel_queries(stack)
    assert len(queries) >= 20
    rules = [{"record": f"panel:query_{i}", "expr": d.concrete_query(q, "1m")} for i, (_, _, q) in enumerate(queries)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_panel_query(tmp_path: Path) -> None:
    """The check above can fail: a query with an unbalanced bracket is refused."""
    broken = d.concrete_query(d.panel_queries(dev().stack)[0][2], "1m").rstrip(")")
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": [{"record": "x:y", "expr": broken}]}]}))
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0


def test_every_query_filters_on_the_node_variable() -> None:
    for _dash, panel, expr in d.panel_queries(dev().stack):
        assert 'node=~"$node"' in expr, (panel, expr)


def _alert_threshold(expr: str) -> float:
    match = re.search(r"[<>]\s*([0-9.]+)\s*$", expr)
    assert match, expr
    return float(match.group(1))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_threshold_lines_are_the_alert_rules_values(scenario: str) -> None:
    stack = SCENARIOS[scenario]().stack
    rules = {a.name: a.expr for a in alerts(stack)}
    lines = {p.threshold.alert: p.threshold.value for spec in d.dashboards(stack) for p in spec.panels if p.threshold}
    assert set(lines) == set(d.alert_thresholds(stack))
    for alert, value in lines.items():
        assert _alert_threshold(rules[alert]) == pytest.approx(value), alert


def test_a_changed_threshold_moves_the_line() -> None:
    stack = dev().stack
    changed = stack.config.model_copy(update={
        "monitoring": stack.config.monitoring.model_copy(update={"kv_cache_usage_threshold": 0.77}),
    })
    moved = dataclasses.replace(stack, config=changed)
    text = d.dashboard_json(d.serving_dashboard(moved))
    panel = next(p for p in json.loads(text)["panels"] if p.get("title") == "KV cache usage")
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.77
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_dashboard_json_round_trips_through_the_sdk_model(scenario: str) -> None:
    files = SCENARIOS[scenario]().render()
    found = {rel for rel in files if rel.startswith("monitoring/dashboards/")}
    assert found == {"monitoring/dashboards/serving.json", "monitoring/dashboards/gpu-nodes.json"}
    for rel in found:
        model = json.loads(files[rel])
        parsed = d.validate_dashboard(model)
        assert json.loads(json.dumps(parsed, cls=JSONEncoder)) == model, rel
        assert model["uid"] and model["title"] and model["editable"] is False
        names = [v["name"] for v in model["templating"]["list"]]
        assert names == ["datasource", "node"]
        panels = [p for p in model["panels"] if p["type"] == "timeseries"]
        assert panels and all(p["targets"] for p in panels)
        assert all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"])
        ids = [p["id"] for p in model["panels"]]
        assert len(set(ids)) == len(ids) and 0 not in ids, ids
        # Grafana's grid is 24 columns wide: no panel may stick out.
        assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in model["panels"])


def test_serving_and_gpu_dashboards_cover_the_issue() -> None:
    stack = dev().stack
    serving = {p.title for p in d.serving_dashboard(stack).panels}
    gpu = {p.title for p in d.gpu_nodes_dashboard(stack).panels}
    assert {"Time to first token", "Inter-token latency", "End-to-end request latency", "Tokens per second",
            "Requests running vs waiting", "KV cache usage", "Preemptions per second"} <= serving
    assert {"GPU utilisation", "GPU framebuffer used", "GPU temperature", "GPU power draw", "Last XID error code",
            "CPU busy", "Memory used", "Model-cache disk free"} <= gpu


def _gpu_row(stack: ResolvedStack) -> list[d.PanelSpec]:
    return [p for r in d.gpu_nodes_dashboard(stack).rows if r.title == "GPUs" for p in r.panels]


def _metric_names(exprs: list[str]) -> set[str]:
    # Every name directly followed by a selector (the panels put one on each metric).
    return set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", " ".join(exprs)))


@pytest.mark.parametrize(("scenario", "vendor"), [(dev, NVIDIA), (amd, AMD)])
def test_gpu_panels_query_the_stack_vendors_exporter(scenario: Callable[[], Scenario], vendor: GpuVendor) -> None:
    """The GPU row reads exactly the names gpu_vendor.py gives the stack's exporter (the alerts' source)."""
    stack = scenario().stack
    m = vendor.exporter.metrics
    assert m is not None
    panels = {p.title: p for p in _gpu_row(stack)}
    exprs = [q.expr for p in panels.values() for q in p.queries]
    assert _metric_names(exprs) == {m.utilisation_percent, m.memory_used, m.temperature, m.power_watts,
                                    m.error_metric, *m.memory_series(0, m.memory_total)}
    assert panels["GPU temperature"].queries[0].expr == m.temperature + '{node=~"$node"}'
    assert m.error_panel_title in panels
    assert all(q.legend == "{{node}} GPU {{" + m.gpu_label + "}}" for p in panels.values() for q in p.queries)
    gpu_nodes = json.loads(scenario().render()["monitoring/dashboards/gpu-nodes.json"])
    assert vendor.exporter.container in gpu_nodes["description"]


def test_an_amd_stack_queries_no_dcgm_metric_and_keeps_the_host_panels() -> None:
    exprs = [q.expr for p in d.gpu_nodes_dashboard(amd().stack).panels for q in p.queries]
    assert not [e for e in exprs if "DCGM_" in e]
    assert "increase(amd_gpu_ecc_uncorrect_total" in " ".join(exprs)  # a counter: new errors in the interval
    assert {p.title for p in d.gpu_nodes_dashboard(amd().stack).rows[1].panels} == {
        p.title for p in d.gpu_nodes_dashboard(dev().stack).rows[1].panels}


def test_provisioning_documents_parse_and_point_at_the_local_prometheus() -> None:
    ds = yaml.safe_load(yaml.safe_dump(d.datasource_provisioning("http://localhost:9090")))
    assert ds["datasources"][0]["url"] == "http://localhost:9090"
    assert ds["datasources"][0]["uid"] == d.DATASOURCE_UID
    prov = yaml.safe_load(yaml.safe_dump(d.dashboard_provisioning()))
    assert prov["providers"][0]["options"]["path"] == d.DASHBOARDS_DIR
