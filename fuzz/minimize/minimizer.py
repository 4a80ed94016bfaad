"""The minimization driver: measure, run the passes in tiers until none makes
progress, confirm or back off, state the schedule, measure the result.

1. The original is replayed `baseline_runs` times (more, up to `max_baseline_runs`,
   when it is flaky); its k-of-n sets the sequential test (`ReproductionTest`).
2. Tiers run cheapest first - drop requests; shrink what is left; simplify the
   schedule - and the whole ladder repeats while any pass made progress. A pass is
   skipped when it already ran, fruitlessly, on the very same scenario.
3. After a round with progress the current best is confirmed with a stricter test;
   if it no longer reproduces, the search backs off to the previous accepted one.
4. The reversed order is probed once and `schedule_note` states what the schedule
   needs; then the result gets `final_runs` fresh replays.

The budget (replays, wall time) is checked before every replay; when it runs out,
or the replay function raises, the best scenario accepted so far is the result.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fuzz.minimize import passes, timing
from fuzz.minimize.problem import (Budget, BudgetExhausted, PassStats, Problem, Replay,
                                   ReplayFailed, fingerprint)
from fuzz.minimize.reproduction import DETERMINISTIC_P0_FRACTION, Outcome, ReproductionTest
from fuzz.model import Failure, Scenario, Trace

Pass = Callable[[Problem], Awaitable[None]]

TIERS: tuple[tuple[Pass, ...], ...] = (
    (passes.drop_requests,),
    (passes.drop_images, passes.drop_messages, passes.drop_tools, passes.simplify_schema,
     passes.default_sampling, passes.no_streaming, passes.shorten_text, passes.shrink_images,
     passes.simplify_images),
    (timing.sequentialize, timing.spread_burst, timing.lower_concurrency),
)


@dataclass(frozen=True)
class MinimizeResult:
    """The smallest scenario found, how reliably it fails, and what it cost.

    `final` is a fresh k-of-n of `scenario` (its accumulated runs when `final_runs`
    is 0 or the budget ran out). `passes` maps each pass to its counters (runs,
    candidates, accepted, replays). `drift` counts other signatures seen on the way
    (syzkaller's "reproduced a different crash")."""

    scenario: Scenario
    trace: Trace | None
    failure: Failure | None
    original: Outcome
    final: Outcome
    candidates: int
    replays: int
    wall_s: float
    budget_exhausted: bool
    test: ReproductionTest | None = None
    passes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    schedule_note: str = ""
    backoffs: int = 0
    rounds: int = 0
    drift: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    def summary(self) -> str:
        """One line for journals and bundle notes."""
        size = f"{len(self.scenario.requests)} requests"
        return (f"{size}, reproduced {self.final} (original {self.original}); {self.candidates} "
                f"candidates, {self.replays} replays, {self.wall_s:.0f}s"
                + (", budget ran out" if self.budget_exhausted else "")
                + (f", stopped: {self.error}" if self.error else ""))


async def minimize(scenario: Scenario, signature: str, replay: Replay, *,
                   budget: Budget = Budget(), test: ReproductionTest | None = None,
                   baseline_runs: int = 3, max_baseline_runs: int = 20, final_runs: int = 3,
                   tiers: tuple[tuple[Pass, ...], ...] = TIERS, max_rounds: int = 8,
                   clock: Callable[[], float] = time.monotonic) -> MinimizeResult:
    """Shrink `scenario` while `signature` keeps reproducing under `replay`.

    A non-reproducing original is returned as it is (the same object); so is one
    that could not be reduced. `test` overrides the test derived from the original."""
    problem = Problem(scenario, signature, replay, budget, clock=clock)
    original = Outcome(0, 0)
    exhausted, error, rounds = False, None, 0
    try:
        original = await _measure_original(problem, scenario, baseline_runs, max_baseline_runs)
        if original.reproduces:
            problem.test = test or ReproductionTest.for_original(original)
            rounds = await _run_tiers(problem, tiers, max_rounds,
                                      retune_runs=0 if test else max_baseline_runs)
            problem.pass_name = "probe_order"
            await timing.probe_order(problem)
    except BudgetExhausted:
        exhausted = True
    except ReplayFailed as exc:
        error = str(exc)
    searched = original.reproduces  # the measurement finished, and the search ran
    # every replay of the original: re-measured when it turned out to be flaky, or cut
    # short by the budget while it was still being measured
    original = problem.outcome(scenario)
    best = scenario if fingerprint(problem.current) == fingerprint(scenario) else problem.current
    final = original if best is scenario else problem.outcome(best)
    if best is not scenario and final_runs > 0 and not exhausted and error is None:
        problem.pass_name = "final"
        try:
            final = await problem.measure(best, final_runs)
        except BudgetExhausted:
            exhausted = True
        except ReplayFailed as exc:
            error = str(exc)
    trace, failure = problem.evidence.get(fingerprint(best), (None, None))
    return MinimizeResult(
        scenario=best, trace=trace, failure=failure, original=original, final=final,
        candidates=problem.candidates, replays=problem.replays, wall_s=problem.wall_s(),
        budget_exhausted=exhausted, test=problem.test if searched else None,
        passes={name: s.to_json() for name, s in problem.stats.items()},
        schedule_note=timing.schedule_note(problem) if searched else "",
        backoffs=problem.backoffs, rounds=rounds, drift=dict(problem.drift), error=error)


async def _measure_original(problem: Problem, scenario: Scenario, runs: int,
                            max_runs: int) -> Outcome:
    """`runs` replays; up to `max_runs` unless every one reproduced: a flaky
    failure needs a better rate estimate, and a failure seen once that missed a few
    times may still be flaky rather than gone (given up after half of `max_runs`
    without a single hit)."""
    problem.pass_name = "measure"
    outcome = await problem.measure(scenario, runs)
    while outcome.hits < outcome.runs and outcome.runs < max_runs:
        if outcome.hits == 0 and outcome.runs >= max_runs // 2:
            break
        outcome = outcome.plus(await problem.run_once(scenario))
    return outcome


async def _retune(problem: Problem, original: Scenario, max_runs: int) -> None:
    """A failure that looked deterministic but since missed on an accepted scenario
    (or forced a back-off) is flaky after all: measure the original up to
    `max_runs`, re-derive the test from that, and re-confirm the current best under
    it (backing off as far as needed). Effective once: after it the test is flaky."""
    seen = problem.outcome(original)
    if seen.hits < seen.runs or problem.test.p0 > problem.test.p1 * DETERMINISTIC_P0_FRACTION:
        return
    missed = any(problem.outcome(s).hits < problem.outcome(s).runs for s in problem.history)
    if not (missed or problem.backoffs or problem.flips):
        return
    problem.pass_name = "measure"
    await problem.measure(original, max(0, max_runs - seen.runs))
    problem.test = ReproductionTest.for_original(problem.outcome(original))
    problem.confirmed = {fingerprint(original)}
    problem.pass_name = "confirm"
    await problem.confirm_or_back_off()


async def _run_tiers(problem: Problem, tiers: tuple[tuple[Pass, ...], ...], max_rounds: int,
                     retune_runs: int) -> int:
    """Repeat the tier ladder until a round changes nothing; returns the rounds run."""
    fruitless: dict[str, str] = {}  # pass name -> fingerprint it last ran on, in vain
    for round_ in range(1, max_rounds + 1):
        progress = False
        for tier in tiers:
            for run in tier:
                name = run.__name__
                before = fingerprint(problem.current)
                if fruitless.get(name) == before:
                    continue
                problem.pass_name = name
                problem.stats.setdefault(name, PassStats()).runs += 1
                await run(problem)
                if fingerprint(problem.current) == before:
                    fruitless[name] = before
                else:
                    progress = True
        if not progress:
            return round_
        problem.pass_name = "confirm"
        await problem.confirm_or_back_off()
        if retune_runs:
            await _retune(problem, problem.history[0], retune_runs)
    return max_rounds
