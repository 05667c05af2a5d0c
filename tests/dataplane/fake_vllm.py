"""A vLLM-compatible fake OpenAI server for data-plane tests (standard library only).

It speaks the parts of vLLM's HTTP surface that Nginx and Prometheus touch: `/v1/models`,
`/v1/chat/completions`, `/v1/completions` (JSON or SSE), `/health`, `/metrics` (vLLM v0.19 metric
names, label `model_name` + `engine`, vLLM's bucket boundaries) and vLLM's `--api-key` check.
Behind it sits a tiny "engine": at most `max_num_seqs` requests run at once, the rest wait (so
`vllm:num_requests_waiting` rises under load), every running token occupies KV cache, and each
output token takes `token_delay` seconds, so a request lasts about `max_tokens × token_delay`.

Test-only knobs live under `/admin/*` (no key, loopback only): force a status, add latency, become
"loading" again, read per-process counters (in-flight and peak in-flight long requests, served
requests) that the load-balancing tests use to see where Nginx sent what.

Run: `python -m tests.dataplane.fake_vllm --port 0 ...`; the first stdout line is a JSON object with
the bound port, so a harness can bind port 0 without racing for a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Any

VLLM_VERSION = "0.19.0"

# Bucket boundaries copied from vLLM's PrometheusStatLogger (vllm/v1/metrics/loggers.py) so that
# histogram_quantile() in our alert rules sees the same resolution as in production.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

STATUS_TEXT = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip

MAX_BODY = 64 * 1024 * 1024  # the fake refuses absurd bodies itself; Nginx's limit is what tests check


def build_1_2_5_buckets(max_value: int) -> list[float]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to max_model_len."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return out
            out.append(float(value))
        exponent += 1


class Histogram:
    """A Prometheus histogram with fixed upper bounds (cumulative at exposition time)."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> None:
        self.name, self.doc, self.buckets = name, doc, tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def expose(self, labels: str) -> list[str]:
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            lines.append(f'{self.name}_bucket{{{labels},le="{_fmt_le(bound)}"}} {float(running)}')
        lines.append(f'{self.name}_bucket{{{labels},le="+Inf"}} {float(self.count)}')
        lines.append(f"{self.name}_count{{{labels}}} {float(self.count)}")
        lines.append(f"{self.name}_sum{{{labels}}} {self.sum!r}")
        return lines


def _fmt_le(bound: float) -> str:
    # prometheus_client prints 1.0 as "1.0" and 2560.0 as "2560.0"; keep the same spelling.
    return repr(float(bound))


@dataclass
class Knobs:
    """Everything a test may tune; CLI flags set the start values, POST /admin/knobs changes them live."""

    model: str = "fake/model"
    api_key: str | None = None
    token_delay: float = 0.01
    """Seconds per output token; a request lasts about max_tokens × token_delay."""
    prefill_delay: float = 0.0
    """Seconds between admission and the first token (prefill)."""
    extra_latency: float = 0.0
    """Added before the first token of every request (test knob: 'the GPU got slow')."""
    max_num_seqs: int = 256
    """Requests running at once; more wait in the queue (vllm:num_requests_waiting)."""
    kv_capacity_tokens: int = 65536
    """KV-cache size in tokens; usage = tokens held by running requests / this."""
    max_model_len: int = 8192
    default_max_tokens: int = 16
    long_threshold: int = 64
    """Requests with max_tokens ≥ this count as 'long' in /admin/stats (load-balancing tests)."""
    force_status: int | None = None
    """When set, every /v1/* request answers this status (vLLM-style JSON error) at once."""
    health_status: int | None = None
    """When set, /health answers this status regardless of loading."""
    # ---- smoke-test modes (issue 14) ----
    drop_stream_after: int | None = None
    """When set, a streaming completion aborts its connection after this many tokens (no [DONE])."""
    malformed_stream: bool = False
    """When set, a streaming completion sends a data line that is not JSON (a broken proxy, a wrong server)."""
    hang: bool = False
    """When true, every request but /admin/* is read and never answered (a hung node: the TCP connection is
    accepted, no byte comes back) until the knob is cleared again."""


@dataclass
class Stats:
    requests_total: int = 0
    served: int = 0
    served_long: int = 0
    inflight: int = 0
    inflight_long: int = 0
    peak_inflight: int = 0
    peak_inflight_long: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    hung: int = 0
    """Requests held without an answer by the `hang` knob."""

    def count_status(self, status: int) -> None:
        self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1


class Engine:
    """The scheduling/metrics model: a slot-limited queue whose state is what /metrics reports."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.running = 0
        self.waiting = 0
        self.kv_tokens = 0
        self._cond = asyncio.Condition()
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.success: dict[str, int] = {"stop": 0, "length": 0, "abort": 0}
        self.preemptions = 0
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS
        )
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", REQUEST_LATENCY_BUCKETS
        )
        self.inference_time = Histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        token_buckets = build_1_2_5_buckets(knobs.max_model_len)
        self.prompt_hist = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets)
        self.gen_hist = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_tokens / max(1, self.knobs.kv_capacity_tokens))

    async def admit(self) -> None:
        """Wait for a free sequence slot, as vLLM's scheduler keeps extra requests WAITING."""
        self.waiting += 1
        try:
            async with self._cond:
                await self._cond.wait_for(lambda: self.running < self.knobs.max_num_seqs)
                self.running += 1
        finally:
            self.waiting -= 1

    async def release(self) -> None:
        async with self._cond:
            self.running -= 1
            self._cond.notify_all()

    async def knobs_changed(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def metrics_text(self) -> str:
        labels = f'model_name="{_label_escape(self.knobs.model)}",engine="0"'
        blocks = self.knobs.kv_capacity_tokens // 16  # vLLM's CUDA block size
        out: list[str] = []

        def gauge(name: str, doc: str, value: float) -> None:
            out.extend((f"# HELP {name} {doc}", f"# TYPE {name} gauge", f"{name}{{{labels}}} {float(value)!r}"))

        def counter(name: str, doc: str, value: float) -> None:
            # prometheus_client's text format 0.0.4 names HELP/TYPE after the _total sample, as vLLM shows.
            total = f"{name}_total"
            out.extend((f"# HELP {total} {doc}", f"# TYPE {total} counter", f"{total}{{{labels}}} {float(value)!r}"))

        gauge("vllm:num_requests_running", "Number of requests in model execution batches.", self.running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", self.kv_usage)
        counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", self.preemptions)
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens_total)
        counter("vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens_total)
        out.extend(
            (
                "# HELP vllm:request_success_total Count of successfully processed requests.",
                "# TYPE vllm:request_success_total counter",
            )
        )
        for reason, n in self.success.items():
            out.append(f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {float(n)!r}')
        for hist in (
            self.prompt_hist,
            self.gen_hist,
            self.ttft,
            self.itl,
            self.tpot,
            self.e2e,
            self.queue_time,
            self.inference_time,
        ):
            out.extend(hist.expose(labels))
        out.extend(
            (
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
                "# TYPE vllm:cache_config_info gauge",
                f'vllm:cache_config_info{{block_size="16",engine="0",num_gpu_blocks="{blocks}"}} 1.0',
            )
        )
        return "\n".join(out) + "\n"


def _label_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


class ResponseWriter:
    """Writes one response on a connection, chunked on HTTP/1.1 and close-delimited on HTTP/1.0 streams."""

    def __init__(self, writer: asyncio.StreamWriter, request: Request) -> None:
        self.writer = writer
        self.request = request
        self.keep_alive = request.keep_alive
        self.chunked = False

    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}"]
        lines.append(f"date: {formatdate(usegmt=True)}")
        lines.append("server: uvicorn")  # what vLLM's API server says; nothing here keys on it
        lines.extend(f"{k}: {v}" for k, v in headers)
        lines.append(f"connection: {'keep-alive' if self.keep_alive else 'close'}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        self.writer.write(self._head(status, headers) + (b"" if self.request.method == "HEAD" else body))
        await self.writer.drain()

    async def send_json(self, status: int, obj: Any) -> None:
        await self.send(status, json.dumps(obj, separators=(",", ":")).encode())

    async def start_stream(self, status: int, content_type: str) -> None:
        # Like uvicorn: chunked on HTTP/1.1; on HTTP/1.0 (Nginx's default upstream protocol) the body
        # is delimited by closing the connection, so keep-alive is impossible there.
        headers = [("content-type", content_type)]
        if self.request.version == "HTTP/1.1":
            self.chunked = True
            headers.append(("transfer-encoding", "chunked"))
        else:
            self.keep_alive = False
        self.writer.write(self._head(status, headers))
        await self.writer.drain()

    async def stream(self, data: bytes) -> None:
        if self.chunked:
            self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.writer.write(data)
        await self.writer.drain()

    async def end_stream(self) -> None:
        if self.chunked:
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()


class FakeVllm:
    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.engine = Engine(knobs)
        self.stats = Stats()
        self.http_requests: dict[tuple[str, str, str], int] = {}
        self.started = time.monotonic()
        self.loading_until = self.started
        self.server: asyncio.Server | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._unhung = asyncio.Event()
        self._unhung.set()

    def set_loading(self, seconds: float) -> None:
        self.loading_until = time.monotonic() + max(0.0, seconds)

    @property
    def loading(self) -> bool:
        return time.monotonic() < self.loading_until

    # ---- HTTP plumbing -------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve_connection, host, port, backlog=1024, reuse_address=True)
        return self.server.sockets[0].getsockname()[1]

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader), timeout=120)
                except HttpError as exc:
                    await _plain_error(writer, exc.status, str(exc))
                    return
                if request is None:
                    return
                out = ResponseWriter(writer, request)
                await self._dispatch(request, out)
                if not out.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            self._conn_tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(self, req: Request, out: ResponseWriter) -> None:
        path = req.path.split("?", 1)[0]
        if path.startswith("/admin/"):
            await self._admin(req, out, path)
            return
        self.stats.requests_total += 1
        if self.knobs.hang:
            self.stats.hung += 1
            await self._unhung.wait()
        try:
            status = await self._route(req, out, path)
        except HttpError as exc:
            status = await _error(out, exc.status, str(exc), "BadRequestError")
        self.stats.count_status(status)
        if path.startswith("/v1"):
            # vLLM's API server counts requests with prometheus_fastapi_instrumentator: status grouped by
            # class ("2xx"), /metrics and /health excluded (vllm docs/design/v1/metrics.md). Never reset.
            key = (path, req.method, f"{status // 100}xx")
            self.http_requests[key] = self.http_requests.get(key, 0) + 1

    async def _route(self, req: Request, out: ResponseWriter, path: str) -> int:
        if path == "/health":
            status = self.knobs.health_status or (503 if self.loading else 200)
            await out.send(status, b"", "application/json")
            return status
        if path == "/metrics":
            text = self.engine.metrics_text() + self._http_metrics_text()
            await out.send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
            return 200
        if path == "/version":
            await out.send_json(200, {"version": VLLM_VERSION})
            return 200
        if path.startswith("/v1"):
            # vLLM's --api-key middleware guards only /v1 routes, and answers exactly this.
            if self.knobs.api_key is not None and req.headers.get("authorization", "") != f"Bearer {self.knobs.api_key}":
                await out.send_json(401, {"error": "Unauthorized"})
                return 401
            if self.loading:
                return await _error(out, 503, "The model is still loading; try again later.", "ServiceUnavailableError")
            if self.knobs.force_status is not None:
                status = self.knobs.force_status
                return await _error(out, status, f"forced status {status} (fake_vllm admin knob)", "InternalServerError")
            if path == "/v1/models":
                return await self._models(out)
            if path in ("/v1/chat/completions", "/v1/completions"):
                if req.method != "POST":
                    return await _error(out, 405, "Method Not Allowed", "MethodNotAllowed")
                return await self._completion(req, out, chat=path.endswith("chat/completions"))
        return await _error(out, 404, "Not Found", "NotFoundError")

    def _http_metrics_text(self) -> str:
        lines = ["# HELP http_requests_total Total number of requests by method, status and handler.",
                 "# TYPE http_requests_total counter"]
        for (handler, method, status), n in sorted(self.http_requests.items()):
            lines.append(f'http_requests_total{{handler="{handler}",method="{method}",status="{status}"}} {float(n)!r}')
        return "\n".join(lines) + "\n"

    async def _models(self, out: ResponseWriter) -> int:
        name = self.knobs.model
        created = int(time.time())
        card = {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": self.knobs.max_model_len,
            "permission": [],
        }
        await out.send_json(200, {"object": "list", "data": [card]})
        return 200

    # ---- completions ---------------------------------------------------------------------------

    async def _completion(self, req: Request, out: ResponseWriter, chat: bool) -> int:
        try:
            body = json.loads(req.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            return await _error(out, 400, f"Invalid JSON body: {exc}", "BadRequestError")
        if body.get("model", self.knobs.model) != self.knobs.model:
            return await _error(out, 404, f"The model `{body.get('model')}` does not exist.", "NotFoundError", "model")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return await _error(out, 400, "messages must be a non-empty list", "BadRequestError", "messages")
            prompt_tokens = sum(4 + len(str(m.get("content", ""))) // 4 for m in messages if isinstance(m, dict))
        else:
            prompt = body.get("prompt")
            if prompt is None:
                return await _error(out, 400, "prompt is required", "BadRequestError", "prompt")
            prompt_tokens = 1 + len(json.dumps(prompt)) // 4
        max_tokens = body.get("max_completion_tokens") if chat else None
        max_tokens = int(max_tokens or body.get("max_tokens") or self.knobs.default_max_tokens)
        if max_tokens < 1 or prompt_tokens + max_tokens > self.knobs.max_model_len:
            return await _error(
                out,
                400,
                f"This model's maximum context length is {self.knobs.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).",
                "BadRequestError",
            )
        # Per-request delays (test knob) let one test mix long and short requests on one server.
        token_delay = _float_header(req, "x-fake-token-delay", self.knobs.token_delay)
        prefill_delay = _float_header(req, "x-fake-prefill-delay", self.knobs.prefill_delay)
        stream = bool(body.get("stream", False))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage", False))
        long = max_tokens >= self.knobs.long_threshold
        return await self._generate(
            out, chat, stream, include_usage, prompt_tokens, max_tokens, token_delay, prefill_delay, long
        )

    async def _generate(
        self,
        out: ResponseWriter,
        chat: bool,
        stream: bool,
        include_usage: bool,
        prompt_tokens: int,
        max_tokens: int,
        token_delay: float,
        prefill_delay: float,
        long: bool,
    ) -> int:
        eng, st = self.engine, self.stats
        arrival = time.monotonic()
        st.inflight += 1
        st.peak_inflight = max(st.peak_inflight, st.inflight)
        if long:
            st.inflight_long += 1
            st.peak_inflight_long = max(st.peak_inflight_long, st.inflight_long)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        generated = 0
        admitted = False
        finished = "abort"
        try:
            await eng.admit()
            admitted = True
            scheduled = time.monotonic()
            eng.kv_tokens += prompt_tokens
            eng.prompt_tokens_total += prompt_tokens
            await asyncio.sleep(prefill_delay + self.knobs.extra_latency)
            if stream:
                await out.start_stream(200, "text/event-stream; charset=utf-8")
                if chat:  # vLLM's first chat chunk carries the role and empty content
                    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                    await out.stream(_sse(_chunk(rid, obj, created, self.knobs.model, first)))
            pieces: list[str] = []
            last = time.monotonic()
            for i in range(max_tokens):
                if i:
                    await asyncio.sleep(token_delay)
                now = time.monotonic()
                if i == 0:
                    eng.ttft.observe(now - arrival)
                else:
                    eng.itl.observe(now - last)
                last = now
                generated += 1
                eng.kv_tokens += 1
                eng.generation_tokens_total += 1
                text = f"tok{i} "
                pieces.append(text)
                if stream:
                    done = i == max_tokens - 1
                    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length" if done else None}
                    if chat:
                        choice["delta"] = {"content": text}
                    else:
                        choice["text"] = text
                    if done:
                        choice["stop_reason"] = None
                    await out.stream(_sse(_chunk(rid, obj, created, self.knobs.model, choice)))
                    await self._smoke_fault(out, i + 1)
            finished = "length"
            usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + generated, "completion_tokens": generated}
            if stream:
                if include_usage:
                    await out.stream(_sse({"id": rid, "object": obj, "created": created, "model": self.knobs.model,
                                           "choices": [], "usage": usage}))  # fmt: skip
                await out.stream(b"data: [DONE]\n\n")
                await out.end_stream()
            else:
                text = "".join(pieces)
                if chat:
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "reasoning_content": None, "tool_calls": []},
                        "logprobs": None,
                        "finish_reason": "length",
                        "stop_reason": None,
                    }
                else:
                    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
                await out.send_json(
                    200,
                    {
                        "id": rid,
                        "object": "chat.completion" if chat else "text_completion",
                        "created": created,
                        "model": self.knobs.model,
                        "choices": [choice],
                        "usage": {**usage, "prompt_tokens_details": None},
                        "prompt_logprobs": None,
                    },
                )
            st.served += 1
            st.served_long += long
            return 200
        except (ConnectionError, asyncio.CancelledError):
            out.keep_alive = False
            raise
        finally:
            end = time.monotonic()
            st.inflight -= 1
            st.inflight_long -= long
            if admitted:
                eng.kv_tokens -= prompt_tokens + generated
                await eng.release()
                eng.success[finished] += 1
                eng.e2e.observe(end - arrival)
                eng.queue_time.observe(scheduled - arrival)
                eng.inference_time.observe(end - scheduled)
                eng.prompt_hist.observe(prompt_tokens)
                eng.gen_hist.observe(generated)
                if generated > 1:
                    eng.tpot.observe((end - scheduled) / generated)

    async def _smoke_fault(self, out: ResponseWriter, sent: int) -> None:
        """Smoke-test modes (issue 14): break a stream after ``sent`` tokens the way a crashing server does."""
        if self.knobs.malformed_stream and sent == 1:
            await out.stream(b"data: {this is not json\n\n")
        if self.knobs.drop_stream_after is not None and sent >= self.knobs.drop_stream_after:
            out.keep_alive = False
            out.writer.transport.abort()  # RST, no terminating chunk: what a killed vLLM leaves behind
            raise ConnectionResetError("fake_vllm: stream dropped (drop_stream_after)")

    # ---- admin (tests only) --------------------------------------------------------------------

    async def _admin(self, req: Request, out: ResponseWriter, path: str) -> None:
        if path == "/admin/stats":
            await out.send_json(
                200,
                {
                    **asdict(self.stats),
                    "running": self.engine.running,
                    "waiting": self.engine.waiting,
                    "kv_usage": self.engine.kv_usage,
                    "loading": self.loading,
                    "pid": os.getpid(),
                },
            )
        elif path == "/admin/knobs" and req.method == "GET":
            await out.send_json(200, asdict(self.knobs))
        elif path == "/admin/knobs" and req.method == "POST":
            try:
                patch = json.loads(req.body or b"{}")
                self._apply(patch)
            except (ValueError, TypeError) as exc:
                await out.send_json(400, {"error": str(exc)})
                return
            await self.engine.knobs_changed()
            await out.send_json(200, asdict(self.knobs))
        elif path == "/admin/reset" and req.method == "POST":
            self.stats = Stats(inflight=self.stats.inflight, inflight_long=self.stats.inflight_long)
            await out.send_json(200, {"ok": True})
        else:
            await out.send_json(404, {"error": "unknown admin endpoint"})

    def _apply(self, patch: Any) -> None:
        if not isinstance(patch, dict):
            raise ValueError("knobs patch must be a JSON object")
        allowed = set(asdict(self.knobs)) | {"loading_seconds"}
        unknown = set(patch) - allowed
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(allowed)}")
        for key, value in patch.items():
            if key == "loading_seconds":
                self.set_loading(float(value))
            else:
                setattr(self.knobs, key, value)
        if self.knobs.hang:
            self._unhung.clear()
        else:
            self._unhung.set()


async def _error(out: ResponseWriter, status: int, message: str, etype: str, param: str | None = None) -> int:
    # vLLM v0.19's ErrorResponse shape.
    await out.send_json(status, {"error": {"message": message, "type": etype, "param": param, "code": status}})
    return status


async def _plain_error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    with contextlib.suppress(Exception):
        writer.write(head.encode() + body)
        await writer.drain()


def _float_header(req: Request, name: str, default: float) -> float:
    raw = req.headers.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise HttpError(400, f"{name} must be ≥ 0")
    return value


def _chunk(rid: str, obj: str, created: int, model: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """One HTTP/1.x request (Content-Length or chunked body); None on a clean close between requests."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise HttpError(400, "request line too long") from None
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    while True:
        hline = await reader.readuntil(b"\r\n")
        if hline == b"\r\n":
            break
        name, _, value = hline.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise HttpError(413, "body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise HttpError(413, "body too large")
        body = await reader.readexactly(length)
    return Request(method=method, path=target, version=version, headers=headers, body=body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.dataplane.fake_vllm", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="listen address; must be loopback (127.0.0.0/8)")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port (printed on the first stdout line)")
    p.add_argument("--model", default=Knobs.model, help="served model name (the model_name label)")
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/*")
    p.add_argument("--token-delay", type=float, default=Knobs.token_delay, help="seconds per output token")
    p.add_argument("--prefill-delay", type=float, default=Knobs.prefill_delay, help="seconds before the first token")
    p.add_argument("--max-num-seqs", type=int, default=Knobs.max_num_seqs, help="requests running at once")
    p.add_argument("--kv-capacity-tokens", type=int, default=Knobs.kv_capacity_tokens, help="KV cache size in tokens")
    p.add_argument("--max-model-len", type=int, default=Knobs.max_model_len)
    p.add_argument("--default-max-tokens", type=int, default=Knobs.default_max_tokens)
    p.add_argument("--long-threshold", type=int, default=Knobs.long_threshold, help="max_tokens ≥ this is 'long'")
    p.add_argument("--loading-seconds", type=float, default=0.0, help="/health and /v1/* answer 503 this long after start")
    p.add_argument("--drop-stream-after", type=int, default=None, help="smoke tests: abort streams after N tokens")
    p.add_argument("--malformed-stream", action="store_true", help="smoke tests: stream a chunk that is not JSON")
    p.add_argument("--force-status", type=int, default=None, help="every /v1/* request answers this status at once")
    p.add_argument("--hang", action="store_true", help="accept connections, never answer (a hung node)")
    p.add_argument("--lifetime", type=float, default=3600.0, help="exit by itself after this many seconds (safety net)")
    args = p.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        p.error(f"--host {args.host} is not a loopback address; this test server only listens on 127.0.0.0/8")
    return args


async def _main(args: argparse.Namespace) -> None:
    knobs = Knobs(
        model=args.model,
        api_key=args.api_key,
        token_delay=args.token_delay,
        prefill_delay=args.prefill_delay,
        max_num_seqs=args.max_num_seqs,
        kv_capacity_tokens=args.kv_capacity_tokens,
        max_model_len=args.max_model_len,
        default_max_tokens=args.default_max_tokens,
        long_threshold=args.long_threshold,
        drop_stream_after=args.drop_stream_after,
        malformed_stream=args.malformed_stream,
        force_status=args.force_status,
        hang=args.hang,
    )
    app = FakeVllm(knobs)
    app._apply({})  # sync the hang event with the start knobs
    app.set_loading(args.loading_seconds)
    port = await app.start(args.host, args.port)
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A harness that dies without cleaning up must not leave this server behind forever.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.lifetime)
    assert app.server is not None
    app.server.close()
    for task in list(app._conn_tasks):
        task.cancel()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
