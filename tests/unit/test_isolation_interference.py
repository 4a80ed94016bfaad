"""The interference oracle's pure parts: latency from a trace, the slowdown rule."""

from __future__ import annotations

import json

import pytest

from fuzz.isolation.interference import (AloneLatency, LatencySample, SlowdownRule,
                                         judge_slowdown, latency_sample, slowdown_failure)
from fuzz.isolation.scenarios import probe_request, request_key
from fuzz.isolation.suspects import interference_suspects
from fuzz.model import RequestSpec, RequestTrace, Scenario, Trace

STREAM = probe_request("V", "victim", stream=True)
PLAIN = probe_request("V", "victim")


def chunk(content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def stream_trace(token_times: list[float], *, sent: float = 1.0, rid: str = "V") -> RequestTrace:
    events = [chunk("")] + [chunk(f" t{i}") for i in range(len(token_times))] \
        + [chunk(None, "stop"), "[DONE]"]
    times = [sent + 0.001] + token_times + [token_times[-1] + 0.001] * 2
    return RequestTrace(id=rid, sent_s=sent, status=200, first_byte_s=sent + 0.001,
                        events=tuple(events), chunk_times_s=tuple(times), end_s=times[-1])


def test_latency_of_a_stream() -> None:
    s = latency_sample(STREAM, stream_trace([1.1, 1.12, 1.14, 1.16]))
    assert s is not None and s.tokens == 4
    assert s.ttft_s == pytest.approx(0.1)  # the role chunk is not a token
    assert s.tpot_s == pytest.approx(0.02)
    assert s.e2e_s == pytest.approx(0.161)


def test_latency_of_a_body_and_of_failures() -> None:
    rt = RequestTrace(id="V", sent_s=0.5, status=200, end_s=0.8, body="{}")
    assert latency_sample(PLAIN, rt) == LatencySample(None, None, pytest.approx(0.3))
    assert latency_sample(PLAIN, RequestTrace(id="V", sent_s=0.0, status=500, end_s=1.0)) is None
    assert latency_sample(PLAIN, RequestTrace(id="V", sent_s=0.0, deadline="total")) is None
    one = latency_sample(STREAM, stream_trace([1.2]))
    assert one is not None and one.tpot_s is None and one.ttft_s == pytest.approx(0.2)


ALONE = [LatencySample(0.02, 0.003, 0.07, 16), LatencySample(0.03, 0.004, 0.09, 16),
         LatencySample(0.025, 0.0035, 0.08, 16)]


def test_judge_slowdown() -> None:
    assert judge_slowdown(ALONE, ALONE) is None
    stalled = [LatencySample(0.65, 0.0035, 0.7, 16)]
    s = judge_slowdown(ALONE, stalled, request_id="V")
    assert s is not None and s.metric == "ttft_s" and s.ratio == pytest.approx(26.0)
    assert s.runs == 1 and "26.0x" in s.describe() and "time to first token" in s.describe()
    # slower, but not by the factor
    assert judge_slowdown(ALONE, [LatencySample(0.1, 0.004, 0.15, 16)]) is None
    # by the factor, but not above the absolute floor: milliseconds are noise
    assert judge_slowdown(ALONE, [LatencySample(0.2, 0.003, 0.09, 16)],
                          SlowdownRule(min_excess_s=0.5)) is None
    # the median decides, so one slow repeat of three is not a slowdown
    assert judge_slowdown(ALONE, stalled + ALONE[:2]) is None
    assert judge_slowdown(ALONE, stalled * 2 + ALONE[:1]) is not None


def test_a_burst_alone_counts_at_the_timer_resolution() -> None:
    burst = [LatencySample(0.048, 0.0, 0.051, 16)] * 3  # all tokens in one network read
    rule = SlowdownRule(min_excess_tpot_s=0.01)
    s = judge_slowdown(burst, [LatencySample(0.05, 0.012, 0.23, 16)], rule)
    assert s is not None and s.metric == "tpot_s" and s.ratio == pytest.approx(12.0)
    assert judge_slowdown(burst, [LatencySample(0.05, 0.004, 0.11, 16)], rule) is None


def test_decode_slowdown_and_missing_metrics() -> None:
    s = judge_slowdown(ALONE, [LatencySample(0.03, 0.05, 0.8, 16)])
    assert s is not None and s.metric == "tpot_s"  # the worst ratio wins
    assert judge_slowdown([LatencySample(None, None, 0.1)], [LatencySample(None, None, 1.0)]
                          ).metric == "e2e_s"
    assert judge_slowdown([LatencySample(None, None, None)], ALONE) is None


def test_rule_validation_and_failure() -> None:
    with pytest.raises(ValueError):
        SlowdownRule(factor=1.0)
    s = judge_slowdown(ALONE, [LatencySample(0.65, 0.0035, 0.7, 16)], request_id="V")
    f = slowdown_failure(s)
    assert f.kind == "interference_slowdown" and f.request_id == "V"
    assert f.signature == ("interference_slowdown|200|a victim request was slowed far beyond "
                           "its calibrated alone latency")
    assert f.evidence["slowdown"]["ratio"] == pytest.approx(26.0)
    json.dumps(f.to_json())


def test_alone_latency_round_trip() -> None:
    alone = AloneLatency(key="k", samples=tuple(ALONE))
    assert alone.median("ttft_s") == pytest.approx(0.025)
    assert AloneLatency.from_json(json.loads(json.dumps(alone.to_json()))) == alone


def test_interference_suspects_find_victims_by_request_key() -> None:
    neighbour = RequestSpec(id="N", body={"messages": [], "max_tokens": 256})
    scenario = Scenario(requests=(STREAM, neighbour))
    alone = AloneLatency(key=request_key(STREAM), samples=tuple(ALONE))
    slow = Trace(requests=(stream_trace([1.7, 1.71, 1.72]),
                           RequestTrace(id="N", sent_s=0.0, status=200, end_s=2.0, body="{}")))
    found = interference_suspects(scenario, slow, {alone.key: alone})
    assert [(f.kind, f.request_id) for f in found] == [("interference_slowdown", "V")]
    fast = Trace(requests=(stream_trace([1.02, 1.023, 1.026]),))
    assert interference_suspects(scenario, fast, {alone.key: alone}) == []
    assert interference_suspects(scenario, slow, {}) == []  # nobody calibrated


# -- the fairness guard: slowed relative to the neighbours of the same run ------------------

GUARD = SlowdownRule(neighbour_factor=2.0)
STALLED = LatencySample(0.5, 0.0035, 0.55, 16)  # 20x its alone time to first token


def body(e2e: float) -> LatencySample:
    return LatencySample(None, None, e2e)


def test_a_victim_as_slow_as_its_neighbours_is_batch_cost_not_starvation() -> None:
    everyone_slow = [(body(0.45), body(0.6), LatencySample(0.5, 0.01, 0.9, 40), body(0.5))]
    assert judge_slowdown(ALONE, [STALLED], GUARD, neighbours=everyone_slow) is None
    # the rule without the guard (and the guard without neighbours) still calls it
    assert judge_slowdown(ALONE, [STALLED], neighbours=everyone_slow) is not None
    assert judge_slowdown(ALONE, [STALLED], GUARD) is not None
    assert judge_slowdown(ALONE, [STALLED], GUARD, neighbours=[()]) is not None


def test_a_victim_slowed_while_its_neighbours_answered_quickly_is_starved() -> None:
    served = (body(0.03), LatencySample(0.02, 0.003, 0.04, 8), body(0.05))
    s = judge_slowdown(ALONE, [STALLED], GUARD, request_id="V", neighbours=[served])
    assert s is not None and s.metric == "ttft_s" and s.ratio == pytest.approx(20.0)
    assert s.neighbour_ratio == pytest.approx(0.5 / 0.03) and s.neighbour_factor == 2.0
    assert "took 16.7x as long as its neighbours (limit 2x)" in s.describe()
    # over replays the median of the per-run ratios decides
    runs = [STALLED] * 3
    assert judge_slowdown(ALONE, runs, GUARD, neighbours=[served, (body(0.5),), (body(0.6),)]
                          ) is None
    assert judge_slowdown(ALONE, runs, GUARD, neighbours=[served, served, (body(0.6),)])


def test_a_stall_mid_stream_is_compared_end_to_end() -> None:
    """A victim whose first token came at once but whose tokens then stalled: its
    end-to-end latency is set against the neighbours' (its wait is not slow)."""
    stalled = [LatencySample(0.03, 0.06, 1.0, 16)]
    assert judge_slowdown(ALONE, stalled, GUARD, neighbours=[(body(0.1), body(0.12))]).metric \
        in ("tpot_s", "e2e_s")
    assert judge_slowdown(ALONE, stalled, GUARD, neighbours=[(body(0.9), body(1.2))]) is None


def body_trace(rid: str, sent: float, end: float, status: int = 200) -> RequestTrace:
    return RequestTrace(id=rid, sent_s=sent, status=status, end_s=end, body="{}")


def neighbour(rid: str) -> RequestSpec:
    return RequestSpec(id=rid, body={"messages": [], "max_tokens": 256})


def test_interference_suspects_compare_the_victim_with_its_neighbours() -> None:
    scenario = Scenario(requests=(STREAM, *(neighbour(f"N{i}") for i in range(4))))
    alone = AloneLatency(key=request_key(STREAM), samples=tuple(ALONE))
    victim = stream_trace([1.5, 1.51, 1.52])  # sent at 1.0, 20x its alone TTFT
    batch = Trace(requests=(victim, *(body_trace(f"N{i}", 1.0, 1.4 + 0.1 * i)
                                      for i in range(4))))
    starved = Trace(requests=(victim, *(body_trace(f"N{i}", 1.0, 1.05) for i in range(4))))
    assert interference_suspects(scenario, batch, {alone.key: alone}, GUARD) == []
    assert [f.request_id for f in interference_suspects(scenario, starved,
                                                        {alone.key: alone}, GUARD)] == ["V"]
    # without the guard the batch is a suspect too: what the guard is for
    assert interference_suspects(scenario, batch, {alone.key: alone}) != []
    # failed neighbours are not comparable: the rule decides alone
    failed = Trace(requests=(victim, *(body_trace(f"N{i}", 1.0, 1.45, 500) for i in range(4))))
    assert interference_suspects(scenario, failed, {alone.key: alone}, GUARD) != []


def test_who_counts_as_a_neighbour() -> None:
    specs = (PLAIN, *(neighbour(n) for n in ("early", "done", "within", "late", "failed")))
    trace = Trace(requests=(body_trace("V", 1.0, 3.0), body_trace("early", 0.2, 1.8),
                            body_trace("done", 0.0, 0.9),  # ended before the victim was sent
                            body_trace("within", 1.9, 2.0),
                            body_trace("late", 2.1, 2.2),  # sent after the window
                            body_trace("failed", 1.0, 1.2, 503)))
    got = GUARD.neighbours(Scenario(requests=specs), trace, "V")
    assert [n.e2e_s for n in got] == [pytest.approx(1.6), pytest.approx(0.1)]
    assert SlowdownRule().neighbours(Scenario(requests=specs), trace, "V") is None
    with pytest.raises(ValueError):
        SlowdownRule(neighbour_factor=0.5)


def test_a_rule_recorded_without_the_guard_loads_and_judges_as_before() -> None:
    from dataclasses import asdict

    from fuzz.isolation_record import JudgedBy
    old = {"factor": 5.0, "min_excess_s": 0.25, "min_excess_tpot_s": 0.02,
           "resolution_s": 0.001}
    rule = JudgedBy.from_json({"subjects": ["V"], "rule": old}).rule
    assert rule == SlowdownRule() and rule.neighbour_factor is None
    assert judge_slowdown(ALONE, [STALLED], rule, neighbours=[(body(0.5), body(0.6))]) \
        is not None
    new = JudgedBy.from_json(json.loads(json.dumps({"rule": asdict(GUARD)}))).rule
    assert new == GUARD
