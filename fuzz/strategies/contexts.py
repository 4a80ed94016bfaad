"""Prompts sized against the target's context window: just under, at and past
`max_model_len` once the requested `max_tokens` is reserved.

Token counts come from a caller-supplied `count_tokens(text) -> int` (an exact
tokenizer), else from a `fuzz.tokens.TokenScale` measured on the target's
`/tokenize`, else from `estimate_tokens`. Either way the chat template adds a few
tokens the count does not see, so "at" means "within a template's overhead of the
limit" — exactly where off-by-one checks live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, check_int
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.texts import (ESTIMATED, CountTokens, Sizer, estimate_tokens, load_corpus,
                                   sizer)
from fuzz.tokens import TokenScale

# Offsets from the prompt budget (max_model_len - max_tokens), by position name.
POSITIONS: dict[str, tuple[int, ...]] = {"under": (-64, -2), "at": (-1, 0), "over": (1, 2, 64)}
_OFFSETS = {p: st.sampled_from(offsets) for p, offsets in POSITIONS.items()}


def grow_to_tokens(seed_text: str, target: int, count_tokens: CountTokens = estimate_tokens,
                   filler: str = "", *, sizer_: Sizer | None = None) -> str:
    """`seed_text` followed by repeats of `filler` (default: itself) until at least
    `target` tokens, then cut to at most `target` (`sizer_` overrides `count_tokens`)."""
    if not seed_text:
        raise ValueError("seed_text must not be empty")
    measure = sizer_ or sizer(count_tokens=None if count_tokens is estimate_tokens
                              else count_tokens)
    filler = "\n\n" + (filler or seed_text)
    text = seed_text
    while measure.count(text) < target:  # doubling: O(log target) counts
        text += filler
        filler += filler
    return measure.fit(text, target)


@dataclass(frozen=True)
class ContextSpec:
    """What long contexts are made of and measured with (corpus loaded once)."""

    positions: st.SearchStrategy[str]
    docs: st.SearchStrategy[str]
    sizer: Sizer


def context_spec(*, measure: Sizer = ESTIMATED, corpus: Path | str | None = None,
                 exclusion: Exclusion = NOTHING) -> ContextSpec:
    """Positions whose `context:<position>` tag is excluded are left out."""
    positions = exclusion.require(tuple(p for p in POSITIONS if exclusion.allows(f"context:{p}")),
                                  "context position")
    return ContextSpec(st.sampled_from(positions), st.sampled_from(load_corpus(corpus)), measure)


def draw_context(draw: Draw, spec: ContextSpec, budget: int) -> tuple[str, str]:
    """(position, text): a document grown to `budget` plus the position's offset."""
    position = draw(spec.positions)
    target = max(1, budget + draw(_OFFSETS[position]))
    doc = draw(spec.docs)
    head = f"Summarise this document (context test, {position}).\n\n"
    return position, grow_to_tokens(head + doc, target, sizer_=spec.sizer, filler=doc)


def context_texts(*, max_model_len: int = 8192, max_tokens: int = 16,
                  count_tokens: CountTokens | None = None,
                  corpus: Path | str | None = None, token_scale: TokenScale | None = None,
                  exclude_features: Exclusion | frozenset[str] | None = None
                  ) -> st.SearchStrategy[tuple[str, str]]:
    """(position, text) pairs, position in POSITIONS, whose token count is the prompt
    budget `max_model_len - max_tokens` plus that position's offset (by `count_tokens`,
    else `token_scale`, else the estimate). Excluded `context:<position>` tags are
    not drawn."""
    check_int("max_model_len", max_model_len, 2)
    check_int("max_tokens", max_tokens, 1, max_model_len - 1)
    spec = context_spec(measure=sizer(count_tokens, token_scale), corpus=corpus,
                        exclusion=Exclusion.of(exclude_features))
    budget = max_model_len - max_tokens

    @st.composite
    def build(draw: Draw) -> tuple[str, str]:
        return draw_context(draw, spec, budget)

    return build()
