"""Data-plane benchmark: what the rendered nginx.conf costs per request, and what a dying node costs.

One run, all on loopback, everything bounded in count and time:

1. the same non-streaming load straight to one fake vLLM backend and through nginx (rendered config,
   that backend as its only upstream, so the difference is the proxy hop alone); alternated in rounds
   so drift on a busy machine hits both sides alike; p50/p99 latency and throughput of each;
2. the same kind of load through nginx over three backends, one SIGKILLed mid-run; failed requests.

The last line is exactly `lb_p50_ratio=<nginx p50 / direct p50> failed_on_kill=<count>`.
Targets: ratio ≤ 1.05, 0 failed.

Run: `.venv/bin/python bench/dataplane.py` (needs nginx; see --help for the load knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dataplane import harness  # after the sys.path line: the repo root must be importable
from tests.dataplane.harness import API_KEY, MODEL, Backend, HttpClient, Response, bounded_load, completion_body

AUTH = {"authorization": f"Bearer {API_KEY}"}
CHAT = "/v1/chat/completions"


async def _load(url: str, args: argparse.Namespace, count: int) -> tuple[list[Any], float]:
    async with HttpClient() as client:  # keep-alive client connections on both paths, as real clients do

        def one(i: int) -> Any:
            return client.request("POST", url + CHAT, headers=AUTH, json_body=completion_body(MODEL, args.max_tokens), timeout=30)

        # Warm-up (not measured): opens the pooled connections on both hops.
        await bounded_load(one, count=args.concurrency * 2, concurrency=args.concurrency, deadline_s=args.deadline)
        t0 = time.monotonic()
        results = await bounded_load(one, count=count, concurrency=args.concurrency, deadline_s=args.deadline)
        return results, time.monotonic() - t0


def _summary(name: str, results: list[Any], wall: float) -> tuple[str, list[float]]:
    ok = [r for r in results if isinstance(r, Response) and r.status == 200]
    lat = [r.elapsed for r in ok]
    line = (
        f"{name:<8} n={len(results)} ok={len(ok)} p50={harness.percentile(lat, 0.5) * 1000:.2f}ms "
        f"p99={harness.percentile(lat, 0.99) * 1000:.2f}ms throughput={len(ok) / wall:.1f} req/s"
    )
    return line, lat


def _failures(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        if isinstance(r, Response) and r.status == 200:
            continue
        key = str(r.status) if isinstance(r, Response) else type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def run(args: argparse.Namespace) -> tuple[float, int]:
    stack = harness.build_stack()
    opts = {"api_key": API_KEY, "token_delay": args.token_delay}
    started: list[Backend | harness.Nginx] = []
    with tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp_text:
        tmp = Path(tmp_text)
        try:
            # ---- 1: direct vs through nginx, same backend, alternating rounds --------------------
            solo = harness.start_backend(tmp / "logs", **opts)
            started.append(solo)
            lb1 = harness.start_rendered_nginx(stack, [solo], tmp / "nginx-1")
            started.append(lb1)
            per_round = args.requests // args.rounds
            direct: list[Any] = []
            proxied: list[Any] = []
            wall = {"direct": 0.0, "nginx": 0.0}
            for _ in range(args.rounds):
                for name, url, sink in (("direct", solo.url, direct), ("nginx", lb1.url, proxied)):
                    results, elapsed = asyncio.run(_load(url, args, per_round))
                    sink.extend(results)
                    wall[name] += elapsed
            line_d, lat_d = _summary("direct", direct, wall["direct"])
            line_n, lat_n = _summary("nginx", proxied, wall["nginx"])
            print(f"load: {args.rounds}×{per_round} non-streaming requests per path, concurrency {args.concurrency}, "
                  f"max_tokens {args.max_tokens} × {args.token_delay * 1000:.1f} ms/token")  # fmt: skip
            print(line_d)
            print(line_n)
            if _failures(direct) or _failures(proxied):
                print(f"failures: direct {_failures(direct)} nginx {_failures(proxied)}")
            ratio = harness.percentile(lat_n, 0.5) / harness.percentile(lat_d, 0.5)
            lb1.stop()
            solo.stop()

            # ---- 2: three backends, one killed mid-run ---------------------------------------------
            nodes = [harness.start_backend(tmp / "logs", **opts) for _ in range(3)]
            started.extend(nodes)
            lb3 = harness.start_rendered_nginx(stack, nodes, tmp / "nginx-3")
            started.append(lb3)

            async def kill_run() -> tuple[list[Any], float]:
                async def killer() -> None:
                    await asyncio.sleep(args.kill_after)
                    nodes[1].kill()

                task = asyncio.create_task(killer())
                results = await _load(lb3.url, args, args.kill_requests)
                await task
                return results

            results, elapsed = asyncio.run(kill_run())
            line_k, _ = _summary("kill", results, elapsed)
            failed = len(results) - sum(isinstance(r, Response) and r.status == 200 for r in results)
            served = [n.stats()["served"] if n.proc.alive() else "killed" for n in nodes]
            print(f"{line_k} failed={failed} {_failures(results) or ''} (node-1 SIGKILLed {args.kill_after:.1f}s in; "
                  f"served by survivors {served})")  # fmt: skip
            return ratio, failed
        finally:
            for proc in reversed(started):
                proc.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=800, help="measured requests per path (direct / nginx), all rounds")
    p.add_argument("--rounds", type=int, default=2, help="alternating direct/nginx rounds")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=8, help="output tokens per request")
    p.add_argument("--token-delay", type=float, default=0.005, help="backend seconds per token (8 × 5 ms ≈ 40 ms/request)")
    p.add_argument("--kill-requests", type=int, default=600, help="requests in the kill phase")
    p.add_argument("--kill-after", type=float, default=1.0, help="seconds into the kill phase when node-1 dies")
    p.add_argument("--deadline", type=float, default=60.0, help="each load stops starting requests after this many seconds")
    args = p.parse_args(argv)
    if harness.nginx_binary() is None:
        print("nginx binary not found (apt-get install nginx)", file=sys.stderr)
        return 2
    ratio, failed = run(args)
    print(f"lb_p50_ratio={ratio:.3f} failed_on_kill={failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
