"""The isolation and interference oracles as a campaign runs them: what is measured
at start, what is planted in a scenario, how its trace is judged, and which replay
minimizes what they find.

A differential oracle is only as good as its bar, so the quiet target's natural
variance (`NoiseModel`) and a streamed victim's alone latency are measured once at
start (or the noise model is read from a file) and journaled, so `--resume` reuses
them. Then a share of scenarios get a greedy probe, maybe the victim, and maybe a
canary planted in one of their own requests, at random offsets within their schedule.
After the ordinary oracles, `IsolationWatch.judge` compares the probes (and up to
`MAX_GENERATED_PROBES` generated greedy requests with logprobs) with their answers
alone, and the victim with its alone latency, and replays what it suspects: only
confirmed suspects become failures; the others are counted, because the suspects a
healthy target raises are the oracles' false-alarm rate. Every finding (and every one
a minimizer replay reports) carries the bar it was judged by in its evidence
(`fuzz.isolation_record`), so its bundle replays against the same bar.

The isolation modules send through the runner directly, without the campaign's
fixture server, so a scenario with fixture-server image URLs is neither planted nor
judged. Planting and the choices around it are pure; calibrating, judging and the
minimizer's replays are the async edges.
"""

from __future__ import annotations

import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fuzz.isolation import (AloneLatency, CalibrationError, ConfirmPolicy, NoiseModel,
                            SlowdownRule, calibrate_latency, canary, default_probes, derive_noise,
                            insert_request, interference_failures, interference_replay, is_probe,
                            isolation_failures, isolation_replay, measure_noise, plant_canary,
                            probe_request, request_key, subject_ids)
from fuzz.isolation.interference import NEIGHBOUR_FACTOR
from fuzz.isolation_record import INTERFERENCE_KINDS, ISOLATION_KINDS, JudgedBy, with_judged_by
from fuzz.minimize import Replay
from fuzz.model import CHAT_PATH, FIXTURE_SCHEME, Deadlines, Failure, RequestSpec, Scenario, Trace
from fuzz.runner import Endpoint

__all__ = ["ISOLATION_KINDS", "INTERFERENCE_KINDS", "OWN_REPLAY_KINDS", "Calibration",
           "IsolationWatch", "Judged", "Planted", "calibrate", "has_fixture_urls",
           "judged_probes", "plant", "victim_request"]

OWN_REPLAY_KINDS = ISOLATION_KINDS | INTERFERENCE_KINDS  # `check` cannot reproduce these
PROBE_ID, VICTIM_ID = "iso-probe", "iso-victim"
PROBE_TOKENS = 16
VICTIM_PROMPT = "Tell a short story about a lighthouse keeper."
VICTIM_PERCENT = 50  # of planted scenarios that also get the victim
CANARY_PERCENT = 50  # ... and a canary in one of their requests
MAX_GENERATED_PROBES = 2  # generated greedy requests judged per scenario (2 alone runs each)
ALONE_CACHE_ENTRIES = 256
# A short calibration: the campaign's budget is for fuzzing (`vlfuzz calibrate` measures more).
NOISE_RUNS = {"alone_runs": 3, "batch_sizes": (2, 4), "batch_runs": 2}
VICTIM_RUNS = 5


def victim_request() -> RequestSpec:
    """The calibrated victim: a streamed greedy request (TTFT and time per token)."""
    return probe_request(VICTIM_ID, VICTIM_PROMPT, stream=True, max_tokens=PROBE_TOKENS)


@dataclass(frozen=True)
class Calibration:
    """What the oracles compare against: the noise model (and where it came from),
    whether the image probe answered, and the victim with its alone latency."""

    noise: NoiseModel
    source: str
    image: bool
    victim: RequestSpec
    alone: AloneLatency

    def probes(self) -> Scenario:
        return default_probes(max_tokens=PROBE_TOKENS, image=self.image)

    def records(self) -> list[dict[str, Any]]:
        """The journal records (`noise`, `victim`) that `from_journal` reads back."""
        return [{"type": "noise", "source": self.source, "image": self.image,
                 "model": self.noise.to_json()},
                {"type": "victim", "spec": self.victim.to_json(), "alone": self.alone.to_json()}]

    @classmethod
    def from_journal(cls, noise: Mapping[str, Any],
                     victim: Mapping[str, Any]) -> Calibration | None:
        """The calibration a previous session journaled (as the ledger keeps it), or
        None when it has none or it cannot be read."""
        if not noise.get("model") or not victim.get("spec") or not victim.get("alone"):
            return None
        try:
            return cls(noise=NoiseModel.from_json(noise["model"]), source="journal",
                       image=bool(noise.get("image", True)),
                       victim=RequestSpec.from_json(victim["spec"]),
                       alone=AloneLatency.from_json(victim["alone"]))
        except (KeyError, TypeError, ValueError):
            return None


async def calibrate(endpoint: Endpoint, *, noise: NoiseModel | None = None,
                    source: str = "measured", deadlines: Deadlines = Deadlines()) -> Calibration:
    """Measure the quiet target: the noise model (unless given) from the text probes
    and, if the target answers it, the image probe; then the victim's alone latency.
    Raises CalibrationError when the target cannot give what the oracles need."""
    image = True
    if noise is None:
        full = default_probes(max_tokens=PROBE_TOKENS)
        text = default_probes(max_tokens=PROBE_TOKENS, image=False)
        samples = await measure_noise(endpoint, text, deadlines=deadlines, **NOISE_RUNS)
        ids = {r.id for r in text.requests}
        images = full.with_requests(tuple(r for r in full.requests if r.id not in ids))
        try:
            samples += await measure_noise(endpoint, images, deadlines=deadlines, **NOISE_RUNS)
        except CalibrationError:
            image = False  # a text-only model: probes stay text
        noise = derive_noise(samples)
    victim = victim_request()
    alone = await calibrate_latency(endpoint, Scenario(requests=(victim,)), victim.id,
                                    runs=VICTIM_RUNS, deadlines=deadlines)
    return Calibration(noise, source, image, victim, alone)


# -- planting (pure) -------------------------------------------------------------------

@dataclass(frozen=True)
class Planted:
    """The ids of what was inserted into a scenario, and the request given a canary."""

    probe: str | None = None
    victim: str | None = None
    canary_in: str | None = None


def has_fixture_urls(scenario: Scenario) -> bool:
    """Some request uses the fixture server, which isolation replays cannot reach."""
    return any(FIXTURE_SCHEME in (r.body if isinstance(r.body, str)
                                  else json.dumps(r.body, default=str))
               for r in scenario.requests)


def _fresh_id(scenario: Scenario, base: str) -> str:
    taken = {r.id for r in scenario.requests}
    n, name = 1, base
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _plantable(spec: RequestSpec) -> bool:
    """A chat request whose messages `plant_canary` can extend."""
    body = spec.body
    messages = body.get("messages") if isinstance(body, Mapping) else None
    return (spec.path == CHAT_PATH and spec.method.upper() == "POST"
            and isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages))


def plant(scenario: Scenario, rng: random.Random, *, probes: Scenario,
          victim: RequestSpec | None, canary_text: str) -> tuple[Scenario, Planted]:
    """`scenario` with one of `probes` inserted, maybe `victim` too, each at a random
    offset within its schedule (so they overlap its traffic), and maybe `canary_text`
    planted in one of its own chat requests (a leak into any other output is then
    caught at no extra cost)."""
    span_ms = max((r.offset_ms for r in scenario.requests), default=0.0)
    probe = rng.choice(probes.requests)
    probe_id = _fresh_id(scenario, PROBE_ID)
    out = insert_request(scenario, replace(probe, id=probe_id), media=probes.media,
                         offset_ms=round(rng.uniform(0.0, span_ms), 1))
    victim_id = None
    if victim is not None and rng.randrange(100) < VICTIM_PERCENT:
        victim_id = _fresh_id(out, VICTIM_ID)
        out = insert_request(out, replace(victim, id=victim_id),
                             offset_ms=round(rng.uniform(0.0, span_ms), 1))
    hosts = [r.id for r in scenario.requests if _plantable(r)]
    canary_in = None
    if hosts and rng.randrange(100) < CANARY_PERCENT:
        canary_in = rng.choice(hosts)
        out = out.with_requests(tuple(plant_canary(r, canary_text) if r.id == canary_in else r
                                      for r in out.requests))
    return out, Planted(probe_id, victim_id, canary_in)


def judged_probes(scenario: Scenario, planted: Planted | None,
                  cap: int = MAX_GENERATED_PROBES) -> list[str]:
    """The requests whose answers are compared with their answers alone: the planted
    probe and victim, and at most `cap` generated greedy requests with logprobs
    (each new one costs alone runs)."""
    mine = [i for i in (planted.probe, planted.victim) if i] if planted else []
    generated = [r.id for r in scenario.requests if r.id not in mine and is_probe(r)]
    return mine + generated[:cap]


# -- the campaign's watch (async edges) -------------------------------------------------

class _LruCache(OrderedDict):
    """Alone answers by request key, the least recently used dropped past `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True)
class Judged:
    """A scenario's confirmed isolation and interference failures, and the counters
    the journal keeps (suspects raised, confirmed or not, replays, seconds spent)."""

    confirmed: tuple[Failure, ...]
    counts: Mapping[str, Any]


class IsolationWatch:
    """The oracles of one campaign: its calibration, the alone answers measured so
    far, and the rules. `endpoint` is asked each time (a restarted target may move)."""

    def __init__(self, endpoint: Callable[[], Endpoint], calibration: Calibration, *,
                 factor: float = 5.0, policy: ConfirmPolicy = ConfirmPolicy()) -> None:
        self.endpoint, self.calibration, self.policy = endpoint, calibration, policy
        # starvation, not batch cost: slowed also against the neighbours of the same run
        self.rule = SlowdownRule(factor=factor, neighbour_factor=NEIGHBOUR_FACTOR)
        self.victims = {calibration.alone.key: calibration.alone}
        self.cache = _LruCache(ALONE_CACHE_ENTRIES)
        self.probes = calibration.probes()

    def plant(self, scenario: Scenario, rng: random.Random,
              canary_seed: str) -> tuple[Scenario, Planted]:
        """`plant` with this campaign's probes and victim; `canary_seed` makes the
        canary unique to the scenario (a leak from an earlier one shows as foreign)."""
        return plant(scenario, rng, probes=self.probes, victim=self.calibration.victim,
                     canary_text=canary(canary_seed))

    async def judge(self, scenario: Scenario, trace: Trace, planted: Planted | None,
                    deadlines: Deadlines) -> Judged:
        """Judge one scenario's trace; suspects are replayed before they count."""
        t0 = time.monotonic()
        endpoint = self.endpoint()
        probes = judged_probes(scenario, planted)
        iso = await isolation_failures(endpoint, scenario, trace, self.calibration.noise,
                                       cache=self.cache, probes=probes, policy=self.policy,
                                       deadlines=deadlines)
        slow = await interference_failures(endpoint, scenario, trace, self.victims,
                                           rule=self.rule, policy=self.policy,
                                           deadlines=deadlines)
        victims = sum(request_key(r) in self.victims for r in scenario.requests)
        counts = {"probes": len(probes), "victims": victims,
                  "suspects": len(iso.confirmed) + len(iso.unconfirmed),
                  "confirmed": len(iso.confirmed), "unconfirmed": len(iso.unconfirmed),
                  "replays": iso.replays,
                  "slow_suspects": len(slow.confirmed) + len(slow.unconfirmed),
                  "slow_confirmed": len(slow.confirmed), "slow_unconfirmed": len(slow.unconfirmed),
                  "slow_replays": slow.replays, "s": round(time.monotonic() - t0, 3)}
        confirmed = [self.recorded(f, scenario) for f in iso.confirmed + slow.confirmed]
        return Judged(tuple(confirmed), counts)

    def judged_by(self, failure: Failure, scenario: Scenario) -> JudgedBy:
        """The bar this campaign judged `failure` by, as its bundle records it so that
        a replay judges it the same way (`fuzz.isolation_record`)."""
        if failure.kind in INTERFERENCE_KINDS:
            alone = None
            if failure.request_id is not None:
                try:
                    alone = self.victims.get(request_key(scenario.request(failure.request_id)))
                except KeyError:
                    alone = None
            return JudgedBy(subjects=subject_ids(failure), rule=self.rule, alone=alone,
                            alone_runs=self.policy.alone_runs or 1)
        return JudgedBy(subjects=subject_ids(failure), noise=self.calibration.noise,
                        alone_runs=self.policy.alone_runs or 1)

    def recorded(self, failure: Failure, scenario: Scenario) -> Failure:
        """`failure` with `judged_by` in its evidence."""
        return with_judged_by(failure, self.judged_by(failure, scenario))

    def replay_for(self, failure: Failure, scenario: Scenario,
                   deadlines: Deadlines) -> Replay | None:
        """The minimizer's replay for a finding of these oracles: candidates judged
        by the same oracle, keeping the requests the finding is about (the victim
        unchanged). None for other kinds, or a victim this campaign did not calibrate."""
        if failure.kind in ISOLATION_KINDS:
            keep = subject_ids(failure)

            async def isolation(candidate: Scenario) -> tuple[Trace, list[Failure]]:
                judge = isolation_replay(self.endpoint(), self.calibration.noise, keep,
                                         cache=self.cache, alone_runs=self.policy.alone_runs,
                                         deadlines=deadlines)
                trace, found = await judge(candidate)
                return trace, [self.recorded(f, candidate) for f in found]
            return isolation
        if failure.kind not in INTERFERENCE_KINDS or failure.request_id is None:
            return None
        try:
            victim = scenario.request(failure.request_id)
        except KeyError:
            return None
        alone = self.victims.get(request_key(victim))
        if alone is None:
            return None

        async def interference(candidate: Scenario) -> tuple[Trace, list[Failure]]:
            judge = interference_replay(self.endpoint(), victim, alone, rule=self.rule,
                                        deadlines=deadlines)
            trace, found = await judge(candidate)
            return trace, [self.recorded(f, candidate) for f in found]
        return interference
