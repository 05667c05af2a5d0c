"""Real Prometheus with the rendered prometheus.yml and alert rules, scraping fake vLLM backends on loopback.

Only the stack config is changed to make this fast (1 s scrapes, 3 s `for:` durations, low thresholds);
the rendered files themselves are used as they are, with loopback targets and temp paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.dataplane import harness
from tests.dataplane.harness import MODEL, Backend, HttpClient, Prometheus, bounded_load, completion_body

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(
        harness.prometheus_binary() is None, reason="prometheus binary not installed (apt-get install prometheus)"
    ),
]

FAST_MONITORING = {
    "scrapeIntervalSeconds": 1,
    "queueDepthThreshold": 3,
    "queueDepthFor": "3s",
    "kvCacheUsageThreshold": 0.5,
    "kvCacheFor": "3s",
    "ttftP95Seconds": 0.5,
    "ttftFor": "3s",
    "targetDownFor": "3s",
}
CHAT = "/v1/chat/completions"
PROMPT = "x" * 200
LOAD_ALERTS = ("VllmQueueDepthHigh", "VllmKvCachePressure", "VllmTtftP95High")


def _wait_alerts(prom: Prometheus, want: dict[str, dict[str, str]], timeout: float) -> dict[str, list[str]]:
    """Poll /api/v1/alerts until every alert in `want` fires with those labels; returns the states seen."""
    seen: dict[str, list[str]] = {name: [] for name in want}
    deadline = time.monotonic() + timeout
    while True:
        for alert in prom.alerts():
            name = alert["labels"]["alertname"]
            if name in want and all(alert["labels"].get(k) == v for k, v in want[name].items()):
                states = seen[name]
                if not states or states[-1] != alert["state"]:
                    states.append(alert["state"])
        if all(states and states[-1] == "firing" for states in seen.values()):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"alerts not all firing after {timeout:.0f}s; states seen: {seen}; all: {prom.alerts()}")
        time.sleep(0.3)


def test_alerts_fire_under_load_and_target_down(
    backends: Callable[..., Backend], prometheus: Callable[..., Prometheus]
) -> None:
    stack = harness.build_stack(monitoring=FAST_MONITORING)
    # hot: 2 sequence slots, a KV cache of 96 tokens, 1 s prefill → queue, KV pressure and slow TTFT under load.
    # Each prompt (~54 tokens) alone fills more than half the cache, so usage stays above the threshold
    # from admission on, also while a finished pair is replaced by the next (no dip resets `for:`).
    hot = backends(max_num_seqs=2, token_delay=0.05, prefill_delay=1.0, kv_capacity_tokens=96)
    cold = backends(token_delay=0.01)
    prom = prometheus(stack, [hot, cold])

    def vllm_targets_up() -> bool:
        up = {t["scrapeUrl"] for t in prom.targets() if t["labels"].get("job") == "vllm" and t["health"] == "up"}
        return up == {hot.url + "/metrics", cold.url + "/metrics"}

    harness.wait_until(vllm_targets_up, 15, interval=0.2, what="both vLLM targets up in /api/v1/targets")
    assert set(prom.firing()).isdisjoint(LOAD_ALERTS), "load alerts fire before any load"

    async def scenario() -> tuple[dict[str, list[str]], dict[str, list[str]], list[Any]]:
        async with HttpClient(keepalive=False) as c:
            load = asyncio.create_task(
                bounded_load(
                    lambda i: c.request("POST", hot.url + CHAT, json_body=completion_body(MODEL, 60, prompt=PROMPT), timeout=60),
                    count=12,
                    concurrency=12,
                    deadline_s=60,
                )
            )
            on_hot = {"job": "vllm", "instance": hot.addr, "node": "node-0"}
            fired = await asyncio.to_thread(_wait_alerts, prom, dict.fromkeys(LOAD_ALERTS, on_hot), 40)
            # The idle node must stay quiet: the alerts are per instance, not fleet-wide noise.
            cold_firing = [a for a in prom.alerts() if a["labels"].get("instance") == cold.addr and a["state"] == "firing"]
            assert not cold_firing, f"alerts fire on the idle node: {cold_firing}"
            hot.kill()  # the node dies mid-load: its scrape fails and TargetDown must follow
            down = await asyncio.to_thread(_wait_alerts, prom, {"TargetDown": on_hot}, 20)
            return fired, down, await load

    fired, down, results = asyncio.run(scenario())
    for name, states in fired.items():
        # `for:` was honoured: each alert was pending before it fired.
        assert states[:1] == ["pending"] and states[-1] == "firing", (name, states)
    assert down["TargetDown"][-1] == "firing"
    assert any(getattr(r, "status", None) == 200 for r in results)  # load really ran before the kill
    firing = prom.firing()
    target_down = firing["TargetDown"]
    assert [a["labels"]["instance"] for a in target_down] == [hot.addr], target_down  # only the dead node
    assert target_down[0]["labels"]["severity"] == "critical"
