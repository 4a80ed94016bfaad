"""Benchmark the minimizer offline against synthetic failures with known minima.

Each case hides a bug in a scenario of 20-100 requests: a single guilty request, k
requests that must overlap in time, an ordered pair (A before B), and flaky
versions (the bug fires with probability p; "noisy" ones also fail now and then
without the trigger, more often the bigger the scenario). The fake replay returns a
trace with per-request timings, so the timing passes and the schedule note work as
against a server. Bodies are one-character prompts: the benchmark measures the
search over requests and schedule; body passes are covered by the unit tests.

For every case and seed, ours (`fuzz.minimize.minimize`, `final_runs=0`) and a naive
baseline (ddmin with a single replay per candidate) run side by side; each result
is replayed `--check-runs` (200) more times with a fresh RNG, and so is the original, to report how
well the result still reproduces.

    python3 bench/minimize.py [--seeds 5] [--check-runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from dataclasses import dataclass

from fuzz.minimize import Budget, minimize
from fuzz.minimize.subsets import ddmin
from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace

SIG = "bench|500|synthetic"
DURATION_MS = 400.0  # every fake request is in flight this long
SPREAD_MS = 3000.0


@dataclass(frozen=True)
class Case:
    name: str
    n: int  # requests in the scenario
    shape: str  # "single", "overlap", "order"
    m: int  # requests in the known minimum
    p: float = 1.0  # failure probability when the trigger is present
    noise: float = 0.0  # failure probability without it, at full size (scales with size)

    @property
    def deterministic(self) -> bool:
        return self.p == 1.0 and self.noise == 0.0


CASES: tuple[Case, ...] = (
    Case("det single", 20, "single", 1),
    Case("det single", 50, "single", 1),
    Case("det single", 100, "single", 1),
    Case("det overlap k=2", 30, "overlap", 2),
    Case("det overlap k=3", 60, "overlap", 3),
    Case("det overlap k=4", 100, "overlap", 4),
    Case("det order A<B", 40, "order", 2),
    Case("det order A<B", 100, "order", 2),
    Case("flaky single p=.3", 40, "single", 1, p=0.3),
    Case("flaky single p=.5", 60, "single", 1, p=0.5),
    Case("flaky single p=.7", 100, "single", 1, p=0.7),
    Case("noisy single p=.5", 50, "single", 1, p=0.5, noise=0.2),
    Case("flaky overlap k=2 p=.5", 40, "overlap", 2, p=0.5),
    Case("flaky order p=.6", 30, "order", 2, p=0.6),
    Case("noisy overlap k=3 p=.7", 80, "overlap", 3, p=0.7, noise=0.15),
)


def build(case: Case, seed: int) -> tuple[Scenario, list[str]]:
    """A scenario with `case.n` requests and the ids of the guilty ones."""
    rng = random.Random(seed)
    offsets = [round(rng.uniform(0, SPREAD_MS), 1) for _ in range(case.n)]
    guilty = rng.sample(range(case.n), case.m)
    if case.shape == "overlap":  # close enough together to be in flight at once
        base = rng.uniform(0, SPREAD_MS)
        for i in guilty:
            offsets[i] = round(base + rng.uniform(0, DURATION_MS / 3), 1)
    elif case.shape == "order":
        a, b = guilty
        if offsets[a] >= offsets[b]:
            offsets[a], offsets[b] = min(offsets[a], offsets[b]) - 1, max(offsets[a], offsets[b])
            offsets[a] = max(offsets[a], 0.0)
            if offsets[a] >= offsets[b]:
                offsets[b] = offsets[a] + 1
    requests = tuple(RequestSpec(id=f"r{i}", offset_ms=offsets[i],
                                 body={"messages": [{"role": "user", "content": "q"}], "max_tokens": 8})
                     for i in range(case.n))
    return Scenario(requests=requests, seed=seed), [f"r{i}" for i in guilty]


def triggered(case: Case, scenario: Scenario, guilty: list[str]) -> bool:
    present = {r.id: r for r in scenario.requests}
    if not all(g in present for g in guilty):
        return False
    if case.shape == "overlap":
        starts = [present[g].offset_ms for g in guilty]
        return max(starts) < min(starts) + DURATION_MS
    if case.shape == "order":
        return present[guilty[0]].offset_ms < present[guilty[1]].offset_ms
    return True


def fake_replay(case: Case, guilty: list[str], rng: random.Random, counter: list[int]):
    async def replay(scenario: Scenario) -> tuple[Trace, list[Failure]]:
        counter[0] += 1
        p = case.p if triggered(case, scenario, guilty) else case.noise * len(scenario.requests) / case.n
        trace = Trace(requests=tuple(
            RequestTrace(id=r.id, sent_s=r.offset_ms / 1000, status=200,
                         end_s=(r.offset_ms + DURATION_MS) / 1000) for r in scenario.requests))
        failures = [Failure(kind="bench", signature=SIG, message="synthetic")] if rng.random() < p else []
        return trace, failures
    return replay


async def naive(scenario: Scenario, replay) -> Scenario:
    """Delta debugging with one replay per candidate: the baseline."""
    async def fails(subset: list[RequestSpec]) -> bool:
        _, failures = await replay(scenario.with_requests(tuple(subset)))
        return any(f.signature == SIG for f in failures)
    return scenario.with_requests(tuple(await ddmin(scenario.requests, fails)))


async def rate(case: Case, scenario: Scenario, guilty: list[str], runs: int, seed: int) -> float:
    replay = fake_replay(case, guilty, random.Random(seed), [0])
    hits = 0
    for _ in range(runs):
        hits += bool((await replay(scenario))[1])
    return hits / runs


@dataclass
class Run:
    size: int
    replays: int
    rate: float
    note: str = ""


async def run_case(case: Case, seed: int, check_runs: int) -> tuple[Run, Run, float]:
    scenario, guilty = build(case, seed)
    original = await rate(case, scenario, guilty, check_runs, seed + 7_000)
    count = [0]
    result = await minimize(scenario, SIG, fake_replay(case, guilty, random.Random(seed + 1), count),
                            budget=Budget(max_replays=5000, max_wall_s=120.0), final_runs=0)
    ours = Run(len(result.scenario.requests), result.replays,
               await rate(case, result.scenario, guilty, check_runs, seed + 9_000), result.schedule_note)
    count = [0]
    small = await naive(scenario, fake_replay(case, guilty, random.Random(seed + 2), count))
    base = Run(len(small.requests), count[0], await rate(case, small, guilty, check_runs, seed + 11_000))
    return ours, base, original


def good(case: Case, run: Run, original: float) -> bool:
    if case.deterministic:
        return run.size == case.m and run.rate == 1.0 and run.replays <= bound(case)
    return run.size == case.m and run.rate >= 0.8 * original


def bound(case: Case) -> int:
    return math.floor(3 * case.m * math.log2(case.n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--check-runs", type=int, default=200)
    parser.add_argument("--notes", action="store_true", help="print one schedule note per case")
    args = parser.parse_args()
    started = time.monotonic()
    header = ("| case | n | min | bound | ours size | ours replays (max) | ours repro/orig | ours ok "
              "| base size | base replays | base repro/orig | base ok |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    notes = []
    for case in CASES:
        rows = [asyncio.run(run_case(case, s, args.check_runs)) for s in range(args.seeds)]
        ours, base, orig = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        print(f"| {case.name} | {case.n} | {case.m} | {bound(case) if case.deterministic else '-'} "
              f"| {_sizes(ours)} | {statistics.mean(r.replays for r in ours):.0f} "
              f"({max(r.replays for r in ours)}) | {_ratio(ours, orig)} "
              f"| {sum(good(case, r, o) for r, o in zip(ours, orig))}/{len(rows)} "
              f"| {_sizes(base)} | {statistics.mean(r.replays for r in base):.0f} | {_ratio(base, orig)} "
              f"| {sum(good(case, r, o) for r, o in zip(base, orig))}/{len(rows)} |")
        notes.append(f"{case.name} n={case.n}: {ours[0].note}")
    if args.notes:
        print("\n" + "\n".join(notes))
    print(f"\n{args.seeds} seeds per case, {args.check_runs} check runs per result; "
          f"{time.monotonic() - started:.1f}s")


def _sizes(runs: list[Run]) -> str:
    sizes = [r.size for r in runs]
    return f"{statistics.mean(sizes):.1f} [{min(sizes)}-{max(sizes)}]"


def _ratio(runs: list[Run], originals: list[float]) -> str:
    return f"{statistics.mean(r.rate for r in runs):.2f}/{statistics.mean(originals):.2f}"


if __name__ == "__main__":
    main()
