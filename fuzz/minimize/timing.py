"""The schedule passes, and the sentence that states what the schedule needs.

The schedule is explicit data (`RequestSpec.offset_ms`), so an order or overlap the
failure depends on survives every other pass untouched. These passes try to make it
simpler - one request after another, a burst staggered, one request moved out of
the crowd - and whatever they could not remove is what `schedule_note` states:
"r3 and r7 must overlap", "r3 must come before r7". In-flight intervals come from
the latencies the replays measured (`Problem.latency_s`).
"""

from __future__ import annotations

from dataclasses import replace

from fuzz.minimize.complexity import DEFAULT_LATENCY_S, interval_ms, overlapping_pairs
from fuzz.minimize.problem import Problem
from fuzz.model import RequestSpec, Scenario

PAD_MS = 250.0  # slack after a request's measured end before the next one starts
STAGGER_FRACTION = 0.1  # a staggered burst starts requests 10% of a latency apart


def in_order(scenario: Scenario) -> list[RequestSpec]:
    """Requests by start time, ties in scenario order."""
    index = {r.id: i for i, r in enumerate(scenario.requests)}
    return sorted(scenario.requests, key=lambda r: (r.offset_ms, index[r.id]))


def _with_offsets(scenario: Scenario, offsets: dict[str, float]) -> Scenario:
    return replace(scenario, requests=tuple(replace(r, offset_ms=round(offsets[r.id], 1))
                                            for r in scenario.requests))


def _latency_ms(problem: Problem, ids: list[str]) -> float:
    return 1000.0 * max((problem.latency_s.get(i, DEFAULT_LATENCY_S) for i in ids), default=DEFAULT_LATENCY_S)


def sequentialized(scenario: Scenario, gap_ms: float) -> Scenario:
    """Same order, each request `gap_ms` after the previous one started."""
    return _with_offsets(scenario, {r.id: i * gap_ms for i, r in enumerate(in_order(scenario))})


def reversed_order(scenario: Scenario) -> Scenario:
    """The same start times handed out in the opposite order."""
    ordered = in_order(scenario)
    return _with_offsets(scenario, {r.id: s.offset_ms for r, s in zip(reversed(ordered), ordered)})


def moved_after_others(scenario: Scenario, request_id: str, latency_s: dict[str, float]) -> Scenario:
    """Request `request_id` sent only once every other request should have ended."""
    end = max(interval_ms(r, latency_s)[1] for r in scenario.requests if r.id != request_id)
    offsets = {r.id: r.offset_ms for r in scenario.requests}
    offsets[request_id] = end + PAD_MS
    return _with_offsets(scenario, offsets)


async def sequentialize(problem: Problem) -> None:
    """One request after another, with room for each to finish."""
    current = problem.current
    if overlapping_pairs(current, problem.latency_s):
        gap = 1.5 * _latency_ms(problem, [r.id for r in current.requests]) + PAD_MS
        await problem.consider(sequentialized(current, gap))


async def spread_burst(problem: Problem) -> None:
    """Requests that start together start a little apart instead (still overlapping),
    which makes the start order explicit."""
    current = problem.current
    offsets: dict[str, float] = {}
    bumps: dict[float, int] = {}
    for r in in_order(current):
        k = bumps.get(r.offset_ms, 0)
        bumps[r.offset_ms] = k + 1
        offsets[r.id] = r.offset_ms + k * STAGGER_FRACTION * _latency_ms(problem, [r.id])
    if any(offsets[r.id] != r.offset_ms for r in current.requests):
        await problem.consider(_with_offsets(current, offsets))


async def lower_concurrency(problem: Problem) -> None:
    """Move one overlapping request at a time out of the crowd, latest first."""
    progress = True
    while progress:
        progress = False
        pairs = overlapping_pairs(problem.current, problem.latency_s)
        crowded = {i for pair in pairs for i in pair}
        for r in reversed(in_order(problem.current)):
            if r.id in crowded and await problem.consider(
                    moved_after_others(problem.current, r.id, problem.latency_s)):
                progress = True
                break


async def probe_order(problem: Problem) -> None:
    """Replay the reversed start order once (judged like a candidate), so the note
    can say whether the order matters. Not a simplification: `current` stays."""
    current = problem.current
    if len(current.requests) > 1 and len({r.offset_ms for r in current.requests}) > 1:
        await problem.probe(reversed_order(current))


def schedule_note(problem: Problem) -> str:
    """What the final schedule needs, from verdicts already measured (no replays)."""
    s = problem.current
    order = in_order(s)
    if len(order) == 1:
        return "a single request: no schedule involved"
    starts = ", ".join(f"{r.id}@{r.offset_ms:g}ms" for r in order)
    pairs = overlapping_pairs(s, problem.latency_s)
    parts: list[str] = []
    if pairs:
        parts.append("overlapping: " + ", ".join(f"{a}+{b}" for a, b in pairs) + f" (starts {starts})")
        gap = 1.5 * _latency_ms(problem, [r.id for r in order]) + PAD_MS
        if problem.verdict(sequentialized(s, gap)) is False:
            parts.append("one after another it does not reproduce, so they must overlap")
        alone = [r.id for r in order
                 if problem.verdict(moved_after_others(s, r.id, problem.latency_s)) is False]
        if alone:
            parts.append("moved after the others it does not reproduce: " + ", ".join(alone))
    else:
        parts.append(f"one after another, none overlapping (starts {starts})")
    flipped = problem.verdict(reversed_order(s))
    if flipped is False:
        parts.append(f"reversed order does not reproduce: {' before '.join(r.id for r in order)}")
    elif flipped is True:
        parts.append("reversed order also reproduces: the order does not matter")
    return "; ".join(parts)
