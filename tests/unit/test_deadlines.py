"""DeadlinePolicy: deadlines learnt per size class as max(floor, k * p99), capped,
overridable, and never learnt from requests that did not end well."""

from __future__ import annotations

import pytest

from fuzz.deadlines import DeadlinePolicy, percentile, phase_latencies, size_class
from fuzz.model import Deadlines, Media, RequestSpec, RequestTrace, Scenario, media_url

FLOOR = Deadlines(1.0, 1.0, 2.0)
CEIL = Deadlines(100.0, 50.0, 300.0)
IMG = Media(data=b"img", mime="image/png")


def text(prompt: str = "hi", max_tokens: int = 16, stream: bool = False,
         images: int = 0) -> RequestSpec:
    content: list = [{"type": "text", "text": prompt}]
    content += [{"type": "image_url", "image_url": {"url": media_url(IMG.sha256)}}] * images
    body: dict = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return RequestSpec(id="r", body=body)


def done(total: float, first: float = 0.1, chunks: tuple[float, ...] = (),
         **kw: object) -> RequestTrace:
    fields: dict = {"status": 200, "first_byte_s": first, "end_s": total,
                    "chunk_times_s": chunks}
    fields.update(kw)
    return RequestTrace(id="r", sent_s=0.0, **fields)


def policy(**kw: object) -> DeadlinePolicy:
    return DeadlinePolicy(floor=FLOOR, ceiling=CEIL, k=4.0, min_samples=5,
                          **kw)  # type: ignore[arg-type]


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0 and percentile([5, 1], 50) == 1


def test_phase_latencies() -> None:
    lat = phase_latencies(done(2.0, first=0.5, chunks=(0.6, 1.6, 1.9)))
    assert lat == pytest.approx({"first_byte_s": 0.5, "stall_s": 1.0, "total_s": 2.0})
    for bad in (done(1.0, status=500), done(1.0, status=None), done(1.0, error="Reset"),
                done(1.0, deadline="stall"), done(1.0, disconnected=True),
                done(1.0, status=400)):
        assert phase_latencies(bad) is None


def test_size_classes_separate_what_takes_different_time() -> None:
    base = size_class(text())
    assert size_class(text(prompt="ho")) == base
    assert size_class(text(prompt="x" * 5000)) != base
    assert size_class(text(images=1)) != base and size_class(text(stream=True)) != base
    assert size_class(text(max_tokens=1024)) != base
    assert size_class(text(), concurrency=64) != base
    assert size_class(RequestSpec(id="x", body="not json")).prompt_chars == 0


def test_nothing_learnt_gives_the_ceiling() -> None:
    assert policy().deadlines_for(text()) == CEIL


def test_learns_k_times_p99_with_a_floor() -> None:
    p = policy()
    for total in (1.0, 2.0, 3.0, 4.0, 10.0):
        assert p.observe(text(), done(total, first=total / 2, chunks=(total,)))
    d = p.deadlines_for(text())
    assert d == Deadlines(first_byte_s=20.0, stall_s=20.0, total_s=40.0)
    fast = policy()
    for _ in range(5):
        fast.observe(text(), done(0.05, first=0.01, chunks=(0.05,)))
    assert fast.deadlines_for(text()) == FLOOR


def test_ceiling_caps_and_overrides_win() -> None:
    p = policy(overrides={"stall_s": 7.0})
    for _ in range(5):
        p.observe(text(), done(500.0, first=400.0, chunks=(500.0,)))
    assert p.deadlines_for(text()) == Deadlines(first_byte_s=100.0, stall_s=7.0, total_s=300.0)
    with pytest.raises(ValueError, match="unknown deadline phases"):
        DeadlinePolicy(overrides={"ttft": 1.0})


def test_classes_fall_back_to_coarser_then_global() -> None:
    p = policy()
    for _ in range(5):
        p.observe(text(max_tokens=16), done(1.0, chunks=(1.0,)), concurrency=1)
    # same input, other output cap and load: the coarse class answers
    assert p.samples(text(max_tokens=512), concurrency=32) == 5
    assert p.deadlines_for(text(max_tokens=512), 32).total_s == 4.0
    # an image request borrows from everything seen so far
    assert p.deadlines_for(text(images=2)).total_s == 4.0
    for _ in range(5):
        p.observe(text(images=2), done(20.0, chunks=(20.0,)))
    assert p.deadlines_for(text(images=2)).total_s == 80.0
    assert p.deadlines_for(text()).total_s == 4.0


def test_failed_requests_teach_nothing() -> None:
    p = policy()
    assert not p.observe(text(), done(0.1, deadline="total", deadline_s=1.0))
    assert p.samples(text()) == 0 and p.deadlines_for(text()) == CEIL


def test_window_forgets_old_latencies() -> None:
    p = policy(window=5)
    for _ in range(5):
        p.observe(text(), done(50.0, chunks=(50.0,)))
    for _ in range(5):
        p.observe(text(), done(1.0, chunks=(1.0,)))
    assert p.deadlines_for(text()).total_s == 4.0


def test_scenario_helpers() -> None:
    small = RequestSpec(id="a", body=text().body)
    big = RequestSpec(id="b", body=text(images=1).body)
    scenario = Scenario(requests=(small, big), media={IMG.sha256: IMG})
    p = policy()
    traces = (RequestTrace(id="a", sent_s=0.0, status=200, first_byte_s=0.1, end_s=1.0),
              RequestTrace(id="b", sent_s=0.0, status=200, first_byte_s=0.1, end_s=5.0))
    for _ in range(5):
        assert p.observe_scenario(scenario, traces) == 2
    per = p.deadlines_for_scenario(scenario)
    assert per["a"].total_s == 4.0 and per["b"].total_s == 20.0
    assert p.scenario_deadlines(scenario).total_s == 20.0
    assert policy().scenario_deadlines(Scenario(requests=())) == CEIL


def test_step_up_rounds_to_one_two_five() -> None:
    from fuzz.deadlines import step_up

    assert [step_up(v) for v in (0.3, 0.5, 1.2, 4.0, 5.0, 7.0, 40.0, 120.0)] == \
        [0.5, 0.5, 2.0, 5.0, 5.0, 10.0, 50.0, 200.0]


def test_steps_keep_few_limits_in_use_and_never_pass_the_ceiling() -> None:
    p = policy(steps=True)
    for total in (1.0, 2.0, 3.0, 4.0, 10.0):
        p.observe(text(), done(total, first=total / 2, chunks=(total,)))
    assert p.deadlines_for(text()) == Deadlines(first_byte_s=20.0, stall_s=20.0, total_s=50.0)
    slow = policy(steps=True)
    for _ in range(5):
        slow.observe(text(), done(70.0, first=60.0, chunks=(70.0,)))
    assert slow.deadlines_for(text()) == CEIL  # 240 and 280 step up past the ceiling


def test_source_and_overall_say_what_was_learnt() -> None:
    p = policy(overrides={"stall_s": 7.0})
    assert p.overall() is None
    assert [p.source(text(), ph) for ph in ("first_byte_s", "stall_s")] == ["ceiling", "override"]
    for _ in range(5):
        p.observe(text(), done(1.0, chunks=(1.0,)))
    assert p.source(text(), "first_byte_s") == "learnt"
    assert p.overall() == Deadlines(first_byte_s=1.0, stall_s=7.0, total_s=4.0)
