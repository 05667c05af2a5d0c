#!/usr/bin/env python3
"""gpu-inference-lb-healthcheck: active health checks of the vLLM nodes behind the load balancer's nginx.

Open-source nginx only checks passively (max_fails counts failed requests), so a node that accepts
connections but never answers keeps receiving requests until each one hits proxy_read_timeout. This
daemon probes every node's /health every few seconds, marks a node `down` in nginx's upstream include
after `fall` failures in a row, puts it back after `rise` successes, and reloads nginx only when that
file changes. A reload is graceful: old workers finish their requests, new ones take new connections
(https://nginx.org/en/docs/control.html, "Changing Configuration").

Standard library only: the load balancer runs this file with its python3 as it is shipped (rendered by
gpu_inference/render/lb_healthcheck.py, which also writes its JSON settings).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DOWN_SUFFIX = " down;"


@dataclass(frozen=True)
class Settings:
    """What the daemon reads from its JSON file (keys as the field names)."""

    nodes: tuple[tuple[str, str], ...]
    """(host:port probed, the node's nginx `server ...` line without its `;`), in upstream order."""
    include_path: str
    reload_cmd: tuple[str, ...]
    test_cmd: tuple[str, ...] = ()
    header: str = ""
    health_path: str = "/health"
    interval: float = 2.0
    timeout: float = 2.0
    fall: int = 3
    rise: int = 2

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        nodes = tuple((str(n["addr"]), str(n["server"])) for n in data["nodes"])
        if not nodes:
            raise ValueError("no nodes to check")
        settings = cls(
            nodes=nodes,
            include_path=str(data["include_path"]),
            reload_cmd=tuple(str(a) for a in data["reload_cmd"]),
            test_cmd=tuple(str(a) for a in data.get("test_cmd", ())),
            header=str(data.get("header", "")),
            health_path=str(data.get("health_path", "/health")),
            interval=float(data.get("interval", 2.0)),
            timeout=float(data.get("timeout", 2.0)),
            fall=int(data.get("fall", 3)),
            rise=int(data.get("rise", 2)),
        )
        if settings.interval <= 0 or settings.timeout <= 0 or settings.fall < 1 or settings.rise < 1:
            raise ValueError("interval and timeout must be > 0, fall and rise >= 1")
        return settings


def render_include(settings: Settings, up: dict[str, bool]) -> str:
    """The upstream include: every node's server line, `down` when out of rotation. Never empty, so
    nginx always starts; with every node down, the upstream's backup server answers (JSON 503)."""
    lines = [settings.header] if settings.header else []
    lines += [f"{server}{';' if up.get(addr, True) else DOWN_SUFFIX}" for addr, server in settings.nodes]
    return "\n".join(lines) + "\n"


def parse_include(settings: Settings, text: str) -> dict[str, bool]:
    """Which nodes an existing include has in rotation (a node it does not mention counts as in)."""
    up = {addr: True for addr, _ in settings.nodes}
    for addr, server in settings.nodes:
        if f"{server}{DOWN_SUFFIX}" in text.splitlines():
            up[addr] = False
    return up


@dataclass
class NodeState:
    up: bool
    streak: int = 0
    """Probes in a row whose result disagrees with `up`."""

    def observe(self, ok: bool, fall: int, rise: int) -> bool:
        """Count one probe result; True when the node changes side (out after `fall` failures, in after `rise`)."""
        if ok == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= (rise if ok else fall):
            self.up, self.streak = ok, 0
            return True
        return False


def probe(addr: str, path: str, timeout: float) -> bool:
    """GET http://addr/path: healthy only on 200 within `timeout` per socket operation."""
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "gpu-inference-lb-healthcheck", "Connection": "close"})
        resp = conn.getresponse()
        resp.read(65536)
        return resp.status == 200
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()


class Checker:
    def __init__(
        self,
        settings: Settings,
        *,
        prober: Callable[[str, str, float], bool] = probe,
        run: Callable[[Sequence[str]], int] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.prober = prober
        self.run = run or _run
        self.log = log or (lambda msg: print(msg, flush=True))
        current = _read(settings.include_path)
        up = parse_include(settings, current) if current is not None else {a: True for a, _ in settings.nodes}
        self.states = {addr: NodeState(up[addr]) for addr, _ in settings.nodes}
        self.reload_pending = current is None
        self.reloads = 0
        # Probes of a hung node may outlive their cycle; each node has at most a few in the air.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(4, 2 * len(settings.nodes)))

    def probe_all(self) -> dict[str, bool]:
        """Every node at once; a probe still running after `timeout` counts as failed (a hung node)."""
        s = self.settings
        futures = {self._pool.submit(self.prober, addr, s.health_path, s.timeout): addr for addr, _ in s.nodes}
        done, _ = concurrent.futures.wait(futures, timeout=s.timeout)
        return {addr: fut in done and fut.result() for fut, addr in futures.items()}

    def step(self, results: dict[str, bool]) -> bool:
        """Apply one round of probe results; True when nginx was reloaded."""
        s = self.settings
        for addr, ok in results.items():
            state = self.states[addr]
            if state.observe(ok, s.fall, s.rise):
                side = "back in rotation" if state.up else "out of rotation"
                count = s.rise if state.up else s.fall
                self.log(f"{addr} {side} after {count} {'passed' if state.up else 'failed'} probe(s) of {s.health_path}")
        text = render_include(s, {addr: st.up for addr, st in self.states.items()})
        if text != _read(s.include_path):
            if not self._write_checked(text):
                return False
            self.reload_pending = True
        if not self.reload_pending:
            return False
        code = self.run(s.reload_cmd)
        if code != 0:
            self.log(f"reload ({' '.join(s.reload_cmd)}) exited {code}; retrying next round")
            return False
        self.reload_pending = False
        self.reloads += 1
        in_rotation = sum(st.up for st in self.states.values())
        self.log(f"nginx reloaded: {in_rotation} of {len(self.states)} node(s) in rotation")
        return True

    def _write_checked(self, text: str) -> bool:
        """Replace the include atomically; put the old one back if nginx -t rejects the result."""
        path = self.settings.include_path
        old = _read(path)
        _write_atomic(path, text)
        if self.settings.test_cmd and (code := self.run(self.settings.test_cmd)) != 0:
            self.log(f"nginx -t rejected the new upstream list (exit {code}); keeping the old one")
            if old is not None:
                _write_atomic(path, old)
            return False
        return True

    def run_forever(self, stop: threading.Event) -> None:
        s = self.settings
        self.log(f"checking {len(s.nodes)} node(s) every {s.interval:g}s (timeout {s.timeout:g}s, "
                 f"out after {s.fall} failures, in after {s.rise} passes)")  # fmt: skip
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.step(self.probe_all())
            except OSError as exc:  # a full disk or a vanished directory: say so, keep checking
                self.log(f"error: {exc}")
            stop.wait(max(0.0, s.interval - (time.monotonic() - started)))
        self._pool.shutdown(wait=False, cancel_futures=True)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # nginx never reads a half-written file


def _run(argv: Sequence[str]) -> int:
    try:
        return subprocess.run(list(argv), stdin=subprocess.DEVNULL, timeout=60, check=False).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"cannot run {argv[0]}: {exc}", file=sys.stderr, flush=True)
        return 127


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-inference-lb-healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON settings (nodes, include_path, reload_cmd, ...)")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as f:
            settings = Settings.from_json(json.load(f))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"gpu-inference-lb-healthcheck: bad settings in {args.config}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Checker(settings).run_forever(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
