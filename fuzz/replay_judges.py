"""How a replayed bundle is judged when the ordinary oracles cannot see its failure.

`fuzz.oracles.check` judges one trace on its own. Four kinds need more, and replayed
with `check` alone they would never show up again: a FIXED verdict while the bug is
still there. So each is judged with the machinery the campaign used:

- `server_log_error`: `check` does see it, once the trace carries what the server
  logged meanwhile, so the target's log file is followed around every run
  (`LogFollowingRun`). With no log file, or one that did not grow while the requests
  were answered (not the target's log), the bundle cannot be judged.
- `isolation_divergence`, `cross_request_leak`: the isolation oracle's replay
  (`fuzz.isolation.isolation_replay`) under the noise model and about the subjects the
  bundle records (`fuzz.isolation_record`); the subjects' alone answers are measured
  afresh on this target. No comparable alone answer (no logprobs served), no noise
  model, or no comparable answer in a run: cannot be judged.
- `interference_slowdown`: the victim's alone latency measured afresh, each run judged
  by the recorded rule; after a run that breaks it, the victim is measured alone again,
  so that a target now slow for everyone is not taken for interference A rule
  with a fairness guard (`SlowdownRule.neighbour_factor`) also judges the victim against
  the other requests of each run; one recorded without it judges as it always did.

A `Tally` says what the runs showed; `fuzz.replay.verdict_of` turns it into the verdict.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fuzz.bundle import Bundle
from fuzz.isolation import (CalibrationError, NoiseModel, SlowdownRule, alone_answers,
                            calibrate_latency, interference_suspects, is_probe, isolation_replay,
                            judge_slowdown, latency_sample, token_answer)
from fuzz.isolation.interference import LatencySample, median_of, neighbour_ratio
from fuzz.isolation_record import (INTERFERENCE_KINDS, ISOLATION_KINDS, JudgedBy, judged_by,
                                   needs_alone)
from fuzz.model import Deadlines, Failure, RequestTrace, Scenario, Trace
from fuzz.oracles.reading import response_choices
from fuzz.oracles.server_log import responses_looked_fine
from fuzz.runner import run_scenario
from fuzz.server_log import LogFollower, excerpt

RunFn = Callable[[Any, Scenario, Deadlines], Awaitable[Trace]]
CheckFn = Callable[[Scenario, Trace], list[Failure]]

SERVER_LOG_KIND = "server_log_error"
# What `fuzz.oracles.check` reports; a bundle of any other kind without a judge of its
# own (one written by a newer vlfuzz, say) cannot be judged here.
ORDINARY_KINDS = frozenset({
    "server_error", "transport", "hang", "malformed_body", "target_dead", "target_wedged",
    "leak", "schema_violation", "tool_call_invalid", "stream_malformed", "stream_error_event",
    "wrong_choice_count", "usage_inconsistent", "shape_mismatch", "spec_contradiction",
    "oracle_error", SERVER_LOG_KIND})
OWN_KINDS = ISOLATION_KINDS | INTERFERENCE_KINDS
ALONE_LATENCY_RUNS = 3  # timed alone runs of a victim (after one warm-up)
LOG_SETTLE_S = 0.5  # the log must stay this long without growing before it is judged
LOG_SETTLE_CAP_S = 5.0  # ...but a log that never stops growing is judged after this long
LOG_POLL_S = 0.05
NEEDS_LOG = ("needs the server log to be judged: replay with --server-log FILE (the file "
             "the target writes its log to)")


@dataclass(frozen=True)
class Tally:
    """What the runs of one bundle showed: its signature in `failing` of `runs`;
    `observed` every signature seen, in order; `unjudged` why some runs could not be
    judged; `error` why the replay as a whole cannot be trusted; `note` facts for
    the verdict's message (e.g. the latencies compared)."""

    runs: int = 0
    failing: int = 0
    observed: tuple[str, ...] = ()
    unjudged: tuple[str, ...] = ()
    error: str | None = None
    note: str = ""


def _merge(observed: list[str], sigs: Sequence[str]) -> None:
    for sig in sigs:
        if sig not in observed:
            observed.append(sig)


def _why(rt: RequestTrace | None) -> str:
    if rt is None:
        return "not sent"
    if rt.error:
        return rt.error
    if rt.deadline:
        return f"cut by the {rt.deadline} deadline"
    if rt.disconnected:
        return "the client hung up on purpose"
    return f"HTTP {rt.status}"


def recorded_deadlines(bundle: Bundle) -> dict[str, Deadlines]:
    """The per-request deadlines the failure was recorded with
    (`fuzzer.request_deadlines`), so a replay sends each request under the same limits;
    {} when the bundle records none (or none readable)."""
    stored = bundle.fuzzer.get("request_deadlines")
    if not isinstance(stored, Mapping):
        return {}
    try:
        return {str(k): Deadlines(**v) for k, v in stored.items()}
    except TypeError:
        return {}


def _trace_of(trace: Trace, request_id: str) -> RequestTrace | None:
    try:
        return trace.request(request_id)
    except KeyError:
        return None


# -- server_log_error ----------------------------------------------------------------------

class LogFollowingRun:
    """A run function that follows the target's log around each run, so the trace
    carries what the server logged meanwhile (`Trace.server_log`), as the campaign's
    harness does; `lines` counts every line read (a log that never grows is not the
    target's).

    After the last answer the log is read until it has not grown for `settle_s`, for
    at most `settle_cap_s`. Why: the server writes a traceback after (often well
    after, when it is busy) the answer went out, so a fixed wait would miss a late
    line and call a still-failing bundle FIXED; waiting for quiet follows a slow
    server, and the cap keeps a log that never stops growing (other clients, debug
    logging) from stalling the replay."""

    def __init__(self, run: RunFn, log_file: Path, settle_s: float = LOG_SETTLE_S,
                 settle_cap_s: float = LOG_SETTLE_CAP_S) -> None:
        if settle_s < 0 or settle_cap_s < settle_s:
            raise ValueError("need 0 <= settle_s <= settle_cap_s")
        self.run, self.follower = run, LogFollower(log_file)
        self.log_file, self.settle_s, self.settle_cap_s = Path(log_file), settle_s, settle_cap_s
        self.lines = 0

    def _size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return -1

    async def _read_until_quiet(self) -> list[str]:
        """Every line appended until the log was quiet for `settle_s` (or the cap)."""
        loop = asyncio.get_running_loop()
        lines = self.follower.read_new()
        size = self._size()
        start = quiet_since = loop.time()
        while (now := loop.time()) - quiet_since < self.settle_s \
                and now - start < self.settle_cap_s:
            await asyncio.sleep(LOG_POLL_S)
            new, grown = self.follower.read_new(), self._size()
            if new or grown != size:  # a partial line is growth too
                lines += new
                size, quiet_since = grown, loop.time()
        return lines + self.follower.read_new()

    async def __call__(self, endpoint: Any, scenario: Scenario, deadlines: Deadlines) -> Trace:
        self.follower.skip_to_end()
        trace = await self.run(endpoint, scenario, deadlines)
        lines = await self._read_until_quiet()
        self.lines += len(lines)
        return replace(trace, server_log=excerpt(lines))


def log_unjudged(trace: Trace) -> str | None:
    """Why a run says nothing about a server-log finding: a response failed, so what
    the server logged is that failure's evidence (the log oracle stays silent then)."""
    if responses_looked_fine(trace):
        return None
    bad = next((rt for rt in trace.requests if rt.error or rt.deadline
                or (rt.status or 0) >= 500), None)
    return (f"request {bad.id} failed ({_why(bad)}), so the log is that failure's evidence"
            if bad is not None else "the server was unhealthy after the requests")


def unjudgeable(kind: str, log_file: Path | None) -> str | None:
    """Why a bundle of `kind` cannot be judged here, with this log file (None: it can)."""
    if kind not in ORDINARY_KINDS and kind not in OWN_KINDS:
        return (f"this vlfuzz has no oracle for failures of kind {kind!r}, so it cannot tell "
                "whether it is fixed")
    if kind != SERVER_LOG_KIND:
        return None
    if log_file is None:
        return f"this {SERVER_LOG_KIND} bundle {NEEDS_LOG}"
    if not Path(log_file).is_file():
        return f"the server log {log_file} does not exist or is not a file"
    return None


# -- isolation_divergence, cross_request_leak ------------------------------------------------

def _unjudged_isolation(scenario: Scenario, trace: Trace, failure: Failure,
                        subjects: Sequence[str]) -> str | None:
    """Why this run says nothing about the finding: a subject it compares gave no
    comparable answer (None: it was judged)."""
    alone = needs_alone(failure)
    for rid in subjects:
        spec, rt = scenario.request(rid), _trace_of(trace, rid)
        if alone and is_probe(spec):
            if rt is None or token_answer(spec, rt) is None:
                return (f"request {rid} gave no greedy answer with logprobs in the scenario "
                        f"({_why(rt)})")
        elif rid == failure.request_id and (rt is None or response_choices(spec, rt) is None):
            return f"request {rid} gave no complete answer in the scenario ({_why(rt)})"
    return None


async def replay_isolation(bundle: Bundle, endpoint: Any, *, runs: int, deadlines: Deadlines,
                           check: CheckFn,
                           request_deadlines: Mapping[str, Deadlines] | None = None) -> Tally:
    """`runs` runs of the scenario judged by the isolation oracle against the subjects'
    alone answers, measured afresh, under the bundle's noise model. Every request is
    sent under `deadlines` (`isolation_replay` takes no per-request ones), so
    `request_deadlines` is accepted for a uniform judge signature only."""
    failure, scenario, sig = bundle.failure, bundle.scenario, bundle.signature
    judged: JudgedBy = judged_by(failure)
    ids = {r.id for r in scenario.requests}
    subjects = [s for s in judged.subjects if s in ids]
    if not subjects or len(subjects) < len(judged.subjects):
        return Tally(error=f"the bundle's scenario lacks the requests the finding is about "
                           f"({', '.join(judged.subjects) or 'none recorded'})")
    noise = judged.noise
    if noise is None and needs_alone(failure):
        return Tally(error="the bundle records no noise model (the bar its answers were "
                           "judged by): re-record it with this vlfuzz")
    noise = noise or NoiseModel(margin_threshold=math.inf)  # a canary needs no bar
    cache: dict[str, Any] = {}
    if needs_alone(failure):
        for rid in (s for s in subjects if is_probe(scenario.request(s))):
            answers = await alone_answers(endpoint, scenario, rid, runs=judged.alone_runs,
                                          deadlines=deadlines, cache=cache)
            if not answers:
                return Tally(error=f"request {rid} gave no greedy answer with logprobs alone, "
                                   "so there is nothing to compare with (does the server "
                                   "serve logprobs?)")
    replay = isolation_replay(endpoint, noise, subjects, cache=cache,
                              alone_runs=judged.alone_runs, deadlines=deadlines)
    observed: list[str] = []
    unjudged: list[str] = []
    done = failing = 0
    for i in range(runs):
        try:
            trace, found = await replay(scenario)
            others = check(scenario, trace)
        except Exception as e:  # noqa: BLE001 - a broken run is a verdict, not a crash
            return Tally(done, failing, tuple(observed), tuple(unjudged),
                         f"run {i + 1} raised {type(e).__name__}: {e}")
        done += 1
        hit = any(f.signature == sig for f in found)
        failing += hit
        _merge(observed, [f.signature for f in found] + [f.signature for f in others])
        why = None if hit else _unjudged_isolation(scenario, trace, failure, subjects)
        if why is not None:
            unjudged.append(f"run {i + 1}: {why}")
    bar = (f"natural variance flips leads up to {noise.margin_threshold:.3g} nats"
           if math.isfinite(noise.margin_threshold) else "")
    return Tally(done, failing, tuple(observed), tuple(unjudged), note=bar)


# -- interference_slowdown -------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def latency_note(metric: str, alone: Sequence[LatencySample], observed: Sequence[LatencySample],
                 rule: SlowdownRule, recorded: float | None) -> str:
    """`<metric> alone median A (N fresh runs), in the scenario median B: Rx (limit Fx;
    recorded Qx)`: what the verdict on a slowdown compared."""
    base, seen = median_of(alone, metric), median_of(observed, metric)
    ratio = ("" if base is None or seen is None
             else f": {seen / max(base, rule.resolution_s, 1e-9):.1f}x")
    was = f"; recorded {recorded:.1f}x" if recorded is not None else ""
    name = {"ttft_s": "time to first token", "tpot_s": "time per output token",
            "e2e_s": "end-to-end latency"}.get(metric, metric)
    return (f"{name} alone median {_ms(base)} ({len(alone)} fresh runs), in the scenario "
            f"median {_ms(seen)}{ratio} (limit {rule.factor:g}x{was})")


async def replay_interference(bundle: Bundle, endpoint: Any, *, runs: int,
                              deadlines: Deadlines, check: CheckFn,
                              request_deadlines: Mapping[str, Deadlines] | None = None) -> Tally:
    """`runs` runs of the scenario, the victim's latency in each judged by the recorded
    rule against its alone latency measured afresh (before, and again after a run that
    broke the rule). Each request is sent under `request_deadlines` where it names it
    (None: the ones the bundle recorded, `recorded_deadlines`), else `deadlines`."""
    failure, scenario, sig = bundle.failure, bundle.scenario, bundle.signature
    rid = failure.request_id
    if rid is None or rid not in {r.id for r in scenario.requests}:
        return Tally(error=f"the bundle's scenario lacks the victim request ({rid})")
    own = dict(recorded_deadlines(bundle) if request_deadlines is None else request_deadlines)
    victim_deadlines = own.get(rid, deadlines)
    judged = judged_by(failure)
    rule = judged.rule
    if rule is None:
        return Tally(error="the bundle records no slowdown rule: re-record it with this vlfuzz")
    spec = scenario.request(rid)
    try:
        before = await calibrate_latency(endpoint, scenario, rid, runs=ALONE_LATENCY_RUNS,
                                         warmup=1, deadlines=victim_deadlines)
    except CalibrationError as e:
        return Tally(error=f"cannot measure the victim alone: {e}")
    victims = {before.key: before}
    observed: list[str] = []
    unjudged: list[str] = []
    samples: list[LatencySample] = []
    slowed: list[LatencySample] = []
    # the neighbours' waits in each run of `samples` / `slowed` (the rule's fairness guard)
    samples_beside: list[tuple[LatencySample, ...] | None] = []
    slowed_beside: list[tuple[LatencySample, ...] | None] = []
    done = 0
    for i in range(runs):
        try:
            trace = await run_scenario(endpoint, scenario, deadlines, probe=False, metrics=False,
                                       request_deadlines=own)
            others = check(scenario, trace)
        except Exception as e:  # noqa: BLE001 - a broken run is a verdict, not a crash
            return Tally(done, len(slowed), tuple(observed), tuple(unjudged),
                         f"run {i + 1} raised {type(e).__name__}: {e}")
        done += 1
        rt = _trace_of(trace, rid)
        sample = latency_sample(spec, rt) if rt is not None else None
        found = [f for f in interference_suspects(scenario, trace, victims, rule)
                 if f.request_id == rid]
        _merge(observed, [f.signature for f in found] + [f.signature for f in others])
        if sample is None:
            unjudged.append(f"run {i + 1}: the victim {rid} gave no complete answer ({_why(rt)})")
            continue
        beside = rule.neighbours(scenario, trace, rid)
        samples.append(sample)
        samples_beside.append(beside)
        if any(f.signature == sig for f in found):
            slowed.append(sample)
            slowed_beside.append(beside)
    judged_samples, judged_beside = (slowed, slowed_beside) if slowed \
        else (samples, samples_beside)
    slowdown = judge_slowdown(before.samples, judged_samples, rule, request_id=rid,
                              neighbours=judged_beside)
    recorded = failure.evidence.get("slowdown")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    metric = slowdown.metric if slowdown else str(recorded.get("metric", "e2e_s"))
    ratio = recorded.get("ratio")
    note = latency_note(metric, before.samples, judged_samples, rule,
                        float(ratio) if isinstance(ratio, (int, float)) else None)
    fair = (neighbour_ratio(judged_samples, judged_beside, metric, rule.resolution_s)
            if rule.neighbour_factor is not None else None)
    if fair is not None:
        note += (f"; it took {fair:.1f}x as long as its neighbours "
                 f"(limit {rule.neighbour_factor:g}x)")
    if slowed:
        try:
            after = await calibrate_latency(endpoint, scenario, rid, runs=ALONE_LATENCY_RUNS,
                                            warmup=0, deadlines=victim_deadlines)
        except CalibrationError as e:
            return Tally(done, 0, tuple(observed), tuple(unjudged),
                         f"the victim was slowed, then failed alone: {e}", note)
        if judge_slowdown(after.samples, slowed, rule, request_id=rid,
                          neighbours=slowed_beside) is None:
            return Tally(done, 0, tuple(observed), tuple(unjudged),
                         "the victim is now slow alone as well: interference cannot be "
                         "told from a target that became slow for everyone", note)
    return Tally(done, len(slowed), tuple(observed), tuple(unjudged), note=note)


OwnJudge = Callable[..., Awaitable[Tally]]


def own_judge(kind: str) -> OwnJudge | None:
    """The judge of a kind the ordinary oracles cannot reproduce, else None."""
    if kind in ISOLATION_KINDS:
        return replay_isolation
    if kind in INTERFERENCE_KINDS:
        return replay_interference
    return None
