"""Data-plane benchmark: what the rendered nginx.conf costs per request, and what a dying node costs.

One run, all on loopback, everything bounded in count and time:

1. the same non-streaming load straight to one fake vLLM backend and through nginx (rendered config,
   that backend as its only upstream, so the difference is the proxy hop alone); alternated in rounds
   so drift on a busy machine hits both sides alike; p50/p99 latency and throughput of each;
2. the same kind of load through nginx over three backends, one SIGKILLed mid-run; failed requests;
3. faults (issue 11): the success share beside a node that answers 500 at once, with the config before
   issue 11 (no retry on http_500) and the rendered one; the seconds until a hung node (accepts, never
   answers) leaves rotation, without and with the LB's active health checker; the requests lost while
   the checker reloads nginx under load (a node's /health flapping).

The last line is exactly `lb_p50_ratio=<nginx p50 / direct p50> failed_on_kill=<count>
fastfail_ok_before=<share> fastfail_ok_after=<share> hung_exit_s=<seconds> reloads=<count>
lost_on_reload=<count>` (one line). Targets: ratio ≤ 1.05, 0 failed, after ≥ 0.95, ≤ 15 s, 0 lost.

Run: `.venv/bin/python bench/dataplane.py` (needs nginx; see --help for the load knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


# proxy_next_upstream as rendered before issue 11: 500 (and 504) neither retried nor counted as a failure.
OLD_NEXT_UPSTREAM = "proxy_next_upstream error timeout http_502 http_503 non_idempotent;"


def _ok_share(results: list[Any]) -> float:
    return sum(isinstance(r, Response) and r.status == 200 for r in results) / max(1, len(results))


def _fast_fail(args: argparse.Namespace, tmp: Path, old: bool) -> tuple[float, str]:
    """Share of 200s through nginx over three nodes, one answering every request 500 at once."""
    import re

    stack = harness.build_stack()
    nodes = [harness.start_backend(tmp / "logs", api_key=API_KEY, token_delay=args.token_delay) for _ in range(3)]
    lb = None
    try:
        nodes[0].set_knobs(force_status=500)
        lb = harness.start_rendered_nginx(stack, nodes, tmp / f"nginx-fastfail-{'old' if old else 'new'}")
        if old:
            conf = lb.conf_path.read_text()
            new_conf, n = re.subn(r"proxy_next_upstream error timeout [^;]*;", OLD_NEXT_UPSTREAM, conf)
            assert n == 1
            lb.conf_path.write_text(new_conf)
            workers = lb.worker_pids()
            lb.reload()
            harness.wait_until(lambda: lb is not None and lb.reloaded_since(workers), 10, what="nginx reload")
        results, _ = asyncio.run(_load(lb.url, args, args.fault_requests))
        got = nodes[0].stats()["by_status"].get("500", 0)
        return _ok_share(results), f"{_failures(results) or 'none failed'}; the failing node answered {got} attempts"
    finally:
        for proc in (lb, *nodes):
            if proc is not None:
                proc.stop()


def _hung_exit(args: argparse.Namespace, tmp: Path, with_checker: bool) -> tuple[float | None, str]:
    """Seconds from a node hanging until it is out of rotation (include says down, nginx reloaded); without
    the checker: whether requests still reach it after the window."""
    stack = harness.build_stack()
    nodes = [harness.start_backend(tmp / "logs", api_key=API_KEY, token_delay=args.token_delay) for _ in range(2)]
    lb = checker = None
    try:
        lb = harness.start_rendered_nginx(stack, nodes, tmp / f"nginx-hung-{int(with_checker)}")
        if with_checker:
            checker = harness.start_healthchecker(stack, lb, nodes)
        workers = lb.worker_pids()
        nodes[0].set_knobs(hang=True)
        t0 = time.monotonic()
        inc = lb.upstream_include()

        def out() -> bool:
            assert lb is not None
            line = next(x for x in inc.read_text().splitlines() if f"server {nodes[0].addr} " in x)
            return line.endswith(" down;") and lb.reloaded_since(workers)

        while time.monotonic() - t0 < args.hung_window:
            if out():
                return time.monotonic() - t0, "out of rotation (include marks it down, nginx reloaded)"
            time.sleep(0.05)

        # Still in rotation: show what that costs, a few short requests with a 3 s client timeout.
        async def probe() -> list[Any]:
            async with HttpClient(keepalive=False) as c:
                return await bounded_load(
                    lambda i: c.request("POST", lb.url + CHAT, headers=AUTH, json_body=completion_body(MODEL, 2),
                                        timeout=3),
                    count=10, concurrency=10, deadline_s=10)  # fmt: skip

        results = asyncio.run(probe())
        return None, (f"still in rotation after {args.hung_window:.0f}s: {_failures(results)} of 10 requests "
                      f"(a client without a timeout waits proxy_read_timeout, 600 s)")
    finally:
        for proc in (checker, lb, *nodes):
            if proc is not None:
                proc.stop()


def _reload_loss(args: argparse.Namespace, tmp: Path) -> tuple[int, int, str]:
    """Requests lost while the checker reloads nginx under load (a node's /health flaps 503/200)."""
    stack = harness.build_stack()
    nodes = [harness.start_backend(tmp / "logs", api_key=API_KEY, token_delay=0.02) for _ in range(3)]
    lb = checker = None
    try:
        lb = harness.start_rendered_nginx(stack, nodes, tmp / "nginx-reload")
        checker = harness.start_healthchecker(stack, lb, nodes)

        async def run_load() -> list[Any]:
            stop = asyncio.Event()

            async def flap() -> None:
                while not stop.is_set():
                    for status, hold in ((503, 8.0), (None, 6.0)):
                        nodes[2].set_knobs(health_status=status)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), hold)

            async with HttpClient() as c:

                def one(i: int) -> Any:
                    stream = i % 2 == 0
                    return c.request("POST", lb.url + CHAT, headers=AUTH, timeout=30,
                                     json_body=completion_body(MODEL, 50 if stream else 4, stream=stream))  # fmt: skip

                task = asyncio.create_task(flap())
                try:
                    return await bounded_load(one, count=args.reload_requests, concurrency=12,
                                              deadline_s=args.reload_seconds)  # fmt: skip
                finally:
                    stop.set()
                    await task

        results = asyncio.run(run_load())
        lost = len(results) - sum(isinstance(r, Response) and r.status == 200 for r in results)
        return lost, checker.reloads(), f"{len(results)} requests (half ~1 s streams), {_failures(results) or 'none lost'}"
    finally:
        for proc in (checker, lb, *nodes):
            if proc is not None:
                proc.stop()


def run_faults(args: argparse.Namespace) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp_text:
        tmp = Path(tmp_text)
        before, note_b = _fast_fail(args, tmp, old=True)
        after, note_a = _fast_fail(args, tmp, old=False)
        print(f"fast-failing node (1 of 3 answers 500 at once), {args.fault_requests} requests, concurrency "
              f"{args.concurrency}:")  # fmt: skip
        print(f"  before (no retry on http_500): success {before:.1%} ({note_b})")
        print(f"  after  (rendered config):      success {after:.1%} ({note_a})")
        _, note_hb = _hung_exit(args, tmp, with_checker=False)
        hung_a, note_ha = _hung_exit(args, tmp, with_checker=True)
        print("hung node (accepts, never answers), 1 of 2:")
        print(f"  before (passive checks only): {note_hb}")
        shown = f"{hung_a:.1f}s" if hung_a is not None else "never"
        print(f"  after  (active health checker): {shown} until {note_ha}")
        lost, reloads, note_r = _reload_loss(args, tmp)
        print(f"reloads by the health checker under load: {reloads} reloads, {lost} lost ({note_r})")
    return {
        "fastfail_ok_before": f"{before:.3f}",
        "fastfail_ok_after": f"{after:.3f}",
        "hung_exit_s": f"{hung_a:.1f}" if hung_a is not None else "never",
        "reloads": str(reloads),
        "lost_on_reload": str(lost),
    }


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
    p.add_argument("--fault-requests", type=int, default=400, help="requests beside the fast-failing node")
    p.add_argument("--hung-window", type=float, default=20.0, help="seconds to wait for a hung node to leave")
    p.add_argument("--reload-requests", type=int, default=1500, help="at most this many requests during reloads")
    p.add_argument("--reload-seconds", type=float, default=30.0, help="the reload phase lasts this long")
    p.add_argument("--faults-only", action="store_true", help="skip phases 1 and 2 (overhead, SIGKILL)")
    args = p.parse_args(argv)
    if harness.nginx_binary() is None:
        print("nginx binary not found (apt-get install nginx)", file=sys.stderr)
        return 2
    ratio, failed = (float("nan"), -1) if args.faults_only else run(args)
    faults = run_faults(args)
    print(f"lb_p50_ratio={ratio:.3f} failed_on_kill={failed} " + " ".join(f"{k}={v}" for k, v in faults.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
