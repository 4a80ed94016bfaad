"""Schedule fidelity: does the runner send each request when its scenario says?

The plan is a scenario's request offsets: Poisson arrivals at a rate (50, 200, 1000
requests/s) for a few seconds, one scenario, run by `run_scenario` against the null
server started with `--record-arrivals`. Each request's lateness is measured twice:

- runner: `sent_s - offset`, on the runner's own clock (`sent_s` is when the request's
  task began sending it, after the dispatcher's sleep);
- server: the null server's arrival time of the complete request (CLOCK_MONOTONIC, the
  same clock in every process) minus the plan, relative to the most punctual request:
  `(arrival - offset) - min(arrival - offset)`. This adds connection set-up, aiohttp's
  write path and the server's own reading, so it bounds the runner's figure from above.

Dropped sends are planned requests that never reached the server, plus requests whose
trace has a transport error or a deadline. The functions here run in the vlfuzz worker
(`measure`) and in the orchestrator (`summarize`, `print_table`) of bench/client.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

RATES = (50, 200, 1000)


def poisson_offsets_ms(rate_per_s: float, duration_s: float, seed: int) -> list[float]:
    """Send offsets of a Poisson process at `rate_per_s` over `duration_s`."""
    rng = random.Random(seed)
    out, t = [], rng.expovariate(rate_per_s)
    while t < duration_s:
        out.append(t * 1000.0)
        t += rng.expovariate(rate_per_s)
    return out


async def measure(runner: Any, base_url: str, model: str, rate_per_s: float,
                  duration_s: float, make_body: Callable[[int], dict[str, Any]],
                  seed: int = 0) -> dict[str, Any]:
    """Run the planned scenario; per request: its id, planned offset, sent_s, and ok."""
    from fuzz.model import Deadlines, RequestSpec, Scenario
    offsets = poisson_offsets_ms(rate_per_s, duration_s, seed)
    specs = tuple(RequestSpec(id=f"f{i}", offset_ms=ms, body={**make_body(i), "user": f"f{i}"})
                  for i, ms in enumerate(offsets))
    trace = await runner.run_scenario(runner.Endpoint(base_url, model), Scenario(requests=specs),
                                      Deadlines(), probe=False, metrics=False)
    return {"rate": rate_per_s, "duration_s": duration_s, "wall_s": trace.wall_s,
            "requests": [[rt.id, spec.offset_ms, rt.sent_s,
                          rt.error is None and rt.deadline is None and rt.status == 200]
                         for spec, rt in zip(specs, trace.requests)]}


def _pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(run: dict[str, Any], arrivals: Sequence[tuple[float, str]]) -> dict[str, Any]:
    """Lateness percentiles (ms) on both clocks and the dropped count of one run."""
    planned = {rid: offset_ms / 1000.0 for rid, offset_ms, _, _ in run["requests"]}
    runner_late = [1000.0 * (sent - planned[rid]) for rid, _, sent, _ in run["requests"]]
    seen = {rid: t for t, rid in arrivals if rid in planned}
    wire = [t - planned[rid] for rid, t in seen.items()]
    base = min(wire, default=0.0)
    server_late = [1000.0 * (w - base) for w in wire]
    failed = sum(1 for *_, ok in run["requests"] if not ok)
    meter = run.get("meter") or {}
    wall = meter.get("wall_s") or 0.0
    return {"rate": run["rate"], "planned": len(planned),
            "client_cpu_pct": 100 * meter["cpu_s"] / wall if wall else None,
            "client_wait_pct": 100 * meter["runq_wait_s"] / wall if wall else None,
            "achieved_rate": len(planned) / run["wall_s"] if run["wall_s"] else None,
            "runner_p50_ms": _pct(runner_late, 50), "runner_p99_ms": _pct(runner_late, 99),
            "runner_max_ms": max(runner_late, default=None),
            "server_p50_ms": _pct(server_late, 50), "server_p99_ms": _pct(server_late, 99),
            "dropped": len(planned) - len(seen) + failed}


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """One row per (workload, rate); medians over repeats are taken by the caller."""
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    def f0(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"
    print("| workload | rate req/s | planned | runner p50 ms | runner p99 ms | runner max ms "
          "| server p50 ms | server p99 ms | dropped | client CPU % | client waiting for CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.get('workload', '-')} | {r['rate']:g} | {r['planned']} "
              f"| {f(r['runner_p50_ms'])} "
              f"| {f(r['runner_p99_ms'])} | {f(r['runner_max_ms'])} | {f(r['server_p50_ms'])} "
              f"| {f(r['server_p99_ms'])} | {r['dropped']} | {f0(r.get('client_cpu_pct'))} "
              f"| {f0(r.get('client_wait_pct'))} |")
