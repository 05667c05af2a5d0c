#!/usr/bin/env python3
"""gpu-inference-grafana-registrar: points the load balancer's nginx /grafana/ at the monitoring host.

The monitoring host sends ``POST /grafana``; the connection's source address (never the body) becomes the one
``server`` line of nginx's Grafana upstream include, checked with ``nginx -t`` (the old one is put back if it
fails), then nginx reloads. Only private or loopback addresses are accepted; the cloud firewall admits the
monitoring host alone. Why: gpu_inference/render/grafana_proxy.py. Standard library only.
"""

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGISTER_PATH = "/grafana"


@dataclass(frozen=True)
class Settings:
    """What the daemon reads from its JSON file (keys as the field names)."""

    listen_host: str
    listen_port: int
    include_path: str
    grafana_port: int
    reload_cmd: tuple[str, ...]
    test_cmd: tuple[str, ...] = ()
    header: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(
            listen_host=str(data["listen_host"]),
            listen_port=int(data["listen_port"]),
            include_path=str(data["include_path"]),
            grafana_port=int(data["grafana_port"]),
            reload_cmd=tuple(str(a) for a in data["reload_cmd"]),
            test_cmd=tuple(str(a) for a in data.get("test_cmd", ())),
            header=str(data.get("header", "")),
        )


# Where a VPC's hosts can be: RFC 1918, the shared space AWS VPCs may also use (RFC 6598), IPv6 ULA (RFC 4193),
# loopback. Not ipaddress's is_private, which also counts documentation and benchmarking ranges as private.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "fc00::/7", "::1/128"))


def registrable(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer address as an IP when it may host Grafana (a private network or loopback), else None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip if any(ip in net for net in PRIVATE_NETWORKS) else None


def render_include(settings: Settings, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The upstream include naming Grafana at ``ip`` (an address nginx itself saw: no quoting is needed)."""
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    header = f"{settings.header}\n" if settings.header else ""
    return f"{header}server {host}:{settings.grafana_port};\n"


class Registrar:
    """Writes the include for a registered address, checks it, reloads nginx; one registration at a time."""

    def __init__(self, settings: Settings, run: Callable[[Sequence[str]], int] | None = None,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.run = run or _run
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.lock = threading.Lock()
        self.reloads = 0

    def register(self, peer: str) -> tuple[int, str]:
        """(HTTP status, one-line message) for a registration from ``peer``."""
        ip = registrable(peer)
        if ip is None:
            self.log(f"refused a registration from {peer}: not a private address")
            return 403, f"refused: {peer} is not a private address"
        s = self.settings
        text = render_include(s, ip)
        with self.lock:
            old = _read(s.include_path)
            if old == text:
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
            self.reloads += 1
        self.log(f"Grafana registered at {ip}:{s.grafana_port}; nginx reloaded")
        return 200, f"registered: Grafana at {ip}:{s.grafana_port}"


def make_server(registrar: Registrar) -> ThreadingHTTPServer:
    s = registrar.settings

    class Handler(BaseHTTPRequestHandler):
        server_version = "gpu-inference-grafana-registrar"

        def do_POST(self) -> None:
            if self.path != REGISTER_PATH:
                self._reply(404, "not found")
                return
            status, message = registrar.register(self.client_address[0])
            self._reply(status, message)

        def do_GET(self) -> None:
            self._reply(405, f"POST {REGISTER_PATH} only")

        def _reply(self, status: int, message: str) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the registrar logs what matters itself

    server = ThreadingHTTPServer((s.listen_host, s.listen_port), Handler)
    server.daemon_threads = True
    return server


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", required=True, help="JSON settings (listen_port, include_path, ...)")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as handle:
            settings = Settings.from_json(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"gpu-inference-grafana-registrar: bad --config {args.config}: {exc}", file=sys.stderr)
        return 2
    server = make_server(Registrar(settings))
    print(f"gpu-inference-grafana-registrar: listening on {settings.listen_host}:{settings.listen_port}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
