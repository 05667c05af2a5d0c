"""mtail on the load balancer: its program compiles and counts the log lines the rendered nginx.conf writes,
its unit passes systemd-analyze, Prometheus scrapes it, and only Prometheus may reach its port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from render_fixtures import SCENARIOS, dev
from test_validators import run, systemd_root, systemd_verify, tool

from gpu_inference.constants import MTAIL_PORT
from gpu_inference.render import nginx_metrics as m

# Lines in nginx.py's `upstream` log_format: a success, a 502 after two tries, a 401 refused at the edge.
LOG = "".join(f"127.0.0.1 [2026-12-02T17:40:0{i}+00:00] {line}\n" for i, line in enumerate((
    '"POST /v1/chat/completions HTTP/1.1" 200 1234 rt=0.532 upstream=10.0.0.2:8000 ustatus=200 urt=0.530 uct=0.001',
    '"POST /v1/chat/completions HTTP/1.1" 502 157 rt=0.004 upstream=10.0.0.2:8000, 10.0.0.3:8000 ustatus=502, 502 '
    "urt=0.002, 0.001 uct=0.001, 0.001",
    '"GET /v1/models HTTP/1.1" 401 0 rt=0.000 upstream=- ustatus=- urt=- uct=-',
    '"POST /v1/completions HTTP/1.1" 200 99 rt=1.001 upstream=10.0.0.3:8000 ustatus=200 urt=1.000 uct=0.001',
)))


def check_mtail_program(text: str, tmp_path: Path) -> None:
    """`mtail -compile_only`: the program parses and type-checks."""
    progs = tmp_path / "progs"
    progs.mkdir(parents=True, exist_ok=True)
    (progs / m.MTAIL_PROGRAM_FILE).write_text(text)
    result = run([tool("mtail"), "-compile_only", "-progs", str(progs), "-logtostderr"])
    assert result.returncode == 0, result.stdout + result.stderr


def verify_mtail_unit(tmp_path: Path, unit: str) -> subprocess.CompletedProcess[str]:
    root = systemd_root(tmp_path, {m.MTAIL_UNIT: unit, "nginx.service": "[Unit]\nDescription=stub\n[Service]\n"
                                   "ExecStart=/usr/bin/sh\n"}, {"/usr/bin/mtail": "#!/bin/sh\nexit 0\n"})
    return systemd_verify(root, [m.MTAIL_UNIT])


def _one_shot(program: str, log: str, tmp_path: Path) -> dict[str, float]:
    progs = tmp_path / "progs"
    progs.mkdir(parents=True, exist_ok=True)
    (progs / m.MTAIL_PROGRAM_FILE).write_text(program)
    (tmp_path / "access.log").write_text(log)
    result = run([tool("mtail"), "-one_shot", "-one_shot_format", "prometheus", "-progs", str(progs),
                  "-logs", str(tmp_path / "access.log"), "-logtostderr"])
    assert result.returncode == 0, result.stderr
    counts: dict[str, float] = {}
    for line in result.stdout.splitlines():
        if line.startswith("nginx_http_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = float(line.rsplit(" ", 1)[1])
    return counts


def test_mtail_program_compiles(tmp_path: Path) -> None:
    check_mtail_program(m.mtail_program(), tmp_path)


def test_mtail_compile_fails_on_a_broken_program(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        check_mtail_program(m.mtail_program().replace("counter ", "countr "), tmp_path)


def test_mtail_counts_requests_by_status(tmp_path: Path) -> None:
    assert _one_shot(m.mtail_program(), LOG, tmp_path) == {"200": 2, "401": 1, "502": 1}


def test_mtail_pattern_matches_the_rendered_log_format() -> None:
    """The program's regex and nginx.conf's log_format are written in two places: keep them in step."""
    from gpu_inference.render.nginx import nginx_conf

    conf = nginx_conf(dev().stack, ["10.0.0.2:8000"])
    assert "log_format upstream '$remote_addr [$time_iso8601] \"$request\" $status $body_bytes_sent '" in conf


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_mtail_unit_passes_systemd_analyze_verify(scenario: str, tmp_path: Path) -> None:
    unit = SCENARIOS[scenario]().render()[f"loadbalancer/{m.MTAIL_UNIT}"]
    result = verify_mtail_unit(tmp_path / "ok", unit)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    broken = verify_mtail_unit(tmp_path / "broken", unit.replace("DynamicUser=", "DynamikUser="))
    assert "DynamikUser" in broken.stderr


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_load_balancer_runs_mtail_and_prometheus_scrapes_it(scenario: str) -> None:
    s = SCENARIOS[scenario]()
    files = s.render()
    lb = yaml.safe_load(files["loadbalancer/cloud-init.yaml"])
    assert "mtail" in lb["packages"]
    written = {f["path"]: f["content"] for f in lb["write_files"]}
    assert written[f"{m.MTAIL_PROGS_DIR}/{m.MTAIL_PROGRAM_FILE}"] == files["loadbalancer/nginx.mtail"]
    assert ["systemctl", "enable", "--now", m.MTAIL_UNIT] in lb["runcmd"]
    prom = yaml.safe_load(files["monitoring/prometheus.yml"])
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "nginx"]
    assert job["static_configs"] == [{"targets": [f"{s.lb_address}:{MTAIL_PORT}"], "labels": {"node": "loadbalancer"}}]


def test_mtail_port_only_from_prometheus() -> None:
    from test_program import firewalls, ingress
    from test_program import run as run_program

    program = run_program("dev")
    opened = [(r.name, cidrs, peers) for r in firewalls(program) for low, high, cidrs, peers in ingress(r)
              if low <= MTAIL_PORT <= high]
    assert len(opened) == 1, opened
    name, cidrs, peers = opened[0]
    assert name.endswith("-lb-fw") and cidrs == set() and len(peers) == 1, opened


def _mtail_down_during_a_load(stack_name: str) -> str:
    """promtool cases: node-0's vLLM loads for 10 minutes after a deploy (never up yet) while the load
    balancer's mtail is down: TargetDown must name mtail's target (job nginx) and only it."""
    lb = {"job": "nginx", "instance": f"10.0.0.10:{MTAIL_PORT}", "node": "loadbalancer"}
    down_for = "1m"
    doc = {
        "rule_files": ["gpu-inference.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "name": f"{stack_name}: the LB's mtail down during a GPU node's loading window still fires",
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="vllm",instance="10.0.0.2:8000",node="node-0"}', "values": "0x10"},
                {"series": 'up{job="dcgm",instance="10.0.0.2:9400",node="node-0"}', "values": "0x10"},
                {"series": 'up{job="node",instance="10.0.0.2:9100",node="node-0"}', "values": "1x10"},
                {"series": 'up{job="node",instance="10.0.0.10:9100",node="loadbalancer"}', "values": "1x10"},
                {"series": 'up{' + ",".join(f'{k}="{v}"' for k, v in lb.items()) + '}', "values": "0x10"},
            ],
            "alert_rule_test": [{
                "eval_time": "5m",
                "alertname": "TargetDown",
                "exp_alerts": [{
                    "exp_labels": {**lb, "severity": "critical"},
                    "exp_annotations": {
                        "summary": "nginx target on loadbalancer is down",
                        "description": f"Prometheus cannot scrape nginx at {lb['instance']} (loadbalancer) for "
                                       f"{down_for}.",
                        "runbook_url": "docs/runbooks.md#targetdown",
                    },
                }],
            }],
        }],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _promtool_rules_test(tmp_path: Path, rules: str, tests: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "gpu-inference.yml").write_text(rules)
    (tmp_path / "gpu-inference.test.yml").write_text(tests)
    return run([tool("promtool"), "test", "rules", "gpu-inference.test.yml"], cwd=tmp_path)


def test_mtail_down_fires_target_down_inside_a_gpu_nodes_loading_window(tmp_path: Path) -> None:
    """main's loading window quiets only GPU-node targets (those beside a vLLM target): the load balancer's
    mtail is not one, so its target going down pages as before while a node loads."""
    from gpu_inference.render.prometheus import alert_rules

    stack = dev().stack
    assert stack.config.monitoring.target_down_for == "1m"
    result = _promtool_rules_test(tmp_path, alert_rules(stack), _mtail_down_during_a_load("dev"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_window_over_every_target_would_hide_mtail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a loading window that quiets every never-up target (not only a GPU node's) fails."""
    import gpu_inference.render.prometheus as prom

    stack = dev().stack
    window = prom.loading_window(stack)
    monkeypatch.setattr(prom, "target_down_expr", lambda s: (
        f"up == 0 unless on (job, instance, node) (max_over_time(up[{window}]) == 0 "
        f"unless on (job, instance, node) (up offset {window}))"))
    result = _promtool_rules_test(tmp_path, prom.alert_rules(stack), _mtail_down_during_a_load("dev"))
    assert result.returncode != 0 and "mtail down during" in result.stdout + result.stderr
