"""Every Grafana panel query, evaluated by a real Prometheus scraping the test servers, returns data.

Prometheus runs with the rendered prometheus.yml (1 s scrapes) whose targets are fake vLLM backends
(tests/dataplane/fake_vllm.py) and node_exporter / dcgm-exporter stand-ins (tests/dataplane/fake_exporter.py).
After a bounded burst of requests (some answered 404, for the error panel) each panel query, as Grafana
sends it (`$node` = All, `$__rate_interval` = 15 s), must return at least one series with a number.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpu_inference.render._common import node_name
from gpu_inference.render.dashboards import concrete_query, panel_queries
from tests.dataplane import harness
from tests.dataplane.harness import MODEL, Backend, Exporter, HttpClient, bounded_load, completion_body

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(
        harness.prometheus_binary() is None, reason="prometheus binary not installed (apt-get install prometheus)"
    ),
]

CHAT = "/v1/chat/completions"
# Grafana's $__rate_interval is max(4 × scrape interval, step + scrape interval): 1 s scrapes here.
RATE_INTERVAL = "15s"


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[Callable[[str], Exporter]]:
    started: list[Exporter] = []

    def start(kind: str) -> Exporter:
        exporter = harness.start_exporter(tmp_path / "exporter-logs", kind)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def _has_number(result: list[dict[str, object]]) -> bool:
    for series in result:
        value = series.get("value")
        if isinstance(value, list) and len(value) == 2 and not math.isnan(float(value[1])):
            return True
    return False


def test_every_panel_query_returns_data_from_a_real_prometheus(
    backends: Callable[..., Backend], exporters: Callable[[str], Exporter], tmp_path: Path
) -> None:
    stack = harness.build_stack(api_key=None, monitoring={"scrapeIntervalSeconds": 1})
    vllm = [backends(token_delay=0.005), backends(token_delay=0.005)]
    node = {node_name(i): exporters("node").addr for i in range(2)}
    dcgm = [exporters("dcgm").addr, exporters("dcgm").addr]
    prom = harness.start_rendered_prometheus_with_exporters(stack, vllm, node, dcgm, tmp_path / "prometheus")
    try:
        harness.wait_until(
            lambda: sum(t["health"] == "up" for t in prom.targets()) == 7, 20, interval=0.2,
            what="2 vLLM, 2 node, 2 DCGM targets and Prometheus itself up",
        )

        async def load() -> list[object]:
            async with HttpClient() as c:
                return await bounded_load(
                    lambda i: c.request(
                        "POST", vllm[i % 2].url + CHAT,
                        # Every fifth asks for a model that is not served: vLLM answers 404 (the error panel).
                        json_body=completion_body(MODEL if i % 5 else "no-such-model", 8, stream=True),
                        timeout=30,
                    ),
                    count=40, concurrency=8, deadline_s=60,
                )

        results = asyncio.run(load())
        assert sum(getattr(r, "status", None) == 200 for r in results) >= 20, results[:5]

        queries = [(dash, panel, concrete_query(q, RATE_INTERVAL)) for dash, panel, q in panel_queries(stack)]
        pending = dict.fromkeys(q for _, _, q in queries)
        deadline = time.monotonic() + 45
        while pending and time.monotonic() < deadline:
            for expr in list(pending):
                if _has_number(prom.query(expr)):
                    del pending[expr]
            time.sleep(0.5)
        empty = [(dash, panel, q) for dash, panel, q in queries if q in pending]
        assert not empty, f"{len(empty)} of {len(queries)} panel queries returned no data: {empty}"
    finally:
        prom.stop()
