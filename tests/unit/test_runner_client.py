"""fuzz.client: which failures count as a stale kept-alive connection, and client misuse."""

from __future__ import annotations

import asyncio
import errno
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.client_exceptions import ClientConnectionResetError

from fuzz.client import HttpClient, is_stale_connection_error


KEY: Any = SimpleNamespace(ssl=None, host="h", port=1)  # enough of a ConnectionKey


def wrapped(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize("exc, stale", [
    (aiohttp.ServerDisconnectedError(), True),
    (ClientConnectionResetError("Cannot write to closing transport"), True),
    (aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"), True),
    (aiohttp.ClientOSError(errno.EPIPE, "Broken pipe"), True),
    (aiohttp.ClientOSError(errno.EHOSTUNREACH, "No route to host"), False),
    (wrapped(aiohttp.ClientOSError(None, "Can not write request body"),
             ClientConnectionResetError("Cannot write to closing transport")), True),
    (wrapped(aiohttp.ClientOSError(None, "Can not write request body"), ValueError()), False),
    (aiohttp.ClientConnectorError(KEY, ConnectionResetError(errno.ECONNRESET, "reset")), False),
    (aiohttp.ClientPayloadError("Response payload is not completed"), False),
    (asyncio.TimeoutError(), False),
    (ValueError("x"), False),
])
def test_stale_connection_errors(exc: BaseException, stale: bool) -> None:
    assert is_stale_connection_error(exc) is stale


def test_client_must_be_opened_and_keepalive_positive() -> None:
    with pytest.raises(ValueError):
        HttpClient(keepalive_s=0)

    async def send() -> None:
        await HttpClient().request("GET", "http://127.0.0.1:1/", data=None, headers={})

    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(send())


def test_run_scenario_refuses_a_closed_client_instead_of_blaming_the_server() -> None:
    from fuzz.model import Deadlines, RequestSpec, Scenario
    from fuzz.runner import Endpoint, run_scenario
    scenario = Scenario(requests=(RequestSpec(id="r", body={}),))

    async def run() -> None:
        async with HttpClient() as client:
            pass
        await run_scenario(Endpoint("http://127.0.0.1:1", "m"), scenario, Deadlines(),
                           probe=False, metrics=False, client=client)

    with pytest.raises(RuntimeError, match="open HttpClient"):
        asyncio.run(run())


def _loop_module(monkeypatch: pytest.MonkeyPatch, env: str | None, uvloop_importable: bool) -> str:
    import sys

    from fuzz.client import LOOP_ENV, loop_name, new_event_loop
    if env is None:
        monkeypatch.delenv(LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(LOOP_ENV, env)
    if not uvloop_importable:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    loop = new_event_loop()
    try:
        return loop_name(loop)
    finally:
        loop.close()


def test_event_loop_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _loop_module(monkeypatch, None, uvloop_importable=False) == "asyncio"


def test_event_loop_is_uvloop_when_installed_unless_asked_not_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    assert _loop_module(monkeypatch, None, uvloop_importable=True) == "uvloop"
    assert _loop_module(monkeypatch, "asyncio", uvloop_importable=True) == "asyncio"
