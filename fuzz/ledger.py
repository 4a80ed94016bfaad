"""The summary is a fold over the journal: the live campaign and `--resume` share it.

The campaign builds a record, appends it to the journal, then applies it here; a
resumed campaign applies the journal's records in order and ends up with the same
counters, known signatures, pending minimizations, next round and elapsed time.
Records are plain dicts (their JSON form); the builders below are their only makers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fuzz.model import Failure, Scenario, Trace
from fuzz.report import FailureStats, Summary

PENDING = "pending"
GENERATED = "generated"  # the origin of a fresh Hypothesis scenario (else: steering ops)
# how a worker's failure record starts its `minimize` when another worker bundled it
BUNDLED_ELSEWHERE = "not minimized here: another worker bundled it"


def outcome_key(status: int | None, deadline: str | None) -> str:
    """How a request ended, as the statuses table counts it."""
    return str(status) if status is not None else (deadline or "error")


def scenario_record(index: int, round_no: int, t_s: float, scenario: Scenario, trace: Trace,
                    failures: Iterable[Failure], *,
                    cuts: list[dict[str, Any]] | None = None,
                    server_features: Iterable[str] = (), origin: str = GENERATED,
                    isolation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the summary needs from one scenario, compact (no bodies). `cuts` (see
    `fuzz.harness.cut_records`) says which deadline cut which request, at what limit
    and whether that limit was learnt; the key is left out when nothing was cut.
    `server_features` are the server states it reached (`fuzz.signals`), `origin`
    "generated" or the steering ops that made it; `isolation` the isolation and
    interference counters of this scenario (`fuzz.isolation_watch.Judged.counts`),
    left out when it was not judged."""
    features: dict[str, int] = {}
    for spec in scenario.requests:
        for tag in spec.tags:
            features[tag] = features.get(tag, 0) + 1
    extra: dict[str, Any] = {"cuts": cuts} if cuts else {}
    if isolation is not None:
        extra["isolation"] = dict(isolation)
    return {"type": "scenario", "index": index, "round": round_no, "t": round(t_s, 3), **extra,
            "origin": origin, "server_features": sorted(set(server_features)),
            "requests": len(scenario.requests), "wall_s": round(trace.wall_s, 3),
            "statuses": [r.status for r in trace.requests],
            "outcomes": [outcome_key(r.status, r.deadline) for r in trace.requests],
            "latencies_ms": [None if r.latency_s is None or r.status is None
                             else round(r.latency_s * 1000, 1) for r in trace.requests],
            "features": features, "failures": sorted({f.signature for f in failures})}


def failure_record(scenario_index: int, t_s: float, failure: Failure, *, new: bool,
                   requests: int, minimize: str | None, confirmed: bool | None = None,
                   recheck: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`minimize` is PENDING when a minimization is owed, else why there is none.
    `confirmed` and `recheck` (what the re-check replay saw, see `fuzz.triage`) are
    left out unless the failure was re-checked: a record without them is confirmed."""
    extra: dict[str, Any] = {}
    if confirmed is not None:
        extra["confirmed"] = confirmed
    if recheck is not None:
        extra["recheck"] = dict(recheck)
    return {"type": "failure", "scenario": scenario_index, "t": round(t_s, 3), "new": new,
            "requests_before": requests, "minimize": minimize, **extra, **failure.to_json()}


def confirms(r: Mapping[str, Any]) -> bool:
    """Whether a failure record confirms its signature: its `confirmed` when it has
    one, else whether it is the first record of it (journals older than re-checks,
    and every failure that is not re-checked). A signature is confirmed once any of
    its records confirms it; a later re-check that misses never unconfirms it."""
    return r.get("confirmed", bool(r.get("new"))) is not False


def _recheck_of(r: Mapping[str, Any]) -> dict[str, Any] | None:
    recheck = r.get("recheck")
    return dict(recheck) if isinstance(recheck, Mapping) else None


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
    elif kind == "bundle_error":
        stats = s.failures.get(r["signature"])
        if stats is not None:
            note = f"bundle not written: {r.get('error', '?')}"
            stats.minimize_note = f"{stats.minimize_note}; {note}" if stats.minimize_note else note
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
    elif kind == "noise":
        s.noise = {"source": r.get("source", "?"), "image": bool(r.get("image", True)),
                   "model": dict(r.get("model") or {})}
        s.isolation_note = ""
    elif kind == "victim":
        s.victim = {"spec": dict(r.get("spec") or {}), "alone": dict(r.get("alone") or {})}
    elif kind == "isolation" and r.get("event") == "off":
        s.isolation_note = str(r.get("reason", ""))
    elif kind == "tokens":
        scale = r.get("scale")
        s.token_scale = dict(scale) if isinstance(scale, Mapping) else None
        s.token_scale_measured = True
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
    _apply_states(s, r, t)
    iso = r.get("isolation")
    if isinstance(iso, Mapping):
        if iso.get("skipped"):
            s.isolation["skipped"] += 1
        else:
            s.isolation["checked"] += 1
            s.isolation.update({k: int(v) for k, v in iso.items()
                                if k in ISOLATION_COUNTERS and isinstance(v, (int, float))})
        s.isolation_s += float(iso.get("s", 0.0))


ISOLATION_COUNTERS = ("probes", "victims", "suspects", "confirmed", "unconfirmed", "replays",
                      "slow_suspects", "slow_confirmed", "slow_unconfirmed", "slow_replays")


def _apply_states(s: Summary, r: Mapping[str, Any], t: float) -> None:
    """Server states: counts, first reached (earliest, also across workers), and per
    origin op how many scenarios it made and how many reached a new state."""
    reached = [str(f) for f in r.get("server_features") or []]
    origin = str(r.get("origin") or GENERATED)
    new = [f for f in reached if s.server_states[f] == 0]
    for f in reached:
        if f not in s.state_first_s or t < s.state_first_s[f]:
            s.state_first_s[f], s.state_first_origin[f] = t, origin
    s.server_states.update(reached)
    for op in origin.split("+"):
        s.origins[op] += 1
        s.origins_new[op] += bool(new)
    s.steered += origin != GENERATED


def _bundled_here(r: Mapping[str, Any]) -> bool:
    """A failure record of the worker that bundled the signature (new to it, and not
    left to another worker's bundle)."""
    return bool(r.get("new")) and not str(r.get("minimize") or "").startswith(BUNDLED_ELSEWHERE)


def _apply_failure(s: Summary, r: Mapping[str, Any]) -> None:
    """Count a failure. Across workers' journals (`fold_journals`) the first seen time
    is the earliest of any worker, and the worker that bundled it (the earliest such,
    should two have raced) gives its requests and minimization note."""
    sig, t = r["signature"], float(r.get("t", 0.0))
    minimize = r.get("minimize")
    note = "" if minimize in (None, PENDING) else str(minimize)
    known = s.failures.get(sig)
    recheck = _recheck_of(r)
    if known is not None:
        known.count += 1
        if recheck is not None:
            known.recheck = recheck
            known.rechecks += "signatures" in recheck
        if confirms(r) and not known.confirmed:  # re-checked later: now it counts
            known.confirmed = True
            known.requests_before = int(r.get("requests_before", 0))
            known.minimize_note = note
            if minimize == PENDING:
                s.pending_minimizations.add(sig)
        if _bundled_here(r) and (known.minimize_note.startswith(BUNDLED_ELSEWHERE)
                                 or t < known.first_seen_s):
            known.requests_before = int(r.get("requests_before", 0))
            known.minimize_note = note  # its own `minimized` record, if any, follows
            if minimize == PENDING:
                s.pending_minimizations.add(sig)
        known.first_seen_s = min(known.first_seen_s, t)
        return
    s.failures[sig] = FailureStats(
        kind=r["kind"], signature=sig, message=r.get("message", ""), count=1,
        first_seen_s=t, requests_before=int(r.get("requests_before", 0)), minimize_note=note,
        confirmed=r.get("confirmed", True) is not False, recheck=recheck,
        rechecks=int(recheck is not None and "signatures" in recheck))
    s.timeline.add_failure(t)
    if minimize == PENDING:
        s.pending_minimizations.add(sig)


def fold(records: Iterable[Mapping[str, Any]], summary: Summary) -> Summary:
    """Apply every record in order; returns `summary` for convenience."""
    for r in records:
        apply(summary, r)
    return summary


def pending_of(records: Iterable[Mapping[str, Any]]) -> set[str]:
    """Signatures one journal owes a minimization for (new or confirmed by a later
    re-check, pending, not minimized)."""
    owed: set[str] = set()
    for r in records:
        if (r.get("type") == "failure" and r.get("minimize") == PENDING
                and (r.get("new") or r.get("confirmed") is True)):
            owed.add(r["signature"])
        elif r.get("type") == "minimized":
            owed.discard(r.get("signature"))
    return owed


def fold_journals(journals: Mapping[int, Sequence[Mapping[str, Any]]],
                  summary: Summary) -> Summary:
    """Fold the journals of workers (by worker index) that ran side by side into one
    summary.

    Counters add up. Sessions and elapsed time are the most of any worker (they ran at
    the same time); the rate while sending is the sum of the workers' rates; a
    minimization is pending when the worker that owes it has not done it; the reason
    for stopping is the workers' common one, else each worker's."""
    sessions, rate, pending, reasons = 0, 0.0, set(), {}
    for worker, records in sorted(journals.items()):
        fold(records, summary)
        sessions = max(sessions, sum(r.get("type") == "started" for r in records))
        sent = [r for r in records if r.get("type") == "scenario"]
        busy_s = sum(float(r.get("wall_s", 0.0)) for r in sent)
        rate += sum(int(r["requests"]) for r in sent) / busy_s if busy_s > 0 else 0.0
        pending |= pending_of(records)
        ends = [r for r in records if r.get("type") == "finished"]
        reasons[worker] = str(ends[-1].get("stopped_because")) if ends else "running"
    summary.sessions = sessions
    summary.fuzz_s = summary.requests / rate if rate > 0 else summary.fuzz_s
    summary.pending_minimizations = pending & set(summary.failures)
    if reasons:
        distinct = set(reasons.values())
        summary.stopped_because = (distinct.pop() if len(distinct) == 1 else
                                   "; ".join(f"worker {w}: {why}" for w, why in reasons.items()))
    return summary
