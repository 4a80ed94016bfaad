"""`--resume` draws scenarios with the token scale the campaign first measured (the
journaled `tokens` record), not with a new measurement that may differ."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from faults import FaultServer

from fuzz import ledger
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import ScenarioFinished
from fuzz.journal import read_journal
from fuzz.layout import journal_path
from fuzz.model import Deadlines
from fuzz.report import Summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=4.0, stall_s=4.0, total_s=8.0)


def session(server: FaultServer, config: CampaignConfig, scenarios: int) -> Summary:
    stop = threading.Event()
    seen: list[ScenarioFinished] = []

    def on_event(event: object) -> None:
        if isinstance(event, ScenarioFinished):
            seen.append(event)
            if len(seen) >= scenarios:
                stop.set()
    return run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                        on_event, stop=stop)


def test_resume_reuses_the_journaled_token_scale_without_calling_tokenize(tmp_path: Path) -> None:
    out = tmp_path / "c"
    config = CampaignConfig(out_dir=out, duration_s=300, seed=3, deadlines=FAST, max_requests=2,
                            minimize=False, steering=False, isolation=False)
    with FaultServer(hang_s=2.0, chars_per_token=2.0) as first:
        summary = session(first, config, 2)
        assert first.tokenize_calls > 0
    measured = summary.token_scale
    assert measured is not None and abs(measured["prose"] - 2.0) < 0.1 and summary.token_scale_measured
    # the same target after a tokenizer change: measuring again would give another scale
    with FaultServer(hang_s=2.0, chars_per_token=5.0) as second:
        resumed = session(second, dataclasses.replace(config, resume=True), 2)
        assert second.tokenize_calls == 0, "--resume measured the token scale again"
    tokens = [r for r in read_journal(journal_path(out)) if r["type"] == "tokens"]
    assert [r["scale"] for r in tokens] == [measured, measured]
    assert [r.get("resumed") for r in tokens] == [False, True]
    assert resumed.token_scale == measured
    folded = ledger.fold(read_journal(journal_path(out)), Summary(seed=3, endpoint="x"))
    assert folded.token_scale == measured and folded.token_scale_measured


def test_resume_keeps_the_estimate_when_the_target_had_no_tokenize(tmp_path: Path) -> None:
    out = tmp_path / "c"
    config = CampaignConfig(out_dir=out, duration_s=300, seed=3, deadlines=FAST, max_requests=2,
                            minimize=False, steering=False, isolation=False)
    with FaultServer(hang_s=2.0) as first:
        session(first, config, 1)
    with FaultServer(hang_s=2.0, chars_per_token=5.0) as second:
        session(second, dataclasses.replace(config, resume=True), 1)
        assert second.tokenize_calls == 0
    tokens = [r for r in read_journal(journal_path(out)) if r["type"] == "tokens"]
    assert [r["scale"] for r in tokens] == [None, None]
