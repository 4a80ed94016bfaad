"""The differential oracle and the leak checks, on hand-built answers."""

from __future__ import annotations

import json

import pytest
from test_isolation_tokens import answer

from fuzz.isolation.differential import agrees, divergence_failure, first_divergence
from fuzz.isolation.leaks import (answer_leaks, canary, no_foreign_canary,
                                  planted_canaries)
from fuzz.isolation.noise import NoiseModel
from fuzz.isolation.scenarios import plant_canary, probe_request
from fuzz.isolation.suspects import isolation_suspects
from fuzz.model import Media, RequestSpec, RequestTrace, Scenario, Trace

NOISE = NoiseModel(margin_threshold=0.5)


def test_a_decisive_flip_is_a_divergence() -> None:
    alone = answer("the cat sat on the mat", lead=2.0)
    got = answer("the cat ran off the mat")
    d = first_divergence([alone], got, NOISE, request_id="r")
    assert d is not None
    assert (d.position, d.alone_token, d.got_token) == (2, "sat", "ran")
    assert d.margin == 2.0 and d.threshold == 0.5
    assert d.context == "thecat" and d.alone_continuation.startswith("sat")
    assert d.got_continuation.startswith("ran")
    f = divergence_failure(d)
    assert f.kind == "isolation_divergence" and f.request_id == "r"
    assert f.signature == ("isolation_divergence|200|greedy answer differs from the same "
                           "request run alone, beyond natural variance")
    assert "position 2" in f.message and "'sat'" in f.message and "'ran'" in f.message
    json.dumps(f.to_json())


def test_a_flip_to_a_token_far_down_the_alone_list_is_a_divergence() -> None:
    from fuzz.isolation.tokens import TokenAnswer, TokenStep
    top = (("a", -1.0), ("b", -1.01), ("c", -3.0))
    alone = TokenAnswer((TokenStep("a", -1.0, top), TokenStep("x", -0.1)))
    near = TokenAnswer((TokenStep("b", -1.0), TokenStep("y", -0.1)))
    assert first_divergence([alone], near, NOISE) is None  # the runner-up: a near tie
    for far in ("c", "unlisted"):
        d = first_divergence([alone], TokenAnswer((TokenStep(far, -0.2),)), NOISE)
        assert d is not None and d.margin == pytest.approx(0.01)
        assert d.lead == pytest.approx(2.0) and "trailed by" in d.describe()
        assert d.lead_is_bound == (far == "unlisted")
        assert ("at least" in d.describe()) == (far == "unlisted")


def test_what_natural_variance_explains_is_not() -> None:
    assert first_divergence([answer("a b c", lead=0.3)], answer("a x y"), NOISE) is None
    assert first_divergence([answer("a b c")], answer("a b c"), NOISE) is None
    assert first_divergence([], answer("a b c"), NOISE) is None  # nothing to compare with
    # the alone answer ended first: its lead at that position is unknown
    assert first_divergence([answer("a b")], answer("a b c"), NOISE) is None


def test_any_alone_answer_can_explain_and_the_closest_is_reported() -> None:
    got = answer("a b c d")
    assert first_divergence([answer("x y z w", lead=3), answer("a b c d")], got, NOISE) is None
    d = first_divergence([answer("x y z w", lead=3), answer("a b q r", lead=3)], got, NOISE)
    assert d is not None and d.position == 2


def test_stopping_early_is_a_divergence() -> None:
    d = first_divergence([answer("a b c d", lead=3)], answer("a b", finish="stop"), NOISE)
    assert d is not None and d.position == 2 and d.got_token is None
    assert "the answer ended" in d.describe()


def test_agrees() -> None:
    assert agrees(answer("a b c d e"), answer("a b c d e"), 0.5, min_tokens=4)
    assert not agrees(answer("a b"), answer("a b"), 0.5, min_tokens=4)  # too short to tell
    assert agrees(answer("a b c d e", lead=0.1), answer("a b c d x"), 0.5, min_tokens=4)
    assert not agrees(answer("a b c d e", lead=0.1), answer("a x c d e"), 0.5, min_tokens=4)
    assert not agrees(answer("a b c d", lead=3), answer("a b c d x"), 0.5, min_tokens=4)


def scenario(*specs: RequestSpec, media: tuple[Media, ...] = ()) -> Scenario:
    return Scenario(requests=specs, media={m.sha256: m for m in media})


IMG_A, IMG_B = Media(b"image a", "image/png"), Media(b"image b", "image/png")
A = probe_request("A", "Describe.", images=[IMG_A.sha256])
B = probe_request("B", "Describe.", images=[IMG_B.sha256])
T = probe_request("T", "Describe.")
ALONE_A, ALONE_B = answer("a1 a2 a3 a4 a5", lead=3), answer("b1 b2 b3 b4 b5", lead=3)


def details(failures: list) -> list[tuple[str, str | None]]:
    return [(f.signature.rsplit("|", 1)[1], f.request_id) for f in failures]


def test_answers_swapped_between_two_requests() -> None:
    s = scenario(A, B, media=(IMG_A, IMG_B))
    leaks = answer_leaks(s, {"A": ALONE_B, "B": ALONE_A}, {"A": [ALONE_A], "B": [ALONE_B]}, NOISE)
    assert details(leaks) == [("answer_of_other_request", "A"), ("answer_of_other_request", "B")]
    assert leaks[0].evidence["source"] == "B"
    assert answer_leaks(s, {"A": ALONE_A, "B": ALONE_B},
                        {"A": [ALONE_A], "B": [ALONE_B]}, NOISE) == []


def test_different_images_same_answer() -> None:
    s = scenario(A, B, media=(IMG_A, IMG_B))
    leaks = answer_leaks(s, {"A": ALONE_A, "B": ALONE_A}, {"A": [ALONE_A], "B": [ALONE_B]}, NOISE)
    assert details(leaks) == [("same_answer_different_images", "B")]
    leaks = answer_leaks(s, {"A": ALONE_B, "B": ALONE_B}, {"A": [ALONE_A], "B": [ALONE_B]}, NOISE)
    assert details(leaks) == [("same_answer_different_images", "A")]  # A is the one that moved
    # without images, the same answer is "B answered what A answers alone"
    t2 = probe_request("T2", "Other.")
    leaks = answer_leaks(scenario(T, t2), {"T": ALONE_A, "T2": ALONE_A},
                         {"T": [ALONE_A], "T2": [ALONE_B]}, NOISE)
    assert details(leaks) == [("answer_of_other_request", "T2")]


def test_a_near_tie_flip_onto_another_answer_is_no_leak() -> None:
    # A tiny random model's answers are chains of the previous token: a flip at a
    # near-tie can land on the chain another request starts with.
    s = scenario(A, B, media=(IMG_A, IMG_B))
    tie_a = answer("a1 a2 a3 a4 a5", lead=0.1)
    assert answer_leaks(s, {"A": ALONE_B, "B": ALONE_B}, {"A": [tie_a], "B": [ALONE_B]},
                        NOISE) == []


def test_requests_that_answer_alike_alone_prove_nothing() -> None:
    s = scenario(A, B, media=(IMG_A, IMG_B))
    assert answer_leaks(s, {"A": ALONE_A, "B": ALONE_A},
                        {"A": [ALONE_A], "B": [ALONE_A]}, NOISE) == []
    short_a, short_b = answer("x y", lead=3), answer("z w", lead=3)
    assert answer_leaks(s, {"A": short_b, "B": short_a}, {"A": [short_a], "B": [short_b]},
                        NOISE) == []  # too short to tell a swap from chance


def reply(rid: str, text: str) -> RequestTrace:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}
    return RequestTrace(id=rid, sent_s=0.0, status=200, end_s=1.0, body=json.dumps(body))


def test_canaries() -> None:
    c1, c2 = canary(1), canary(2)
    assert c1 != c2 and canary(1) == c1 and len(c1) == len("vlfuzz-canary-") + 12
    a = plant_canary(A, c1)
    assert planted_canaries(a) == {c1} and planted_canaries(A) == set()
    s = scenario(a, B, T, media=(IMG_A, IMG_B))
    trace = Trace(requests=(reply("A", f"sure: {c1}"), reply("B", f"it is {c1}"),
                            reply("T", f"maybe {c2}")))
    leaks = no_foreign_canary(s, trace)
    assert details(leaks) == [("canary", "B"), ("canary", "T")]
    assert leaks[0].evidence["sources"] == ["A"] and "planted in A" in leaks[0].message
    assert leaks[1].evidence["sources"] == [] and "no request of this scenario" in leaks[1].message
    assert leaks[0].signature == leaks[1].signature  # one bug, wherever the canary came from


def test_plant_canary_in_string_and_part_contents() -> None:
    text = plant_canary(T, canary(3))
    assert text.body["messages"][-1]["content"].endswith(canary(3))
    parts = plant_canary(A, canary(3))
    assert parts.body["messages"][-1]["content"][-1]["text"].endswith(canary(3))
    assert A.body["messages"][-1]["content"][-1]["text"] == "Describe."  # not mutated
    bare = plant_canary(RequestSpec(id="x", body={"messages": []}), canary(3))
    assert bare.body["messages"] == [{"role": "user", "content":
                                      f"Remember this code and repeat it: {canary(3)}"}]


def test_isolation_suspects_reads_the_trace() -> None:
    def logprob_reply(rid: str, ans) -> RequestTrace:
        content = [{"token": s.token, "logprob": s.logprob,
                    "top_logprobs": [{"token": t, "logprob": v} for t, v in s.top]}
                   for s in ans.steps]
        body = {"choices": [{"index": 0, "message": {"content": ans.text},
                             "finish_reason": "length", "logprobs": {"content": content}}]}
        return RequestTrace(id=rid, sent_s=0.0, status=200, end_s=1.0, body=json.dumps(body))
    s = scenario(A, B, media=(IMG_A, IMG_B))
    trace = Trace(requests=(logprob_reply("A", ALONE_B), logprob_reply("B", ALONE_B)))
    found = isolation_suspects(s, trace, {"A": [ALONE_A], "B": [ALONE_B]}, NOISE)
    assert [(f.kind, f.request_id) for f in found] == [
        ("isolation_divergence", "A"), ("cross_request_leak", "A")]
    assert found[0].signature.endswith("|image_probe")
    assert isolation_suspects(s, Trace(requests=(logprob_reply("A", ALONE_A),
                                                 logprob_reply("B", ALONE_B))),
                              {"A": [ALONE_A], "B": [ALONE_B]}, NOISE) == []
