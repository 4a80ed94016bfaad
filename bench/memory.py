"""Memory per in-flight request and per request sent, for vlfuzz's runner.

- in flight: one scenario bursts N requests (all at offset 0) at a null server started
  with `--latency-ms`, so every response head is held back. As soon as the server has
  counted all N requests, the client's Python heap (tracemalloc) and RSS are read; the
  growth over their values just before the scenario, divided by N, is what one waiting
  request costs: its task, deadline timer and recorder, its prepared body, aiohttp's
  request, response and connection objects, and the socket's share of the process.
- sent: a scenario of N streamed 64-token requests runs to the end and its Trace is kept
  (a campaign holds it until the oracles have run); the growth divided by N is what one
  request's record costs: its 67 events, their times, headers and the rest.

Each measurement runs in a fresh worker process so that RSS starts from the same place,
and the heap and RSS figures come from separate runs, because tracemalloc's own
bookkeeping is memory too. The functions here run inside bench/client.py's vlfuzz worker.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _server_count(base_url: str) -> int:
    """The null server's count of chat requests (`GET /bench/count`), over a bare socket
    so that asking costs the measured process next to nothing."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"GET /bench/count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    return int(json.loads(raw.split(b"\r\n\r\n", 1)[1])["count"])


async def measure(runner: Any, base_url: str, model: str, kind: str, n: int,
                  make_body: Callable[[int], dict[str, Any]], tracer: str) -> dict[str, Any]:
    """One measurement: `kind` "in_flight" or "sent", `tracer` "heap" or "rss"."""
    from fuzz.model import Deadlines, RequestSpec, Scenario
    scenario = Scenario(requests=tuple(RequestSpec(id=f"m{i}", body=make_body(i))
                                       for i in range(n)))
    start = await _server_count(base_url)
    gc.collect()
    if tracer == "heap":
        tracemalloc.start()

    def reading() -> float:
        if tracer == "heap":
            return tracemalloc.get_traced_memory()[0] / 1024
        return float(_rss_kb())

    base = reading()
    run = asyncio.ensure_future(runner.run_scenario(
        runner.Endpoint(base_url, model), scenario, Deadlines(), probe=False, metrics=False))
    grown: float | None = None
    if kind == "in_flight":
        while not run.done() and await _server_count(base_url) - start < n:
            await asyncio.sleep(0.02)
        if not run.done():
            grown = reading() - base
    trace = await run
    if kind == "sent":
        gc.collect()
        grown = reading() - base
    if tracer == "heap":
        tracemalloc.stop()
    ok = sum(1 for rt in trace.requests if rt.status == 200 and rt.error is None)
    return {"kind": kind, "n": n, "tracer": tracer, "ok": ok,
            "kb_per_request": None if grown is None else grown / n}


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """One row per (kind, n): heap and RSS KB per request."""
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        cells.setdefault((r["kind"], r["n"]), {})[r["tracer"]] = r.get("kb_per_request")

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"
    print("| measure | requests | Python heap KB/request (tracemalloc) | RSS KB/request |")
    print("|---|---|---|---|")
    for (kind, n), c in cells.items():
        label = {"in_flight": "in flight (waiting for headers)",
                 "sent": "sent (stream 64 tokens, trace kept)"}[kind]
        print(f"| {label} | {n} | {f(c.get('heap'))} | {f(c.get('rss'))} |")
