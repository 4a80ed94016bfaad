"""Memory of a whole campaign over many scenarios: does it stay flat?

Runs `fuzz.campaign.run_campaign` (steering and isolation on, learnt deadlines, the
real Hypothesis strategies, so mostly multimodal traffic with base64 images) against a
stand-in server in a child process (so the server's own bookkeeping is not measured):
tests/isolation_servers.py's healthy deterministic model (greedy answers with logprobs,
so isolation calibrates and judges), plus a `/metrics` page whose counters move with
what each scenario sent (so steering sees server states and keeps a corpus), plus a
log file the campaign follows. Every `--every` scenarios it prints RSS and the traced
Python heap; at the end, the top allocation sites that grew between the first sample
after `--warmup` and the last one (tracemalloc `compare_to`).

    python3 bench/campaign_memory.py [--scenarios 300] [--every 25] [--warmup 50]
                                     [--group lineno|traceback] [--top 15] [--no-trace]
                                     [--old-bounds]

Seed-stable: same seed, same scenarios (timing still varies a little).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def holders() -> str:
    """Sizes of the campaign's long-lived structures (found through the gc): which
    one grows, and whether it is a bounded cache still filling."""
    from fuzz.campaign import _Campaign
    from fuzz.strategies.pool import RENDER_CACHE
    c = next((o for o in gc.get_objects() if isinstance(o, _Campaign)), None)
    out = [f"render {RENDER_CACHE.nbytes / 2**20:.1f}MB/{len(RENDER_CACHE)}"]
    if c is not None:
        if c.steering is not None:
            out.append(f"corpus {len(c.steering.entries)} {c.steering.media_bytes() / 2**20:.1f}MB "
                       f"feat {len(c.steering.counts)}")
        if c.watch is not None:
            out.append(f"alone {len(c.watch.cache)}")
        out.append(f"deadline classes {c.harness.policy.classes()}")
        sm = c.summary
        out.append(f"states {len(sm.server_states)} failures {len(sm.failures)} "
                   f"timeline {len(sm.timeline.intervals)}")
    return "  ".join(out)


def _serve(conn: Any, log_file: str) -> None:
    """Child process: the stand-in server, until the parent sends on the pipe."""
    sys.path.insert(0, str(ROOT / "tests"))
    import json

    from aiohttp import web
    from isolation_servers import IsolationServer

    class Server(IsolationServer):
        """IsolationServer + /metrics (requests, images, a prefix cache keyed by the
        prompt text) + an access log line per request, warnings now and then."""

        def __init__(self) -> None:
            super().__init__("healthy", ttft_s=0.01, tpot_s=0.001)
            self.requests = self.images = self.queries = self.hits = 0
            self.prompts: set[int] = set()

        async def _metrics(self, request: web.Request) -> web.StreamResponse:
            lab = f'{{engine="0",model_name="{self.model}"}}'
            text = (f"vllm:num_preemptions_total{lab} {self.images}\n"
                    f"vllm:prefix_cache_queries_total{lab} {self.queries}\n"
                    f"vllm:prefix_cache_hits_total{lab} {self.hits}\n"
                    f"vllm:num_requests_running{lab} {len(self.in_flight)}\n")
            return web.Response(text=text, content_type="text/plain")

        async def _chat(self, request: web.Request) -> web.StreamResponse:
            body = json.loads(await request.read())
            # the base keeps every request; keep only what in-flight ones may look up
            live = {n for r in self.in_flight.values() for n in r.seen} | set(self.in_flight)
            for n in [n for n in self._all if n not in live]:
                del self._all[n]
            key = hash(json.dumps(body.get("messages"), sort_keys=True, default=str)[:200])
            self.requests += 1
            self.images += bool(json.dumps(body).count("data:image"))
            self.queries += 16
            self.hits += 16 if key in self.prompts else 0
            self.prompts.add(key)
            with open(log_file, "a") as f:
                f.write('INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n')
                if self.requests % 37 == 0:
                    f.write(f"(APIServer pid=1) WARNING 11-27 05:08:46 [serving.py:{self.requests % 5}]"
                            " something odd\n")
            return await super()._chat(request)

    import asyncio
    server = Server()
    loop = asyncio.new_event_loop()

    async def main() -> None:
        await server.start()
        conn.send(server.port)
        while not conn.poll():
            await asyncio.sleep(0.2)

    # IsolationServer has no /metrics route: patch web.Application to add it
    real = web.Application

    def app_with_metrics(*a: Any, **kw: Any) -> web.Application:
        app = real(*a, **kw)
        app.router.add_get("/metrics", server._metrics)
        return app
    web.Application = app_with_metrics  # type: ignore[misc]
    loop.run_until_complete(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=50, help="scenarios before the baseline snapshot")
    ap.add_argument("--group", choices=("lineno", "traceback"), default="lineno")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-trace", action="store_true", help="RSS only (tracemalloc off)")
    ap.add_argument("--old-bounds", action="store_true",
                    help="A/B: the bounds before the fix (128 MiB render memo, no cap on "
                         "deadline size classes)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from fuzz.campaign import CampaignConfig, run_campaign
    from fuzz.events import Event, ScenarioFinished
    from fuzz.model import Deadlines
    from fuzz.runner import Endpoint
    from fuzz.supervisor import ExternalSupervisor

    if args.old_bounds:
        from fuzz.deadlines import DeadlinePolicy
        from fuzz.strategies import pool
        pool.RENDER_CACHE.max_bytes = 128 * 2**20
        DeadlinePolicy.__init__.__kwdefaults__["max_classes"] = 10**9

    tmp = Path(tempfile.mkdtemp(prefix="vlfuzz-campaign-memory-"))
    log_file = tmp / "server.log"
    log_file.touch()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, str(log_file)), daemon=True)
    proc.start()
    port = parent.recv()
    base_url = f"http://127.0.0.1:{port}"

    if not args.no_trace:
        tracemalloc.start(args.frames if args.group == "traceback" else 1)
    stop = threading.Event()
    samples: list[tuple[int, float, float, float]] = []
    snaps: dict[int, tracemalloc.Snapshot] = {}
    t0 = time.monotonic()

    def sample(n: int) -> None:
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else 0.0
        samples.append((n, time.monotonic() - t0, _rss_mb(), heap))
        print(f"scenarios {n:5d}  t {samples[-1][1]:7.1f}s  RSS {samples[-1][2]:7.1f} MB  "
              f"heap {heap:7.1f} MB  {holders()}", flush=True)
        if tracemalloc.is_tracing() and (n >= args.warmup and not snaps or n >= args.scenarios):
            snaps[n] = tracemalloc.take_snapshot()

    def on_event(event: Event) -> None:
        if isinstance(event, ScenarioFinished):
            n = event.index + 1
            if n % args.every == 0 or n >= args.scenarios:
                sample(n)
            if n >= args.scenarios:
                stop.set()

    cfg = CampaignConfig(out_dir=tmp / "campaign", duration_s=24 * 3600.0, seed=args.seed,
                         deadlines=Deadlines(first_byte_s=20.0, stall_s=20.0, total_s=60.0),
                         max_requests=8, max_output_tokens=16, steering=True, isolation=True,
                         isolation_percent=25, server_log=log_file, report_every_s=5.0,
                         minimize=False)
    sample(0)
    try:
        summary = run_campaign(cfg, ExternalSupervisor(Endpoint(base_url, "iso-model")),
                               on_event, stop=stop)
    finally:
        parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    print(f"\n{summary.scenarios} scenarios, {summary.requests} requests, "
          f"{summary.steered} steered, isolation judged {summary.isolation['checked']}, "
          f"stopped: {summary.stopped_because}; out {tmp}")
    if len(samples) >= 2:
        base = next((s for s in samples if s[0] >= args.warmup), samples[0])
        per = max(samples[-1][0] - base[0], 1)
        print(f"RSS {base[2]:.1f} -> {samples[-1][2]:.1f} MB from scenario {base[0]} to "
              f"{samples[-1][0]}: {(samples[-1][2] - base[2]) * 1024 / per:.1f} KB/scenario; heap "
              f"{base[3]:.1f} -> {samples[-1][3]:.1f} MB: {(samples[-1][3] - base[3]) * 1024 / per:.1f} "
              f"KB/scenario")
    if len(snaps) >= 2:
        (a, early), (b, late) = sorted(snaps.items())[0], sorted(snaps.items())[-1]
        print(f"\ntop growth, scenario {a} -> {b} (tracemalloc, by {args.group}):")
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = late.filter_traces(filters).compare_to(early.filter_traces(filters), args.group)
        for st in stats[:args.top]:
            print(f"  {st.size_diff / 1024:+9.1f} KB {st.count_diff:+7d} blocks  "
                  f"now {st.size / 1024:9.1f} KB")
            for line in st.traceback.format()[-(2 * args.frames if args.group == "traceback" else 2):]:
                print("      " + line.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
