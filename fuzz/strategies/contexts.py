"""Prompts sized against the target's context window: just under, at and past
`max_model_len` once the requested `max_tokens` is reserved.

Token counts come from a caller-supplied `count_tokens(text) -> int` (the campaign can
plug the target's `/tokenize`) or, without one, from `estimate_tokens`. Either way the
chat template adds a few tokens the count does not see, so "at" means "within a
template's overhead of the limit" — exactly where off-by-one checks live."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, StrategyArgumentError, check_int
from fuzz.strategies.texts import CountTokens, estimate_tokens, fit_to_tokens, load_corpus

# Offsets from the prompt budget (max_model_len - max_tokens), by position name.
POSITIONS: dict[str, tuple[int, ...]] = {"under": (-64, -2), "at": (-1, 0), "over": (1, 2, 64)}


def grow_to_tokens(seed_text: str, target: int, count_tokens: CountTokens = estimate_tokens,
                   filler: str = "") -> str:
    """`seed_text` followed by repeats of `filler` (default: itself) until at least
    `target` tokens, then cut to at most `target` with `fit_to_tokens`."""
    if not seed_text:
        raise ValueError("seed_text must not be empty")
    filler = "\n\n" + (filler or seed_text)
    text = seed_text
    while count_tokens(text) < target:  # doubling: O(log target) counts
        text += filler
        filler += filler
    return fit_to_tokens(text, target, count_tokens)


def context_texts(*, max_model_len: int = 8192, max_tokens: int = 16,
                  count_tokens: CountTokens | None = None,
                  corpus: Path | str | None = None) -> st.SearchStrategy[tuple[str, str]]:
    """(position, text) pairs, position in POSITIONS, whose token count is the prompt
    budget `max_model_len - max_tokens` plus that position's offset."""
    check_int("max_model_len", max_model_len, 2)
    check_int("max_tokens", max_tokens, 1, max_model_len - 1)
    if count_tokens is not None and not callable(count_tokens):
        raise StrategyArgumentError(f"count_tokens must be callable, got {count_tokens!r}")
    counter = count_tokens or estimate_tokens
    docs = load_corpus(corpus)
    budget = max_model_len - max_tokens

    @st.composite
    def build(draw: Draw) -> tuple[str, str]:
        position = draw(st.sampled_from(tuple(POSITIONS)))
        target = max(1, budget + draw(st.sampled_from(POSITIONS[position])))
        doc = draw(st.sampled_from(docs))
        head = f"Summarise this document (context test, {position}).\n\n"
        return position, grow_to_tokens(head + doc, target, counter, filler=doc)

    return build()
