"""Incremental `text/event-stream` parsing: bytes in, each event's joined `data:` lines out.

The runner parses every read of every stream, so this is on its hot path. vLLM (like
every OpenAI-style server seen so far) frames an event as `data: <json>\\n\\n` with LF line
ends; for that framing the complete part of each read is decoded once and split into
events, with one slice per event and no per-line work. Every other block
(several `data:` lines, `data:` without the space, comments, `event:`/`id:` fields) goes
through the line rules, and a stream that uses a CR anywhere is handed for good to a
line parser that strips the CR of CRLF line ends.

Semantics, kept from the first parser so oracles see the same events: an event is
dispatched by an empty line, or by the end of the stream (`close`) even without one;
lines that are not `data:` are ignored; one space after `data:` is dropped; bytes that
are not UTF-8 become U+FFFD.
"""

from __future__ import annotations

import codecs


def _data_of(lines: list[str]) -> str | None:
    """The event carried by these lines (no line ends), or None when it has no data."""
    data = [line[6:] if line.startswith("data: ") else line[5:]
            for line in lines if line.startswith("data:")]
    return "\n".join(data) if data else None


class SseParser:
    """Feed it the body as it arrives; it returns the events each read completed."""

    __slots__ = ("_buf", "_lines")

    def __init__(self) -> None:
        self._buf = b""
        self._lines: _LineParser | None = None

    def feed(self, chunk: bytes) -> list[str]:
        if self._lines is not None:
            return self._lines.feed(chunk)
        if b"\r" in chunk:
            self._lines = _LineParser()
            buf, self._buf = self._buf, b""
            return self._lines.feed(buf + chunk)
        if self._buf:
            chunk = self._buf + chunk
        elif chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2 \
                and chunk.endswith(b"\n\n"):  # one whole event: the usual read of a stream
            return [chunk[6:-2].decode("utf-8", "replace")]
        end = chunk.rfind(b"\n\n")
        if end < 0:
            self._buf = chunk
            return []
        self._buf = chunk[end + 2:]
        # one decode per read: the cut is at an ASCII byte, so no character is split
        out = []
        for block in chunk[:end].decode("utf-8", "replace").split("\n\n"):
            if block.startswith("data: ") and "\n" not in block:
                out.append(block[6:])
            else:
                event = _data_of(block.split("\n"))
                if event is not None:
                    out.append(event)
        return out

    def close(self) -> list[str]:
        """The events the end of the stream completes (a last event without its blank line)."""
        if self._lines is not None:
            return self._lines.close()
        rest, self._buf = self._buf, b""
        event = _data_of(rest.decode("utf-8", "replace").split("\n")) if rest else None
        return [] if event is None else [event]


class _LineParser:
    """Line by line, for streams with CR: splits on LF and strips one trailing CR."""

    __slots__ = ("_decoder", "_buf", "_data")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += self._decoder.decode(chunk)
        *lines, self._buf = self._buf.split("\n")
        return [ev for line in lines for ev in self._line(line.rstrip("\r"))]

    def close(self) -> list[str]:
        rest = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        out = self._line(rest.rstrip("\r")) if rest else []
        return out + self._line("")

    def _line(self, line: str) -> list[str]:
        if line == "":
            data, self._data = self._data, []
            return ["\n".join(data)] if data else []
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return []
