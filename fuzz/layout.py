"""Where things go in a campaign folder, for one worker or several sharing it.

    journal.jsonl, journal-w<i>.jsonl   one append-only journal per worker (0, i)
    bundles/<name>/, bundles/w<i>/<name>/   each worker's bundles (a bundle folder
                                        is named after its signature, `bundle_dirname`)
    report.md, report.html, summary.json   rendered from every journal together

Each file has a single writer, so workers (processes, or hosts sharing the folder over
a network file system) never write the same file; `vlfuzz replay DIR/bundles` finds
every worker's bundles (it walks subfolders)."""

from __future__ import annotations

import re
from pathlib import Path

from fuzz.bundle import BUNDLE_JSON, bundle_dirname

__all__ = ["bundle_elsewhere", "bundles_dir", "journal_path", "journal_paths", "worker_of"]

_JOURNAL = re.compile(r"^journal(?:-w(\d+))?\.jsonl$")


def journal_path(out_dir: Path, worker: int = 0) -> Path:
    return out_dir / ("journal.jsonl" if worker == 0 else f"journal-w{worker}.jsonl")


def bundles_dir(out_dir: Path, worker: int = 0) -> Path:
    return out_dir / "bundles" if worker == 0 else out_dir / "bundles" / f"w{worker}"


def worker_of(path: Path) -> int | None:
    """The worker a journal file belongs to, or None if it is not a journal."""
    m = _JOURNAL.match(path.name)
    return None if m is None else int(m.group(1) or 0)


def journal_paths(out_dir: Path) -> list[Path]:
    """Every worker's journal in the folder, by worker index."""
    found = [(worker_of(p), p) for p in out_dir.glob("journal*.jsonl")]
    return [p for w, p in sorted((w, p) for w, p in found if w is not None)]


def bundle_elsewhere(out_dir: Path, signature: str, worker: int) -> Path | None:
    """Another worker's bundle of `signature`, if one was written."""
    name = bundle_dirname(signature)
    for other in (bundles_dir(out_dir, 0), *sorted((out_dir / "bundles").glob("w*"))):
        if other == bundles_dir(out_dir, worker):
            continue
        if (other / name / BUNDLE_JSON).is_file():
            return other / name
    return None
