"""bench/hunt.py's coverage curve: first sightings in order, requests counted up to the
finding scenario, unconfirmed hangs left out unless a later re-check confirmed them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from hunt import curve, curve_line  # noqa: E402


def journal(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "journal.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_curve_counts_requests_up_to_the_finding_scenario_and_skips_repeats(
        tmp_path: Path) -> None:
    path = journal(tmp_path, [
        {"type": "scenario", "requests": 3, "t": 1.0},
        {"type": "scenario", "requests": 5, "t": 70.0},
        {"type": "failure", "signature": "a", "new": True, "t": 70.5},
        {"type": "failure", "signature": "a", "new": False, "t": 71.0},
        {"type": "scenario", "requests": 2, "t": 700.0},
        {"type": "failure", "signature": "b", "new": True, "t": 700.1},
    ])
    assert curve(path) == [(70.5, 8, "a"), (700.1, 10, "b")]
    assert curve_line(curve(path), (1, 5, 20)) == ("by 1/5/20 min: 0/1/2; last new at 700s "
                                                    "(~10 requests)")


def test_unconfirmed_hangs_are_not_on_the_curve_until_confirmed(tmp_path: Path) -> None:
    records = [{"type": "scenario", "requests": 4, "t": 1.0},
               {"type": "failure", "signature": "hang", "new": True, "confirmed": False, "t": 2.0},
               {"type": "failure", "signature": "other", "new": True, "t": 3.0}]
    assert [sig for _, _, sig in curve(journal(tmp_path, records))] == ["other"]
    records.append({"type": "failure", "signature": "hang", "new": False, "confirmed": True,
                    "t": 9.0})
    assert [sig for _, _, sig in curve(journal(tmp_path, records))] == ["hang", "other"]


def test_a_missing_or_broken_journal_gives_an_empty_curve(tmp_path: Path) -> None:
    assert curve(tmp_path / "nope.jsonl") == []
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert curve(tmp_path / "bad.jsonl") == [] and curve_line([]).endswith("none found")
