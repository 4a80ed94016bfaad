"""The campaign journal: one JSON line per event, appended and fsync'd as it happens,
so a crash loses nothing that was already observed.

A crash (or SIGKILL) can tear the last line. Reading skips it; reopening for append
cuts it off first, so the next record does not get glued onto the fragment."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Redact = Callable[[Any], Any]


def _cut_torn_tail(path: Path) -> None:
    """Truncate a trailing partial line (no final newline) left by a crash."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(max(0, size - 1_048_576))
        chunk = f.read()
        keep = size - len(chunk) + chunk.rfind(b"\n") + 1
        f.truncate(max(keep, 0))
        f.flush()
        os.fsync(f.fileno())


class Journal:
    """Append-only JSONL file; each record gets redacted, flushed and fsync'd."""

    def __init__(self, path: Path, redact: Redact = lambda r: r) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.redact = redact
        _cut_torn_tail(path)
        self._f = open(path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(self.redact(record), sort_keys=True, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All complete records; a torn last line (crash mid-write) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file.

    The temp file's name is unique (several processes or hosts sharing a campaign folder
    may write the same report at once); each rename installs one whole version."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; reports are meant to be read
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
