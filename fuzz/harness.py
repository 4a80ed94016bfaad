"""How the campaign sends one scenario: every request under the deadlines the
`DeadlinePolicy` gives its size class, its `http://` image URLs served by the loopback
fixture server, to wherever the target is now.

The campaign loop and the minimizer's replays both go through `Harness.play`, so a
replay is sent the way the original was: same fixture server, and (when given the
original's per-request deadlines) the same limits, so a learnt deadline that fired
fires again at the same value. Only the campaign loop teaches the policy (`learn`).

Around every scenario the harness also watches the server itself: `/metrics` is
sampled while it runs (`fuzz.metrics_poller`, for the counters' deltas and the gauges'
peaks that steering turns into features), and the target's log file, when known, is
followed so that the trace keeps what the server logged meanwhile (`Trace.server_log`,
the server-log oracle's input). Replays follow the log too, so a finding made of log
lines reproduces while it is minimized; they skip the `/metrics` sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from fuzz.deadlines import DEADLINE_OF_PHASE, PHASES, DeadlinePolicy, loosest
from fuzz.metrics_poller import MetricsPoller
from fuzz.model import Deadlines, Media, Scenario, Trace
from fuzz.runner import Endpoint, run_scenario
from fuzz.server_log import LogFollower, excerpt
from fuzz.signals import ServerSignals

__all__ = ["Fixtures", "Harness", "Played", "cut_records", "deadlines_note"]

_PHASE_OF_DEADLINE = {name: phase for phase, name in DEADLINE_OF_PHASE.items()}


class Fixtures(Protocol):
    """The part of `fuzz.fixtures.ThreadedFixtureServer` the harness uses."""

    @property
    def base_url(self) -> str: ...

    def publish(self, media: Mapping[str, Media]) -> None: ...

    def forget(self) -> None: ...


@dataclass(frozen=True)
class Played:
    """A trace with the deadlines each request was sent under, where each phase's
    limit came from ("learnt", "ceiling", "override"; "replay" for given ones), and
    the `/metrics` readings taken around it (None: not sampled, or no `/metrics`)."""

    trace: Trace
    deadlines: Mapping[str, Deadlines]
    sources: Mapping[str, Mapping[str, str]]
    signals: ServerSignals | None = None


def cut_records(played: Played) -> list[dict[str, Any]]:
    """For the journal: each request a deadline cut, which one, at what limit, from where."""
    out = []
    for rt in played.trace.requests:
        if rt.deadline is None:
            continue
        phase = _PHASE_OF_DEADLINE.get(rt.deadline, "")
        out.append({"id": rt.id, "deadline": rt.deadline, "limit_s": rt.deadline_s,
                    "source": played.sources.get(rt.id, {}).get(phase, "?")})
    return out


def deadlines_note(learnt: Deadlines | None, ceiling: Deadlines,
                   overrides: Mapping[str, float]) -> str:
    """One report line on the deadlines hangs were judged by."""
    def fmt(d: Deadlines) -> str:
        return f"first byte {d.first_byte_s:g}s, stall {d.stall_s:g}s, total {d.total_s:g}s"
    fixed = "".join(f", {DEADLINE_OF_PHASE[p]} fixed at {v:g}s" for p, v in sorted(overrides.items()))
    if learnt is None:
        return f"Deadlines: none learnt (yet); the ceiling applied ({fmt(ceiling)}){fixed}."
    return (f"Deadlines learnt from observed latency (overall, latest): {fmt(learnt)}; ceiling "
            f"{fmt(ceiling)}{fixed}. Each request's class may have its own (see `cuts` in the journal).")


class Harness:
    """Sends scenarios for one campaign process; `endpoint` is asked each time because
    a restarted embedded target may come back on another port. `log_file` is the
    target's log (the embedded supervisor's, or one given for an external target);
    `poll_metrics=False` never samples `/metrics` (tests without a server)."""

    def __init__(self, endpoint: Callable[[], Endpoint], policy: DeadlinePolicy, *,
                 fixtures: Fixtures | None = None, learn: bool = True,
                 log_file: Path | None = None, poll_metrics: bool = True) -> None:
        self.endpoint, self.policy, self.fixtures, self.learning = endpoint, policy, fixtures, learn
        self.follower = LogFollower(log_file) if log_file is not None else None
        self.poll_metrics = poll_metrics
        self._reported: Deadlines | None = None

    def plan(self, scenario: Scenario) -> tuple[dict[str, Deadlines], dict[str, dict[str, str]]]:
        """Each request's deadlines and their sources, from the policy."""
        n = len(scenario.requests)
        deadlines = self.policy.deadlines_for_scenario(scenario)
        sources = {spec.id: {p: self.policy.source(spec, p, n) for p in PHASES}
                   for spec in scenario.requests}
        return deadlines, sources

    async def play(self, scenario: Scenario,
                   deadlines: Mapping[str, Deadlines] | None = None, *,
                   sample_metrics: bool = True) -> Played:
        """Send `scenario` once. `deadlines` (per request id) replaces the policy's
        plan; requests it does not name get the loosest of those it does.
        `sample_metrics=False` (replays) leaves `Played.signals` None."""
        if deadlines is None:
            chosen, sources = self.plan(scenario)
        else:
            chosen = dict(deadlines)
            sources = {k: dict.fromkeys(PHASES, "replay") for k in chosen}
        default = loosest(list(chosen.values()), self.policy.ceiling)
        endpoint = self.endpoint()
        if self.fixtures is not None:
            self.fixtures.publish(scenario.media)
        if self.follower is not None:
            self.follower.skip_to_end()
        fixture_base_url = self.fixtures.base_url if self.fixtures is not None else None

        async def send() -> Trace:
            return await run_scenario(endpoint, scenario, default, request_deadlines=chosen,
                                      fixture_base_url=fixture_base_url)

        signals = None
        try:
            if self.poll_metrics and sample_metrics:
                async with MetricsPoller(endpoint) as poller:
                    trace = await send()
                signals = poller.signals
            else:
                trace = await send()
        finally:
            if self.fixtures is not None:
                self.fixtures.forget()
        if self.follower is not None:
            trace = replace(trace, server_log=excerpt(self.follower.read_new()))
        return Played(trace, chosen, sources, signals)

    def learn(self, scenario: Scenario, trace: Trace) -> Deadlines | None:
        """Teach the policy this scenario's latencies; the overall learnt deadlines
        when they differ from the ones last returned (worth a journal line), else None."""
        if not self.learning:
            return None
        self.policy.observe_scenario(scenario, trace.requests)
        overall = self.policy.overall()
        if overall is None or overall == self._reported:
            return None
        self._reported = overall
        return overall
