"""The checks repro.py runs for isolation, interference and server-log bundles restate
oracles in plain standard-library Python; here they are held to those oracles (the
differential judgement, the answer and canary leaks, the slowdown rule, the log's
regrouping into events), on generated answers and on vLLM's own log lines. Also what
a bundle records about how such a finding was judged (`fuzz.isolation_record`), and
that the checks judge nothing without the alone runs or the log."""

from __future__ import annotations

import json
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings
from test_server_log import (ASGI, ENGINE_DEAD, HERMES_TRACEBACK, INFO_LINES, SERVING,
                             WARNINGS, WORKER_DOUBLE)

from fuzz import repro_checks as rc
from fuzz.isolation import (AloneLatency, LatencySample, NoiseModel, SlowdownRule, TokenAnswer,
                            TokenStep, judge_slowdown, latency_sample, token_answer)
from fuzz.isolation.differential import agrees, first_divergence
from fuzz.isolation_record import KEY, JudgedBy, judged_by, needs_alone, with_judged_by
from fuzz.model import Failure, RequestSpec, RequestTrace
from fuzz.repro_template import check_data
from fuzz.server_log import classify

WORDS = [" a", " b", " c", " d", " e"]


@st.composite
def answers(draw: Any, length: int | None = None) -> TokenAnswer:
    """A greedy answer over a five-token vocabulary: each position a top list (best
    first) and a chosen token, usually the top one."""
    n = draw(st.integers(0, 6)) if length is None else length
    steps = []
    for _ in range(n):
        order = draw(st.permutations(WORDS))
        lps, lp = [], -draw(st.floats(0.01, 1.0))
        for _ in order:
            lps.append(lp)
            lp -= draw(st.sampled_from([0.001, 0.02, 0.05, 0.3, 2.0]))
        top = tuple(zip(order, lps))[:draw(st.integers(0, 5))]
        pick = 0 if draw(st.integers(0, 4)) else draw(st.integers(0, 4))
        steps.append(TokenStep(order[pick], lps[pick], top))
    return TokenAnswer(tuple(steps), "".join(s.token for s in steps), "length")


@st.composite
def related(draw: Any) -> tuple[list[TokenAnswer], TokenAnswer]:
    """Alone answers and an answer in the scenario that often shares a prefix."""
    alone = draw(st.lists(answers(), min_size=0, max_size=3))
    got = draw(answers())
    if alone and draw(st.booleans()):
        keep = draw(st.integers(0, len(alone[0].steps)))
        got = TokenAnswer(alone[0].steps[:keep] + got.steps, "", "length")
    return alone, got


def _plain(answer: TokenAnswer) -> dict[str, Any]:
    return {"steps": [[s.token, s.logprob, [list(t) for t in s.top]] for s in answer.steps],
            "text": answer.text, "finish": answer.finish_reason}


@settings(max_examples=300, deadline=None)
@given(related(), st.sampled_from([0.0, 0.01, 0.1, 1.0, 5.0]))
def test_divergence_agrees_with_the_differential_oracle(case: Any, threshold: float) -> None:
    alone, got = case
    oracle = first_divergence(alone, got, NoiseModel(margin_threshold=threshold))
    port = rc.divergence([_plain(a) for a in alone], _plain(got), threshold)
    assert (oracle is None) == (port is None)
    if oracle is not None:
        assert (port["position"], port["alone_token"], port["got_token"]) == (
            oracle.position, oracle.alone_token, oracle.got_token)
        assert math.isclose(port["lead"], oracle.lead) and math.isclose(port["margin"],
                                                                        oracle.margin)
        assert port["alone_continuation"] == oracle.alone_continuation
        assert port["got_continuation"] == oracle.got_continuation


@settings(max_examples=300, deadline=None)
@given(related(), st.sampled_from([0.0, 0.1, 5.0]), st.integers(1, 4))
def test_agrees_is_the_oracles(case: Any, threshold: float, min_tokens: int) -> None:
    alone, got = case
    for ref in alone:
        assert rc.agrees(_plain(ref), _plain(got), threshold, min_tokens) == agrees(
            ref, got, threshold, min_tokens=min_tokens)


def _wire(answer: TokenAnswer, stream: bool) -> tuple[dict[str, Any], RequestTrace]:
    """The answer as a server sends it, and the request that asked for it."""
    entries = [{"token": s.token, "logprob": s.logprob,
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in s.top]}
               for s in answer.steps]
    spec = RequestSpec("p", {"messages": [], "temperature": 0, "logprobs": True,
                             **({"stream": True} if stream else {})})
    if not stream:
        body = {"choices": [{"index": 0, "finish_reason": "length",
                             "message": {"content": answer.text},
                             "logprobs": {"content": entries}}]}
        return spec.to_json(), RequestTrace("p", 0.0, 200, body=json.dumps(body), end_s=1.0)
    events = [json.dumps({"choices": [{"index": 0, "delta": {"content": e["token"]},
                                        "logprobs": {"content": [e]}}]}) for e in entries]
    events.append(json.dumps({"choices": [{"index": 0, "delta": {},
                                           "finish_reason": "length"}]}))
    return spec.to_json(), RequestTrace("p", 0.0, 200, events=tuple(events) + ("[DONE]",),
                                        chunk_times_s=tuple(0.1 * i for i in range(
                                            len(events) + 1)), end_s=1.0)


@settings(max_examples=100, deadline=None)
@given(answers(), st.booleans())
def test_answers_are_read_as_the_oracle_reads_them(answer: TokenAnswer, stream: bool) -> None:
    from fuzz.issue import recorded_result

    req, rt = _wire(answer, stream)
    oracle = token_answer(RequestSpec.from_json(req), rt)
    port = rc.token_answer_of(req, recorded_result(rt))
    assert (oracle is None) == (port is None)
    if oracle is not None:
        assert port == _plain(oracle)


def test_a_200_without_logprobs_has_no_comparable_answer() -> None:
    body = {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}
    res = {"status": 200, "body": json.dumps(body), "events": None}
    assert rc.token_answer_of({"id": "p", "body": {}}, res) is None
    assert rc.no_answer_because(res) == "HTTP 200 without logprobs"


samples = st.builds(LatencySample, st.one_of(st.none(), st.floats(0.0, 2.0)),
                    st.one_of(st.none(), st.floats(0.0, 0.2)), st.floats(0.0, 3.0))


@settings(max_examples=400, deadline=None)
@given(st.lists(samples, min_size=1, max_size=4), st.lists(samples, min_size=1, max_size=3),
       st.sampled_from([1.5, 5.0]), st.sampled_from([None, 1.0, 2.0]),
       st.lists(st.one_of(st.none(), st.lists(samples, max_size=3)), max_size=3))
def test_slowdown_is_the_interference_rule(alone: list[LatencySample],
                                           observed: list[LatencySample], factor: float,
                                           guard: float | None,
                                           beside: list[list[LatencySample] | None]) -> None:
    """With and without the fairness guard (the neighbours of each observed run)."""
    rule = SlowdownRule(factor=factor, neighbour_factor=guard)
    oracle = judge_slowdown(alone, observed, rule, neighbours=beside)
    port = rc.slowdown([s.to_json() for s in alone], [s.to_json() for s in observed],
                       {"factor": factor, "min_excess_s": rule.min_excess_s,
                        "min_excess_tpot_s": rule.min_excess_tpot_s,
                        "resolution_s": rule.resolution_s, "neighbour_factor": guard},
                       [None if b is None else [s.to_json() for s in b] for b in beside])
    assert (oracle is None) == (port is None)
    if oracle is not None:
        assert port["metric"] == oracle.metric and math.isclose(port["ratio"], oracle.ratio)
        assert (port["neighbour_ratio"] is None) == (oracle.neighbour_ratio is None)
        if oracle.neighbour_ratio is not None:
            assert math.isclose(port["neighbour_ratio"], oracle.neighbour_ratio)


@st.composite
def timed_runs(draw: Any) -> tuple[Any, Any]:
    """A scenario's requests with overlapping send times, some streamed, some failed."""
    from fuzz.model import Scenario, Trace

    specs, traces = [], []
    for i in range(draw(st.integers(1, 5))):
        answer, stream = draw(answers(length=draw(st.integers(0, 3)))), draw(st.booleans())
        req, rt = _wire(answer, stream)
        # quarter seconds: exact in binary, so the window's edges are hit exactly
        sent, took = (draw(st.integers(0, 12)) / 4 for _ in range(2))
        rt = RequestTrace(f"r{i}", sent, draw(st.sampled_from([200, 200, 500])), body=rt.body,
                          events=rt.events, end_s=sent + took,
                          chunk_times_s=tuple(sent + t for t in rt.chunk_times_s))
        specs.append(RequestSpec.from_json({**req, "id": f"r{i}"}))
        traces.append(rt)
    return Scenario(tuple(specs)), Trace(tuple(traces))


@settings(max_examples=200, deadline=None)
@given(timed_runs(), st.sampled_from([0.0, 0.5, 1.0]))
def test_neighbours_are_the_oracles_neighbours(run: Any, window: float) -> None:
    """repro.py picks the victim's neighbours from its own send times as the oracle
    picks them from the trace."""
    from fuzz.isolation.interference import neighbour_samples
    from fuzz.issue import recorded_result

    scenario, trace = run
    pairs = [(spec.to_json(), recorded_result(rt)) for spec, rt in zip(scenario.requests,
                                                                       trace.requests)]
    oracle = neighbour_samples(scenario, trace, "r0", window)
    port = rc.neighbours_of(pairs, "r0", window)
    assert len(port) == len(oracle)
    for mine, theirs in zip(port, oracle):
        for metric in ("ttft_s", "tpot_s", "e2e_s"):
            assert (mine[metric] is None) == (theirs.get(metric) is None)
            if mine[metric] is not None:
                assert math.isclose(mine[metric], theirs.get(metric), abs_tol=1e-9)


def test_latency_is_timed_as_the_oracle_times_it() -> None:
    from fuzz.issue import recorded_result

    answer = TokenAnswer(tuple(TokenStep(w, -0.1) for w in WORDS), "", "length")
    req, rt = _wire(answer, stream=True)
    oracle = latency_sample(RequestSpec.from_json(req), rt)
    res = {**recorded_result(rt), "events": list(rt.events),
           "event_times": [t - rt.sent_s for t in rt.chunk_times_s], "took_s": rt.end_s}
    port = rc.latency_of(req, res)
    assert port == {"ttft_s": oracle.ttft_s, "tpot_s": oracle.tpot_s, "e2e_s": oracle.e2e_s}


LOGS = {
    "interleaved": INFO_LINES[:2] + HERMES_TRACEBACK[:5] + INFO_LINES[2:] + HERMES_TRACEBACK[5:],
    "same_second": [SERVING + m for m in ENGINE_DEAD + ENGINE_DEAD],
    "two_tracebacks": WORKER_DOUBLE,
    "asgi": ASGI,
    "bare": ASGI[1:5],
    "warnings": WARNINGS + ["Loading shards: 100%"] + INFO_LINES,
    "mixed": WARNINGS[:3] + ASGI + WORKER_DOUBLE + INFO_LINES + HERMES_TRACEBACK,
}


def test_log_events_are_regrouped_as_the_server_log_reads_them() -> None:
    for name, lines in LOGS.items():
        oracle = [(e.level, e.origin, e.header, list(e.exceptions)) for e in classify(lines)]
        port = [(e["level"], e["origin"], e["header"], e["exceptions"])
                for e in rc.log_events(lines)]
        assert port == oracle, name


def _log_check(lines: list[str] | None, status: int = 200) -> list[tuple[str, ...]]:
    after = {} if lines is None else {"log_lines": lines}
    pairs = [({"id": "r0", "body": {}}, {"status": status, "body": "{}"})]
    data = {"origin": "hermes_tool_parser.py",
            "header": "Error in extracting tool call from response.",
            "exception": "json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column "
                         "12 (char 11)"}
    return rc.check_server_log(pairs, after, {}, data)


def test_the_server_log_check() -> None:
    [outcome] = _log_check(HERMES_TRACEBACK + INFO_LINES)
    assert outcome[1] == "fail" and outcome[3].startswith(
        "hermes_tool_parser.py: Error in extracting tool call from response. -> json.")
    assert outcome[3].endswith("(as recorded)")
    [other] = _log_check(ASGI)
    assert other[1] == "fail" and not other[3].endswith("(as recorded)")
    assert _log_check(WARNINGS + INFO_LINES)[0][1] == "pass"
    [none] = _log_check(None)
    assert none[1] == "unjudged" and "needs the server log: --server-log FILE" in none[3]
    assert "did not grow" in _log_check([])[0][3]
    assert _log_check(HERMES_TRACEBACK, status=500)[0][1] == "unjudged"


# --- what a bundle records, and the data its repro.py embeds ------------------------------


def _divergence(threshold: float = 0.25) -> Failure:
    return Failure("isolation_divergence", "isolation_divergence|200|m|text_probe", "m", "p",
                   {"divergence": {"request_id": "p", "threshold": threshold}})


def test_judged_by_round_trips_and_is_read_back_from_the_evidence() -> None:
    noise = NoiseModel(margin_threshold=0.3, max_logprob_delta=0.05)
    rule = SlowdownRule(factor=3.0, min_excess_s=0.1)
    alone = AloneLatency("k", (LatencySample(0.1, 0.01, 0.3, 4),))
    judged = JudgedBy(("p", "q"), noise, rule, alone, alone_runs=3)
    assert JudgedBy.from_json(json.loads(json.dumps(judged.to_json()))) == judged
    failure = with_judged_by(_divergence(), judged)
    assert failure.signature == _divergence().signature and KEY in failure.evidence
    assert judged_by(failure) == judged


def test_older_evidence_gives_what_it_can() -> None:
    old = judged_by(_divergence(0.25))
    assert old.subjects == ("p",) and old.noise == NoiseModel(margin_threshold=0.25)
    slow = judged_by(Failure("interference_slowdown", "s", "m", "v", {
        "slowdown": {"factor": 4.0, "resolution_s": 0.002},
        "alone_calibrated": [{"ttft_s": 0.1, "tpot_s": None, "e2e_s": 0.2}]}))
    assert slow.rule == SlowdownRule(factor=4.0, resolution_s=0.002)
    assert slow.alone is not None and slow.alone.samples[0].ttft_s == 0.1
    leak = Failure("cross_request_leak", "l", "m", "x", {"request": "x", "source": "y"})
    assert judged_by(leak).subjects == ("x", "y") and judged_by(leak).noise is None
    assert needs_alone(leak) and needs_alone(_divergence())
    canary = Failure("cross_request_leak", "l", "m", "x", {"canary": "c", "sources": ["y"]})
    assert not needs_alone(canary)
    broken = Failure("isolation_divergence", "d", "m", "p", {KEY: {"noise": {"bogus": 1}}})
    assert judged_by(broken).subjects == ("p",)


def test_check_data_embeds_finite_numbers_only() -> None:
    judged = JudgedBy(("p",), NoiseModel(margin_threshold=math.inf))
    data = check_data("isolation_divergence",
                      dict(with_judged_by(_divergence(), judged).evidence), "p")
    assert data["threshold"] is None and data["subjects"] == ["p"] and data["needs_alone"]
    data = check_data("interference_slowdown", {"slowdown": {
        "request_id": "v", "factor": 5.0, "metric": "ttft_s", "ratio": math.inf}})
    assert data["victim"] == "v" and data["ratio"] is None and data["rule"]["factor"] == 5.0


def test_the_checks_judge_nothing_without_the_runs_alone() -> None:
    """ISSUE.md runs the check on the recorded run, which has no alone runs."""
    probe = {"id": "p", "body": {"temperature": 0, "logprobs": True, "messages": []}}
    pairs = [(probe, {"status": 200, "body": "{}"})]
    data = {"subjects": ["p"], "needs_alone": True, "threshold": 0.1}
    outcomes = rc.check_isolation(pairs, {}, {"request_id": "p"}, data)
    assert rc.verdict(outcomes, "p") == "unjudged"
    assert "it was not run alone" in outcomes[0][3]
    rule = {"factor": 5.0, "min_excess_s": 0.25, "min_excess_tpot_s": 0.02, "resolution_s": 0.001}
    victim = {"id": "v", "body": {"stream": True}}
    outcomes = rc.check_interference([(victim, {"status": 200, "events": [], "took_s": 1.0})],
                                     {}, {}, {"victim": "v", "rule": rule})
    assert rc.verdict(outcomes, "v") == "unjudged"
    assert rc.alone_requests([probe, {"id": "q", "body": {}}], {}, data) == ["p"]
    assert rc.alone_requests([probe], {}, {"victim": "v"}) == ["v"]
