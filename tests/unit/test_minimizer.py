"""The minimizer against fake replays: deterministic, flaky and budget-limited."""

from __future__ import annotations

import asyncio
import random

import pytest

from fuzz.minimize import Budget, ReproductionTest, minimize
from fuzz.model import Failure, RequestSpec, Scenario, Trace

SIG = "server_error|500|boom"


def scenario(n: int) -> Scenario:
    return Scenario(requests=tuple(
        RequestSpec(id=f"r{i}", body={"messages": [{"role": "user", "content": str(i)}]})
        for i in range(n)))


def replay_failing_when(needed: set[str], *, p: float = 1.0, seed: int = 0, log=None):
    rng = random.Random(seed)

    async def replay(s: Scenario):
        ids = {r.id for r in s.requests}
        if log is not None:
            log.append(ids)
        fails = needed <= ids and rng.random() < p
        failures = [Failure(kind="server_error", signature=SIG, message="boom", request_id="r0")] if fails else []
        return Trace(requests=()), failures

    return replay


def test_drops_every_request_not_needed_for_the_failure():
    result = asyncio.run(minimize(scenario(16), SIG, replay_failing_when({"r3", "r11"}),
                                  budget=Budget(max_replays=500)))
    assert {r.id for r in result.scenario.requests} == {"r3", "r11"}
    assert result.final.hits == result.final.runs == 3
    assert result.failure is not None and result.failure.signature == SIG
    assert not result.budget_exhausted


def test_every_accepted_candidate_was_replayed_more_than_once():
    log: list[set[str]] = []
    result = asyncio.run(minimize(scenario(8), SIG, replay_failing_when({"r5"}, log=log)))
    assert [r.id for r in result.scenario.requests] == ["r5"]
    assert sum(1 for ids in log if ids == {"r5"}) >= 2


def test_a_scenario_that_does_not_reproduce_is_returned_unchanged():
    original = scenario(4)
    result = asyncio.run(minimize(original, SIG, replay_failing_when({"r9"})))
    assert result.scenario is original
    assert result.original.hits == 0 and result.original.runs == 3
    assert result.candidates == 0


def test_a_different_signature_does_not_count_as_reproducing():
    async def replay(s: Scenario):
        return Trace(requests=()), [Failure(kind="hang", signature="hang|other", message="x")]

    result = asyncio.run(minimize(scenario(4), SIG, replay))
    assert result.original.hits == 0
    assert len(result.scenario.requests) == 4


def test_flaky_failure_is_still_minimized_with_the_sequential_test():
    result = asyncio.run(minimize(scenario(8), SIG, replay_failing_when({"r2"}, p=0.8, seed=3),
                                  test=ReproductionTest(needed=2, max_runs=5),
                                  budget=Budget(max_replays=200)))
    assert {"r2"} <= {r.id for r in result.scenario.requests}
    assert len(result.scenario.requests) < 8
    assert 0 < result.final.hits <= result.final.runs


def test_budget_exhaustion_keeps_the_best_candidate_so_far():
    result = asyncio.run(minimize(scenario(32), SIG, replay_failing_when({"r1", "r30"}),
                                  budget=Budget(max_replays=20)))
    assert result.budget_exhausted
    assert result.replays == 20
    assert {"r1", "r30"} <= {r.id for r in result.scenario.requests}
    assert len(result.scenario.requests) < 32


def test_reproduction_test_decides_as_soon_as_it_can():
    t = ReproductionTest(needed=2, max_runs=3)
    assert t.decided(2, 2) is True
    assert t.decided(0, 2) is False
    assert t.decided(1, 1) is None
    with pytest.raises(ValueError):
        ReproductionTest(needed=4, max_runs=3)
