"""A fuzz campaign: Hypothesis generates scenarios, the runner fires them, oracles
judge them, new failures are minimized and bundled, and a report is kept current.

Hypothesis is used as a long-lived generator: a `@given` function run in rounds
with generation-only settings, whose body runs each scenario and records failures
instead of raising (so `target()` and `event()` work, and nothing is shrunk by
Hypothesis - the live server's flakiness is the minimizer's business). The engine
prints nothing; it reports through `on_event`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import target as hypothesis_target

from fuzz import __version__
from fuzz.bundle import Bundle, Reproduced, write_bundle
from fuzz.journal import Journal, write_atomic
from fuzz.minimize import Budget, minimize
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.oracles import check
from fuzz.report import FailureStats, Summary, render_report
from fuzz.runner import fetch_target_info, run_scenario
from fuzz.strategies import scenarios
from fuzz.supervisor import Supervisor, TargetUnavailable

REPORT_EVERY_S = 30.0


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


@dataclass(frozen=True)
class ScenarioFinished:
    index: int
    requests: int
    failures: tuple[Failure, ...]
    wall_s: float
    summary: Summary


@dataclass(frozen=True)
class FailureFound:
    failure: Failure
    new: bool


@dataclass(frozen=True)
class BundleWritten:
    path: Path
    stats: FailureStats


@dataclass(frozen=True)
class Noted:
    message: str


Event = ScenarioFinished | FailureFound | BundleWritten | Noted


@dataclass
class _Campaign:
    config: CampaignConfig
    supervisor: Supervisor
    on_event: Callable[[Event], None]
    loop: asyncio.AbstractEventLoop
    journal: Journal
    summary: Summary
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0

    @property
    def deadline(self) -> float:
        return self.started + self.config.duration_s

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def run_round(self, round_seed: int) -> None:
        strategy = scenarios(max_requests=self.config.max_requests,
                             max_output_tokens=self.config.max_output_tokens)

        @hypothesis_seed(round_seed)
        @settings(max_examples=self.config.examples_per_round, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                  verbosity=Verbosity.quiet)
        @given(strategy)
        def one(scenario: Scenario) -> None:
            if self.time_left() > 0:
                self.run_scenario(scenario)

        one()

    def ensure_target(self) -> None:
        if not self.supervisor.healthy():
            self.supervisor.recover()
            self.summary.target_restarts += 1
            self.on_event(Noted(f"target recovered at {self.supervisor.endpoint.base_url}"))

    def run_scenario(self, scenario: Scenario) -> None:
        self.ensure_target()
        t0 = time.monotonic()
        trace = self.loop.run_until_complete(
            run_scenario(self.supervisor.endpoint, scenario, self.config.deadlines))
        failures = check(scenario, trace)
        self.summary.fuzz_s += time.monotonic() - t0
        self._count(scenario, trace)
        latencies = [r.latency_s for r in trace.requests if r.latency_s is not None]
        hypothesis_target(max(latencies, default=0.0), label="max latency (s)")
        index = self.summary.scenarios
        self.journal.append({"type": "scenario", "index": index, "requests": len(scenario.requests),
                             "wall_s": round(trace.wall_s, 3),
                             "statuses": [r.status for r in trace.requests],
                             "failures": sorted({f.signature for f in failures})})
        self.on_event(ScenarioFinished(index, len(scenario.requests), tuple(failures),
                                       trace.wall_s, self.summary))
        new = [f for f in _unique(failures) if f.signature not in self.summary.failures]
        primary = min(new, key=_severity) if new else None
        for failure in _unique(failures):
            self._record(failure, scenario, trace, is_primary=failure is primary,
                         primary=primary)
        self._maybe_write_report()

    def _count(self, scenario: Scenario, trace: Trace) -> None:
        s = self.summary
        s.scenarios += 1
        s.requests += len(scenario.requests)
        for r in trace.requests:
            s.statuses[str(r.status) if r.status is not None else (r.deadline or "error")] += 1
            if r.latency_s is not None and r.status is not None:
                s.latencies_s.append(r.latency_s)
        for spec in scenario.requests:
            s.features.update(spec.tags)

    def _record(self, failure: Failure, scenario: Scenario, trace: Trace, *, is_primary: bool,
                primary: Failure | None) -> None:
        """Count a failure; bundle a new one, and minimize it if it is the scenario's
        primary (most severe) new failure - the others are usually its consequences."""
        known = self.summary.failures.get(failure.signature)
        self.journal.append({"type": "failure", "scenario": self.summary.scenarios - 1,
                             "new": known is None, **failure.to_json()})
        self.on_event(FailureFound(failure, new=known is None))
        if known is not None:
            known.count += 1
            return
        stats = FailureStats(kind=failure.kind, signature=failure.signature, message=failure.message,
                             count=1, first_seen_s=time.monotonic() - self.started,
                             requests_before=len(scenario.requests))
        self.summary.failures[failure.signature] = stats
        # Bundle what was seen right away, so nothing is lost if minimizing is cut short.
        self._write(stats, scenario, trace, failure, Reproduced(1, 1), len(scenario.requests))
        if not self.config.minimize:
            stats.minimize_note = "not minimized (--no-minimize)"
            return
        if not is_primary:
            stats.minimize_note = f"not minimized: seen together with `{primary.signature[:80]}`" \
                if primary else "not minimized"
            return
        if self.time_left() < 30:
            stats.minimize_note = "not minimized: campaign time ran out"
            return
        budget = Budget(max_replays=self.config.minimize_budget.max_replays,
                        max_wall_s=min(self.config.minimize_budget.max_wall_s, self.time_left()))
        self.on_event(Noted(f"minimizing {failure.signature[:100]} ({len(scenario.requests)} requests)"))
        result = self.loop.run_until_complete(
            minimize(scenario, failure.signature, self._replay, budget=budget))
        stats.reproduced = str(result.original if result.scenario is scenario else result.final)
        stats.requests_after = len(result.scenario.requests)
        stats.minimize_note = (f"{result.candidates} candidates, {result.replays} replays, "
                               f"{result.wall_s:.0f}s" + (", budget ran out" if result.budget_exhausted else ""))
        self.journal.append({"type": "minimized", "signature": failure.signature,
                             "requests_before": len(scenario.requests),
                             "requests_after": stats.requests_after, "reproduced": stats.reproduced,
                             "note": stats.minimize_note})
        if result.trace is not None and result.failure is not None:
            final = result.original if result.scenario is scenario else result.final
            self._write(stats, result.scenario, result.trace, result.failure,
                        Reproduced(final.hits, final.runs), len(scenario.requests))
        elif result.original.runs:
            stats.minimize_note += f"; did not reproduce on replay ({result.original})"

    async def _replay(self, scenario: Scenario) -> tuple[Trace, list[Failure]]:
        if not self.supervisor.healthy():
            await asyncio.to_thread(self.ensure_target)
        trace = await run_scenario(self.supervisor.endpoint, scenario, self.config.deadlines)
        return trace, check(scenario, trace)

    def _write(self, stats: FailureStats, scenario: Scenario, trace: Trace, failure: Failure,
               reproduced: Reproduced, original_count: int) -> None:
        bundle = Bundle(scenario=scenario, failure=failure, trace=trace, reproduced=reproduced,
                        target={**self.summary.target, **self.supervisor.evidence()},
                        fuzzer={"version": __version__, "seed": self.config.seed},
                        original_request_count=original_count)
        path = write_bundle(bundle, self.config.out_dir / "bundles")
        stats.bundle = str(path)
        self.journal.append({"type": "bundle", "signature": failure.signature, "path": str(path),
                             "requests": len(scenario.requests), "reproduced": list(reproduced)})
        self.on_event(BundleWritten(path, stats))

    def _maybe_write_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_report >= REPORT_EVERY_S:
            self.last_report = now
            self.summary.elapsed_s = now - self.started
            write_atomic(self.config.out_dir / "report.md", render_report(self.summary))


_SEVERITY = ("target_dead", "target_wedged", "hang", "server_error", "transport")


def _severity(failure: Failure) -> int:
    """Lower is more severe: a dead target explains the 500s and resets around it."""
    return _SEVERITY.index(failure.kind) if failure.kind in _SEVERITY else len(_SEVERITY)


def _unique(failures: list[Failure]) -> list[Failure]:
    seen: dict[str, Failure] = {}
    for f in failures:
        seen.setdefault(f.signature, f)
    return list(seen.values())


def run_campaign(config: CampaignConfig, supervisor: Supervisor,
                 on_event: Callable[[Event], None] = lambda e: None) -> Summary:
    """Fuzz until the duration is over, ^C, or the target is gone for good; the
    report is written in every case."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    summary = Summary(seed=config.seed, endpoint=supervisor.endpoint.base_url)
    with Journal(config.out_dir / "journal.jsonl") as journal:
        c = _Campaign(config, supervisor, on_event, loop, journal, summary)
        try:
            c.ensure_target()
            info = loop.run_until_complete(fetch_target_info(supervisor.endpoint))
            summary.target = {"model": info.get("model_id") or supervisor.endpoint.model,
                              **info, **supervisor.identity()}
            journal.append({"type": "started", "seed": config.seed, "target": summary.target,
                            "duration_s": config.duration_s, "version": __version__})
            round_no = 0
            while c.time_left() > 0:
                c.run_round(config.seed * 1_000_003 + round_no)
                round_no += 1
        except KeyboardInterrupt:
            summary.stopped_because = "interrupted"
        except TargetUnavailable as e:
            summary.stopped_because = f"target unavailable: {e}"
        finally:
            summary.target_restarts = max(summary.target_restarts, getattr(supervisor, "restarts", 0))
            journal.append({"type": "finished", "scenarios": summary.scenarios,
                            "requests": summary.requests, "stopped_because": summary.stopped_because})
            c._maybe_write_report(force=True)
            loop.close()
    return summary


def report_path(config: CampaignConfig) -> Path:
    return config.out_dir / "report.md"

