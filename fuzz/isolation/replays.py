"""What the minimizer needs to shrink an isolation or interference finding.

`fuzz.minimize.minimize(scenario, signature, replay)` keeps a candidate when
`replay(candidate)` reports the same signature often enough. The replays here judge a
candidate with the isolation or interference oracle instead of `fuzz.oracles.check`,
and guard what the finding is about: a candidate that dropped the victim (or changed
it: its calibrated latency belongs to that exact request) or dropped a request the
finding is about reports nothing, without being sent; and only findings about the subject
count. So the neighbours shrink and the subject stays.
"""

from __future__ import annotations

from collections.abc import Sequence

from fuzz.isolation.calibrate import AloneCache, alone_answers
from fuzz.isolation.interference import AloneLatency, SlowdownRule
from fuzz.isolation.noise import NoiseModel
from fuzz.isolation.scenarios import is_probe, keeps_request, request_key
from fuzz.isolation.suspects import interference_suspects, isolation_suspects, subject_ids
from fuzz.minimize import Replay
from fuzz.model import Deadlines, Failure, RequestSpec, Scenario, Trace
from fuzz.runner import Endpoint, run_scenario

NOTHING = Trace(requests=())  # what a candidate that lost its subject "ran"
__all__ = ["NOTHING", "interference_replay", "isolation_replay", "keeps_ids", "subject_ids"]


def keeps_ids(scenario: Scenario, request_ids: Sequence[str]) -> bool:
    """Every one of `request_ids` is still in `scenario` (its body may have been
    simplified: a probe's alone answer is measured afresh for a new body)."""
    have = {r.id for r in scenario.requests}
    return all(i in have for i in request_ids)


def isolation_replay(endpoint: Endpoint, noise: NoiseModel, keep: Sequence[str], *,
                     cache: AloneCache | None = None, alone_runs: int = 2,
                     deadlines: Deadlines = Deadlines()) -> Replay:
    """A replay that judges a candidate with the isolation oracle, for candidates that
    keep the requests `keep` (see `subject_ids`), reporting only findings about them.
    Alone answers are measured for those of them that are probes (from `cache` for
    bodies seen before)."""
    cache = {} if cache is None else cache

    async def replay(candidate: Scenario) -> tuple[Trace, list[Failure]]:
        if not keeps_ids(candidate, keep):
            return NOTHING, []
        trace = await run_scenario(endpoint, candidate, deadlines, probe=False, metrics=False)
        alone = {rid: await alone_answers(endpoint, candidate, rid, runs=alone_runs,
                                          deadlines=deadlines, cache=cache)
                 for rid in keep if is_probe(candidate.request(rid))}
        found = isolation_suspects(candidate, trace, alone, noise)
        return trace, [f for f in found if f.request_id in keep]

    return replay


def interference_replay(endpoint: Endpoint, victim: RequestSpec, alone: AloneLatency, *,
                        rule: SlowdownRule = SlowdownRule(),
                        deadlines: Deadlines = Deadlines()) -> Replay:
    """A replay that judges a candidate by the victim's slowdown in that one run, for
    candidates that keep `victim` unchanged (`keeps_request`); the minimizer's
    sequential test supplies the repeats."""
    if alone.key != request_key(victim):
        raise ValueError(f"the calibrated latency is not {victim.id}'s (request key differs)")
    victims = {alone.key: alone}

    async def replay(candidate: Scenario) -> tuple[Trace, list[Failure]]:
        if not keeps_request(candidate, victim):
            return NOTHING, []
        trace = await run_scenario(endpoint, candidate, deadlines, probe=False, metrics=False)
        found = interference_suspects(candidate, trace, victims, rule)
        return trace, [f for f in found if f.request_id == victim.id]

    return replay
