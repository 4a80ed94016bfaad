"""Failure signatures: the dedup key that keeps one bug one bug.

A signature is `kind|status|normalised message[|detail]`. Normalising folds what varies
between occurrences of the same bug (request ids, uuids, addresses, numbers, paths,
timings, prompt text echoed back in quotes, image reprs) and keeps what tells bugs apart
(the wording, identifiers such as `Qwen3VLProcessor` or `head_dim`, short quoted names
such as a field name). The rules are ordered: later ones see earlier placeholders.
"""

from __future__ import annotations

import re

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

_OPEN, _CLOSE = "{[(", "}])"
# Where pydantic echoes the request back: `'input': {...}` and `input_value={...},`.
_ECHO_RE = re.compile(r"'input': |input_value=")


def _skip_value(text: str, i: int) -> int:
    """End of the Python-repr value starting at `i`: a balanced bracket expression, a
    quoted string, or a bare token up to the next `,`/`}`/`]`/`)`."""
    if i < len(text) and text[i] in "'\"":
        end = text.find(text[i], i + 1)
        return len(text) if end < 0 else end + 1
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c in "'\"":
            j = _skip_value(text, j)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE or (c == "," and depth == 0):
            if depth == 0:
                return j
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return j


def _fold_echoed_inputs(text: str) -> str:
    """Fold the request values pydantic echoes in validation errors: they vary with
    every request, while `type`, `loc` and `msg` name the bug."""
    out, pos = [], 0
    for match in _ECHO_RE.finditer(text):
        if match.start() < pos:
            continue
        out.append(text[pos:match.end()] + "<input>")
        pos = _skip_value(text, match.end())
    return "".join(out) + text[pos:]

_RULES: list[_Rule] = [
    # vLLM versions differ on "See stack trace (above) for the root cause."
    (re.compile(r"\s*\(above\)"), ""),
    # aiohttp's `<ContentLengthError: 400, message='Not enough data ...'>`: the quoted
    # text is the library's wording, not echoed input, so it must not be folded.
    (re.compile(r"\bmessage=(['\"])((?:(?!\1).){1,300})\1"), r"message=\2"),
    # pydantic's `'loc': 'body.messages.0.X'` and `'msg': 'Field required'` name the bug
    # (what was wrong, where): unquote them, folding list positions in the location.
    (re.compile(r"'(loc|msg)': '([^'\\]{1,300})'"),
     lambda m: f"'{m.group(1)}': " + re.sub(r"(?<=\.)\d+(?=\.|$)", "<n>", m.group(2))),
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
    # A sign belongs to the number ("got -1.0"), a hyphen to an identifier ("utf-8").
    (re.compile(r"(?<![\w.])(?<![A-Za-z]-)(?:-(?=\d))?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    # "[<image>]" and "[<image>, <image>]" are one shape whatever the count.
    (re.compile(r"\[(<[\w\-]+>)(?:\s*,\s*\1)*\]"), r"[\1, ...]"),
    (re.compile(r"(<[\w\-]+>)(?:\s*,\s*\1)+"), r"\1, ..."),
    (re.compile(r"(<[\w\-]+>)(?:\1)+"), r"\1..."),
]


def normalise_message(text: str) -> str:
    """Fold the parts of an error message that vary between occurrences of one bug."""
    out = _fold_echoed_inputs(" ".join(str(text).split()))
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
