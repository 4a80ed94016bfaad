"""The interference oracle: a victim request must not be starved by its neighbours.

A victim's alone latency is calibrated first (time to first token, time per output
token, end to end; the median of repeats on a quiet target). In a scenario it is
slowed down when the median of its observed latencies exceeds `factor` times the
alone median *and* by more than an absolute floor: some slowdown under load is the
price of batching, and on a loaded machine milliseconds are noise, so only a large,
absolute starvation is a finding. A rule with a `neighbour_factor` also asks for
fairness: the victim must have waited much longer than the requests beside it in the
same run, so a target that is slow for the whole batch (a CPU serving a burst of
multimodal requests) is not taken for one tenant starving another. Pure; repeats come
from controlled replay.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles.reading import complete_200, failure, pairs, parse_or_none

KIND = "interference_slowdown"
MESSAGE = "a victim request was slowed far beyond its calibrated alone latency"
METRICS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class LatencySample:
    """One answer's timing: `ttft_s` from sending to the first token event and
    `tpot_s` the mean gap between token events after it (streams only), `e2e_s`
    from sending to the end; `tokens` counts token events."""

    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None
    tokens: int = 0

    def get(self, metric: str) -> float | None:
        return getattr(self, metric)

    @property
    def wait_s(self) -> float | None:
        """How long the answer kept its sender waiting: until the first token of a
        stream, else (a body, or a stream without token events) until the end."""
        return self.ttft_s if self.ttft_s is not None else self.e2e_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LatencySample:
        return cls(ttft_s=d.get("ttft_s"), tpot_s=d.get("tpot_s"), e2e_s=d.get("e2e_s"),
                   tokens=int(d.get("tokens", 0)))


def _carries_token(event: str) -> bool:
    doc = parse_or_none(event) if event != "[DONE]" else None
    choices = doc.get("choices") if isinstance(doc, Mapping) else None
    for ch in choices if isinstance(choices, list) else ():
        delta = ch.get("delta") if isinstance(ch, Mapping) else None
        logprobs = ch.get("logprobs") if isinstance(ch, Mapping) else None
        if isinstance(delta, Mapping) and (delta.get("content") or delta.get("tool_calls")):
            return True
        if isinstance(logprobs, Mapping) and logprobs.get("content"):
            return True
    return False


def latency_sample(spec: RequestSpec, rt: RequestTrace) -> LatencySample | None:
    """The timing of a complete 200; None otherwise (a failed request is another
    oracle's business, not a latency)."""
    if not complete_200(rt) or rt.end_s is None:
        return None
    e2e = rt.end_s - rt.sent_s
    if not spec.stream or len(rt.events) != len(rt.chunk_times_s):
        return LatencySample(None, None, e2e)
    times = [t for ev, t in zip(rt.events, rt.chunk_times_s) if _carries_token(ev)]
    if not times:
        return LatencySample(None, None, e2e)
    tpot = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
    return LatencySample(times[0] - rt.sent_s, tpot, e2e, len(times))


def neighbour_samples(scenario: Scenario, trace: Trace, request_id: str,
                      window_s: float) -> tuple[LatencySample, ...]:
    """The latencies of the victim's neighbours in this run: every other request of the
    scenario answered with a complete 200 that was sent no later than `window_s` after
    the victim and ended no earlier than the victim was sent (it shared the target with
    the victim for a while). Empty when the victim has no trace."""
    by_id = {rt.id: rt for rt in trace.requests}
    victim = by_id.get(request_id)
    if victim is None:
        return ()
    out = []
    for spec, rt in pairs(scenario, trace):
        if spec.id == request_id or rt.end_s is None or rt.end_s < victim.sent_s \
                or rt.sent_s > victim.sent_s + window_s:
            continue
        sample = latency_sample(spec, rt)
        if sample is not None:
            out.append(sample)
    return tuple(out)


def median_of(samples: Sequence[LatencySample], metric: str) -> float | None:
    values = [v for s in samples if (v := s.get(metric)) is not None]
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class AloneLatency:
    """A victim's calibrated latency on a quiet target; `key` is its request key
    (`scenarios.request_key`), so any scenario holding the same request can be judged."""

    key: str
    samples: tuple[LatencySample, ...]

    def median(self, metric: str) -> float | None:
        return median_of(self.samples, metric)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "samples": [s.to_json() for s in self.samples],
                "medians": {m: self.median(m) for m in METRICS}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AloneLatency:
        return cls(key=str(d["key"]),
                   samples=tuple(LatencySample.from_json(s) for s in d["samples"]))


NEIGHBOUR_FACTOR = 2.0  # what a campaign should ask for (the rule's default is no guard)
NEIGHBOUR_WINDOW_S = 1.0


@dataclass(frozen=True)
class SlowdownRule:
    """Slowed down: observed median > `factor` x alone median, and above it by at least
    `min_excess_s` (TTFT, end to end) or `min_excess_tpot_s` (per output token).

    Alone medians below `resolution_s` count as `resolution_s`: a fast server sends a
    short answer's tokens in one burst, so its client-side time per token is 0.

    Fairness guard (`neighbour_factor` not None): a metric is slowed down only if the
    victim was also slowed relative to its neighbours. The victim's *neighbours* in one
    run are the other requests of the scenario answered with a complete 200, sent no
    later than `neighbour_window_s` after the victim and ended no earlier than the
    victim was sent (`neighbour_samples`). The comparison is on a request's *wait*
    (`LatencySample.wait_s`: time to the first token event of a stream, else end to
    end) when the slowed metric is time to first token, and on end-to-end latency when
    it is time per output token or end to end (a stall mid-stream shows there). In each
    run with at least one neighbour that has the measure, the victim's relative measure
    is its own / max(median of the neighbours', `resolution_s`); the metric stays slowed
    down only if the median of those over the runs exceeds `neighbour_factor`. With no
    such run (the victim ran alone, every neighbour failed) the guard does not apply
    and the rule above decides alone. Everyone slow together (batch cost on a loaded
    target) is thus no finding; the victim slow while its neighbours were served is.

    `neighbour_factor` defaults to None (no guard), so a rule recorded before the guard
    existed (a bundle's `judged_by.rule` without the field) loads and judges as before;
    a campaign asks for the guard with `NEIGHBOUR_FACTOR`."""

    factor: float = 5.0
    min_excess_s: float = 0.25
    min_excess_tpot_s: float = 0.02
    resolution_s: float = 0.001
    neighbour_factor: float | None = None
    neighbour_window_s: float = NEIGHBOUR_WINDOW_S

    def __post_init__(self) -> None:
        if self.factor <= 1.0:
            raise ValueError(f"factor must be > 1, got {self.factor}")
        if min(self.min_excess_s, self.min_excess_tpot_s, self.resolution_s) < 0:
            raise ValueError("floors and resolution must be >= 0")
        if self.neighbour_factor is not None and self.neighbour_factor < 1.0:
            raise ValueError(f"neighbour_factor must be >= 1, got {self.neighbour_factor}")
        if self.neighbour_window_s < 0:
            raise ValueError(f"neighbour_window_s must be >= 0, got {self.neighbour_window_s}")

    def neighbours(self, scenario: Scenario, trace: Trace,
                   request_id: str) -> tuple[LatencySample, ...] | None:
        """The neighbours' latencies this rule judges the victim against in one run, or
        None when the rule has no fairness guard."""
        if self.neighbour_factor is None:
            return None
        return neighbour_samples(scenario, trace, request_id, self.neighbour_window_s)

    def floor(self, metric: str) -> float:
        return self.min_excess_tpot_s if metric == "tpot_s" else self.min_excess_s


@dataclass(frozen=True)
class Slowdown:
    """The worst slowed-down metric of a victim over `runs` observations."""

    request_id: str
    metric: str
    alone_median_s: float
    observed_median_s: float
    factor: float
    runs: int

    resolution_s: float = 0.001
    # the fairness guard, when it applied: the median over runs of the victim's wait
    # relative to its neighbours' median wait, and the limit it broke
    neighbour_ratio: float | None = None
    neighbour_factor: float | None = None

    @property
    def ratio(self) -> float:
        return self.observed_median_s / max(self.alone_median_s, self.resolution_s, 1e-9)

    def describe(self) -> str:
        name = {"ttft_s": "time to first token", "tpot_s": "time per output token",
                "e2e_s": "end-to-end latency"}[self.metric]
        fair = ("" if self.neighbour_ratio is None else
                f"; it took {self.neighbour_ratio:.1f}x as long as its neighbours "
                f"(limit {self.neighbour_factor:g}x)")
        return (f"request {self.request_id}: {name} median {self.observed_median_s * 1000:.1f} ms "
                f"over {self.runs} run(s), {self.ratio:.1f}x its alone median "
                f"{self.alone_median_s * 1000:.1f} ms (limit {self.factor:g}x){fair}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


Neighbours = Sequence[Sequence[LatencySample] | None]


def _fair_measure(sample: LatencySample, metric: str) -> float | None:
    return sample.wait_s if metric == "ttft_s" else sample.e2e_s


def neighbour_ratio(observed: Sequence[LatencySample], neighbours: Neighbours | None,
                    metric: str = "ttft_s", resolution_s: float = 0.001) -> float | None:
    """How much longer than its neighbours the victim took, for a slowed `metric`
    (`SlowdownRule`): the median over runs of its measure / the median of its
    neighbours' (`neighbours[i]`: the neighbours in the run of `observed[i]`), over the
    runs that have both; None when no run has."""
    ratios = []
    for sample, beside in zip(observed, neighbours or ()):
        mine = _fair_measure(sample, metric)
        theirs = [v for n in beside or () if (v := _fair_measure(n, metric)) is not None]
        if mine is not None and theirs:
            ratios.append(mine / max(statistics.median(theirs), resolution_s, 1e-9))
    return statistics.median(ratios) if ratios else None


def judge_slowdown(alone: Sequence[LatencySample], observed: Sequence[LatencySample],
                   rule: SlowdownRule = SlowdownRule(), *, request_id: str = "",
                   neighbours: Neighbours | None = None) -> Slowdown | None:
    """The worst metric whose observed median breaks `rule` against the alone median,
    or None. Metrics missing on either side are not judged. `neighbours[i]` are the
    victim's neighbours in the run of `observed[i]` (`SlowdownRule.neighbours`), for
    the rule's fairness guard; without them (or without the guard) it does not apply."""
    worst: Slowdown | None = None
    for metric in METRICS:
        base, seen = median_of(alone, metric), median_of(observed, metric)
        if base is None or seen is None:
            continue
        if seen > rule.factor * max(base, rule.resolution_s) and seen - base > rule.floor(metric):
            fair = neighbour_ratio(observed, neighbours, metric, rule.resolution_s) \
                if rule.neighbour_factor is not None else None
            if fair is not None and fair <= rule.neighbour_factor:
                continue  # no worse off than its neighbours: the whole batch was slow
            runs = sum(1 for s in observed if s.get(metric) is not None)
            found = Slowdown(request_id, metric, base, seen, rule.factor, runs, rule.resolution_s,
                             fair, rule.neighbour_factor if fair is not None else None)
            if worst is None or found.ratio > worst.ratio:
                worst = found
    return worst


def slowdown_failure(s: Slowdown, *, evidence: dict[str, Any] | None = None) -> Failure:
    """The Failure for a slowdown. The signature names no metric or number: which
    metric trips first moves between runs of one starvation."""
    return failure(KIND, 200, MESSAGE, request_id=s.request_id, summary=s.describe(),
                   evidence={"slowdown": s.to_json(), **(evidence or {})})
