"""Disk use of a campaign folder, and the cap that keeps an overnight run from filling
the disk.

Over the cap the campaign keeps its journal (losing observations would be worse than
using space) and still bundles a failure it has never seen, but stops writing what
only refines what it already has: a re-minimized bundle for a known signature. The
folder is measured on demand (a walk of a few hundred files), not tracked."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DiskCap", "DiskWatch", "disk_usage", "folder_bytes", "human_bytes", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """'2G', '500M', '1.5GiB', '4096' -> bytes (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"invalid size {text!r} (use e.g. 500M, 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human_bytes(n: int) -> str:
    """'512 B', '3.2 MiB', '2.0 GiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def folder_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 if it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile (a bundle being replaced)
    return total


def disk_usage(out_dir: Path) -> dict[str, int]:
    """Bytes used by the campaign folder, split by what uses them; journals of every
    worker count as journal."""
    journals = sum(folder_bytes(p) for p in out_dir.glob("journal*.jsonl"))
    return {"journal_bytes": journals, "bundles_bytes": folder_bytes(out_dir / "bundles"),
            "total_bytes": folder_bytes(out_dir)}


@dataclass(frozen=True)
class DiskCap:
    """`cap_bytes` None: no cap."""

    cap_bytes: int | None

    def reached(self, used_bytes: int) -> bool:
        return self.cap_bytes is not None and used_bytes >= self.cap_bytes


class DiskWatch:
    """Measures the campaign folder against its cap when asked, until the cap is
    reached; from then on it stays reached for the session (`on_reached` is called
    once, with the bytes used and the cap)."""

    def __init__(self, out_dir: Path, cap: DiskCap,
                 on_reached: Callable[[int, int], None] = lambda used, cap: None) -> None:
        self.out_dir, self.cap, self.on_reached = out_dir, cap, on_reached
        self.hit = False

    def reached(self) -> bool:
        if self.hit or self.cap.cap_bytes is None:
            return self.hit
        used = folder_bytes(self.out_dir)
        if self.cap.reached(used):
            self.hit = True
            self.on_reached(used, self.cap.cap_bytes)
        return self.hit

    def notes(self) -> list[str]:
        """What the report should say about the cap (nothing until it was reached)."""
        if not self.hit or self.cap.cap_bytes is None:
            return []
        return [f"The campaign folder reached its disk cap ({human_bytes(self.cap.cap_bytes)}):"
                " from then on, failures already bundled were not bundled again; the journal"
                " and the first bundle of every new failure were still written."]
