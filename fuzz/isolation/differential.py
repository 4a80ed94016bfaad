"""The differential oracle: did a greedy request answer differently in the scenario
than alone, by more than the target's natural variance explains?

A flip at a position where the alone run's top token barely led is normal (see
`noise`); a flip where it led by more than the measured bar is not, because nothing
but what ran beside the request can have moved it that far. The lead judged is the
alone top token's over the token the scenario chose (at least its lead over the
runner-up): a flip to a token far down the alone list is as telling as a flip where
the runner-up was far behind. Comparison stops at the first difference: after it the
two answers condition on different prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fuzz.isolation.noise import NoiseModel
from fuzz.isolation.tokens import TokenAnswer, align
from fuzz.model import Failure
from fuzz.oracles.reading import failure

KIND = "isolation_divergence"
MESSAGE = "greedy answer differs from the same request run alone, beyond natural variance"
CONTEXT_TOKENS = 16  # tokens of text shown on each side of the diverging position


@dataclass(frozen=True)
class Divergence:
    """Where a request's in-scenario answer left its alone answer. `got_token` None:
    the in-scenario answer ended there. At `position`, `lead` is the alone top
    token's lead over the token the scenario chose (a lower bound when that token was
    not in the alone top list), `margin` its lead over the alone runner-up, and
    `threshold` the natural-variance bar `lead` exceeded."""

    request_id: str
    position: int
    margin: float
    threshold: float
    alone_token: str | None
    got_token: str | None
    context: str
    alone_continuation: str
    got_continuation: str
    alone_finish: str | None = None
    got_finish: str | None = None
    lead: float = 0.0

    lead_is_bound: bool = False

    def describe(self) -> str:
        after = f"after {self.context!r}" if self.context else "at the start"
        if self.got_token is None:
            got = (f"the answer ended there (alone, {self.alone_token!r} led its runner-up "
                   f"by {self.margin:.3g} nats")
        else:
            got = (f"it chose {self.got_token!r}, which alone trailed by "
                   f"{'at least ' if self.lead_is_bound else ''}{self.lead:.3g} nats "
                   f"(the runner-up by {self.margin:.3g}")
        return (f"request {self.request_id}, position {self.position}: alone chose "
                f"{self.alone_token!r}, in the scenario {got}; natural variance flips leads "
                f"up to {self.threshold:.3g}); {after}, alone went on "
                f"{self.alone_continuation!r}, in the scenario {self.got_continuation!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _divergence(ref: TokenAnswer, got: TokenAnswer, threshold: float,
                request_id: str) -> Divergence | None:
    a = align(ref, got)
    if a.position is None or a.ref_lead is None or a.ref_margin is None \
            or a.ref_lead <= threshold:
        return None  # identical, not judgeable (alone ended first), or a normal flip
    p = a.position
    return Divergence(
        request_id=request_id, position=p, margin=a.ref_margin, lead=a.ref_lead,
        threshold=threshold,
        alone_token=ref.steps[p].token,
        got_token=got.steps[p].token if p < len(got.steps) else None,
        lead_is_bound=p < len(got.steps)
        and all(tok != got.steps[p].token for tok, _ in ref.steps[p].top),
        context=ref.snippet(p - CONTEXT_TOKENS, p),
        alone_continuation=ref.snippet(p, p + CONTEXT_TOKENS),
        got_continuation=got.snippet(p, p + CONTEXT_TOKENS),
        alone_finish=ref.finish_reason, got_finish=got.finish_reason)


def first_divergence(alone: Sequence[TokenAnswer], got: TokenAnswer, noise: NoiseModel, *,
                     request_id: str = "") -> Divergence | None:
    """The divergence of `got` from the alone answers, or None when any alone answer
    explains it (same tokens, or a first difference within natural variance).
    Against several alone answers, the one `got` followed longest is reported."""
    found: Divergence | None = None
    for ref in alone:
        d = _divergence(ref, got, noise.margin_threshold, request_id)
        if d is None:
            return None
        if found is None or d.position > found.position:
            found = d
    return found


def agrees(ref: TokenAnswer, other: TokenAnswer, threshold: float, *, min_tokens: int = 1) -> bool:
    """`other` is `ref`'s answer: the same tokens, or the same first `min_tokens` and
    then a normal flip. Stricter than "not divergent": an answer that goes on after
    `ref` ended, or is shorter than `min_tokens`, does not agree."""
    a = align(ref, other)
    if a.position is None:
        return len(ref.steps) >= min_tokens
    return a.position >= min_tokens and a.ref_lead is not None and a.ref_lead <= threshold


def divergence_failure(d: Divergence, *, probe: str = "",
                       evidence: dict[str, Any] | None = None) -> Failure:
    """The Failure for a divergence. The signature leaves out position and tokens,
    which move between runs of one bug; `probe` (see `probe_shape`) keeps a text
    probe's divergence and an image probe's apart."""
    return failure(KIND, 200, MESSAGE, detail=probe, request_id=d.request_id,
                   summary=d.describe(), evidence={"divergence": d.to_json(), **(evidence or {})})
