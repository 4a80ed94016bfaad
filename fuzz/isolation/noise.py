"""The target's natural variance for greedy requests, and the bar it sets.

A greedy answer is not bit-for-bit stable on a real server: batch size changes the
order of floating-point sums, so logprobs wobble and near-ties can flip. The
differential oracle must only flag what that wobble cannot explain, so it is measured
first: the same request alone, repeated, and inside benign batches of several sizes,
each compared with the first alone answer.

The bar (`margin_threshold`) is the lead of the alone run's top token over the token
chosen instead below which a flip is normal (for a flip to the runner-up, the
top-1/top-2 margin): a flip needs the gap between two tokens to close, and each
logprob moves by up to the largest delta seen (so gaps up to twice that can close);
flips actually seen set the bar directly; `safety` covers the tail a short
measurement did not see. The floor matters only when nothing moved at all: bf16
logits come in steps of 2^-8 to 2^-7 nats near the values small models produce.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fuzz.isolation.tokens import TokenAnswer, align

NOISE_FORMAT_VERSION = 1
DEFAULT_SAFETY = 2.0
DEFAULT_MIN_MARGIN = 0.02  # nats: never treat a closer race than this as decisive


@dataclass(frozen=True)
class NoiseSample:
    """One measured answer of probe `probe`, run alone (`batch_size` 1) or with
    `batch_size - 1` neutral neighbours."""

    probe: str
    batch_size: int
    answer: TokenAnswer

    def to_json(self) -> dict[str, Any]:
        return {"probe": self.probe, "batch_size": self.batch_size,
                "answer": self.answer.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NoiseSample:
        return cls(probe=str(d["probe"]), batch_size=int(d["batch_size"]),
                   answer=TokenAnswer.from_json(d["answer"]))


def _opt_float(value: float) -> float | None:
    return None if math.isinf(value) else value


def _from_opt(value: Any) -> float:
    return math.inf if value is None else float(value)


@dataclass(frozen=True)
class BatchNoise:
    """Variance at one batch size: `diverged` of `runs` answers differed from their
    probe's reference; `first_positions` says where; `max_flip_margin` is the largest
    reference lead (over the token chosen instead) that was overturned. A run that
    went on after its reference ended counts as diverged, but its lead is unknown and
    sets no bar."""

    batch_size: int
    runs: int
    diverged: int
    max_logprob_delta: float
    max_flip_margin: float
    first_positions: tuple[int, ...] = ()

    @property
    def divergence_rate(self) -> float:
        return self.diverged / self.runs if self.runs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "runs": self.runs, "diverged": self.diverged,
                "max_logprob_delta": self.max_logprob_delta,
                "max_flip_margin": _opt_float(self.max_flip_margin),
                "first_positions": list(self.first_positions)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchNoise:
        return cls(batch_size=int(d["batch_size"]), runs=int(d["runs"]),
                   diverged=int(d["diverged"]), max_logprob_delta=float(d["max_logprob_delta"]),
                   max_flip_margin=_from_opt(d.get("max_flip_margin")),
                   first_positions=tuple(int(p) for p in d.get("first_positions", ())))


@dataclass(frozen=True)
class NoiseModel:
    """What divergence is normal on this target (see the module docstring)."""

    margin_threshold: float
    max_logprob_delta: float = 0.0
    max_flip_margin: float = 0.0
    batches: tuple[BatchNoise, ...] = ()
    probes: int = 0
    safety: float = DEFAULT_SAFETY
    min_margin: float = DEFAULT_MIN_MARGIN

    def __post_init__(self) -> None:
        if not self.margin_threshold >= 0.0:
            raise ValueError(f"margin_threshold must be >= 0, got {self.margin_threshold}")

    def batch(self, batch_size: int) -> BatchNoise | None:
        return next((b for b in self.batches if b.batch_size == batch_size), None)

    def to_json(self) -> dict[str, Any]:
        return {"format_version": NOISE_FORMAT_VERSION,
                "margin_threshold": _opt_float(self.margin_threshold),
                "max_logprob_delta": self.max_logprob_delta,
                "max_flip_margin": _opt_float(self.max_flip_margin),
                "batches": [b.to_json() for b in self.batches], "probes": self.probes,
                "safety": self.safety, "min_margin": self.min_margin}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NoiseModel:
        if d.get("format_version") != NOISE_FORMAT_VERSION:
            raise ValueError(f"unsupported noise model format_version {d.get('format_version')!r}")
        return cls(margin_threshold=_from_opt(d.get("margin_threshold")),
                   max_logprob_delta=float(d.get("max_logprob_delta", 0.0)),
                   max_flip_margin=_from_opt(d.get("max_flip_margin", 0.0)),
                   batches=tuple(BatchNoise.from_json(b) for b in d.get("batches", ())),
                   probes=int(d.get("probes", 0)), safety=float(d.get("safety", DEFAULT_SAFETY)),
                   min_margin=float(d.get("min_margin", DEFAULT_MIN_MARGIN)))


def margin_threshold(max_logprob_delta: float, max_flip_margin: float, *,
                     safety: float = DEFAULT_SAFETY,
                     min_margin: float = DEFAULT_MIN_MARGIN) -> float:
    """The lead above which a flip is not natural variance."""
    return max(min_margin, safety * max(max_flip_margin, 2.0 * max_logprob_delta))


def derive_noise(samples: Sequence[NoiseSample], *, safety: float = DEFAULT_SAFETY,
                 min_margin: float = DEFAULT_MIN_MARGIN) -> NoiseModel:
    """The noise model of measured samples. Each probe's first alone sample is its
    reference; every other sample of that probe is aligned with it."""
    if safety < 1.0 or min_margin < 0.0:
        raise ValueError(f"need safety >= 1 and min_margin >= 0 (got {safety}, {min_margin})")
    refs: dict[str, TokenAnswer] = {}
    for s in samples:
        if s.batch_size == 1:
            refs.setdefault(s.probe, s.answer)
    missing = sorted({s.probe for s in samples} - set(refs))
    if missing:
        raise ValueError(f"probes without an alone sample: {missing}")
    acc: dict[int, dict[str, Any]] = {}
    seen_ref: set[str] = set()
    for s in samples:
        if s.batch_size == 1 and s.probe not in seen_ref and s.answer is refs[s.probe]:
            seen_ref.add(s.probe)  # the reference itself is not a measurement
            continue
        a = align(refs[s.probe], s.answer)
        b = acc.setdefault(s.batch_size, {"runs": 0, "diverged": 0, "delta": 0.0,
                                          "flip": 0.0, "positions": []})
        b["runs"] += 1
        b["delta"] = max(b["delta"], a.max_logprob_delta)
        if a.position is not None:
            b["diverged"] += 1
            b["positions"].append(a.position)
            if a.ref_lead is not None:  # the reference ended first: lead unknown
                b["flip"] = max(b["flip"], a.ref_lead)
    batches = tuple(BatchNoise(size, b["runs"], b["diverged"], b["delta"], b["flip"],
                               tuple(b["positions"])) for size, b in sorted(acc.items()))
    delta = max((b.max_logprob_delta for b in batches), default=0.0)
    flip = max((b.max_flip_margin for b in batches), default=0.0)
    return NoiseModel(margin_threshold=margin_threshold(delta, flip, safety=safety,
                                                        min_margin=min_margin),
                      max_logprob_delta=delta, max_flip_margin=flip, batches=batches,
                      probes=len(refs), safety=safety, min_margin=min_margin)
