"""Steering: every mutant is a valid Scenario that survives JSON, each mutation does what
it says, and the corpus keeps only scenarios that reached a new server state."""

from __future__ import annotations

import json
import random
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.model import Media, RequestSpec, Scenario, media_url
from fuzz.steering import (MAX_OUTPUT_TOKENS, MAX_SPREAD_MS, MUTATIONS, Steering,
                           compress_timing, disconnect_streams, duplicate_request,
                           lengthen_outputs, splice, stretch_timing, swap_images)
from fuzz.strategies import scenarios

SMALL = dict(max_pixels=48 * 48, max_prompt_tokens=300, max_requests=8)
FAST = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_valid(s: Scenario, max_requests: int = 64) -> None:
    """What every mutant must be: renumbered ids, sorted offsets in range, exactly the
    media it uses, and a JSON round trip that gives it back."""
    assert 1 <= len(s.requests) <= max_requests
    assert [r.id for r in s.requests] == [f"r{i}" for i in range(len(s.requests))]
    offsets = [r.offset_ms for r in s.requests]
    assert offsets == sorted(offsets) and all(0.0 <= t <= MAX_SPREAD_MS for t in offsets)
    assert {h for r in s.requests for h in r.media_refs()} == set(s.media)
    text = json.dumps(s.to_json())
    again = Scenario.from_json(json.loads(text), {h: m.data for h, m in s.media.items()})
    assert again == s and json.dumps(again.to_json()) == text


@FAST
@given(scenarios(**SMALL), st.sampled_from(sorted(MUTATIONS)), st.integers(0, 2**32 - 1))
def test_every_mutation_gives_a_valid_scenario_or_none(scenario: Scenario, name: str,
                                                       seed: int) -> None:
    mutant = MUTATIONS[name](scenario, random.Random(seed))
    if mutant is not None:
        assert_valid(mutant)
        # A request is either one of the parent's, unchanged, or tagged with its mutation.
        parent = {json.dumps([r.body, r.disconnect_after_chunks, r.offset_ms], sort_keys=True)
                  for r in scenario.requests}
        for r in mutant.requests:
            key = json.dumps([r.body, r.disconnect_after_chunks, r.offset_ms], sort_keys=True)
            assert key in parent or f"steer:{name}" in r.tags


IMAGES = [Media(data=bytes([i]) * 8, mime="image/png") for i in range(4)]


@st.composite
def odd_scenarios(draw: st.DrawFn) -> Scenario:
    """Shapes the generator rarely makes: raw string bodies, no or odd `max_tokens`,
    the same image twice in one body, fixture URLs naming a media, streams."""
    specs = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("chat", "raw", "fixture")))
        images = draw(st.lists(st.sampled_from(IMAGES), max_size=3))
        if kind == "raw":
            body: object = "{not json"
        elif kind == "fixture":
            body = {"messages": [{"role": "user", "content": [
                {"type": "image_url",
                 "image_url": {"url": f"vlfuzz-fixture:/ok/{IMAGES[0].sha256}"}}]}]}
        else:
            extra = draw(st.sampled_from(({}, {"max_tokens": 0}, {"max_tokens": True},
                                          {"max_tokens": "8"}, {"max_completion_tokens": 4},
                                          {"stream": True})))
            body = chat("x", *images, **extra)
            if "max_completion_tokens" in extra:
                del body["max_tokens"]
        specs.append(RequestSpec(id=f"q{i}", body=body,
                                 offset_ms=draw(st.sampled_from((0.0, 5.0, 2500.0, 9999.9)))))
    used = {h for r in specs for h in r.media_refs()}
    return Scenario(requests=tuple(specs), media={m.sha256: m for m in IMAGES if m.sha256 in used})


@FAST
@given(odd_scenarios(), st.sampled_from(sorted(MUTATIONS)), st.integers(0, 2**32 - 1))
def test_mutations_handle_odd_shapes(scenario: Scenario, name: str, seed: int) -> None:
    mutant = MUTATIONS[name](scenario, random.Random(seed))
    if mutant is not None:
        assert_valid(mutant)


@FAST
@given(scenarios(**SMALL), scenarios(**SMALL), st.integers(0, 2**32 - 1))
def test_splice_is_valid(a: Scenario, b: Scenario, seed: int) -> None:
    mutant = splice(a, b, random.Random(seed))
    assert mutant is not None
    assert_valid(mutant)
    assert len(mutant.requests) <= len(a.requests) + len(b.requests)


@FAST
@given(st.lists(scenarios(**SMALL), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_steered_scenarios_are_valid(corpus: list[Scenario], seed: int) -> None:
    steering = Steering(max_requests=12)
    for i, s in enumerate(corpus):
        steering.observe(s, {f"state:{i}"})
    rng = random.Random(seed)
    for _ in range(5):
        mutant = steering.propose(rng)
        assert mutant is not None and mutant.ops
        assert set(mutant.ops) <= set(MUTATIONS) | {"splice", "none"}
        assert_valid(mutant.scenario, max_requests=12)


# --- hand-built scenarios --------------------------------------------------------

IMG_A = Media(data=b"\x89PNG image a", mime="image/png")
IMG_B = Media(data=b"\x89PNG image b", mime="image/png")


def chat(text: str, *images: Media, **extra: object) -> dict:
    content = [{"type": "image_url", "image_url": {"url": media_url(m.sha256)}} for m in images]
    return {"messages": [{"role": "user", "content": [*content, {"type": "text", "text": text}]}],
            "max_tokens": 8, **extra}


BASE = Scenario(
    requests=(RequestSpec(id="r0", body=chat("a", IMG_A), offset_ms=0.0, tags=("images:1",)),
              RequestSpec(id="r1", body=chat("b", IMG_B), offset_ms=400.0),
              RequestSpec(id="r2", body=chat("c"), offset_ms=800.0)),
    media={IMG_A.sha256: IMG_A, IMG_B.sha256: IMG_B})


def test_duplicate_sends_identical_bodies_together() -> None:
    mutant = duplicate_request(BASE, random.Random(3))
    assert mutant is not None and len(mutant.requests) > 3
    bodies = Counter(json.dumps(r.body, sort_keys=True) for r in mutant.requests)
    assert max(bodies.values()) >= 2
    copies = [r for r in mutant.requests if "steer:duplicate" in r.tags]
    assert copies and all(any(c.body == o.body and c.offset_ms >= o.offset_ms
                              for o in BASE.requests) for c in copies)


def test_swap_images_trades_images_between_requests() -> None:
    mutant = swap_images(BASE, random.Random(0))
    assert mutant is not None
    assert mutant.requests[0].media_refs() == [IMG_B.sha256]
    assert mutant.requests[1].media_refs() == [IMG_A.sha256]
    assert BASE.requests[0].media_refs() == [IMG_A.sha256]  # the parent is untouched
    one_image = BASE.with_requests(BASE.requests[:1])
    assert swap_images(one_image, random.Random(0)) is None


def test_timing_mutations() -> None:
    for seed in range(10):
        squeezed = compress_timing(BASE, random.Random(seed))
        assert squeezed is not None and squeezed.requests[-1].offset_ms <= 400.0
        spread = stretch_timing(BASE, random.Random(seed))
        assert spread is not None and spread.requests[-1].offset_ms >= 1200.0
    burst = Scenario(requests=tuple(RequestSpec(id=f"r{i}", body=chat("x")) for i in range(3)))
    assert compress_timing(burst, random.Random(0)) is None
    ramp = stretch_timing(burst, random.Random(0))
    assert ramp is not None and len({r.offset_ms for r in ramp.requests}) == 3
    far = Scenario(requests=(RequestSpec(id="r0", body=chat("x"), offset_ms=9000.0),))
    assert stretch_timing(far, random.Random(0)).requests[0].offset_ms == MAX_SPREAD_MS


def test_lengthen_and_disconnect_change_bodies_not_parents() -> None:
    longer = lengthen_outputs(BASE, random.Random(1))
    changed = [r for r in longer.requests if "steer:lengthen" in r.tags]
    assert changed and all(r.body["max_tokens"] == 64 and r.body["ignore_eos"] is True
                           for r in changed)
    assert all("ignore_eos" not in r.body for r in BASE.requests)
    zero = Scenario(requests=(RequestSpec(id="r0", body=chat("x", max_tokens=0)),))
    assert lengthen_outputs(zero, random.Random(0)) is None  # max_tokens=0 is deliberate
    big = Scenario(requests=(RequestSpec(id="r0", body=chat("x", max_tokens=400)),))
    capped = lengthen_outputs(big, random.Random(0))
    assert capped.requests[0].body["max_tokens"] == MAX_OUTPUT_TOKENS
    cut = disconnect_streams(BASE, random.Random(2))
    [hung_up] = [r for r in cut.requests if r.disconnect_after_chunks is not None]
    assert hung_up.stream and "steer:disconnect" in hung_up.tags
    assert not any(r.stream for r in BASE.requests)


def test_mutants_are_capped_in_size() -> None:
    steering = Steering(max_requests=4)
    big = Scenario(requests=tuple(RequestSpec(id=f"r{i}", body=chat(str(i)), offset_ms=i * 10.0)
                                  for i in range(4)))
    steering.observe(big, {"x"})
    rng = random.Random(0)
    for _ in range(20):
        assert_valid(steering.next(rng), max_requests=4)


# --- the corpus -------------------------------------------------------------------

def scenario_n(n: int) -> Scenario:
    return Scenario(requests=(RequestSpec(id="r0", body=chat(f"prompt {n}")),))


def test_corpus_keeps_only_scenarios_that_reach_new_features() -> None:
    steering = Steering()
    assert steering.next(random.Random(0)) is None  # empty corpus: nothing to steer
    hit_rate = "prefix_cache:hit_rate:0%"
    assert steering.observe(scenario_n(0), {hit_rate}) == {hit_rate}
    assert steering.observe(scenario_n(1), {"prefix_cache:hit_rate:0%"}) == frozenset()
    assert steering.observe(scenario_n(2), set()) == frozenset()
    new = steering.observe(scenario_n(3), {"prefix_cache:hit_rate:0%", "preemptions:1"},
                           origin="duplicate+compress")
    assert new == {"preemptions:1"}
    assert [e.scenario for e in steering.entries] == [scenario_n(0), scenario_n(3)]
    assert steering.entries[1].new_features == {"preemptions:1"}
    assert steering.entries[1].origin == "duplicate+compress"
    assert steering.counts == {"prefix_cache:hit_rate:0%": 3, "preemptions:1": 1}
    assert steering.first_seen == {"prefix_cache:hit_rate:0%": 1, "preemptions:1": 4}
    assert steering.stats()["ops"]["duplicate"] == {"tried": 1, "new_states": 1}
    assert steering.stats()["ops"]["generated"] == {"tried": 3, "new_states": 1}
    rows = steering.rows()
    assert [(r["feature"], r["scenarios"], r["first_seen"]) for r in rows] == [
        ("preemptions:1", 1, 4), ("prefix_cache:hit_rate:0%", 3, 1)]


def test_resumed_counts_are_not_new_again() -> None:
    steering = Steering(seen={"preemptions:1": 5})
    assert steering.observe(scenario_n(0), {"preemptions:1"}) == frozenset()
    assert not steering.entries


def test_rare_features_are_favoured() -> None:
    steering = Steering(splice_percent=0)
    common, rare = scenario_n(0), scenario_n(1)
    steering.observe(common, {"common"})
    steering.observe(rare, {"rare"})
    for i in range(40):
        steering.observe(scenario_n(100 + i), {"common"})
    rng = random.Random(7)
    parents = Counter(steering.propose(rng).parents[0] for _ in range(200))
    assert parents[2] > 3 * parents[1]  # observation 2 (rare) over observation 1 (common)


def test_corpus_evicts_the_most_common_entries() -> None:
    steering = Steering(max_entries=3)
    for i in range(6):
        steering.observe(scenario_n(i), {f"f{i}", "everywhere"})
        steering.observe(scenario_n(50 + i), {f"f{i}"})  # makes f{i} common
    assert len(steering.entries) == 3
    assert [e.observation for e in steering.entries] == [7, 9, 11]


def test_corpus_stays_within_its_media_budget() -> None:
    steering = Steering(max_media_bytes=len(IMG_A.data) + len(IMG_B.data))
    steering.observe(BASE, {"a"})  # holds both images: exactly the budget
    one = Scenario(requests=(RequestSpec(id="r0", body=chat("x", IMAGES[1])),),
                   media={IMAGES[1].sha256: IMAGES[1]})
    steering.observe(one, {"b"})
    assert len(steering.entries) == 1 and steering.media_bytes() <= steering.max_media_bytes
    steering = Steering(max_media_bytes=1)
    steering.observe(BASE, {"a"})
    assert len(steering.entries) == 1  # the last entry is kept whatever its size


def test_steering_is_deterministic_given_the_rng() -> None:
    def run() -> list[str]:
        steering = Steering()
        steering.observe(BASE, {"a"})
        steering.observe(scenario_n(1), {"b"})
        rng = random.Random(42)
        return [json.dumps(steering.next(rng).to_json(), sort_keys=True) for _ in range(10)]

    assert run() == run()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Steering(max_entries=0)
    with pytest.raises(ValueError):
        Steering(splice_percent=101)
