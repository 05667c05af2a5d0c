"""Issue 16 on AWS: spot with an on-demand floor, and the spot interruption watcher.

The first onDemandNodes GPU nodes are on demand, the rest spot, each priced as what it is; only spot nodes
get the watcher, which is run here against a stand-in of the instance metadata service on loopback.
Every test here fails on the code before issue 16 (no `onDemandNodes` key, no watcher).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_validators import cloud_init_schema, shellcheck, systemd_root, systemd_verify, write

from gpu_inference.config import load_stack_config, read_stack_file
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.preview_runner import ProgramRun, engine_config, run_program
from gpu_inference.render import render_all
from gpu_inference.render.cloud_init import gpu_node_cloud_init
from gpu_inference.render.spot import SPOT_WATCHER_PATH, SPOT_WATCHER_UNIT, spot_watcher_script, spot_watcher_unit
from gpu_inference.stack import ResolvedStack, resolve_stack

STACK = Path(__file__).parent / "stacks" / "aws-spot-floor.yaml"


def spot_stack() -> ResolvedStack:
    return resolve_stack(load_stack_config(STACK), name="aws-spot-floor")
INSTANCE = "aws:ec2/instance:Instance"
NODE = "gpu-inference:index:GpuInferenceNode"


@pytest.fixture(scope="module")
def floor() -> ProgramRun:
    cfg = load_stack_config(STACK)
    config, secret_keys = engine_config(read_stack_file(STACK))
    return run_program(PROJECT_DIR, "aws-spot-floor", config, secret_keys, cfg.provider, cfg.region)


def test_the_first_on_demand_nodes_are_on_demand_and_the_rest_spot(floor: ProgramRun) -> None:
    gpu = sorted((r for r in floor.recorded if r.type == INSTANCE and r.name.startswith("gpu-inference-vllm-")),
                 key=lambda r: r.name)
    assert [r.name for r in gpu] == [f"gpu-inference-vllm-{i}-node" for i in range(3)]
    assert "instanceMarketOptions" not in gpu[0].inputs
    for spot in gpu[1:]:
        market = spot.inputs["instanceMarketOptions"]
        assert market["marketType"] == "spot"
        assert market["spotOptions"] == {"instanceInterruptionBehavior": "terminate", "spotInstanceType": "one-time"}
    nodes = sorted((r for r in floor.recorded if r.type == NODE), key=lambda r: r.inputs["nodeIndex"])
    assert [n.inputs["spot"] for n in nodes] == [False, True, True]


def test_each_node_is_priced_as_what_it_is(floor: ProgramRun) -> None:
    from gpu_inference.pricing import bill_for_resources

    lines = bill_for_resources((r.type, r.name, r.inputs) for r in floor.recorded if r.custom).by_resource()
    on_demand, *spots = (lines[f"gpu-inference-vllm-{i}-node"] for i in range(3))
    assert on_demand.description == "g6e.xlarge (1x L40S) at $1.861/h"
    for line in spots:
        # The catalog has no sourced spot price for g6e.xlarge: on demand, said to be an upper bound.
        assert line.monthly_usd == pytest.approx(on_demand.monthly_usd)
        assert "spot, priced at on-demand as an upper bound" in line.description


def test_a_sourced_spot_price_is_used_per_spot_node(floor: ProgramRun) -> None:
    from gpu_inference.catalog import load_catalog
    from gpu_inference.pricing import bill_for_resources

    catalog = load_catalog()
    offering = catalog.offerings["g6e.xlarge"]
    spotty = catalog.model_copy(update={"offerings": {
        **catalog.offerings, "g6e.xlarge": offering.model_copy(update={"spot_hourly_usd": 0.75})}})
    lines = bill_for_resources(((r.type, r.name, r.inputs) for r in floor.recorded if r.custom), spotty).by_resource()
    assert lines["gpu-inference-vllm-0-node"].hourly_usd == pytest.approx(1.861)
    assert [lines[f"gpu-inference-vllm-{i}-node"].hourly_usd for i in (1, 2)] == pytest.approx([0.75, 0.75])


def test_the_watcher_is_on_spot_nodes_only() -> None:
    stack = spot_stack()
    for i, spot in enumerate((False, True, True)):
        doc = yaml.safe_load(gpu_node_cloud_init(stack, i, "sk-test", None))
        paths = {f["path"] for f in doc["write_files"]}
        assert (SPOT_WATCHER_PATH in paths) is spot
        assert (["systemctl", "enable", "--now", SPOT_WATCHER_UNIT] in doc["runcmd"]) is spot
        if spot:
            assert doc["runcmd"][0] == ["systemctl", "enable", "--now", SPOT_WATCHER_UNIT]
    files = render_all(stack, ["10.0.0.2", "10.0.0.3", "10.0.0.4"], "10.0.0.10", "sk-test", None)
    assert {p for p in files if "spot-interruption-watcher" in p} == {
        f"nodes/node-{i}/spot-interruption-watcher.{ext}" for i in (1, 2) for ext in ("sh", "service")}


def test_a_spot_nodes_user_data_passes_the_cloud_init_schema(tmp_path: Path) -> None:
    result = cloud_init_schema(write(tmp_path / "node-1.yaml", gpu_node_cloud_init(spot_stack(), 1, "sk-test", None)))
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stdout + result.stderr


def test_the_watcher_script_passes_shellcheck(tmp_path: Path) -> None:
    path = tmp_path / "spot-interruption-watcher.sh"
    path.write_text(spot_watcher_script(spot_stack()))
    result = shellcheck(path)
    assert result.returncode == 0, result.stdout


def test_the_watcher_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    script = spot_watcher_script(spot_stack())
    root = systemd_root(tmp_path, {SPOT_WATCHER_UNIT: spot_watcher_unit()}, {SPOT_WATCHER_PATH: script})
    result = systemd_verify(root, [SPOT_WATCHER_UNIT])
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# ---------------------------------------------------------------------------------------------
# The watcher against a stand-in of the instance metadata service (IMDSv2) on loopback
# ---------------------------------------------------------------------------------------------

NOTICE = {"action": "terminate", "time": "2026-12-02T18:00:00Z"}


class FakeImds:
    """PUT /latest/api/token → a token (the TTL header is required); GET spot/instance-action with a valid token
    → 404 ``quiet_polls`` times, then the notice. The first token "expires" after one use (401)."""

    def __init__(self, quiet_polls: int | None) -> None:
        self.quiet_polls = quiet_polls
        self.log: list[tuple[str, str, str | None]] = []
        self.tokens = 0
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                with imds.lock:
                    imds.log.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
                    if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                        return self._send(400)
                    imds.tokens += 1
                    return self._send(200, f"token-{imds.tokens}".encode())

            def do_GET(self) -> None:
                with imds.lock:
                    token = self.headers.get("X-aws-ec2-metadata-token")
                    imds.log.append(("GET", self.path, token))
                    if self.path != "/latest/meta-data/spot/instance-action":
                        return self._send(404)
                    if token != f"token-{imds.tokens}" or (token == "token-1" and len(imds.log) > 2):
                        return self._send(401)
                    gets = sum(1 for method, *_ in imds.log if method == "GET")
                    if imds.quiet_polls is None or gets <= imds.quiet_polls:
                        return self._send(404)
                    return self._send(200, json.dumps(NOTICE).encode())

        return Handler


@pytest.fixture
def stand_in(request: pytest.FixtureRequest) -> Iterator[tuple[FakeImds, str]]:
    imds = FakeImds(request.param)
    server = ThreadingHTTPServer(("127.0.0.1", 0), imds.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield imds, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def watcher_env(tmp_path: Path, endpoint: str) -> tuple[dict[str, str], Path]:
    """Stubs of docker and systemctl that log their arguments; the watcher pointed at the stand-in."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("docker", "systemctl"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        stub.chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SPOT_WATCHER_IMDS": endpoint,
           "SPOT_WATCHER_POLL_SECONDS": "0.1", "SPOT_WATCHER_DRAIN_SECONDS": "2", "RUNTIME_DIRECTORY": str(runtime)}
    return env, calls


@pytest.mark.parametrize("stand_in", [3], indirect=True)
def test_on_notice_the_watcher_drains_and_stops_vllm(stand_in: tuple[FakeImds, str], tmp_path: Path) -> None:
    imds, endpoint = stand_in
    script = tmp_path / "watcher.sh"
    script.write_text(spot_watcher_script(spot_stack()))
    script.chmod(0o755)
    env, calls = watcher_env(tmp_path, endpoint)
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "docker kill --signal=SIGTERM vllm", "docker wait vllm", "systemctl stop vllm.service"]
    assert json.loads((tmp_path / "run" / "instance-action").read_text()) == NOTICE
    assert "spot interruption notice" in result.stdout
    # IMDSv2: a token first (with its TTL), every GET with the current token; the expired one was renewed.
    assert imds.log[0] == ("PUT", "/latest/api/token", "21600")
    assert all(token is not None and token.startswith("token-") for method, _, token in imds.log if method == "GET")
    assert imds.tokens == 2 and imds.log[-1] == ("GET", "/latest/meta-data/spot/instance-action", "token-2")


@pytest.mark.parametrize("stand_in", [None], indirect=True)
def test_without_a_notice_the_watcher_keeps_polling_and_touches_nothing(
    stand_in: tuple[FakeImds, str], tmp_path: Path
) -> None:
    imds, endpoint = stand_in
    script = tmp_path / "watcher.sh"
    script.write_text(spot_watcher_script(spot_stack()))
    script.chmod(0o755)
    env, calls = watcher_env(tmp_path, endpoint)
    proc = subprocess.Popen([str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    gets = [entry for entry in imds.log if entry[0] == "GET"]
    assert len(gets) >= 5  # polled over and over (every 0.1 s here, 5 s on a node)
    assert not calls.exists()
