"""The reduction problem: the current best scenario and everything needed to judge
a candidate against it (Shrink Ray's "reduction problem").

It owns the replay function, the budget, the verdict cache (by scenario content),
the evidence of the last failing run per candidate, the per-pass counters and the
history of accepted scenarios the minimizer backs off along. Passes only build
candidates and call `consider()`; they never replay on their own.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fuzz.minimize.complexity import complexity
from fuzz.minimize.reproduction import Outcome, ReproductionTest
from fuzz.model import Failure, Scenario, Trace

Replay = Callable[[Scenario], Awaitable[tuple[Trace, list[Failure]]]]


@dataclass(frozen=True)
class Budget:
    """Limits on one minimization; checked before every replay."""

    max_replays: int = 40
    max_wall_s: float = 600.0


class BudgetExhausted(Exception):
    """Raised before a replay the budget does not allow; the best so far stands."""


class ReplayFailed(Exception):
    """The replay function itself raised (e.g. the target could not be brought
    back); minimizing stops and the best so far stands."""


@dataclass
class PassStats:
    """What one pass cost and achieved (Shrink Ray-style counters)."""

    runs: int = 0
    candidates: int = 0
    accepted: int = 0
    replays: int = 0

    def to_json(self) -> dict[str, int]:
        return {"runs": self.runs, "candidates": self.candidates, "accepted": self.accepted,
                "replays": self.replays}


def fingerprint(scenario: Scenario) -> str:
    """A content key: two scenarios that would send the same bytes share a verdict."""
    text = json.dumps(scenario.to_json(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Problem:
    """The search state of one minimization (no global state: one per call)."""

    def __init__(self, scenario: Scenario, signature: str, replay: Replay, budget: Budget,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.signature = signature
        self.replay = replay
        self.budget = budget
        self.clock = clock
        self.started = clock()
        self.test = ReproductionTest()
        self.current = scenario
        self.history: list[Scenario] = [scenario]  # accepted scenarios, oldest first
        self.confirmed: set[str] = {fingerprint(scenario)}
        self.replays = 0
        self.candidates = 0
        self.backoffs = 0
        self.outcomes: dict[str, Outcome] = {}
        self.rejected: set[str] = set()  # overrides: accepted once, later refuted
        self.retried: set[str] = set()  # rejections given a second chance
        self.flips = 0  # second chances that reproduced: evidence of flakiness
        self.evidence: dict[str, tuple[Trace, Failure]] = {}
        self.latency_s: dict[str, float] = {}  # request id -> longest latency seen
        self.drift: Counter[str] = Counter()  # other signatures seen while replaying
        self.stats: dict[str, PassStats] = {}
        self.pass_name = "measure"

    # -- replays -------------------------------------------------------------------------

    def wall_s(self) -> float:
        return self.clock() - self.started

    async def run_once(self, scenario: Scenario) -> bool:
        """One replay; True when the signature reproduced."""
        if self.replays >= self.budget.max_replays or self.wall_s() > self.budget.max_wall_s:
            raise BudgetExhausted
        self.replays += 1
        self._stats().replays += 1
        try:
            trace, failures = await self.replay(scenario)
        except Exception as exc:  # the caller's code, e.g. a supervisor giving up
            raise ReplayFailed(f"{type(exc).__name__}: {exc}") from exc
        for r in trace.requests:
            if r.latency_s is not None:
                self.latency_s[r.id] = max(self.latency_s.get(r.id, 0.0), r.latency_s)
        hit = False
        for f in failures:
            if f.signature == self.signature:
                if not hit:
                    self.evidence[fingerprint(scenario)] = (trace, f)
                hit = True
            else:
                self.drift[f.signature] += 1
        key = fingerprint(scenario)
        self.outcomes[key] = self.outcomes.get(key, Outcome(0, 0)).plus(hit)
        return hit

    async def measure(self, scenario: Scenario, runs: int) -> Outcome:
        """`runs` fresh replays, counted on their own (and into the cache)."""
        outcome = Outcome(0, 0)
        for _ in range(runs):
            outcome = outcome.plus(await self.run_once(scenario))
        return outcome

    def outcome(self, scenario: Scenario) -> Outcome:
        return self.outcomes.get(fingerprint(scenario), Outcome(0, 0))

    def verdict(self, scenario: Scenario) -> bool | None:
        """What the runs so far say about this content, without replaying."""
        key = fingerprint(scenario)
        if key in self.rejected:
            return False
        seen = self.outcomes.get(key)
        return None if seen is None else self.test.decided(seen.hits, seen.runs)

    async def reproduces(self, scenario: Scenario, test: ReproductionTest | None = None) -> bool:
        """The sequential test on all runs of this content so far, extended as needed."""
        test = test or self.test
        key = fingerprint(scenario)
        if key in self.rejected:
            return False
        while True:
            seen = self.outcomes.get(key, Outcome(0, 0))
            verdict = test.decided(seen.hits, seen.runs)
            if verdict is not None:
                return verdict
            await self.run_once(scenario)

    # -- candidates ----------------------------------------------------------------------

    def simpler(self, candidate: Scenario) -> bool:
        return complexity(candidate, self.latency_s) < complexity(self.current, self.latency_s)

    async def consider(self, candidate: Scenario, *, second_chance: bool = False) -> bool:
        """Judge a candidate built from `current`; on success it becomes `current`.
        Candidates that are not strictly simpler are refused unreplayed, so passes
        cannot undo each other and the search terminates. `second_chance` re-tests,
        once and from scratch, a candidate rejected before (a missed reduction is
        10% likely per flaky test; twice, 1%)."""
        if not self.simpler(candidate):
            return False
        key = fingerprint(candidate)
        if (second_chance and key not in self.retried and key not in self.rejected
                and self.verdict(candidate) is False):
            self.retried.add(key)
            del self.outcomes[key]
            if await self.reproduces(candidate):
                self.flips += 1  # rejected once, accepted now: the failure is flaky
        stats = self._stats()
        if key not in self.outcomes:
            self.candidates += 1
            stats.candidates += 1
        if not await self.reproduces(candidate):
            return False
        stats.accepted += 1
        self.current = candidate
        self.history.append(candidate)
        return True

    async def probe(self, candidate: Scenario) -> bool:
        """Judge a variant that is not a simplification (e.g. reversed order), to
        state a fact about the failure; `current` does not change."""
        if fingerprint(candidate) not in self.outcomes:
            self.candidates += 1
            self._stats().candidates += 1
        return await self.reproduces(candidate)

    async def confirm_or_back_off(self) -> None:
        """Confirm `current` with the stricter test; while it fails, mark it refuted
        and fall back to the previous accepted scenario (the original never falls)."""
        strict = self.test.stricter()
        while fingerprint(self.current) not in self.confirmed:
            if await self.reproduces(self.current, strict):
                self.confirmed.add(fingerprint(self.current))
                return
            self.rejected.add(fingerprint(self.current))
            self.backoffs += 1
            self.history.pop()
            self.current = self.history[-1]

    def _stats(self) -> PassStats:
        return self.stats.setdefault(self.pass_name, PassStats())
