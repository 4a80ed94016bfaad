"""Learnt deadlines in a campaign against the fault server: once latencies are known, a
hang is cut at the learnt limit, far below the ceiling, and the journal names the
deadline that fired and where its limit came from; healthy variation is never cut."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from faults import FaultServer, fault_body

import fuzz.campaign as campaign
from fuzz.bundle import load_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import BundleWritten, MinimizationStarted
from fuzz.journal import read_journal
from fuzz.minimize import Budget
from fuzz.model import Deadlines, RequestSpec, Scenario
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

CEILING = Deadlines(first_byte_s=8.0, stall_s=8.0, total_s=9.0)
FLOOR = Deadlines(first_byte_s=0.5, stall_s=0.5, total_s=1.0)
DELAYS_S = (0.01, 0.03, 0.08)  # healthy variation: streams of 0.05 to 0.5 s
LEARN_FROM = 5  # scenarios of two requests: 10 samples = deadline_min_samples


def healthy(i: int) -> Scenario:
    delay = DELAYS_S[i % len(DELAYS_S)]
    return Scenario(requests=tuple(
        RequestSpec(id=rid, body=fault_body("slow", stream=True, chunks=3, delay_s=delay))
        for rid in ("a", "b")))


HANG = Scenario(requests=(RequestSpec(id="a", body=fault_body("hang")),))


def feed(monkeypatch: pytest.MonkeyPatch, scenarios: Iterator[Scenario]) -> None:
    """Make the campaign draw exactly these scenarios, in order."""
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(scenarios)))


def config(out: Path, **kw: Any) -> CampaignConfig:
    return CampaignConfig(out_dir=out, duration_s=600.0, seed=1, deadlines=CEILING,
                          deadline_floor=FLOOR, deadline_min_samples=2 * LEARN_FROM,
                          minimize_budget=Budget(max_replays=3, max_wall_s=60.0), **kw)


def test_a_hang_is_cut_at_the_learnt_deadline_and_healthy_variation_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before_hang = 2 * LEARN_FROM  # half of them run under learnt deadlines
    feed(monkeypatch, itertools.chain((healthy(i) for i in range(before_hang)), [HANG],
                                      (healthy(i) for i in itertools.count())))
    stop = threading.Event()
    minimizing: list[MinimizationStarted] = []

    def on_event(event: object) -> None:
        if isinstance(event, MinimizationStarted):
            minimizing.append(event)
        elif isinstance(event, BundleWritten) and minimizing:
            stop.set()  # the hang was minimized (replayed) and bundled again

    with FaultServer(hang_s=10.0) as server:
        supervisor = ExternalSupervisor(Endpoint(server.base_url, "fault-model"))
        run_campaign(config(tmp_path), supervisor, on_event, stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    scenarios = [r for r in records if r["type"] == "scenario"]
    learnt = [r for r in records if r["type"] == "deadlines"]
    assert learnt and learnt[0]["first_byte_s"] == FLOOR.first_byte_s
    assert records.index(learnt[0]) < records.index(scenarios[LEARN_FROM])

    healthy_runs, hang_run = scenarios[:before_hang], scenarios[before_hang]
    assert all(not s["failures"] and "cuts" not in s for s in healthy_runs), \
        [s["failures"] for s in healthy_runs]
    assert hang_run["cuts"] == [{"id": "a", "deadline": "first_byte", "limit_s": 0.5,
                                 "source": "learnt"}]
    hang = next(r for r in records if r["type"] == "failure" and r["kind"] == "hang")
    assert hang["evidence"]["deadline"] == "first_byte"
    assert hang["evidence"]["deadline_s"] == 0.5 < CEILING.first_byte_s
    assert "first-byte deadline" in hang["message"] and "first_byte > 0.5s" in hang["message"]

    bundle = load_bundle(Path(next(r["path"] for r in reversed(records) if r["type"] == "bundle")))
    assert bundle.failure.signature == hang["signature"]
    assert bundle.fuzzer["request_deadlines"]["a"]["first_byte_s"] == 0.5
    assert bundle.reproduced.k >= 1, "the replays did not reproduce the hang"
    assert bundle.trace.request("a").deadline_s == 0.5, "replayed under another deadline"


def test_an_explicit_override_beats_the_learnt_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(monkeypatch, itertools.chain((healthy(i) for i in range(LEARN_FROM)), [HANG],
                                      (healthy(i) for i in itertools.count())))
    stop = threading.Event()
    with FaultServer(hang_s=10.0) as server:
        supervisor = ExternalSupervisor(Endpoint(server.base_url, "fault-model"))
        run_campaign(config(tmp_path, deadline_overrides={"first_byte_s": 1.0}, minimize=False),
                     supervisor, lambda e: stop.set() if isinstance(e, BundleWritten) else None,
                     stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    cut = [c for r in records if r["type"] == "scenario" for c in r.get("cuts", [])]
    assert cut == [{"id": "a", "deadline": "first_byte", "limit_s": 1.0, "source": "override"}]
    started = next(r for r in records if r["type"] == "started")
    assert started["settings"]["deadline_overrides"] == {"first_byte_s": 1.0}
