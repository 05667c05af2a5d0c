"""The loading window: TargetDown and VllmMetricsAbsent stay quiet while vLLM loads a model after a deploy or a
restart, and still fire for a node dead after it was serving (gpu_inference/render/prometheus.py, "The loading
window"). Run through promtool for a droplet stack (8B), the AWS 70B stack and a Kubernetes pool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import gpu_inference.render.prometheus as prom
from gpu_inference.render.healthcheck import grace_seconds
from gpu_inference.stack import ResolvedStack
from tests.render_fixtures import dev, kube, prod

STACKS = {"dev": lambda: dev().stack, "prod-70b": lambda: prod().stack, "kubernetes": kube}
# The rule expressions before the loading window existed.
OLD_TARGET_DOWN = "up == 0"
OLD_METRICS_ABSENT = 'absent(vllm:num_requests_running{job="vllm"})'

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)


def _promtool_test(tmp_path: Path, rules: str, tests: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "gpu-inference.yml").write_text(rules)
    (tmp_path / "gpu-inference.test.yml").write_text(tests)
    return subprocess.run(["promtool", "test", "rules", "gpu-inference.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def _loading_case_names(stack: ResolvedStack) -> list[str]:
    doc = yaml.safe_load(prom.alert_rule_tests(stack))
    return [c["name"] for c in doc["tests"] if c["name"].startswith(prom.LOADING_CASE_PREFIX)]


def test_the_window_is_the_health_checks_grace() -> None:
    for make in STACKS.values():
        stack = make()
        assert prom.duration_seconds(prom.loading_window(stack)) == grace_seconds(stack)
        assert prom.loading_window(stack) in prom.target_down_expr(stack)
    # A 70B model gets a longer window than an 8B one (more weights to download and load).
    assert prom.duration_seconds(prom.loading_window(prod().stack)) > prom.duration_seconds(prom.loading_window(dev().stack))


def test_every_stack_has_the_loading_cases() -> None:
    for make in STACKS.values():
        names = _loading_case_names(make())
        assert len(names) == 4, names
        assert any(f"loads for {prom.LOAD_MINUTES} minutes raises nothing" in n for n in names)


@needs_promtool
@pytest.mark.parametrize("name", list(STACKS))
def test_a_load_raises_nothing_and_a_dead_node_fires(name: str, tmp_path: Path) -> None:
    stack = STACKS[name]()
    result = _promtool_test(tmp_path, prom.alert_rules(stack), prom.alert_rule_tests(stack))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("name", list(STACKS))
def test_the_old_rules_page_during_a_load(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same promtool cases against `up == 0` and a bare `absent(...)`: the load cases must fail."""
    stack = STACKS[name]()
    tests = prom.alert_rule_tests(stack)
    monkeypatch.setattr(prom, "target_down_expr", lambda s: OLD_TARGET_DOWN)
    monkeypatch.setattr(prom, "metrics_absent_expr", lambda s: OLD_METRICS_ABSENT)
    result = _promtool_test(tmp_path, prom.alert_rules(stack), tests)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "a first start that loads for 10 minutes raises nothing" in out, out
    assert "a restart that reloads for 10 minutes raises nothing" in out, out
