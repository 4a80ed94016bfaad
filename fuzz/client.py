"""The HTTP client the runner sends through: one aiohttp session with keep-alive.

A new TCP connection per request costs more client CPU than everything else a request
does, so connections are kept and reused, by the requests of one scenario and, when
the caller holds an `HttpClient` across scenarios, by later scenarios too.

Reuse has one hazard a fuzzer must not turn into false alarms: a server closes an idle
keep-alive connection (uvicorn, which vLLM runs on, after 5 s) at the moment the client
sends a new request on it, and the request dies with a disconnect or a reset before any
response byte, through no fault of the server. Two defences:

- idle connections are dropped by the client after `keepalive_s` (2 s by default, well
  under uvicorn's 5 s), so the race needs a server that closes sooner than that;
- a request that fails that way is sent once more, on a new connection, and only when
  all of these hold: its connection had been used before (aiohttp's reuse trace hook
  says so), no response object exists (the status line never arrived: aiohttp reports a
  disconnect before the status line as "Server disconnected"), and the error is a
  disconnect, a reset, an abort or a broken pipe.

A failure on a new connection is never retried, nor is anything that went wrong after
the status line, so a server that resets a request is always reported: if it resets the
first attempt on a reused connection it resets the retry too, and that is recorded.
aiohttp's own retry (any disconnect of an idempotent request, on new connections too)
is turned off for the same reason.
"""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

KEEPALIVE_S = 2.0
LOOP_ENV = "VLFUZZ_LOOP"  # "asyncio" forces the standard loop (e.g. to rule uvloop out)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop requests should run in: uvloop when it can be imported, else the
    standard one (or the standard one when $VLFUZZ_LOOP is "asyncio").

    uvloop because its transports, timers and callbacks are C: at concurrency 256 the
    runner spends 3-15% less CPU per 64-token stream and 9-30% less per short request
    (bench/loop_ab.py, bench/client.py), and CPU the client does not use is CPU the
    target under test can. (uvloop's loop.time() counts whole milliseconds; the runner
    keeps its own clock for traces and deadlines.)"""
    if os.environ.get(LOOP_ENV, "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:  # optional at run time: same behaviour, a little more CPU
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio", for reports."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


_NOT_OPEN = "HttpClient is not open: use `async with HttpClient()`"
_STALE_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


@dataclass(frozen=True)
class Endpoint:
    """Where the target is and how to address it."""

    base_url: str
    model: str
    api_key: str | None = None

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def describe_error(exc: BaseException) -> str:
    """`ClassName: message`, the form traces and signatures use for transport errors."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def is_stale_connection_error(exc: BaseException) -> bool:
    """True for the ways a request dies on a connection the server had already closed:
    a disconnect before the status line, a reset, an abort or a broken pipe, also when
    aiohttp wraps one (e.g. "Can not write request body" caused by a closing transport)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)  # a partial response would be a message object
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False  # could not connect at all: nothing was reused
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True  # incl. aiohttp's "Cannot write to closing transport"
    if isinstance(exc, OSError) and exc.errno in _STALE_ERRNOS:
        return True
    cause = exc.__cause__
    return (isinstance(exc, aiohttp.ClientOSError) and cause is not None
            and is_stale_connection_error(cause))


async def _on_reuse(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    attempt = ctx.trace_request_ctx
    if attempt is not None:
        attempt.reused = True


class _Attempt:
    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


class HttpClient:
    """One keep-alive session for many requests (and scenarios); `async with` it inside
    the event loop that runs them (aiohttp sessions belong to one loop).

    `keepalive_s` is how long an idle connection may be reused; `limit` caps open
    connections (0: none, so a burst of N requests really is N in flight).
    `stale_retries` counts the requests sent again after a stale connection."""

    def __init__(self, *, keepalive_s: float = KEEPALIVE_S, limit: int = 0) -> None:
        if not keepalive_s > 0:
            raise ValueError(f"keepalive_s must be positive, got {keepalive_s!r}")
        self.keepalive_s, self.limit = keepalive_s, limit
        self.stale_retries = 0
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        trace = aiohttp.TraceConfig()
        trace.on_connection_reuseconn.append(_on_reuse)
        self._session = self._new_session(
            aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=self.keepalive_s),
            [trace])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._session is not None and not self._session.closed

    async def close(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    @staticmethod
    def _new_session(connector: aiohttp.BaseConnector,
                     traces: list[aiohttp.TraceConfig]) -> aiohttp.ClientSession:
        # deadlines are the runner's; cookies would make requests depend on each other
        session = aiohttp.ClientSession(
            connector=connector, trace_configs=traces, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None,
                                          sock_connect=None))
        if hasattr(session, "_retry_connection"):  # aiohttp >= 3.10 retries idempotent
            session._retry_connection = False      # requests on any disconnect, fresh or not
        return session

    async def request(self, method: str, url: Any, *, data: bytes | None,
                      headers: dict[str, str]) -> aiohttp.ClientResponse:
        """Send and return once the response head arrived (the body is the caller's)."""
        if self._session is None:
            raise RuntimeError(_NOT_OPEN)
        attempt = _Attempt()
        try:
            return await self._session.request(method, url, data=data, headers=headers,
                                               trace_request_ctx=attempt)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if not (attempt.reused and is_stale_connection_error(exc)):
                raise
        self.stale_retries += 1
        if self._fresh is None:  # a connection of its own, closed after its one response
            self._fresh = self._new_session(aiohttp.TCPConnector(limit=0, force_close=True), [])
        return await self._fresh.request(method, url, data=data, headers=headers)
