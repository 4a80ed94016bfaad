"""Prompt texts from empty to a few thousand tokens, built from the seed corpus in
`corpora/texts/` plus Hypothesis unicode and literal special tokens. Token counts
are estimated (no tokenizer here): an ASCII character is a quarter token, any
other character a whole one, which errs long for CJK and emoji."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, chance, check_int, check_order, corpus_dir

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


def estimate_tokens(text: str) -> int:
    """Rough token count: ceil(ascii_chars / 4) + non_ascii_chars."""
    non_ascii = sum(1 for c in text if ord(c) > 127)
    return -(-(len(text) - non_ascii) // 4) + non_ascii


def _fit(text: str, budget: int) -> str:
    """The longest prefix of `text` whose estimate is at most `budget`."""
    ascii_chars = non_ascii = 0
    for i, c in enumerate(text):
        if ord(c) > 127:
            non_ascii += 1
        else:
            ascii_chars += 1
        if -(-ascii_chars // 4) + non_ascii > budget:
            return text[:i]
    return text


def load_corpus(directory: Path | str | None = None) -> tuple[str, ...]:
    """The seed documents (`*.txt`, sorted by name so draws are reproducible)."""
    path = corpus_dir(directory, "corpora", "texts")
    docs = tuple(p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt")))
    docs = tuple(d for d in docs if d.strip())
    if not docs:
        raise ValueError(f"no non-empty *.txt files in {path}")
    return docs


def texts(*, min_tokens: int = 0, max_tokens: int = 4000, unicode: bool = True,
          special_tokens: bool = True,
          corpus: Path | str | None = None) -> st.SearchStrategy[str]:
    """Texts whose estimated token count lies in [min_tokens, max_tokens]: about a
    third each short (<= 32), medium (<= 512) and long (upper half of the range). `unicode` mixes in arbitrary Hypothesis text and
    `special_tokens` sometimes types a chat-template token into the prompt."""
    check_int("min_tokens", min_tokens, 0)
    check_int("max_tokens", max_tokens, 0)
    check_order("min_tokens", min_tokens, "max_tokens", max_tokens)
    docs = load_corpus(corpus)
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
        doc = draw(st.sampled_from(docs))
        start = draw(st.integers(0, len(doc) - 1))
        text = " ".join(parts) + "\n\n" + doc[start:]
        while estimate_tokens(text) < budget:
            text += "\n\n" + doc
        return _fit(text, budget)

    return build()


def text_tags(text: str, *, prefix: str = "text") -> tuple[str, ...]:
    """Length bucket, plus unicode / special-token markers."""
    n = estimate_tokens(text)
    bucket = "empty" if n == 0 else "short" if n < 64 else "medium" if n < 1024 else "long"
    tags = [f"{prefix}:{bucket}"]
    if any(ord(c) > 127 for c in text):
        tags.append(f"{prefix}:unicode")
    if any(tok in text for tok in SPECIAL_TOKENS):
        tags.append(f"{prefix}:special_tokens")
    return tuple(tags)
