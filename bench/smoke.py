"""Smoke-check benchmark (issue 14): what `smoke` reports as TTFT, against the test server's own prefill and
against OpenAI's official client, through the rendered nginx.conf on real nginx, all on loopback.

One fake vLLM backend with a fixed prefill delay (the server-side time to first token) and token delay, nginx in
front. Rounds alternate `run_smoke` and the `openai` client's streaming chat on the same endpoint, so drift on a
busy machine hits both alike; then a loading phase (503 for `--loading` seconds) measures how long after the
server turns ready `smoke` notices (the backoff's cost).

The last line is exactly
`smoke_ttft_p50_ms=<x> openai_ttft_p50_ms=<y> ttft_ratio=<x/y> prefill_ms=<p> ready_lag_s=<z>`.
Expect ttft ≥ prefill, ratio ≈ 1 (the two clients measure the same thing), ready_lag ≤ the backoff step then.

Run: `.venv/bin/python bench/smoke.py` (needs nginx and the `openai` package from requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_inference.smoke import run_smoke  # after the sys.path line: the repo root must be importable
from tests.dataplane import harness
from tests.dataplane.harness import API_KEY, MODEL


def _openai_ttft_ms(endpoint: str) -> float:
    import openai

    client = openai.OpenAI(base_url=endpoint, api_key=API_KEY, max_retries=0, timeout=30)
    started = time.monotonic()
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=8, stream=True)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic()
    if first is None:
        raise RuntimeError("the openai client saw no token")
    return (first - started) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20, help="smoke + openai pairs (bounded: at most 200)")
    p.add_argument("--prefill", type=float, default=0.2, help="the fake's seconds before the first token")
    p.add_argument("--token-delay", type=float, default=0.02)
    p.add_argument("--loading", type=float, default=5.0, help="seconds of 503 in the loading measurement")
    args = p.parse_args()
    rounds = max(1, min(args.rounds, 200))
    if harness.nginx_binary() is None:
        sys.exit("nginx is not installed (apt-get install nginx)")
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        node = harness.start_backend(Path(tmp) / "logs", api_key=API_KEY, prefill_delay=args.prefill,
                                     token_delay=args.token_delay)
        lb = None
        try:
            lb = harness.start_rendered_nginx(harness.build_stack(), [node], Path(tmp) / "nginx")
            endpoint = lb.url + "/v1"
            smoke_ms: list[float] = []
            openai_ms: list[float] = []
            for _ in range(rounds):
                result = run_smoke(endpoint, MODEL, API_KEY, timeout_s=30)
                if not result.ok or result.ttft_ms is None:
                    sys.exit(f"smoke failed on a healthy endpoint: {result.error}")
                smoke_ms.append(result.ttft_ms)
                openai_ms.append(_openai_ttft_ms(endpoint))
            node.set_knobs(loading_seconds=args.loading)
            started = time.monotonic()
            loaded = run_smoke(endpoint, MODEL, API_KEY, timeout_s=args.loading + 60)
            lag = time.monotonic() - started - args.loading
        finally:
            if lb is not None:
                lb.stop()
            node.stop()
    s50, o50 = harness.percentile(smoke_ms, 0.5), harness.percentile(openai_ms, 0.5)
    print(f"smoke   n={rounds} ttft p50={s50:.1f} ms p90={harness.percentile(smoke_ms, 0.9):.1f} ms")
    print(f"openai  n={rounds} ttft p50={o50:.1f} ms p90={harness.percentile(openai_ms, 0.9):.1f} ms")
    print(f"loading {args.loading:g} s: ok={loaded.ok} attempts={loaded.attempts} noticed {lag:.2f} s after ready")
    print(f"smoke_ttft_p50_ms={s50:.1f} openai_ttft_p50_ms={o50:.1f} ttft_ratio={s50 / o50:.3f} "
          f"prefill_ms={args.prefill * 1000:.0f} ready_lag_s={lag:.2f}")


if __name__ == "__main__":
    main()
