"""Replays meet media for the first time, as the original run did.

The server here keeps vLLM 0.32's multimodal cache bug: a request that is rejected
after its images were processed leaves them marked as cached, so the next request with
the same image fails with a 500 (once). A server that remembers images would let every
replay of that scenario pass; the campaign's replays send each image byte-new, so the
minimizer reproduces the failure and keeps exactly the two requests it needs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from aiohttp import web
from faults import FaultServer, error_json

import fuzz.campaign as campaign
from fuzz.bundle import Bundle, fuzzer_info, load_bundle, write_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import MinimizationStarted, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.media import ImageRecipe, render
from fuzz.minimize import Budget
from fuzz.oracles import check
from fuzz.replay import replay_bundle
from fuzz.model import Deadlines, RequestSpec, Scenario, media_url
from fuzz.runner import Endpoint, run_scenario
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=15.0)
IMAGE = render(ImageRecipe(32, 32, "RGB", "PNG", "noise", 5))


def image_digests(body: Any) -> list[str]:
    """sha256 of every data-URL image in a chat body, as the server hashes them."""
    if isinstance(body, dict):
        url = body.get("image_url", {}).get("url", "") if isinstance(body.get("image_url"), dict) else ""
        own = [hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()] \
            if url.startswith("data:") else []
        return own + [d for v in body.values() for d in image_digests(v)]
    if isinstance(body, list):
        return [d for v in body for d in image_digests(v)]
    return []


class PoisoningServer(FaultServer):
    """Rejects `max_tokens` < 0 with a 400 only after caching its images as processed;
    a later request with a cached-but-never-used image gets one 500."""

    def __init__(self) -> None:
        super().__init__(hang_s=2.0)
        self.seen: set[str] = set()
        self.poisoned: set[str] = set()
        self.poison_hits = 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        digests = image_digests(body)
        if isinstance(body.get("max_tokens"), int) and body["max_tokens"] < 0:
            self.poisoned |= set(digests) - self.seen
            self.seen |= set(digests)
            return web.json_response(error_json(400, "max_tokens must be at least 1",
                                                "BadRequestError"), status=400)
        if self.poisoned & set(digests):
            self.poisoned -= set(digests)
            self.poison_hits += 1
            return web.json_response(error_json(500, "Internal server error"), status=500)
        self.seen |= set(digests)
        return await super()._chat(request)


def chat(*content: Any, **params: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(content)}], **params}


def poisoning_scenario(i: int) -> Scenario:
    """Only `rejected` then `victim`, in that order, fail; the rest is noise."""
    image = {"type": "image_url", "image_url": {"url": media_url(IMAGE.sha256)}}
    text = {"type": "text", "text": f"look {i}"}
    return Scenario(requests=(
        RequestSpec(id="plain", body=chat(text, max_tokens=4)),
        RequestSpec(id="rejected", body=chat(image, text, max_tokens=-1), offset_ms=100),
        RequestSpec(id="other", body=chat(text, max_tokens=3), offset_ms=200),
        RequestSpec(id="victim", body=chat(image, text, max_tokens=4), offset_ms=400),
    ), media={IMAGE.sha256: IMAGE})


def test_the_minimizer_reproduces_a_first_sight_cache_bug_and_keeps_both_requests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenarios = (poisoning_scenario(i) for i in itertools.count())
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(scenarios)))
    stop = threading.Event()
    minimizing: list[MinimizationStarted] = []

    def on_event(event: object) -> None:
        if isinstance(event, MinimizationStarted):
            minimizing.append(event)
        elif isinstance(event, ScenarioFinished) and minimizing:
            stop.set()  # the next scenario: the minimization is over, whatever it found

    with PoisoningServer() as server:
        config = CampaignConfig(out_dir=tmp_path, duration_s=120, seed=1, deadlines=FAST,
                                minimize_budget=Budget(max_replays=30, max_wall_s=60.0),
                                steering=False, isolation=False)
        run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                     on_event, stop=stop)
        hits = server.poison_hits
    records = read_journal(tmp_path / "journal.jsonl")
    minimized = next(r for r in records if r["type"] == "minimized")
    assert minimized["requests_after"] == 2, minimized
    assert hits >= 3, "the replays never met the image for the first time"
    bundle = load_bundle(Path(next(r["path"] for r in reversed(records) if r["type"] == "bundle")))
    assert [r.id for r in bundle.scenario.requests] == ["rejected", "victim"]
    assert bundle.failure.signature.startswith("server_error|500|")
    # the bundle keeps media as recorded (content-addressed), never a replay's stamped copy
    assert bundle.scenario.media and all(key == m.sha256 for key, m in bundle.scenario.media.items())


def recorded_bundle(endpoint: Endpoint) -> Bundle:
    """The two requests that matter, sent once to a fresh server and bundled as found."""
    minimal = poisoning_scenario(0).with_requests(
        tuple(r for r in poisoning_scenario(0).requests if r.id in ("rejected", "victim")))
    trace = asyncio.run(run_scenario(endpoint, minimal, FAST))
    [failure] = [f for f in check(minimal, trace) if f.kind == "server_error"]
    return Bundle(minimal, failure, trace, (1, 1), {}, fuzzer_info(1), 2)


def test_a_bundle_replay_meets_the_media_for_the_first_time_in_every_run() -> None:
    """Three runs of the bundle against one server: each run's image is byte-new, so
    the cache bug shows in all three, not only in the first."""
    with PoisoningServer() as server:
        endpoint = Endpoint(server.base_url, "fault-model")
        result = asyncio.run(replay_bundle(recorded_bundle(endpoint), endpoint, runs=3,
                                           deadlines=FAST))
        hits = server.poison_hits
    assert (result.failing_runs, result.runs, result.verdict.name) == (3, 3, "STILL_FAILING")
    assert hits == 4


def test_repro_py_run_twice_against_one_server_fails_both_times(tmp_path: Path) -> None:
    """A maintainer runs repro.py, then runs it again: the second run must not pass
    because the server remembered the image from the first."""
    with PoisoningServer() as server:
        folder = write_bundle(recorded_bundle(Endpoint(server.base_url, "fault-model")),
                              tmp_path)
        codes = [subprocess.run([sys.executable, str(folder / "repro.py"), "--endpoint",
                                 server.base_url, "--runs", "1", "--settle", "0"],
                                capture_output=True, text=True, timeout=60).returncode
                 for _ in range(2)]
    assert codes == [1, 1]
