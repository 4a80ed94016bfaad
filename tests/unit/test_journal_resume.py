"""The journal survives a torn last line, and folding it rebuilds the live summary."""

from __future__ import annotations

import json
from pathlib import Path

from fuzz import ledger
from fuzz.journal import Journal, read_journal
from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.redact import MASK, Redactor, parse_header
from fuzz.report import Summary


def test_reopening_cuts_a_torn_last_line_so_the_next_record_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as j:
        j.append({"type": "a"})
    with open(path, "a") as f:
        f.write('{"type": "torn", "x"')  # SIGKILL mid-write
    assert [r["type"] for r in read_journal(path)] == ["a"]
    with Journal(path) as j:
        j.append({"type": "b"})
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_journal_redacts_secrets_before_they_reach_disk(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path, Redactor(["s3cr3t-value"])) as j:
        j.append({"message": "echoed Bearer s3cr3t-value", "nested": ["s3cr3t-value"]})
    assert "s3cr3t" not in path.read_text() and MASK in path.read_text()


def test_redactor_ignores_short_values_and_header_parsing() -> None:
    assert Redactor(["ab", None, ""]).secrets == []
    assert parse_header("X-Token: a:b ") == ("X-Token", "a:b")
    for bad in ("novalue", ": x", "Bad Name: x"):
        try:
            parse_header(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def _scenario_and_trace(n: int) -> tuple[Scenario, Trace]:
    specs = tuple(RequestSpec(id=f"r{i}", body={"messages": []}, tags=("stream", f"t{i % 2}"))
                  for i in range(n))
    traces = tuple(RequestTrace(id=f"r{i}", sent_s=0.0, status=200 if i else None,
                                end_s=0.1 * (i + 1), deadline=None if i else "first_byte")
                   for i in range(n))
    return Scenario(requests=specs), Trace(requests=traces, wall_s=0.5)


def test_folding_the_records_gives_the_summary_the_live_campaign_had() -> None:
    live = Summary(seed=1, endpoint="http://x")
    records = [{"type": "started", "target": {"model": "m"}, "t": 0.0},
               {"type": "round", "round": 0, "t": 0.0}]
    fail = Failure(kind="server_error", signature="server_error|500|boom", message="boom")
    for i in range(3):
        scenario, trace = _scenario_and_trace(3)
        records.append(ledger.scenario_record(i, 0, 1.0 + i, scenario, trace, [fail]))
        records.append(ledger.failure_record(i, 1.5 + i, fail, new=i == 0, requests=3,
                                             minimize=ledger.PENDING if i == 0 else None))
    records.append({"type": "bundle", "signature": fail.signature, "path": "b/x"})
    for r in records:
        ledger.apply(live, r)
    again = ledger.fold(json.loads(json.dumps(records)), Summary(seed=1, endpoint="http://x"))
    for s in (live, again):
        assert (s.scenarios, s.requests, s.next_round, s.sessions) == (3, 9, 1, 1)
        assert s.statuses == {"200": 6, "first_byte": 3}
        assert s.features["stream"] == 9 and s.latency.total == 6
        assert s.failures[fail.signature].count == 3 and s.failures[fail.signature].bundle == "b/x"
        assert s.pending_minimizations == {fail.signature}
        assert s.elapsed_s == 3.5
    ledger.apply(again, {"type": "minimized", "signature": fail.signature, "requests_after": 1,
                         "reproduced": "3/3", "note": "ok"})
    assert not again.pending_minimizations and again.failures[fail.signature].requests_after == 1


def test_workers_journals_fold_into_one_summary() -> None:
    fail = Failure(kind="server_error", signature="server_error|500|boom", message="boom")
    journals: dict[int, list[dict]] = {}
    for worker in (0, 1):
        scenario, trace = _scenario_and_trace(2)
        records = [{"type": "started", "target": {"model": "m"}, "t": 0.0},
                   ledger.scenario_record(0, 0, 5.0 + worker, scenario, trace, [fail]),
                   ledger.failure_record(0, 5.0, fail, new=True, requests=2,
                                         minimize=ledger.PENDING),
                   {"type": "finished", "stopped_because": "duration reached", "t": 9.0 + worker}]
        if worker == 0:
            records.insert(-1, {"type": "minimized", "signature": fail.signature, "t": 8.0,
                                "requests_after": 1, "reproduced": "3/3", "note": "ok"})
        journals[worker] = records
    s = ledger.fold_journals(journals, Summary(seed=1, endpoint="x"))
    assert (s.scenarios, s.requests, s.sessions, s.elapsed_s) == (2, 4, 1, 10.0)
    assert s.failures[fail.signature].count == 2
    assert s.pending_minimizations == {fail.signature}, "worker 1 still owes its minimization"
    assert s.requests_per_s == 2 * (2 / 0.5), "the workers' rates add up"
    assert s.stopped_because == "duration reached"
    journals[1][-1] = {"type": "finished", "stopped_because": "interrupted"}
    del journals[1][2]
    s = ledger.fold_journals(journals, Summary(seed=1, endpoint="x"))
    assert s.stopped_because == "worker 0: duration reached; worker 1: interrupted"
    assert not s.pending_minimizations


def test_a_failure_seen_by_two_workers_keeps_the_earliest_time_and_the_bundlers_note() -> None:
    fail = Failure(kind="server_error", signature="server_error|500|boom", message="boom")

    def journal(t: float, requests: int, minimize: str, extra: list[dict]) -> list[dict]:
        return [{"type": "started", "target": {"model": "m"}, "t": 0.0},
                ledger.failure_record(0, t, fail, new=True, requests=requests, minimize=minimize),
                *extra]

    bundler = journal(3.0, 4, ledger.PENDING,
                      [{"type": "bundle", "signature": fail.signature, "path": "/b/x"},
                       {"type": "minimized", "signature": fail.signature, "t": 8.0,
                        "requests_after": 1, "reproduced": "3/3", "note": "shrunk to 1"}])
    other = journal(5.0, 2, f"{ledger.BUNDLED_ELSEWHERE} (/b/x)", [])
    for journals in ({0: other, 1: bundler}, {0: bundler, 1: other}):
        s = ledger.fold_journals(journals, Summary(seed=1, endpoint="x"))
        stats = s.failures[fail.signature]
        assert (stats.count, stats.first_seen_s, stats.requests_before) == (2, 3.0, 4), journals
        assert (stats.minimize_note, stats.bundle, stats.requests_after) == ("shrunk to 1", "/b/x", 1)
        assert not s.pending_minimizations
    # the worker that did not bundle saw it first (its bundle check raced): earliest time
    # still wins, the note stays the bundler's
    early_other = journal(1.0, 2, f"{ledger.BUNDLED_ELSEWHERE} (/b/x)", [])
    for journals in ({0: early_other, 1: bundler}, {0: bundler, 1: early_other}):
        stats = ledger.fold_journals(journals, Summary(seed=1, endpoint="x")).failures[fail.signature]
        assert (stats.first_seen_s, stats.requests_before, stats.minimize_note) == \
            (1.0, 4, "shrunk to 1")
