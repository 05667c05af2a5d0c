"""The load balancer under faults (issue 11), on real nginx and the shipped health checker, all on loopback.

Each test fails on the configuration before issue 11: no retry on 500, no active health checks, nginx's
HTML error pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tests.dataplane import harness
from tests.dataplane.harness import API_KEY, MODEL, Backend, HttpClient, Nginx, Response, bounded_load
from tests.dataplane.harness import completion_body as body

if TYPE_CHECKING:  # imports of new modules stay local, so this file also runs (and fails) on older code
    from tests.dataplane.harness import HealthChecker

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx binary not installed (apt-get install nginx)"),
]

AUTH = {"authorization": f"Bearer {API_KEY}"}
CHAT = "/v1/chat/completions"
# Issue 11: a hung node is out of rotation within this many seconds.
HUNG_NODE_BOUND_SECONDS = 15.0


def _statuses(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = str(r.status) if isinstance(r, Response) else type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def _in_rotation(lb: Nginx, node: Backend) -> bool:
    lines = [line for line in lb.upstream_include().read_text().splitlines() if f"server {node.addr} " in line]
    assert len(lines) == 1, lines
    return not lines[0].endswith(" down;")


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `predicate` held (polled every 50 ms), None if it did not within `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_fast_failing_node_is_retried_and_marked_failed(backends: Callable[..., Backend],
                                                        nginx: Callable[..., Nginx]) -> None:  # fmt: skip
    """A node answering 500 at once is never busy, so least_conn picks it for almost every request (392 of
    400 got 500 before): nginx must retry on http_500 and count it toward max_fails."""
    broken = backends(api_key=API_KEY)
    broken.set_knobs(force_status=500)
    healthy = [backends(api_key=API_KEY, token_delay=0.005) for _ in range(2)]
    lb = nginx(harness.build_stack(), [broken, *healthy])

    async def go() -> list[Any]:
        async with HttpClient() as c:
            return await bounded_load(
                lambda i: c.request("POST", lb.url + CHAT, headers=AUTH, json_body=body(MODEL, 4), timeout=20),
                count=400, concurrency=8, deadline_s=40,
            )  # fmt: skip

    results = asyncio.run(go())
    ok = sum(isinstance(r, Response) and r.status == 200 for r in results)
    tried = broken.stats()["by_status"].get("500", 0)
    assert tried >= 1, "nginx never sent a request to the failing node: the test proved nothing"
    assert ok >= 0.95 * 400, f"{ok} of 400 succeeded beside a node answering 500 ({_statuses(results)}; it got {tried})"
    # Marked failed: after max_fails answers it is skipped for fail_timeout, so it sees a small share.
    assert tried < 400 * 0.25, f"the failing node still got {tried} of 400 requests: not marked failed on 500"


def test_hung_node_leaves_rotation_and_comes_back(backends: Callable[..., Backend], nginx: Callable[..., Nginx],
                                                  healthchecker: Callable[..., HealthChecker]) -> None:  # fmt: skip
    from gpu_inference.render.lb_healthcheck import FALL, PROBE_INTERVAL_SECONDS

    stack = harness.build_stack()
    nodes = [backends(api_key=API_KEY, token_delay=0.005) for _ in range(2)]
    victim, other = nodes
    lb = nginx(stack, nodes)
    checker = healthchecker(stack, lb, nodes)
    assert _in_rotation(lb, victim) and _in_rotation(lb, other)

    workers = lb.worker_pids()
    victim.set_knobs(hang=True)
    hung_at = time.monotonic()
    # Out of rotation = marked down in the include and nginx running on it (the reload took effect).
    left = _wait(lambda: not _in_rotation(lb, victim) and lb.reloaded_since(workers), HUNG_NODE_BOUND_SECONDS + 5)
    assert left is not None and left <= HUNG_NODE_BOUND_SECONDS, (
        f"hung node still in rotation after {time.monotonic() - hung_at:.1f}s:\n{checker.log()}")
    assert left >= (FALL - 1) * PROBE_INTERVAL_SECONDS * 0.9, f"out after {left:.1f}s: fewer than {FALL} probes?"
    assert checker.reloads() == 1, checker.log()
    assert _in_rotation(lb, other)

    # New requests no longer wait on it: every one answers quickly from the other node.
    async def burst(n: int) -> list[Any]:
        async with HttpClient(keepalive=False) as c:
            return await bounded_load(
                lambda i: c.request("POST", lb.url + CHAT, headers=AUTH, json_body=body(MODEL, 2), timeout=5),
                count=n, concurrency=4, deadline_s=20,
            )  # fmt: skip

    hung_before = victim.stats()["hung"]
    results = asyncio.run(burst(20))
    assert _statuses(results) == {"200": 20}
    assert victim.stats()["hung"] == hung_before, "a request still went to the hung node after it left rotation"

    # Healthy again: back in rotation (after RISE good probes) and serving.
    workers = lb.worker_pids()
    victim.set_knobs(hang=False)
    back = _wait(lambda: _in_rotation(lb, victim) and lb.reloaded_since(workers), HUNG_NODE_BOUND_SECONDS)
    assert back is not None, checker.log()
    assert checker.reloads() == 2, checker.log()
    victim.reset_stats()
    assert _statuses(asyncio.run(burst(20))) == {"200": 20}
    assert victim.stats()["served"] >= 1, "the recovered node got no traffic"


def test_reloads_under_load_lose_no_request(backends: Callable[..., Backend], nginx: Callable[..., Nginx],
                                            healthchecker: Callable[..., HealthChecker]) -> None:  # fmt: skip
    """The checker reloads nginx while streams and short requests are in flight: none may fail."""
    stack = harness.build_stack()
    nodes = [backends(api_key=API_KEY, token_delay=0.02) for _ in range(3)]
    flapper = nodes[2]
    lb = nginx(stack, nodes)
    checker = healthchecker(stack, lb, nodes)
    stop = asyncio.Event()

    async def flap() -> None:
        # /health alone fails and recovers: the node leaves and rejoins the rotation (a reload each time)
        # while its /v1 keeps serving what it already has.
        while not stop.is_set():
            flapper.set_knobs(health_status=503)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 8)
            flapper.set_knobs(health_status=None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 6)

    async def go() -> list[Any]:
        async with HttpClient() as c:

            def one(i: int) -> Any:
                # Streams of ~1 s and short requests, over keep-alive connections: both kinds span reloads.
                stream = i % 2 == 0
                return c.request("POST", lb.url + CHAT, headers=AUTH, timeout=30,
                                 json_body=body(MODEL, 50 if stream else 4, stream=stream))  # fmt: skip

            task = asyncio.create_task(flap())
            try:
                return await bounded_load(one, count=1500, concurrency=12, deadline_s=32)
            finally:
                stop.set()
                await task

    results = asyncio.run(go())
    reloads = checker.reloads()
    assert reloads >= 3, f"only {reloads} reload(s) happened under load: the test proved nothing\n{checker.log()}"
    statuses = _statuses(results)
    assert statuses == {"200": len(results)}, f"requests lost across {reloads} reloads: {statuses}"
    streams = [r for r in results if isinstance(r, Response) and r.headers.get("content-type", "").startswith("text/event")]
    assert streams and all(r.sse_data()[-1] == "[DONE]" for r in streams), "a stream was cut by a reload"
    assert len(results) >= 200


def _assert_json_error(r: Response, status: int) -> None:
    assert r.status == status, (r.status, r.body[:300])
    assert r.headers.get("content-type", "").split(";")[0] == "application/json", r.headers
    err = r.json()["error"]
    assert isinstance(err, dict), r.body
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str) and err["type"]
    assert err["code"] == status


def _one(lb: Nginx, path: str = CHAT, headers: dict[str, str] | None = None, json_body: Any = None,
         timeout: float = 20) -> Response:  # fmt: skip
    async def go() -> Response:
        async with HttpClient(keepalive=False) as c:
            return await c.request("POST", lb.url + path, headers=AUTH if headers is None else headers,
                                   json_body=body(MODEL, 2) if json_body is None else json_body, timeout=timeout)  # fmt: skip

    return asyncio.run(go())


EDGE_CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "no-key": (401, {"headers": {}}),
    "wrong-key": (401, {"headers": {"authorization": "Bearer wrong"}}),
    "not-the-api": (404, {"path": "/metrics"}),
    "body-too-large": (413, {"json_body": {**body(MODEL, 1), "padding": "x" * (2 << 20)}}),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_errors_are_openai_json(case: str, backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    status, request = EDGE_CASES[case]
    node = backends(api_key=API_KEY, token_delay=0.001)
    lb = nginx(harness.build_stack(load_balancer={"clientMaxBodySizeMb": 1}), [node])
    _assert_json_error(_one(lb, **request), status)
    assert node.stats()["requests_total"] == 0  # answered by nginx itself


def test_no_reachable_node_is_json_502(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    nobody = [f"{harness.LOOPBACK}:{harness.free_port()}" for _ in range(2)]  # nothing listens there
    lb = nginx(harness.build_stack(), nobody)
    _assert_json_error(_one(lb), 502)


def test_every_node_down_is_json_503(backends: Callable[..., Backend], nginx: Callable[..., Nginx],
                                     healthchecker: Callable[..., HealthChecker]) -> None:  # fmt: skip
    """Every node still loading: the checker marks all down, the upstream's backup answers JSON 503."""
    stack = harness.build_stack()
    nodes = [backends(api_key=API_KEY, loading_seconds=300) for _ in range(2)]
    lb = nginx(stack, nodes)
    workers = lb.worker_pids()
    checker = healthchecker(stack, lb, nodes)
    all_down = _wait(lambda: not any(_in_rotation(lb, n) for n in nodes) and lb.reloaded_since(workers),
                     HUNG_NODE_BOUND_SECONDS)  # fmt: skip
    assert all_down is not None, checker.log()
    before = sum(n.stats()["requests_total"] for n in nodes)
    r = _one(lb)
    _assert_json_error(r, 503)
    assert r.headers.get("retry-after") == "10"
    probes = sum(n.stats()["requests_total"] for n in nodes) - before
    assert probes <= 2 * len(nodes), "requests still reached the loading nodes"  # only the checker's probes


def test_node_timeout_is_json_504(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    """Nodes that never answer (no health checker here): nginx's own 504 once both tries timed out. (With
    a single node the second try goes to the backup, which answers the JSON 503.)"""
    nodes = [backends(api_key=API_KEY) for _ in range(2)]
    for node in nodes:
        node.set_knobs(hang=True)
    stack = harness.build_stack(load_balancer={"readTimeoutSeconds": 30, "proxyNextUpstreamTries": 2})
    lb = nginx(stack, nodes)
    # The one change to the rendered file: a 1 s read timeout instead of 30 s (the config's minimum), so
    # the test waits seconds, not minutes. What answers the timeout (error_page 504) is as rendered.
    conf = lb.conf_path.read_text()
    assert conf.count("proxy_read_timeout 30s;") == 1
    lb.conf_path.write_text(conf.replace("proxy_read_timeout 30s;", "proxy_read_timeout 1s;"))
    lb.reload()
    time.sleep(0.5)  # new workers up
    _assert_json_error(_one(lb, timeout=20), 504)
