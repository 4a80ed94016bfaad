"""Deadlines derived from what the target has shown, per request size class.

A fixed deadline is either too short for a 2000x2000 image under load (false hangs) or
too long for a 16-token text answer (a real hang costs minutes). `DeadlinePolicy` keeps
the latencies of requests that finished well, grouped by a coarse size class (stream or
not, image count, prompt size, output cap, concurrency), and proposes for each phase
`max(floor, k * p99)` of that class, never above `ceiling`. A class with too few samples
borrows from the coarser class that ignores concurrency and output cap, then from all
requests, and with nothing learnt the `ceiling` (the generous default) applies. Explicit
overrides (flags) always win. With `steps`, a learnt value is rounded up to 1, 2 or 5
times a power of ten: the handful of limits in use then keeps a hang's signature (which
names its limit) and a minimizer's replays stable while latencies wander. Pure
bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fuzz.model import Deadlines, RequestSpec, RequestTrace, Scenario

PHASES = ("first_byte_s", "stall_s", "total_s")
# Size classes kept (least recently observed dropped past it): the class space is
# thousands wide (stream x images x prompt x output cap x concurrency buckets), and
# each class's window would otherwise keep up to `window` samples for the whole run.
MAX_CLASSES = 256
DEADLINE_OF_PHASE = {"first_byte_s": "first_byte", "stall_s": "stall", "total_s": "total"}
_STEPS = (1.0, 2.0, 5.0)


@dataclass(frozen=True)
class SizeClass:
    """A coarse bucket of requests expected to take similar time. Sizes are log2 buckets
    (0, 1, 2-3, 4-7, ...), so a class spans a factor of two."""

    stream: bool
    images: int
    prompt_chars: int
    max_tokens: int
    concurrency: int

    def coarse(self) -> SizeClass:
        """The fallback class: same kind of input, any output cap and load."""
        return replace(self, max_tokens=-1, concurrency=-1)


def _bucket(n: int) -> int:
    return 0 if n <= 0 else int(math.log2(n)) + 1


def _text_chars(value: Any) -> int:
    """Characters of text in a body, media placeholders and data URLs excluded."""
    if isinstance(value, str):
        return 0 if value.startswith(("vlfuzz-media:", "data:")) else len(value)
    if isinstance(value, Mapping):
        return sum(_text_chars(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_chars(v) for v in value)
    return 0


def size_class(spec: RequestSpec, concurrency: int = 1) -> SizeClass:
    """The class of `spec` when `concurrency` requests of its scenario run at once."""
    body = spec.body if isinstance(spec.body, Mapping) else {}
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    cap = cap if isinstance(cap, int) and not isinstance(cap, bool) else 0
    return SizeClass(stream=spec.stream, images=_bucket(len(spec.media_refs())),
                     prompt_chars=_bucket(_text_chars(body.get("messages"))),
                     max_tokens=_bucket(cap), concurrency=_bucket(concurrency))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def step_up(seconds: float) -> float:
    """The smallest 1, 2 or 5 x 10^k not below `seconds` (positive)."""
    if seconds <= 0:
        return seconds
    decade = 10.0 ** math.floor(math.log10(seconds))
    for step in (*_STEPS, 10.0):
        value = round(step * decade, 9)
        if value >= seconds * (1 - 1e-9):
            return value
    return round(10.0 * decade, 9)


def loosest(deadlines: Sequence[Deadlines], default: Deadlines) -> Deadlines:
    """Per phase, the largest of `deadlines` (`default` when there are none)."""
    if not deadlines:
        return default
    return Deadlines(**{p: max(getattr(d, p) for d in deadlines) for p in PHASES})


def phase_latencies(rt: RequestTrace) -> dict[str, float] | None:
    """First byte, longest gap between chunks, and total seconds of a 2xx read to its
    end; None otherwise: cut, failed or disconnected requests say nothing about how long
    a healthy answer takes, and quick rejections would drag the percentiles down."""
    if (rt.status is None or not 200 <= rt.status < 300 or rt.error is not None
            or rt.deadline is not None
            or rt.disconnected or rt.first_byte_s is None or rt.end_s is None):
        return None
    marks = [rt.first_byte_s, *rt.chunk_times_s]
    stall = max((b - a for a, b in zip(marks, marks[1:])), default=0.0)
    return {"first_byte_s": rt.first_byte_s - rt.sent_s, "stall_s": max(stall, 0.0),
            "total_s": rt.end_s - rt.sent_s}


class DeadlinePolicy:
    """Learns per-class latencies (`observe`) and proposes deadlines (`deadlines_for`).

    `floor` keeps deadlines from collapsing on a fast, lightly loaded target; `ceiling`
    caps them and is what applies before anything is learnt; `overrides` (phase name ->
    seconds, e.g. from command-line flags) replace the proposal for that phase."""

    def __init__(self, *, floor: Deadlines = Deadlines(5.0, 5.0, 15.0),
                 ceiling: Deadlines = Deadlines(120.0, 60.0, 300.0), k: float = 4.0,
                 quantile: float = 99.0, min_samples: int = 20, window: int = 500,
                 overrides: Mapping[str, float] | None = None, steps: bool = False,
                 max_classes: int = MAX_CLASSES) -> None:
        unknown = set(overrides or {}) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown deadline phases: {sorted(unknown)}")
        if k <= 0 or min_samples < 1 or window < min_samples or max_classes < 1:
            raise ValueError("need k > 0, 1 <= min_samples <= window and max_classes >= 1")
        self.floor, self.ceiling, self.k, self.quantile = floor, ceiling, k, quantile
        self.min_samples, self.window, self.steps = min_samples, window, steps
        self.overrides = dict(overrides or {})
        self.max_classes = max_classes
        # least recently observed first; the overall pool (key None) is never dropped
        self._samples: OrderedDict[SizeClass | None, deque[dict[str, float]]] = OrderedDict()

    def observe(self, spec: RequestSpec, request_trace: RequestTrace,
                concurrency: int = 1) -> bool:
        """Record one finished request; False when it says nothing (cut, failed)."""
        lat = phase_latencies(request_trace)
        if lat is None:
            return False
        cls = size_class(spec, concurrency)
        for key in (cls, cls.coarse(), None):
            self._samples.setdefault(key, deque(maxlen=self.window)).append(lat)
            self._samples.move_to_end(key)
        while len(self._samples) > self.max_classes + 1:  # None was just moved last
            self._samples.popitem(last=False)
        return True

    def classes(self) -> int:
        """How many size classes (fine and coarse) hold samples: at most `max_classes`."""
        return sum(key is not None for key in self._samples)

    def observe_scenario(self, scenario: Scenario, traces: Sequence[RequestTrace]) -> int:
        """`observe` every request of a scenario at its concurrency; how many counted."""
        by_id = {rt.id: rt for rt in traces}
        n = len(scenario.requests)
        return sum(self.observe(spec, by_id[spec.id], n) for spec in scenario.requests
                   if spec.id in by_id)

    def samples(self, spec: RequestSpec, concurrency: int = 1) -> int:
        """How many observations `deadlines_for` would base its proposal on."""
        cls = size_class(spec, concurrency)
        return len(self._pool(cls) or ())

    def _pool(self, cls: SizeClass) -> deque[dict[str, float]] | None:
        for key in (cls, cls.coarse(), None):
            pool = self._samples.get(key)
            if pool is not None and len(pool) >= self.min_samples:
                return pool
        return None

    def deadlines_for(self, spec: RequestSpec, concurrency: int = 1) -> Deadlines:
        """max(floor, k * p99) per phase for `spec`'s class, capped at `ceiling`."""
        return self._propose(self._pool(size_class(spec, concurrency)))

    def _propose(self, pool: deque[dict[str, float]] | None) -> Deadlines:
        values: dict[str, float] = {}
        for phase in PHASES:
            lo, hi = getattr(self.floor, phase), getattr(self.ceiling, phase)
            if phase in self.overrides:
                values[phase] = self.overrides[phase]
            elif pool is None:
                values[phase] = hi
            else:
                learnt = self.k * percentile([s[phase] for s in pool], self.quantile)
                learnt = max(lo, learnt)
                values[phase] = min(hi, step_up(learnt) if self.steps else learnt)
        return Deadlines(**values)

    def source(self, spec: RequestSpec, phase: str, concurrency: int = 1) -> str:
        """Where `deadlines_for(spec)`'s value for `phase` comes from: "override",
        "learnt" or "ceiling" (nothing learnt yet for its class)."""
        if phase in self.overrides:
            return "override"
        return "ceiling" if self._pool(size_class(spec, concurrency)) is None else "learnt"

    def overall(self) -> Deadlines | None:
        """The proposal from every request seen, or None before `min_samples` of them:
        what the campaign reports as "the" learnt deadlines."""
        pool = self._samples.get(None)
        if pool is None or len(pool) < self.min_samples:
            return None
        return self._propose(pool)

    def deadlines_for_scenario(self, scenario: Scenario) -> dict[str, Deadlines]:
        """Per-request deadlines for `run_scenario(..., request_deadlines=...)`."""
        n = len(scenario.requests)
        return {spec.id: self.deadlines_for(spec, n) for spec in scenario.requests}

    def scenario_deadlines(self, scenario: Scenario) -> Deadlines:
        """One Deadlines for a whole scenario: the loosest of its requests'."""
        return loosest(list(self.deadlines_for_scenario(scenario).values()), self.ceiling)
