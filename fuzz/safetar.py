"""Extract an untrusted `.tar.gz` into a directory, refusing anything hostile.

Bundles travel through issue trackers and CI artefacts, so an archive may come from
anyone: only regular files and directories with plain relative names are accepted,
member count and sizes are capped (also the decompressed stream, against gzip
bombs), and nothing is ever written outside the destination directory.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MB = 1024 * 1024
_COPY_CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """The archive is corrupt, hostile or too big."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_member_bytes: int = 200 * MB
    max_total_bytes: int = 200 * MB
    max_members: int = 10_000


class _CappedReader:
    """A read-only file object that refuses to yield more than `cap` bytes."""

    def __init__(self, inner, cap: int) -> None:
        self._inner, self._cap, self._seen = inner, cap, 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._seen += len(data)
        if self._seen > self._cap:
            raise ArchiveError(f"decompressed archive exceeds {self._cap} bytes")
        return data


def _safe_parts(name: str) -> tuple[str, ...]:
    """The member's path components, or ArchiveError if the name could escape."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise ArchiveError(f"member name {name!r} is absolute or malformed")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or ":" in pure.parts[0]:
        raise ArchiveError(f"member name {name!r} escapes the archive (absolute or '..')")
    return tuple(p for p in pure.parts if p not in ("", "."))


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.isdev():
        return "device"
    if m.isfifo():
        return "fifo"
    return f"type {m.type!r}"


def _inside(dest: Path, parts: tuple[str, ...]) -> Path:
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest):
        raise ArchiveError(f"member {'/'.join(parts)!r} resolves outside the destination")
    return target


def extract_tar_gz(archive: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Extract `archive` into the existing directory `dest` under `limits`."""
    dest = dest.resolve()
    stream_cap = limits.max_total_bytes + 1024 * (limits.max_members + 20)
    members = total = 0
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=_CappedReader(gz, stream_cap), mode="r|") as tf:
                for m in tf:
                    members += 1
                    if members > limits.max_members:
                        raise ArchiveError(f"more than {limits.max_members} members")
                    parts = _safe_parts(m.name)
                    if m.isdir():
                        if parts:
                            _inside(dest, parts).mkdir(parents=True, exist_ok=True)
                        continue
                    if not m.isreg():
                        raise ArchiveError(f"member {m.name!r} is a {_kind(m)}; only files allowed")
                    if not parts:
                        raise ArchiveError(f"member name {m.name!r} is empty")
                    if m.size > limits.max_member_bytes:
                        raise ArchiveError(f"member {m.name!r} is {m.size} bytes "
                                           f"(limit {limits.max_member_bytes})")
                    total += m.size
                    if total > limits.max_total_bytes:
                        raise ArchiveError(
                            f"members total more than {limits.max_total_bytes} bytes")
                    target = _inside(dest, parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    try:
                        with target.open("xb") as out:
                            while chunk := src.read(_COPY_CHUNK):
                                out.write(chunk)
                    except FileExistsError:
                        raise ArchiveError(f"member {m.name!r} appears twice") from None
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"not a readable .tar.gz: {type(e).__name__}: {e}") from e
