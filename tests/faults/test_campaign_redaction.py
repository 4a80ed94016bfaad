"""A server that echoes a secret into its error messages: the signature quoting that
message is redacted once, journaled and counted under the same key, and the campaign
bundles it and goes on (it used to crash looking up the unredacted signature)."""

from __future__ import annotations

import threading
from pathlib import Path

from faults import FaultServer

from fuzz import ledger
from fuzz.bundle import load_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import BundleWritten, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.layout import journal_path
from fuzz.minimize import Budget
from fuzz.model import Deadlines
from fuzz.redact import MASK, Redactor
from fuzz.report import Summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=4.0, stall_s=4.0, total_s=8.0)
SECRET = "EngineCore"  # part of the fault server's 500 message, as an echoed key would be


def test_a_secret_in_an_error_message_is_redacted_once_and_the_campaign_completes(
        tmp_path: Path) -> None:
    out = tmp_path / "c"
    stop = threading.Event()
    scenarios: list[ScenarioFinished] = []
    bundled: list[BundleWritten] = []

    def on_event(event: object) -> None:
        if isinstance(event, BundleWritten):
            bundled.append(event)
        if isinstance(event, ScenarioFinished):
            scenarios.append(event)
            if len(scenarios) >= 3:
                stop.set()

    with FaultServer(hang_s=2.0, canary="error") as server:  # every request: a 500
        config = CampaignConfig(out_dir=out, duration_s=120, seed=4, deadlines=FAST,
                                max_requests=2, steering=False, isolation=False,
                                minimize_budget=Budget(max_replays=3, max_wall_s=20))
        live = run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                            on_event, stop=stop, redact=Redactor([SECRET]))
    assert live.stopped_because == "interrupted", live.stopped_because
    [echoed] = [sig for sig in live.failures if sig.startswith("server_error|500|")]
    assert MASK in echoed and SECRET not in echoed
    stats = live.failures[echoed]
    assert stats.count == len(scenarios), "counted as new again on every scenario"
    assert stats.bundle is not None and load_bundle(Path(stats.bundle)).failure.signature == echoed
    assert any(e.stats.signature == echoed for e in bundled)
    records = read_journal(journal_path(out))
    assert SECRET not in journal_path(out).read_text()
    folded = ledger.fold(records, Summary(seed=4, endpoint=live.endpoint))
    assert folded.failures == live.failures
    assert folded.pending_minimizations == live.pending_minimizations
    assert (folded.scenarios, folded.requests, folded.statuses, folded.features) == \
        (live.scenarios, live.requests, live.statuses, live.features)
    for bundle_dir in (out / "bundles").iterdir():
        for f in bundle_dir.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".md", ".py", ".sh", ".jsonl"):
                assert SECRET not in f.read_text(errors="replace"), f
