"""A loopback-only HTTP server for image URLs: the target fetches `http://` images
from it, so the fuzzer controls what a remote image host does (serve, 404, dribble,
hang, lie about the type, send far too much). The path layout is documented in
`fuzz.strategies.urls`; images are the scenario's own `Media`, `publish`ed by sha256.

Use `async with FixtureServer() as server:` inside the runner's loop, or
`with ThreadedFixtureServer() as server:` from synchronous code (its own loop in a
daemon thread). Either way: `server.publish(scenario.media)` before sending, and
`resolve_media(body, scenario.media, fixture_base_url=server.base_url)`."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fuzz.model import Media

LOOPBACK: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SLOW_MS = 60_000
MAX_HUGE_BYTES = 4 * 2**30
_CHUNK = 2**20


class FixtureServer:
    """The aiohttp fixture server. `hang_s` bounds a hang (the server must still be
    able to stop); `served` counts requests per behaviour, for tests and reports."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, hang_s: float = 600.0) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"fixture server binds loopback only, not {host!r}")
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ValueError(f"port {port!r} outside 0..65535")
        if not hang_s > 0:
            raise ValueError(f"hang_s must be positive, got {hang_s!r}")
        self.host, self.port, self.hang_s = host, port, hang_s
        self.served: Counter[str] = Counter()
        self._media: dict[str, Media] = {}
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("fixture server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def publish(self, media: Mapping[str, Media]) -> None:
        """Make these media (keyed by sha256) downloadable; thread-safe."""
        with self._lock:
            self._media.update(media)

    def forget(self) -> None:
        """Drop every published media (between scenarios, to bound memory)."""
        with self._lock:
            self._media.clear()

    async def start(self) -> FixtureServer:
        app = web.Application()
        app.router.add_get("/media/{sha}", self._ok)
        app.router.add_get("/slow/{ms}/{sha}", self._slow)
        app.router.add_get("/wrong_type/{sha}", self._wrong_type)
        app.router.add_get("/missing/{name}", self._missing)
        app.router.add_get("/hang/{name}", self._hang)
        app.router.add_get("/huge/{size}/{name}", self._huge)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # release hanging handlers first
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FixtureServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def _lookup(self, request: web.Request) -> Media:
        with self._lock:
            media = self._media.get(request.match_info["sha"])
        if media is None:
            raise web.HTTPNotFound(text="vlfuzz fixture: media not published",
                                   headers={"X-Vlfuzz-Fixture": "unpublished"})
        return media

    async def _ok(self, request: web.Request) -> web.Response:
        self.served["ok"] += 1
        media = self._lookup(request)
        return web.Response(body=media.data, content_type=media.mime)

    async def _wrong_type(self, request: web.Request) -> web.Response:
        self.served["wrong_type"] += 1
        return web.Response(body=self._lookup(request).data, content_type="text/html")

    async def _missing(self, request: web.Request) -> web.Response:
        self.served["missing"] += 1
        return web.Response(status=404, text="not found", content_type="text/plain")

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        self.served["slow"] += 1
        media = self._lookup(request)
        total_s = _bounded_int(request.match_info["ms"], MAX_SLOW_MS) / 1000.0
        resp = web.StreamResponse(headers={"Content-Type": media.mime})
        resp.content_length = len(media.data)
        await resp.prepare(request)
        pieces = 10
        step = max(1, -(-len(media.data) // pieces))
        try:
            for i in range(0, max(len(media.data), 1), step):
                if await self._closed_within(total_s / pieces):
                    return resp
                await resp.write(media.data[i:i + step])
            await resp.write_eof()
        except ConnectionError:
            pass  # the client gave up waiting: a normal outcome here
        return resp

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        self.served["hang"] += 1
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        await resp.write(PNG_SIGNATURE)  # a promising start, then nothing
        await self._closed_within(self.hang_s)
        return resp

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        self.served["huge"] += 1
        size = _bounded_int(request.match_info["size"], MAX_HUGE_BYTES)
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = size
        await resp.prepare(request)
        chunk = bytes(_CHUNK)
        sent = 0
        try:
            head = PNG_SIGNATURE[:size]
            await resp.write(head)
            sent = len(head)
            while sent < size:
                n = min(_CHUNK, size - sent)
                await resp.write(chunk[:n])
                sent += n
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client gave up: that is the point
        return resp

    async def _closed_within(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the server started stopping meanwhile."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
            return True
        except asyncio.TimeoutError:
            return False


def _bounded_int(text: str, limit: int) -> int:
    if not text.isdigit() or int(text) > limit:
        raise web.HTTPBadRequest(text=f"vlfuzz fixture: {text!r} not an integer in 0..{limit}")
    return int(text)


class ThreadedFixtureServer:
    """`FixtureServer` on its own event loop in a daemon thread, for sync callers."""

    def __init__(self, **kwargs: Any) -> None:
        self.server = FixtureServer(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="vlfuzz-fixtures")

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def served(self) -> Counter[str]:
        return self.server.served

    def publish(self, media: Mapping[str, Media]) -> None:
        self.server.publish(media)

    def forget(self) -> None:
        self.server.forget()

    def start(self, timeout_s: float = 10.0) -> ThreadedFixtureServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop)
        try:
            started.result(timeout_s)
        except BaseException:  # bind error, timeout, ^C: no __exit__ will stop the thread
            started.cancel()
            self.stop(timeout_s)
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout_s)
            finally:  # even if the server would not stop, end the loop and its thread
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout_s)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ThreadedFixtureServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
