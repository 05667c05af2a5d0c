"""Issue 16 on fixed machines: the ScaleOut / ScaleIn advisory alerts name the suggested nodeCount.

The rendered promtool tests (tests/golden, run by test_validators.test_promtool_test_rules for dev and prod)
cover the planner-capacity branch; here each alert is run through promtool on its own, with the count it
must name, in both branches (with the planner's per-node capacity, and the one-more / one-fewer fallback).
These tests fail on the code before issue 16 (no such alerts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from render_fixtures import SCENARIOS, kube
from test_validators import run, tool, write

import gpu_inference.planner as planner
from gpu_inference.render.kubernetes import render_kubernetes
from gpu_inference.render.prometheus import alert_rule_tests, alert_rules
from gpu_inference.stack import ResolvedStack


def rules_of(stack: ResolvedStack) -> dict[str, dict]:
    return {r["alert"]: r for r in yaml.safe_load(alert_rules(stack))["groups"][0]["rules"]}


def promtool_cases(stack: ResolvedStack, tmp_path: Path, only: str) -> str:
    """promtool test rules, the ``only`` alert's own case alone; returns its description when firing."""
    tests = yaml.safe_load(alert_rule_tests(stack))
    [case] = [c for c in tests["tests"] if c["name"].startswith(only)]
    tests["tests"] = [case]
    write(tmp_path / "gpu-inference.yml", alert_rules(stack))
    write(tmp_path / "t.yml", yaml.safe_dump(tests))
    result = run([tool("promtool"), "test", "rules", "t.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    [firing] = case["alert_rule_test"][1]["exp_alerts"]
    description: str = firing["exp_annotations"]["description"]
    return description


def test_scale_out_names_the_count_the_planner_capacity_gives(tmp_path: Path) -> None:
    stack = SCENARIOS["dev"]().stack
    cap = planner.node_capacity_requests(stack)
    assert cap is not None and cap >= 1
    rule = rules_of(stack)["ScaleOut"]
    assert f"/ {cap}" in rule["expr"] and rule["labels"]["severity"] == "info" and rule["for"] == "15m"
    text = promtool_cases(stack, tmp_path, "ScaleOut")
    assert "suggested gpu-inference:nodeCount: 2 (now 1)" in text


def test_scale_in_names_the_count_the_planner_capacity_gives(tmp_path: Path) -> None:
    stack = SCENARIOS["prod"]().stack
    assert stack.config.node_count == 3
    text = promtool_cases(stack, tmp_path, "ScaleIn")
    assert "suggested gpu-inference:nodeCount: 1 (now 3)" in text
    assert rules_of(stack)["ScaleIn"]["for"] == "1h"


def test_without_a_capacity_estimate_the_advice_is_one_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(planner, "node_capacity_requests", lambda _stack: None)
    stack = SCENARIOS["prod"]().stack
    out = promtool_cases(stack, tmp_path / "out", "ScaleOut")
    assert "suggested gpu-inference:nodeCount: 4 (now 3)" in out
    assert "sum(vllm:num_requests_waiting" in rules_of(stack)["ScaleOut"]["expr"]
    back = promtool_cases(stack, tmp_path / "in", "ScaleIn")
    assert "suggested gpu-inference:nodeCount: 2 (now 3)" in back


def test_one_node_gets_scale_out_only_and_kubernetes_no_advice() -> None:
    dev = rules_of(SCENARIOS["dev"]().stack)
    assert "ScaleOut" in dev and "ScaleIn" not in dev  # nodeCount 1: nothing to scale in
    rules = yaml.safe_load(render_kubernetes(kube())["monitoring/rules/gpu-inference.yml"])["groups"][0]["rules"]
    assert not {"ScaleOut", "ScaleIn"} & {r["alert"] for r in rules}  # the cluster's autoscalers, or nothing


def test_the_runbook_has_both_entries() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "runbooks.md").read_text()
    assert "## ScaleOut\n" in text and "## ScaleIn\n" in text
