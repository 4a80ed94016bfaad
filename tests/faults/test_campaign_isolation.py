"""The isolation and interference oracles in whole campaigns, against the in-process
servers of tests/isolation_servers.py.

The campaign calibrates the quiet target at start (journaled, reused by `--resume`),
plants a probe, maybe the victim and a canary into scenarios, and judges each one
against runs alone. A server that perturbs a text request's answer while an image
request runs beside it is caught: the divergence is confirmed by replay, bundled with
the confirming replays as its reproduction rate, and minimized with the isolation
oracle's own replay down to the probe and its image neighbour. A merely noisy server
raises nothing, and the journal shows what was judged (suspects, replays) for the
false-alarm rate. `vlfuzz calibrate` writes the noise model `--noise` reads.

Scenarios are fed in order; every scenario gets a plant (`isolation_percent=100`).
Nothing is timed except by the oracles' own rules."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from faults import FaultServer, fault_body
from isolation_servers import IsolationServer

import fuzz.campaign as campaign
from fuzz.bundle import load_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.cli import main
from fuzz.events import BundleWritten, MinimizationStarted, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.minimize import Budget
from fuzz.model import Deadlines, Media, RequestSpec, Scenario, media_url
from fuzz.outputs import validate_summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=30.0)
ISOLATION_KINDS = {"isolation_divergence", "cross_request_leak", "interference_slowdown"}


def feed(monkeypatch: pytest.MonkeyPatch, scenarios: Iterator[Scenario]) -> None:
    """Make the campaign draw exactly these scenarios, in order."""
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(scenarios)))


def traffic(i: int) -> Scenario:
    """What generation might send: a request about an image and a text request (neither
    greedy with logprobs, so only the planted probe and victim are judged)."""
    image = Media(data=f"not really a PNG {i}".encode(), mime="image/png")
    looks = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(image.sha256)}},
        {"type": "text", "text": f"What is in picture {i}?"}]}], "max_tokens": 16}
    chats = {"messages": [{"role": "user", "content": f"Tell me about day {i}."}],
             "max_tokens": 12}
    return Scenario(requests=(RequestSpec(id="r0", body=looks),
                              RequestSpec(id="r1", body=chats, offset_ms=10.0)),
                    media={image.sha256: image})


def config(out: Path, **kw: Any) -> CampaignConfig:
    return CampaignConfig(out_dir=out, duration_s=600.0, seed=3, deadlines=FAST,
                          examples_per_round=4, steering=False, isolation=True,
                          isolation_percent=100, **kw)


def run(cfg: CampaignConfig, server: IsolationServer, scenarios: int) -> list[dict[str, Any]]:
    """A campaign stopped after `scenarios` scenarios; its journal."""
    stop = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, ScenarioFinished) and event.index + 1 >= scenarios:
            stop.set()

    run_campaign(cfg, ExternalSupervisor(Endpoint(server.base_url, server.model)), on_event,
                 stop=stop)
    return read_journal(cfg.out_dir / "journal.jsonl")


def test_a_perturbed_answer_is_confirmed_bundled_and_minimized_to_its_neighbour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(monkeypatch, (traffic(i) for i in itertools.count()))
    stop = threading.Event()
    minimizing: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, MinimizationStarted):
            minimizing.append(event.signature)
        elif isinstance(event, BundleWritten) and minimizing:
            stop.set()

    cfg = config(tmp_path, minimize_budget=Budget(max_replays=30, max_wall_s=120.0))
    with IsolationServer("perturb") as server:
        run_campaign(cfg, ExternalSupervisor(Endpoint(server.base_url, server.model)),
                     on_event, stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    kinds = [r["type"] for r in records]
    assert kinds.index("noise") < kinds.index("victim") < kinds.index("scenario")
    noise = next(r for r in records if r["type"] == "noise")
    assert noise["source"] == "measured" and noise["image"] is True
    failure = next(r for r in records if r["type"] == "failure")
    assert failure["kind"] == "isolation_divergence", failure
    assert failure["signature"].endswith("|text_probe")
    assert failure["evidence"]["confirmation"]["hits"] >= 2
    judged = next(r for r in records if r["type"] == "scenario"
                  and r["index"] == failure["scenario"])
    assert judged["isolation"]["confirmed"] >= 1 and judged["isolation"]["replays"] >= 2
    assert failure["signature"] in judged["failures"]

    bundles = [r for r in records if r["type"] == "bundle"]
    first = bundles[0]
    assert first["signature"] == failure["signature"]
    assert first["reproduced"] == [failure["evidence"]["confirmation"]["hits"],
                                   failure["evidence"]["confirmation"]["runs"]]
    assert minimizing == [failure["signature"]]
    minimized = next(r for r in records if r["type"] == "minimized")
    assert minimized["requests_after"] == 2, minimized  # the probe and the image request
    bundle = load_bundle(Path(bundles[-1]["path"]))
    assert bundle.failure.kind == "isolation_divergence" and bundle.reproduced.k >= 1
    kept = {r.id for r in bundle.scenario.requests}
    assert failure["request_id"] in kept and "r0" in kept  # the subject and its image neighbour
    divergence = bundle.failure.evidence["divergence"]
    assert divergence["alone_token"] != divergence["got_token"]

    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    assert doc["isolation"]["confirmed"] >= 1 and doc["isolation"]["enabled"]
    assert any(f["kind"] == "isolation_divergence" and f["bundle"] for f in doc["failures"])
    assert "## Isolation and interference" in (tmp_path / "report.md").read_text()


def test_a_noisy_server_raises_nothing_and_the_journal_counts_what_was_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    noise_file = tmp_path / "noise.json"
    feed(monkeypatch, (traffic(i) for i in itertools.count()))
    with IsolationServer("noisy") as server:
        assert main(["calibrate", "--endpoint", server.base_url, "--model", server.model,
                     "--repeats", "3", "--batch-sizes", "2,4", "--batch-runs", "2",
                     "--max-tokens", "16", "--latency-runs", "2", "--out", str(noise_file)]) == 0
        assert "margin threshold" in capsys.readouterr().out
        out = tmp_path / "campaign"
        records = run(config(out, noise_file=noise_file), server, scenarios=6)
        # a second session reuses the journaled calibration instead of measuring again
        resumed = run(config(out, noise_file=noise_file, resume=True), server, scenarios=8)
        flips = server.flips
    assert flips > 0, "the noisy server never flipped a near tie: the test proves nothing"
    assert not [r for r in resumed if r["type"] == "failure" and r["kind"] in ISOLATION_KINDS]
    assert [r["type"] for r in resumed].count("noise") == 1
    assert [r["type"] for r in resumed].count("victim") == 1
    noise = next(r for r in records if r["type"] == "noise")
    assert noise["source"] == f"file {noise_file}"
    done = [r for r in resumed if r["type"] == "scenario"]
    assert len(done) >= 8
    counters = ("probes", "victims", "suspects", "confirmed", "unconfirmed", "replays",
                "slow_suspects", "slow_confirmed", "slow_unconfirmed", "slow_replays", "s")
    assert all(set(r["isolation"]) == set(counters) for r in done), done[0]
    assert all(r["isolation"]["probes"] >= 1 for r in done)  # every scenario got a probe
    assert sum(r["isolation"]["victims"] for r in done) >= 1
    assert all(r["isolation"]["confirmed"] == r["isolation"]["slow_confirmed"] == 0 for r in done)
    doc = json.loads((out / "summary.json").read_text())
    validate_summary(doc)
    iso = doc["isolation"]
    assert iso["scenarios_judged"] == len(done) and iso["confirmed"] == iso["slow_confirmed"] == 0
    assert iso["suspects"] == sum(r["isolation"]["suspects"] for r in done)
    assert iso["noise"]["source"] == f"file {noise_file}"
    assert "isolation suspects" in (out / "report.md").read_text()


def test_a_target_that_cannot_be_calibrated_runs_without_the_oracles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(monkeypatch, (Scenario(requests=(RequestSpec(id="r0", body=fault_body("ok", tag=i)),))
                       for i in itertools.count()))
    with FaultServer() as server:  # answers without logprobs
        records = run(config(tmp_path), server, scenarios=3)
    off = next(r for r in records if r["type"] == "isolation")
    assert off["event"] == "off" and "CalibrationError" in off["reason"]
    done = [r for r in records if r["type"] == "scenario"]
    assert len(done) == 3 and all("isolation" not in r for r in done)
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert not doc["isolation"]["enabled"] and "CalibrationError" in doc["isolation"]["note"]
