"""summary.json matches its schema; report.html is self-contained and shows the
failures with links to their bundles; progress lines carry what an operator needs;
server states, steering and the isolation oracles' counters reach all three outputs."""

from __future__ import annotations

import io
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fuzz import ledger
from fuzz.events import CampaignFinished, CampaignStarted, FailureFound, Ticked
from fuzz.model import Failure
from fuzz.outputs import validate_summary, write_reports
from fuzz.progress import Progress, status_line
from fuzz.redact import Redactor
from fuzz.report import Summary

SIG = "server_error|500|EngineCore <encountered> an issue"


def _summary(tmp_path: Path) -> Summary:
    s = Summary(seed=3, endpoint="http://127.0.0.1:1", target={"model": "m", "version": "0.x"})
    bundle = tmp_path / "bundles" / "server-error-abc"
    bundle.mkdir(parents=True)
    (bundle / "ISSUE.md").write_text("x")
    fail = Failure(kind="server_error", signature=SIG, message="EngineCore failed")
    for r in [{"type": "started", "t": 0},
              {"type": "scenario", "index": 0, "round": 0, "t": 1.0, "requests": 2, "wall_s": 0.4,
               "outcomes": ["200", "500"], "latencies_ms": [120.0, 300.0],
               "features": {"stream": 1, "image:format:png": 2}, "failures": [SIG]},
              ledger.failure_record(0, 1.2, fail, new=True, requests=2, minimize=ledger.PENDING),
              {"type": "bundle", "signature": SIG, "path": str(bundle)},
              {"type": "target", "event": "waited", "wait_s": 4.0, "t": 30.0}]:
        ledger.apply(s, r)
    return s


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_summary_json_validates_and_html_shows_failures_offline(tmp_path: Path) -> None:
    write_reports(tmp_path, _summary(tmp_path))
    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    assert doc["format_version"] == 1 and doc["failures"][0]["minimize_pending"] is True
    assert doc["target"]["waits"] == 1 and doc["disk"]["bundles_bytes"] > 0
    page = _Page()
    page.feed((tmp_path / "report.html").read_text())
    text = "".join(page.text)
    assert SIG in text and "1 unique failure(s)" in text
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert "bundles/server-error-abc/" in links
    assert all((tmp_path / href).exists() for href in links), "a bundle link is broken"
    assert not any(t in ("script", "link", "img", "iframe") for t, _a in page.tags)
    assert not any(v and v.startswith(("http:", "https:", "//")) for _t, a in page.tags
                   for k, v in a.items() if k in ("src", "href"))
    assert sum(1 for t, _a in page.tags if t == "svg") >= 3
    assert any(a.get("class") == "failure-mark" for t, a in page.tags if t == "line")


def test_schema_rejects_an_unknown_format_version(tmp_path: Path) -> None:
    import jsonschema

    write_reports(tmp_path, _summary(tmp_path))
    doc = json.loads((tmp_path / "summary.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        validate_summary({**doc, "format_version": 2})


def test_reports_are_redacted(tmp_path: Path) -> None:
    s = _summary(tmp_path)
    s.failures[SIG].message = "echo Bearer hunter2-secret"
    write_reports(tmp_path, s, Redactor(["hunter2-secret"]))
    for name in ("summary.json", "report.md", "report.html"):
        assert "hunter2" not in (tmp_path / name).read_text(), name


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                    reason="headless Chromium not installed (/usr/bin/chromium; Debian package 'chromium')")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    write_reports(tmp_path, _summary(tmp_path))
    # Flags as for any closed network: no background fetches, a fresh profile.
    proc = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", (tmp_path / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert 'class="failure"' in proc.stdout and "EngineCore &lt;encountered&gt;" in proc.stdout


def test_progress_tty_updates_in_place_and_plain_logs_lines() -> None:
    s = Summary(seed=1, endpoint="http://x", target_state="up")
    s.in_flight = 7
    now = [100.0]
    tty, log = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (log, False)):
        p = Progress(stream, tty=is_tty, every_s=5.0, clock=lambda: now[0])
        p(CampaignStarted(s, 600.0, resumed=False))
        for _ in range(3):
            p(Ticked(s, 500.0))
        p(FailureFound(Failure(kind="hang", signature="hang|x", message="m"), new=True))
        now[0] += 6
        p(Ticked(s, 494.0))
        p(CampaignFinished(s))
    assert "\r\x1b[2K" in tty.getvalue() and "NEW hang: hang|x" in tty.getvalue()
    plain = log.getvalue()
    assert "\r" not in plain and "\x1b" not in plain and "NEW hang" in plain
    assert plain.count("elapsed") == 3  # first tick, after 6 s, and the final line
    line = status_line(s, 61.0, 539.0)
    for part in ("1m01s elapsed", "8m59s left", "in flight 7", "minimizations pending 0", "target up"):
        assert part in line


def _greybox_summary(tmp_path: Path) -> Summary:
    """Three scenarios (a fresh one, a mutant, a fresh one) with server states and
    isolation counters, after a calibration."""
    s = _summary(tmp_path)
    noise = {"format_version": 1, "margin_threshold": 0.04, "max_logprob_delta": 0.01,
             "max_flip_margin": 0.0, "probes": 4, "safety": 2.0, "min_margin": 0.02,
             "batches": [{"batch_size": 1, "runs": 8, "diverged": 0, "max_logprob_delta": 0.0,
                          "max_flip_margin": 0.0, "first_positions": []},
                         {"batch_size": 2, "runs": 8, "diverged": 1, "max_logprob_delta": 0.01,
                          "max_flip_margin": 0.0, "first_positions": [5]}]}
    counts = {"probes": 1, "victims": 1, "suspects": 1, "confirmed": 0, "unconfirmed": 1,
              "replays": 3, "slow_suspects": 0, "slow_confirmed": 0, "slow_unconfirmed": 0,
              "slow_replays": 0, "s": 2.5}
    for r in [{"type": "noise", "source": "measured", "image": True, "model": noise, "t": 2.0},
              {"type": "victim", "spec": {"id": "iso-victim", "body": {}},
               "alone": {"key": "k", "samples": [], "medians": {"ttft_s": 0.05, "tpot_s": None,
                                                                "e2e_s": 0.2}}, "t": 3.0},
              {"type": "scenario", "index": 1, "round": 0, "t": 5.0, "requests": 1, "wall_s": 0.1,
               "outcomes": ["200"], "latencies_ms": [100.0], "features": {},
               "failures": [], "origin": "generated", "isolation": counts,
               "server_features": ["preemptions:1", "log:traceback:x.py:ValueError"]},
              {"type": "scenario", "index": 2, "round": 0, "t": 6.0, "requests": 2, "wall_s": 0.1,
               "outcomes": ["200", "200"], "latencies_ms": [100.0, 100.0], "features": {},
               "failures": [], "origin": "splice+duplicate", "isolation": {"skipped": "hang"},
               "server_features": ["preemptions:2-3", "preemptions:1"]},
              {"type": "scenario", "index": 3, "round": 0, "t": 7.0, "requests": 1, "wall_s": 0.1,
               "outcomes": ["200"], "latencies_ms": [100.0], "features": {}, "failures": [],
               "origin": "generated", "server_features": ["preemptions:1"]}]:
        ledger.apply(s, r)
    return s


def test_server_states_steering_and_isolation_reach_every_output(tmp_path: Path) -> None:
    s = _greybox_summary(tmp_path)
    assert s.server_states == {"preemptions:1": 3, "preemptions:2-3": 1,
                               "log:traceback:x.py:ValueError": 1}
    assert s.state_first_origin["preemptions:2-3"] == "splice+duplicate" and s.steered == 1
    assert (s.origins["generated"], s.origins_new["generated"]) == (3, 1)  # the first was new
    assert (s.origins["duplicate"], s.origins_new["duplicate"]) == (1, 1)
    write_reports(tmp_path, s)
    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    rows = {r["feature"]: r for r in doc["server_states"]}
    assert rows["preemptions:2-3"] == {"feature": "preemptions:2-3", "family": "preemptions",
                                       "scenarios": 1, "first_seen_s": 6.0,
                                       "origin": "splice+duplicate"}
    assert [r["family"] for r in doc["server_states"]] == ["preemptions", "preemptions", "log"]
    assert doc["steering"]["origins"]["splice"] == {"scenarios": 1, "new_states": 1}
    iso = doc["isolation"]
    assert iso["enabled"] and iso["noise"]["model"]["margin_threshold"] == 0.04
    assert (iso["scenarios_judged"], iso["scenarios_skipped"]) == (1, 1)
    assert (iso["suspects"], iso["confirmed"], iso["unconfirmed"], iso["replays"]) == (1, 0, 1, 3)
    assert iso["victim_alone_medians_s"]["ttft_s"] == 0.05 and iso["judging_s"] == 2.5

    report = (tmp_path / "report.md").read_text()
    assert "## Server states reached (3)" in report and "`preemptions:2-3`" in report
    assert "## Isolation and interference" in report
    assert "isolation suspects 1: confirmed 0, not confirmed 1 (3 replays)" in report
    assert "1 of 4 were steered mutants" in report
    assert "Reached first by a steering mutant (1): `preemptions:2-3` (splice+duplicate)" in report

    page = _Page()
    page.feed((tmp_path / "report.html").read_text())
    cells = [a for t, a in page.tags if t == "tr" and a.get("class") == "server-state"]
    assert len(cells) == 3
    text = "".join(page.text)
    assert "splice+duplicate" in text and "isolation suspects 1 (0 confirmed)" in text


def test_a_summary_without_greybox_records_still_validates(tmp_path: Path) -> None:
    write_reports(tmp_path, _summary(tmp_path))
    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    assert doc["server_states"] == [] and not doc["isolation"]["enabled"]
    assert "None observed" in (tmp_path / "report.md").read_text()
    assert "Isolation and interference" not in (tmp_path / "report.md").read_text()
    for key in ("server_states", "steering", "isolation"):  # optional within version 1
        validate_summary({k: v for k, v in doc.items() if k != key})
