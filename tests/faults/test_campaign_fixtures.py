"""Image URLs in a campaign: the fault server, like vLLM, downloads every `http://`
image URL it is sent; those URLs point at the campaign's loopback fixture server,
which serves the scenario's media while it runs, for the minimizer's replays too,
and bundles keep the placeholders, not one run's port."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis.strategies as st
import pytest
from aiohttp import web
from faults import FaultServer, error_json

import fuzz.campaign as campaign
from fuzz.bundle import load_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import BundleWritten, MinimizationStarted, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.media import ImageRecipe, render
from fuzz.minimize import Budget
from fuzz.model import Deadlines, RequestSpec, Scenario, fixture_url
from fuzz.runner import Endpoint
from fuzz.strategies import fixture_path
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=15.0)
READ_CAP = 2**20


def image_urls(body: Any) -> list[str]:
    if isinstance(body, dict):
        if isinstance(body.get("image_url"), dict):
            return [body["image_url"].get("url", "")]
        return [u for v in body.values() for u in image_urls(v)]
    if isinstance(body, list):
        return [u for v in body for u in image_urls(v)]
    return []


class FetchingServer(FaultServer):
    """Downloads each http:// image URL of a chat request (up to 1 MiB, 4 s) before
    answering; `fetched` keeps (url, status, sha256 of a complete 200 body).
    With `crash_on_image`, a request whose image downloaded fine gets a 500."""

    def __init__(self, crash_on_image: bool = False) -> None:
        super().__init__(hang_s=2.0)
        self.crash_on_image = crash_on_image
        self.fetched: list[tuple[str, int | None, str | None]] = []

    async def _fetch(self, session: aiohttp.ClientSession, url: str) -> tuple[str, int | None, str | None]:
        try:
            async with session.get(url) as resp:
                data = b""
                while len(data) < READ_CAP and (chunk := await resp.content.readany()):
                    data += chunk
                whole = resp.status == 200 and len(data) == resp.content_length
                return url, resp.status, hashlib.sha256(data).hexdigest() if whole else None
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return url, None, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        urls = [u for u in image_urls(json.loads(await request.read())) if u.startswith("http")]
        if urls:
            timeout = aiohttp.ClientTimeout(total=4.0)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                got = await asyncio.gather(*(self._fetch(session, u) for u in urls))
            self.fetched += got
            if self.crash_on_image and any(status == 200 for _, status, _ in got):
                return web.json_response(error_json(500, "engine crashed after fetching an image"),
                                         status=500)
        return await super()._chat(request)


def test_generated_image_urls_reach_the_target_and_the_fixture_server_serves_them(
        tmp_path: Path) -> None:
    stop = threading.Event()
    finished: list[ScenarioFinished] = []

    def on_event(event: object) -> None:
        """Stop once a published image was downloaded whole (or after 20 scenarios)."""
        if isinstance(event, ScenarioFinished):
            finished.append(event)
            if len(finished) >= 20 or any(digest for _, _, digest in server.fetched):
                stop.set()

    with FetchingServer() as server:
        config = CampaignConfig(out_dir=tmp_path, duration_s=300, seed=1, deadlines=FAST,
                                max_requests=3, minimize=False, url_image_percent=100)
        run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                     on_event, stop=stop)
        fetched, own_port = list(server.fetched), server.port
    assert fetched, "no image URL reached the server"
    assert all(url.startswith("http://127.0.0.1:") for url, _, _ in fetched)
    assert all(f":{own_port}/" not in url for url, _, _ in fetched)
    served = [(url, digest) for url, status, digest in fetched
              if url.split("/")[3] in ("media", "slow", "wrong_type") and digest is not None]
    assert served and all(url.endswith(f"/{digest}") for url, digest in served), \
        "the fixture server did not serve the scenario's published media"
    assert all(status == 404 for url, status, _ in fetched if "/missing/" in url)
    features = json.loads((tmp_path / "summary.json").read_text())["features"]
    assert any(tag.startswith("image:url:") for tag in features)


IMAGE = render(ImageRecipe(32, 32, "RGB", "PNG", "noise", 3))


def url_scenario(i: int) -> Scenario:
    """Two requests; only the one with an image URL crashes the fetching server."""
    text = {"messages": [{"role": "user", "content": f"plain {i}"}]}
    with_image = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": fixture_url(fixture_path("ok", IMAGE))}}]}]}
    return Scenario(requests=(RequestSpec(id="text", body=text),
                              RequestSpec(id="image", body=with_image)),
                    media={IMAGE.sha256: IMAGE})


def test_replays_fetch_from_the_fixture_server_and_bundles_keep_placeholders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenarios = (url_scenario(i) for i in itertools.count())
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(scenarios)))
    stop = threading.Event()
    minimizing: list[MinimizationStarted] = []

    def on_event(event: object) -> None:
        if isinstance(event, MinimizationStarted):
            minimizing.append(event)
        elif isinstance(event, BundleWritten) and minimizing:
            stop.set()

    with FetchingServer(crash_on_image=True) as server:
        config = CampaignConfig(out_dir=tmp_path, duration_s=300, seed=1, deadlines=FAST,
                                minimize_budget=Budget(max_replays=8, max_wall_s=60.0))
        run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
                     on_event, stop=stop)
        fetched = list(server.fetched)
    records = read_journal(tmp_path / "journal.jsonl")
    minimized = next(r for r in records if r["type"] == "minimized")
    assert minimized["requests_after"] == 1, minimized
    served = [status for _, status, _ in fetched]
    assert served.count(200) >= 2, "the minimizer's replays did not get the image"
    bundle = load_bundle(Path(next(r["path"] for r in reversed(records) if r["type"] == "bundle")))
    assert [r.id for r in bundle.scenario.requests] == ["image"]
    body = json.dumps(bundle.scenario.requests[0].body)
    assert fixture_url(fixture_path("ok", IMAGE)) in body and "127.0.0.1" not in body
    assert IMAGE.sha256 in bundle.scenario.media and bundle.reproduced.k >= 1
