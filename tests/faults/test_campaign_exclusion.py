"""`exclude_features` reaches generation: a campaign hunting past a known trigger never
sends it, and a target without `/tokenize` leaves text sizing to the estimate."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from faults import FaultServer

from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import ScenarioFinished
from fuzz.journal import read_journal
from fuzz.layout import journal_path
from fuzz.model import Deadlines
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=15.0)


def campaign(out: Path, exclude: tuple[str, ...]) -> dict:
    stop = threading.Event()
    finished: list[ScenarioFinished] = []

    def on_event(event: object) -> None:
        if isinstance(event, ScenarioFinished):
            finished.append(event)
            if len(finished) >= 12:
                stop.set()

    with FaultServer(hang_s=2.0) as server:
        config = CampaignConfig(out_dir=out, duration_s=300, seed=5, deadlines=FAST,
                                max_requests=4, minimize=False, steering=False,
                                exclude_features=exclude)
        run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                     on_event, stop=stop)
    return json.loads((out / "summary.json").read_text())["features"]


def test_excluded_features_are_never_generated(tmp_path: Path) -> None:
    control = campaign(tmp_path / "control", ())
    assert any(tag.startswith("image:") for tag in control)
    assert any(tag.startswith("sampling:seed") for tag in control)
    hunted = campaign(tmp_path / "hunt", ("image", "sampling:seed"))
    assert hunted and not any(tag.startswith(("image:", "sampling:seed")) for tag in hunted)
    [tokens] = [r for r in read_journal(journal_path(tmp_path / "hunt")) if r["type"] == "tokens"]
    assert tokens["scale"] is None  # the fault server has no /tokenize
