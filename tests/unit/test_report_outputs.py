"""summary.json matches its schema; report.html is self-contained and shows the
failures with links to their bundles; progress lines carry what an operator needs."""

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
