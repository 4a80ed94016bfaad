"""An in-process fault-injecting stand-in for vLLM's OpenAI server, for runner tests.

Each chat request picks its behaviour from a fault spec, a JSON object such as
`{"fault": "stream", "chunks": 5}`, taken from the `X-Fault` header or else from the
text of the last user message (build one with `fault_body`). Requests without a spec
(the runner's canary among them) get `FaultServer.canary`; `/health` follows
`FaultServer.health`. Faults:

  ok            JSON completion, or an SSE stream when the request has stream=true
                (content, tool_calls=[[name, arguments]], finish_reason, chunks, delay_s)
  error         vLLM error JSON (status=500, message, type)
  reset         headers and part of the body, then a TCP reset
  reset_early   a TCP reset before any response byte
  hang          nothing at all until the server stops (first-byte deadline)
  stall         `after` stream events, then silence (stall deadline)
  slow          a stream of `chunks` events `delay_s` apart (total deadline, offsets)
  truncated     a chunked body that stops without its terminating chunk
  bad_chunked   a chunked body with an invalid chunk size
  garbage       200 with a non-JSON body claiming application/json
  no_done       a stream without the final [DONE]
  error_event   a 200 stream carrying an {"error": ...} event
  bad_event     a 200 stream with an event that is not JSON
  no_usage      a stream that ignores stream_options.include_usage

Answer-altering params, for `ok` and the stream faults: `choices` (this many choices
whatever `n` says, non-streaming), `usage` (replaces the usage object), `shape` (merged
into every completion / chunk object, e.g. {"created": "now"}), `leak` (this many
requests stay "running" in `/metrics` for ever).

`/metrics` exists only with `FaultServer(metrics=True)`: Prometheus text whose
`vllm:num_requests_running` counts the chat requests in flight plus the leaked ones, and
whose KV cache usage gauge grows by 0.1 per leaked request over `kv_idle`.

Runs either in the caller's loop (`async with FaultServer()`) or in its own thread
(`with FaultServer()`), the form the sync tests' fixtures use.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import threading
import time
from typing import Any

from aiohttp import web

ENGINE_DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause."


def fault_body(fault: str, *, stream: bool = False, **params: Any) -> dict[str, Any]:
    """A chat body whose user message selects `fault` with `params` on the fault server."""
    body: dict[str, Any] = {"messages": [{"role": "user",
                                          "content": json.dumps({"fault": fault, **params})}]}
    if stream:
        body["stream"] = True
    return body


def error_json(status: int, message: str, type_: str = "InternalServerError") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": status}}


def _spec(request_body: Any, header: str | None) -> dict[str, Any] | None:
    text = header
    if text is None and isinstance(request_body, dict):
        users = [m for m in request_body.get("messages") or []
                 if isinstance(m, dict) and m.get("role") == "user"]
        text = users[-1].get("content") if users else None
    try:
        spec = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return spec if isinstance(spec, dict) and "fault" in spec else None


def _sse(obj: Any) -> bytes:
    payload = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {payload}\n\n".encode()


class FaultServer:
    """The stand-in server. Per chat request, `arrivals` records (tag, time.monotonic())
    and `bodies` the parsed request body."""

    def __init__(self, *, health: str = "ok", canary: str = "ok", hang_s: float = 10.0,
                 model: str = "fault-model", metrics: bool = False,
                 kv_idle: float = 0.0, chars_per_token: float | None = None) -> None:
        self.health, self.canary, self.hang_s, self.model = health, canary, hang_s, model
        # with chars_per_token: a vLLM-like /tokenize counting that many characters a token
        self.chars_per_token, self.tokenize_calls = chars_per_token, 0
        self.metrics, self.kv_idle = metrics, kv_idle
        self.in_flight, self.leaked, self.metrics_reads = 0, 0, 0
        self.arrivals: list[tuple[str, float]] = []
        self.bodies: list[Any] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> FaultServer:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._counted_chat)
        if self.metrics:
            app.router.add_get("/metrics", self._metrics)
        if self.chars_per_token is not None:
            app.router.add_post("/tokenize", self._tokenize)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> FaultServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- helpers ---------------------------------------------------------------------------
    async def _hang(self) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), self.hang_s)
        except asyncio.TimeoutError:
            pass

    @staticmethod
    def _kill(request: web.Request, rst: bool) -> None:
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if rst and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort() if rst else transport.close()

    async def _raw(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """Write bytes straight to the socket and close it: for framing aiohttp won't do."""
        assert request.transport is not None
        request.transport.write(raw)
        await asyncio.sleep(0.01)
        self._kill(request, rst=False)
        raise asyncio.CancelledError  # the connection is gone; aiohttp must not answer

    def _completion(self, spec: dict[str, Any], n: int = 1) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": spec.get("content", "Hello")}
        calls = spec.get("tool_calls")
        if calls is not None:
            message["content"] = None
            message["tool_calls"] = [{"id": f"chatcmpl-tool-{i}", "type": "function",
                                      "function": {"name": name, "arguments": args}}
                                     for i, (name, args) in enumerate(calls)]
        finish = spec.get("finish_reason", "tool_calls" if calls else "stop")
        return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0,
                "model": self.model,
                "choices": [{"index": i, "message": message, "finish_reason": finish}
                            for i in range(int(spec.get("choices", n)))],
                "usage": spec.get("usage", {"prompt_tokens": 5, "completion_tokens": 3,
                                            "total_tokens": 8}),
                **spec.get("shape", {})}

    def _chunks(self, spec: dict[str, Any], usage: bool) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **spec.get("shape", {})}
        n = max(1, int(spec.get("chunks", 3)))
        out = [chunk({"role": "assistant", "content": ""})]
        calls = spec.get("tool_calls")
        if calls is not None:
            for i, (name, args) in enumerate(calls):
                out.append(chunk({"tool_calls": [{"index": i, "id": f"chatcmpl-tool-{i}",
                                                  "type": "function",
                                                  "function": {"name": name, "arguments": ""}}]}))
                step = max(1, -(-len(args) // n))
                out += [chunk({"tool_calls": [{"index": i,
                                               "function": {"arguments": args[j:j + step]}}]})
                        for j in range(0, len(args), step)]
        else:
            text = spec.get("content", "Hello world, streaming")
            step = max(1, -(-len(text) // n))
            out += [chunk({"content": text[j:j + step]}) for j in range(0, len(text), step)]
        out.append(chunk({}, spec.get("finish_reason", "tool_calls" if calls else "stop")))
        if usage:
            out.append({"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0,
                        "model": self.model, "choices": [],
                        "usage": spec.get("usage", {"prompt_tokens": 5, "completion_tokens": n,
                                                    "total_tokens": 5 + n})})
        return out

    # -- handlers --------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.StreamResponse:
        if self.health == "hang":
            await self._hang()
        if self.health == "ok":
            return web.Response(status=200)
        return web.json_response(error_json(500, ENGINE_DEAD), status=500)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"version": "0.0-fault"})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "max_model_len": 8192}]})

    async def _tokenize(self, request: web.Request) -> web.StreamResponse:
        assert self.chars_per_token is not None
        self.tokenize_calls += 1
        prompt = str((await request.json()).get("prompt", ""))
        count = max(1, math.ceil(len(prompt) / self.chars_per_token))
        return web.json_response({"count": count, "max_model_len": 4096})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        self.metrics_reads += 1
        running = self.in_flight + self.leaked
        text = ("# HELP vllm:num_requests_running Number of requests in model execution.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{engine="0",model_name="{self.model}"}} {running}\n'
                f'vllm:num_requests_waiting{{engine="0",model_name="{self.model}"}} 0.0\n'
                f'vllm:kv_cache_usage_perc{{engine="0",model_name="{self.model}"}} '
                f"{self.kv_idle + 0.1 * self.leaked}\n")
        return web.Response(text=text, content_type="text/plain")

    async def _counted_chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response(error_json(400, "body is not JSON", "BadRequestError"),
                                     status=400)
        self.bodies.append(body)
        spec = _spec(body, request.headers.get("X-Fault")) or {"fault": self.canary}
        self.arrivals.append((str(spec.get("tag", spec["fault"])), time.monotonic()))
        fault = spec["fault"]
        self.leaked += int(spec.get("leak", 0))
        stream = isinstance(body, dict) and body.get("stream") is True
        if fault == "hang":
            await self._hang()
            return web.Response(status=204)
        if fault == "reset_early":
            self._kill(request, rst=True)
            raise asyncio.CancelledError
        if fault == "error":
            status = int(spec.get("status", 500))
            return web.json_response(
                error_json(status, spec.get("message", ENGINE_DEAD),
                           spec.get("type", "InternalServerError")), status=status)
        if fault == "garbage":
            return web.Response(status=200, text="<html>upstream oops",
                                content_type="application/json")
        if fault == "truncated":
            return await self._raw(request, b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                                   b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n")
        if fault == "bad_chunked":
            return await self._raw(request, b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                                   b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n")
        if fault == "reset":
            data = json.dumps(self._completion(spec)).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[:len(data) // 2])
            await asyncio.sleep(0.05)
            self._kill(request, rst=True)
            raise asyncio.CancelledError
        if not stream and fault in ("ok",):
            return web.json_response(self._completion(spec, int(body.get("n", 1) or 1)))
        return await self._stream(request, body, spec)

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      spec: dict[str, Any]) -> web.StreamResponse:
        fault = spec["fault"]
        opts = body.get("stream_options") or {}
        usage = bool(opts.get("include_usage")) and fault != "no_usage"
        events: list[Any] = list(self._chunks(spec, usage))
        if fault == "error_event":
            events.insert(2, error_json(500, spec.get("message", ENGINE_DEAD)))
        if fault == "bad_event":
            events.insert(2, "{not json")
        if fault != "no_done":
            events.append("[DONE]")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        delay = float(spec.get("delay_s", 0.0))
        for i, event in enumerate(events):
            if fault == "stall" and i == int(spec.get("after", 2)):
                await self._hang()
                return resp
            await resp.write(_sse(event))
            if delay:
                await asyncio.sleep(delay)
        await resp.write_eof()
        return resp
