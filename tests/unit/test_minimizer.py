"""The minimizer's search against fake replays: deterministic, concurrent, ordered,
flaky (seeded) and budget-limited failures. Bodies are trivial here; the content
passes are tested in test_minimizer_passes.py."""

from __future__ import annotations

import asyncio
import random

import pytest

from fuzz.minimize import Budget, Outcome, ReproductionTest, minimize, wilson_interval
from fuzz.minimize.subsets import binary_reduce, ddmin
from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace

SIG = "server_error|500|boom"
DURATION_MS = 400.0


def scenario(n: int, offsets: dict[int, float] | None = None) -> Scenario:
    offsets = offsets or {}
    return Scenario(requests=tuple(
        RequestSpec(id=f"r{i}", offset_ms=offsets.get(i, 100.0 * i),
                    body={"messages": [{"role": "user", "content": "q"}]})
        for i in range(n)))


def fake(condition, *, p: float = 1.0, seed: int = 0, log: list | None = None):
    """A replay failing with probability `p` when `condition(scenario)` holds; its
    trace times every request at DURATION_MS."""
    rng = random.Random(seed)

    async def replay(s: Scenario):
        if log is not None:
            log.append(s)
        trace = Trace(requests=tuple(
            RequestTrace(id=r.id, sent_s=r.offset_ms / 1000, end_s=(r.offset_ms + DURATION_MS) / 1000)
            for r in s.requests))
        fails = condition(s) and rng.random() < p
        return trace, [Failure(kind="server_error", signature=SIG, message="boom")] if fails else []

    return replay


def needs(*ids: str):
    return lambda s: set(ids) <= {r.id for r in s.requests}


def overlapping(*ids: str):
    def condition(s: Scenario) -> bool:
        present = {r.id: r.offset_ms for r in s.requests}
        if not all(i in present for i in ids):
            return False
        starts = [present[i] for i in ids]
        return max(starts) < min(starts) + DURATION_MS
    return condition


def ids(result) -> set[str]:
    return {r.id for r in result.scenario.requests}


def run(coro):
    return asyncio.run(coro)


def test_deterministic_single_request_in_few_replays():
    result = run(minimize(scenario(64), SIG, fake(needs("r41")), final_runs=0,
                          budget=Budget(max_replays=100)))
    assert ids(result) == {"r41"}
    assert result.original == Outcome(3, 3)
    assert result.test is not None and result.test.single_run_decides
    assert result.replays <= 3 * 6  # 3 * m * log2(n)
    assert result.failure is not None and result.failure.signature == SIG
    assert result.schedule_note.startswith("a single request")


def test_two_needed_requests_and_final_measurement():
    result = run(minimize(scenario(16), SIG, fake(needs("r3", "r11")), budget=Budget(max_replays=200)))
    assert ids(result) == {"r3", "r11"}
    assert result.final == Outcome(3, 3)
    assert not result.budget_exhausted and result.error is None
    assert result.passes["drop_requests"]["accepted"] >= 1


def test_concurrent_failure_keeps_the_overlap_and_says_so():
    s = scenario(30, offsets={4: 1000.0, 9: 1050.0, 20: 1100.0})
    result = run(minimize(s, SIG, fake(overlapping("r4", "r9", "r20")), budget=Budget(max_replays=300)))
    assert ids(result) == {"r4", "r9", "r20"}
    starts = sorted(r.offset_ms for r in result.scenario.requests)
    assert starts[-1] < starts[0] + DURATION_MS
    assert "must overlap" in result.schedule_note
    assert result.passes["sequentialize"]["accepted"] == 0


def test_order_dependent_pair_is_sequentialized_and_order_stated():
    def a_before_b(s: Scenario) -> bool:
        present = {r.id: r.offset_ms for r in s.requests}
        return "r2" in present and "r7" in present and present["r2"] < present["r7"]

    result = run(minimize(scenario(20), SIG, fake(a_before_b), budget=Budget(max_replays=300)))
    assert ids(result) == {"r2", "r7"}
    assert "reversed order does not reproduce: r2 before r7" in result.schedule_note


def test_flaky_failure_reaches_the_minimum_and_keeps_its_rate():
    result = run(minimize(scenario(24), SIG, fake(needs("r5"), p=0.5, seed=3),
                          budget=Budget(max_replays=2000), final_runs=20))
    assert ids(result) == {"r5"}
    assert 0 < result.original.hits < result.original.runs  # measured as flaky
    assert not result.test.single_run_decides
    assert result.final.runs == 20 and result.final.rate >= 0.25


def test_background_noise_does_not_pass_for_the_bug():
    # fails 50% with r5, and 15% of the time anyway: the result must keep r5
    rng = random.Random(1)

    async def replay(s: Scenario):
        p = 0.5 if "r5" in {r.id for r in s.requests} else 0.15
        return Trace(requests=()), [Failure(kind="x", signature=SIG, message="m")] if rng.random() < p else []

    result = run(minimize(scenario(24), SIG, replay, budget=Budget(max_replays=3000)))
    assert "r5" in ids(result)
    assert len(result.scenario.requests) <= 2


def test_back_off_when_an_accepted_candidate_stops_reproducing():
    # the first replay of any sub-scenario fails, later ones never: a fluke
    seen: set[str] = set()

    async def replay(s: Scenario):
        key = ",".join(sorted(r.id for r in s.requests))
        fluke = len(s.requests) < 8 and key not in seen
        seen.add(key)
        fails = len(s.requests) == 8 or fluke
        return Trace(requests=()), [Failure(kind="x", signature=SIG, message="m")] if fails else []

    result = run(minimize(scenario(8), SIG, replay, budget=Budget(max_replays=200)))
    assert result.backoffs >= 1
    assert len(result.scenario.requests) == 8 and result.scenario == scenario(8)


def test_a_scenario_that_does_not_reproduce_is_returned_unchanged():
    original = scenario(4)
    result = run(minimize(original, SIG, fake(needs("r9"))))
    assert result.scenario is original
    assert result.original.hits == 0 and result.original.runs >= 3
    assert result.candidates == 0 and result.test is None


def test_a_different_signature_does_not_count_but_is_recorded_as_drift():
    async def replay(s: Scenario):
        return Trace(requests=()), [Failure(kind="hang", signature="hang|other", message="x")]

    result = run(minimize(scenario(4), SIG, replay))
    assert result.original.hits == 0
    assert len(result.scenario.requests) == 4
    assert result.drift == {"hang|other": result.replays}


def test_budget_exhaustion_keeps_the_best_candidate_so_far():
    result = run(minimize(scenario(32), SIG, fake(needs("r1", "r30")), budget=Budget(max_replays=8)))
    assert result.budget_exhausted
    assert result.replays == 8
    assert {"r1", "r30"} <= ids(result)
    assert len(result.scenario.requests) < 32
    assert result.final.reproduces


def test_a_budget_spent_measuring_a_flaky_original_still_reports_its_replays():
    """A rare failure on a slow target: the budget runs out while the original is
    still being measured. The result (and so the bundle) says what those replays
    showed, not 0 of 0."""
    result = run(minimize(scenario(6), SIG, fake(needs("r1"), p=0.3, seed=3),
                          budget=Budget(max_replays=7)))
    assert result.budget_exhausted and result.replays == 7
    assert result.original.runs == 7 and 0 < result.original.hits < 7
    assert result.scenario == scenario(6) and result.final == result.original
    assert result.test is None and result.schedule_note == ""  # no search ran


def test_wall_clock_budget_and_a_failing_replay_stop_with_the_best_so_far():
    ticks = iter(range(1000))
    result = run(minimize(scenario(16), SIG, fake(needs("r3")), budget=Budget(max_wall_s=6.0),
                          clock=lambda: float(next(ticks))))
    assert result.budget_exhausted and result.replays <= 6

    async def broken(s: Scenario):
        if len(s.requests) < 16:
            raise ConnectionError("target gone")
        return Trace(requests=()), [Failure(kind="x", signature=SIG, message="m")]

    result = run(minimize(scenario(16), SIG, broken))
    assert result.error == "ConnectionError: target gone"
    assert len(result.scenario.requests) == 16


def test_sequential_test_decides_from_the_original_rate():
    det = ReproductionTest.for_original(Outcome(3, 3))
    assert det.decided(1, 1) is True and det.decided(0, 1) is False
    flaky = ReproductionTest.for_original(Outcome(10, 20))
    assert flaky.decided(1, 1) is None and flaky.decided(0, 1) is None
    assert flaky.decided(0, 8) is False
    assert flaky.decided(6, 8) is True
    assert flaky.decided(3, flaky.max_runs) is False  # truncated: no evidence, no
    assert flaky.decided(5, 6) is True and flaky.stricter().decided(5, 6) is None
    with pytest.raises(ValueError):
        ReproductionTest(p1=0.2, p0=0.5)
    with pytest.raises(ValueError):
        ReproductionTest.for_original(Outcome(0, 3))


def test_wilson_interval():
    lo, hi = wilson_interval(5, 10)
    assert 0.23 < lo < 0.24 and 0.76 < hi < 0.77
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert Outcome(3, 3).interval()[1] == 1.0


def test_subset_algorithms_find_the_needed_elements():
    items = list(range(50))
    calls = []

    async def fails(subset):
        calls.append(subset)
        return {7, 31, 44} <= set(subset)

    assert run(binary_reduce(items, fails)) == [7, 31, 44]
    assert len(calls) <= 3 * 7
    assert run(ddmin(items, fails)) == [7, 31, 44]
