"""Prompt texts from empty to a few thousand tokens, built from the seed corpus in
`corpora/texts/` plus Hypothesis unicode and literal special tokens. Token counts
are estimated (no tokenizer here): an ASCII character is a quarter token, any
other character a whole one, which errs long for CJK and emoji."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, chance, check_int, check_order, corpus_dir

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
# Qwen2/3-VL chat-template tokens typed as plain text by a user.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|im_start|>",
    "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
)


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
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")


def estimate_tokens(text: str) -> int:
    """Rough token count: ceil(ascii_chars / 4) + non_ascii_chars (C-speed paths)."""
    if text.isascii():
        return -(-len(text) // 4)
    non_ascii = len(_ASCII_RUNS.sub("", text))
    return -(-(len(text) - non_ascii) // 4) + non_ascii


def _fit(text: str, budget: int) -> str:
    """The longest prefix of `text` whose estimate is at most `budget`; ASCII text
    is cut directly (its estimate is exactly a quarter of its length)."""
    if text.isascii() and estimate_tokens(text) > budget:
        return text[: budget * 4]
    return fit_to_tokens(text, budget)


def fit_to_tokens(text: str, target: int, count_tokens: CountTokens = estimate_tokens) -> str:
    """The longest prefix of `text` with count_tokens(prefix) <= target, by binary
    search over characters (O(log len) calls, so a remote tokenizer is affordable).
    Pure apart from whatever `count_tokens` does; assumes counts grow with length."""
    if target < 0:
        raise ValueError(f"target={target} must be >= 0")
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

def load_corpus(directory: Path | str | None = None) -> tuple[str, ...]:
    """The seed documents (`*.txt`, sorted by name so draws are reproducible)."""
    path = corpus_dir(directory, "corpora", "texts")
    docs = tuple(p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt")))
    docs = tuple(d for d in docs if d.strip())
    if not docs:
        raise ValueError(f"no non-empty *.txt files in {path}")
    return docs


def texts(*, min_tokens: int = 0, max_tokens: int = 4000, unicode: bool = True,
          special_tokens: bool = True, lone_surrogates: bool = False,
          corpus: Path | str | None = None) -> st.SearchStrategy[str]:
    """Texts whose estimated token count lies in [min_tokens, max_tokens]: about a
    third each short (<= 32), medium (<= 512) and long (upper half of the range). `unicode` mixes in arbitrary Hypothesis text and
    `special_tokens` sometimes types a chat-template token into the prompt;
    `lone_surrogates` allows unpaired surrogates (invalid Unicode) among the edge cases."""
    check_int("min_tokens", min_tokens, 0)
    check_int("max_tokens", max_tokens, 0)
    check_order("min_tokens", min_tokens, "max_tokens", max_tokens)
    docs = load_corpus(corpus)
    edge_cases = UNICODE_EDGE_CASES + (LONE_SURROGATES if lone_surrogates else ())
    lengths = st.one_of(
        st.integers(min_tokens, max(min_tokens, min(max_tokens, 32))),
        st.integers(min_tokens, max(min_tokens, min(max_tokens, 512))),
        st.integers(max(min_tokens, max_tokens // 2), max_tokens))  # long: near the cap

    @st.composite
    def build(draw: Draw) -> str:
        budget = draw(lengths)
        if budget == 0:
            return ""
        parts = [draw(st.sampled_from(PROMPTS))]
        if special_tokens and chance(draw, 5):
            parts.append(draw(st.sampled_from(SPECIAL_TOKENS)))
        if unicode and chance(draw, 15):
            parts.append(draw(st.text(min_size=1, max_size=24)))
        if unicode and chance(draw, 8):
            parts.append(draw(st.sampled_from(edge_cases)))
        doc = draw(st.sampled_from(docs))
        start = draw(st.integers(0, len(doc) - 1))
        text = " ".join(parts) + "\n\n" + doc[start:]
        short = budget - estimate_tokens(text)
        if short > 0:  # enough whole copies in one go (each adds >= len(doc) / 4 tokens)
            text += ("\n\n" + doc) * (short * 4 // max(len(doc), 1) + 1)
        return _fit(text, budget)

    return build()


def text_tags(text: str, *, prefix: str = "text") -> tuple[str, ...]:
    """Length bucket, plus unicode / special-token markers."""
    n = estimate_tokens(text)
    bucket = "empty" if n == 0 else "short" if n < 64 else "medium" if n < 1024 else "long"
    tags = [f"{prefix}:{bucket}"]
    if not text.isascii():
        tags.append(f"{prefix}:unicode")
    if any(tok in text for tok in SPECIAL_TOKENS):
        tags.append(f"{prefix}:special_tokens")
    if any(edge in text for edge in UNICODE_EDGE_CASES + LONE_SURROGATES):
        tags.append(f"{prefix}:unicode_edge")
    return tuple(tags)
