"""`vlfuzz run` end to end against the real embedded target, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from fuzz.bundle import find_bundles, load_bundle
from fuzz.journal import read_journal


def test_short_campaign_writes_journal_report_and_loadable_bundles(real_target, tmp_path):
    out = tmp_path / "campaign"
    # No --endpoint: the CLI reuses the running embedded target (and restarts it if a
    # scenario kills it), exactly as the README's main command does.
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.cli", "run", "--duration", "60s", "--seed", "7",
         "--out", str(out), "--max-requests", "8", "--minimize-replays", "6",
         "--minimize-time", "90s"],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    records = read_journal(out / "journal.jsonl")
    scenarios = [r for r in records if r["type"] == "scenario"]
    failures = {r["signature"] for r in records if r["type"] == "failure"}
    assert scenarios, "no scenario was run"
    assert records[0]["type"] == "started" and records[-1]["type"] == "finished"
    sent = sum(r["requests"] for r in scenarios)
    assert f"requests: {sent}" in report
    assert "## Coverage" in report and "| stream |" in report
    assert (proc.returncode == 1) == bool(failures)
    bundles = find_bundles(out / "bundles") if failures else []
    assert {load_bundle(b).signature for b in bundles} == failures
    for sig in failures:
        assert sig.replace("|", "\\|")[:60] in report
    assert "report:" in proc.stdout


def test_bad_flags_get_a_clear_error_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fuzz.cli", "run", "--duration", "soon"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid duration 'soon'" in proc.stderr


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fuzz.cli", "run", "--endpoint",
                           "http://127.0.0.1:9", "--duration", "5s", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "cannot reach http://127.0.0.1:9" in proc.stderr + proc.stdout
