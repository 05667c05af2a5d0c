"""`smoke` (issue 14) without nginx: input validation (exit 2), the fixed JSON keys, key hygiene, reachability.

The behaviour against a served, loading, refusing or broken endpoint is in tests/dataplane/test_smoke.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gpu_inference.cli import main
from gpu_inference.config import parse_stack_config
from gpu_inference.smoke import (
    JSON_KEYS,
    SmokeInputError,
    SmokeResult,
    reachability,
    run_smoke,
    smoke_command,
    validate_endpoint,
    validate_timeout,
)

KEY = "sk-test-0123456789abcdef"


@pytest.mark.parametrize("url", ["http://203.0.113.10/v1", "https://llm.example.com/v1/", "http://127.0.0.1:8080/v1"])
def test_valid_endpoints_are_kept_without_a_trailing_slash(url: str) -> None:
    assert validate_endpoint(url) == url.rstrip("/")


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://203.0.113.10/v1", "http or https"),
    ("203.0.113.10/v1", "http or https"),
    ("http:///v1", "no host"),
    ("http://203.0.113.10:99999/v1", "not a URL"),
    ("http://203.0.113.10:0/v1", "port 0"),
    ("http://user:pw@203.0.113.10/v1", "--api-key"),
    ("http://203.0.113.10/v1?x=1", "no query"),
    ("", "http or https"),
])
def test_invalid_endpoints_are_refused(url: str, why: str) -> None:
    with pytest.raises(SmokeInputError, match="--endpoint") as info:
        validate_endpoint(url)
    assert why in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
def test_timeouts_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(SmokeInputError, match="positive, finite"):
        validate_timeout(bad)
    assert validate_timeout(0.5) == 0.5


@pytest.mark.parametrize("argv", [
    ["--endpoint", "not a url", "--model", "m"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", "m", "--timeout", "0"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", "m", "--timeout", "nan"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", "m", "--timeout", "inf"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", "m", "--timeout", "-3"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", "m", "--timeout", "soon"],
    ["--endpoint", "http://127.0.0.1/v1", "--model", " "],
])
def test_invalid_input_exits_2_with_one_line_and_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", *argv, "--json"]) == 2
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert tuple(data) == JSON_KEYS and data["ok"] is False and data["attempts"] == 0 and data["error"]
    assert err.startswith("error: ") and err.count("\n") == 1


def test_json_keys_are_exactly_the_issue_keys() -> None:
    result = SmokeResult(ok=True, endpoint="http://x/v1", model="m", ttft_ms=12.345, total_ms=99.99, attempts=2,
                         error=None)
    assert tuple(result.to_json()) == ("ok", "endpoint", "model", "ttft_ms", "total_ms", "attempts", "error")
    assert result.to_json()["ttft_ms"] == 12.3


class _EchoKey(BaseHTTPRequestHandler):
    """A server that echoes the Authorization header in a 400 body: the key must still not be printed."""

    def do_GET(self) -> None:
        body = json.dumps({"error": {"message": f"bad header {self.headers.get('authorization')}"}}).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_key_is_never_printed_even_when_a_server_echoes_it(
    echo_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_smoke(echo_server, "m", KEY, timeout_s=10)
    assert not result.ok and result.attempts == 1 and "HTTP 400" in (result.error or "")
    assert KEY not in (result.error or "") and "[secret]" in (result.error or "")
    monkeypatch.setenv("GPU_INFERENCE_API_KEY", KEY)
    assert main(["smoke", "--endpoint", echo_server, "--model", "m", "--timeout", "10", "--json"]) == 1
    out, err = capsys.readouterr()
    assert KEY not in out + err and json.loads(out)["ok"] is False
    assert err.startswith("smoke test failed: ") and err.count("\n") == 1


def test_the_command_line_quotes_every_argument() -> None:
    line = smoke_command(".venv/bin/python", "http://203.0.113.10/v1", "my model's name", 3600.0)
    assert line == (".venv/bin/python -m gpu_inference smoke --endpoint http://203.0.113.10/v1 "
                    "--model 'my model'\"'\"'s name' --timeout 3600")


def _cfg(**overrides: Any) -> Any:
    raw = {"provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
           "monthlyBudgetUsd": 5000, **overrides}
    return parse_stack_config(raw)


def test_reachability_of_public_private_and_closed_endpoints() -> None:
    assert reachability(_cfg()) == (True, None)
    assert reachability(_cfg(smokeTest=False)) == (False, None)
    run, note = reachability(_cfg(publicEndpoint=False, allowedCidrs=["198.51.100.0/24"]))
    assert run and note is not None and "198.51.100.0/24" in note
    run, note = reachability(_cfg(publicEndpoint=False))
    assert not run and note is not None and "skipped" in note
    run, note = reachability(_cfg(loadBalancer={"tlsDomain": "llm.example.com"}))
    assert run and note is not None and "https://llm.example.com/v1" in note
