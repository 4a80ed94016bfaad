"""The runner stamps traces on its own clock (`fuzz.runner._clock`), not the event loop's:
uvloop's loop.time() counts whole milliseconds, too coarse for chunk times."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import fuzz.runner
from fuzz.client import HttpClient
from fuzz.model import Deadlines, RequestSpec, Scenario

PATH = Path(__file__).resolve().parents[2] / "bench" / "null_server.py"
_spec = importlib.util.spec_from_file_location("bench_null_server_clock", PATH)
assert _spec and _spec.loader
null_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(null_server)

TICK = 1e-4  # each reading of the fake clock moves it on by 0.1 ms


def loops() -> list[str]:
    return ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


@pytest.fixture
def counting_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    readings: list[float] = []

    def clock() -> float:
        readings.append(1000.0 + TICK * len(readings))
        return readings[-1]

    monkeypatch.setattr(fuzz.runner, "_clock", clock)
    yield readings


@pytest.mark.parametrize("loop_kind", loops())
def test_every_time_in_a_trace_comes_from_the_runners_clock(
        counting_clock: list[float], loop_kind: str) -> None:
    body = {"messages": [], "max_tokens": 5, "stream": True}
    scenario = Scenario(requests=(RequestSpec(id="s", body=body),
                                  RequestSpec(id="j", body={"messages": [], "max_tokens": 2})))

    async def main() -> fuzz.runner.Trace:
        server = await null_server.start_server(port=0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with HttpClient() as client:
                return await fuzz.runner.run_scenario(
                    fuzz.runner.Endpoint(url, "m"), scenario, Deadlines(), probe=False,
                    metrics=False, client=client)
        finally:
            server.close()
            await server.wait_closed()

    if loop_kind == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        trace = loop.run_until_complete(main())
    finally:
        loop.close()
    t0 = counting_clock[0]  # the scenario's start: the first reading
    stamps = {round(t0 + t, 9) for t in (trace.wall_s,)}
    for rt in trace.requests:
        assert rt.status == 200 and rt.error is None and rt.deadline is None
        times = [rt.sent_s, rt.first_byte_s, *rt.chunk_times_s, rt.end_s]
        assert times == sorted(times)
        stamps.update(round(t0 + t, 9) for t in times)
    assert len(trace.request("s").events) == 5 + 2  # 5 tokens, the finish, [DONE]
    # every stamp is one of the clock's readings (to float precision), none the loop's
    readings = {round(r, 9) for r in counting_clock}
    assert stamps <= readings, sorted(stamps - readings)
