"""The embedded target's log: follow the file, and read its lines as events.

vLLM prefixes every line of a multi-line log record with the same
`(Proc pid=N) LEVEL MM-DD HH:MM:SS [file.py:N]` header, so a traceback logged with
`logger.exception` arrives as many lines that share it, interleaved with other
processes' lines. Uncaught exceptions (uvicorn's "Exception in ASGI application"),
Python warnings, glog and transformers messages arrive without that header. This
module groups lines back into events (a warning, an error, a traceback with its
header and final exception line) so that they can become features (`fuzz.signals`)
and findings (`fuzz.oracles.server_log`).

Classification is pure; `LogFollower` is the one piece of I/O: it remembers an offset
in the log file and returns the lines appended since.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fuzz.signature import normalise_message

if TYPE_CHECKING:
    from fuzz.model import RequestTrace, Trace

__all__ = ["LogCause", "LogEvent", "LogFollower", "LogLine", "classify", "excerpt",
           "find_log_cause", "log_cause", "parse_line", "response_id"]

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_VLLM_RE = re.compile(
    r"^(?:\((?P<proc>[\w.\-]+) pid=(?P<pid>\d+)\)\s+)?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
    r"(?P<time>\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s+"
    r"\[(?P<loc>[^\]]+)\](?: (?P<msg>.*))?$")
_UVICORN_RE = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<msg>.*)$")
_PYWARN_RE = re.compile(r"^(?P<path>\S+?\.py):\d+: (?P<msg>\w*Warning: .*)$")
_GLOG_RE = re.compile(r"^\[?(?P<sev>[WEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+"
                      r"(?P<loc>[^\]\s]+)\]\s?(?P<msg>.*)$")
_TRANSFORMERS_RE = re.compile(r"^\[transformers\] (?P<msg>.*)$")
_TRACEBACK = "Traceback (most recent call last):"
_CHAINS = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")
HEAD_LINES, TAIL_LINES = 60, 40  # an event longer than this keeps its head and its tail


@dataclass(frozen=True)
class LogLine:
    """One line, split into vLLM's header fields when it has them. `origin` is the
    file that logged it (`serving.py`), or `uvicorn`/`python`/`glog`/`transformers`
    for the unprefixed formats, or "" for a line with no recognisable source."""

    raw: str
    message: str
    level: str | None = None
    origin: str = ""
    stream: str = ""  # lines of one record share a stream key

    @property
    def prefixed(self) -> bool:
        return self.stream != ""


def parse_line(raw: str) -> LogLine:
    """Split a raw line into level, origin and message (pure)."""
    raw = _ANSI_RE.sub("", raw.rstrip("\r\n"))
    m = _VLLM_RE.match(raw)
    if m:
        loc = m.group("loc")
        stream = "|".join((m.group("proc") or "", m.group("pid") or "", m.group("level"),
                           m.group("time"), loc))
        return LogLine(raw, m.group("msg") or "", m.group("level"), loc.split(":")[0], stream)
    m = _UVICORN_RE.match(raw)
    if m:
        return LogLine(raw, m.group("msg"), m.group("level"), "uvicorn")
    m = _PYWARN_RE.match(raw)
    if m:
        origin = "python:" + os.path.basename(m.group("path"))
        return LogLine(raw, m.group("msg"), "WARNING", origin)
    m = _GLOG_RE.match(raw)
    if m:
        level = "WARNING" if m.group("sev") == "W" else "ERROR"
        origin = "glog:" + os.path.basename(m.group("loc")).split(":")[0]
        return LogLine(raw, m.group("msg"), level, origin)
    m = _TRANSFORMERS_RE.match(raw)
    if m:
        return LogLine(raw, m.group("msg"), "WARNING", "transformers")
    return LogLine(raw, raw)


@dataclass(frozen=True)
class LogEvent:
    """A warning, an error, or a traceback, regrouped from its lines.

    `header` is the record's first message line ("Error in extracting tool call from
    response."), None for a bare traceback; `exceptions` holds the final line of each
    traceback in the record ("json.decoder.JSONDecodeError: Expecting ..."), the last
    one being the exception that was raised."""

    level: str
    origin: str
    header: str | None
    exceptions: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """`traceback`, `error` or `warning` (CRITICAL counts as error)."""
        if self.exceptions:
            return "traceback"
        return "error" if self.level in ERROR_LEVELS else self.level.lower()

    @property
    def is_error(self) -> bool:
        """Worth a finding: logged at ERROR or above (an uncaught traceback is)."""
        return self.level in ERROR_LEVELS

    @property
    def exception(self) -> str | None:
        return self.exceptions[-1] if self.exceptions else None

    @property
    def template(self) -> str:
        """The header (or exception) with ids, numbers and paths folded."""
        return normalise_message(self.header or self.exception or "")


@dataclass
class _Open:
    """An event being assembled (internal, mutable)."""

    level: str
    origin: str
    header: str | None
    state: str  # "text" | "frames" | "after_exc" | "chain"
    lines: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def freeze(self) -> LogEvent:
        lines = self.lines
        if len(lines) > HEAD_LINES + TAIL_LINES:
            lines = lines[:HEAD_LINES] + lines[-TAIL_LINES:]
        return LogEvent(self.level, self.origin, self.header, tuple(self.exceptions), tuple(lines))


def _indented(message: str) -> bool:
    return message[:1] in (" ", "\t", "^", "~")


class _Grouper:
    """Turns one stream of lines (one vLLM record key, or the unprefixed lines) into
    events with a small state machine over traceback structure."""

    def __init__(self, raw_stream: bool) -> None:
        self.raw_stream = raw_stream
        self.current: _Open | None = None
        self.done: list[tuple[int, LogEvent]] = []
        self.started_at = 0

    def _close(self) -> None:
        if self.current is not None:
            self.done.append((self.started_at, self.current.freeze()))
            self.current = None

    def _start(self, order: int, line: LogLine, header: str | None, state: str) -> None:
        self._close()
        level = line.level or "ERROR"  # an unprefixed traceback is an uncaught exception
        self.current = _Open(level, line.origin or "stderr", header, state, [line.raw])
        self.started_at = order

    def feed(self, order: int, line: LogLine) -> None:
        msg, cur = line.message, self.current
        stripped = msg.strip()
        if stripped == _TRACEBACK:
            if cur is not None and cur.state in ("text", "after_exc", "chain"):
                cur.state = "frames"
                cur.lines.append(line.raw)
            else:
                self._start(order, line, None, "frames")
            return
        if cur is not None and cur.state == "frames":
            cur.lines.append(line.raw)
            if stripped and not _indented(msg):
                cur.exceptions.append(stripped)
                cur.state = "after_exc"
            return
        if cur is not None and stripped in _CHAINS:
            cur.state = "chain"
            cur.lines.append(line.raw)
            return
        if cur is not None and (not stripped or _indented(msg)):
            cur.lines.append(line.raw)  # continuation: a dump, a multi-line message
            return
        if self.raw_stream and line.level is None:
            self._close()  # an unrecognised unprefixed line ends whatever was open
            return
        self._start(order, line, stripped, "text")

    def finish(self) -> list[tuple[int, LogEvent]]:
        self._close()
        return self.done


def classify(lines: Iterable[str]) -> list[LogEvent]:
    """Every event in `lines`, in order of first line, INFO and DEBUG included (callers
    filter by `kind`). Lines of one vLLM record are regrouped by their shared header
    even when other processes' lines interleave; two records logged at the same place
    in the same second are told apart by their traceback structure."""
    groupers: dict[str, _Grouper] = {}
    raw = _Grouper(raw_stream=True)
    for order, text in enumerate(lines):
        line = parse_line(text)
        if line.prefixed:
            grouper = groupers.get(line.stream)
            if grouper is None:
                grouper = groupers[line.stream] = _Grouper(raw_stream=False)
            grouper.feed(order, line)
        elif line.origin == "uvicorn" and line.level in ("INFO", "DEBUG"):
            raw._close()  # access lines: never an event, but they end one
        else:
            raw.feed(order, line)
    found = raw.finish()
    for grouper in groupers.values():
        found.extend(grouper.finish())
    return [event for _, event in sorted(found, key=lambda pair: pair[0])]


def notable(event: LogEvent) -> bool:
    """Warnings, errors and tracebacks: what features and findings are made of."""
    return event.kind in ("warning", "error", "traceback")


def excerpt(lines: Sequence[str], *, max_lines: int = 400) -> tuple[str, ...]:
    """The lines of the notable events only (INFO chatter and access lines dropped),
    each event capped at its head and tail, at most `max_lines` in all: what a Trace
    keeps. Classifying the excerpt again gives the same events."""
    out: list[str] = []
    for event in classify(lines):
        if not notable(event):
            continue
        if len(out) + len(event.lines) > max_lines:
            break
        out.extend(event.lines)
    return tuple(out)


# --- the cause of a generic error, read from the log ----------------------------------

CAUSE_CHARS = 80
CAUSE_EVIDENCE_LINES = 40
# Log records that only restate that a request failed: never a cause themselves.
_WRAPPER_RE = re.compile(r"failed with an internal error|^internal server error"
                         r"|see stack trace for the root cause", re.IGNORECASE)
# Placeholder-only tokens ("[<n>:<n>:<n>]", "<path>:<n>:") and folded request ids
# ("chatcmpl-<id>") say nothing about the bug and would spend the cause's few characters.
_FILLER_RE = re.compile(r"(?<!\S)(?:[\[(]?<[\w-]+>(?:[:.,]?<[\w-]+>)*[\])]?:?"
                        r"|[\w-]+-<id>)(?=\s)")
# A list of folded values (`['<str>', '<str>']`, one per image) varies in length only.
_LIST_RE = re.compile(r"\[\s*(['\"]?)<[\w-]+>\1(?:\s*,\s*\1<[\w-]+>\1)*(?:\s*,\s*\.\.\.)?\s*\]")


@dataclass(frozen=True)
class LogCause:
    """What the log says caused a request's error: a short stable phrase, and the lines
    of the event(s) it was read from (for evidence)."""

    cause: str
    lines: tuple[str, ...]
    by_id: bool  # found by the response id (else: the window's only cause)


def cause_phrase(event: LogEvent) -> str:
    """The event's cause, folded to be the same across occurrences of one bug: the
    exception line of a traceback, else its message; at most `CAUSE_CHARS`."""
    text = normalise_message(event.exception or event.header or "")
    text = " ".join(_FILLER_RE.sub("", _LIST_RE.sub("[...]", text)).split())
    if len(text) > CAUSE_CHARS:
        text = text[:CAUSE_CHARS].rstrip() + "…"
    return text


def response_id(rt: RequestTrace) -> str | None:
    """The id the server gave the request: a stream chunk's `id`, a JSON body's, or the
    `X-Request-Id` header. A 500 body carries none."""
    docs = list(rt.events) + ([rt.body] if rt.body else [])
    for text in docs:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, Mapping) and isinstance(doc.get("id"), str) and doc["id"]:
            return str(doc["id"])
    return next((v for k, v in rt.headers.items() if k.lower() == "x-request-id" and v), None)


def _mentions(event: LogEvent, rid: str) -> bool:
    """Does the event name the request? The engine appends `-xxxxxxxx` to the id the
    client sees (`chatcmpl-afb1...` is logged as `chatcmpl-afb1...-be2a6f5e`)."""
    pattern = re.compile(re.escape(rid) + r"(?:-[0-9A-Fa-f]{8})?(?![\w-])")
    return any(pattern.search(line) for line in event.lines)


def find_log_cause(trace: Trace, rt: RequestTrace) -> LogCause | None:
    """The cause of `rt`'s generic error in `trace.server_log`, or None.

    Events that name the request's response id come first (a traceback before a
    message). Else, and only if the window holds exactly one distinct cause among the
    events that name no other request of the trace, that one: a guess among several
    would split one bug into many signatures, or merge two."""
    if not trace.server_log:
        return None
    events = [e for e in classify(trace.server_log)
              if notable(e) and (c := cause_phrase(e)) and not _WRAPPER_RE.search(c)]
    rid = response_id(rt)
    if rid is not None:
        mine = [e for e in events if _mentions(e, rid)]
        if mine:
            best = next((e for e in mine if e.exceptions), mine[0])
            return LogCause(cause_phrase(best), best.lines[:CAUSE_EVIDENCE_LINES], True)
    others = {i for r in trace.requests if r.id != rt.id and (i := response_id(r))}
    alone = [e for e in events if not any(_mentions(e, i) for i in others if i != rid)]
    causes = {cause_phrase(e) for e in alone}
    if len(causes) != 1:
        return None
    lines = tuple(line for e in alone for line in e.lines)
    return LogCause(causes.pop(), lines[:CAUSE_EVIDENCE_LINES], False)


def log_cause(trace: Trace, rt: RequestTrace) -> str | None:
    """The normalised cause of `rt`'s generic 5xx or error event (see `find_log_cause`);
    None without a log or when the log does not single one out."""
    found = find_log_cause(trace, rt)
    return found.cause if found else None


class LogFollower:
    """Reads what a growing log file gained since the last read.

    A file that shrank or was replaced (a restarted target truncating or rotating its
    log) is read again from its start; a missing file reads as nothing. At most
    `max_bytes` are returned per read (the rest is skipped and counted in
    `skipped_bytes`), and a last line without its newline waits for the next read."""

    def __init__(self, path: Path | str, *, max_bytes: int = 4 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.skipped_bytes = 0
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""

    def skip_to_end(self) -> None:
        """Forget everything logged so far (call before a scenario starts)."""
        try:
            st = self.path.stat()
        except OSError:
            self._offset, self._inode = 0, None
        else:
            self._offset, self._inode = st.st_size, st.st_ino
        self._partial = b""

    def read_new(self) -> list[str]:
        """The complete lines appended since the last call (or `skip_to_end`)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self._inode or st.st_size < self._offset:
                    self._offset, self._partial = 0, b""
                self._inode = st.st_ino
                f.seek(self._offset)
                data = f.read(self.max_bytes + 1)
                overflow = len(data) > self.max_bytes
                if overflow:  # keep the first max_bytes, skip the rest of this burst
                    data = data[:self.max_bytes]
                    self.skipped_bytes += st.st_size - self._offset - self.max_bytes
                    self._offset = st.st_size
                else:
                    self._offset += len(data)
        except OSError:
            return []
        data = self._partial + data
        cut = data.rfind(b"\n")
        self._partial = b"" if overflow else data[cut + 1:]
        if cut < 0:
            return []
        return data[:cut].decode("utf-8", errors="replace").split("\n")
