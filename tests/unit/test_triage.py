"""Triage without a server: which failures are counted, bundled and minimized, under
which deadlines the minimizer replays, that a stop leaves the work pending, and that
an isolation or interference finding is minimized with its own oracle's replay."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import pytest

from fuzz import ledger
from fuzz.bundle import load_bundle
from fuzz.events import BundleWritten, MinimizationStarted, Noted
from fuzz.minimize import Budget
from fuzz.model import Deadlines, Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import check
from fuzz.report import Summary
from fuzz.minimize import Replay
from fuzz.triage import (Triage, TriageConfig, first_reproduced, minimize_decision,
                         primary_failure, replay_deadlines, unique)

BOOM = '{"error": {"message": "boom happened", "type": "InternalServerError"}}'
LEARNT = Deadlines(first_byte_s=5.0, stall_s=5.0, total_s=20.0)


def scenario(n: int = 4, bad: int = 2) -> Scenario:
    return Scenario(requests=tuple(
        RequestSpec(id=f"r{i}", body={"messages": [{"role": "user",
                                                    "content": "boom" if i == bad else "x"}]})
        for i in range(n)))


def fails(s: Scenario) -> Trace:
    """A 500 for the request that says boom; the others leave no trace to judge."""
    return Trace(requests=tuple(
        RequestTrace(id=r.id, sent_s=0.0, status=500, body=BOOM, end_s=0.1)
        for r in s.requests if r.body["messages"][0]["content"] == "boom"))


class FakeHost:
    def __init__(self, *, stop_after: int | None = None, disk_full: bool = False) -> None:
        self.summary = Summary(seed=0, endpoint="http://fake")
        self.records: list[dict[str, Any]] = []
        self.events: list[object] = []
        self.replayed: list[tuple[Scenario, dict[str, Deadlines]]] = []
        self.stop_after = stop_after
        self.disk_full = disk_full
        self.elsewhere: dict[str, Path] = {}
        self.own_replays: dict[str, Replay] = {}  # failure kind -> its oracle's replay
        self.asked: list[tuple[str, dict[str, Deadlines]]] = []

    def record(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        ledger.apply(self.summary, rec)

    def emit(self, event: object) -> None:
        self.events.append(event)

    def drive(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)

    def now(self) -> float:
        return 1.0

    def time_left(self) -> float:
        return 600.0

    def stopping(self) -> bool:
        return self.stop_after is not None and len(self.replayed) >= self.stop_after

    def target_evidence(self) -> dict[str, Any]:
        return {"model": "fake"}

    def may_rewrite_bundle(self) -> bool:
        return not self.disk_full

    def bundled_elsewhere(self, signature: str) -> Path | None:
        return self.elsewhere.get(signature)

    async def replay(self, s: Scenario, deadlines: Mapping[str, Deadlines]) -> Trace:
        self.replayed.append((s, dict(deadlines)))
        return fails(s)

    def oracle_replay(self, s: Scenario, failure: Failure,
                      deadlines: Mapping[str, Deadlines]) -> Replay | None:
        self.asked.append((failure.kind, dict(deadlines)))
        return self.own_replays.get(failure.kind)


def triage(host: FakeHost, tmp_path: Path, **kw: Any) -> Triage:
    config = TriageConfig(bundles_dir=tmp_path / "bundles", seed=7,
                          budget=Budget(max_replays=30, max_wall_s=60.0), **kw)
    return Triage(config, host)  # type: ignore[arg-type]


def f(kind: str, sig: str | None = None) -> Failure:
    return Failure(kind=kind, signature=sig or kind, message=kind)


def test_decisions_are_pure_and_say_why() -> None:
    hang, echo = f("hang"), f("server_error")
    assert minimize_decision(hang, hang, enabled=True, time_left_s=100) == ledger.PENDING
    assert "--no-minimize" in minimize_decision(hang, hang, enabled=False, time_left_s=100)
    assert "seen together with `hang`" in minimize_decision(echo, hang, enabled=True,
                                                            time_left_s=100)
    assert "time ran out" in minimize_decision(hang, hang, enabled=True, time_left_s=5)
    assert unique([hang, echo, f("hang")]) == [hang, echo]
    assert primary_failure([echo, hang]) is hang


def test_replay_deadlines_prefer_the_ones_stored_with_the_bundle() -> None:
    trace = Trace(requests=(RequestTrace(id="a", sent_s=0.0), RequestTrace(id="b", sent_s=0.0)),
                  deadlines=Deadlines(120.0, 60.0, 300.0))
    stored = {"request_deadlines": {"a": LEARNT.to_json()}}
    assert replay_deadlines(trace, stored) == {"a": LEARNT}
    assert replay_deadlines(trace, {}) == {"a": trace.deadlines, "b": trace.deadlines}
    assert replay_deadlines(trace, {"request_deadlines": {"a": {"bogus": 1}}})["b"] == trace.deadlines


def test_a_new_failure_is_bundled_then_minimized_under_its_original_deadlines(tmp_path: Path) -> None:
    host = FakeHost()
    s = scenario()
    deadlines = {r.id: LEARNT for r in s.requests}
    trace = fails(s)
    triage(host, tmp_path).handle(0, s, trace, check(s, trace), deadlines)
    kinds = [r["type"] for r in host.records]
    assert kinds[:2] == ["failure", "bundle"] and kinds[-2:] == ["minimized", "bundle"]
    assert host.records[0]["new"] and host.records[0]["minimize"] == ledger.PENDING
    assert all(d == {k: LEARNT for k in d} for _, d in host.replayed)
    stats = host.summary.failures["server_error|500|boom happened"]
    assert stats.requests_after == 1 and not host.summary.pending_minimizations
    bundle = load_bundle(Path(stats.bundle))
    assert [r.id for r in bundle.scenario.requests] == ["r2"]
    assert bundle.fuzzer["request_deadlines"] == {"r2": LEARNT.to_json()}
    assert bundle.fuzzer["seed"] == 7 and "minimizer" in bundle.fuzzer
    assert sum(isinstance(e, BundleWritten) for e in host.events) == 2


def test_a_known_failure_is_only_counted(tmp_path: Path) -> None:
    host = FakeHost()
    t = triage(host, tmp_path, minimize=False)
    s = scenario()
    for index in range(3):
        t.handle(index, s, fails(s), check(s, fails(s)), {})
    assert [r["type"] for r in host.records] == ["failure", "bundle", "failure", "failure"]
    assert host.summary.failures["server_error|500|boom happened"].count == 3
    assert host.replayed == []


def test_a_stop_while_minimizing_leaves_it_pending_and_resume_finishes_it(tmp_path: Path) -> None:
    host = FakeHost(stop_after=2)
    s = scenario()
    triage(host, tmp_path).handle(0, s, fails(s), check(s, fails(s)), {"r2": LEARNT})
    assert "minimized" not in [r["type"] for r in host.records]
    assert host.summary.pending_minimizations == {"server_error|500|boom happened"}
    assert any(isinstance(e, Noted) and "--resume" in e.message for e in host.events)

    resumed = FakeHost()
    ledger.fold(host.records, resumed.summary)
    triage(resumed, tmp_path).finish_pending()
    started = [e for e in resumed.events if isinstance(e, MinimizationStarted)]
    assert len(started) == 1 and started[0].resumed
    assert resumed.replayed[0][1] == {"r2": LEARNT}, "the bundle's deadlines were not reused"
    assert not resumed.summary.pending_minimizations


def test_a_pending_minimization_without_a_readable_bundle_is_closed_with_a_note(
        tmp_path: Path) -> None:
    host = FakeHost()
    fail = f("server_error", "sig")
    host.record(ledger.failure_record(0, 0.0, fail, new=True, requests=3, minimize=ledger.PENDING))
    host.record({"type": "bundle", "signature": "sig", "path": str(tmp_path / "gone")})
    triage(host, tmp_path).finish_pending()
    assert host.records[-1]["type"] == "minimized"
    assert "not minimized after resume" in host.records[-1]["note"]
    assert not host.summary.pending_minimizations and host.replayed == []


def test_over_the_disk_cap_a_known_failure_is_not_bundled_again(tmp_path: Path) -> None:
    host = FakeHost(disk_full=True)
    s = scenario()
    triage(host, tmp_path).handle(0, s, fails(s), check(s, fails(s)), {})
    kinds = [r["type"] for r in host.records]
    assert kinds == ["failure", "bundle", "minimized"], "the new failure must still be bundled"
    assert "disk cap" in host.records[-1]["note"] and host.records[-1]["requests_after"] == 1
    stats = host.summary.failures["server_error|500|boom happened"]
    assert "disk cap" in stats.minimize_note
    assert len(load_bundle(Path(stats.bundle)).scenario.requests) == 4  # the first one stays


def test_a_bundle_that_cannot_be_written_is_journaled_not_fatal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fuzz.triage as triage_module

    def broken(*_a: Any, **_k: Any) -> Path:
        raise ValueError("cannot render")

    monkeypatch.setattr(triage_module, "write_bundle", broken)
    host = FakeHost()
    s = scenario()
    triage(host, tmp_path, minimize=False).handle(0, s, fails(s), check(s, fails(s)), {})
    assert [r["type"] for r in host.records] == ["failure", "bundle_error"]
    stats = host.summary.failures["server_error|500|boom happened"]
    assert stats.bundle is None and "bundle not written: ValueError: cannot render" in stats.minimize_note
    assert any(isinstance(e, Noted) and "could not bundle" in e.message for e in host.events)


def test_a_failure_another_worker_bundled_is_counted_but_not_bundled_again(tmp_path: Path) -> None:
    host = FakeHost()
    host.elsewhere["server_error|500|boom happened"] = tmp_path / "bundles" / "w1" / "x"
    s = scenario()
    triage(host, tmp_path).handle(0, s, fails(s), check(s, fails(s)), {})
    assert [r["type"] for r in host.records] == ["failure"] and host.replayed == []
    assert host.records[0]["new"] and "another worker bundled it" in host.records[0]["minimize"]
    assert not host.summary.pending_minimizations


def divergence(confirmation: dict[str, int] | None = None) -> Failure:
    evidence = {"confirmation": confirmation} if confirmation else {}
    return Failure(kind="isolation_divergence", signature="isolation_divergence|200|differs|text",
                   message="differs", request_id="r2", evidence=evidence)


def test_the_first_bundle_states_the_confirming_replays() -> None:
    assert tuple(first_reproduced(divergence({"hits": 2, "runs": 3}))) == (2, 3)
    assert tuple(first_reproduced(divergence())) == (1, 1)
    assert tuple(first_reproduced(divergence({"hits": 4, "runs": 3}))) == (1, 1)  # nonsense


def test_an_isolation_finding_is_minimized_by_its_own_oracle(tmp_path: Path) -> None:
    host = FakeHost()
    found = divergence({"hits": 2, "runs": 3})
    judged: list[list[str]] = []

    async def own(candidate: Scenario) -> tuple[Trace, list[Failure]]:
        ids = [r.id for r in candidate.requests]
        judged.append(ids)
        return Trace(requests=()), [found] if "r2" in ids else []

    host.own_replays["isolation_divergence"] = own
    s = scenario()
    triage(host, tmp_path).handle(0, s, Trace(requests=()), [found], {"r2": LEARNT})
    assert host.replayed == [], "check's replay was used for an isolation finding"
    assert host.asked[0] == ("isolation_divergence", {"r2": LEARNT}) and judged
    minimized = next(r for r in host.records if r["type"] == "minimized")
    assert minimized["requests_after"] == 1
    first = next(r for r in host.records if r["type"] == "bundle")
    assert first["reproduced"] == [2, 3]
    stats = host.summary.failures[found.signature]
    assert [r.id for r in load_bundle(Path(stats.bundle)).scenario.requests] == ["r2"]


def test_an_isolation_finding_without_its_oracle_is_not_minimized_by_check(
        tmp_path: Path) -> None:
    host = FakeHost()  # no own replay: the oracles are off in this session
    found = divergence()
    triage(host, tmp_path).handle(0, scenario(), Trace(requests=()), [found], {})
    assert host.replayed == [] and host.records[-1]["type"] == "minimized"
    assert "not running in this session" in host.records[-1]["note"]
    assert not any(isinstance(e, MinimizationStarted) for e in host.events)


def test_a_stop_also_interrupts_an_own_oracle_replay(tmp_path: Path) -> None:
    host = FakeHost(stop_after=0)
    calls: list[Scenario] = []

    async def own(candidate: Scenario) -> tuple[Trace, list[Failure]]:
        calls.append(candidate)
        return Trace(requests=()), []

    host.own_replays["isolation_divergence"] = own
    found = divergence()
    triage(host, tmp_path).handle(0, scenario(), Trace(requests=()), [found], {})
    assert calls == [] and found.signature in host.summary.pending_minimizations
