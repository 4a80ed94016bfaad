"""Prompt texts from empty to a few thousand tokens, built from the seed corpus in
`corpora/texts/` plus Hypothesis unicode and literal special tokens.

Token counts come from a `Sizer`: without anything better, the built-in estimate
(an ASCII character is a quarter token, any other character a whole one, which
errs long for CJK and emoji); with a `fuzz.tokens.TokenScale` measured on the
target, its per-kind rates; with a caller's `count_tokens`, that function."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import reject

from fuzz.strategies._common import (Draw, StrategyArgumentError, check_int, check_order,
                                     corpus_dir)
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, REDRAWS, Exclusion
from fuzz.tokens import ESTIMATE, SPECIAL_TOKENS, TokenScale

CountTokens = Callable[[str], int]

PROMPTS: tuple[str, ...] = (
    "Describe this image.",
    "What is in the picture? Answer in one sentence.",
    "How many distinct colours do you see?",
    "Reply with a single word.",
    "Compare the images and list the differences.",
    "Read any text visible in the image.",
    "Summarise the following text.",
    "Translate the following into French.",
    "Continue the story.",
    "Explain what this code does.",
    "Answer yes or no: is the image mostly dark?",
    "Extract the data as JSON.",
)
# SPECIAL_TOKENS (re-exported from fuzz.tokens): Qwen2/3-VL chat-template tokens
# typed as plain text by a user.


# Strings that break naive text handling: direction overrides, zero-width and joiner
# sequences, stacked combining marks, BOM/NUL/controls, line separators,
# noncharacters, astral-plane symbols, and a JSON/HTML/template-injection look-alike.
UNICODE_EDGE_CASES: tuple[str, ...] = (
    "\u202eevil\u202c", "a\u200bb\u200cc\u200dd\u2060e", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
    "e" + "\u0301" * 40, "\ufeffBOM", "nul\x00byte", "\x1b[31mred\x1b[0m", "line\u2028sep\u2029para",
    "\r\n\r\r\n", "\uffff\ufffe\U0010FFFF", "\U0001D54F\U0001F600\U00020000",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0645\u0631\u062d\u0628\u0627", "\ufdfd" * 8,
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319", "{{ raise_exception('x') }}",
    '"}]}\\u0000</s>', "\t" * 64, " " * 200,
)
# Unpaired UTF-16 surrogates: survive json.dumps (escaped) but are not valid Unicode.
LONE_SURROGATES: tuple[str, ...] = ("\ud800", "\udfff", "x\udbff y")
_ASCII_EDGES = tuple(e for e in UNICODE_EDGE_CASES + LONE_SURROGATES if e.isascii())
_ALL_EDGES = UNICODE_EDGE_CASES + LONE_SURROGATES


def estimate_tokens(text: str) -> int:
    """Rough token count: ceil(ascii_chars / 4) + non_ascii_chars (C-speed paths)."""
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + len(text) - ascii_chars


def fit_to_tokens(text: str, target: int, count_tokens: CountTokens = estimate_tokens) -> str:
    """The longest prefix of `text` with count_tokens(prefix) <= target, by binary
    search over characters (O(log len) calls, so a remote tokenizer is affordable).
    Pure apart from whatever `count_tokens` does; assumes counts grow with length."""
    if target < 0:
        raise ValueError(f"target={target} must be >= 0")
    if count_tokens is estimate_tokens:
        return ESTIMATE.fit(text, target)  # the same answer in one pass
    if count_tokens(text) <= target:
        return text
    lo, hi = 0, len(text)  # count(text[:lo]) <= target < count(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(text[:mid]) <= target:
            lo = mid
        else:
            hi = mid
    return text[:lo]


@dataclass(frozen=True)
class Sizer:
    """How texts are measured: `count` tokens, `fit` a text to a token budget."""

    count: CountTokens
    fit: Callable[[str, int], str]


ESTIMATED = Sizer(estimate_tokens, ESTIMATE.fit)


def sizer(count_tokens: CountTokens | None = None, token_scale: TokenScale | None = None) -> Sizer:
    """A caller's exact counter first (a tokenizer), else a measured scale, else the
    built-in estimate."""
    if count_tokens is not None:
        if not callable(count_tokens):
            raise StrategyArgumentError(f"count_tokens must be callable, got {count_tokens!r}")
        return Sizer(count_tokens, functools.partial(_fit_with, count_tokens))
    if token_scale is not None:
        if not isinstance(token_scale, TokenScale):
            raise StrategyArgumentError(f"token_scale must be a TokenScale, got {token_scale!r}")
        return Sizer(token_scale.count, token_scale.fit)
    return ESTIMATED


def _fit_with(count_tokens: CountTokens, text: str, target: int) -> str:
    return fit_to_tokens(text, target, count_tokens)


def load_corpus(directory: Path | str | None = None) -> tuple[str, ...]:
    """The seed documents (`*.txt`, sorted by name so draws are reproducible)."""
    path = corpus_dir(directory, "corpora", "texts")
    docs = tuple(p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt")))
    docs = tuple(d for d in docs if d.strip())
    if not docs:
        raise ValueError(f"no non-empty *.txt files in {path}")
    return docs


# Token counts behind each length tag: (tag, first, last).
BUCKETS: tuple[tuple[str, int, int], ...] = (("empty", 0, 0), ("short", 1, 63),
                                            ("medium", 64, 1023), ("long", 1024, 2**62))
_UNICODE_TEXT = st.text(min_size=1, max_size=24)
_SPECIALS = st.sampled_from(SPECIAL_TOKENS)


@dataclass(frozen=True)
class TextSpec:
    """Validated `texts` arguments and what they draw from (corpus loaded once)."""

    lengths: tuple[tuple[st.SearchStrategy[int], ...], ...]
    openings: tuple[tuple[str, int], ...]  # (prompt, index into docs), a Dice pick
    docs: tuple[str, ...]
    edge_cases: st.SearchStrategy[str] | None
    special_percent: int
    unicode_percent: int
    edge_percent: int
    sizer: Sizer
    exclusion: Exclusion


def text_spec(*, min_tokens: int = 0, max_tokens: int = 4000, unicode: bool = True,
              special_tokens: bool = True, lone_surrogates: bool = False,
              corpus: Path | str | None = None, sizer_: Sizer = ESTIMATED,
              exclusion: Exclusion = NOTHING, prefix: str = "text") -> TextSpec:
    check_int("min_tokens", min_tokens, 0)
    check_int("max_tokens", max_tokens, 0)
    check_order("min_tokens", min_tokens, "max_tokens", max_tokens)
    ex = exclusion
    plain_unicode = ex.allows(f"{prefix}:unicode")
    docs = ex.require(tuple(d for d in load_corpus(corpus) if _doc_allowed(d, ex, prefix)),
                      "seed text (they all carry an excluded text feature)")
    edges = UNICODE_EDGE_CASES + (LONE_SURROGATES if lone_surrogates else ())
    wanted = [(min_tokens, max(min_tokens, min(max_tokens, 32))),  # short, medium, long
              (min_tokens, max(min_tokens, min(max_tokens, 512))),
              (max(min_tokens, max_tokens // 2), max_tokens)]
    return TextSpec(
        lengths=_lengths(wanted, ex, prefix),
        openings=tuple((p, i) for i in range(len(docs)) for p in PROMPTS),
        docs=docs,
        edge_cases=st.sampled_from(edges) if unicode else None,
        special_percent=5 if special_tokens and ex.allows(f"{prefix}:special_tokens") else 0,
        unicode_percent=15 if unicode and plain_unicode else 0,
        edge_percent=8 if unicode and plain_unicode and ex.allows(f"{prefix}:unicode_edge") else 0,
        sizer=sizer_, exclusion=ex)


def _lengths(wanted: list[tuple[int, int]], ex: Exclusion,
             prefix: str) -> tuple[tuple[st.SearchStrategy[int], ...], ...]:
    """Budget ranges, grouped by the `wanted` range they come from (group and range
    are `Dice` picks, the budget a Hypothesis choice). With length tags excluded, a
    wanted range keeps only its parts inside allowed buckets (a cut can land a token
    short of its budget, so a bucket's first budget is skipped)."""
    allowed = [(first + (first > 1), last) for name, first, last in BUCKETS
               if ex.allows(f"{prefix}:{name}")]
    if len(allowed) == len(BUCKETS):
        return tuple((st.integers(lo, hi),) for lo, hi in wanted)
    groups = []
    for lo, hi in wanted:
        parts = [(max(lo, a), min(hi, b)) for a, b in allowed if max(lo, a) <= min(hi, b)]
        if parts:
            groups.append(tuple(st.integers(a, b) for a, b in parts))
    return ex.require(tuple(groups), f"{prefix} length between {wanted[0][0]} and "
                                     f"{wanted[-1][1]} tokens")


def _doc_allowed(doc: str, ex: Exclusion, prefix: str) -> bool:
    return ex.allows_all(text_tags(doc, prefix=prefix)[1:])  # its length is not its tag


def draw_text(dice: Dice, spec: TextSpec, *, prefix: str = "text") -> str | None:
    """One text (see `texts`); None when REDRAWS attempts all carried an excluded tag."""
    for _ in range(REDRAWS if spec.exclusion else 1):
        text = _compose(dice, spec)
        if spec.exclusion.allows_all(text_tags(text, prefix=prefix)):
            return text
    return None


def _compose(dice: Dice, spec: TextSpec) -> str:
    budget = dice.draw(dice.pick(dice.pick(spec.lengths)))
    if budget == 0:
        return ""
    prompt, index = dice.pick(spec.openings)
    parts = [prompt]
    if dice.flip(spec.special_percent):
        parts.append(dice.draw(_SPECIALS))
    if dice.flip(spec.unicode_percent):
        parts.append(dice.draw(_UNICODE_TEXT))
    if spec.edge_cases is not None and dice.flip(spec.edge_percent):
        parts.append(dice.draw(spec.edge_cases))
    doc = spec.docs[index]
    text = " ".join(parts) + "\n\n" + doc[dice.number(0, len(doc) - 1):]
    short = budget - spec.sizer.count(text)
    if short > 0:  # enough whole copies in one go (each adds >= len(doc) / 4 tokens)
        text += ("\n\n" + doc) * (short * 4 // max(len(doc), 1) + 1)
        while spec.sizer.count(text) < budget:  # a measured scale may be denser
            text += text
    return spec.sizer.fit(text, budget)


def texts(*, min_tokens: int = 0, max_tokens: int = 4000, unicode: bool = True,
          special_tokens: bool = True, lone_surrogates: bool = False,
          corpus: Path | str | None = None, token_scale: TokenScale | None = None,
          exclude_features: Exclusion | frozenset[str] | None = None) -> st.SearchStrategy[str]:
    """Texts whose token count lies in [min_tokens, max_tokens] (estimated, or by
    `token_scale`): about a third each short (<= 32), medium (<= 512) and long
    (upper half of the range). `unicode` mixes in arbitrary Hypothesis text and
    `special_tokens` sometimes types a chat-template token into the prompt;
    `lone_surrogates` allows unpaired surrogates (invalid Unicode) among the edge
    cases. Texts tagged with an excluded `text:` feature are not drawn."""
    spec = text_spec(min_tokens=min_tokens, max_tokens=max_tokens, unicode=unicode,
                     special_tokens=special_tokens, lone_surrogates=lone_surrogates,
                     corpus=corpus, sizer_=sizer(token_scale=token_scale),
                     exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> str:
        text = draw_text(Dice.rolled(draw), spec)
        if text is None:
            reject()
        return text

    return build()


def text_tags(text: str, *, prefix: str = "text", sizer_: Sizer = ESTIMATED) -> tuple[str, ...]:
    """Length bucket, plus unicode / special-token markers."""
    n = sizer_.count(text)
    bucket = next(name for name, _, last in BUCKETS if n <= last)
    tags = [f"{prefix}:{bucket}"]
    plain = text.isascii()
    if not plain:
        tags.append(f"{prefix}:unicode")
    if "<" in text and any(tok in text for tok in SPECIAL_TOKENS):
        tags.append(f"{prefix}:special_tokens")
    if any(edge in text for edge in (_ASCII_EDGES if plain else _ALL_EDGES)):
        tags.append(f"{prefix}:unicode_edge")
    return tuple(tags)
