"""The LB's active health checker: its decisions (fall/rise, reload only on change, nginx -t guard), its
probe against real sockets (a hung server), and what the renderer ships for it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from render_fixtures import API_KEY, prod

from gpu_inference.render import lb_healthcheck as rendered
from gpu_inference.render import lb_healthcheck_agent as agent
from gpu_inference.render.lb_healthcheck_agent import Checker, NodeState, Settings
from gpu_inference.render.nginx import NginxPaths

A, B = "10.0.1.2:8000", "10.0.1.3:8000"


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    base = {
        "nodes": [{"addr": A, "server": f"server {A} max_fails=2 fail_timeout=10s"},
                  {"addr": B, "server": f"server {B} max_fails=2 fail_timeout=10s"}],
        "include_path": str(tmp_path / "upstream.conf"),
        "reload_cmd": ["reload"],
        "test_cmd": ["test"],
        "fall": 3,
        "rise": 2,
    }  # fmt: skip
    base.update(changes)
    return Settings.from_json(base)


class Recorder:
    """Stands in for subprocess: records commands, answers with the configured exit codes."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.codes = codes or {}

    def __call__(self, argv: Sequence[str]) -> int:
        self.calls.append(argv[0])
        return self.codes.get(argv[0], 0)


def checker(tmp_path: Path, run: Recorder, **changes: object) -> Checker:
    s = make_settings(tmp_path, **changes)
    Path(s.include_path).write_text(agent.render_include(s, {A: True, B: True}))
    return Checker(s, run=run, log=lambda _msg: None)


def down(tmp_path: Path) -> set[str]:
    text = (tmp_path / "upstream.conf").read_text()
    return {addr for addr in (A, B) if f"server {addr} max_fails=2 fail_timeout=10s down;" in text}


def test_node_state_needs_fall_failures_in_a_row_and_rise_passes_back() -> None:
    st = NodeState(up=True)
    assert [st.observe(False, 3, 2) for _ in range(2)] == [False, False] and st.up
    assert not st.observe(True, 3, 2) and st.streak == 0  # one good answer resets the count
    assert [st.observe(False, 3, 2) for _ in range(3)] == [False, False, True] and not st.up
    assert [st.observe(True, 3, 2) for _ in range(2)] == [False, True] and st.up


def test_reload_only_when_membership_changes(tmp_path: Path) -> None:
    run = Recorder()
    c = checker(tmp_path, run)
    for _ in range(5):
        assert not c.step({A: True, B: True})
    assert run.calls == [], "reloaded although nothing changed"
    assert [c.step({A: False, B: True}) for _ in range(3)] == [False, False, True]
    assert down(tmp_path) == {A} and run.calls == ["test", "reload"]
    for _ in range(4):
        assert not c.step({A: False, B: True})
    assert run.calls == ["test", "reload"]
    assert [c.step({A: True, B: True}) for _ in range(2)] == [False, True]
    assert down(tmp_path) == set() and run.calls == ["test", "reload"] * 2


def test_every_node_down_keeps_each_server_line(tmp_path: Path) -> None:
    """nginx refuses an upstream without servers: all nodes out means all marked down (the backup answers)."""
    c = checker(tmp_path, Recorder())
    for _ in range(3):
        c.step({A: False, B: False})
    lines = [line for line in (tmp_path / "upstream.conf").read_text().splitlines() if line.startswith("server ")]
    assert lines == [f"server {A} max_fails=2 fail_timeout=10s down;", f"server {B} max_fails=2 fail_timeout=10s down;"]


def test_rejected_config_is_rolled_back_and_not_reloaded(tmp_path: Path) -> None:
    run = Recorder({"test": 1})
    c = checker(tmp_path, run)
    before = (tmp_path / "upstream.conf").read_text()
    for _ in range(3):
        assert not c.step({A: False, B: True})
    assert (tmp_path / "upstream.conf").read_text() == before
    assert "reload" not in run.calls


def test_failed_reload_is_retried(tmp_path: Path) -> None:
    run = Recorder({"reload": 1})
    c = checker(tmp_path, run)
    for _ in range(3):
        c.step({A: False, B: True})
    assert run.calls.count("reload") == 1 and c.reload_pending
    run.codes["reload"] = 0
    assert c.step({A: False, B: True}) and not c.reload_pending
    assert run.calls.count("reload") == 2


def test_restart_keeps_the_state_the_include_says(tmp_path: Path) -> None:
    """A restarted checker starts from the file: a node marked down stays down until it passes `rise` probes."""
    s = make_settings(tmp_path)
    Path(s.include_path).write_text(agent.render_include(s, {A: False, B: True}))
    run = Recorder()
    c = Checker(s, run=run, log=lambda _msg: None)
    assert not c.states[A].up and c.states[B].up
    assert not c.step({A: True, B: True}) and run.calls == []
    assert c.step({A: True, B: True}) and down(tmp_path) == set()


def test_missing_include_is_written_and_nginx_reloaded(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    run = Recorder()
    c = Checker(s, run=run, log=lambda _msg: None)
    assert c.step({A: True, B: True}) and run.calls == ["test", "reload"]
    assert down(tmp_path) == set()


@pytest.mark.parametrize("bad", [{"nodes": []}, {"fall": 0}, {"interval": 0}, {"timeout": -1}])
def test_bad_settings_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_settings(tmp_path, **bad)


def test_main_exits_2_on_bad_settings(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]")
    result = subprocess.run([sys.executable, rendered.agent.__file__, "--config", str(tmp_path / "bad.json")],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 2 and "bad settings" in result.stderr and "Traceback" not in result.stderr


# ---- the probe on real sockets ------------------------------------------------------------------


@pytest.fixture
def health_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A loopback HTTP server whose /health answers the status in the returned dict."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def test_probe_passes_only_on_200(health_server: tuple[str, dict[str, int]]) -> None:
    addr, state = health_server
    assert agent.probe(addr, "/health", 2.0)
    state["status"] = 503
    assert not agent.probe(addr, "/health", 2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
    assert not agent.probe(closed, "/health", 2.0)


def test_probe_round_gives_up_on_a_hung_node_after_the_timeout(tmp_path: Path,
                                                               health_server: tuple[str, dict[str, int]]) -> None:  # fmt: skip
    """A server that accepts and never answers fails its probe within `timeout`, and does not hold up the
    probe of a healthy node in the same round."""
    healthy, _ = health_server
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        hung_addr = f"127.0.0.1:{hung.getsockname()[1]}"
        s = Settings.from_json({
            "nodes": [{"addr": hung_addr, "server": f"server {hung_addr}"}, {"addr": healthy, "server": f"server {healthy}"}],
            "include_path": str(tmp_path / "u.conf"), "reload_cmd": ["true"], "timeout": 0.5,
        })  # fmt: skip
        c = Checker(s, run=Recorder(), log=lambda _msg: None)
        t0 = time.monotonic()
        results = c.probe_all()
        elapsed = time.monotonic() - t0
    assert results == {hung_addr: False, healthy: True}
    assert elapsed < 1.5, f"a probe round with a hung node took {elapsed:.2f}s (timeout 0.5 s)"


# ---- what the renderer ships -------------------------------------------------------------------


def test_rendered_settings_match_the_nginx_server_lines() -> None:
    s = prod()
    backends = [f"{a}:8000" for a in s.node_addresses]
    checks = rendered.settings(s.stack, backends)
    assert Settings.from_json(json.loads(rendered.settings_json(checks))) == checks
    assert [addr for addr, _ in checks.nodes] == backends
    assert checks.include_path == NginxPaths().upstream_include
    assert checks.reload_cmd == ("systemctl", "reload", "nginx.service")
    include = rendered.upstream_include(checks)
    lb = s.stack.config.load_balancer
    for b in backends:
        assert f"server {b} max_fails={lb.max_fails} fail_timeout={lb.fail_timeout_seconds}s;" in include
    assert "down" not in include.replace("marked down", "")  # first boot: every node in rotation


def test_hung_node_bound_is_within_15_seconds() -> None:
    # The arithmetic the constants promise; the data-plane test measures it on real nginx.
    assert rendered.worst_case_exit_seconds() <= 15 - 1


def test_lb_cloud_init_installs_and_starts_the_checker() -> None:
    import yaml

    from gpu_inference.render import load_balancer_cloud_init

    s = prod()
    doc = yaml.safe_load(load_balancer_cloud_init(s.stack, [f"{a}:8000" for a in s.node_addresses], API_KEY))
    files = {f["path"]: f for f in doc["write_files"]}
    assert files[rendered.LB_HEALTHCHECK_PATH]["content"] == rendered.agent_script()
    assert files[rendered.LB_HEALTHCHECK_PATH]["permissions"] == "0755"
    assert "python3" in doc["packages"]
    assert f"ExecStart=/usr/bin/python3 {rendered.LB_HEALTHCHECK_PATH} --config {rendered.LB_HEALTHCHECK_CONFIG}" in (
        files[f"/etc/systemd/system/{rendered.LB_HEALTHCHECK_UNIT}"]["content"])
    assert f"include {NginxPaths().upstream_include};" in files["/etc/nginx/nginx.conf"]["content"]
    assert NginxPaths().upstream_include in files
    bootstrap = files[doc["runcmd"][0][0]]["content"]
    assert bootstrap.index("systemctl restart nginx.service") < bootstrap.index(
        f"systemctl restart {rendered.LB_HEALTHCHECK_UNIT}")
