"""bench/null_server.py: the stand-in chat endpoint the client benchmark runs against."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from fuzz.model import Deadlines, RequestSpec, Scenario
from fuzz.runner import Endpoint, run_scenario

PATH = Path(__file__).resolve().parents[2] / "bench" / "null_server.py"
_spec = importlib.util.spec_from_file_location("bench_null_server", PATH)
assert _spec and _spec.loader
null_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(null_server)


def serve(test: Callable[[str], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        server = await null_server.start_server(port=0, **config)
        try:
            await test(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def sse_data(raw: str) -> list[str]:
    assert raw.endswith("\n\n")
    events = raw[:-2].split("\n\n")
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: "):] for e in events]


def test_non_streaming_completion_shape() -> None:
    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 5}
            async with s.post(url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200 and r.content_type == "application/json"
                doc = await r.json()
            assert doc["object"] == "chat.completion" and doc["model"] == "m1"
            (choice,) = doc["choices"]
            assert choice["message"]["role"] == "assistant"
            assert choice["message"]["content"] == null_server.TOKEN * 5
            assert choice["finish_reason"] == "length"
            assert doc["usage"]["completion_tokens"] == 5
            # no max_tokens: --tokens; max_completion_tokens wins over max_tokens
            async with s.post(url + "/v1/chat/completions", json={"messages": []}) as r:
                assert (await r.json())["usage"]["completion_tokens"] == 3
            async with s.post(url + "/v1/chat/completions",
                              json={"max_completion_tokens": 2, "max_tokens": 9}) as r:
                assert (await r.json())["usage"]["completion_tokens"] == 2

    serve(test, tokens=3)


def test_stream_has_n_content_chunks_usage_and_done() -> None:
    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            for usage in (True, False):
                body = {"model": "m", "messages": [], "max_tokens": 7, "stream": True,
                        "stream_options": {"include_usage": usage}}
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200 and r.content_type == "text/event-stream"
                    events = sse_data(await r.text())
                assert events[-1] == "[DONE]"
                chunks = [json.loads(e) for e in events[:-1]]
                content = [c for c in chunks
                           if c["choices"] and "content" in c["choices"][0]["delta"]]
                assert len(content) == 7
                assert content[0]["choices"][0]["delta"]["role"] == "assistant"
                assert all(c["object"] == "chat.completion.chunk" for c in chunks)
                finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
                assert [c["choices"][0]["finish_reason"] for c in finish] == ["length"]
                usages = [c["usage"] for c in chunks if "usage" in c]
                assert usages == ([{"prompt_tokens": 1, "completion_tokens": 7,
                                    "total_tokens": 8}] if usage else [])
                assert len(chunks) == 7 + 1 + usage

    serve(test)  # one event per write
    serve(test, chunks_per_write=4, latency_ms=1, itl_ms=0.5)  # batched writes, delays


def test_other_routes_and_keep_alive() -> None:
    async def test(url: str) -> None:
        conn = aiohttp.TCPConnector(limit=1)  # every request must reuse the one connection
        async with aiohttp.ClientSession(connector=conn) as s:
            async with s.get(url + "/health") as r:
                assert r.status == 200
            async with s.get(url + "/v1/models") as r:
                assert [m["id"] for m in (await r.json())["data"]] == ["served"]
            async with s.get(url + "/metrics") as r:
                assert r.status == 404 and "error" in await r.json()
            async with s.post(url + "/v1/chat/completions", data=b"not json") as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == 400
            async with s.get(url + "/v1/chat/completions") as r:
                assert r.status == 405

    serve(test, model="served")


def test_runner_reads_every_event() -> None:
    """The runner sees the stream as the benchmark counts it: N + finish + usage + [DONE]."""
    async def test(url: str) -> None:
        body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 64,
                "stream": True, "stream_options": {"include_usage": True}}
        scenario = Scenario(requests=tuple(RequestSpec(id=f"r{i}", body=body)
                                           for i in range(20)))
        trace = await run_scenario(Endpoint(url, "m"), scenario, Deadlines(5, 5, 10),
                                   probe=False, metrics=False)
        for r in trace.requests:
            assert r.status == 200 and r.error is None and r.deadline is None
            assert len(r.events) == 64 + 3 and r.events[-1] == "[DONE]"

    serve(test)


def test_cli_workers_share_the_port() -> None:
    proc = subprocess.Popen([sys.executable, str(PATH), "--port", "0", "--workers", "2",
                             "--tokens", "2"], stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert ready[0] == "READY" and len(ready[2].split("=")[1].split(",")) == 2

        async def hit() -> None:
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as s:
                for _ in range(20):
                    async with s.post(ready[1] + "/v1/chat/completions", json={}) as r:
                        assert (await r.json())["usage"]["completion_tokens"] == 2

        asyncio.run(hit())
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_one_write_sends_the_same_bytes_as_one_event_per_write() -> None:
    """--chunks-per-write >= the stream's events: the prebuilt whole response, same bytes."""
    bodies: dict[int, list[bytes]] = {}

    async def raw(url: str, k: int) -> None:
        async with aiohttp.ClientSession() as s:
            for usage in (True, False):
                body = {"model": "m", "max_tokens": 5, "stream": True,
                        "stream_options": {"include_usage": usage}}
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200 and r.content_type == "text/event-stream"
                    bodies.setdefault(k, []).append(await r.read())
            # and the connection is still good for the next request
            async with s.get(url + "/health") as r:
                assert r.status == 200

    for k in (1, 3, 1000):
        serve(lambda url, k=k: raw(url, k), chunks_per_write=k)
    assert bodies[1] == bodies[3] == bodies[1000]
    assert sse_data(bodies[1000][0].decode())[-1] == "[DONE]"


def test_cli_event_loops() -> None:
    """--loop asyncio always works; --loop uvloop too when uvloop is installed."""
    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    for loop in loops:
        proc = subprocess.Popen([sys.executable, str(PATH), "--port", "0", "--loop", loop,
                                 "--tokens", "3"], stdout=subprocess.PIPE, text=True)
        try:
            ready = proc.stdout.readline().split()  # type: ignore[union-attr]
            assert ready and ready[0] == "READY", (loop, ready)

            async def hit() -> None:
                async with aiohttp.ClientSession() as s:
                    body = {"stream": True}
                    async with s.post(ready[1] + "/v1/chat/completions", json=body) as r:
                        events = sse_data(await r.text())
                    assert len(events) == 3 + 2 and events[-1] == "[DONE]"

            asyncio.run(hit())
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
