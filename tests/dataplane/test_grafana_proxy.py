"""Grafana behind the load balancer's TLS (issue 17): the rendered nginx.conf on real nginx over HTTPS, the
shipped registrar daemon, the monitoring host's rendered registration command, and a Grafana stand-in, all on
loopback (127.0.0.0/8: the client, Grafana and the load balancer each on an address of their own).

- before the monitoring host registers, /grafana/ answers 503 "not registered yet" (nginx's fallback);
- the rendered `curl -X POST http://<lb>:9101/grafana` registers; nginx then proxies /grafana/ to the address the
  registration came from, the path unchanged (Grafana serve_from_sub_path) with the public Host, and Grafana
  Live's websocket headers on /grafana/api/live/;
- a client outside allowedCidrs gets 403 on /grafana/ while the API on the same port stays its own business;
- registering again from the same address changes nothing (no reload).

Every wait is bounded; the processes are stopped at the end.
"""

from __future__ import annotations

import http.client
import json
import shlex
import shutil
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.dataplane import harness
from tests.dataplane.harness import ManagedProcess, free_port, port_open, wait_until

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(harness.nginx_binary() is None or shutil.which("openssl") is None,
                       reason="nginx and openssl needed (apt-get install nginx openssl)"),
]

DOMAIN = "llm.example.com"
CLIENT = "127.0.0.2"  # inside allowedCidrs
STRANGER = "127.0.0.5"  # outside
LB = "127.0.0.4"  # where the registrar listens, on the rendered port
# The monitoring host's registration reaches 127.0.0.4 from 127.0.0.1 (the source Linux picks on lo), which is
# therefore where the Grafana stand-in listens.
GRAFANA_HOST = "127.0.0.1"


@dataclass
class FakeGrafana:
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                body = json.dumps({"database": "ok", "version": "stand-in"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((GRAFANA_HOST, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def _stack() -> Any:
    from gpu_inference.config import parse_stack_config
    from gpu_inference.stack import resolve_stack

    raw = {"provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": harness.MODEL,
           "monthlyBudgetUsd": 5000, "allowedCidrs": [f"{CLIENT}/32"], "loadBalancer": {"tlsDomain": DOMAIN}}
    return resolve_stack(parse_stack_config(raw, secret_keys=set()), name="grafanaproxy")


def _get(https_port: int, path: str, source: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the self-signed placeholder certificate
    conn = http.client.HTTPSConnection(harness.LOOPBACK, https_port, timeout=5, context=ctx, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": DOMAIN, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Any, int, FakeGrafana, ManagedProcess, Path]]:
    from gpu_inference.constants import GRAFANA_REGISTRAR_PORT
    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render.acme import placeholder_certificate
    from gpu_inference.render.lb_healthcheck import settings, upstream_include
    from gpu_inference.render.nginx import NginxPaths, nginx_conf

    if port_open(GRAFANA_REGISTRAR_PORT, LB):
        pytest.skip(f"{LB}:{GRAFANA_REGISTRAR_PORT} is taken")
    stack = _stack()
    assert gp.grafana_behind_lb(stack)
    prefix = tmp_path / "lb"
    harness.prepare_prefix(prefix)
    paths = NginxPaths.inside(prefix)
    made = subprocess.run(["bash", "-c", "set -euo pipefail; log() { :; }\n" + placeholder_certificate(DOMAIN, paths, 1)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    backends = [f"{harness.LOOPBACK}:{free_port()}"]
    Path(paths.upstream_include).write_text(upstream_include(settings(stack, backends, paths)))
    fallback = f"{harness.LOOPBACK}:{free_port()}"
    # The load balancer's first-boot Grafana include, as its cloud-init writes it.
    Path(paths.grafana_include).write_text(gp.placeholder_include(fallback))
    http_port, https_port = free_port(), free_port()
    conf = nginx_conf(stack, backends, listen=f"{harness.LOOPBACK}:{http_port}", prefix_paths=paths,
                      tls_listen=f"{harness.LOOPBACK}:{https_port}", upstream_include=True, fallback_listen=fallback)
    lb = harness.start_nginx(conf, prefix, http_port)
    grafana = FakeGrafana(free_port())
    grafana.start()
    # The shipped registrar, run as the load balancer's python3 runs it, reloading this nginx.
    registrar = gp.registrar_settings(paths, listen_host=LB, reload_cmd=lb.control_argv("-s", "reload"),
                                      test_cmd=lb.control_argv("-t", "-q"), grafana_port=grafana.port,
                                      allow_loopback=True)  # every address here is a loopback one
    config = prefix / "grafana-registrar.json"
    config.write_text(gp.registrar_settings_json(registrar))
    script = prefix / "grafana-registrar.py"
    script.write_text(gp.registrar_script())
    import sys

    proc = ManagedProcess("grafana-registrar", [sys.executable, str(script), "--config", str(config)], cwd=prefix,
                          log_path=prefix / "logs" / "grafana-registrar.log")  # fmt: skip
    try:
        wait_until(lambda: not proc.alive() or port_open(GRAFANA_REGISTRAR_PORT, LB), 10, what="the registrar")
        assert proc.alive(), proc.log_tail()
        yield paths, https_port, grafana, proc, Path(paths.grafana_include)
    finally:
        proc.stop()
        grafana.stop()
        lb.stop()


def _register() -> str:
    """The monitoring host's registration, its rendered ExecStart run verbatim (curl), else the same request."""
    from gpu_inference.render import grafana_proxy as gp

    service, _timer = gp.register_units(LB)
    (exec_start,) = [line.removeprefix("ExecStart=") for line in service.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start)
    if shutil.which("curl"):
        argv[0] = shutil.which("curl") or argv[0]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout
    url = argv[-1]
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as response:
        return response.read().decode()


def test_grafana_is_served_over_the_load_balancers_tls_once_the_monitoring_host_registers(proxied) -> None:  # type: ignore[no-untyped-def]
    from gpu_inference.render import grafana_proxy as gp

    paths, https_port, grafana, registrar, include = proxied
    status, text = _get(https_port, "/grafana/api/health", CLIENT)
    assert (status, text.strip()) == (503, gp.UNREGISTERED_MESSAGE)
    assert _get(https_port, "/grafana/api/health", STRANGER)[0] == 403
    assert not grafana.seen

    assert _register().startswith("registered: Grafana at 127.0.0.1")
    assert include.read_text().splitlines()[-1] == f"server {GRAFANA_HOST}:{grafana.port};"
    # nginx -s reload returns before new workers serve: poll, bounded.
    wait_until(lambda: _get(https_port, "/grafana/api/health", CLIENT)[0] == 200, 10, interval=0.1,
               what="nginx to proxy /grafana/ after the registration")
    status, text = _get(https_port, "/grafana/api/health", CLIENT)
    assert status == 200 and json.loads(text)["database"] == "ok"
    seen = grafana.seen[-1]
    # serve_from_sub_path: Grafana gets the path with its /grafana/ prefix, and the public Host.
    assert seen["path"] == "/grafana/api/health"
    assert seen["headers"]["host"] == DOMAIN
    assert seen["headers"]["x-forwarded-proto"] == "https"

    # Grafana Live: the websocket upgrade headers are passed on.
    _get(https_port, "/grafana/api/live/ws", CLIENT, {"Upgrade": "websocket", "Connection": "Upgrade"})
    live = grafana.seen[-1]
    assert live["path"] == "/grafana/api/live/ws"
    assert live["headers"].get("upgrade") == "websocket" and live["headers"].get("connection", "").lower() == "upgrade"

    # Outside allowedCidrs: refused by nginx, Grafana never sees the request.
    before = len(grafana.seen)
    assert _get(https_port, "/grafana/login", STRANGER)[0] == 403
    assert len(grafana.seen) == before

    # Registering again from the same address: nothing to change, no reload.
    assert _register().startswith("unchanged:")
    assert registrar.log_tail().count("nginx reloaded") == 1

    # Grafana's requests (served, refused, unregistered) go to their own log: the API's log is what mtail counts.
    api_log = Path(paths.access_log).read_text() if Path(paths.access_log).exists() else ""
    assert "/grafana/" not in api_log, api_log
    grafana_log = Path(paths.grafana_access_log).read_text()
    for line in ("GET /grafana/api/health HTTP/1.1\" 503", "GET /grafana/login HTTP/1.1\" 403",
                 "GET /grafana/api/health HTTP/1.1\" 200"):  # fmt: skip
        assert line in grafana_log, grafana_log


def test_the_registrar_refuses_a_public_address_and_keeps_nginx_valid(tmp_path: Path) -> None:
    """The daemon in-process (the same code the load balancer runs): a public peer is refused, an include nginx
    rejects is rolled back."""
    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render import grafana_registrar_agent as agent
    from gpu_inference.render.nginx import NginxPaths

    paths = NginxPaths.inside(tmp_path)
    calls: list[tuple[str, ...]] = []
    verdict = {"test": 0}

    def run(argv: Any) -> int:
        calls.append(tuple(argv))
        return verdict["test"] if tuple(argv) == ("nginx", "-t", "-q") else 0

    registrar = agent.Registrar(gp.registrar_settings(paths), run=run, log=lambda _m: None)
    # Loopback too: on the load balancer a local process could otherwise point /grafana/ at its own listener.
    for public in ("203.0.113.9", "8.8.8.8", "0.0.0.0", "169.254.169.254", "2001:db8::1", "fe80::1%eth0", "not-an-ip",
                   "127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"):
        assert registrar.register(public)[0] == 403, public
    assert not Path(paths.grafana_include).exists() and not calls
    Path(paths.grafana_include).write_text("server 10.0.0.7:3000;\n")
    verdict["test"] = 1
    assert registrar.register("10.0.0.8")[0] == 500
    assert Path(paths.grafana_include).read_text() == "server 10.0.0.7:3000;\n"  # the old one is back
    assert ("systemctl", "reload", "nginx.service") not in calls
    verdict["test"] = 0
    assert registrar.register("::ffff:10.0.0.8") == (200, "registered: Grafana at 10.0.0.8:3000")
    assert Path(paths.grafana_include).read_text().endswith("server 10.0.0.8:3000;\n")
    assert calls[-1] == ("systemctl", "reload", "nginx.service")


def test_a_registration_whose_reload_failed_is_applied_again(tmp_path: Path) -> None:
    """The include on disk is not what nginx serves until a reload succeeded: the next registration from the same
    address tests and reloads again instead of answering "unchanged"."""
    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render import grafana_registrar_agent as agent
    from gpu_inference.render.nginx import NginxPaths

    paths = NginxPaths.inside(tmp_path)
    Path(paths.grafana_include).write_text("server 127.0.0.1:9;\n")
    reloads = {"ok": False, "count": 0}

    def run(argv: Any) -> int:
        if tuple(argv) == gp.RELOAD_COMMAND:
            reloads["count"] += 1
            return 0 if reloads["ok"] else 1
        return 0

    registrar = agent.Registrar(gp.registrar_settings(paths), run=run, log=lambda _m: None)
    assert registrar.register("10.0.0.8") == (500, "nginx reload failed")
    reloads["ok"] = True
    assert registrar.register("10.0.0.8") == (200, "registered: Grafana at 10.0.0.8:3000")
    assert reloads["count"] == 2
    assert registrar.register("10.0.0.8")[1].startswith("unchanged:")
    assert reloads["count"] == 2
    # A restarted daemon has applied nothing yet: its first registration reloads even if the file matches.
    again = agent.Registrar(gp.registrar_settings(paths), run=run, log=lambda _m: None)
    assert again.register("10.0.0.8")[0] == 200 and reloads["count"] == 3


def test_loopback_registers_only_when_the_settings_allow_it() -> None:
    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render import grafana_registrar_agent as agent
    from gpu_inference.render.nginx import NginxPaths

    shipped = agent.Settings.from_json(json.loads(gp.registrar_settings_json(gp.registrar_settings(NginxPaths()))))
    assert shipped.allow_loopback is False
    assert agent.registrable("127.0.0.1") is None and agent.registrable("10.1.2.3") is not None
    assert agent.registrable("127.0.0.1", allow_loopback=True) is not None
    # The server's handler carries the request timeout (a stalled client is dropped after it), and the server
    # spawns no thread per connection.
    from socketserver import ThreadingMixIn

    server = agent.make_server(agent.Registrar(gp.registrar_settings(NginxPaths(), listen_host="127.0.0.1", listen_port=0)))
    try:
        assert server.RequestHandlerClass.timeout == agent.REQUEST_TIMEOUT_SECONDS  # type: ignore[attr-defined]
        assert not isinstance(server, ThreadingMixIn)
    finally:
        server.server_close()


def test_the_shipped_registrar_is_the_module_without_its_comments() -> None:
    import ast

    from gpu_inference.render import grafana_proxy as gp
    from gpu_inference.render import grafana_registrar_agent as agent

    source = Path(agent.__file__).read_text(encoding="utf-8")
    shipped = gp.registrar_script()
    assert shipped.startswith("#!/usr/bin/env python3\n")
    assert ast.dump(ast.parse(shipped)) == ast.dump(ast.parse(source))
    assert len(shipped) < len(source)
