"""Every Grafana panel query, evaluated by a real Prometheus scraping the test servers, returns data.

Prometheus runs with the rendered prometheus.yml (1 s scrapes) whose targets are fake vLLM backends
(tests/dataplane/fake_vllm.py), node_exporter and GPU exporter stand-ins (tests/dataplane/fake_exporter.py: DCGM
for the NVIDIA stack, AMD's device metrics exporter for the MI300X one, whose panels must query AMD's names) and
a real mtail with the rendered program tailing the access log of a real Nginx with the rendered nginx.conf.
After a bounded burst of requests through Nginx (some with a wrong API key, refused at the edge, and some for
a model that is not served, answered 404 by vLLM: the error panels) each panel query, as Grafana sends it
(`$node` = All, `$__rate_interval` = 15 s), must return at least one series with a number.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_inference.render._common import node_name
from gpu_inference.render.dashboards import concrete_query, panel_queries
from gpu_inference.render.nginx import NginxPaths
from tests.dataplane import harness
from tests.dataplane.harness import API_KEY, MODEL, Backend, Exporter, HttpClient, Nginx, bounded_load, completion_body

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(
        harness.prometheus_binary() is None, reason="prometheus binary not installed (apt-get install prometheus)"
    ),
    pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx binary not installed (apt-get install nginx)"),
    pytest.mark.skipif(harness.mtail_binary() is None, reason="mtail binary not installed (apt-get install mtail)"),
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


# (GPU exporter stand-in, the stack's DigitalOcean offering): an AMD stack's panels query AMD's exporter.
VENDORS = {"nvidia": ("dcgm", {}), "amd": ("amd", {"gpu": "gpu-mi300x1-192gb", "region": "atl1"})}


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_every_panel_query_returns_data_from_a_real_prometheus(
    backends: Callable[..., Backend], exporters: Callable[[str], Exporter], nginx: Callable[..., Nginx],
    tmp_path: Path, vendor: str,
) -> None:
    exporter_kind, offering = VENDORS[vendor]
    stack = harness.build_stack(monitoring={"scrapeIntervalSeconds": 1}, **offering)
    assert stack.gpu.vendor == vendor
    vllm = [backends(token_delay=0.005, api_key=API_KEY), backends(token_delay=0.005, api_key=API_KEY)]
    lb = nginx(stack, vllm)
    access_log = Path(NginxPaths.inside(lb.prefix).access_log)
    mtail = harness.start_mtail(tmp_path / "mtail", access_log)
    node = {node_name(i): exporters("node").addr for i in range(2)}
    dcgm = [exporters(exporter_kind).addr, exporters(exporter_kind).addr]
    prom = harness.start_rendered_prometheus_with_exporters(stack, vllm, node, dcgm, tmp_path / "prometheus",
                                                            nginx={"loadbalancer": mtail.addr})
    try:
        harness.wait_until(
            lambda: sum(t["health"] == "up" for t in prom.targets()) == 8, 20, interval=0.2,
            what="2 vLLM, 2 node, 2 GPU exporter, 1 Nginx (mtail) targets and Prometheus itself up",
        )

        def send(c: HttpClient, i: int) -> Any:
            # Every seventh has a wrong key (401 from Nginx itself), every fifth a model that is not served
            # (404 from vLLM, through Nginx): both error panels get data.
            key = "wrong-key" if i % 7 == 3 else API_KEY
            model = MODEL if i % 5 else "no-such-model"
            return c.request("POST", lb.url + CHAT, headers={"authorization": f"Bearer {key}"},
                             json_body=completion_body(model, 8, stream=True), timeout=30)

        async def load() -> list[object]:
            async with HttpClient() as c:
                return await bounded_load(lambda i: send(c, i), count=40, concurrency=8, deadline_s=60)

        results = asyncio.run(load())
        statuses = [getattr(r, "status", None) for r in results]
        assert statuses.count(200) >= 20 and 401 in statuses and 404 in statuses, statuses

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
        mtail.stop()
