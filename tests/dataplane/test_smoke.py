"""`smoke` (issue 14) against the vLLM-compatible test server through the rendered nginx.conf on real nginx.

Every case the post-deploy check must tell apart: healthy, still loading (503 for a while, then ready), wrong
key, wrong model, nothing listening (bounded by the timeout), a stream dropped mid-way, a malformed stream.
The official `openai` client is run against the same endpoint to prove it is what OpenAI clients expect.
TTFT/total figures are printed (`-s`), never asserted beyond what the test server's own delays imply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from gpu_inference.smoke import API_KEY_ENV, JSON_KEYS, run_smoke
from tests.dataplane import harness
from tests.dataplane.harness import API_KEY, MODEL, REPO_ROOT, Backend, Nginx

pytestmark = [
    pytest.mark.dataplane,
    pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx binary not installed (apt-get install nginx)"),
]

PREFILL_S = 0.05
TOKEN_S = 0.05
CHAT_TOKENS = 8  # gpu_inference.smoke.CHAT_MAX_TOKENS


def _endpoint(lb: Nginx) -> str:
    return lb.url + "/v1"


def _lb(backends: Callable[..., Backend], nginx: Callable[..., Nginx], **options: object) -> tuple[Backend, Nginx]:
    node = backends(api_key=API_KEY, token_delay=TOKEN_S, prefill_delay=PREFILL_S, **options)
    return node, nginx(harness.build_stack(), [node])


def test_healthy_endpoint_passes_and_times_the_first_token(backends: Callable[..., Backend],
                                                           nginx: Callable[..., Nginx]) -> None:
    node, lb = _lb(backends, nginx)
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30)
    print(f"\nhealthy via nginx: ttft_ms={result.ttft_ms:.1f} total_ms={result.total_ms:.1f} attempts={result.attempts}")
    assert result.ok and result.error is None, result.error
    assert result.attempts == 2  # one /models poll, one chat completion
    assert result.ttft_ms is not None and result.total_ms is not None
    # The fake waits PREFILL_S before the first token and TOKEN_S between tokens: TTFT is at least the prefill,
    # and the total spans every token up to [DONE] (a total taken at the headers or first byte would be ~TTFT).
    # Lower bounds only: a loaded machine delays what the client sees, never what the server waited.
    assert result.ttft_ms >= PREFILL_S * 1000
    assert result.total_ms >= (PREFILL_S + (CHAT_TOKENS - 1) * TOKEN_S) * 1000 and result.total_ms > result.ttft_ms
    assert node.stats()["served"] == 1


def test_cli_json_has_exactly_the_issue_keys_and_never_echoes_the_key(backends: Callable[..., Backend],
                                                                     nginx: Callable[..., Nginx]) -> None:
    _, lb = _lb(backends, nginx)
    env = {**os.environ, API_KEY_ENV: API_KEY, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "gpu_inference", "smoke", "--endpoint", _endpoint(lb), "--model", MODEL,
         "--timeout", "30", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert tuple(data) == JSON_KEYS
    assert data["ok"] is True and data["error"] is None and data["model"] == MODEL
    assert data["endpoint"] == _endpoint(lb) and data["attempts"] == 2
    assert data["ttft_ms"] >= PREFILL_S * 1000 and data["total_ms"] > data["ttft_ms"]
    assert API_KEY not in proc.stdout + proc.stderr


def test_the_official_openai_client_agrees_with_the_smoke_check(backends: Callable[..., Backend],
                                                                nginx: Callable[..., Nginx]) -> None:
    """What smoke accepts, OpenAI's own client can use; what smoke rejects (a bad key), the client rejects too."""
    import openai  # requirements-dev.txt pins it: a missing client must fail here, not skip
    _, lb = _lb(backends, nginx)
    assert run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30).ok
    client = openai.OpenAI(base_url=_endpoint(lb), api_key=API_KEY, max_retries=0, timeout=30)
    assert MODEL in [m.id for m in client.models.list()]
    started = time.monotonic()
    first: float | None = None
    text = ""
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=CHAT_TOKENS, stream=True,
    )
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            first = first or time.monotonic()
            text += delta
    assert first is not None and text.split() == [f"tok{i}" for i in range(CHAT_TOKENS)]
    print(f"\nopenai client via nginx: ttft_ms={(first - started) * 1000:.1f}")
    bad = openai.OpenAI(base_url=_endpoint(lb), api_key="not-the-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert "401" in (run_smoke(_endpoint(lb), MODEL, "not-the-key", timeout_s=30).error or "")


def test_still_loading_is_waited_for_then_passes(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    loading_s = 2.5
    node, lb = _lb(backends, nginx)
    seen: list[str] = []
    started = time.monotonic()
    node.set_knobs(loading_seconds=loading_s)  # from now, not from the server's start (nginx may start slowly)
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30, progress=seen.append)
    elapsed = time.monotonic() - started
    print(f"\nloading {loading_s} s: ttft_ms={result.ttft_ms:.1f} attempts={result.attempts} waited {elapsed:.1f} s")
    assert result.ok, result.error
    assert elapsed >= loading_s * 0.9  # it did wait (the fake answered 503 until then)
    assert result.attempts >= 3 and len(seen) == result.attempts - 2
    assert all("503" in line for line in seen), seen
    assert node.stats()["by_status"].get("503", 0) >= 1


def test_wrong_key_fails_at_once_with_401(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    _, lb = _lb(backends, nginx)
    started = time.monotonic()
    result = run_smoke(_endpoint(lb), MODEL, "wrong-key", timeout_s=30)
    assert not result.ok and result.attempts == 1
    assert result.error is not None and "API key was rejected" in result.error and "HTTP 401" in result.error
    assert "wrong-key" not in result.error
    assert time.monotonic() - started < 10  # no waiting on a definite answer
    missing = run_smoke(_endpoint(lb), MODEL, None, timeout_s=30)
    assert missing.error is not None and "none was given" in missing.error and API_KEY_ENV in missing.error


def test_wrong_model_names_the_served_ones(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    _, lb = _lb(backends, nginx, model="meta-llama/Llama-3.1-8B-Instruct")
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30)
    assert not result.ok and result.attempts == 1
    assert result.error is not None and f"'{MODEL}' is not served" in result.error
    assert "'meta-llama/Llama-3.1-8B-Instruct'" in result.error


def test_nothing_listening_is_bounded_by_the_timeout() -> None:
    port = harness.free_port()  # bound and released: nothing listens there
    timeout = 3.0
    started = time.monotonic()
    result = run_smoke(f"http://{harness.LOOPBACK}:{port}/v1", MODEL, API_KEY, timeout_s=timeout)
    elapsed = time.monotonic() - started
    assert not result.ok and result.error is not None
    assert f"no answer within the timeout of {timeout:g} s" in result.error
    assert "last seen" in result.error and "connection refused" in result.error
    assert timeout <= elapsed < timeout + 2


def test_nginx_with_no_live_backend_is_bounded_by_the_timeout_and_says_502(
    nginx: Callable[..., Nginx],
) -> None:
    lb = nginx(harness.build_stack(), [f"{harness.LOOPBACK}:{harness.free_port()}"])
    timeout = 3.0
    started = time.monotonic()
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=timeout)
    assert not result.ok and result.error is not None
    assert "no answer within the timeout" in result.error and "HTTP 502" in result.error
    assert time.monotonic() - started < timeout + 2


def test_a_stream_dropped_mid_way_fails_as_cut_off(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    _, lb = _lb(backends, nginx, drop_stream_after=3)
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30)
    assert not result.ok and result.error is not None
    assert "the stream was cut off after" in result.error and "before [DONE]" in result.error
    assert result.ttft_ms is None


def test_a_malformed_stream_fails_as_malformed(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    node, lb = _lb(backends, nginx)
    node.set_knobs(malformed_stream=True)
    result = run_smoke(_endpoint(lb), MODEL, API_KEY, timeout_s=30)
    assert not result.ok and result.error is not None
    assert result.error.startswith("malformed response") and "not JSON" in result.error


def _registered_line(endpoint: str, model: str, timeout: float) -> str:
    """The command line the program registers (components/smoke_check.py), for this endpoint."""
    from components.smoke_check import smoke_python
    from gpu_inference.smoke import smoke_command

    return smoke_command(smoke_python(), endpoint, model, timeout)


def _as_pulumi_command_runs_it(line: str, api_key: str) -> subprocess.CompletedProcess[str]:
    # pulumi-command: `/bin/sh -c <create>` in the provider's working directory (the project directory), the
    # runner's environment plus `environment` (provider/pkg/provider/local/commandOutputs.go).
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env[API_KEY_ENV] = api_key
    return subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                          timeout=90, check=False)


def test_the_registered_command_line_passes_and_fails_as_pulumi_up_would(
    backends: Callable[..., Backend], nginx: Callable[..., Nginx],
) -> None:
    """The exact line the program registers, run the way pulumi-command runs it: exit 0 on a served endpoint,
    and on a wrong model exit 1 with the one line `pulumi up` then shows; progress stays off without a terminal."""
    node, lb = _lb(backends, nginx)
    node.set_knobs(loading_seconds=4)  # from now: the interpreter's start-up must not eat the whole phase
    ok = _as_pulumi_command_runs_it(_registered_line(_endpoint(lb), MODEL, 30), API_KEY)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: {MODEL} served at {_endpoint(lb)}: first token ") and ok.stderr == ""
    assert node.stats()["by_status"].get("503", 0) >= 1  # it did wait through the loading phase, silently
    bad = _as_pulumi_command_runs_it(_registered_line(_endpoint(lb), "qwen-typo", 30), API_KEY)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("smoke test failed: the model 'qwen-typo' is not served") and bad.stderr.count("\n") == 1
    assert API_KEY not in ok.stdout + ok.stderr + bad.stdout + bad.stderr


def test_progress_lines_appear_on_a_terminal(backends: Callable[..., Backend], nginx: Callable[..., Nginx]) -> None:
    """The same loading phase as above, with stderr on a pseudo-terminal: now each poll says what it saw."""
    import pty

    node, lb = _lb(backends, nginx)
    master, slave = pty.openpty()
    try:
        env = {**os.environ, API_KEY_ENV: API_KEY, "PYTHONPATH": str(REPO_ROOT)}
        node.set_knobs(loading_seconds=3)
        proc = subprocess.run(
            [sys.executable, "-m", "gpu_inference", "smoke", "--endpoint", _endpoint(lb), "--model", MODEL,
             "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=slave, text=True, env=env, cwd=REPO_ROOT, timeout=60, check=False,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not data:
                break
            seen += data
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0 and proc.stdout.startswith("ok: ")
    assert f"waiting for {_endpoint(lb)}" in text and "HTTP 503" in text
    assert API_KEY not in text
