"""A fuzz campaign: Hypothesis generates scenarios, the runner fires them, oracles
judge them, new failures are minimized and bundled, and a report is kept current.

Hypothesis is used as a long-lived generator: a `@given` function run in rounds
(round n of worker w uses seed `(seed + w) * 1_000_003 + n`) with generation-only
settings, whose body runs each scenario and records failures instead of raising.
Every outcome is a journal record first and a summary update second (`ledger.apply`),
so `--resume` rebuilds the same state and continues from the next round. The engine
prints nothing; it reports through `on_event` (see `fuzz.events`).

Scenarios are sent through a `Harness`: deadlines learnt per request size class (the
configured `deadlines` are the ceiling, and what applies until enough requests were
seen; `deadline_overrides` fix a phase), image URLs served by a loopback fixture
server started for the campaign. What happens to failures is `fuzz.triage`'s job.
Past `max_disk_bytes` the folder keeps its journal and new failures' bundles, but
known failures are not bundled again (see `fuzz.disk`). Several campaigns may share
one folder as workers (`fuzz.workers`): each has its own seed stream (`seed + worker`),
journal and bundle folder (`fuzz.layout`), and leaves the reports to its coordinator.

Greybox steering: the harness samples `/metrics` and follows the target's log around
each scenario; `fuzz.signals` turns both into server states ("features"), journaled
with the scenario and its origin. Scenarios that reach a new state join the steering
corpus (`fuzz.steering`), and after each fresh scenario of a round a mutant of the
corpus runs (a per-round rng seeded from the round seed). The corpus itself is not
journaled: a resumed campaign knows which states were reached, not the scenarios.

Isolation and interference (`fuzz.isolation_watch`): when on, the quiet target is
calibrated once at start (journaled, reused by `--resume`), a share of scenarios get
a probe, victim or canary planted, and after the ordinary oracles each scenario is
judged against runs alone; confirmed findings join its failures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import target as hypothesis_target

from fuzz import __version__, ledger
from fuzz.client import new_event_loop
from fuzz.config import CampaignConfig, journaled_settings
from fuzz.deadlines import loosest
from fuzz.disk import DiskCap, DiskWatch, disk_usage
from fuzz.events import (BundleWritten, CampaignFinished, CampaignStarted, DiskCapReached, Event,
                         FailureFound, Noted, ScenarioFinished, ScenarioStarted,
                         TargetStateChanged, Ticked)
from fuzz.fixtures import ThreadedFixtureServer
from fuzz.harness import Harness, Played, cut_records, deadlines_note
from fuzz.isolation import CalibrationError, NoiseModel
from fuzz.isolation_watch import Calibration, IsolationWatch, Planted, calibrate, has_fixture_urls
from fuzz.journal import Journal, read_journal
from fuzz.layout import bundle_elsewhere, bundles_dir, journal_path
from fuzz.media import freshened
from fuzz.minimize import Replay
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.oracles import check
from fuzz.outputs import write_reports
from fuzz.redact import Redactor
from fuzz.report import Summary
from fuzz.runner import fetch_target_info
from fuzz.signals import server_features
from fuzz.steering import Steering
from fuzz.strategies import scenarios
from fuzz.supervisor import EmbeddedSupervisor, ExternalSupervisor, Supervisor, TargetUnavailable
from fuzz.tokens import TokenScale, measure_token_scale
from fuzz.triage import Stopped, Triage, TriageConfig

__all__ = ["BundleWritten", "CampaignConfig", "Event", "FailureFound", "Noted",
           "ScenarioFinished", "journaled_settings", "report_path", "run_campaign"]

_T = TypeVar("_T")
MAX_FAILED_ROUNDS = 3
NOT_JUDGED_AFTER = ("target_dead", "target_wedged", "hang")  # replaying those costs too much


class _GeneratorBroken(RuntimeError):
    """Several rounds in a row failed to generate anything: a bug in the strategies."""


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
    harness: Harness
    offset_s: float = 0.0  # campaign time used by earlier sessions
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0
    round_no: int = 0
    aborted: Exception | None = None
    failed_rounds: int = 0
    triage: Triage = field(init=False)
    disk: DiskWatch = field(init=False)
    steering: Steering | None = field(init=False, default=None)
    watch: IsolationWatch | None = None
    token_scale: TokenScale | None = None  # from the target's /tokenize; None: estimated
    # A nonce per replay, random per session so a resumed campaign does not repeat one
    # against the same server (see `fuzz.media.freshened`).
    replay_nonces: Iterator[int] = field(
        default_factory=lambda: itertools.count(random.SystemRandom().randrange(1, 2**31)))

    def __post_init__(self) -> None:
        if self.config.steering:
            self.steering = Steering(max_requests=2 * self.config.max_requests,
                                     seen=self.summary.server_states)
        self.disk = DiskWatch(self.config.out_dir, DiskCap(self.config.max_disk_bytes),
                              self.disk_cap_reached)
        self.triage = Triage(TriageConfig(bundles_dir=bundles_dir(self.config.out_dir,
                                                                  self.config.worker),
                                          seed=self.config.seed, minimize=self.config.minimize,
                                          budget=self.config.minimize_budget,
                                          recheck_deadlines=self.config.deadlines),
                             self, self.redact)

    def now(self) -> float:
        return self.offset_s + time.monotonic() - self.started

    def time_left(self) -> float:
        return 0.0 if self.stop.is_set() else self.config.duration_s - self.now()

    def record(self, rec: dict[str, Any]) -> None:
        """Redact, journal (durable), then fold into the live summary: the summary is
        the fold of the journal, so both see the same (redacted) record."""
        rec = self.redact(rec)
        self.journal.append(rec)
        ledger.apply(self.summary, rec)

    # -- what triage needs (see `fuzz.triage.Host`) ----------------------------------------

    def emit(self, event: Event) -> None:
        self.on_event(event)

    def stopping(self) -> bool:
        return self.stop.is_set()

    def target_evidence(self) -> dict[str, Any]:
        return {**self.summary.target, **self.supervisor.evidence()}

    async def replay(self, scenario: Scenario, deadlines: Mapping[str, Deadlines]) -> Trace:
        # Recovery blocks the loop on purpose: nothing else may be sent meanwhile, and
        # on this (the main) thread a second ^C interrupts a restart instead of leaving
        # it running in a worker thread; `record` and `set_state` stay single-threaded.
        if not self.supervisor.healthy():
            self.ensure_target()
        # The server must meet the media as the original run did: for the first time.
        fresh = replace(scenario, media=freshened(scenario.media, next(self.replay_nonces)))
        return (await self.harness.play(fresh, deadlines, sample_metrics=False)).trace

    def oracle_replay(self, scenario: Scenario, failure: Failure,
                      deadlines: Mapping[str, Deadlines]) -> Replay | None:
        if self.watch is None:
            return None
        own = self.watch.replay_for(failure, scenario,
                                    loosest(list(deadlines.values()), self.config.deadlines))
        if own is None:
            return None

        async def replay(candidate: Scenario) -> tuple[Trace, list[Failure]]:
            if not self.supervisor.healthy():
                self.ensure_target()  # on the loop thread, as in `replay`
            return await own(candidate)
        return replay

    def bundled_elsewhere(self, signature: str) -> Path | None:
        return bundle_elsewhere(self.config.out_dir, signature, self.config.worker)

    def may_rewrite_bundle(self) -> bool:
        return not self.disk.reached()

    def disk_cap_reached(self, used_bytes: int, cap_bytes: int) -> None:
        self.record({"type": "disk", "event": "cap_reached", "used_bytes": used_bytes,
                     "cap_bytes": cap_bytes, "t": round(self.now(), 3)})
        self.on_event(DiskCapReached(used_bytes, cap_bytes))

    def drive(self, coro: Coroutine[Any, Any, _T]) -> _T:
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
        """One Hypothesis run of fresh scenarios, each followed by a steered mutant
        once the corpus holds something."""
        self.round_no = round_no
        round_seed = self.config.stream_seed * 1_000_003 + round_no
        steer_rng = random.Random(f"steer:{round_seed}")
        plant_rng = random.Random(f"isolation:{round_seed}")
        self.record({"type": "round", "round": round_no, "seed": round_seed, "t": round(self.now(), 3)})
        strategy = scenarios(max_requests=self.config.max_requests,
                             max_output_tokens=self.config.max_output_tokens,
                             url_image_percent=self.config.url_image_percent,
                             token_scale=self.token_scale,
                             exclude_features=self.config.exclude_features or None)

        @hypothesis_seed(round_seed)
        @settings(max_examples=self.config.examples_per_round, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                  verbosity=Verbosity.quiet)
        @given(strategy)
        def one(scenario: Scenario) -> None:
            if self.time_left() > 0 and self.aborted is None:
                try:
                    self.run_scenario(scenario, plant_rng)
                    self.run_mutant(steer_rng, plant_rng)
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

    def run_mutant(self, rng: random.Random, plant_rng: random.Random) -> None:
        """A steered scenario after a fresh one (nothing while the corpus is empty)."""
        if self.steering is None or self.time_left() <= 0:
            return
        mutant = self.steering.propose(rng)
        if mutant is not None:
            self.run_scenario(mutant.scenario, plant_rng, origin=mutant.origin)

    def run_scenario(self, scenario: Scenario, plant_rng: random.Random | None = None,
                     origin: str = ledger.GENERATED) -> None:
        self.ensure_target()
        index, t_start = self.summary.scenarios, self.now()
        planted = None
        if (self.watch is not None and plant_rng is not None and not has_fixture_urls(scenario)
                and plant_rng.randrange(100) < self.config.isolation_percent):
            scenario, planted = self.watch.plant(scenario, plant_rng,
                                                 f"{self.config.stream_seed}:{index}")
        self.summary.in_flight = len(scenario.requests)
        self.on_event(ScenarioStarted(index, len(scenario.requests)))
        try:
            played = self.drive(self.harness.play(scenario))
        finally:
            self.summary.in_flight = 0
        trace = played.trace
        failures = check(scenario, trace)
        if origin == ledger.GENERATED:  # one target per Hypothesis example: the fresh one
            latencies = [r.latency_s for r in trace.requests if r.latency_s is not None]
            hypothesis_target(max(latencies, default=0.0), label="max latency (s)")
        confirmed, judged = self.judge(scenario, played, failures, planted)
        failures += confirmed
        reached = server_features(played.signals, trace.server_log)
        if self.steering is not None:
            self.steering.observe(scenario, reached, origin=origin)
        self.record(ledger.scenario_record(index, self.round_no, t_start, scenario, trace, failures,
                                           cuts=cut_records(played), server_features=reached,
                                           origin=origin, isolation=judged))
        self.learn(scenario, trace)
        self.on_event(ScenarioFinished(index, len(scenario.requests), tuple(failures),
                                       trace.wall_s, self.summary, origin))
        self.triage.handle(index, scenario, trace, failures, played.deadlines)
        self.maybe_write_report()

    def judge(self, scenario: Scenario, played: Played, failures: list[Failure],
              planted: Planted | None) -> tuple[list[Failure], dict[str, Any] | None]:
        """The isolation and interference oracles on one scenario: confirmed failures
        and the journal's counters (None when the oracles are off). Suspects are
        replayed, so nothing is judged after a hang or a dead target, or while the
        target is not healthy."""
        if self.watch is None:
            return [], None
        if has_fixture_urls(scenario):
            return [], {"skipped": "fixture urls"}
        severe = sorted({f.kind for f in failures} & set(NOT_JUDGED_AFTER))
        if severe:
            return [], {"skipped": severe[0]}
        if not self.supervisor.healthy():
            return [], {"skipped": "target not healthy"}
        deadlines = loosest(list(played.deadlines.values()), self.config.deadlines)
        judged = self.drive(self.watch.judge(scenario, played.trace, planted, deadlines))
        return list(judged.confirmed), dict(judged.counts)

    def start_isolation(self) -> None:
        """Calibrate the isolation and interference oracles (or take the calibration
        a previous session journaled); a target that cannot be calibrated (no
        logprobs, say) turns them off for this session, with the reason journaled."""
        calibration = Calibration.from_journal(self.summary.noise, self.summary.victim)
        if calibration is None:
            try:
                noise = None
                if self.config.noise_file is not None:
                    noise = NoiseModel.from_json(json.loads(self.config.noise_file.read_text()))
                source = "measured" if noise is None else f"file {self.config.noise_file}"
                self.on_event(Noted("isolation: measuring the target's natural variance "
                                    "and the victim's alone latency"))
                calibration = self.drive(calibrate(self.supervisor.endpoint, noise=noise,
                                                   source=source, deadlines=self.config.deadlines))
            except (CalibrationError, OSError, ValueError, KeyError) as e:
                reason = f"calibration failed: {type(e).__name__}: {e}"[:500]
                self.record({"type": "isolation", "event": "off", "reason": reason,
                             "t": round(self.now(), 3)})
                self.on_event(Noted(f"isolation and interference oracles off: {reason}"))
                return
            for rec in calibration.records():
                self.record({**rec, "t": round(self.now(), 3)})
        medians = ", ".join(f"{m[:-2]} {v * 1000:.1f} ms" for m in ("ttft_s", "e2e_s")
                            if (v := calibration.alone.median(m)) is not None)
        self.on_event(Noted(f"isolation: noise bar {calibration.noise.margin_threshold:.4g} nats "
                            f"({calibration.source}); victim alone {medians}"))
        self.watch = IsolationWatch(lambda: self.supervisor.endpoint, calibration,
                                    factor=self.config.interference_factor)

    def learn(self, scenario: Scenario, trace: Trace) -> None:
        """Teach the deadline policy; journal the learnt deadlines when they change."""
        learnt = self.harness.learn(scenario, trace)
        if learnt is not None:
            self.record({"type": "deadlines", "t": round(self.now(), 3), **learnt.to_json()})
            self.on_event(Noted(f"deadlines learnt: first byte {learnt.first_byte_s:g}s, "
                                f"stall {learnt.stall_s:g}s, total {learnt.total_s:g}s"))

    def maybe_write_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.config.reports:
            return
        if force or now - self.last_report >= self.config.report_every_s:
            self.last_report = now
            self.summary.elapsed_s = max(self.summary.elapsed_s, self.now())
            self.disk.reached()
            notes = [deadlines_note(self.harness.policy.overall(), self.config.deadlines,
                                    self.config.deadline_overrides), *self.disk.notes()]
            write_reports(self.config.out_dir, self.summary, self.redact, notes=notes)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cut whatever was in flight when ^C arrived, so the loop closes cleanly."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _journaled_token_scale(summary: Summary) -> tuple[TokenScale | None] | None:
    """The token scale an earlier session measured (in a 1-tuple: it may be None, for
    a target without /tokenize); None when there is none to reuse."""
    if not summary.token_scale_measured:
        return None
    if summary.token_scale is None:
        return (None,)
    try:
        return (TokenScale.from_json(summary.token_scale),)
    except (TypeError, ValueError, KeyError):
        return None  # unreadable: measure again


def run_campaign(config: CampaignConfig, supervisor: Supervisor,
                 on_event: Callable[[Event], None] = lambda e: None, *,
                 stop: threading.Event | None = None, redact: Redactor | None = None) -> Summary:
    """Fuzz until the duration is over, `stop` is set (after the scenario in flight),
    ^C (cuts it), or the target is gone for good; the reports are written in every case."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    journal_file = journal_path(config.out_dir, config.worker)
    summary = Summary(seed=config.seed, endpoint=supervisor.endpoint.base_url)
    if config.resume and journal_file.exists():
        ledger.fold(read_journal(journal_file), summary)
        summary.stopped_because = "duration reached"
    redact = redact or Redactor()
    loop = new_event_loop()  # uvloop when installed: less client CPU per request
    # no redactor on the journal itself: `_Campaign.record` redacts each record once
    with Journal(journal_file) as journal, ThreadedFixtureServer() as fixtures:
        log_file = config.server_log or (supervisor.paths.log_file
                                         if isinstance(supervisor, EmbeddedSupervisor) else None)
        harness = Harness(lambda: supervisor.endpoint, config.deadline_policy(), fixtures=fixtures,
                          learn=config.learn_deadlines, log_file=log_file)
        c = _Campaign(config, supervisor, on_event, loop, journal, summary, stop or threading.Event(),
                      redact, harness, offset_s=summary.elapsed_s)
        try:
            summary.disk = disk_usage(config.out_dir)  # shown before the first report
            c.ensure_target()
            info = loop.run_until_complete(fetch_target_info(supervisor.endpoint))
            target = {"model": info.get("model_id") or supervisor.endpoint.model,
                      **info, **supervisor.identity()}
            c.record({"type": "started", "seed": config.seed, "worker": config.worker,
                      "target": target,
                      "duration_s": config.duration_s, "version": __version__,
                      "resumed": config.resume, "settings": config.settings_json(),
                      "t": round(c.now(), 3), "wall_clock": time.time()})
            journaled = _journaled_token_scale(summary) if config.resume else None
            if journaled is not None:  # the scale the earlier sessions drew scenarios with
                c.token_scale = journaled[0]
            else:
                c.token_scale = loop.run_until_complete(measure_token_scale(
                    supervisor.endpoint.base_url, supervisor.endpoint.model,
                    headers=supervisor.endpoint.headers()))
            c.record({"type": "tokens", "t": round(c.now(), 3), "resumed": journaled is not None,
                      "scale": c.token_scale.to_json() if c.token_scale else None})
            on_event(CampaignStarted(summary, config.duration_s, config.resume,
                                     config.max_disk_bytes))
            if config.isolation:
                c.start_isolation()
            c.triage.finish_pending()
            while c.time_left() > 0:
                c.run_round(summary.next_round)
        except (KeyboardInterrupt, Stopped):
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
