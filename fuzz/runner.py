"""The runner: plays a Scenario against an OpenAI-compatible server and records a Trace.

A fuzzer's client must outlive everything the server does wrong, so nothing the server
does (refusal, reset, garbage, hang, broken chunked encoding) raises here: it becomes
trace data for the oracles. Deadlines are enforced per phase by the runner itself, so a
hang is reported with the deadline that fired:

- `first_byte`: no response headers within `first_byte_s` of sending;
- `stall`: no body bytes for `stall_s` after the headers or the previous read;
- `total`: the request is still running `total_s` after it was sent.

A "chunk" is an SSE event for `text/event-stream` responses (what OpenAI clients call a
chunk, and what `disconnect_after_chunks` counts) and one network read otherwise.

Around the scenario the runner reads the target's `/metrics` (Prometheus text): an idle
baseline before, and after it a reading polled until the target is idle again or a cap
runs out, so that a leak is what is still there once the target had time to settle.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from fuzz.metrics import KV_TOLERANCE, metrics_idle, parse_metrics
from fuzz.model import (CHAT_PATH, Deadlines, Probe, RequestSpec, RequestTrace, Scenario, Trace,
                        resolve_media)

CANARY_PROMPT = "Reply with one word."
_TAIL_EVENTS = 2  # kept past the cap, so [DONE] and the usage chunk stay checkable
_T = TypeVar("_T")

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


class _Cut(Exception):
    """A deadline fired (internal: becomes `RequestTrace.deadline`)."""

    def __init__(self, name: str, limit_s: float) -> None:
        super().__init__(name)
        self.name, self.limit_s = name, limit_s


def describe_error(exc: BaseException) -> str:
    """`ClassName: message`, the form traces and signatures use for transport errors."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


async def _within(make: Callable[[], Awaitable[_T]], left_s: float, name: str,
                  limit_s: float) -> _T:
    try:
        return await asyncio.wait_for(make(), max(left_s, 0.0))
    except asyncio.TimeoutError as exc:
        if isinstance(exc, aiohttp.ClientError):  # aiohttp's own timeout, not ours
            raise
        raise _Cut(name, limit_s) from None


class _SseParser:
    """Incremental `text/event-stream` parser yielding each event's joined `data:` lines."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += self._decoder.decode(chunk)
        *lines, self._buf = self._buf.split("\n")
        return [ev for line in lines for ev in self._line(line.rstrip("\r"))]

    def close(self) -> list[str]:
        rest = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        out = self._line(rest.rstrip("\r")) if rest else []
        return out + self._line("")

    def _line(self, line: str) -> list[str]:
        if line == "":
            data, self._data = self._data, []
            return ["\n".join(data)] if data else []
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return []


class _Recorder:
    """Mutable scratch for one request; frozen into a RequestTrace at the end."""

    def __init__(self, request_id: str, sent_s: float, cap: int) -> None:
        self.f: dict[str, Any] = {"id": request_id, "sent_s": sent_s}
        self.cap = cap
        self.chunk_times: list[float] = []
        self.body = bytearray()
        self.events: list[str] = []
        self.tail: deque[str] = deque(maxlen=_TAIL_EVENTS)
        self.event_chars = 0
        self.truncated = False

    def add_bytes(self, data: bytes, t: float) -> None:
        self.chunk_times.append(t)
        room = self.cap - len(self.body)
        if len(data) > room:
            self.truncated = True
        self.body += data[:max(room, 0)]

    def add_event(self, event: str, t: float) -> None:
        self.chunk_times.append(t)
        if self.event_chars + len(event) <= self.cap and not self.tail:
            self.events.append(event)
            self.event_chars += len(event)
        else:
            self.truncated = True
            self.tail.append(event)

    def freeze(self, sse: bool) -> RequestTrace:
        f = dict(self.f)
        if sse:
            f["events"] = tuple(self.events) + tuple(self.tail)
        elif "status" in f:
            f["body"] = self.body.decode("utf-8", errors="replace")
        return RequestTrace(chunk_times_s=tuple(self.chunk_times), body_truncated=self.truncated,
                            **f)


def _prepare(endpoint: Endpoint, scenario: Scenario, spec: RequestSpec) -> bytes | None:
    """The wire body: media resolved, `model` filled in when absent."""
    body: Any = resolve_media(spec.body, scenario.media)
    if isinstance(body, str):
        return body.encode("utf-8")  # deliberately raw, e.g. a body that is not JSON
    if isinstance(body, dict):
        if spec.method.upper() in ("GET", "HEAD") and not body:
            return None
        if spec.method.upper() == "POST" and "model" not in body:
            body = {"model": endpoint.model, **body}
    return json.dumps(body).encode("utf-8")


async def _read_body(resp: aiohttp.ClientResponse, rec: _Recorder, sse: bool,
                     want: int | None, limit: Callable[[float], tuple[float, str, float]],
                     now: Callable[[], float]) -> bool:
    """Read to the end (True) or until `want` chunks arrived (False: hang up)."""
    parser = _SseParser() if sse else None
    last = now()
    while want is None or len(rec.chunk_times) < want:
        chunk = await _within(resp.content.readany, *limit(last))
        last = now()
        if parser is not None:
            events = parser.feed(chunk) + (parser.close() if not chunk else [])
        else:
            events = [chunk] if chunk else []
        for ev in events[:None if want is None else want - len(rec.chunk_times)]:
            if isinstance(ev, str):
                rec.add_event(ev, last)
            else:
                rec.add_bytes(ev, last)
        if not chunk:
            return True
    return False


async def _run_one(session: aiohttp.ClientSession, endpoint: Endpoint, spec: RequestSpec,
                   data: bytes | None, prep_error: str | None, t0: float,
                   deadlines: Deadlines, cap: int) -> RequestTrace:
    loop = asyncio.get_running_loop()

    def now() -> float:
        return loop.time() - t0

    await asyncio.sleep(max(0.0, spec.offset_ms / 1000.0 - now()))
    sent = now()
    rec = _Recorder(spec.id, sent, cap)
    if prep_error is not None:
        rec.f.update(error=prep_error, end_s=now())
        return rec.freeze(sse=False)

    def limit(name: str, limit_s: float, since: float) -> tuple[float, str, float]:
        phase_left, total_left = since + limit_s - now(), sent + deadlines.total_s - now()
        if phase_left <= total_left:
            return phase_left, name, limit_s
        return total_left, "total", deadlines.total_s

    headers = {**endpoint.headers(), "Content-Type": "application/json"}
    resp: aiohttp.ClientResponse | None = None
    sse, clean = False, False
    try:
        resp = await _within(lambda: session.request(spec.method, endpoint.url(spec.path),
                                                     data=data, headers=headers),
                             *limit("first_byte", deadlines.first_byte_s, sent))
        sse = resp.content_type == "text/event-stream"
        rec.f.update(status=resp.status, headers=dict(resp.headers), first_byte_s=now())
        clean = await _read_body(resp, rec, sse, spec.disconnect_after_chunks,
                                 lambda last: limit("stall", deadlines.stall_s, last), now)
        rec.f["disconnected"] = not clean
    except _Cut as cut:
        rec.f.update(deadline=cut.name, deadline_s=cut.limit_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # everything the server does wrong is data, never a crash
        rec.f["error"] = describe_error(exc)
    finally:
        if resp is not None and clean:
            resp.release()
        elif resp is not None:
            resp.close()  # drop the connection: it may be mid-body or poisoned
        rec.f["end_s"] = now()
    return rec.freeze(sse=sse)


async def run_scenario(endpoint: Endpoint, scenario: Scenario, deadlines: Deadlines, *,
                       body_cap_bytes: int = 1_000_000, probe: bool = True,
                       canary_deadline_s: float = 30.0, metrics: bool = True,
                       settle_cap_s: float = 5.0, kv_tolerance: float = KV_TOLERANCE,
                       request_deadlines: Mapping[str, Deadlines] | None = None) -> Trace:
    """Send every request at its offset, all concurrently; never raises for server faults.

    Bodies are built before the clock starts so media encoding does not skew offsets.
    `wall_s` covers the requests only; the probe, if any, runs afterwards.
    `request_deadlines` overrides `deadlines` for the request ids it names. With
    `metrics`, `/metrics` is read before and, polled for up to `settle_cap_s` until idle
    (nothing running or waiting, KV use within `kv_tolerance` of the baseline), after."""
    deadlines_of = dict(request_deadlines or {})
    before = await read_metrics(endpoint) if metrics else None
    prepared: list[tuple[bytes | None, str | None]] = []
    for spec in scenario.requests:
        try:
            prepared.append((_prepare(endpoint, scenario, spec), None))
        except Exception as exc:  # e.g. a body json cannot encode: record, don't raise
            prepared.append((None, describe_error(exc)))
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(
            *(_run_one(session, endpoint, spec, data, err, t0,
                       deadlines_of.get(spec.id, deadlines), body_cap_bytes)
              for spec, (data, err) in zip(scenario.requests, prepared)),
            return_exceptions=True)
        wall_s = loop.time() - t0
    traces = tuple(
        r if isinstance(r, RequestTrace)
        else RequestTrace(id=spec.id, sent_s=0.0, error=describe_error(r))  # runner bug
        for spec, r in zip(scenario.requests, results))
    settled, waited = (await settle_metrics(endpoint, before, settle_cap_s, kv_tolerance)
                       if before is not None else (None, None))
    after = await probe_target(endpoint, deadline_s=canary_deadline_s) if probe else None
    return Trace(requests=traces, deadlines=deadlines, probe_after=after, wall_s=wall_s,
                 metrics_before=before, metrics_after=settled, metrics_wait_s=waited)


async def read_metrics(endpoint: Endpoint, *, deadline_s: float = 2.0) -> dict[str, float] | None:
    """The gauges of `/metrics`, or None when it cannot be read or exports none of them."""
    try:
        async with _session(deadline_s) as session:
            status, text = await _get(session, endpoint, "/metrics")
    except asyncio.CancelledError:
        raise
    except Exception:
        return None
    found = parse_metrics(text) if status == 200 else {}
    return found or None


async def settle_metrics(endpoint: Endpoint, before: Mapping[str, float], cap_s: float,
                         kv_tolerance: float = KV_TOLERANCE,
                         every_s: float = 0.1) -> tuple[dict[str, float] | None, float]:
    """Poll `/metrics` until idle or `cap_s`; the last reading and the seconds waited."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        reading = await read_metrics(endpoint, deadline_s=max(0.5, min(2.0, cap_s)))
        waited = loop.time() - start
        if reading is None:  # gone (a dead target is target_alive's business)
            return None, waited
        if metrics_idle(reading, before, kv_tolerance) or waited >= cap_s:
            return reading, waited
        await asyncio.sleep(min(every_s, max(0.0, cap_s - waited)))


def _session(deadline_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=deadline_s))


async def _get(session: aiohttp.ClientSession, endpoint: Endpoint,
               path: str) -> tuple[int, str]:
    async with session.get(endpoint.url(path), headers=endpoint.headers()) as resp:
        return resp.status, await resp.text(errors="replace")


async def probe_target(endpoint: Endpoint, *, deadline_s: float = 30.0) -> Probe:
    """`/health`, then a tiny canary generation: tells a dead target from a wedged one.

    The canary is skipped when `/health` does not answer at all (nothing to wedge)."""
    try:
        async with _session(deadline_s) as session:
            status, _ = await _get(session, endpoint, "/health")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        name = "TimeoutError" if isinstance(exc, asyncio.TimeoutError) else None
        err = f"{name}: /health gave no answer within {deadline_s:g}s" if name else None
        return Probe(health_status=None, health_error=err or describe_error(exc))
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": CANARY_PROMPT}],
            "max_tokens": 4, "temperature": 0}
    health_error = None if status == 200 else f"HTTP {status}"
    loop = asyncio.get_running_loop()
    start = loop.time()
    ok, error = False, None
    try:
        async with _session(deadline_s) as session:
            async with session.post(endpoint.url(CHAT_PATH), json=body,
                                    headers=endpoint.headers()) as resp:
                text = await resp.text(errors="replace")
        if resp.status != 200:
            error = f"HTTP {resp.status}: {text[:500]}"
        else:
            choices = json.loads(text).get("choices")
            ok = isinstance(choices, list) and len(choices) > 0
            error = None if ok else f"no choices: {text[:500]}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, asyncio.TimeoutError) and not str(exc):
            error = f"TimeoutError: canary gave no answer within {deadline_s:g}s"
        else:
            error = describe_error(exc)
    return Probe(health_status=status, health_error=health_error, canary_ok=ok, canary_error=error,
                 canary_latency_s=loop.time() - start)


async def fetch_target_info(endpoint: Endpoint, *, deadline_s: float = 10.0) -> dict[str, Any]:
    """The server's identity for bundles: `/version` and `/v1/models`. Best effort:
    whatever cannot be fetched is None, with the reason under `errors`."""
    info: dict[str, Any] = {"base_url": endpoint.base_url, "version": None, "models": None,
                            "model_id": None, "max_model_len": None, "errors": {}}
    async with _session(deadline_s) as session:
        for path in ("/version", "/v1/models"):
            try:
                status, text = await _get(session, endpoint, path)
                if status != 200:
                    raise ValueError(f"HTTP {status}: {text[:200]}")
                doc = json.loads(text)
                if path == "/version":
                    info["version"] = doc.get("version") if isinstance(doc, dict) else None
                    continue
                models = [m for m in doc.get("data", []) if isinstance(m, dict)]
                info["models"] = models
                chosen = next((m for m in models if m.get("id") == endpoint.model),
                              models[0] if models else None)
                if chosen is not None:
                    info["model_id"] = chosen.get("id")
                    info["max_model_len"] = chosen.get("max_model_len")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                info["errors"][path] = describe_error(exc)
    return info
