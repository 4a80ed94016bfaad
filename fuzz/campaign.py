"""A fuzz campaign: Hypothesis generates scenarios, the runner fires them, oracles
judge them, new failures are minimized and bundled, and a report is kept current.

Hypothesis is used as a long-lived generator: a `@given` function run in rounds
(round n uses seed `seed * 1_000_003 + n`) with generation-only settings, whose body
runs each scenario and records failures instead of raising. Every outcome is a
journal record first and a summary update second (`ledger.apply`), so `--resume`
rebuilds the same state and continues from the next round. The engine prints
nothing; it reports through `on_event` (see `fuzz.events`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import target as hypothesis_target

from fuzz import __version__, ledger
from fuzz.bundle import Bundle, Reproduced, load_bundle, write_bundle
from fuzz.events import (BundleWritten, CampaignFinished, CampaignStarted, Event, FailureFound,
                         MinimizationStarted, Noted, ScenarioFinished, ScenarioStarted,
                         TargetStateChanged, Ticked)
from fuzz.journal import Journal, read_journal
from fuzz.minimize import Budget, minimize
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.oracles import check
from fuzz.outputs import write_reports
from fuzz.redact import Redactor
from fuzz.report import Summary
from fuzz.runner import fetch_target_info, run_scenario
from fuzz.strategies import scenarios
from fuzz.supervisor import ExternalSupervisor, Supervisor, TargetUnavailable

__all__ = ["BundleWritten", "CampaignConfig", "Event", "FailureFound", "Noted",
           "ScenarioFinished", "report_path", "run_campaign"]

REPORT_EVERY_S = 30.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class CampaignConfig:
    out_dir: Path
    duration_s: float
    seed: int = 0
    deadlines: Deadlines = Deadlines(first_byte_s=120.0, stall_s=60.0, total_s=300.0)
    max_requests: int = 32
    max_output_tokens: int = 64
    examples_per_round: int = 10
    minimize: bool = True
    minimize_budget: Budget = Budget(max_replays=40, max_wall_s=240.0)
    resume: bool = False  # continue the campaign journaled in out_dir
    tick_s: float = 1.0
    report_every_s: float = REPORT_EVERY_S

    def settings_json(self) -> dict[str, Any]:
        """What `--resume` needs to regenerate the same seed stream."""
        return {"seed": self.seed, "duration_s": self.duration_s,
                "max_requests": self.max_requests, "max_output_tokens": self.max_output_tokens,
                "examples_per_round": self.examples_per_round, "deadlines": self.deadlines.to_json()}


MAX_FAILED_ROUNDS = 3


class _GeneratorBroken(RuntimeError):
    """Several rounds in a row failed to generate anything: a bug in the strategies."""


class _Stopped(Exception):
    """A graceful stop was asked for while a minimization was replaying."""


@dataclass
class _Campaign:
    config: CampaignConfig
    supervisor: Supervisor
    on_event: Callable[[Event], None]
    loop: asyncio.AbstractEventLoop
    journal: Journal
    summary: Summary
    stop: threading.Event
    redact: Redactor
    offset_s: float = 0.0  # campaign time used by earlier sessions
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0
    round_no: int = 0
    aborted: Exception | None = None
    failed_rounds: int = 0

    def now(self) -> float:
        return self.offset_s + time.monotonic() - self.started

    def time_left(self) -> float:
        return 0.0 if self.stop.is_set() else self.config.duration_s - self.now()

    def record(self, rec: dict[str, Any]) -> None:
        """Journal first (durable), then fold into the live summary."""
        self.journal.append(rec)
        ledger.apply(self.summary, rec)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the campaign loop, emitting `Ticked` about every tick_s."""
        async def ticking() -> _T:
            task = asyncio.ensure_future(coro)
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.config.tick_s)
                if done:
                    return task.result()
                self.on_event(Ticked(self.summary, max(self.time_left(), 0.0)))
        return self.loop.run_until_complete(ticking())

    def run_round(self, round_no: int) -> None:
        self.round_no = round_no
        round_seed = self.config.seed * 1_000_003 + round_no
        self.record({"type": "round", "round": round_no, "seed": round_seed, "t": round(self.now(), 3)})
        strategy = scenarios(max_requests=self.config.max_requests,
                             max_output_tokens=self.config.max_output_tokens)

        @hypothesis_seed(round_seed)
        @settings(max_examples=self.config.examples_per_round, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                  verbosity=Verbosity.quiet)
        @given(strategy)
        def one(scenario: Scenario) -> None:
            if self.time_left() > 0 and self.aborted is None:
                try:
                    self.run_scenario(scenario)
                except Exception as e:  # noqa: BLE001 - re-raised below, outside Hypothesis
                    self.aborted = e

        before = self.summary.scenarios
        try:
            one()
        except Exception as e:  # a generator bug must not end an overnight campaign
            if self.aborted is not None:
                raise self.aborted from None
            self.record({"type": "generator_error", "round": round_no, "t": round(self.now(), 3),
                         "error": f"{type(e).__name__}: {e}"[:1000]})
            self.on_event(Noted(f"round {round_no}: scenario generation failed "
                                f"({type(e).__name__}: {str(e)[:200]}); next round"))
            self.failed_rounds = 0 if self.summary.scenarios > before else self.failed_rounds + 1
            if self.failed_rounds >= MAX_FAILED_ROUNDS:
                raise _GeneratorBroken(f"{self.failed_rounds} rounds in a row failed to generate") from e
            return
        self.failed_rounds = 0
        # Raised here, not inside @given: Hypothesis would replay a "failing" example,
        # sending (and journaling) the scenario twice.
        if self.aborted is not None:
            raise self.aborted

    def set_state(self, state: str, detail: str = "", waited_s: float | None = None) -> None:
        if state != self.summary.target_state or waited_s is not None:
            self.summary.target_state = state
            self.on_event(TargetStateChanged(state, detail, waited_s))

    def ensure_target(self) -> None:
        """Recover the target before anything is sent, so the scenario that killed it
        is the one blamed, and nothing is fired into a dead server."""
        if self.supervisor.healthy():
            self.set_state("up")
            return
        external = isinstance(self.supervisor, ExternalSupervisor)
        self.set_state("waiting" if external else "restarting", self.supervisor.endpoint.base_url)
        t0 = time.monotonic()
        try:
            self.supervisor.recover()
        except TargetUnavailable as e:
            waited = time.monotonic() - t0
            self.record({"type": "target", "event": "unavailable", "wait_s": round(waited, 3),
                         "t": round(self.now(), 3), "detail": str(e)[:500]})
            self.set_state("unavailable", str(e), waited)
            raise
        waited = time.monotonic() - t0
        self.record({"type": "target", "event": "waited" if external else "restarted",
                     "wait_s": round(waited, 3), "t": round(self.now(), 3),
                     "base_url": self.supervisor.endpoint.base_url})
        self.set_state("up", f"back after {waited:.1f}s", waited)

    def run_scenario(self, scenario: Scenario) -> None:
        self.ensure_target()
        index, t_start = self.summary.scenarios, self.now()
        self.summary.in_flight = len(scenario.requests)
        self.on_event(ScenarioStarted(index, len(scenario.requests)))
        try:
            trace = self.run(run_scenario(self.supervisor.endpoint, scenario, self.config.deadlines))
        finally:
            self.summary.in_flight = 0
        failures = check(scenario, trace)
        latencies = [r.latency_s for r in trace.requests if r.latency_s is not None]
        hypothesis_target(max(latencies, default=0.0), label="max latency (s)")
        self.record(ledger.scenario_record(index, self.round_no, t_start, scenario, trace, failures))
        self.on_event(ScenarioFinished(index, len(scenario.requests), tuple(failures),
                                       trace.wall_s, self.summary))
        unique = _unique(failures)
        new = [f for f in unique if f.signature not in self.summary.failures]
        primary = primary_failure(new)
        for failure in unique:
            self._record_failure(index, failure, scenario, trace, primary)
        self.maybe_write_report()

    def _minimize_decision(self, failure: Failure, primary: Failure | None) -> str:
        """PENDING, or why this new failure is not minimized."""
        if not self.config.minimize:
            return "not minimized (--no-minimize)"
        if failure is not primary:
            return f"not minimized: seen together with `{primary.signature[:80]}`" if primary \
                else "not minimized"
        if self.time_left() < 30:
            return "not minimized: campaign time ran out"
        return ledger.PENDING

    def _record_failure(self, index: int, failure: Failure, scenario: Scenario, trace: Trace,
                        primary: Failure | None) -> None:
        """Count a failure; bundle a new one as seen, then minimize it if it is the
        scenario's primary (most severe) new failure - the others are usually its echoes."""
        new = failure.signature not in self.summary.failures
        decision = self._minimize_decision(failure, primary) if new else None
        self.record(ledger.failure_record(index, self.now(), failure, new=new,
                                          requests=len(scenario.requests), minimize=decision))
        self.on_event(FailureFound(failure, new=new))
        if not new:
            return
        # Bundle what was seen right away, so nothing is lost if minimizing is cut short.
        self._write(scenario, trace, failure, Reproduced(1, 1), len(scenario.requests))
        if decision == ledger.PENDING:
            self._minimize(scenario, failure)

    def finish_pending(self) -> None:
        """Minimize failures a previous session journaled as new but never minimized."""
        for sig in sorted(self.summary.pending_minimizations):
            if self.stop.is_set():
                return
            stats = self.summary.failures[sig]
            try:
                if stats.bundle is None:
                    raise ValueError("its bundle was never written")
                bundle = load_bundle(Path(stats.bundle))
            except Exception as e:  # a damaged bundle must not stop the campaign
                self.record({"type": "minimized", "signature": sig, "t": round(self.now(), 3),
                             "requests_before": stats.requests_before, "requests_after": None,
                             "reproduced": None, "note": f"not minimized after resume: {e}"})
                continue
            self._minimize(bundle.scenario, bundle.failure, resumed=True)

    def _minimize(self, scenario: Scenario, failure: Failure, resumed: bool = False) -> None:
        n = len(scenario.requests)
        budget = Budget(max_replays=self.config.minimize_budget.max_replays,
                        max_wall_s=min(self.config.minimize_budget.max_wall_s,
                                       max(self.time_left(), 30.0)))
        self.on_event(MinimizationStarted(failure.signature, n, resumed))
        try:
            result = self.run(minimize(scenario, failure.signature, self._replay, budget=budget))
        except _Stopped:
            return  # stays pending in the journal; a resumed campaign finishes it
        final = result.original if result.scenario is scenario else result.final
        note = result.summary()
        if result.trace is None and result.original.runs:
            note += f"; did not reproduce on replay ({result.original})"
        self.record({"type": "minimized", "signature": failure.signature, "t": round(self.now(), 3),
                     "requests_before": n, "requests_after": len(result.scenario.requests),
                     "reproduced": str(final), "note": note,
                     "schedule_note": result.schedule_note})
        if result.trace is not None and result.failure is not None:
            stats = {"summary": note, "schedule_note": result.schedule_note,
                     "candidates": result.candidates, "replays": result.replays,
                     "wall_s": round(result.wall_s, 1), "budget_exhausted": result.budget_exhausted,
                     "passes": {name: dict(c) for name, c in result.passes.items()},
                     "drift": dict(result.drift)}
            self._write(result.scenario, result.trace, result.failure,
                        Reproduced(final.hits, final.runs), n, minimizer=stats)

    async def _replay(self, scenario: Scenario) -> tuple[Trace, list[Failure]]:
        if self.stop.is_set():
            raise _Stopped
        if not self.supervisor.healthy():
            await asyncio.to_thread(self.ensure_target)
        trace = await run_scenario(self.supervisor.endpoint, scenario, self.config.deadlines)
        return trace, check(scenario, trace)

    def _write(self, scenario: Scenario, trace: Trace, failure: Failure,
               reproduced: Reproduced, original_count: int,
               minimizer: dict | None = None) -> None:
        if self.redact:  # a server may echo a secret back; it must not reach a bundle
            trace = Trace.from_json(self.redact(trace.to_json()))
            failure = Failure.from_json(self.redact(failure.to_json()))
        target = self.redact({**self.summary.target, **self.supervisor.evidence()})
        bundle = Bundle(scenario=scenario, failure=failure, trace=trace, reproduced=reproduced,
                        target=target,
                        fuzzer={"version": __version__, "seed": self.config.seed,
                                **({"minimizer": minimizer} if minimizer else {})},
                        original_request_count=original_count)
        path = write_bundle(bundle, self.config.out_dir / "bundles")
        self.record({"type": "bundle", "signature": failure.signature, "path": str(path),
                     "requests": len(scenario.requests), "reproduced": list(reproduced)})
        self.on_event(BundleWritten(path, self.summary.failures[failure.signature]))

    def maybe_write_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_report >= self.config.report_every_s:
            self.last_report = now
            self.summary.elapsed_s = max(self.summary.elapsed_s, self.now())
            write_reports(self.config.out_dir, self.summary, self.redact)


_SEVERITY = ("target_dead", "target_wedged", "hang", "server_error", "transport")


def _severity(failure: Failure) -> int:
    """Lower is more severe: a dead target explains the 500s and resets around it."""
    return _SEVERITY.index(failure.kind) if failure.kind in _SEVERITY else len(_SEVERITY)


def primary_failure(failures: list[Failure]) -> Failure | None:
    """The one new failure of a scenario worth minimizing: the most severe, first on ties."""
    return min(failures, key=_severity) if failures else None


def _unique(failures: list[Failure]) -> list[Failure]:
    seen: dict[str, Failure] = {}
    for f in failures:
        seen.setdefault(f.signature, f)
    return list(seen.values())


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cut whatever was in flight when ^C arrived, so the loop closes cleanly."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def run_campaign(config: CampaignConfig, supervisor: Supervisor,
                 on_event: Callable[[Event], None] = lambda e: None, *,
                 stop: threading.Event | None = None, redact: Redactor | None = None) -> Summary:
    """Fuzz until the duration is over, `stop` is set (after the scenario in flight),
    ^C (cuts it), or the target is gone for good; the reports are written in every case."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    journal_path = config.out_dir / "journal.jsonl"
    summary = Summary(seed=config.seed, endpoint=supervisor.endpoint.base_url)
    if config.resume and journal_path.exists():
        ledger.fold(read_journal(journal_path), summary)
        summary.stopped_because = "duration reached"
    redact = redact or Redactor()
    loop = asyncio.new_event_loop()
    with Journal(journal_path, redact) as journal:
        c = _Campaign(config, supervisor, on_event, loop, journal, summary, stop or threading.Event(),
                      redact, offset_s=summary.elapsed_s)
        try:
            c.ensure_target()
            info = loop.run_until_complete(fetch_target_info(supervisor.endpoint))
            target = {"model": info.get("model_id") or supervisor.endpoint.model,
                      **info, **supervisor.identity()}
            c.record({"type": "started", "seed": config.seed, "target": target,
                      "duration_s": config.duration_s, "version": __version__,
                      "resumed": config.resume, "settings": config.settings_json(),
                      "t": round(c.now(), 3), "wall_clock": time.time()})
            on_event(CampaignStarted(summary, config.duration_s, config.resume))
            c.finish_pending()
            while c.time_left() > 0:
                c.run_round(summary.next_round)
        except (KeyboardInterrupt, _Stopped):
            summary.stopped_because = "interrupted"
        except TargetUnavailable as e:
            summary.stopped_because = f"target unavailable: {e}"
        except _GeneratorBroken as e:
            summary.stopped_because = f"generator broken: {e}"
        except BaseException as e:
            summary.stopped_because = f"crashed: {type(e).__name__}: {str(e)[:300]}"
            raise
        finally:
            _cancel_all(loop)
            summary.in_flight = 0
            if c.stop.is_set() and summary.stopped_because == "duration reached":
                summary.stopped_because = "interrupted"
            c.record({"type": "finished", "scenarios": summary.scenarios, "t": round(c.now(), 3),
                      "requests": summary.requests, "stopped_because": summary.stopped_because})
            c.maybe_write_report(force=True)
            on_event(CampaignFinished(summary))
            loop.close()
    return summary


def report_path(config: CampaignConfig) -> Path:
    return config.out_dir / "report.md"


def journaled_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings the campaign in `out_dir` started with (for `--resume`), or None."""
    path = out_dir / "journal.jsonl"
    if not path.exists():
        return None
    for r in read_journal(path):
        if r.get("type") == "started" and isinstance(r.get("settings"), dict):
            return r["settings"]
    return None
