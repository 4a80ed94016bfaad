"""A fast stand-in for vLLM's OpenAI chat endpoint, so that a benchmark measures the client.

    python3 bench/null_server.py --port P [--tokens N] [--latency-ms L] [--itl-ms I]
                                 [--chunks-per-write K] [--workers W] [--host H]
                                 [--record-arrivals] [--loop auto|asyncio|uvloop]

A bare asyncio Protocol with a minimal HTTP/1.1 parser (keep-alive, Content-Length
bodies; no chunked request bodies), every response byte prebuilt once and cached:

- `POST /v1/chat/completions`: a chat completion of N tokens, N being the request's
  `max_completion_tokens` / `max_tokens` (capped at 4096) or else `--tokens`. With
  `"stream": true` an SSE stream (chunked transfer encoding, like vLLM's uvicorn): N
  content chunks (the first also carries the role), a finish chunk, a usage chunk when
  `stream_options.include_usage` is true, then `data: [DONE]`. K events are written per
  loop iteration (default 1: like a batched engine, every stream gets one token per
  step, so a client at high concurrency sees about one read per token). A K of at
  least the stream's events sends the whole response, prebuilt once, in one write.
- `GET /v1/models`, `GET /health`; anything else is 404 (so `/metrics` and `/tokenize`
  are "not there", which both clients handle).
- For the benchmarks' own bookkeeping: `GET /bench/count`, the number of chat requests
  received so far (`{"count": N}`), and with `--record-arrivals`, `GET /bench/arrivals`,
  the `[time.monotonic(), body["user"]]` of every chat request received since the last
  call (the clock is the host's CLOCK_MONOTONIC, the same in every process, so a client
  can compare it with its own plan).

`--latency-ms` delays the response headers (time to first byte); `--itl-ms` delays
each stream write after the first. `--loop uvloop` (the default when it is installed)
runs the server on uvloop: the same bytes and the same writes, at 10-25% less server
CPU per stream (most of what is left is the kernel's work per `send`), which matters on
a small machine where the server and the client share the cores (`--loop asyncio` for
the standard loop). `--workers W` forks W processes that each accept on their own
SO_REUSEPORT socket bound to the same port. `--port 0` picks a free port. Once every
worker listens, one line `READY http://HOST:PORT pids=P1,P2,...` goes to stdout. For
tests, `start_server()` runs it inside the caller's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import socket
import sys
from collections.abc import Callable
from typing import Any

try:  # optional: a faster JSON parser for request bodies (image requests carry tens of KB)
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    _loads = json.loads

import json as _json

MAX_TOKENS = 4096
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
CREATED = 1_700_000_000
TOKEN = " tok"


def _dumps(obj: Any) -> bytes:
    return _json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, content_type: str, body: bytes, close: bool = False) -> bytes:
    conn = b"connection: close\r\n" if close else b""
    return (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n").encode() + conn + b"\r\n" + body


def _chunk(payload: bytes) -> bytes:
    """One SSE event, framed as one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
STREAM_END = _chunk(b"[DONE]") + b"0\r\n\r\n"
HEALTH = _response("200 OK", "text/plain", b"")


def _error(status: int, message: str, close: bool = False) -> bytes:
    reason = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              413: "Payload Too Large", 501: "Not Implemented"}[status]
    body = _dumps({"error": {"message": message, "type": reason.replace(" ", ""),
                             "param": None, "code": status}})
    return _response(f"{status} {reason}", "application/json", body, close)


class Responses:
    """Prebuilt response bytes, cached per (model, tokens[, usage])."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._plain: dict[tuple[str, int], bytes] = {}
        self._stream: dict[tuple[str, int, bool], list[bytes]] = {}
        self._whole: dict[tuple[str, int, bool], bytes] = {}
        self.models = _response("200 OK", "application/json", _dumps({
            "object": "list", "data": [{"id": model, "object": "model", "created": CREATED,
                                        "owned_by": "vlfuzz-bench", "root": model,
                                        "parent": None, "max_model_len": 8192}]}))

    def _usage(self, n: int) -> dict[str, int]:
        return {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}

    def plain(self, model: str, n: int) -> bytes:
        key = (model, n)
        out = self._plain.get(key)
        if out is None:
            if len(self._plain) > 4096:
                self._plain.clear()
            body = _dumps({
                "id": "chatcmpl-null", "object": "chat.completion", "created": CREATED,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": TOKEN * n},
                             "logprobs": None, "finish_reason": "length"}],
                "usage": self._usage(n)})
            out = self._plain[key] = _response("200 OK", "application/json", body)
        return out

    def stream_whole(self, model: str, n: int, usage: bool) -> bytes:
        """The head and every event of a stream as one bytes object (for one write)."""
        key = (model, n, usage)
        out = self._whole.get(key)
        if out is None:
            if len(self._whole) > 4096:
                self._whole.clear()
            out = self._whole[key] = STREAM_HEAD + b"".join(self.stream(model, n, usage))
        return out

    def stream(self, model: str, n: int, usage: bool) -> list[bytes]:
        """The framed events after the response head, the last one ending the body."""
        key = (model, n, usage)
        out = self._stream.get(key)
        if out is None:
            if len(self._stream) > 4096:
                self._stream.clear()
            base = {"id": "chatcmpl-null", "object": "chat.completion.chunk",
                    "created": CREATED, "model": model}

            def event(delta: dict[str, Any], finish: str | None) -> bytes:
                return _chunk(_dumps({**base, "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}))

            first = event({"role": "assistant", "content": TOKEN}, None)
            rest = event({"content": TOKEN}, None)
            out = [first] + [rest] * (n - 1) if n > 0 else []
            out.append(event({}, "length"))
            if usage:
                out.append(_chunk(_dumps({**base, "choices": [], "usage": self._usage(n)})))
            out[-1] += STREAM_END
            self._stream[key] = out
        return out


class NullProtocol(asyncio.Protocol):
    """One connection: parse requests one at a time, answer from prebuilt bytes."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a response is being sent; later requests wait in buf
        self.close_after = False
        self.paused = False
        self.events: list[bytes] = []
        self.pos = 0
        self.parsing = False  # inside _next: _finish must not re-enter it

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.events = []

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.events:
            self._step()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    # request handling
    def _next(self) -> None:
        self.parsing = True
        try:
            self._parse()
        finally:
            self.parsing = False

    def _parse(self) -> None:
        while not self.busy and self.transport is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._finish(_error(400, "header too large", close=True), close=True)
                return
            head = buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._finish(_error(400, "bad request line", close=True), close=True)
                return
            method, target, version = parts
            clen, close = 0, version == "HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    clen = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
                elif name == "transfer-encoding":
                    self._finish(_error(501, "chunked request bodies are not supported",
                                        close=True), close=True)
                    return
            if clen > MAX_BODY:
                self._finish(_error(413, "body too large", close=True), close=True)
                return
            start = end + 4
            if len(buf) < start + clen:
                return  # wait for the rest of the body
            body = bytes(buf[start:start + clen])
            del buf[:start + clen]
            self.busy, self.close_after = True, close
            self._dispatch(method, target.split("?", 1)[0], body)

    def _dispatch(self, method: str, path: str, body: bytes) -> None:
        if path == "/v1/chat/completions":
            if method != "POST":
                return self._later(_error(405, "use POST"))
            self.cfg.count += 1
            try:
                req = _loads(body)
                if not isinstance(req, dict):
                    raise ValueError("body is not an object")
                if self.cfg.arrivals is not None:
                    self.cfg.arrivals.append((time.monotonic(), req.get("user")))
                n = req.get("max_completion_tokens") or req.get("max_tokens") or self.cfg.tokens
                n = max(0, min(int(n), MAX_TOKENS))
                model = req.get("model")
                model = model[:200] if isinstance(model, str) else self.cfg.responses.model
            except (ValueError, TypeError) as exc:
                return self._later(_error(400, f"invalid request: {exc}"))
            if req.get("stream") is True:
                opts = req.get("stream_options")
                usage = isinstance(opts, dict) and opts.get("include_usage") is True
                events = self.cfg.responses.stream(model, n, usage)
                if self.cfg.chunks_per_write >= len(events):  # one write: prebuilt whole
                    return self._later(self.cfg.responses.stream_whole(model, n, usage))
                self.events, self.pos = events, 0
                return self._later(STREAM_HEAD, stream=True)
            return self._later(self.cfg.responses.plain(model, n))
        if path == "/health":
            return self._later(HEALTH)
        if path == "/v1/models":
            return self._later(self.cfg.responses.models)
        if path == "/bench/count":
            return self._send(_response("200 OK", "application/json",
                                        _dumps({"count": self.cfg.count})), False)
        if path == "/bench/arrivals" and self.cfg.arrivals is not None:
            arrivals, self.cfg.arrivals = self.cfg.arrivals, []
            return self._send(_response("200 OK", "application/json", _dumps(arrivals)), False)
        return self._later(_error(404, f"no route {path}"))

    def _later(self, data: bytes, stream: bool = False) -> None:
        """Send `data` (all of a response, or a stream's head) after --latency-ms."""
        if self.cfg.latency_s > 0:
            self.loop.call_later(self.cfg.latency_s, self._send, data, stream)
        else:
            self._send(data, stream)

    def _send(self, data: bytes, stream: bool) -> None:
        if self.transport is None:
            return
        if not stream:
            return self._finish(data, close=self.close_after)
        k = self.cfg.chunks_per_write
        self.pos = k
        self.transport.write(data + b"".join(self.events[:k]))
        self._schedule()

    def _step(self) -> None:
        if self.transport is None or not self.events or self.paused:
            return  # gone, done, or resume_writing will call again
        k, pos = self.cfg.chunks_per_write, self.pos
        self.pos = pos + k
        chunk = self.events[pos:pos + k]
        self.transport.write(chunk[0] if k == 1 else b"".join(chunk))
        self._schedule()

    def _schedule(self) -> None:
        if self.pos < len(self.events):
            if self.cfg.itl_s > 0:
                self.loop.call_later(self.cfg.itl_s, self._step)
            elif not self.paused:
                self.loop.call_soon(self._step)
            return
        self.events = []
        self._finish(b"", close=self.close_after)

    def _finish(self, data: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if data:
            transport.write(data)
        self.busy = False
        if close:
            transport.close()
            self.transport = None
        elif self.buf and not self.parsing:
            self._next()


class Config:
    def __init__(self, tokens: int = 16, latency_ms: float = 0.0, itl_ms: float = 0.0,
                 chunks_per_write: int = 1, model: str = "null-model",
                 record_arrivals: bool = False) -> None:
        if chunks_per_write < 1:
            raise ValueError("chunks_per_write must be >= 1")
        self.count = 0  # chat requests received (per worker process)
        self.arrivals: list[tuple[float, Any]] | None = [] if record_arrivals else None
        self.tokens = tokens
        self.latency_s = latency_ms / 1000.0
        self.itl_s = itl_ms / 1000.0
        self.chunks_per_write = chunks_per_write
        self.responses = Responses(model)


async def start_server(host: str = "127.0.0.1", port: int = 0, *,
                       sock: socket.socket | None = None, **config: Any) -> asyncio.Server:
    """Serve in the running loop; the bound port is `server.sockets[0].getsockname()[1]`."""
    cfg = Config(**config)
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(lambda: NullProtocol(cfg), sock=sock, backlog=4096)
    return await loop.create_server(lambda: NullProtocol(cfg), host, port, backlog=4096)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """`asyncio` or `uvloop`; `auto` is uvloop when it can be imported."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
            return uvloop.new_event_loop
        except ImportError:
            if name == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed")
    return asyncio.new_event_loop


def _serve_forever(sock: socket.socket, config: dict[str, Any], loop: str = "auto") -> None:
    async def run() -> None:
        server = await start_server(sock=sock, **config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

    ev = _loop_factory(loop)()
    asyncio.set_event_loop(ev)
    try:
        ev.run_until_complete(run())
    finally:
        ev.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0: any free port (see READY)")
    ap.add_argument("--tokens", type=int, default=16,
                    help="tokens per answer when the request names no max_tokens")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before the headers")
    ap.add_argument("--itl-ms", type=float, default=0.0, help="delay between stream writes")
    ap.add_argument("--chunks-per-write", type=int, default=1,
                    help="SSE events per write (a large K sends each stream in one write)")
    ap.add_argument("--workers", type=int, default=1, help="processes (SO_REUSEPORT)")
    ap.add_argument("--model", default="null-model", help="served model name")
    ap.add_argument("--record-arrivals", action="store_true",
                    help="keep each chat request's arrival time for GET /bench/arrivals")
    ap.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                    help="event loop (auto: uvloop when installed)")
    args = ap.parse_args(argv)
    config = {"tokens": args.tokens, "latency_ms": args.latency_ms, "itl_ms": args.itl_ms,
              "chunks_per_write": args.chunks_per_write, "model": args.model,
              "record_arrivals": args.record_arrivals}
    first = _listen(args.host, args.port)
    port = first.getsockname()[1]
    socks = [first] + [_listen(args.host, port) for _ in range(args.workers - 1)]
    children: list[int] = []
    for sock in socks[1:]:
        pid = os.fork()
        if pid == 0:  # child: serve its own socket only
            for other in socks:
                if other is not sock:
                    other.close()
            try:
                _serve_forever(sock, config, args.loop)
            finally:
                os._exit(0)
        children.append(pid)
        sock.close()
    pids = ",".join(str(p) for p in [os.getpid(), *children])
    print(f"READY http://{args.host}:{port} pids={pids}", flush=True)
    try:
        _serve_forever(first, config, args.loop)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
