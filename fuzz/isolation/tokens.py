"""Greedy answers as token sequences with log-probabilities, read from a trace.

The differential oracle compares answers position by position, so it needs what the
server chose at each position and how far ahead of the runner-up that choice was.
Both come from `logprobs: true, top_logprobs: k`, in a JSON body or spread over SSE
chunks. Server output is untrusted: anything unexpected gives None, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fuzz.model import RequestSpec, RequestTrace
from fuzz.oracles.reading import complete_200, parse_or_none


@dataclass(frozen=True)
class TokenStep:
    """One generated position: the chosen token, its logprob and the top-k
    alternatives (best first) as (token, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()

    @property
    def margin(self) -> float:
        """How far the chosen token led the runner-up, in nats.

        With no runner-up listed, the chosen token's own probability still bounds it:
        whatever came second had at most 1 - p. A chosen token that was not the top
        one has no lead (0.0)."""
        if self.top and self.top[0][0] != self.token and self.top[0][1] > self.logprob:
            return 0.0
        others = [lp for tok, lp in self.top]
        mine = [i for i, (tok, _) in enumerate(self.top) if tok == self.token]
        if mine:  # only one entry is the chosen token: a same-text twin is a rival
            del others[mine[0]]
        if others:
            return max(0.0, self.logprob - max(others))
        rest = 1.0 - math.exp(min(self.logprob, 0.0))
        return math.inf if rest <= 0.0 else max(0.0, self.logprob - math.log(rest))

    def lead_over(self, token: str) -> float:
        """How far the chosen token led `token` here, in nats: exact when `token` is
        listed, else a lower bound (an unlisted token scored at most the last listed
        one; with no list, at most 1 - p). A natural flip needs this gap to close,
        so it is the number to hold against the noise, not only the runner-up's."""
        if token == self.token:
            return 0.0
        listed = [lp for tok, lp in self.top if tok == token]
        if listed:
            return max(0.0, self.logprob - max(listed))
        if self.top:
            return max(0.0, self.logprob - min(lp for _, lp in self.top))
        return self.margin

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "top": [list(t) for t in self.top]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TokenStep:
        return cls(token=str(d["token"]), logprob=float(d["logprob"]),
                   top=tuple((str(t), float(lp)) for t, lp in d.get("top", ())))


@dataclass(frozen=True)
class TokenAnswer:
    """The first choice of one answer: its steps, text and finish reason."""

    steps: tuple[TokenStep, ...]
    text: str = ""
    finish_reason: str | None = None

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(s.token for s in self.steps)

    def snippet(self, start: int, stop: int) -> str:
        """The decoded text of positions [start, stop) (tokens joined)."""
        return "".join(s.token for s in self.steps[max(start, 0):max(stop, 0)])

    def to_json(self) -> dict[str, Any]:
        return {"steps": [s.to_json() for s in self.steps], "text": self.text,
                "finish_reason": self.finish_reason}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TokenAnswer:
        return cls(steps=tuple(TokenStep.from_json(s) for s in d["steps"]),
                   text=str(d.get("text", "")), finish_reason=d.get("finish_reason"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _step(entry: Any) -> TokenStep | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
        return None
    logprob = _number(entry.get("logprob"))
    if logprob is None:
        return None
    top = []
    for alt in entry.get("top_logprobs") or ():
        alt_lp = _number(alt.get("logprob")) if isinstance(alt, Mapping) else None
        if alt_lp is not None and isinstance(alt.get("token"), str):
            top.append((alt["token"], alt_lp))
    top.sort(key=lambda t: -t[1])
    return TokenStep(token=entry["token"], logprob=logprob, top=tuple(top))


def _first_choice(doc: Any) -> Mapping[str, Any] | None:
    choices = doc.get("choices") if isinstance(doc, Mapping) else None
    if not isinstance(choices, list):
        return None
    for ch in choices:
        if isinstance(ch, Mapping) and ch.get("index", 0) == 0:
            return ch
    return None


def _steps(choice: Mapping[str, Any]) -> list[TokenStep] | None:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if content is None:
        return []
    if not isinstance(content, list):
        return None
    steps = [_step(e) for e in content]
    return None if any(s is None for s in steps) else steps  # type: ignore[return-value]


def _from_chunks(docs: Iterable[Any]) -> TokenAnswer | None:
    steps: list[TokenStep] = []
    text, finish, seen = "", None, False
    for doc in docs:
        ch = _first_choice(doc)
        if ch is None:
            continue
        seen = True
        more = _steps(ch)
        if more is None:
            return None
        steps += more
        delta = ch.get("delta") if isinstance(ch.get("delta"), Mapping) else {}
        if isinstance(delta.get("content"), str):
            text += delta["content"]
        finish = ch.get("finish_reason") or finish
    return TokenAnswer(tuple(steps), text, finish) if seen else None


def token_answer(spec: RequestSpec, rt: RequestTrace) -> TokenAnswer | None:
    """The first choice of a complete 200 with its logprobs; None when there is no
    complete answer, or it carries no logprobs although tokens were generated."""
    if not complete_200(rt):
        return None
    if spec.stream:
        docs = [parse_or_none(ev) for ev in rt.events if ev != "[DONE]"]
        answer = _from_chunks(docs)
    else:
        ch = _first_choice(parse_or_none(rt.body))
        steps = _steps(ch) if ch is not None else None
        if ch is None or steps is None:
            return None
        msg = ch.get("message") if isinstance(ch.get("message"), Mapping) else {}
        content = msg.get("content")
        answer = TokenAnswer(tuple(steps), content if isinstance(content, str) else "",
                             ch.get("finish_reason"))
    if answer is None or (not answer.steps and answer.text):
        return None  # text without logprobs: nothing to compare position by position
    return answer


@dataclass(frozen=True)
class Alignment:
    """Where two answers part. `position` is the first position whose tokens differ
    or where only one answer goes on (None: same tokens throughout). There,
    `ref_margin` is the reference's lead over its runner-up and `ref_lead` its lead
    over the token `other` chose (`TokenStep.lead_over`; the runner-up margin when
    `other` ended there); both None when the reference has no step there.
    `max_logprob_delta` is the largest |logprob difference| of the same token at the
    same position before `position`."""

    position: int | None
    ref_margin: float | None
    max_logprob_delta: float
    ref_lead: float | None = None


def align(ref: TokenAnswer, other: TokenAnswer) -> Alignment:
    """Compare `other` with `ref` position by position, up to their first difference
    (beyond it the prefixes differ, so later positions say nothing)."""
    delta = 0.0
    for p, (a, b) in enumerate(zip(ref.steps, other.steps)):
        if a.token != b.token:
            return Alignment(p, a.margin, delta, a.lead_over(b.token))
        delta = max(delta, abs(a.logprob - b.logprob))
    p = min(len(ref.steps), len(other.steps))
    if len(ref.steps) == len(other.steps):
        return Alignment(None, None, delta)
    margin = ref.steps[p].margin if p < len(ref.steps) else None
    return Alignment(p, margin, delta, margin)
