"""Post-deploy smoke check of an OpenAI-compatible endpoint: does it really serve the model?

``run_smoke`` polls ``GET {endpoint}/models`` with backoff until it answers 200 and lists the model (503, 502,
504 and connection errors mean "still loading": the LB host is booting, vLLM is downloading weights), then sends
one short streaming chat completion and measures time to first token and total time. Every wait is bounded by
one overall timeout. The outcome is a :class:`SmokeResult` whose ``error`` is one line a person can act on:
the key was rejected, the model is not among the served ones (named), nothing answered in time (with what was
last seen), or the response was malformed (including a stream cut off before ``[DONE]``).

Standard library only (``urllib``): the check runs inside ``pulumi up`` from the program's own interpreter, and
a plain HTTP client gives exact control of every timeout and of how each failure is classified. The tests
prove the same endpoint works with the official ``openai`` client.

The API key is sent as ``Authorization: Bearer`` and never appears in a message (scrubbed if a server echoes it).
"""

from __future__ import annotations

import json
import math
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gpu_inference.constants import PROJECT_NAME, SMOKE_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from gpu_inference.config import StackConfig

API_KEY_ENV = "GPU_INFERENCE_API_KEY"
JSON_KEYS = ("ok", "endpoint", "model", "ttft_ms", "total_ms", "attempts", "error")
"""The keys of ``--json``, fixed by issue 14 (CI reads them)."""

# Statuses that mean "not ready yet": vLLM answers 503 while it loads; Nginx answers 502 while no upstream
# accepts a connection (vLLM's container not up) and 504 when one accepted but did not answer in time.
LOADING_STATUSES = frozenset({502, 503, 504})
# Backoff between polls: quick at first (a redeploy of a warm stack answers in seconds), then at most every
# 15 s (a 70B download takes tens of minutes; more polling only adds log noise).
FIRST_DELAY_S = 1.0
BACKOFF = 1.5
MAX_DELAY_S = 15.0
# One poll may take at most this long (a SYN to a host that is not up yet hangs until the socket timeout).
POLL_TIMEOUT_S = 10.0
# The chat request: short, deterministic, a few tokens; it proves the engine generates, not how fast it is.
CHAT_PROMPT = "Reply with the single word: ready"
CHAT_MAX_TOKENS = 8
# Longest silence allowed inside the stream before it counts as stalled (a real first token can take a while on
# a cold engine: CUDA graphs are captured, the prefix cache is empty).
STREAM_READ_TIMEOUT_S = 120.0
BODY_SNIPPET = 200


class SmokeInputError(ValueError):
    """An invalid --endpoint or --timeout: exit 2, nothing was sent."""


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    endpoint: str
    model: str
    ttft_ms: float | None
    total_ms: float | None
    attempts: int
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """Exactly the issue's keys, in its order."""
        values = {
            "ok": self.ok, "endpoint": self.endpoint, "model": self.model,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "total_ms": None if self.total_ms is None else round(self.total_ms, 1),
            "attempts": self.attempts, "error": self.error,
        }
        return {key: values[key] for key in JSON_KEYS}

    def summary(self) -> str:
        """One line for a person: what was served and how fast, or what went wrong."""
        if self.ok:
            return (f"ok: {self.model} served at {self.endpoint}: first token {self.ttft_ms:.0f} ms, "
                    f"total {self.total_ms:.0f} ms ({self.attempts} attempts)")
        return f"smoke test failed: {self.error}"


def validate_endpoint(text: str) -> str:
    """The endpoint as an http(s) base URL without a trailing slash; SmokeInputError otherwise."""
    value = (text or "").strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a port out of range or not a number
    except ValueError as exc:
        raise SmokeInputError(f"--endpoint {text!r} is not a URL ({exc}); use the OpenAI base URL like "
                              "http://203.0.113.10/v1") from None
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append("the scheme must be http or https")
    if not parts.hostname:
        problems.append("it names no host")
    if parts.query or parts.fragment:
        problems.append("it must have no query or fragment")
    if parts.username or parts.password:
        problems.append("credentials go in --api-key, not in the URL")
    if any(c.isspace() for c in value):
        problems.append("it contains whitespace")
    if port == 0:
        problems.append("port 0 is not a port")
    if problems:
        raise SmokeInputError(f"--endpoint {text!r} is not usable: {'; '.join(problems)} "
                              "(use the OpenAI base URL, e.g. the stack output `endpoint`: http://203.0.113.10/v1)")
    return value.rstrip("/")


def validate_timeout(value: float) -> float:
    """A positive, finite number of seconds; SmokeInputError otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise SmokeInputError(f"--timeout {value!r} must be a positive, finite number of seconds "
                              f"(default {SMOKE_TIMEOUT_SECONDS:g}, long enough for a 70B download)")
    return float(value)


def validate_model(text: str) -> str:
    if not (text or "").strip():
        raise SmokeInputError("--model must name the served model (the stack's servedModelName, else its model id)")
    return text.strip()


class _Failure(Exception):
    """A definite answer that will not change by waiting: fail now with this line."""


class _NotReady(Exception):
    """Still loading (or not reachable yet): wait and try again; the message is what was last seen."""


@dataclass
class _Check:
    endpoint: str
    model: str
    api_key: str | None
    deadline: float
    opener: urllib.request.OpenerDirector

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "[secret]") if self.api_key else text

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> HTTPResponse:
        headers = {"accept": "application/json", "user-agent": "gpu-inference-smoke"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint + path, data=data, method=method, headers=headers)
        try:
            return self.opener.open(req, timeout=max(0.1, timeout))  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            self._status(exc.code, _snippet(exc), method, path)
            raise  # _status always raises; this keeps type checkers content
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            raise _NotReady(f"{method} {self.endpoint}{path}: {_reason(exc)}") from None

    def _status(self, status: int, body: str, method: str, path: str) -> None:
        """Classify a non-2xx answer (raises)."""
        where = f"{method} {self.endpoint}{path}"
        if status in LOADING_STATUSES:
            raise _NotReady(f"{where} answered HTTP {status} ({_brief(body) or 'still loading'})")
        if status in (401, 403):
            if not self.api_key:
                raise _Failure(f"{where} answered HTTP {status}: the endpoint requires an API key and none was "
                               f"given (--api-key or {API_KEY_ENV})")
            raise _Failure(f"the API key was rejected: {where} answered HTTP {status} (check --api-key / "
                           f"{API_KEY_ENV} against the stack's apiKey)")
        if status == 404 and path == "/models":
            raise _Failure(f"{where} answered HTTP 404: is --endpoint the OpenAI base URL ending in /v1? "
                           f"({self.scrub(_brief(body))})")
        if status == 404:
            raise _Failure(f"the model {self.model!r} is not served: {where} answered HTTP 404 "
                           f"({self.scrub(_brief(body))})")
        raise _Failure(f"{where} answered HTTP {status}: {self.scrub(_brief(body)) or 'no body'}")

    def served_models(self) -> list[str]:
        with self._request("GET", "/models", None, min(POLL_TIMEOUT_S, self.remaining())) as resp:
            raw = resp.read(1 << 20)
        try:
            data = json.loads(raw)
            ids = [str(card["id"]) for card in data["data"]]
        except (ValueError, KeyError, TypeError):
            raise _Failure(f"malformed response: GET {self.endpoint}/models answered 200 but not an OpenAI model "
                           f"list ({self.scrub(_brief(raw.decode(errors='replace')))!r})") from None
        return ids

    def chat(self) -> tuple[float, float]:
        """One streaming chat completion: (ms to the first token, ms to [DONE])."""
        body = {
            "model": self.model, "messages": [{"role": "user", "content": CHAT_PROMPT}],
            "max_tokens": CHAT_MAX_TOKENS, "temperature": 0, "stream": True,
        }
        started = time.monotonic()
        timeout = min(STREAM_READ_TIMEOUT_S, self.remaining())
        first: float | None = None
        chunks = 0
        where = f"POST {self.endpoint}/chat/completions"
        with self._request("POST", "/chat/completions", body, timeout) as resp:
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise _Failure(f"malformed response: {where} with stream=true answered {ctype or 'no content type'}, "
                               "not text/event-stream")
            while True:
                if time.monotonic() > self.deadline:
                    raise _NotReady(f"{where}: the stream was still running at the deadline ({chunks} chunks)")
                try:
                    line = resp.readline(1 << 20)
                except (OSError, HTTPException) as exc:
                    raise _Failure(f"the stream was cut off after {chunks} chunks, before [DONE] "
                                   f"({where}: {_reason(exc)})") from None
                if not line:
                    raise _Failure(f"the stream was cut off after {chunks} chunks, before [DONE] "
                                   f"({where}: the connection closed)")
                text = line.decode("utf-8", errors="replace").strip()
                if not text or text.startswith(":") or not text.startswith("data:"):
                    continue  # SSE blank separators, comments, event/id fields
                payload = text[len("data:"):].strip()
                if payload == "[DONE]":
                    break
                chunks += 1
                if _chunk_has_token(payload, where, self.scrub) and first is None:
                    first = time.monotonic()
        done = time.monotonic()
        if first is None:
            raise _Failure(f"malformed response: {where} streamed {chunks} chunks and [DONE] but no token")
        return (first - started) * 1000, (done - started) * 1000


def _chunk_has_token(payload: str, where: str, scrub: Callable[[str], str]) -> bool:
    """Whether one SSE data payload carries generated text (or a finish reason); raises on a malformed chunk."""
    try:
        chunk = json.loads(payload)
    except ValueError:
        raise _Failure(f"malformed response: {where} streamed a chunk that is not JSON "
                       f"({scrub(payload[:BODY_SNIPPET])!r})") from None
    if isinstance(chunk, dict) and "error" in chunk:  # vLLM reports an engine error inside the stream
        raise _Failure(f"the server reported an error mid-stream: {scrub(_brief(json.dumps(chunk['error'])))}")
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        raise _Failure(f"malformed response: {where} streamed a chunk without `choices` ({scrub(payload[:BODY_SNIPPET])!r})")
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        # Reasoning models (vLLM's reasoning parsers) stream their thinking first, as reasoning_content/reasoning.
        if any(delta.get(k) for k in ("content", "reasoning_content", "reasoning")) or choice.get("finish_reason"):
            return True
    return False


def _snippet(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(4096).decode("utf-8", errors="replace")
    except (OSError, HTTPException):
        return ""


def _brief(body: str) -> str:
    """The message of an OpenAI/vLLM error body, else the body's first characters, on one line."""
    text = body.strip()
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        text = str(err.get("message", err)) if isinstance(err, dict) else str(err)
    except ValueError:
        pass
    text = " ".join(text.split())
    return text if len(text) <= BODY_SNIPPET else text[: BODY_SNIPPET - 3] + "..."


def _reason(exc: BaseException) -> str:
    reason: Any = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer (connection timed out)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listening yet)"
    return " ".join(str(reason).split()) or type(reason).__name__


def run_smoke(endpoint: str, model: str, api_key: str | None, timeout_s: float = SMOKE_TIMEOUT_SECONDS,
              progress: Callable[[str], None] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> SmokeResult:
    """Wait for ``endpoint`` to serve ``model``, then time one streaming chat completion.

    Raises SmokeInputError on an invalid endpoint, model or timeout (nothing sent); every other outcome is a
    SmokeResult. ``progress`` receives one line per poll that was not ready yet (the CLI passes it only on a TTY).
    """
    endpoint = validate_endpoint(endpoint)
    model = validate_model(model)
    timeout_s = validate_timeout(timeout_s)
    started = time.monotonic()
    # Proxies from the environment (HTTPS_PROXY, NO_PROXY) apply, as for any client on the runner.
    check = _Check(endpoint, model, api_key or None, started + timeout_s, urllib.request.build_opener())
    attempts = 0
    delay = FIRST_DELAY_S
    last = "nothing yet"

    def result(error: str | None, ttft: float | None = None, total: float | None = None) -> SmokeResult:
        return SmokeResult(ok=error is None, endpoint=endpoint, model=model, ttft_ms=ttft, total_ms=total,
                           attempts=attempts, error=None if error is None else check.scrub(error))

    while True:
        attempts += 1
        try:
            served = check.served_models()
            if model not in served:
                names = ", ".join(repr(s) for s in served) or "none"
                return result(f"the model {model!r} is not served at {endpoint}; it serves {names} "
                              "(--model must be the stack's servedModelName, else its model id)")
            attempts += 1
            ttft, total = check.chat()
            return result(None, ttft, total)
        except _Failure as exc:
            return result(str(exc))
        except _NotReady as exc:
            last = str(exc)
        waited = time.monotonic() - started
        if check.remaining() <= 0:
            return result(f"no answer within the timeout of {timeout_s:g} s ({attempts} attempts); last seen: "
                          f"{last}")
        if progress is not None:
            progress(f"waiting for {endpoint} ({waited:.0f} s of {timeout_s:g} s, attempt {attempts}): {check.scrub(last)}")
        sleep(max(0.0, min(delay, check.remaining())))
        delay = min(delay * BACKOFF, MAX_DELAY_S)
        if check.remaining() <= 0:
            return result(f"no answer within the timeout of {timeout_s:g} s ({attempts} attempts); last seen: "
                          f"{last}")


# ---------------------------------------------------------------------------------------------
# The program's post-deploy step (components/smoke_check.py): what it runs and whether it can reach the endpoint
# ---------------------------------------------------------------------------------------------


def smoke_command(python: str, endpoint: str, model: str, timeout_s: float) -> str:
    """The shell command the program's pulumi-command step runs: exactly this CLI, every argument quoted.

    The API key is not in it (it reaches the process as GPU_INFERENCE_API_KEY): pulumi-command prints the
    command line of a failed command in its error."""
    return shlex.join([python, "-m", "gpu_inference", "smoke", "--endpoint", endpoint, "--model", model,
                       "--timeout", f"{timeout_s:g}"])


def reachability(cfg: StackConfig) -> tuple[bool, str | None]:
    """(whether the smoke step should run at all, a note for the preview) for a stack's endpoint exposure.

    The step runs where `pulumi up` runs, whose address nobody knows offline: a private endpoint
    (publicEndpoint false) is reachable only from allowedCidrs, so the preview says so; with no allowedCidrs
    nothing outside the private network reaches it, so the step is not created (it could only time out)."""
    key = f"{PROJECT_NAME}:smokeTest"
    if not cfg.smoke_test:
        return False, None
    if not cfg.public_endpoint and not cfg.allowed_cidrs:
        return False, (f"{key} skipped: publicEndpoint is false and allowedCidrs is empty, so no runner outside the "
                       "stack's network can reach the endpoint; `pulumi up` will not verify it (add the runner's "
                       f"network to allowedCidrs, or set {key} false to silence this)")
    notes: list[str] = []
    if not cfg.public_endpoint:
        notes.append(f"the smoke check runs where `pulumi up` runs and the endpoint admits only allowedCidrs "
                     f"({', '.join(cfg.allowed_cidrs)}): run `pulumi up` from inside them, or it fails after "
                     f"{cfg.smoke_timeout_seconds:g} s with 'no answer within the timeout' (or set {key} false)")
    if cfg.load_balancer.tls_domain:
        notes.append(f"the smoke check calls https://{cfg.load_balancer.tls_domain}/v1: its DNS record and certificate "
                     "must be in place before `pulumi up` ends (certificates are the operator's)")
    return True, "; ".join(notes) or None


__all__ = ["API_KEY_ENV", "JSON_KEYS", "SmokeInputError", "SmokeResult", "reachability", "run_smoke", "smoke_command",
           "validate_endpoint", "validate_timeout"]
