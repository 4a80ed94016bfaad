"""Controlled replay: a suspect becomes a finding only if it comes back.

A live server is noisy, so one odd answer or one slow run proves nothing. Each
suspect is confirmed by replaying its scenario `runs` times and the suspect
requests alone again: a divergence or leak must show up against the fresh alone
answers too, and a slowdown must hold against the fresh alone latency as well as
the calibrated one, in at least `need` of the replays.

These are the only async entry points the campaign needs (`isolation_failures`,
`interference_failures`); the judgement itself is in the pure modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fuzz.isolation.calibrate import AloneCache, alone_answers, run_alone
from fuzz.isolation.interference import (AloneLatency, LatencySample, SlowdownRule,
                                         judge_slowdown, latency_sample, slowdown_failure)
from fuzz.isolation.noise import NoiseModel
from fuzz.isolation.scenarios import probe_ids, request_key
from fuzz.isolation.suspects import interference_suspects, isolation_suspects, subject_ids
from fuzz.isolation.tokens import TokenAnswer
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.runner import Endpoint, run_scenario

Key = tuple[str, str | None]


@dataclass(frozen=True)
class ConfirmPolicy:
    """Replay the scenario up to `runs` times; confirmed at `need` hits. Each suspect
    request is also run alone `alone_runs` more times, afresh."""

    runs: int = 3
    need: int = 2
    alone_runs: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.need <= self.runs:
            raise ValueError(f"need 1 <= need ({self.need}) <= runs ({self.runs})")
        if self.alone_runs < 0:
            raise ValueError(f"alone_runs must be >= 0, got {self.alone_runs}")


@dataclass(frozen=True)
class Verdict:
    """Suspects split by their replays; `replays` counts scenario replays spent."""

    confirmed: tuple[Failure, ...] = ()
    unconfirmed: tuple[Failure, ...] = ()
    replays: int = 0


def _key(f: Failure) -> Key:
    return f.signature, f.request_id


def _confirmed(suspect: Failure, hits: int, runs: int, policy: ConfirmPolicy,
               extra: Mapping[str, Any], message: str | None = None) -> Failure:
    confirmation = {"hits": hits, "runs": runs, "need": policy.need,
                    "alone_runs": policy.alone_runs}
    return replace(suspect, message=f"{message or suspect.message} (reproduced in {hits} of "
                                    f"{runs} replays)",
                   evidence={**suspect.evidence, "confirmation": confirmation, **extra})


async def _replay_until_decided(
        endpoint: Endpoint, scenario: Scenario, keys: Sequence[Key],
        judge: Callable[[Trace], list[Failure]], policy: ConfirmPolicy,
        deadlines: Deadlines) -> tuple[Counter[Key], dict[Key, Failure], int]:
    """Replay until every key has `need` hits or can no longer reach them."""
    hits: Counter[Key] = Counter()
    last: dict[Key, Failure] = {}
    runs = 0
    while runs < policy.runs:
        left = policy.runs - runs
        if all(hits[k] >= policy.need or hits[k] + left < policy.need for k in keys):
            break
        trace = await run_scenario(endpoint, scenario, deadlines, probe=False, metrics=False)
        runs += 1
        found = {_key(f): f for f in judge(trace)}  # a key counts once per replay
        for k in keys:
            if k in found:
                hits[k] += 1
                last[k] = found[k]
    return hits, last, runs


async def confirm_isolation(endpoint: Endpoint, scenario: Scenario, suspects: Sequence[Failure],
                            noise: NoiseModel, *, alone: Mapping[str, Sequence[TokenAnswer]],
                            policy: ConfirmPolicy = ConfirmPolicy(),
                            deadlines: Deadlines = Deadlines()) -> Verdict:
    """Isolation suspects (divergences, leaks) that come back on replay, judged
    against `alone` plus fresh alone answers of the requests they are about."""
    if not suspects:
        return Verdict()
    refs = {rid: tuple(answers) for rid, answers in alone.items()}
    subjects = {rid for f in suspects for rid in subject_ids(f)}
    for rid in [i for i in probe_ids(scenario) if i in subjects]:
        fresh = await alone_answers(endpoint, scenario, rid, runs=policy.alone_runs,
                                    deadlines=deadlines)
        refs[rid] = refs.get(rid, ()) + fresh
    keys = list(dict.fromkeys(_key(f) for f in suspects))
    hits, last, runs = await _replay_until_decided(
        endpoint, scenario, keys, lambda t: isolation_suspects(scenario, t, refs, noise),
        policy, deadlines)
    confirmed, unconfirmed = [], []
    for f in {_key(f): f for f in suspects}.values():
        if hits[_key(f)] >= policy.need:
            confirmed.append(_confirmed(f, hits[_key(f)], runs, policy,
                                        {"replay": dict(last[_key(f)].evidence)}))
        else:
            unconfirmed.append(f)
    return Verdict(tuple(confirmed), tuple(unconfirmed), runs)


async def _alone_samples(endpoint: Endpoint, scenario: Scenario, request_id: str, runs: int,
                         deadlines: Deadlines) -> list[LatencySample]:
    out = []
    for _ in range(runs):
        spec, rt = await run_alone(endpoint, scenario, request_id, deadlines)
        sample = latency_sample(spec, rt)
        if sample is not None:
            out.append(sample)
    return out


async def confirm_interference(endpoint: Endpoint, scenario: Scenario,
                               suspects: Sequence[Failure], victims: Mapping[str, AloneLatency], *,
                               rule: SlowdownRule = SlowdownRule(),
                               policy: ConfirmPolicy = ConfirmPolicy(),
                               deadlines: Deadlines = Deadlines()) -> Verdict:
    """Slowdowns that come back: in `need` replays the victim is slowed, and the
    median over the replays breaks the rule against the calibrated alone latency and
    against a fresh alone measurement taken right after (so a target that became
    slow for everyone does not count as interference). Under the rule's fairness guard
    the median is also judged against the victim's neighbours in each replay."""
    if not suspects:
        return Verdict()
    ids = [f.request_id for f in suspects if f.request_id is not None]
    observed: dict[str, list[LatencySample]] = {rid: [] for rid in ids}
    beside: dict[str, list[tuple[LatencySample, ...] | None]] = {rid: [] for rid in ids}
    hits: Counter[str] = Counter()
    runs = 0
    while runs < policy.runs:
        left = policy.runs - runs
        if all(hits[r] >= policy.need or hits[r] + left < policy.need for r in ids):
            break
        trace = await run_scenario(endpoint, scenario, deadlines, probe=False, metrics=False)
        runs += 1
        slowed = {f.request_id for f in interference_suspects(scenario, trace, victims, rule)}
        for rid in ids:
            sample = latency_sample(scenario.request(rid), trace.request(rid))
            if sample is not None:
                observed[rid].append(sample)
                beside[rid].append(rule.neighbours(scenario, trace, rid))
            hits[rid] += rid in slowed
    confirmed, unconfirmed = [], []
    for f in suspects:
        rid = f.request_id
        calibrated = victims.get(request_key(scenario.request(rid))) if rid else None
        if rid is None or calibrated is None or hits[rid] < policy.need:
            unconfirmed.append(f)
            continue
        fresh = await _alone_samples(endpoint, scenario, rid, policy.alone_runs, deadlines)
        median = judge_slowdown(calibrated.samples, observed[rid], rule, request_id=rid,
                                neighbours=beside[rid])
        again = judge_slowdown(fresh, observed[rid], rule, request_id=rid,
                               neighbours=beside[rid]) if fresh else median
        if median is None or again is None:
            unconfirmed.append(f)
            continue
        extra = {"slowdown": median.to_json(), "observed": [s.to_json() for s in observed[rid]],
                 **({} if rule.neighbour_factor is None else
                    {"neighbours": [[n.to_json() for n in b or ()] for b in beside[rid]]}),
                 "alone_fresh": [s.to_json() for s in fresh],
                 "alone_calibrated": [s.to_json() for s in calibrated.samples]}
        confirmed.append(_confirmed(slowdown_failure(median), hits[rid], runs, policy, extra,
                                    message=median.describe()))
    return Verdict(tuple(confirmed), tuple(unconfirmed), runs)


async def isolation_failures(endpoint: Endpoint, scenario: Scenario, trace: Trace,
                             noise: NoiseModel, *, cache: AloneCache | None = None,
                             probes: Sequence[str] | None = None,
                             policy: ConfirmPolicy = ConfirmPolicy(),
                             deadlines: Deadlines = Deadlines()) -> Verdict:
    """The isolation check of one scenario the campaign ran: alone answers for its
    probes (`probes`, default every probe request; from `cache` when measured
    before), the pure judgement, and controlled replay of whatever it suspects.
    Costs nothing more when there is no probe and no canary shows up; each new probe
    costs `policy.alone_runs` alone runs."""
    cache = {} if cache is None else cache
    ids = [i for i in probe_ids(scenario) if probes is None or i in probes]
    alone = {rid: await alone_answers(endpoint, scenario, rid, runs=policy.alone_runs,
                                      deadlines=deadlines, cache=cache)
             for rid in ids}
    suspects = isolation_suspects(scenario, trace, alone, noise)
    return await confirm_isolation(endpoint, scenario, suspects, noise, alone=alone,
                                   policy=policy, deadlines=deadlines)


async def interference_failures(endpoint: Endpoint, scenario: Scenario, trace: Trace,
                                victims: Mapping[str, AloneLatency], *,
                                rule: SlowdownRule = SlowdownRule(),
                                policy: ConfirmPolicy = ConfirmPolicy(),
                                deadlines: Deadlines = Deadlines()) -> Verdict:
    """The interference check of one scenario the campaign ran (`victims`: request
    key -> calibrated alone latency): the pure judgement, then controlled replay."""
    suspects = interference_suspects(scenario, trace, victims, rule)
    return await confirm_interference(endpoint, scenario, suspects, victims, rule=rule,
                                      policy=policy, deadlines=deadlines)
