"""Fixtures that start real processes for the data-plane tests and always stop them again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dataplane import harness
from tests.dataplane.harness import Backend, Nginx, Prometheus

needs_nginx = pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx binary not installed (apt-get install nginx)")
needs_prometheus = pytest.mark.skipif(
    harness.prometheus_binary() is None, reason="prometheus binary not installed (apt-get install prometheus)"
)


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Callable[..., Backend]]:
    """`backends(**flags)` starts one fake vLLM; all are killed when the test ends, passed or not."""
    started: list[Backend] = []

    def start(**options: Any) -> Backend:
        backend = harness.start_backend(tmp_path / "backend-logs", **options)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """`nginx(stack, backends)` renders nginx.conf into a temp prefix and runs it; stopped at teardown."""
    started: list[Nginx] = []

    def start(stack: Any, backend_list: list[Backend | str]) -> Nginx:
        prefix = tmp_path / f"nginx-{len(started)}"
        proc = harness.start_rendered_nginx(stack, backend_list, prefix)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(stack: Any, vllm: list[Backend]) -> Prometheus:
        proc = harness.start_rendered_prometheus(stack, vllm, tmp_path / f"prometheus-{len(started)}")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def healthchecker() -> Iterator[Callable[..., harness.HealthChecker]]:
    """`healthchecker(stack, nginx, backends)` runs the LB's active health checker; stopped at teardown."""
    started: list[harness.HealthChecker] = []

    def start(stack: Any, lb: Nginx, backend_list: list[Backend | str]) -> harness.HealthChecker:
        checker = harness.start_healthchecker(stack, lb, backend_list)
        started.append(checker)
        return checker

    yield start
    for checker in started:
        checker.stop()
