"""fuzz.fixtures: the loopback image server does what each path promises, stops
promptly even with a hanging download, and serves the URLs strategies generate."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from PIL import Image

from fuzz.fixtures import PNG_SIGNATURE, FixtureServer, ThreadedFixtureServer
from fuzz.media import ImageRecipe, render
from fuzz.model import resolve_media
from fuzz.strategies import fixture_path, scenarios
from test_strategies import sample

MEDIA = render(ImageRecipe(20, 10, "RGB", "PNG", "noise", 4))


async def fetch(server: FixtureServer, path: str, timeout_s: float = 5.0) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async with session.get(server.base_url + path) as resp:
            return resp.status, resp.content_type, await resp.read()


def run(coro_fn):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with FixtureServer(hang_s=30.0) as server:
            server.publish({MEDIA.sha256: MEDIA})
            return await coro_fn(server)
    return asyncio.run(main())


def test_ok_wrong_type_and_missing() -> None:
    async def body(server: FixtureServer) -> None:
        status, ctype, data = await fetch(server, fixture_path("ok", MEDIA))
        assert (status, ctype, data) == (200, "image/png", MEDIA.data)
        assert Image.open(io.BytesIO(data)).size == (20, 10)
        status, ctype, data = await fetch(server, fixture_path("wrong_type", MEDIA))
        assert (status, ctype, data) == (200, "text/html", MEDIA.data)
        assert (await fetch(server, fixture_path("missing")))[0] == 404
        assert (await fetch(server, "/media/" + "0" * 64))[0] == 404  # not published
        assert (await fetch(server, f"/slow/abc/{MEDIA.sha256}"))[0] == 400
        assert server.served["ok"] == 2 and server.served["missing"] == 1

    run(body)


def test_slow_dribbles_the_bytes() -> None:
    async def body(server: FixtureServer) -> float:
        start = time.perf_counter()
        status, _, data = await fetch(server, fixture_path("slow", MEDIA, slow_ms=200))
        assert status == 200 and data == MEDIA.data
        return time.perf_counter() - start

    assert 0.15 < run(body) < 3.0


def test_hang_sends_a_start_then_nothing_and_a_client_timeout_fires() -> None:
    async def body(server: FixtureServer) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.base_url + fixture_path("hang")) as resp:
                assert resp.status == 200
                assert await resp.content.readexactly(len(PNG_SIGNATURE)) == PNG_SIGNATURE
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(resp.content.read(1), timeout=0.3)

    start = time.perf_counter()
    run(body)
    assert time.perf_counter() - start < 5.0  # stopping released the hanging handler


def test_huge_streams_the_announced_size() -> None:
    async def body(server: FixtureServer) -> None:
        status, ctype, data = await fetch(server, fixture_path("huge", huge_bytes=3 * 2**20 + 5))
        assert (status, ctype, len(data)) == (200, "image/png", 3 * 2**20 + 5)
        assert data.startswith(PNG_SIGNATURE)
        assert (await fetch(server, f"/huge/{2**40}/x.png"))[0] == 400  # over the cap

    run(body)


def test_loopback_only_and_argument_checks() -> None:
    with pytest.raises(ValueError):
        FixtureServer(host="0.0.0.0")
    with pytest.raises(ValueError):
        FixtureServer(port=70000)
    with pytest.raises(RuntimeError):
        _ = FixtureServer().base_url  # not started
    with pytest.raises(ValueError):
        fixture_path("ok")  # needs media


def test_threaded_variant_serves_and_forgets() -> None:
    with ThreadedFixtureServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        server.publish({MEDIA.sha256: MEDIA})
        with urllib.request.urlopen(server.base_url + fixture_path("ok", MEDIA), timeout=5) as r:
            assert r.read() == MEDIA.data
        server.forget()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.base_url + fixture_path("ok", MEDIA), timeout=5)
        assert err.value.code == 404
        assert server.served["ok"] == 2


def test_threaded_variant_that_cannot_bind_raises_and_leaves_no_thread() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        before = set(threading.enumerate())
        server = ThreadedFixtureServer(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            server.start()
        assert set(threading.enumerate()) - before == set()
        assert server._loop.is_closed()


def test_generated_fixture_urls_resolve_and_are_served() -> None:
    drawn = sample(scenarios(max_requests=2, max_pixels=16 * 16, max_prompt_tokens=20,
                             url_image_percent=100, broken_percent=0), 20)

    async def body(server: FixtureServer) -> set[str]:
        seen: set[str] = set()
        for scenario in drawn:
            server.publish(scenario.media)
            for spec in scenario.requests:
                wire = resolve_media(spec.body, scenario.media, fixture_base_url=server.base_url)
                for url in _image_urls(wire):
                    path = url[len(server.base_url):]
                    behaviour = path.split("/")[1]
                    seen.add(behaviour)
                    if behaviour in ("hang", "huge", "slow"):
                        continue  # covered above; too slow or big to fetch per URL
                    status, _, data = await fetch(server, path)
                    if behaviour == "missing":
                        assert status == 404
                    else:
                        assert status == 200 and data in {m.data for m in scenario.media.values()}
        return seen

    assert {"media", "wrong_type", "missing"} <= run(body)


def _image_urls(body: dict) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image_url"]
