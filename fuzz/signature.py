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


# --- the server log's cause, as a signature detail ------------------------------------

LOG_DETAIL = "log:"
_LOG_DETAIL_RE = re.compile(r"\|log:[^|]*$")
# vLLM's wording when it hides the cause from the client: a 500 body or an SSE error
# event with one of these says nothing that tells two engine bugs apart.
GENERIC_MESSAGES = frozenset({
    "", "(empty body)", "(no message)", "none", "null", "error", "unknown error",
    "internal error", "internal server error", "server error", "internal_server_error",
    "an internal error occurred", "an internal server error occurred",
    "enginecore encountered an issue. see stack trace for the root cause",
})


def is_generic_message(message: str | None) -> bool:
    """True when an error message names no cause (empty, "Internal server error", ...),
    so the server log's cause is needed to tell bugs apart."""
    text = normalise_message(message or "").strip().strip(".!:").strip().casefold()
    return text in GENERIC_MESSAGES


def with_log_cause(detail: str, cause: str | None) -> str:
    """`detail` with `log:<cause>` appended as the signature's last part. A `|` in the
    cause would split the signature, so it becomes `/`."""
    if not cause:
        return detail
    tail = LOG_DETAIL + cause.replace("|", "/")
    return f"{detail}|{tail}" if detail else tail


def without_log_cause(signature: str) -> str:
    """The signature a log-less observer (external target, repro.py) computes: the
    trailing `|log:<cause>` dropped; signatures without one are returned unchanged."""
    return _LOG_DETAIL_RE.sub("", signature)


def signatures_match(expected: str, observed: str, *, have_log: bool) -> bool:
    """Does `observed` show the bug recorded as `expected`?

    Exact when the run had server-log lines and both name a cause. Otherwise the log
    detail is compared away: a run without log lines cannot name the cause, an
    expected signature without one (a bundle recorded before causes, or without a log)
    must match as it always did, and an observed generic error whose cause the log did
    not name may still be this bug (calling it FIXED would be a false FIXED)."""
    if expected == observed:
        return True
    both_named = expected != without_log_cause(expected) \
        and observed != without_log_cause(observed)
    if have_log and both_named:
        return False
    return without_log_cause(expected) == without_log_cause(observed)
