"""An in-process stand-in for vLLM's chat endpoint with a deterministic "model" and
injectable cross-request faults, for the isolation and interference oracle tests.

The model: the greedy answer is a chain of words drawn from a hash of the prompt (the
messages, image URLs included) and the tokens so far; each position has top-5
logprobs, with a wide top-1/top-2 lead (1.5-3 nats) at most positions and a narrow
one (0.01-0.03) at about a quarter of them. A canary (`vlfuzz-canary-...`) in the
prompt is echoed as the first token. Answers never stop early (finish "length").
Logprobs follow `logprobs` / `top_logprobs`; `stream: true` gives one SSE chunk per
token, as vLLM does.

Every request sleeps `ttft_s`, then `tpot_s` per token. Requests whose lifetimes
overlap "see" each other; the faults act on what a request has seen:

  healthy      nothing beyond the configured noise
  noisy        logprob jitter (`jitter_alone`, `jitter_batched`), narrow-lead flips
               with probability `flip_p` under concurrency, and a mild slowdown with
               the number of requests in flight: natural variance, nothing else
  swap         two requests with images that overlap answer each other's prompt
  image_mixup  overlapping requests with images all use the first one's images
  perturb      a text-only request that overlapped a request with an image takes
               the runner-up at its first wide-lead position from 2 on
  stall        a request that is not heavy (`max_tokens` < 200) stalls `stall_s`
               once when a heavy request is in flight; heavy requests hold
               `heavy_s` and answer

Runs in the caller's loop (`async with`) or in its own thread (`with`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WORDS = tuple(f" {w}" for w in (
    "amber", "birch", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "jasper",
    "kelp", "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "sable", "tundra",
    "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "acorn", "basalt", "cobalt",
    "dune", "elm", "flint", "glade", "heath", "inlet", "juniper", "knoll", "lagoon", "moss",
    "nimbus", "orchid", "prairie", "quill", "reef", "spruce", "thistle", "upland", "vale"))
CANARY_RE = re.compile(r"vlfuzz-canary-[0-9a-f]{12}")
MODES = ("healthy", "noisy", "swap", "image_mixup", "perturb", "stall")
HEAVY_MAX_TOKENS = 200
NARROW = (0.01, 0.03)
WIDE = (1.5, 3.0)


def _images(body: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                out.append(str((part.get("image_url") or {}).get("url")))
    return tuple(out)


def _texts(body: dict[str, Any]) -> str:
    out = []
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            out.append(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return "\n".join(out)


def prompt_key(body: dict[str, Any], images: tuple[str, ...] | None = None) -> str:
    """What the fake model conditions on: the texts and the images."""
    imgs = _images(body) if images is None else images
    return hashlib.sha256(json.dumps([_texts(body), imgs]).encode()).hexdigest()


def distribution(key: str, prefix: tuple[str, ...]) -> list[tuple[str, float]]:
    """The top-5 (token, logprob) at the position after `prefix`, best first."""
    seed = hashlib.sha256((key + "|" + "".join(prefix)).encode()).digest()
    rng = random.Random(seed)
    words = rng.sample(WORDS, 5)
    lp = -rng.uniform(0.05, 0.5)
    lead = rng.uniform(*NARROW) if rng.random() < 0.25 else rng.uniform(*WIDE)
    out = [(words[0], lp), (words[1], lp - lead)]
    for w in words[2:]:
        out.append((w, out[-1][1] - rng.uniform(0.3, 1.0)))
    return out


@dataclass
class _Req:
    n: int
    body: dict[str, Any]
    images: tuple[str, ...]
    heavy: bool
    seen: set[int] = field(default_factory=set)


class IsolationServer:
    """The stand-in server (see the module docstring). `answers` counts chat answers."""

    def __init__(self, mode: str = "healthy", *, ttft_s: float = 0.03, tpot_s: float = 0.003,
                 jitter_alone: float = 0.0, jitter_batched: float = 0.0, flip_p: float = 0.0,
                 load_slowdown: float = 0.0, stall_s: float = 1.0, heavy_s: float = 0.2,
                 seed: int = 0, model: str = "iso-model") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        if mode == "noisy":
            jitter_alone = jitter_alone or 0.002
            jitter_batched = jitter_batched or 0.02
            flip_p = flip_p or 0.5
            load_slowdown = load_slowdown or 0.1
        self.mode, self.ttft_s, self.tpot_s = mode, ttft_s, tpot_s
        self.jitter_alone, self.jitter_batched, self.flip_p = jitter_alone, jitter_batched, flip_p
        self.load_slowdown, self.stall_s, self.heavy_s = load_slowdown, stall_s, heavy_s
        self.model = model
        self.rng = random.Random(seed)
        self.in_flight: dict[int, _Req] = {}
        self._all: dict[int, _Req] = {}  # every request so far, for what others saw
        self.answers = 0
        self.flips = 0
        self._count = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> IsolationServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> IsolationServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> IsolationServer:
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

    # -- the model and its faults ------------------------------------------------------
    def _seen(self, req: _Req) -> list[_Req]:
        """Requests this one overlapped, earliest first (finished ones kept by value)."""
        return sorted((self._all[n] for n in req.seen), key=lambda r: r.n)

    def _key(self, req: _Req) -> str:
        others = [r for r in self._seen(req) if r.images]
        if self.mode == "swap" and req.images and others:
            return prompt_key(others[0].body)
        if self.mode == "image_mixup" and req.images and others:
            first = min([req] + others, key=lambda r: r.n)
            return prompt_key(req.body, first.images)
        return prompt_key(req.body)

    def _step(self, req: _Req, key: str, prefix: tuple[str, ...], canary: str | None,
              state: dict[str, Any]) -> tuple[str, float, list[tuple[str, float]]]:
        """The token at this position with its logprob and the top list."""
        if canary is not None and not prefix:
            top = [(canary, -0.01)] + [(w, -5.0 - i) for i, w in enumerate(WORDS[:4])]
            return canary, -0.01, top
        top = distribution(key, prefix)
        lead = top[0][1] - top[1][1]
        concurrent = len(self.in_flight) > 1 or bool(req.seen)
        chosen = 0
        if self.mode == "perturb" and not req.images and not state.get("perturbed") \
                and len(prefix) >= 2 and lead >= WIDE[0] and any(r.images for r in self._seen(req)):
            chosen, state["perturbed"] = 1, True
        elif concurrent and lead <= NARROW[1] and self.rng.random() < self.flip_p:
            chosen = 1
            self.flips += 1
        jitter = self.jitter_batched if concurrent else self.jitter_alone
        top = [(t, lp + self.rng.uniform(-jitter, jitter)) for t, lp in top]
        if chosen == 1:  # a flip: the runner-up came out on top in this run
            top[0], top[1] = (top[0][0], top[1][1]), (top[1][0], top[0][1])
            top[0], top[1] = top[1], top[0]
        return top[0][0], top[0][1], top

    async def _pause(self, req: _Req, seconds: float, state: dict[str, Any]) -> None:
        if self.mode == "stall" and not req.heavy and not state.get("stalled") \
                and any(r.heavy for r in self.in_flight.values()):
            state["stalled"] = True
            seconds += self.stall_s
        await asyncio.sleep(seconds * (1 + self.load_slowdown * (len(self.in_flight) - 1)))

    # -- handlers ----------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "max_model_len": 8192}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self._count += 1
        max_tokens = int(body.get("max_tokens") or 16)
        req = _Req(self._count, body, _images(body), max_tokens >= HEAVY_MAX_TOKENS)
        self._all[req.n] = req
        for other in self.in_flight.values():
            other.seen.add(req.n)
            req.seen.add(other.n)
        self.in_flight[req.n] = req
        try:
            if req.heavy:
                await asyncio.sleep(self.heavy_s)
                return web.json_response(self._completion(body, [WORDS[0]] * 4, None))
            return await self._answer(request, req, max_tokens)
        finally:
            del self.in_flight[req.n]
            self.answers += 1

    async def _answer(self, request: web.Request, req: _Req,
                      max_tokens: int) -> web.StreamResponse:
        body = req.body
        stream = body.get("stream") is True
        state: dict[str, Any] = {}
        resp: web.StreamResponse | None = None
        if stream:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(self._sse({"role": "assistant", "content": ""}, None, None))
        await self._pause(req, self.ttft_s, state)
        key = self._key(req)
        canaries = CANARY_RE.findall(_texts(req.body) if self.mode != "swap" or not req.images
                                     else _texts(self._source(req)))
        tokens: list[str] = []
        steps: list[dict[str, Any]] = []
        for i in range(max_tokens):
            if i:
                await self._pause(req, self.tpot_s, state)
            token, lp, top = self._step(req, key, tuple(tokens), canaries[0] if canaries else None,
                                        state)
            tokens.append(token)
            step = self._logprob_entry(body, token, lp, top)
            steps.append(step)
            if resp is not None:
                await resp.write(self._sse({"content": token}, None, step))
        if resp is None:
            return web.json_response(self._completion(body, tokens, steps))
        await resp.write(self._sse({}, "length", None))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _source(self, req: _Req) -> dict[str, Any]:
        others = [r for r in self._seen(req) if r.images]
        return others[0].body if others else req.body

    @staticmethod
    def _logprob_entry(body: dict[str, Any], token: str, lp: float,
                       top: list[tuple[str, float]]) -> dict[str, Any] | None:
        if body.get("logprobs") is not True:
            return None
        k = int(body.get("top_logprobs") or 0)
        return {"token": token, "logprob": lp, "bytes": list(token.encode()),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                 for t, v in top[:k]]}

    def _sse(self, delta: dict[str, Any], finish: str | None,
             step: dict[str, Any] | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if step is not None:
            choice["logprobs"] = {"content": [step]}
        doc = {"id": "chatcmpl-iso", "object": "chat.completion.chunk", "created": 0,
               "model": self.model, "choices": [choice]}
        return f"data: {json.dumps(doc)}\n\n".encode()

    def _completion(self, body: dict[str, Any], tokens: list[str],
                    steps: list[dict[str, Any] | None] | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length",
                                  "message": {"role": "assistant", "content": "".join(tokens)}}
        if steps is not None and body.get("logprobs") is True:
            choice["logprobs"] = {"content": steps}
        return {"id": "chatcmpl-iso", "object": "chat.completion", "created": 0,
                "model": self.model, "choices": [choice],
                "usage": {"prompt_tokens": 8, "completion_tokens": len(tokens),
                          "total_tokens": 8 + len(tokens)}}
