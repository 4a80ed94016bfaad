"""The campaign folder's layout: one journal and one bundle folder per worker, and
finding a bundle another worker wrote."""

from __future__ import annotations

from pathlib import Path

from fuzz.bundle import bundle_dirname
from fuzz.layout import bundle_elsewhere, bundles_dir, journal_path, journal_paths, worker_of


def test_worker_zero_keeps_the_single_campaign_names(tmp_path: Path) -> None:
    assert journal_path(tmp_path) == tmp_path / "journal.jsonl"
    assert bundles_dir(tmp_path) == tmp_path / "bundles"
    assert journal_path(tmp_path, 3) == tmp_path / "journal-w3.jsonl"
    assert bundles_dir(tmp_path, 3) == tmp_path / "bundles" / "w3"


def test_journals_are_listed_by_worker_and_strangers_ignored(tmp_path: Path) -> None:
    for name in ("journal-w10.jsonl", "journal-w2.jsonl", "journal.jsonl", "journal-x.jsonl",
                 "journal.jsonl.bak"):
        (tmp_path / name).write_text("")
    assert [p.name for p in journal_paths(tmp_path)] == \
        ["journal.jsonl", "journal-w2.jsonl", "journal-w10.jsonl"]
    assert worker_of(Path("journal-w7.jsonl")) == 7 and worker_of(Path("report.md")) is None


def test_a_bundle_is_found_in_another_workers_folder_only(tmp_path: Path) -> None:
    sig = "server_error|500|boom"
    assert bundle_elsewhere(tmp_path, sig, 0) is None
    mine = bundles_dir(tmp_path, 1) / bundle_dirname(sig)
    mine.mkdir(parents=True)
    (mine / "bundle.json").write_text("{}")
    assert bundle_elsewhere(tmp_path, sig, 1) is None
    assert bundle_elsewhere(tmp_path, sig, 0) == mine
    assert bundle_elsewhere(tmp_path, sig, 2) == mine
