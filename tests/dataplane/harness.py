"""Start and stop real nginx, real Prometheus and fake vLLM backends on loopback, and talk HTTP to them.

Everything here is bounded: every process runs in its own process group and is killed (TERM, then
KILL) by `stop()`, every wait has a timeout, every load loop stops by count *and* by deadline, and
the HTTP client refuses any address outside 127.0.0.0/8. Standard library only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


class HarnessError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Ports and processes
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port the kernel just handed out on loopback; callers that cannot bind 0 themselves retry on EADDRINUSE."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


_LIVE: set[ManagedProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Last line of defence: fixtures stop their processes, but a crashed test run must not leak any.
    for proc in list(_LIVE):
        proc.stop(grace=0.5)


class ManagedProcess:
    """A child in its own session (process group), so stop() reaches its children too (nginx workers)."""

    def __init__(self, name: str, argv: Sequence[str], *, cwd: Path | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None, capture_stdout: bool = False) -> None:  # fmt: skip
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group at once: the 'machine died' case, no graceful shutdown."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._cleanup()

    def stop(self, grace: float = 3.0) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Children (nginx workers) may outlive a master that exited; KILL the group regardless.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        _LIVE.discard(self)
        if self.popen.stdout:
            self.popen.stdout.close()
        if not isinstance(self._log, int):
            self._log.close()

    def log_tail(self, limit: int = 4000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _read_first_line(stream: Any, timeout: float) -> bytes:
    """readline() with a timeout (a thread, because a pipe has no portable non-blocking readline)."""
    box: list[bytes] = []
    thread = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(timeout)
    return box[0] if box else b""


# ---------------------------------------------------------------------------------------------
# Synchronous JSON helpers (admin endpoints, Prometheus API): urllib without any proxy
# ---------------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never route loopback via a proxy


def _check_loopback(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise HarnessError(f"refusing to send traffic to {host}: tests talk to 127.0.0.0/8 only")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, parts.port or 80, path


def http_json(url: str, payload: Any = None, timeout: float = 5.0, method: str | None = None) -> tuple[int, Any]:
    _check_loopback(url)
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# Fake vLLM backends
# ---------------------------------------------------------------------------------------------


@dataclass
class Backend:
    proc: ManagedProcess
    port: int
    options: dict[str, Any]

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def stats(self) -> dict[str, Any]:
        status, body = http_json(self.url + "/admin/stats")
        if status != 200:
            raise HarnessError(f"backend {self.addr} /admin/stats answered {status}: {body}")
        return body

    def set_knobs(self, **patch: Any) -> dict[str, Any]:
        status, body = http_json(self.url + "/admin/knobs", patch)
        if status != 200:
            raise HarnessError(f"backend {self.addr} refused knobs {patch}: {status} {body}")
        return body

    def reset_stats(self) -> None:
        http_json(self.url + "/admin/reset", {})

    def metrics(self) -> str:
        _, body = http_json(self.url + "/metrics")
        return str(body)

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


def start_backend(log_dir: Path, **options: Any) -> Backend:
    """A fake vLLM in its own process on a kernel-chosen port; options map to its CLI flags."""
    argv = [sys.executable, "-m", "tests.dataplane.fake_vllm", "--host", LOOPBACK, "--port", "0", "--lifetime", "900"]
    options.setdefault("model", MODEL)  # the name the rendered stack serves (clients send it in `model`)
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = f"--{key.replace('_', '-')}"
        argv += [flag] if value is True else [flag, str(value)]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(tempfile.mkstemp(prefix="fake_vllm-", suffix=".log", dir=log_dir)[1])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = ManagedProcess("fake_vllm", argv, cwd=REPO_ROOT, log_path=log_path, env=env, capture_stdout=True)
    line = _read_first_line(proc.popen.stdout, timeout=15)
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        proc.stop()
        raise HarnessError(f"fake_vllm did not report its port (got {line!r}); log:\n{proc.log_tail()}") from None
    wait_until(lambda: port_open(port), 10, what=f"fake_vllm on {port}")
    return Backend(proc=proc, port=port, options=options)


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or next((p for p in ("/usr/bin/prometheus",) if os.access(p, os.X_OK)), None)


@dataclass
class Nginx:
    proc: ManagedProcess
    port: int
    prefix: Path
    conf_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def error_log(self) -> str:
        """Every *.log under the prefix whose name says error (the rendered config decides the name)."""
        texts = [p.read_text(errors="replace") for p in sorted(self.prefix.rglob("*error*.log"))]
        return "\n".join(texts)

    def access_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.prefix.rglob("*access*.log")))

    def workers(self) -> int:
        return len(child_pids(self.proc.pid))

    def control_argv(self, *args: str) -> list[str]:
        """`nginx -p prefix -c conf ...` for this instance (`-s reload`, `-t -q`)."""
        binary = nginx_binary()
        assert binary is not None
        return [binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path),
                "-e", str(self.prefix / "logs" / "control-error.log"), *args]  # fmt: skip

    def reload(self) -> None:
        result = subprocess.run(self.control_argv("-s", "reload"), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise HarnessError(f"nginx -s reload failed: {result.stderr}")

    def worker_pids(self) -> set[int]:
        return set(child_pids(self.proc.pid))

    def reloaded_since(self, old: set[int]) -> bool:
        """Whether a reload after ``old`` was the worker set has fully taken effect: every old worker has
        exited. (`nginx -s reload` returns once the master got the signal, and old workers keep accepting
        until the new ones run; an old worker also stays while it still serves a request.)"""
        now = self.worker_pids()
        return bool(now) and not (now & old)

    def upstream_include(self) -> Path:
        return self.prefix / "upstream.conf"

    def stop(self) -> None:
        self.proc.stop()


def prepare_prefix(prefix: Path) -> None:
    """nginx running as root drops its workers to an unprivileged user: they must traverse the prefix."""
    prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(exist_ok=True)
    if os.geteuid() != 0:
        return  # workers run as the invoking user, who owns the prefix already
    for path in (prefix, *prefix.parents):
        if str(path).startswith(tempfile.gettempdir()) and path != Path(tempfile.gettempdir()):
            path.chmod(0o755)
    for sub in ("logs", "tmp"):
        (prefix / sub).chmod(0o777)


def start_nginx(conf_text: str, prefix: Path, port: int, timeout: float = 10.0) -> Nginx:
    """Run `nginx -t` and then nginx in the foreground with the given (rendered) config under `prefix`."""
    binary = nginx_binary()
    if binary is None:
        raise HarnessError("nginx binary not found")
    prepare_prefix(prefix)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf_text)
    startup_log = prefix / "logs" / "startup-error.log"  # -e: where nginx logs before it has read the config
    base = [binary, "-p", f"{prefix}/", "-c", str(conf_path), "-e", str(startup_log)]
    check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise HarnessError(f"nginx -t rejected the rendered config:\n{check.stderr}\n--- config ---\n{conf_text}")
    argv = list(base)
    if "daemon " not in conf_text:
        argv += ["-g", "daemon off;"]  # a production config daemonises; the harness wants a child it can reap
    proc = ManagedProcess("nginx", argv, cwd=prefix, log_path=prefix / "logs" / "nginx.stderr")
    try:
        wait_until(lambda: not proc.alive() or port_open(port), timeout, what=f"nginx on {port}")
        if not proc.alive():
            raise HarnessError(f"nginx exited ({proc.popen.returncode}):\n{proc.log_tail()}\n{startup_log.read_text()}")
    except HarnessError:
        proc.stop()
        raise
    return Nginx(proc=proc, port=port, prefix=prefix, conf_path=conf_path)


@dataclass
class HealthChecker:
    """The LB's active health checker (the shipped script, run as it is) driving one harness nginx."""

    proc: ManagedProcess
    config_path: Path

    def log(self) -> str:
        return self.proc.log_tail(200_000)

    def reloads(self) -> int:
        return self.log().count("nginx reloaded:")

    def stop(self) -> None:
        self.proc.stop()


def start_healthchecker(stack: Any, nginx: Nginx, backends: Sequence[Backend | str]) -> HealthChecker:
    """Render the checker's settings for `nginx`'s prefix (reload and test with its own -p/-c) and run the
    rendered daemon source with this Python, exactly as the LB host's python3 runs it."""
    from gpu_inference.render.lb_healthcheck import agent_script, settings, settings_json
    from gpu_inference.render.nginx import NginxPaths

    addrs = [b.addr if isinstance(b, Backend) else b for b in backends]
    checks = settings(stack, addrs, NginxPaths.inside(nginx.prefix), reload_cmd=nginx.control_argv("-s", "reload"),
                      test_cmd=nginx.control_argv("-t", "-q"))  # fmt: skip
    config_path = nginx.prefix / "lb-healthcheck.json"
    config_path.write_text(settings_json(checks))
    script = nginx.prefix / "lb-healthcheck.py"
    script.write_text(agent_script())
    proc = ManagedProcess("lb-healthcheck", [sys.executable, str(script), "--config", str(config_path)],
                          cwd=nginx.prefix, log_path=nginx.prefix / "logs" / "lb-healthcheck.log")  # fmt: skip
    wait_until(lambda: not proc.alive() or "checking" in proc.log_tail(), 10, what="the health checker to start")
    if not proc.alive():
        raise HarnessError(f"the health checker exited:\n{proc.log_tail()}")
    return HealthChecker(proc=proc, config_path=config_path)


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    proc: ManagedProcess
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def api(self, path: str) -> Any:
        status, body = http_json(self.url + path)
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise HarnessError(f"Prometheus {path} answered {status}: {body}")
        return body["data"]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/alerts")["alerts"])

    def firing(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for alert in self.alerts():
            if alert.get("state") == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert)
        return out

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets")["activeTargets"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        return list(self.api("/api/v1/query?query=" + quote(expr))["result"])

    def stop(self) -> None:
        self.proc.stop()


def start_prometheus(config_text: str, workdir: Path, port: int, rule_files: dict[str, str] | None = None,
                     timeout: float = 20.0) -> Prometheus:  # fmt: skip
    """Prometheus with the (rendered) config, its rule files beside it, a fresh TSDB in `workdir`."""
    binary = prometheus_binary()
    if binary is None:
        raise HarnessError("prometheus binary not found")
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in (rule_files or {}).items():
        (workdir / name).write_text(text)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config_text)
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise HarnessError(f"promtool rejected the rendered config:\n{check.stdout}{check.stderr}\n{config_text}")
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    proc = ManagedProcess("prometheus", argv, cwd=workdir, log_path=workdir / "prometheus.log")
    prom = Prometheus(proc=proc, port=port, workdir=workdir)

    def ready() -> bool:
        if not proc.alive():
            return True
        with contextlib.suppress(OSError, HarnessError):
            return http_json(prom.url + "/-/ready", timeout=1)[0] == 200
        return False

    try:
        wait_until(ready, timeout, interval=0.1, what=f"Prometheus ready on {port}")
        if not proc.alive():
            raise HarnessError(f"Prometheus exited ({proc.popen.returncode}):\n{proc.log_tail()}")
    except HarnessError:
        proc.stop()
        raise
    return prom


# ---------------------------------------------------------------------------------------------
# An asyncio HTTP/1.1 client with keep-alive and per-chunk arrival times
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    started: float
    headers_at: float
    first_body_at: float | None
    finished: float
    chunk_times: list[float] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_data(self) -> list[str]:
        """The `data:` payloads of an SSE body, in order (`[DONE]` included)."""
        out = []
        for event in self.body.decode().split("\n\n"):
            for line in event.splitlines():
                if line.startswith("data: "):
                    out.append(line[len("data: ") :])
        return out


class HttpClient:
    """Minimal HTTP/1.1 client: pooled keep-alive connections, chunked decoding, loopback only."""

    def __init__(self, keepalive: bool = True) -> None:
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def close(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        timeout: float = 30.0,
    ) -> Response:
        host, port, path = _check_loopback(url)
        if json_body is not None:
            body = json.dumps(json_body).encode()
        hdrs = {"host": f"{host}:{port}", "user-agent": "dataplane-tests"}
        if body is not None:
            hdrs["content-type"] = "application/json"
            hdrs["content-length"] = str(len(body))
        if not self.keepalive:
            hdrs["connection"] = "close"
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        return await asyncio.wait_for(self._exchange((host, port), head.encode(), body), timeout)

    async def _exchange(self, key: tuple[str, int], head: bytes, body: bytes | None) -> Response:
        # A pooled connection the server closed while it sat idle (nginx's old workers close their idle
        # keep-alive connections on a reload) answers nothing: the request never reached a worker, and a client
        # sends it again on the next connection (RFC 9112 section 9.3.1; urllib3 and httpx do the same). Several
        # pooled connections can be stale at once, so each is tried and dropped; a fresh connection is not
        # retried, and neither is one that had started answering.
        for attempt in range(MAX_POOLED_RETRIES + 1):
            reused = bool(self._idle.get(key))
            reader, writer = self._idle[key].pop() if reused else await asyncio.open_connection(*key)
            started = time.monotonic()
            try:
                send_error: Exception | None = None
                try:
                    writer.write(head)
                    if body:
                        # Write in slices so a server that answers early (413) is not a hard error here.
                        for i in range(0, len(body), 1 << 20):
                            writer.write(body[i : i + (1 << 20)])
                            await writer.drain()
                    await writer.drain()
                except ConnectionError as exc:
                    send_error = exc
                try:
                    resp, reusable = await _read_response(reader, started, head.startswith(b"HEAD "))
                except ClosedBeforeResponse:
                    if reused and attempt < MAX_POOLED_RETRIES:  # a pooled connection the server had closed
                        writer.close()
                        continue
                    if send_error:
                        raise send_error from None
                    raise
                except (asyncio.IncompleteReadError, ConnectionError):
                    if send_error:
                        raise send_error from None
                    raise
            except BaseException:
                writer.close()
                raise
            if reusable and self.keepalive:
                self._idle.setdefault(key, []).append((reader, writer))
            else:
                writer.close()
            return resp
        raise HarnessError("unreachable")


class ClosedBeforeResponse(asyncio.IncompleteReadError):
    """The connection closed before the first byte of a response."""


# Stale pooled connections tried in a row before giving up (the pool of one client never holds more).
MAX_POOLED_RETRIES = 64


async def _read_response(reader: asyncio.StreamReader, started: float, head_only: bool) -> tuple[Response, bool]:
    try:
        status_line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ClosedBeforeResponse(exc.partial, exc.expected) from exc
        raise
    except ConnectionResetError as exc:  # reset before any byte of the status line
        raise ClosedBeforeResponse(b"", None) from exc
    parts = status_line.decode("latin-1").split(" ", 2)
    version, status = parts[0], int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    headers_at = time.monotonic()
    pieces: list[bytes] = []
    times: list[float] = []
    reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if head_only or status in (204, 304) or 100 <= status < 200:
        pass
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            pieces.append(await reader.readexactly(size))
            times.append(time.monotonic())
            await reader.readexactly(2)
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining:
            data = await reader.read(min(remaining, 1 << 16))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            pieces.append(data)
            times.append(time.monotonic())
            remaining -= len(data)
    else:
        reusable = False
        while data := await reader.read(1 << 16):
            pieces.append(data)
            times.append(time.monotonic())
    finished = time.monotonic()
    resp = Response(
        status=status,
        headers=headers,
        body=b"".join(pieces),
        started=started,
        headers_at=headers_at,
        first_body_at=times[0] if times else None,
        finished=finished,
        chunk_times=times,
    )
    return resp, reusable


def completion_body(
    model: str, max_tokens: int, *, stream: bool = False, chat: bool = True, prompt: str = "hi"
) -> dict[str, Any]:
    if chat:
        return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": stream}
    return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": stream}


# ---------------------------------------------------------------------------------------------
# Bounded load
# ---------------------------------------------------------------------------------------------


async def bounded_load(
    make_request: Callable[[int], Awaitable[T]],
    *,
    count: int,
    concurrency: int,
    deadline_s: float,
    start_interval: float = 0.0,
) -> list[T | BaseException]:
    """Run up to `count` requests, at most `concurrency` at once; nothing starts after `deadline_s` and
    whatever still runs at `deadline_s` + 5 s is cancelled, so the loop ends by itself either way."""
    t0 = time.monotonic()
    results: list[T | BaseException] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            if time.monotonic() - t0 > deadline_s:
                return
            try:
                results.append(await make_request(i))
            except Exception as exc:  # a failed request is a result the caller counts, not a crash
                results.append(exc)

    tasks = []
    for i in range(count):
        if time.monotonic() - t0 > deadline_s:
            break
        tasks.append(asyncio.create_task(one(i)))
        if start_interval:
            await asyncio.sleep(start_interval)
    remaining = max(0.1, deadline_s + 5 - (time.monotonic() - t0))
    _, pending = await asyncio.wait(tasks, timeout=remaining) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    results.extend(TimeoutError("cancelled at load deadline") for _ in pending)
    return results


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------
# The stack and the rendered files, pointed at loopback and a temp prefix
# ---------------------------------------------------------------------------------------------

API_KEY = "dataplane-test-key"
MODEL = "Qwen/Qwen3-8B"


def build_stack(*, api_key: str | None = API_KEY, load_balancer: dict[str, Any] | None = None,
                monitoring: dict[str, Any] | None = None, name: str = "dataplane",
                gpu: str = "gpu-l40sx1-48gb", region: str = "tor1") -> Any:  # fmt: skip
    """A resolved stack from a config as an operator would write it (camelCase keys, validated); ``gpu``/
    ``region``: a DigitalOcean offering (an AMD one gives the ROCm path)."""
    from gpu_inference.config import parse_stack_config
    from gpu_inference.secrets import SecretValue
    from gpu_inference.stack import resolve_stack

    raw: dict[str, Any] = {
        "provider": "digitalocean",
        "region": region,
        "gpu": gpu,
        "model": MODEL,
        "monthlyBudgetUsd": 5000,
        "loadBalancer": load_balancer or {},
        "monitoring": monitoring or {},
    }
    config = parse_stack_config(raw, secret_keys={"apiKey"})
    if api_key is not None:  # a decrypted secret, as the Pulumi engine hands it over
        config = config.model_copy(update={"api_key": SecretValue(plaintext=api_key)})
    return resolve_stack(config, name=name)


def render_nginx(stack: Any, backends: Sequence[str], prefix: Path, port: int, *, fallback_port: int | None = None,
                 down: Sequence[str] = ()) -> str:  # fmt: skip
    """The renderer's nginx.conf with loopback listen and every path inside `prefix`, plus the files it
    includes: the auth map and the upstream include as the LB's first boot writes it (``down``: nodes the
    health checker would have marked down)."""
    from gpu_inference.render.lb_healthcheck import settings, upstream_include
    from gpu_inference.render.nginx import NginxPaths, auth_map, nginx_conf

    prepare_prefix(prefix)
    # No user directive: as root, workers fall back to nobody; prepare_prefix made the prefix traversable.
    paths = NginxPaths.inside(prefix)
    if stack.config.api_key is not None:
        (prefix / "auth.conf").write_text(auth_map(stack.config.api_key.reveal()))
    Path(paths.upstream_include).write_text(upstream_include(settings(stack, list(backends), paths), down))
    return nginx_conf(stack, list(backends), listen=f"{LOOPBACK}:{port}", prefix_paths=paths, upstream_include=True,
                      fallback_listen=f"{LOOPBACK}:{fallback_port or free_port()}")  # fmt: skip


def start_rendered_nginx(stack: Any, backends: Sequence[Backend | str], prefix: Path, attempts: int = 3,
                         down: Sequence[Backend | str] = ()) -> Nginx:  # fmt: skip
    """Render and start nginx on a free port (a lost race for the port is retried on another one)."""
    addrs = [b.addr if isinstance(b, Backend) else b for b in backends]
    down_addrs = [b.addr if isinstance(b, Backend) else b for b in down]
    last: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        try:
            return start_nginx(render_nginx(stack, addrs, prefix, port, down=down_addrs), prefix, port)
        except HarnessError as exc:
            last = exc
            if "Address already in use" not in str(exc):
                raise
    raise HarnessError(f"nginx could not bind a port: {last}")


def start_rendered_prometheus(stack: Any, vllm: Sequence[Backend], workdir: Path) -> Prometheus:
    """Rendered prometheus.yml (vLLM targets = the fake backends) and rendered alert rules."""
    from gpu_inference.render.prometheus import alert_rules, prometheus_config

    rules_name = "gpu-inference.yml"
    port = free_port()
    text = prometheus_config(stack, [b.addr for b in vllm], [], [], rule_files=[str(workdir / rules_name)])
    # The self-scrape target is rendered as localhost:9090 (the production port); here Prometheus
    # listens on a free loopback port, so substitute it (address/port substitution only).
    text = text.replace("localhost:9090", f"{LOOPBACK}:{port}")
    return start_prometheus(text, workdir, port, rule_files={rules_name: alert_rules(stack)})


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition → {sample name: [(labels, value), ...]} (enough for our own tests)."""
    import re

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not match:
            raise ValueError(f"not a sample line: {line!r}")
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        out.setdefault(match.group(1), []).append((labels, float(match.group(3))))
    return out


def metric_value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    hits = [v for lbls, v in metrics.get(name, []) if all(lbls.get(k) == v2 for k, v2 in labels.items())]
    if len(hits) != 1:
        raise KeyError(f"{name}{labels}: {len(hits)} samples")
    return hits[0]


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (nginx workers of a master), read from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


# ---------------------------------------------------------------------------------------------
# Exporter stand-ins (node_exporter, dcgm-exporter) and a Prometheus scraping every kind of target
# ---------------------------------------------------------------------------------------------


@dataclass
class Exporter:
    proc: ManagedProcess
    port: int
    kind: str

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start_exporter(log_dir: Path, kind: str) -> Exporter:
    """tests/dataplane/fake_exporter.py as node_exporter (`node`), dcgm-exporter (`dcgm`) or AMD's device metrics
    exporter (`amd`) on loopback."""
    argv = [sys.executable, "-m", "tests.dataplane.fake_exporter", "--kind", kind, "--host", LOOPBACK, "--port", "0"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(tempfile.mkstemp(prefix=f"fake_{kind}-", suffix=".log", dir=log_dir)[1])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = ManagedProcess(f"fake_{kind}", argv, cwd=REPO_ROOT, log_path=log_path, env=env, capture_stdout=True)
    line = _read_first_line(proc.popen.stdout, timeout=15)
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        proc.stop()
        raise HarnessError(f"fake_exporter did not report its port (got {line!r}); log:\n{proc.log_tail()}") from None
    wait_until(lambda: port_open(port), 10, what=f"fake_exporter on {port}")
    return Exporter(proc=proc, port=port, kind=kind)


def start_rendered_prometheus_with_exporters(stack: Any, vllm: Sequence[Backend], node: Mapping[str, str],
                                             dcgm: Sequence[str], workdir: Path,
                                             nginx: Mapping[str, str] | None = None) -> Prometheus:  # fmt: skip
    """Like start_rendered_prometheus, with node_exporter (name → address), DCGM and Nginx (mtail) targets too."""
    from gpu_inference.render.prometheus import alert_rules, prometheus_config

    rules_name = "gpu-inference.yml"
    port = free_port()
    text = prometheus_config(stack, [b.addr for b in vllm], dict(node), list(dcgm), rule_files=[str(workdir / rules_name)],
                             nginx_targets=dict(nginx or {}))
    text = text.replace("localhost:9090", f"{LOOPBACK}:{port}")
    return start_prometheus(text, workdir, port, rule_files={rules_name: alert_rules(stack)})


def mtail_binary() -> str | None:
    return shutil.which("mtail")


def start_mtail(workdir: Path, access_log: Path, timeout: float = 15.0) -> Exporter:
    """Real mtail with the rendered program (render/nginx_metrics.py), tailing a (real) Nginx access log."""
    from gpu_inference.render.nginx_metrics import MTAIL_PROGRAM_FILE, mtail_program

    binary = mtail_binary()
    if binary is None:
        raise HarnessError("mtail binary not found")
    progs = workdir / "progs"
    progs.mkdir(parents=True, exist_ok=True)
    (progs / MTAIL_PROGRAM_FILE).write_text(mtail_program())
    port = free_port()
    argv = [binary, "-progs", str(progs), "-logs", str(access_log), "-address", LOOPBACK, "-port", str(port),
            "-logtostderr"]
    proc = ManagedProcess("mtail", argv, cwd=workdir, log_path=workdir / "mtail.log")
    try:
        wait_until(lambda: not proc.alive() or port_open(port), timeout, what=f"mtail on {port}")
        if not proc.alive():
            raise HarnessError(f"mtail exited ({proc.popen.returncode}):\n{proc.log_tail()}")
    except HarnessError:
        proc.stop()
        raise
    return Exporter(proc=proc, port=port, kind="mtail")
