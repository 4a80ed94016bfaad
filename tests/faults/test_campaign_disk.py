"""The disk cap in a campaign against the fault server: past it the journal goes on,
a new failure is still bundled, a known one is not bundled again, and the report and
the journal say so."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
import pytest
from faults import FaultServer, fault_body

import fuzz.campaign as campaign
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import DiskCapReached, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.minimize import Budget
from fuzz.model import Deadlines, RequestSpec, Scenario
from fuzz.outputs import validate_summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=2.0, stall_s=2.0, total_s=4.0)


def failing(message: str) -> Scenario:
    return Scenario(requests=(
        RequestSpec(id="ok", body=fault_body("ok")),
        RequestSpec(id="bad", body=fault_body("error", message=message))))


def test_past_the_cap_the_journal_goes_on_and_only_new_failures_are_bundled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fed = itertools.chain([failing("engine failed: alpha")],
                          (failing("engine failed: beta") for _ in itertools.count()))
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(fed)))
    stop = threading.Event()
    events: list[object] = []

    def on_event(event: object) -> None:
        events.append(event)
        if sum(isinstance(e, ScenarioFinished) for e in events) >= 4:
            stop.set()

    with FaultServer(hang_s=2.0) as server:
        config = CampaignConfig(out_dir=tmp_path, duration_s=300, seed=3, deadlines=FAST,
                                max_disk_bytes=1,
                                minimize_budget=Budget(max_replays=4, max_wall_s=30.0))
        summary = run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                               on_event, stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    caps = [r for r in records if r["type"] == "disk"]
    assert len(caps) == 1 and caps[0]["cap_bytes"] == 1 and caps[0]["used_bytes"] > 1
    assert sum(isinstance(e, DiskCapReached) for e in events) == 1
    after_cap = records[records.index(caps[0]):]
    assert sum(r["type"] == "scenario" for r in after_cap) >= 2, "the journal stopped"

    bundles = Counter(r["signature"] for r in records if r["type"] == "bundle")
    new = [r["signature"] for r in records if r["type"] == "failure" and r["new"]]
    assert len(new) == 2 and all(bundles[sig] == 1 for sig in new), bundles
    minimized = [r for r in records if r["type"] == "minimized"]
    assert minimized and all("disk cap" in r["note"] for r in minimized)
    assert all(summary.failures[sig].bundle for sig in new)

    report = (tmp_path / "report.md").read_text()
    assert "## Campaign notes" in report and "disk cap" in report
    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    assert doc["disk"]["total_bytes"] > 1 and doc["disk"]["bundles_bytes"] > 0
