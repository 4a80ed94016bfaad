"""Reading greedy answers with logprobs from traces, margins, and alignment."""

from __future__ import annotations

import json
import math

import pytest

from fuzz.isolation.tokens import TokenAnswer, TokenStep, align, token_answer
from fuzz.model import RequestSpec, RequestTrace


def entry(token: str, lp: float, top: list[tuple[str, float]]) -> dict:
    return {"token": token, "logprob": lp, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": v} for t, v in top]}


ENTRIES = [entry(" a", -0.1, [(" a", -0.1), (" b", -2.1)]),
           entry(" c", -0.5, [(" d", -0.55), (" c", -0.5)])]  # top list out of order


def body_trace(doc: object, status: int = 200) -> RequestTrace:
    return RequestTrace(id="r", sent_s=0.0, status=status, end_s=1.0, body=json.dumps(doc))


def stream_trace(docs: list) -> RequestTrace:
    events = tuple(json.dumps(d) for d in docs) + ("[DONE]",)
    return RequestTrace(id="r", sent_s=0.0, status=200, end_s=1.0, events=events,
                        chunk_times_s=tuple(0.1 * i for i in range(len(events))))


SPEC = RequestSpec(id="r", body={"messages": []})
STREAM = RequestSpec(id="r", body={"messages": [], "stream": True})


def test_reads_a_json_body() -> None:
    doc = {"choices": [{"index": 0, "message": {"content": " a c"}, "finish_reason": "length",
                        "logprobs": {"content": ENTRIES}}]}
    answer = token_answer(SPEC, body_trace(doc))
    assert answer is not None and answer.tokens == (" a", " c")
    assert answer.text == " a c" and answer.finish_reason == "length"
    assert answer.steps[1].top == ((" c", -0.5), (" d", -0.55))  # sorted best first
    assert answer.steps[0].margin == pytest.approx(2.0)
    assert answer.steps[1].margin == pytest.approx(0.05)


def test_reads_a_stream() -> None:
    def chunk(delta: dict, lp: list | None, finish: str | None = None) -> dict:
        ch: dict = {"index": 0, "delta": delta, "finish_reason": finish}
        if lp is not None:
            ch["logprobs"] = {"content": lp}
        return {"choices": [ch]}
    docs = [chunk({"role": "assistant", "content": ""}, None),
            chunk({"content": " a"}, ENTRIES[:1]), chunk({"content": " c"}, ENTRIES[1:]),
            chunk({}, None, "stop"), {"choices": [], "usage": {}}]
    answer = token_answer(STREAM, stream_trace(docs))
    assert answer is not None and answer.tokens == (" a", " c")
    assert answer.text == " a c" and answer.finish_reason == "stop"


@pytest.mark.parametrize("trace", [
    body_trace({"error": {"message": "no"}}, status=500),
    body_trace({"choices": [{"index": 0, "message": {"content": "text"}}]}),  # no logprobs
    body_trace({"choices": [{"index": 0, "message": {"content": "x"},
                             "logprobs": {"content": [{"token": 1, "logprob": "x"}]}}]}),
    RequestTrace(id="r", sent_s=0.0, status=200, body="{", end_s=1.0),
    RequestTrace(id="r", sent_s=0.0, status=200, body="{}", deadline="total"),
])
def test_nothing_comparable_gives_none(trace: RequestTrace) -> None:
    assert token_answer(SPEC, trace) is None


def test_an_empty_answer_is_an_answer() -> None:
    doc = {"choices": [{"index": 0, "message": {"content": ""}, "finish_reason": "stop",
                        "logprobs": None}]}
    assert token_answer(SPEC, body_trace(doc)) == TokenAnswer((), "", "stop")


def test_margin_without_a_runner_up_is_bounded_by_the_chosen_probability() -> None:
    step = TokenStep(" a", math.log(0.9))
    assert step.margin == pytest.approx(math.log(0.9) - math.log(0.1))
    assert TokenStep(" a", 0.0).margin == math.inf
    assert TokenStep(" a", math.log(0.3)).margin == 0.0  # the rest may hold a better token
    # a chosen token that was not the top one led nothing
    assert TokenStep(" b", -1.0, ((" a", -0.5), (" b", -1.0))).margin == 0.0
    # a twin with the same text is a rival
    assert TokenStep(" a", -0.5, ((" a", -0.5), (" a", -0.6))).margin == pytest.approx(0.1)


def answer(tokens: str, lps: list[float] | None = None, lead: float = 1.0,
           finish: str = "length") -> TokenAnswer:
    words = tokens.split()
    lps = lps or [-0.1] * len(words)
    return TokenAnswer(tuple(TokenStep(w, lp, ((w, lp), ("zz", lp - lead)))
                             for w, lp in zip(words, lps)), " ".join(words), finish)


def test_align() -> None:
    ref = answer("a b c d", [-0.1, -0.2, -0.3, -0.4])
    same = align(ref, answer("a b c d", [-0.1, -0.25, -0.3, -0.4]))
    assert same.position is None and same.max_logprob_delta == pytest.approx(0.05)
    flip = align(ref, answer("a b x d", [-0.2, -0.2, -0.3, -0.4]))
    assert (flip.position, flip.ref_margin) == (2, pytest.approx(1.0))
    assert flip.max_logprob_delta == pytest.approx(0.1)
    assert align(ref, answer("a b")).position == 2  # ended early: the ref's lead applies
    longer = align(answer("a b"), ref)
    assert longer.position == 2 and longer.ref_margin is None  # the ref ended: unknown


def test_json_round_trip() -> None:
    a = answer("a b", lead=0.5)
    assert TokenAnswer.from_json(json.loads(json.dumps(a.to_json()))) == a


def test_lead_over() -> None:
    step = TokenStep("a", -1.0, (("a", -1.0), ("b", -1.01), ("c", -3.0)))
    assert step.lead_over("a") == 0.0
    assert step.lead_over("b") == pytest.approx(0.01)
    assert step.lead_over("c") == pytest.approx(2.0)
    assert step.lead_over("zz") == pytest.approx(2.0)  # unlisted: at least the last listed
    bare = TokenStep("a", math.log(0.9))
    assert bare.lead_over("zz") == pytest.approx(bare.margin)
    flip = align(TokenAnswer((step,)), TokenAnswer((TokenStep("c", -0.5),)))
    assert flip.ref_margin == pytest.approx(0.01) and flip.ref_lead == pytest.approx(2.0)
