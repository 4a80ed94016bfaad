"""The runner's fault tests again, on uvloop: `fuzz.client.new_event_loop` runs requests
on it when it is installed, so resets, stalls, malformed streams and the stale
keep-alive retry must come out the same there (same trace fields, same error names)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

uvloop = pytest.importorskip("uvloop")

from test_runner_faults import *  # noqa: E402,F401,F403  (every test, collected again here)
from test_runner_faults import FaultServer, RequestSpec, fault_body, play  # noqa: E402

# its upper bounds on lateness are the standard loop's business; here the ordering only
del test_offsets_are_honoured_in_order  # noqa: F821


@pytest.fixture(autouse=True)
def _on_uvloop() -> Iterator[None]:
    """asyncio.run (the tests' loops, and the fault server's thread) makes uvloop loops."""
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


def test_the_tests_really_run_on_uvloop() -> None:
    async def name() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert asyncio.run(name()).startswith("uvloop")


def test_requests_are_never_sent_before_their_offset_and_go_in_order(
        fault_server: FaultServer) -> None:
    """uvloop's own clock counts whole milliseconds; the runner's must not let a request
    go before its offset, nor out of order."""
    offsets = {"c": 24.0, "a": 0.0, "e": 36.5, "d": 36.0, "b": 12.3}
    specs = tuple(RequestSpec(id=i, offset_ms=ms, body=fault_body("ok", tag=i))
                  for i, ms in offsets.items())
    trace = play(fault_server, *specs)
    for rt in trace.requests:
        assert rt.status == 200 and rt.error is None
        assert rt.sent_s >= offsets[rt.id] / 1000, (rt.id, rt.sent_s)
    by_sent = sorted(trace.requests, key=lambda rt: rt.sent_s)
    assert [rt.id for rt in by_sent] == ["a", "b", "c", "d", "e"]
