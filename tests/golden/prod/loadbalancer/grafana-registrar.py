#!/usr/bin/env python3
"""gpu-inference-grafana-registrar: the monitoring host's `POST /grafana` makes the connection's source address
(a private one, never the body) nginx's Grafana upstream; `nginx -t` or the old include is back; reload.
Why and how: gpu_inference/render/grafana_proxy.py. Standard library only."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

REGISTER_PATH = "/grafana"


@dataclass(frozen=True)
class Settings:
    listen_host: str
    listen_port: int
    include_path: str
    grafana_port: int
    reload_cmd: tuple[str, ...]
    test_cmd: tuple[str, ...] = ()
    header: str = ""
    allow_loopback: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        cmds = {k: tuple(str(a) for a in data.get(k, ())) for k in ("reload_cmd", "test_cmd")}
        return cls(listen_host=str(data["listen_host"]), listen_port=int(data["listen_port"]),
                   include_path=str(data["include_path"]), grafana_port=int(data["grafana_port"]),
                   header=str(data.get("header", "")), allow_loopback=bool(data.get("allow_loopback", False)),
                   **cmds)  # fmt: skip


PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
LOOPBACK_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
REQUEST_TIMEOUT_SECONDS = 10


def registrable(address: str, *, allow_loopback: bool = False) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    networks = PRIVATE_NETWORKS + (LOOPBACK_NETWORKS if allow_loopback else ())
    return ip if any(ip in net for net in networks) else None


def render_include(settings: Settings, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    header = f"{settings.header}\n" if settings.header else ""
    return f"{header}server {host}:{settings.grafana_port};\n"


class Registrar:
    def __init__(self, settings: Settings, run: Callable[[Sequence[str]], int] | None = None,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.run = run or _run
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.lock = threading.Lock()
        self.applied: str | None = None

    def register(self, peer: str) -> tuple[int, str]:
        ip = registrable(peer, allow_loopback=self.settings.allow_loopback)
        if ip is None:
            self.log(f"refused a registration from {peer}: not a private address")
            return 403, f"refused: {peer} is not a private address"
        s = self.settings
        text = render_include(s, ip)
        with self.lock:
            old = _read(s.include_path)
            if old == text and self.applied == text:
                return 200, f"unchanged: Grafana at {ip}:{s.grafana_port}"
            _write_atomic(s.include_path, text)
            if s.test_cmd and self.run(s.test_cmd) != 0:
                if old is None:
                    os.unlink(s.include_path)
                else:
                    _write_atomic(s.include_path, old)
                self.log(f"nginx -t rejected Grafana at {ip}; the previous include is back")
                return 500, "nginx rejected the include"
            code = self.run(s.reload_cmd)
            if code != 0:
                self.log(f"reload ({' '.join(s.reload_cmd)}) exited {code}")
                return 500, "nginx reload failed"
            self.applied = text
        self.log(f"Grafana registered at {ip}:{s.grafana_port}; nginx reloaded")
        return 200, f"registered: Grafana at {ip}:{s.grafana_port}"


def make_server(registrar: Registrar) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS

        def do_POST(self) -> None:
            found = self.path == REGISTER_PATH
            status, message = registrar.register(self.client_address[0]) if found else (404, "not found")
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    s = registrar.settings
    return HTTPServer((s.listen_host, s.listen_port), Handler)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _run(argv: Sequence[str]) -> int:
    try:
        return subprocess.run(list(argv), check=False, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr, flush=True)
        return 127


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-inference-grafana-registrar")
    parser.add_argument("--config", required=True, help="JSON settings (listen_port, include_path, ...)")
    path = parser.parse_args(argv).config
    try:
        with open(path, encoding="utf-8") as handle:
            settings = Settings.from_json(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"gpu-inference-grafana-registrar: bad --config {path}: {exc}", file=sys.stderr)
        return 2
    print(f"gpu-inference-grafana-registrar: on {settings.listen_host}:{settings.listen_port}", file=sys.stderr, flush=True)
    make_server(Registrar(settings)).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
