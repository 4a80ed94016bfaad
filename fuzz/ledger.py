"""The summary is a fold over the journal: the live campaign and `--resume` share it.

The campaign builds a record, appends it to the journal, then applies it here; a
resumed campaign applies the journal's records in order and ends up with the same
counters, known signatures, pending minimizations, next round and elapsed time.
Records are plain dicts (their JSON form); the builders below are their only makers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fuzz.model import Failure, Scenario, Trace
from fuzz.report import FailureStats, Summary

PENDING = "pending"


def outcome_key(status: int | None, deadline: str | None) -> str:
    """How a request ended, as the statuses table counts it."""
    return str(status) if status is not None else (deadline or "error")


def scenario_record(index: int, round_no: int, t_s: float, scenario: Scenario, trace: Trace,
                    failures: Iterable[Failure]) -> dict[str, Any]:
    """Everything the summary needs from one scenario, compact (no bodies)."""
    features: dict[str, int] = {}
    for spec in scenario.requests:
        for tag in spec.tags:
            features[tag] = features.get(tag, 0) + 1
    return {"type": "scenario", "index": index, "round": round_no, "t": round(t_s, 3),
            "requests": len(scenario.requests), "wall_s": round(trace.wall_s, 3),
            "statuses": [r.status for r in trace.requests],
            "outcomes": [outcome_key(r.status, r.deadline) for r in trace.requests],
            "latencies_ms": [None if r.latency_s is None or r.status is None
                             else round(r.latency_s * 1000, 1) for r in trace.requests],
            "features": features, "failures": sorted({f.signature for f in failures})}


def failure_record(scenario_index: int, t_s: float, failure: Failure, *, new: bool,
                   requests: int, minimize: str | None) -> dict[str, Any]:
    """`minimize` is PENDING when a minimization is owed, else why there is none."""
    return {"type": "failure", "scenario": scenario_index, "t": round(t_s, 3), "new": new,
            "requests_before": requests, "minimize": minimize, **failure.to_json()}


def apply(s: Summary, r: Mapping[str, Any]) -> None:
    """Fold one journal record into the summary (unknown types are ignored)."""
    kind = r.get("type")
    if isinstance(r.get("t"), (int, float)):
        s.elapsed_s = max(s.elapsed_s, float(r["t"]))
    if kind == "started":
        s.sessions += 1
        s.target = dict(r.get("target") or s.target)
    elif kind == "round":
        s.next_round = max(s.next_round, int(r["round"]) + 1)
    elif kind == "scenario":
        _apply_scenario(s, r)
    elif kind == "failure":
        _apply_failure(s, r)
    elif kind == "bundle":
        stats = s.failures.get(r["signature"])
        if stats is not None:
            stats.bundle = r["path"]
    elif kind == "minimized":
        stats = s.failures.get(r["signature"])
        s.pending_minimizations.discard(r["signature"])
        if stats is not None:
            stats.reproduced = r.get("reproduced")
            stats.requests_after = r.get("requests_after")
            stats.minimize_note = r.get("note", "")
    elif kind == "target":
        if r.get("event") == "restarted":
            s.target_restarts += 1
        elif r.get("event") == "waited":
            s.target_waits.append(float(r.get("wait_s", 0.0)))
    elif kind == "generator_error":
        s.generator_errors += 1
    elif kind == "finished":
        s.stopped_because = r.get("stopped_because", s.stopped_because)


def _apply_scenario(s: Summary, r: Mapping[str, Any]) -> None:
    s.scenarios += 1
    s.requests += int(r["requests"])
    s.fuzz_s += float(r.get("wall_s", 0.0))
    s.next_round = max(s.next_round, int(r.get("round", -1)) + 1) if "round" in r else s.next_round
    t = float(r.get("t", 0.0))
    outcomes = r.get("outcomes") or [outcome_key(st, None) for st in r.get("statuses", [])]
    latencies = r.get("latencies_ms") or [None] * len(outcomes)
    for outcome, ms in zip(outcomes, latencies):
        s.statuses[outcome] += 1
        latency = None if ms is None else ms / 1000
        if latency is not None:
            s.latency.add(latency)
        s.timeline.add_request(t, latency, error=not outcome.startswith("2"))
    s.features.update(r.get("features") or {})


def _apply_failure(s: Summary, r: Mapping[str, Any]) -> None:
    sig = r["signature"]
    known = s.failures.get(sig)
    if known is not None:
        known.count += 1
        return
    minimize = r.get("minimize")
    s.failures[sig] = FailureStats(
        kind=r["kind"], signature=sig, message=r.get("message", ""), count=1,
        first_seen_s=float(r.get("t", 0.0)), requests_before=int(r.get("requests_before", 0)),
        minimize_note="" if minimize in (None, PENDING) else str(minimize))
    s.timeline.add_failure(float(r.get("t", 0.0)))
    if minimize == PENDING:
        s.pending_minimizations.add(sig)


def fold(records: Iterable[Mapping[str, Any]], summary: Summary) -> Summary:
    """Apply every record in order; returns `summary` for convenience."""
    for r in records:
        apply(summary, r)
    return summary
