"""The fake vLLM behaves like vLLM where nginx and Prometheus can tell: API shapes, SSE, auth, health, metrics."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.dataplane import fake_vllm
from tests.dataplane.harness import (
    Backend,
    HttpClient,
    bounded_load,
    completion_body,
    http_json,
    metric_value,
    parse_metrics,
)

pytestmark = pytest.mark.dataplane

KEY = "server-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MODEL = "Qwen/Qwen3-8B"  # harness default: the test stack's model


def test_models_chat_and_completions_json(backends: Callable[..., Backend]) -> None:
    b = backends(api_key=KEY, token_delay=0.001)

    async def go() -> None:
        async with HttpClient() as c:
            models = await c.request("GET", b.url + "/v1/models", headers=AUTH)
            assert models.status == 200 and models.json()["data"][0]["id"] == MODEL
            chat = await c.request("POST", b.url + "/v1/chat/completions", headers=AUTH, json_body=completion_body(MODEL, 5))
            doc = chat.json()
            assert chat.status == 200 and doc["object"] == "chat.completion"
            assert doc["choices"][0]["message"]["role"] == "assistant"
            assert doc["choices"][0]["finish_reason"] == "length"
            assert doc["usage"]["completion_tokens"] == 5
            comp = await c.request(
                "POST", b.url + "/v1/completions", headers=AUTH, json_body=completion_body(MODEL, 3, chat=False)
            )
            assert comp.status == 200 and comp.json()["object"] == "text_completion"
            assert comp.json()["choices"][0]["text"] == "tok0 tok1 tok2 "
            wrong = await c.request("POST", b.url + "/v1/completions", headers=AUTH, json_body=completion_body("other", 3))
            assert wrong.status == 404 and wrong.json()["error"]["code"] == 404

    asyncio.run(go())


def test_api_key_guards_v1_only(backends: Callable[..., Backend]) -> None:
    b = backends(api_key=KEY)

    async def go() -> None:
        async with HttpClient() as c:
            for headers in ({}, {"authorization": "Bearer wrong"}):
                r = await c.request("POST", b.url + "/v1/chat/completions", headers=headers, json_body=completion_body(MODEL, 1))
                assert r.status == 401 and r.json() == {"error": "Unauthorized"}  # vLLM's exact answer
            # As in vLLM, /health and /metrics need no key.
            assert (await c.request("GET", b.url + "/health")).status == 200
            assert (await c.request("GET", b.url + "/metrics")).status == 200

    asyncio.run(go())


@pytest.mark.parametrize("chat", [True, False])
def test_streaming_sse_chunks_end_with_done(backends: Callable[..., Backend], chat: bool) -> None:
    b = backends(token_delay=0.02)

    async def go() -> None:
        async with HttpClient() as c:
            body = completion_body(MODEL, 10, stream=True, chat=chat)
            body["stream_options"] = {"include_usage": True}
            path = "/v1/chat/completions" if chat else "/v1/completions"
            r = await c.request("POST", b.url + path, json_body=body)
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("transfer-encoding") == "chunked"
        data = r.sse_data()
        assert data[-1] == "[DONE]"
        events = [json.loads(d) for d in data[:-1]]
        text_chunks = [e for e in events if e["choices"]]
        usage = [e for e in events if not e["choices"]]
        if chat:
            assert text_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in text_chunks)
        else:
            text = "".join(e["choices"][0]["text"] for e in text_chunks)
        assert text == "".join(f"tok{i} " for i in range(10))
        assert text_chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert usage and usage[0]["usage"]["completion_tokens"] == 10
        # Tokens arrive spread over the stream (9 gaps × 20 ms), not in one burst at the end.
        assert r.first_body_at is not None and r.finished - r.first_body_at >= 0.15

    asyncio.run(go())


def test_health_is_503_while_loading_then_200(backends: Callable[..., Backend]) -> None:
    b = backends(loading_seconds=1.0)
    assert http_json(b.url + "/health")[0] == 503
    status, body = http_json(b.url + "/v1/chat/completions", completion_body(MODEL, 1))
    assert status == 503 and body["error"]["code"] == 503
    deadline = time.monotonic() + 5
    while http_json(b.url + "/health")[0] != 200:
        assert time.monotonic() < deadline, "still loading after 5 s"
        time.sleep(0.1)
    assert http_json(b.url + "/v1/chat/completions", completion_body(MODEL, 1))[0] == 200
    b.set_knobs(loading_seconds=30)  # admin: become "loading" again (a restart)
    assert http_json(b.url + "/health")[0] == 503


def test_admin_force_status_and_latency(backends: Callable[..., Backend]) -> None:
    b = backends(token_delay=0.0)
    b.set_knobs(force_status=500)
    assert http_json(b.url + "/v1/chat/completions", completion_body(MODEL, 1))[0] == 500
    b.set_knobs(force_status=None, extra_latency=0.3)
    t0 = time.monotonic()
    assert http_json(b.url + "/v1/chat/completions", completion_body(MODEL, 1))[0] == 200
    assert time.monotonic() - t0 >= 0.3
    assert b.stats()["by_status"] == {"500": 1, "200": 1}


def test_metrics_follow_load_with_vllm_names_and_buckets(backends: Callable[..., Backend]) -> None:
    """Queueing beyond max_num_seqs shows as waiting; KV usage rises with running tokens; counters add up."""
    b = backends(max_num_seqs=2, token_delay=0.05, kv_capacity_tokens=200)
    n, tokens = 6, 20

    async def go() -> tuple[dict, list]:
        async with HttpClient(keepalive=False) as c:
            load = asyncio.create_task(
                bounded_load(
                    lambda i: c.request("POST", b.url + "/v1/completions", json_body=completion_body(MODEL, tokens, chat=False)),
                    count=n,
                    concurrency=n,
                    deadline_s=20,
                )
            )
            await asyncio.sleep(0.4)  # all six arrived, two run, four wait
            during = parse_metrics((await c.request("GET", b.url + "/metrics")).body.decode())
            return during, await load

    during, results = asyncio.run(go())
    assert all(getattr(r, "status", None) == 200 for r in results), results
    lbl = {"model_name": MODEL, "engine": "0"}
    assert metric_value(during, "vllm:num_requests_running", **lbl) == 2
    assert metric_value(during, "vllm:num_requests_waiting", **lbl) == 4
    assert 0 < metric_value(during, "vllm:kv_cache_usage_perc", **lbl) <= 1

    after = parse_metrics(b.metrics())
    assert metric_value(after, "vllm:num_requests_running", **lbl) == 0
    assert metric_value(after, "vllm:num_requests_waiting", **lbl) == 0
    assert metric_value(after, "vllm:kv_cache_usage_perc", **lbl) == 0
    assert metric_value(after, "vllm:generation_tokens_total", **lbl) == n * tokens
    assert metric_value(after, "vllm:prompt_tokens_total", **lbl) > 0
    assert metric_value(after, "vllm:request_success_total", finished_reason="length", **lbl) == n
    assert metric_value(after, "vllm:time_to_first_token_seconds_count", **lbl) == n
    assert metric_value(after, "vllm:inter_token_latency_seconds_count", **lbl) == n * (tokens - 1)
    assert metric_value(after, "vllm:e2e_request_latency_seconds_count", **lbl) == n
    les = [lbls["le"] for lbls, _ in after["vllm:time_to_first_token_seconds_bucket"]]
    assert les == [repr(x) for x in fake_vllm.TTFT_BUCKETS] + ["+Inf"]
    # Queued requests waited for the first two (20 tokens × 50 ms): their TTFT includes the queue, as in vLLM.
    slow = metric_value(after, "vllm:time_to_first_token_seconds_count", **lbl) - metric_value(
        after, "vllm:time_to_first_token_seconds_bucket", le="0.75", **lbl
    )
    assert slow >= 2


def test_metrics_pass_promtool(backends: Callable[..., Backend]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    b = backends(token_delay=0.001)
    http_json(b.url + "/v1/completions", completion_body(MODEL, 3, chat=False))
    check = subprocess.run([promtool, "check", "metrics"], input=b.metrics(), capture_output=True, text=True, timeout=30)
    # promtool also lints; vLLM's own names contain ':' (which it flags), anything else must be clean.
    findings = [line for line in (check.stdout + check.stderr).splitlines() if line and "should not contain ':'" not in line]
    assert not findings, findings


def test_one_process_serves_many_concurrent_streams(backends: Callable[..., Backend]) -> None:
    b = backends(token_delay=0.05)
    n = 60

    async def go() -> tuple[float, list]:
        async with HttpClient(keepalive=False) as c:
            t0 = time.monotonic()
            results = await bounded_load(
                lambda i: c.request("POST", b.url + "/v1/chat/completions", json_body=completion_body(MODEL, 10, stream=True)),
                count=n,
                concurrency=n,
                deadline_s=20,
            )
            return time.monotonic() - t0, results

    elapsed, results = asyncio.run(go())
    assert sum(getattr(r, "status", 0) == 200 for r in results) == n
    assert elapsed < 3, f"{n} concurrent 0.5 s streams took {elapsed:.2f}s: the server serialised them"
    assert b.stats()["peak_inflight"] == n
