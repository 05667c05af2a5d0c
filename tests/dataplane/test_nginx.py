"""The rendered nginx.conf on real nginx in front of fake vLLM backends, all on loopback."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.dataplane import harness
from tests.dataplane.harness import API_KEY, MODEL, Backend, HttpClient, Nginx, Response, bounded_load, completion_body

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx binary not installed (apt-get install nginx)"),
]

AUTH = {"authorization": f"Bearer {API_KEY}"}
CHAT = "/v1/chat/completions"


def _statuses(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = str(r.status) if isinstance(r, Response) else type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def test_least_conn_spreads_long_requests(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    """L,S,S,L,S,S,…: round-robin would stack every long request on one node; least_conn must not."""
    nodes = [backends(api_key=API_KEY, token_delay=0.02, long_threshold=64) for _ in range(3)]
    lb = nginx(harness.build_stack(), nodes)
    n_long, long_tokens, short_tokens = 12, 200, 2  # a long request lasts ~4 s, a short one ~20 ms

    async def go() -> list[Any]:
        # A fresh connection per request: many independent clients, spread over nginx's workers.
        async with HttpClient(keepalive=False) as c:

            def one(i: int) -> Any:
                tokens = long_tokens if i % 3 == 0 else short_tokens
                return c.request("POST", lb.url + CHAT, headers=AUTH, json_body=completion_body(MODEL, tokens), timeout=20)

            # 36 starts, 60 ms apart: all long requests overlap (2.2 s of starts < 4 s per long request).
            return await bounded_load(one, count=3 * n_long, concurrency=3 * n_long, deadline_s=25, start_interval=0.06)

    results = asyncio.run(go())
    assert _statuses(results) == {"200": 3 * n_long}
    stats = [b.stats() for b in nodes]
    served_long = [s["served_long"] for s in stats]
    peaks = [s["peak_inflight_long"] for s in stats]
    assert sum(served_long) == n_long
    share = math.ceil(n_long / len(nodes))
    # One over the fair share is tolerated (requests land while counts are equal); more is imbalance.
    assert max(peaks) <= share + 1, (
        f"concurrent long requests per backend {peaks} (fair share {share}); served_long={served_long}. "
        f"least_conn counts per worker unless the upstream has a shared `zone` (nginx workers: {lb.workers()})"
    )


def test_streaming_passes_through_unbuffered(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    node = backends(api_key=API_KEY, token_delay=0.05)
    lb = nginx(harness.build_stack(), [node])
    tokens = 40  # ~2 s of tokens, far more than any proxy buffer's worth of time

    async def go() -> Response:
        async with HttpClient() as c:
            return await c.request(
                "POST", lb.url + CHAT, headers=AUTH, json_body=completion_body(MODEL, tokens, stream=True), timeout=20
            )

    r = asyncio.run(go())
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.sse_data()[-1] == "[DONE]"
    assert r.first_body_at is not None
    first, total = r.first_body_at - r.started, r.elapsed
    assert first < 0.3 * total, f"first chunk after {first:.2f}s of a {total:.2f}s stream: nginx buffered the response"
    # And tokens keep flowing: by half time at least a third of the body has arrived.
    half = r.started + total / 2
    assert sum(t <= half for t in r.chunk_times) >= len(r.chunk_times) / 3, "chunks arrived in one burst at the end"


def test_killing_a_backend_under_load_loses_no_request(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    fail_timeout, max_fails = 3, 2
    stack = harness.build_stack(load_balancer={"failTimeoutSeconds": fail_timeout, "maxFails": max_fails})
    nodes = [backends(api_key=API_KEY, token_delay=0.02) for _ in range(3)]
    lb = nginx(stack, nodes)
    victim = nodes[1]
    killed_at: list[float] = []

    async def go() -> list[Any]:
        async with HttpClient() as c:

            def one(i: int) -> Any:
                # Non-streaming, ~0.4 s each: several are in flight on the victim when it dies.
                return c.request("POST", lb.url + CHAT, headers=AUTH, json_body=completion_body(MODEL, 20), timeout=30)

            async def killer() -> None:
                await asyncio.sleep(1.5)
                victim.kill()
                killed_at.append(time.monotonic())

            kill_task = asyncio.create_task(killer())
            results = await bounded_load(one, count=240, concurrency=12, deadline_s=30)
            await kill_task
            return results

    t0 = time.monotonic()
    results = asyncio.run(go())
    after_kill = time.monotonic() - killed_at[0]
    statuses = _statuses(results)
    assert statuses == {"200": len(results)}, (
        f"requests lost when a backend died under load: {statuses}. A POST already sent to the dead node is "
        "only retried on another node if proxy_next_upstream includes non_idempotent."
    )
    assert len(results) == 240 and after_kill > 2 * fail_timeout, f"load ended {after_kill:.1f}s after the kill"
    survivors = sum(b.stats()["served"] for b in (nodes[0], nodes[2]))
    assert survivors > 240 * 0.5
    # Skipped within fail_timeout: after max_fails refusals a worker leaves the node alone for fail_timeout,
    # then probes it once per window. Round-robin would instead send it about a third of 200 requests.
    dead = victim.addr
    refused = [line for line in lb.error_log().splitlines() if "Connection refused" in line and dead in line]
    workers = max(1, lb.workers())
    windows = math.ceil(after_kill / fail_timeout)
    bound = workers * (max_fails + windows)
    assert len(refused) <= bound, f"{len(refused)} attempts on the dead node in {after_kill:.1f}s (bound {bound})"
    assert time.monotonic() - t0 < 60


def test_loading_backend_503_is_skipped(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    stack = harness.build_stack()
    loading = backends(api_key=API_KEY, token_delay=0.01, loading_seconds=120)
    ready = [backends(api_key=API_KEY, token_delay=0.01) for _ in range(2)]
    lb = nginx(stack, [loading, *ready])

    async def go() -> list[Any]:
        async with HttpClient() as c:
            return await bounded_load(
                lambda i: c.request("POST", lb.url + CHAT, headers=AUTH, json_body=completion_body(MODEL, 4), timeout=20),
                count=30,
                concurrency=3,
                deadline_s=20,
            )

    results = asyncio.run(go())
    tried = loading.stats()["by_status"].get("503", 0)
    assert tried >= 1, "nginx never tried the loading node; the test proved nothing"
    statuses = _statuses(results)
    assert statuses == {"200": 30}, (
        f"clients saw {statuses} while one node was loading ({tried} attempts answered 503 there). "
        "proxy_next_upstream http_503 does not retry a POST unless non_idempotent is listed too."
    )
    assert sum(b.stats()["served"] for b in ready) == 30


def test_request_without_api_key_is_refused(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    node = backends(api_key=API_KEY, token_delay=0.001)
    lb = nginx(harness.build_stack(), [node])

    async def go() -> dict[str, Response]:
        async with HttpClient() as c:
            out = {}
            for name, headers in (("none", {}), ("wrong", {"authorization": "Bearer nope"}), ("right", AUTH)):
                out[name] = await c.request("POST", lb.url + CHAT, headers=headers, json_body=completion_body(MODEL, 2))
            return out

    r = asyncio.run(go())
    for name in ("none", "wrong"):
        assert r[name].status == 401, (name, r[name].status, r[name].body)
        assert r[name].json()["error"]["code"] == 401 and r[name].headers["content-type"] == "application/json"
    assert r["right"].status == 200


def test_backend_401_passes_through_unretried(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    """With no key at the edge (apiKey unset), vLLM's own 401 reaches the client as it is, from one node only."""
    nodes = [backends(api_key=API_KEY) for _ in range(2)]
    lb = nginx(harness.build_stack(api_key=None), nodes)

    async def go() -> Response:
        async with HttpClient() as c:
            return await c.request("POST", lb.url + CHAT, json_body=completion_body(MODEL, 2))

    r = asyncio.run(go())
    assert r.status == 401 and r.json() == {"error": "Unauthorized"}
    assert sum(b.stats()["requests_total"] for b in nodes) == 1


def test_oversized_body_is_refused_with_413(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    node = backends(api_key=API_KEY, token_delay=0.001)
    lb = nginx(harness.build_stack(load_balancer={"clientMaxBodySizeMb": 1}), [node])

    def body(size: int) -> dict[str, Any]:
        # Padding in a field the server ignores: the size is what matters, not the prompt length.
        return {**completion_body(MODEL, 1), "padding": "x" * size}

    async def go() -> tuple[Response, Response]:
        async with HttpClient(keepalive=False) as c:
            big = await c.request("POST", lb.url + CHAT, headers=AUTH, json_body=body(3 << 20), timeout=20)
            small = await c.request("POST", lb.url + CHAT, headers=AUTH, json_body=body(512 << 10), timeout=20)
            return big, small

    big, small = asyncio.run(go())
    assert big.status == 413
    assert small.status == 200
    assert node.stats()["requests_total"] == 1  # the oversized body never reached a backend


def test_nginx_health_answers_without_backends(nginx: Callable[..., Nginx]) -> None:
    nobody = f"{harness.LOOPBACK}:{harness.free_port()}"  # nothing listens there
    lb = nginx(harness.build_stack(), [nobody])

    async def go() -> tuple[Response, Response]:
        async with HttpClient() as c:
            health = await c.request("GET", lb.url + "/health", timeout=5)
            api = await c.request("GET", lb.url + "/v1/models", headers=AUTH, timeout=15)
            return health, api

    health, api = asyncio.run(go())
    assert health.status == 200
    assert api.status in (502, 503, 504)  # proves there really was no backend behind it
    assert re.search(r"\bconnect\(\) failed\b", lb.error_log()), "expected nginx to log the refused upstream"
