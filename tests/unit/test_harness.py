"""The harness without a server: media published before a scenario and forgotten
after (even when sending fails), the policy's per-request deadlines handed to the
runner, replays under given deadlines, cut records, learning reported on change, and
the server watched around a scenario: `/metrics` sampled (not on replays) and only
what the log gained meanwhile kept in the trace."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import fuzz.harness as harness_module
from fuzz.deadlines import DeadlinePolicy
from fuzz.harness import Harness, Played, cut_records
from fuzz.model import Deadlines, Media, RequestSpec, RequestTrace, Scenario, Trace, media_url
from fuzz.runner import Endpoint
from fuzz.signals import ServerSignals

CEIL = Deadlines(100.0, 50.0, 300.0)
IMG = Media(data=b"img", mime="image/png")


class FakeFixtures:
    base_url = "http://127.0.0.1:1234"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def publish(self, media: Mapping[str, Media]) -> None:
        self.log.append(f"publish {sorted(media)}")

    def forget(self) -> None:
        self.log.append("forget")


def scenario() -> Scenario:
    image = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(IMG.sha256)}}]}], "max_tokens": 8}
    return Scenario(requests=(RequestSpec(id="text", body={"messages": [], "max_tokens": 8}),
                              RequestSpec(id="image", body=image)),
                    media={IMG.sha256: IMG})


def ok(rid: str, total: float) -> RequestTrace:
    return RequestTrace(id=rid, sent_s=0.0, status=200, first_byte_s=total / 2, end_s=total)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the runner; each call is logged with its arguments."""
    log: list[Any] = []

    async def fake_run(endpoint: Endpoint, s: Scenario, deadlines: Deadlines,
                       **kw: Any) -> Trace:
        log.append(("run", endpoint.base_url, deadlines, kw))
        if kw.get("fixture_base_url") == "explode":
            raise RuntimeError("boom")
        return Trace(requests=tuple(ok(r.id, 1.0) for r in s.requests), deadlines=deadlines)

    monkeypatch.setattr(harness_module, "run_scenario", fake_run)
    return log


def make(log: list[Any], *, log_file: Path | None = None, poll_metrics: bool = False,
         **kw: Any) -> Harness:
    policy = DeadlinePolicy(floor=Deadlines(1.0, 1.0, 2.0), ceiling=CEIL, min_samples=2, **kw)
    return Harness(lambda: Endpoint("http://target", "m"), policy, fixtures=FakeFixtures(log),
                   log_file=log_file, poll_metrics=poll_metrics)


def test_media_are_published_for_the_run_and_forgotten_after(calls: list[Any]) -> None:
    h = make(calls)
    played = asyncio.run(h.play(scenario()))
    assert calls[0] == f"publish {[IMG.sha256]}" and calls[-1] == "forget"
    _, base_url, default, kw = calls[1]
    assert base_url == "http://target" and kw["fixture_base_url"] == FakeFixtures.base_url
    assert kw["request_deadlines"] == {"text": CEIL, "image": CEIL} == played.deadlines
    assert default == CEIL and played.sources["image"]["total_s"] == "ceiling"

    h.fixtures.base_url = "explode"  # type: ignore[union-attr]
    calls.clear()
    with pytest.raises(RuntimeError):
        asyncio.run(h.play(scenario()))
    assert calls[-1] == "forget", "media stayed published after a failed run"


def test_replays_use_the_given_deadlines_and_the_loosest_for_the_rest(calls: list[Any]) -> None:
    tight, loose = Deadlines(1.0, 9.0, 3.0), Deadlines(2.0, 1.0, 4.0)
    played = asyncio.run(make(calls).play(scenario(), {"text": tight, "other": loose}))
    _, _, default, kw = calls[1]
    assert kw["request_deadlines"] == {"text": tight, "other": loose}
    assert default == Deadlines(2.0, 9.0, 4.0)
    assert played.sources["text"] == dict.fromkeys(("first_byte_s", "stall_s", "total_s"), "replay")


def test_learning_reports_the_overall_deadlines_only_when_they_change(calls: list[Any]) -> None:
    h = make(calls, steps=True)
    s = scenario()
    fast = Trace(requests=(ok("text", 1.0), ok("image", 1.0)))
    assert h.learn(s, fast) == Deadlines(first_byte_s=2.0, stall_s=1.0, total_s=5.0)
    assert h.learn(s, fast) is None
    asyncio.run(h.play(s))
    assert calls[-2][3]["request_deadlines"]["text"].total_s == 5.0
    frozen = Harness(lambda: Endpoint("http://t", "m"), DeadlinePolicy(min_samples=1),
                     learn=False)
    assert frozen.learn(s, fast) is None and frozen.policy.overall() is None


def test_cut_records_name_the_deadline_its_limit_and_source() -> None:
    trace = Trace(requests=(
        RequestTrace(id="a", sent_s=0.0, deadline="stall", deadline_s=5.0),
        RequestTrace(id="b", sent_s=0.0, status=200, end_s=1.0)))
    played = Played(trace, {"a": CEIL, "b": CEIL},
                    {"a": {"first_byte_s": "ceiling", "stall_s": "learnt", "total_s": "ceiling"}})
    assert cut_records(played) == [{"id": "a", "deadline": "stall", "limit_s": 5.0,
                                    "source": "learnt"}]


HEADER = "(APIServer pid=1) ERROR 11-27 05:08:46 [serving_chat.py:117] "
TRACEBACK = [HEADER + m for m in ("Error in tool parser.", "Traceback (most recent call last):",
                                  '  File "x.py", line 1, in f', "ValueError: bad call")]


class FakePoller:
    """Stands in for MetricsPoller: logs when it opens and closes around the run."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def __call__(self, endpoint: Endpoint) -> FakePoller:
        self.log.append(("poller", endpoint.base_url))
        return self

    async def __aenter__(self) -> FakePoller:
        self.log.append("poll start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.log.append("poll stop")

    @property
    def signals(self) -> ServerSignals:
        return ServerSignals(before={"preemptions": 0.0}, after={"preemptions": 2.0})


def test_metrics_are_sampled_around_a_scenario_but_not_a_replay(
        calls: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness_module, "MetricsPoller", FakePoller(calls))
    h = make(calls, poll_metrics=True)
    played = asyncio.run(h.play(scenario()))
    order = [c if isinstance(c, str) else c[0] for c in calls]
    assert order == ["publish " + str([IMG.sha256]), "poller", "poll start", "run", "poll stop",
                     "forget"]
    assert played.signals is not None and played.signals.delta("preemptions") == 2.0
    calls.clear()
    replayed = asyncio.run(h.play(scenario(), {"text": CEIL}, sample_metrics=False))
    assert replayed.signals is None and not any(c == "poll start" for c in calls)


def test_only_what_the_log_gained_during_the_scenario_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = tmp_path / "server.log"
    log_file.write_text(HEADER + "logged before the scenario\n")

    async def fake_run(endpoint: Endpoint, s: Scenario, deadlines: Deadlines,
                       **kw: Any) -> Trace:
        with log_file.open("a") as f:  # the server logs while the scenario runs
            f.write('INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n')
            f.write("\n".join(TRACEBACK) + "\n")
        return Trace(requests=tuple(ok(r.id, 1.0) for r in s.requests), deadlines=deadlines)

    monkeypatch.setattr(harness_module, "run_scenario", fake_run)
    h = make([], log_file=log_file)
    played = asyncio.run(h.play(scenario()))
    assert played.trace.server_log == tuple(TRACEBACK)  # access line dropped, older line too
    again = asyncio.run(h.play(scenario(), {"text": CEIL}, sample_metrics=False))
    assert again.trace.server_log == tuple(TRACEBACK), "a replay must follow the log too"
    assert asyncio.run(make([]).play(scenario())).trace.server_log == ()
