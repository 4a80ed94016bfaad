"""A new hang is replayed once before it counts: on a loaded CPU target a learnt
deadline fires from queueing alone, and such a hang must neither be minimized nor fail
the run unless it comes back. Old journals (no `confirmed` field) read as confirmed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fuzz import ledger
from fuzz.bundle import load_bundle
from fuzz.events import MinimizationStarted
from fuzz.model import Deadlines, Failure, RequestTrace, Scenario, Trace
from fuzz.oracles import check
from fuzz.report import UNCONFIRMED_TITLE, FailureStats, Summary, render_report
from fuzz.triage import MAX_RECHECKS, NOT_REPRODUCED, needs_recheck, recheck_skipped
from test_triage import LEARNT, FakeHost, f, fails, scenario, triage

HANG = "hang|-|no response within the first-byte deadline|first_byte"


def hangs(s: Scenario) -> Trace:
    """The request that says boom hits its learnt first-byte deadline."""
    return Trace(requests=tuple(
        RequestTrace(id=r.id, sent_s=0.0, deadline="first_byte", deadline_s=5.0)
        for r in s.requests if r.body["messages"][0]["content"] == "boom"), wall_s=5.0)


class HangHost(FakeHost):
    """Its replays hang again or not, in the order of `again` (then always `last`)."""

    def __init__(self, again: list[bool], *, last: bool = True, left_s: float = 600.0,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.again, self.last, self.left_s = list(again), last, left_s

    def time_left(self) -> float:
        return self.left_s

    async def replay(self, s: Scenario, deadlines: Mapping[str, Deadlines]) -> Trace:
        self.replayed.append((s, dict(deadlines)))
        if self.again.pop(0) if self.again else self.last:
            return hangs(s)
        return Trace(requests=(), wall_s=1.5)


def seen_hang(host: FakeHost, tmp_path: Path, index: int = 0, **kw: Any) -> None:
    s = scenario()
    trace = hangs(s)
    failures = check(s, trace)
    assert [x.signature for x in failures] == [HANG]
    triage(host, tmp_path, **kw).handle(index, s, trace, failures, {"r2": LEARNT})


def test_needs_recheck_only_for_hangs_that_alone_make_a_scenario_new() -> None:
    hang, wedged, boom = f("hang"), f("target_wedged"), f("server_error")
    assert needs_recheck(hang, None, [hang])
    assert not needs_recheck(wedged, None, [wedged]), "a failed canary is no deadline"
    assert not needs_recheck(hang, None, [hang, boom]), "next to a new 500 it is an echo"
    assert not needs_recheck(boom, None, [boom])
    assert not needs_recheck(hang, FailureStats("hang", "hang", "m"), [hang]), "confirmed"
    unconfirmed = FailureStats("hang", "hang", "m", confirmed=False, rechecks=1)
    assert needs_recheck(hang, unconfirmed, [hang])
    unconfirmed.rechecks = MAX_RECHECKS
    assert not needs_recheck(hang, unconfirmed, [hang])
    assert recheck_skipped(600.0, 5.0, False) is None
    assert "stopping" in str(recheck_skipped(600.0, 5.0, True))
    assert "time ran out" in str(recheck_skipped(4.0, 5.0, False))


def test_a_hang_that_does_not_come_back_is_bundled_unconfirmed_and_not_minimized(
        tmp_path: Path) -> None:
    host = HangHost([False])
    seen_hang(host, tmp_path)
    assert len(host.replayed) == 1 and host.replayed[0][1] == {"r2": LEARNT}
    assert [r["type"] for r in host.records] == ["failure", "bundle"]
    record = host.records[0]
    assert record["confirmed"] is False and record["minimize"] == NOT_REPRODUCED
    assert record["recheck"] == {"signatures": [], "wall_s": 1.5}
    assert host.records[1]["reproduced"] == [1, 2]
    assert not any(isinstance(e, MinimizationStarted) for e in host.events)
    summary = host.summary
    assert not summary.confirmed_failures and not summary.pending_minimizations
    stats = summary.unconfirmed_failures[HANG]
    assert tuple(load_bundle(Path(stats.bundle)).reproduced) == (1, 2)
    report = render_report(summary)
    assert "## Failures (0 unique, 0 seen)" in report
    assert f"## {UNCONFIRMED_TITLE} (1 unique, 1 seen)" in report
    assert "no failure in 1.5s" in report
    resumed = ledger.fold(host.records, Summary(seed=0, endpoint="x"))  # --resume
    assert not resumed.confirmed_failures and resumed.unconfirmed_failures[HANG].rechecks == 1


def test_a_hang_that_comes_back_on_recheck_is_minimized_as_before(tmp_path: Path) -> None:
    host = HangHost([], last=True)
    seen_hang(host, tmp_path)
    record = host.records[0]
    assert record["confirmed"] is True and record["minimize"] == ledger.PENDING
    assert record["recheck"]["signatures"] == [HANG]
    assert host.records[1] == {**host.records[1], "type": "bundle", "reproduced": [2, 2]}
    minimized = next(r for r in host.records if r["type"] == "minimized")
    assert minimized["requests_after"] == 1
    assert all(d == {"r2": LEARNT} for _, d in host.replayed)
    assert list(host.summary.confirmed_failures) == [HANG]
    assert UNCONFIRMED_TITLE not in render_report(host.summary)


@pytest.mark.parametrize("stop_after, left_s, why", [(0, 600.0, "stopping"),
                                                     (None, 2.0, "time ran out")])
def test_a_hang_that_cannot_be_rechecked_is_not_counted(
        tmp_path: Path, stop_after: int | None, left_s: float, why: str) -> None:
    host = HangHost([], left_s=left_s, stop_after=stop_after)
    seen_hang(host, tmp_path)
    assert host.replayed == []
    record = host.records[0]
    assert record["confirmed"] is False and why in record["recheck"]["skipped"]
    assert why in record["minimize"] and not host.summary.confirmed_failures


def test_a_hang_next_to_a_new_server_error_is_not_rechecked(tmp_path: Path) -> None:
    host = HangHost([False])
    s = scenario()
    trace = Trace(requests=(*fails(s).requests,
                            RequestTrace(id="r0", sent_s=0.0, deadline="stall", deadline_s=5.0)))
    triage(host, tmp_path, minimize=False).handle(0, s, trace, check(s, trace), {})
    assert host.replayed == []
    assert all("confirmed" not in r for r in host.records if r["type"] == "failure")
    assert len(host.summary.confirmed_failures) == 2


def test_an_unconfirmed_hang_seen_again_is_rechecked_and_then_confirmed(tmp_path: Path) -> None:
    host = HangHost([False, True])
    seen_hang(host, tmp_path, index=0)
    seen_hang(host, tmp_path, index=1)
    again = [r for r in host.records if r["type"] == "failure"][1]
    assert not again["new"] and again["confirmed"] is True
    assert again["minimize"] == ledger.PENDING
    bundles = [r for r in host.records if r["type"] == "bundle"]
    assert [b["reproduced"] for b in bundles[:2]] == [[1, 2], [2, 2]]
    assert any(isinstance(e, MinimizationStarted) for e in host.events)
    stats = host.summary.confirmed_failures[HANG]
    assert stats.count == 2 and stats.requests_after == 1 and stats.rechecks == 2
    resumed = ledger.fold(host.records, Summary(seed=0, endpoint="x"))
    assert HANG in resumed.confirmed_failures and not resumed.pending_minimizations


def test_an_unconfirmed_hang_is_rechecked_at_most_max_rechecks_times(tmp_path: Path) -> None:
    host = HangHost([], last=False)
    for index in range(MAX_RECHECKS + 2):
        seen_hang(host, tmp_path, index=index)
    assert len(host.replayed) == MAX_RECHECKS
    stats = host.summary.unconfirmed_failures[HANG]
    assert stats.count == MAX_RECHECKS + 2 and stats.rechecks == MAX_RECHECKS


def test_a_confirming_recheck_interrupted_while_minimizing_is_finished_on_resume(
        tmp_path: Path) -> None:
    host = HangHost([False, True], stop_after=3)  # two re-checks, then one minimizer replay
    seen_hang(host, tmp_path, index=0)
    seen_hang(host, tmp_path, index=1)
    assert host.summary.pending_minimizations == {HANG}
    assert ledger.pending_of(host.records) == {HANG}
    resumed = HangHost([])
    ledger.fold(host.records, resumed.summary)
    assert resumed.summary.pending_minimizations == {HANG}
    triage(resumed, tmp_path).finish_pending()
    assert not resumed.summary.pending_minimizations
    assert resumed.summary.confirmed_failures[HANG].requests_after == 1


def test_an_old_journal_failure_record_without_the_field_folds_as_confirmed() -> None:
    old = {"type": "failure", "scenario": 0, "t": 3.0, "new": True, "requests_before": 4,
           "minimize": ledger.PENDING, "kind": "hang", "signature": HANG, "message": "m",
           "request_id": "r2", "evidence": {}}
    summary = ledger.fold([old, {**old, "new": False, "minimize": None}],
                          Summary(seed=0, endpoint="x"))
    assert summary.failures[HANG].confirmed and summary.failures[HANG].count == 2
    assert list(summary.confirmed_failures) == [HANG] and not summary.unconfirmed_failures
    assert summary.pending_minimizations == {HANG} == ledger.pending_of([old])
    assert UNCONFIRMED_TITLE not in render_report(summary)


def test_a_run_whose_only_failure_is_an_unconfirmed_hang_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fuzz.campaign

    def run(confirmed: bool) -> int:
        host = HangHost([], last=confirmed)

        def fake_campaign(config: Any, *_a: Any, **_k: Any) -> Summary:
            seen_hang(host, tmp_path / str(confirmed), minimize=False)
            config.out_dir.mkdir(parents=True, exist_ok=True)
            (config.out_dir / "report.md").write_text(render_report(host.summary))
            return host.summary

        monkeypatch.setattr(fuzz.campaign, "run_campaign", fake_campaign)
        from fuzz.cli import main
        return main(["run", "--endpoint", "http://127.0.0.1:9", "--model", "m",
                     "--duration", "1", "--seed", "1", "--out", str(tmp_path / f"c{confirmed}")])

    assert run(confirmed=False) == 0
    assert run(confirmed=True) == 1


def test_failure_records_carry_the_recheck_only_when_there_was_one() -> None:
    hang = Failure(kind="hang", signature=HANG, message="m")
    plain = ledger.failure_record(0, 1.0, hang, new=True, requests=1, minimize=None)
    assert "confirmed" not in plain and "recheck" not in plain and ledger.confirms(plain)
    checked = ledger.failure_record(0, 1.0, hang, new=True, requests=1, minimize=None,
                                    confirmed=False, recheck={"signatures": [], "wall_s": 1.0})
    assert checked["confirmed"] is False and not ledger.confirms(checked)


def test_summary_json_and_the_status_line_keep_an_unconfirmed_hang_apart(tmp_path: Path) -> None:
    from fuzz.outputs import summary_json, validate_summary
    from fuzz.progress import status_line

    host = HangHost([False])
    seen_hang(host, tmp_path)
    doc = summary_json(host.summary)
    validate_summary(doc)
    assert doc["failures"] == []
    [apart] = doc["unconfirmed"]
    assert apart["signature"] == HANG and apart["bundle"] and apart["rechecks"] == 1
    line = status_line(host.summary, 10.0, 50.0)
    assert "failures 0 unique" in line and "+1 hang(s) not reproduced" in line
    confirmed = HangHost([True])
    seen_hang(confirmed, tmp_path / "again")
    doc = summary_json(confirmed.summary)
    validate_summary(doc)
    assert [f["signature"] for f in doc["failures"]] == [HANG] and doc["unconfirmed"] == []
    assert "not reproduced" not in status_line(confirmed.summary, 10.0, 50.0)


def test_the_html_report_mentions_unconfirmed_hangs_without_counting_them(tmp_path: Path) -> None:
    from fuzz.outputs import summary_json
    from fuzz.report_html import render_html

    host = HangHost([False])
    seen_hang(host, tmp_path)
    page = render_html(summary_json(host.summary), tmp_path)
    assert "0 unique failure(s)" in page and "1 hang(s) not reproduced on re-check" in page


def test_the_recheck_replays_under_the_ceiling_and_minimizing_under_the_learnt_deadlines(
        tmp_path: Path) -> None:
    """A learnt deadline flags slowness; the re-check asks whether the request answers at
    all within the ceilings. The minimizer then keeps the original's deadlines, so the
    signature it chases stays the one that fired."""
    ceiling = Deadlines(first_byte_s=120.0, stall_s=60.0, total_s=300.0)
    host = HangHost([], last=True)
    seen_hang(host, tmp_path, recheck_deadlines=ceiling)
    recheck, *minimizing = host.replayed
    assert recheck[1] == {f"r{i}": ceiling for i in range(4)}
    assert minimizing and all(d == {"r2": LEARNT} for _, d in minimizing)
    slow = HangHost([False])  # answered within the ceiling: slow, not hung
    seen_hang(slow, tmp_path / "slow", recheck_deadlines=ceiling)
    assert slow.records[0]["confirmed"] is False and len(slow.replayed) == 1
