"""What an isolation or interference finding records about how it was judged, so that
`vlfuzz replay`, the pytest plugin and a bundle's repro.py judge it the same way.

These oracles do not judge a trace on its own: they compare it with the same requests
run alone, under a bar (the target's natural variance, a slowdown rule) measured when
the campaign started. A bundle that did not carry that bar could only be replayed with
the ordinary oracles, which cannot see these failures and would call them fixed. So the
campaign writes it into the failure's evidence (`evidence["judged_by"]`): the noise
model, the slowdown rule, the victim's calibrated alone latency, the requests the
finding is about, and how many alone runs a judgement takes. Alone answers are never
recorded for reuse: a replay measures them afresh on the target it runs against.

Bundles written before this existed are read with what their evidence does say (a
divergence's threshold, a slowdown's factor); `JudgedBy.noise` is None when nothing
says what bar applies. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from fuzz.isolation import AloneLatency, NoiseModel, SlowdownRule, subject_ids
from fuzz.model import Failure

__all__ = ["ISOLATION_KINDS", "INTERFERENCE_KINDS", "KEY", "JudgedBy", "judged_by",
           "needs_alone", "with_judged_by"]

ISOLATION_KINDS = frozenset({"isolation_divergence", "cross_request_leak"})
INTERFERENCE_KINDS = frozenset({"interference_slowdown"})
KEY = "judged_by"
DEFAULT_ALONE_RUNS = 2


@dataclass(frozen=True)
class JudgedBy:
    """The bar a finding was judged by. `subjects` are the requests it is about (kept
    by the minimizer, run alone by a replay); `alone` is the victim's calibrated alone
    latency (shown for comparison: replays measure it afresh)."""

    subjects: tuple[str, ...] = ()
    noise: NoiseModel | None = None
    rule: SlowdownRule | None = None
    alone: AloneLatency | None = None
    alone_runs: int = DEFAULT_ALONE_RUNS

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subjects": list(self.subjects), "alone_runs": self.alone_runs}
        if self.noise is not None:
            out["noise"] = self.noise.to_json()
        if self.rule is not None:
            out["rule"] = asdict(self.rule)
        if self.alone is not None:
            out["alone"] = self.alone.to_json()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JudgedBy:
        rule = d.get("rule")
        return cls(subjects=tuple(str(s) for s in d.get("subjects") or ()),
                   noise=NoiseModel.from_json(d["noise"]) if d.get("noise") else None,
                   rule=SlowdownRule(**rule) if isinstance(rule, Mapping) else None,
                   alone=AloneLatency.from_json(d["alone"]) if d.get("alone") else None,
                   alone_runs=max(1, int(d.get("alone_runs", DEFAULT_ALONE_RUNS))))


def with_judged_by(failure: Failure, judged: JudgedBy) -> Failure:
    """`failure` with how it was judged in its evidence (the signature is unchanged)."""
    return replace(failure, evidence={**failure.evidence, KEY: judged.to_json()})


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _recorded_noise(evidence: Mapping[str, Any]) -> NoiseModel | None:
    """An older bundle's bar: the threshold its divergence was judged against."""
    for where in (evidence, evidence.get("replay")):
        divergence = where.get("divergence") if isinstance(where, Mapping) else None
        threshold = _finite(divergence.get("threshold")) if isinstance(divergence, Mapping) \
            else None
        if threshold is not None:
            return NoiseModel(margin_threshold=threshold)
    return None


def _recorded_rule(evidence: Mapping[str, Any]) -> SlowdownRule | None:
    """An older bundle's rule: the factor (and resolution) its slowdown names; the
    absolute floors were never changed from their defaults by the campaign."""
    slowdown = evidence.get("slowdown")
    factor = _finite(slowdown.get("factor")) if isinstance(slowdown, Mapping) else None
    if factor is None or factor <= 1.0:
        return None
    resolution = _finite(slowdown.get("resolution_s"))
    return SlowdownRule(factor=factor, **({} if resolution is None
                                         else {"resolution_s": resolution}))


def judged_by(failure: Failure) -> JudgedBy:
    """How `failure` was judged: its recorded `judged_by`, else what older evidence
    says (subjects from the evidence, bar from a divergence or slowdown)."""
    ev = failure.evidence if isinstance(failure.evidence, Mapping) else {}
    raw = ev.get(KEY)
    if isinstance(raw, Mapping):
        try:
            found = JudgedBy.from_json(raw)
        except (KeyError, TypeError, ValueError):
            found = JudgedBy()
    else:
        found = JudgedBy()
    subjects = found.subjects or subject_ids(failure)
    noise = found.noise or _recorded_noise(ev)
    rule = found.rule or _recorded_rule(ev)
    alone = found.alone
    if alone is None and isinstance(ev.get("alone_calibrated"), list):
        try:
            alone = AloneLatency.from_json({"key": "", "samples": ev["alone_calibrated"]})
        except (KeyError, TypeError, ValueError):
            alone = None
    return replace(found, subjects=subjects, noise=noise, rule=rule, alone=alone)


def needs_alone(failure: Failure) -> bool:
    """Judging the finding needs its subjects' alone answers: every isolation finding
    but a canary in the wrong output, which shows on its own."""
    if failure.kind == "cross_request_leak":
        return "canary" not in failure.evidence
    return failure.kind in ISOLATION_KINDS
