"""CPU per request of the null server and of vlfuzz's runner, asyncio's loop vs uvloop.

    python3 bench/loop_ab.py [--workloads stream,text] [--concurrency 256] [--requests 1024]
                             [--repeats 5] [--arms sa-ca,su-ca,sa-cu,su-cu] [--json-out F]

Two null servers run side by side (`--loop asyncio` and `--loop uvloop`, each its own
process); this process is the client and runs the runner as bench/client.py's vlfuzz
worker does (batches of C requests at offset 0 through one shared `HttpClient`), on a
fresh event loop per run: the standard one or uvloop. Arms are `s<server>-c<client>`
with `a` = asyncio, `u` = uvloop; they alternate (order reversed on odd repeats) and the
table shows medians of the repeats: client and server CPU ms per request (process CPU,
user + system: the figure a loaded machine disturbs least), requests/s, and how long the
client waited for a CPU. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import client as bench  # noqa: E402  (bench/client.py)

from fuzz import runner  # noqa: E402
from fuzz.client import HttpClient  # noqa: E402
from fuzz.model import Deadlines, RequestSpec, Scenario  # noqa: E402


def _loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "u":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_arm(base_url: str, workload: str, conc: int, total: int, loop_kind: str,
            seed: int, bodies: bench.Bodies) -> dict[str, Any]:
    rng = random.Random(seed)
    batches = []
    for start in range(0, total, conc):
        reqs = tuple(RequestSpec(id=f"r{start + j}", body=bodies.body(workload, start + j, rng))
                     for j in range(min(conc, total - start)))
        batches.append(Scenario(requests=reqs, media=bodies.media_for(reqs)))
    endpoint = runner.Endpoint(base_url=base_url, model=bench.MODEL)
    traces: list[Any] = []

    async def go() -> None:
        async with HttpClient() as http:
            for sc in batches:
                traces.append(await runner.run_scenario(endpoint, sc, Deadlines(), probe=False,
                                                        metrics=False, client=http))

    loop = _loop(loop_kind)
    try:
        with bench.Meter() as m:
            loop.run_until_complete(go())
    finally:
        loop.close()
    out_len, stream, _ = bench.WORKLOADS[workload]
    ok = sum(1 for t in traces for r in t.requests
             if r.status == 200 and r.error is None and r.deadline is None
             and (not stream or len(r.events) == out_len + 3))
    return {**m.as_dict(), "requests": total, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="stream,text")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--requests", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--arms", default="sa-ca,su-ca,sa-cu,su-cu")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    work = Path(os.environ.get("TMPDIR", "/tmp"))
    print(f"# load before: {os.getloadavg()}", flush=True)
    servers = {"a": bench.NullServer(work, "loop_ab_asyncio", "--loop", "asyncio"),
               "u": bench.NullServer(work, "loop_ab_uvloop", "--loop", "uvloop")}
    bodies = bench.Bodies()
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(args.repeats):
            for workload in [w for w in args.workloads.split(",") if w]:
                for arm in (arms if rep % 2 == 0 else arms[::-1]):
                    server = servers[arm[1]]
                    s0, w0 = server.cpu_s(), server.runq_wait_s()
                    res = run_arm(server.base_url, workload, args.concurrency, args.requests,
                                  arm[4], rep, bodies)
                    res.update(arm=arm, workload=workload, repeat=rep,
                               server_cpu_s=server.cpu_s() - s0,
                               server_runq_wait_s=server.runq_wait_s() - w0)
                    rows.append(res)
                    n = res["requests"]
                    print(f"  {workload:6s} {arm} r{rep}: {n / res['wall_s']:7.0f} req/s  "
                          f"ok {res['ok']}/{n}  client {1000 * res['cpu_s'] / n:.3f} ms/req  "
                          f"server {1000 * res['server_cpu_s'] / n:.3f} ms/req  "
                          f"client waited for a CPU "
                          f"{100 * res['runq_wait_s'] / res['wall_s']:.0f}%",
                          flush=True)
    finally:
        for s in servers.values():
            s.stop()
    print(f"# load after: {os.getloadavg()}\n")
    print("| workload | arm (server-client) | req/s | client CPU ms/req | server CPU ms/req "
          "| client waiting for CPU % | ok |")
    print("|---|---|---|---|---|---|---|")
    for workload in dict.fromkeys(r["workload"] for r in rows):
        for arm in arms:
            rs = [r for r in rows if r["workload"] == workload and r["arm"] == arm]
            med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
            print(f"| {workload} | {arm} | {med(lambda r: r['requests'] / r['wall_s']):.0f} "
                  f"| {med(lambda r: 1000 * r['cpu_s'] / r['requests']):.3f} "
                  f"| {med(lambda r: 1000 * r['server_cpu_s'] / r['requests']):.3f} "
                  f"| {med(lambda r: 100 * r['runq_wait_s'] / r['wall_s']):.0f} "
                  f"| {sum(r['ok'] for r in rs)}/{sum(r['requests'] for r in rs)} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
