"""Disk use: sizes parsed, the folder measured (every worker's journal counted), the cap
reached once, and the progress display showing use against the cap."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fuzz.disk import DiskCap, DiskWatch, disk_usage, parse_size
from fuzz.events import CampaignStarted, DiskCapReached, Ticked
from fuzz.progress import Progress, status_line
from fuzz.report import Summary


def test_sizes_use_binary_units() -> None:
    assert parse_size("2G") == parse_size("2GiB") == 2 * 2**30
    assert parse_size("500m") == 500 * 2**20 and parse_size("1.5K") == 1536
    assert parse_size("4096") == 4096
    for bad in ("", "two G", "5X", "-1G"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_usage_counts_every_journal_and_the_bundles(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_bytes(b"x" * 10)
    (tmp_path / "journal-w1.jsonl").write_bytes(b"x" * 5)
    (tmp_path / "bundles" / "b").mkdir(parents=True)
    (tmp_path / "bundles" / "b" / "bundle.json").write_bytes(b"x" * 100)
    (tmp_path / "report.md").write_bytes(b"x" * 1)
    assert disk_usage(tmp_path) == {"journal_bytes": 15, "bundles_bytes": 100, "total_bytes": 116}
    assert disk_usage(tmp_path / "missing") == {"journal_bytes": 0, "bundles_bytes": 0,
                                                "total_bytes": 0}


def test_the_watch_fires_once_and_then_stays_reached(tmp_path: Path) -> None:
    hits: list[tuple[int, int]] = []
    watch = DiskWatch(tmp_path, DiskCap(100), lambda used, cap: hits.append((used, cap)))
    (tmp_path / "a").write_bytes(b"x" * 60)
    assert not watch.reached() and watch.notes() == []
    (tmp_path / "b").write_bytes(b"x" * 60)
    assert watch.reached() and watch.reached()
    (tmp_path / "b").unlink()
    assert watch.reached(), "a session that hit the cap keeps to it"
    assert hits == [(120, 100)] and "disk cap" in watch.notes()[0]
    assert not DiskWatch(tmp_path, DiskCap(None)).reached()


def test_progress_shows_disk_use_against_the_cap() -> None:
    s = Summary(seed=1, endpoint="http://x", disk={"total_bytes": 300 * 2**20})
    assert "disk 300M/2.0G" in status_line(s, 1.0, 1.0, 2 * 2**30)
    assert "disk 300M" in status_line(s, 1.0, 1.0) and "disk -" in status_line(
        Summary(seed=1, endpoint="http://x"), 1.0, 1.0)
    out = io.StringIO()
    p = Progress(out, tty=False, every_s=0.0)
    p(CampaignStarted(s, 60.0, resumed=False, disk_cap_bytes=2**30))
    p(Ticked(s, 30.0))
    p(DiskCapReached(2**30 + 5, 2**30))
    text = out.getvalue()
    assert "disk 300M/1.0G" in text and "disk cap reached (1.0G of 1.0G)" in text
