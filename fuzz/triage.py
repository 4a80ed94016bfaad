"""Triage: what happens to the failures of one scenario once the oracles found them.

Every failure is counted (a journal record). A signature seen for the first time is
bundled at once, as seen, so nothing is lost if minimizing is cut short; the
scenario's primary new failure (the most severe: the others are usually its echoes)
is then minimized, and the smaller scenario bundled over the first one. A
minimization cut short by a graceful stop is not journaled: it stays pending, and
`Triage.finish_pending` completes it in the next session.

The campaign owns the loop, the journal, the target and the way a scenario is sent;
triage reaches them only through `Host`. The decisions themselves (`unique`,
`primary_failure`, `minimize_decision`, `replay_deadlines`, `first_reproduced`) are
pure functions. A failure that `check` cannot reproduce (the isolation and interference
oracles judge a scenario against runs alone) is minimized with the replay its own
oracle provides (`Host.oracle_replay`), under the same stop and target checks.
A signature new to this campaign that another worker sharing its folder has already
bundled is counted as new here but neither bundled nor minimized again.

A hang (a learnt deadline that fired) is often CPU queueing on a loaded target, not a
wedge. So when new hangs are all that is new in a scenario, the scenario is replayed
once before they count (`needs_recheck`), under the ceiling deadlines when the campaign
gives them (`TriageConfig.recheck_deadlines`): a request that answers within those was
slow, not hung. A hang that shows up again is handled as any new failure (bundled as
reproduced 2 of 2, minimized); one that does not is journaled `confirmed: false`,
bundled as 1 of 2 so nothing is lost, not minimized, and reported apart without failing
the run. Seen again later in the campaign, an unconfirmed hang is re-checked again (at
most `MAX_RECHECKS` replays in all); a re-check that hangs again confirms it, and it is
then bundled and minimized from that scenario exactly as if it had been confirmed when
first seen.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fuzz import ledger
from fuzz.bundle import Bundle, Reproduced, fuzzer_info, load_bundle, write_bundle
from fuzz.events import BundleWritten, Event, FailureFound, MinimizationStarted, Noted
from fuzz.isolation_watch import OWN_REPLAY_KINDS
from fuzz.minimize import Budget, MinimizeResult, Replay, minimize
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.oracles import check
from fuzz.redact import Redactor
from fuzz.report import FailureStats, Summary

__all__ = ["Host", "Recheck", "Stopped", "Triage", "TriageConfig", "first_reproduced",
           "minimize_decision", "needs_recheck", "primary_failure", "replay_deadlines",
           "unique"]

MIN_TIME_TO_MINIMIZE_S = 30.0
RECHECK_KINDS = frozenset({"hang"})  # not target_wedged: a failed canary is no deadline
MAX_RECHECKS = 3  # re-check replays per unconfirmed signature over a campaign
NOT_REPRODUCED = ("not minimized: no hang on re-check (likely queueing on a loaded "
                  "target)")
_T = TypeVar("_T")


class Stopped(Exception):
    """A graceful stop was asked for while a minimization was replaying."""


class Host(Protocol):
    """What triage needs from the campaign running it."""

    summary: Summary

    def record(self, rec: dict[str, Any]) -> None:
        """Journal a record, then fold it into `summary`."""

    def emit(self, event: Event) -> None: ...

    def drive(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine to completion on the campaign's loop."""

    def now(self) -> float:
        """Campaign seconds (over all sessions), for journal records."""

    def time_left(self) -> float: ...

    def stopping(self) -> bool: ...

    def target_evidence(self) -> dict[str, Any]:
        """The target's identity and recent evidence (log tail) for a bundle."""

    def bundled_elsewhere(self, signature: str) -> Path | None:
        """Another worker's bundle of this signature (workers sharing a folder)."""

    def may_rewrite_bundle(self) -> bool:
        """False once the campaign folder reached its disk cap: a failure already
        bundled is then not bundled again (a new one still is)."""

    async def replay(self, scenario: Scenario, deadlines: Mapping[str, Deadlines]) -> Trace:
        """Send `scenario` once more (target recovered first if needed), each request
        under the deadlines named for its id, the others under the loosest of them."""

    def oracle_replay(self, scenario: Scenario, failure: Failure,
                      deadlines: Mapping[str, Deadlines]) -> Replay | None:
        """For a failure only its own oracle can judge (isolation, interference): a
        replay judged by that oracle (target recovered first if needed); else None."""


@dataclass(frozen=True)
class TriageConfig:
    """`recheck_deadlines`: the ceilings a hang's re-check replays every request under
    (None: the deadlines the scenario was sent with). A learnt deadline flags a request
    slower than usual; only one that does not answer within the ceilings either is hung.
    On a host shared with other load, re-checks under the learnt deadlines hung again
    from contention alone."""

    bundles_dir: Path
    seed: int
    minimize: bool = True
    budget: Budget = Budget(max_replays=40, max_wall_s=240.0)
    recheck_deadlines: Deadlines | None = None


_SEVERITY = ("target_dead", "target_wedged", "hang", "server_error", "transport")


def _severity(failure: Failure) -> int:
    """Lower is more severe: a dead target explains the 500s and resets around it."""
    return _SEVERITY.index(failure.kind) if failure.kind in _SEVERITY else len(_SEVERITY)


def primary_failure(failures: list[Failure]) -> Failure | None:
    """The one new failure of a scenario worth minimizing: the most severe, first on ties."""
    return min(failures, key=_severity) if failures else None


def first_reproduced(failure: Failure) -> Reproduced:
    """What the first bundle says of a failure's reproduction: the controlled replays
    that confirmed it when there were any (isolation, interference), else 1 of 1."""
    confirmation = failure.evidence.get("confirmation")
    if isinstance(confirmation, Mapping):
        hits, runs = confirmation.get("hits"), confirmation.get("runs")
        if isinstance(hits, int) and isinstance(runs, int) and 0 <= hits <= runs and runs > 0:
            return Reproduced(hits, runs)
    return Reproduced(1, 1)


def unique(failures: list[Failure]) -> list[Failure]:
    """One failure per signature, the first of each, in order."""
    seen: dict[str, Failure] = {}
    for f in failures:
        seen.setdefault(f.signature, f)
    return list(seen.values())


def minimize_decision(failure: Failure, primary: Failure | None, *, enabled: bool,
                      time_left_s: float) -> str:
    """`ledger.PENDING` when this new failure gets minimized, else why it does not."""
    if not enabled:
        return "not minimized (--no-minimize)"
    if failure is not primary:
        return (f"not minimized: seen together with `{primary.signature[:80]}`" if primary
                else "not minimized")
    if time_left_s < MIN_TIME_TO_MINIMIZE_S:
        return "not minimized: campaign time ran out"
    return ledger.PENDING


def needs_recheck(failure: Failure, stats: FailureStats | None,
                  fresh: Sequence[Failure]) -> bool:
    """Whether `failure` is replayed once before it counts: a hang that is new (`stats`
    None) or still unconfirmed with re-checks to spare, when `fresh` (the scenario's
    failures that are new or unconfirmed) holds nothing but hangs. Next to a new
    server error or dead target the scenario is new anyway and a hang is its echo."""
    if failure.kind not in RECHECK_KINDS:
        return False
    if stats is not None and (stats.confirmed or stats.rechecks >= MAX_RECHECKS):
        return False
    return all(f.kind in RECHECK_KINDS for f in fresh)


def recheck_skipped(time_left_s: float, wall_s: float, stopping: bool) -> str | None:
    """Why a re-check replay cannot run (None: it can): it takes about the original's
    wall time, which the campaign must still have."""
    if stopping:
        return "not re-checked: the campaign is stopping"
    if time_left_s < max(wall_s, 1.0):
        return "not re-checked: campaign time ran out"
    return None


@dataclass(frozen=True)
class Recheck:
    """What the one re-check replay of a scenario saw: the (unredacted) signatures and
    its wall time, or why it was not run (`skipped`)."""

    signatures: frozenset[str] = frozenset()
    wall_s: float = 0.0
    skipped: str | None = None

    def confirms(self, failure: Failure) -> bool:
        return self.skipped is None and failure.signature in self.signatures

    def to_json(self, redact: Redactor) -> dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {"signatures": sorted(redact.text(x) for x in self.signatures),
                "wall_s": round(self.wall_s, 3)}


def replay_deadlines(trace: Trace, fuzzer: Mapping[str, Any]) -> dict[str, Deadlines]:
    """The per-request deadlines a bundled run was sent with: the `request_deadlines`
    the campaign stored in the bundle, else the trace's own for every request. A
    minimization replays under the original's deadlines, so a learnt deadline that
    fired keeps firing at the same limit (and the signature stays the same)."""
    stored = fuzzer.get("request_deadlines")
    if isinstance(stored, Mapping):
        try:
            return {str(k): Deadlines(**v) for k, v in stored.items()}
        except TypeError:
            pass
    return {rt.id: trace.deadlines for rt in trace.requests}


class Triage:
    """Counts, bundles and minimizes failures for one campaign session."""

    def __init__(self, config: TriageConfig, host: Host, redact: Redactor | None = None) -> None:
        self.config, self.host = config, host
        self.redact = redact or Redactor()

    # -- a scenario's failures -------------------------------------------------------------

    def handle(self, index: int, scenario: Scenario, trace: Trace, failures: list[Failure],
               deadlines: Mapping[str, Deadlines]) -> None:
        """Count each unique failure; re-check hangs that alone make the scenario new;
        bundle the new ones; minimize the primary confirmed one."""
        known = self.host.summary.failures  # by redacted signature, as journaled
        distinct = unique(failures)
        fresh = [f for f in distinct
                 if self.key(f) not in known or not known[self.key(f)].confirmed]
        checked = [f for f in fresh if needs_recheck(f, known.get(self.key(f)), fresh)]
        seen = self.recheck(scenario, trace, deadlines) if checked else None
        verdicts: dict[str, bool] = {}  # by signature; only for re-checked failures
        for f in checked:
            if seen is not None and (seen.skipped is None or self.key(f) not in known):
                verdicts[f.signature] = seen.confirms(f)
        primary = primary_failure([f for f in distinct if self.key(f) not in known
                                   and verdicts.get(f.signature, True)])
        if primary is None:  # a hang confirmed by a later re-check
            primary = primary_failure([f for f in distinct if verdicts.get(f.signature)])
        for failure in distinct:
            new = self.key(failure) not in known
            confirmed = verdicts.get(failure.signature)
            first = new or confirmed is True  # bundled (again) and maybe minimized
            elsewhere = self.host.bundled_elsewhere(self.key(failure)) if first else None
            decision = (minimize_decision(failure, primary, enabled=self.config.minimize,
                                          time_left_s=self.host.time_left()) if first else None)
            if new and confirmed is False and seen is not None:
                decision = (NOT_REPRODUCED if seen.skipped is None
                            else f"not minimized: {seen.skipped}")
            if elsewhere is not None:
                decision = f"{ledger.BUNDLED_ELSEWHERE} ({elsewhere})"
            self.host.record(ledger.failure_record(
                index, self.host.now(), failure, new=new, requests=len(scenario.requests),
                minimize=decision, confirmed=confirmed,
                recheck=None if confirmed is None or seen is None else seen.to_json(self.redact)))
            self.host.emit(FailureFound(failure, new=new))
            if not first or elsewhere is not None:
                continue
            if not new and not self.host.may_rewrite_bundle():
                self.host.emit(Noted(f"{failure.signature[:80]} hung again on re-check; its "
                                     "bundle was not rewritten: the disk cap was reached"))
            else:
                reproduced = (first_reproduced(failure) if confirmed is None
                              else Reproduced(2 if confirmed else 1, 2))
                self.write(scenario, trace, failure, reproduced, len(scenario.requests),
                           deadlines=deadlines)
            if decision == ledger.PENDING:
                self.minimize(scenario, failure, deadlines)

    def recheck(self, scenario: Scenario, trace: Trace,
                deadlines: Mapping[str, Deadlines]) -> Recheck:
        """Replay `scenario` once, under the re-check ceilings when the config names them
        (else the deadlines it was sent with), and judge it with `check`. A replay that
        fails to run is a re-check that did not confirm."""
        skipped = recheck_skipped(self.host.time_left(), trace.wall_s, self.host.stopping())
        if skipped is not None:
            return Recheck(skipped=skipped)
        ceiling = self.config.recheck_deadlines
        limits = ({r.id: ceiling for r in scenario.requests} if ceiling is not None
                  else dict(deadlines))
        try:
            again = self.host.drive(self.host.replay(scenario, limits))
        except Exception as e:  # noqa: BLE001 - the next scenario meets a broken target too
            return Recheck(skipped=f"re-check failed: {type(e).__name__}: {e}"[:300])
        return Recheck(frozenset(f.signature for f in check(scenario, again)), again.wall_s)

    def key(self, failure: Failure) -> str:
        """The signature `failure` is journaled, counted and bundled under: redacted (a
        server may echo a secret into an error message that the signature quotes).
        Replays keep comparing the unredacted one, as the oracles see it."""
        return self.redact.text(failure.signature)

    def finish_pending(self) -> None:
        """Minimize failures a previous session journaled as new but never minimized."""
        summary = self.host.summary
        for sig in sorted(summary.pending_minimizations):
            if self.host.stopping():
                return
            stats = summary.failures.get(sig)
            try:
                if stats is None:
                    raise ValueError("the journal has no failure record for it")
                if stats.bundle is None:
                    raise ValueError("its bundle was never written")
                bundle = load_bundle(Path(stats.bundle))
            except Exception as e:  # a damaged bundle must not stop the campaign
                self.host.record({"type": "minimized", "signature": sig,
                                  "t": round(self.host.now(), 3),
                                  "requests_before": stats.requests_before if stats else 0,
                                  "requests_after": None, "reproduced": None,
                                  "note": f"not minimized after resume: {e}"})
                continue
            self.minimize(bundle.scenario, bundle.failure,
                          replay_deadlines(bundle.trace, bundle.fuzzer), resumed=True)

    # -- minimizing ------------------------------------------------------------------------

    def minimize(self, scenario: Scenario, failure: Failure,
                 deadlines: Mapping[str, Deadlines], resumed: bool = False) -> None:
        """Shrink `scenario` while `failure` reproduces; journal and bundle the result."""
        n = len(scenario.requests)
        budget = Budget(max_replays=self.config.budget.max_replays,
                        max_wall_s=min(self.config.budget.max_wall_s,
                                       max(self.host.time_left(), MIN_TIME_TO_MINIMIZE_S)))
        frozen = dict(deadlines)
        own = self.host.oracle_replay(scenario, failure, frozen)
        if own is None and failure.kind in OWN_REPLAY_KINDS:
            self.host.record({"type": "minimized", "signature": failure.signature,
                              "t": round(self.host.now(), 3), "requests_before": n,
                              "requests_after": None, "reproduced": None,
                              "note": f"not minimized: the oracle that found this "
                                      f"{failure.kind} is not running in this session"})
            return
        self.host.emit(MinimizationStarted(failure.signature, n, resumed))

        async def replay(candidate: Scenario) -> tuple[Trace, list[Failure]]:
            if self.host.stopping():
                raise Stopped
            if own is not None:
                return await own(candidate)
            trace = await self.host.replay(candidate, frozen)
            return trace, check(candidate, trace)

        result = self.host.drive(minimize(scenario, failure.signature, replay, budget=budget))
        if result.error is not None and self.host.stopping():
            self.host.emit(Noted(f"minimizing {failure.signature[:80]} was interrupted; "
                                 "`--resume` finishes it"))
            return  # stays pending in the journal
        self._record_result(scenario, failure, result, frozen)

    def _record_result(self, scenario: Scenario, failure: Failure, result: MinimizeResult,
                       deadlines: Mapping[str, Deadlines]) -> None:
        n = len(scenario.requests)
        final = result.original if result.scenario is scenario else result.final
        note = result.summary()
        if result.trace is None and result.original.runs:
            note += f"; did not reproduce on replay ({result.original})"
        rewrite = result.trace is not None and result.failure is not None
        if rewrite and not self.host.may_rewrite_bundle():
            rewrite = False
            note += "; its bundle was not rewritten: the campaign folder reached its disk cap"
        self.host.record({"type": "minimized", "signature": failure.signature,
                          "t": round(self.host.now(), 3), "requests_before": n,
                          "requests_after": len(result.scenario.requests),
                          "reproduced": str(final), "note": note,
                          "schedule_note": result.schedule_note})
        if rewrite and result.trace is not None and result.failure is not None:
            stats = {"summary": note, "schedule_note": result.schedule_note,
                     "candidates": result.candidates, "replays": result.replays,
                     "wall_s": round(result.wall_s, 1),
                     "budget_exhausted": result.budget_exhausted,
                     "passes": {name: dict(c) for name, c in result.passes.items()},
                     "drift": dict(result.drift)}
            self.write(result.scenario, result.trace, result.failure,
                       Reproduced(final.hits, final.runs), n, minimizer=stats,
                       deadlines=deadlines)

    # -- bundles ---------------------------------------------------------------------------

    def write(self, scenario: Scenario, trace: Trace, failure: Failure, reproduced: Reproduced,
              original_count: int, *, deadlines: Mapping[str, Deadlines],
              minimizer: dict[str, Any] | None = None) -> Path | None:
        """Bundle a failing run; the scenario keeps its media and fixture placeholders.
        A bundle that cannot be written is journaled as such (None): losing one bundle
        must not end an overnight campaign."""
        if self.redact:  # a server may echo a secret back; it must not reach a bundle
            trace = Trace.from_json(self.redact(trace.to_json()))
            failure = Failure.from_json(self.redact(failure.to_json()))
        ids = {r.id for r in scenario.requests}
        extra: dict[str, Any] = {"request_deadlines": {k: d.to_json() for k, d in
                                                       sorted(deadlines.items()) if k in ids}}
        if minimizer:  # its drift names the signatures replays saw: redacted too
            extra["minimizer"] = self.redact(minimizer)
        bundle = Bundle(scenario=scenario, failure=failure, trace=trace, reproduced=reproduced,
                        target=self.redact(self.host.target_evidence()),
                        fuzzer=fuzzer_info(self.config.seed, **extra),
                        original_request_count=original_count)
        try:
            path = write_bundle(bundle, self.config.bundles_dir)
        except Exception as e:  # noqa: BLE001 - journaled, and shown in the report
            error = f"{type(e).__name__}: {e}"[:500]
            self.host.record({"type": "bundle_error", "signature": failure.signature,
                              "t": round(self.host.now(), 3), "error": error})
            self.host.emit(Noted(f"could not bundle {failure.signature[:80]}: {error}"))
            return None
        self.host.record({"type": "bundle", "signature": failure.signature, "path": str(path),
                          "requests": len(scenario.requests), "reproduced": list(reproduced)})
        stats = self.host.summary.failures.get(failure.signature)  # the record's signature
        if stats is not None:
            self.host.emit(BundleWritten(path, stats))
        return path
