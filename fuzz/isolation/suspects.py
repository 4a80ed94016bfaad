"""One scenario's trace judged against what its requests do alone: the suspects.

Pure composition of the differential, leak and interference judgements over every
probe and victim a scenario holds. A suspect is not yet a finding: `confirm` replays
it first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fuzz.isolation.differential import divergence_failure, first_divergence
from fuzz.isolation.interference import (AloneLatency, SlowdownRule, judge_slowdown,
                                         latency_sample, slowdown_failure)
from fuzz.isolation.leaks import answer_leaks, no_foreign_canary
from fuzz.isolation.noise import NoiseModel
from fuzz.isolation.scenarios import is_probe, probe_shape, request_key
from fuzz.isolation.tokens import TokenAnswer, token_answer
from fuzz.model import Failure, Scenario, Trace
from fuzz.oracles.reading import pairs


def probe_answers(scenario: Scenario, trace: Trace) -> dict[str, TokenAnswer]:
    """The comparable answers of the scenario's probes, by request id."""
    out = {}
    for spec, rt in pairs(scenario, trace):
        answer = token_answer(spec, rt) if is_probe(spec) else None
        if answer is not None:
            out[spec.id] = answer
    return out


def subject_ids(failure: Failure) -> tuple[str, ...]:
    """The request ids an isolation finding is about: the request, and the other
    request of a leak between two (the one that planted a canary, too)."""
    ev = failure.evidence
    ids = [failure.request_id] + list(ev.get("requests") or []) + [ev.get("source")] \
        + list(ev.get("sources") or [])
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, str)))


def isolation_suspects(scenario: Scenario, trace: Trace,
                       alone: Mapping[str, Sequence[TokenAnswer]],
                       noise: NoiseModel) -> list[Failure]:
    """Divergences from the alone answers (`alone`: request id -> answers), answers
    that belong to another request, and canaries out of place."""
    got = probe_answers(scenario, trace)
    out = []
    for rid, answer in got.items():
        d = first_divergence(alone.get(rid, ()), answer, noise, request_id=rid)
        if d is not None:
            out.append(divergence_failure(d, probe=probe_shape(scenario.request(rid))))
    return out + answer_leaks(scenario, got, alone, noise) + no_foreign_canary(scenario, trace)


def interference_suspects(scenario: Scenario, trace: Trace,
                          victims: Mapping[str, AloneLatency],
                          rule: SlowdownRule = SlowdownRule()) -> list[Failure]:
    """Calibrated victims (`victims`: request key -> alone latency) slowed down in
    this one run (and, under the rule's fairness guard, slowed relative to the other
    requests of the run: `SlowdownRule`)."""
    out = []
    for spec, rt in pairs(scenario, trace):
        alone = victims.get(request_key(spec))
        sample = latency_sample(spec, rt) if alone is not None else None
        if alone is None or sample is None:
            continue
        s = judge_slowdown(alone.samples, [sample], rule, request_id=spec.id,
                           neighbours=[rule.neighbours(scenario, trace, spec.id)])
        if s is not None:
            out.append(slowdown_failure(s))
    return out
