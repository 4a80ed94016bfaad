"""Failure signatures: the dedup key that keeps one bug one bug.

A signature is `kind|status|normalised message[|detail]`. Normalising folds what varies
between occurrences of the same bug (request ids, uuids, addresses, numbers, paths,
timings, prompt text echoed back in quotes, image reprs) and keeps what tells bugs apart
(the wording, identifiers such as `Qwen3VLProcessor` or `head_dim`, short quoted names
such as a field name). The rules are ordered: later ones see earlier placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_MESSAGE_CHARS = 240

_IDENT_RE = re.compile(r"[A-Za-z_][\w.\-]{0,39}")


def _fold_quoted(match: re.Match[str]) -> str:
    """Keep short identifier-like quoted names ('text', 'images', 'foo'); fold the rest
    (echoed prompt text, values), which vary between occurrences."""
    quote, inner = match.group(1), match.group(2)
    if _IDENT_RE.fullmatch(inner):
        return match.group(0)
    return f"{quote}<str>{quote}"


_Rule = tuple[re.Pattern[str], "str | Callable[[re.Match[str]], str]"]

_RULES: list[_Rule] = [
    # vLLM versions differ on "See stack trace (above) for the root cause."
    (re.compile(r"\s*\(above\)"), ""),
    # PIL reprs carry mode, size and address; the bug is rarely in the mode.
    (re.compile(r"<PIL\.[\w.]+ image mode=\S+ size=\d+x\d+ at 0x[0-9A-Fa-f]+>"), "<image>"),
    (re.compile(r"data:[\w/+.\-]+;base64,[A-Za-z0-9+/=]*"), "<data-url>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>)\]]+"), "<url>"),
    (re.compile(r"\b(chatcmpl|cmpl|req|embd|tokn|resp|call|chatcmpl-tool)-[A-Za-z0-9_\-]+"),
     r"\1-<id>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
     "<time>"),
    # Quotes that open and close a value, not English apostrophes ("model's").
    (re.compile(r"(?<!\w)(['\"])((?:(?!\1)[^\\\n]|\\.){0,2000}?)\1(?!\w)"), _fold_quoted),
    (re.compile(r"(?<![\w.<>/])(?:/[\w.@+\-]+){2,}/?"), "<path>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"(?<![\w.])\d+x\d+\b"), "<n>x<n>"),
    (re.compile(r"(?<![\w.])(?<![A-Za-z]-)\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    # "[<image>]" and "[<image>, <image>]" are one shape whatever the count.
    (re.compile(r"\[(<[\w\-]+>)(?:\s*,\s*\1)*\]"), r"[\1, ...]"),
    (re.compile(r"(<[\w\-]+>)(?:\s*,\s*\1)+"), r"\1, ..."),
    (re.compile(r"(<[\w\-]+>)(?:\1)+"), r"\1..."),
]


def normalise_message(text: str) -> str:
    """Fold the parts of an error message that vary between occurrences of one bug."""
    out = " ".join(str(text).split())
    for pattern, repl in _RULES:
        out = pattern.sub(repl, out)
    if len(out) > MAX_MESSAGE_CHARS:
        out = out[:MAX_MESSAGE_CHARS].rstrip() + "…"
    return out


def make_signature(kind: str, status: int | None, message: str, detail: str = "") -> str:
    """`kind|status|normalised message[|detail]`; status None is written `-`.

    `detail` is the oracle's own stable classification (a deadline name, a schema
    keyword and path shape) and is only whitespace-collapsed, not folded."""
    parts = [kind, "-" if status is None else str(status), normalise_message(message)]
    detail = " ".join(str(detail).split())
    if detail:
        parts.append(detail)
    return "|".join(parts)
