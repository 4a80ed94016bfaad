"""Delta debugging over a scenario's requests, against a live (flaky) target.

The pass order follows the design: drop requests first (cheapest, biggest win).
Each candidate is judged by `ReproductionTest`; results are cached by the set of
request ids so no sub-scenario is replayed twice. The budget (replays, wall time)
is checked before every replay; when it runs out the best scenario so far wins.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fuzz.minimize.reproduction import Outcome, ReproductionTest
from fuzz.model import Failure, RequestSpec, Scenario, Trace

Replay = Callable[[Scenario], Awaitable[tuple[Trace, list[Failure]]]]


@dataclass(frozen=True)
class Budget:
    max_replays: int = 40
    max_wall_s: float = 600.0


@dataclass(frozen=True)
class MinimizeResult:
    """The smallest scenario found, how reliably it fails, and what it cost."""

    scenario: Scenario
    trace: Trace | None
    failure: Failure | None
    original: Outcome
    final: Outcome
    candidates: int
    replays: int
    wall_s: float
    budget_exhausted: bool


class _BudgetExhausted(Exception):
    pass


class _Search:
    """Holds the replay function, budget accounting, the verdict cache and the last
    failing evidence per candidate (keyed by its set of request ids)."""

    def __init__(self, signature: str, replay: Replay, budget: Budget, test: ReproductionTest):
        self.signature = signature
        self.replay = replay
        self.budget = budget
        self.test = test
        self.started = time.monotonic()
        self.replays = 0
        self.candidates = 0
        self.evidence: dict[frozenset[str], tuple[Trace, Failure]] = {}
        self.outcomes: dict[frozenset[str], Outcome] = {}
        self.best: Scenario | None = None

    async def run_once(self, scenario: Scenario) -> bool:
        if self.replays >= self.budget.max_replays or \
                time.monotonic() - self.started > self.budget.max_wall_s:
            raise _BudgetExhausted
        self.replays += 1
        trace, failures = await self.replay(scenario)
        for f in failures:
            if f.signature == self.signature:
                self.evidence[_key(scenario)] = (trace, f)
                return True
        return False

    async def measure(self, scenario: Scenario, runs: int) -> Outcome:
        hits = 0
        for _ in range(runs):
            hits += await self.run_once(scenario)
        return Outcome(hits, runs)

    async def still_fails(self, scenario: Scenario) -> bool:
        """The sequential test, cached; remembers the smallest accepted candidate."""
        key = _key(scenario)
        if key not in self.outcomes:
            self.candidates += 1
            hits = runs = 0
            while self.test.decided(hits, runs) is None:
                hits += await self.run_once(scenario)
                runs += 1
            self.outcomes[key] = Outcome(hits, runs)
        ok = bool(self.test.decided(self.outcomes[key].hits, self.outcomes[key].runs))
        if ok and (self.best is None or len(scenario.requests) < len(self.best.requests)):
            self.best = scenario
        return ok


def _key(scenario: Scenario) -> frozenset[str]:
    return frozenset(r.id for r in scenario.requests)


def _chunks(items: Sequence[RequestSpec], n: int) -> list[list[RequestSpec]]:
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return [c for c in out if c]


async def drop_requests(scenario: Scenario, search: _Search) -> Scenario:
    """ddmin (Zeller): try each chunk alone, then each complement, refining."""
    requests = list(scenario.requests)
    n = 2
    while len(requests) >= 2:
        chunks = _chunks(requests, n)
        subsets = chunks if n == 2 else chunks + [
            [r for r in requests if r not in c] for c in chunks]
        for i, subset in enumerate(subsets):
            if await search.still_fails(scenario.with_requests(tuple(subset))):
                requests = subset
                n = 2 if i < len(chunks) else max(n - 1, 2)
                break
        else:
            if n >= len(requests):
                break
            n = min(len(requests), 2 * n)
    return scenario.with_requests(tuple(requests))


async def minimize(scenario: Scenario, signature: str, replay: Replay, *,
                   budget: Budget = Budget(), test: ReproductionTest = ReproductionTest(),
                   baseline_runs: int = 3, final_runs: int = 3) -> MinimizeResult:
    """Measure the original, drop requests while the signature reproduces, and
    measure the result. A non-reproducing original is returned as it is; when the
    budget runs out, the smallest candidate accepted so far is the result."""
    search = _Search(signature, replay, budget, test)
    best = scenario
    original = Outcome(0, 0)
    exhausted = False
    try:
        original = await search.measure(scenario, baseline_runs)
        if original.reproduces:
            search.outcomes[_key(scenario)] = original
            best = await drop_requests(scenario, search)
            if len(best.requests) == len(scenario.requests):
                best = scenario
    except _BudgetExhausted:
        exhausted = True
        best = search.best or scenario
    final = original if best is scenario else search.outcomes[_key(best)]
    if not exhausted and best is not scenario:
        try:
            final = await search.measure(best, final_runs)
        except _BudgetExhausted:
            exhausted = True
    trace, failure = search.evidence.get(_key(best), (None, None))
    return MinimizeResult(scenario=best, trace=trace, failure=failure, original=original,
                          final=final, candidates=search.candidates, replays=search.replays,
                          wall_s=time.monotonic() - search.started, budget_exhausted=exhausted)
