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

The runner must not be what limits the load it drives, so the per-request path is
lean: bodies are encoded before the clock starts, each image once per scenario
(`fuzz.wire`), requests go out over kept-alive
connections (`fuzz.client`), one dispatcher starts each request's task at its offset,
each request has one lazily re-armed deadline timer rather than a timer per read, and
streams are cut into events on bytes (`fuzz.sse`). Health, canary and `/metrics`
probes live in `fuzz.probe` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import aiohttp

from fuzz.client import Endpoint, HttpClient, describe_error
from fuzz.metrics import KV_TOLERANCE
from fuzz.model import Deadlines, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.probe import (CANARY_PROMPT, fetch_target_info, probe_target, read_metrics,
                        settle_metrics)
from fuzz.sse import SseParser
from fuzz.wire import BodyEncoder

__all__ = ["CANARY_PROMPT", "Endpoint", "HttpClient", "describe_error", "fetch_target_info",
           "prepare_body", "probe_target", "read_metrics", "run_scenario", "settle_metrics"]

_TAIL_EVENTS = 2  # kept past the cap, so [DONE] and the usage chunk stay checkable
# Every time a trace records, and every deadline, is on this clock, not the loop's:
# asyncio's loop.time() is this clock, but uvloop's (fuzz.client.new_event_loop) is
# cached per loop iteration and counts whole milliseconds, too coarse for chunk times.
_clock = time.monotonic


class _Watchdog:
    """The deadline of one request: a single timer that cancels the request's task.

    Every read moves the stall deadline later; that is an assignment here, and the timer
    re-arms itself when it finds the deadline moved, because a timer per read costs more
    than a token stream's reads themselves. Times are `_clock`'s; the timer is set with
    a delay (call_later), so it does not matter what clock the loop keeps."""

    __slots__ = ("_loop", "_task", "_handle", "_armed_at", "_total_at", "_total_s",
                 "when", "name", "limit_s", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, sent_at: float, total_s: float) -> None:
        self._loop, self._task = loop, asyncio.current_task()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._total_at, self._total_s = sent_at + total_s, total_s
        self.when, self.name, self.limit_s = self._total_at, "total", total_s
        self.fired = False

    def phase(self, name: str, limit_s: float, since: float) -> None:
        """From now on, `name` fires `limit_s` after `since` (unless `total` comes first)."""
        at = since + limit_s
        if at <= self._total_at:
            self.when, self.name, self.limit_s = at, name, limit_s
        else:
            self.when, self.name, self.limit_s = self._total_at, "total", self._total_s
        if self._handle is None or self.when < self._armed_at:
            self._arm()

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = self.when
        self._handle = self._loop.call_later(self.when - _clock(), self._check)

    def _check(self) -> None:
        self._handle = None
        if _clock() < self.when:
            self._arm()
        elif self._task is not None:
            self.fired = True
            self._task.cancel()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def owns_cancel(self) -> bool:
        """After a CancelledError: True if it was this deadline's alone (then absorbed)."""
        if not self.fired:
            return False
        uncancel = getattr(self._task, "uncancel", None)  # 3.11+: tells ours from others'
        return uncancel is None or uncancel() == 0


class _Recorder:
    """Mutable scratch for one request; frozen into a RequestTrace at the end."""

    __slots__ = ("f", "cap", "chunk_times", "body", "events", "tail", "event_chars",
                 "truncated")

    def __init__(self, request_id: str, sent_s: float, cap: int) -> None:
        self.f: dict[str, Any] = {"id": request_id, "sent_s": sent_s}
        self.cap = cap
        self.chunk_times: list[float] = []
        self.body = bytearray()
        self.events: list[str] = []
        self.tail: deque[str] | None = None  # made at the cap (a deque is 600 bytes)
        self.event_chars = 0
        self.truncated = False

    def add_bytes(self, data: bytes, t: float) -> None:
        self.chunk_times.append(t)
        room = self.cap - len(self.body)
        if len(data) > room:
            self.truncated = True
        self.body += data[:max(room, 0)]

    def add_events(self, events: list[str], t: float) -> None:
        """Events that arrived in one read (they share its time)."""
        self.chunk_times.extend([t] * len(events))
        if self.tail is None:
            chars = self.event_chars + sum(map(len, events))
            if chars <= self.cap:  # the common case: all of them fit
                self.events += events
                self.event_chars = chars
                return
        for event in events:
            if self.tail is None and self.event_chars + len(event) <= self.cap:
                self.events.append(event)
                self.event_chars += len(event)
            else:
                self.truncated = True
                if self.tail is None:
                    self.tail = deque(maxlen=_TAIL_EVENTS)
                self.tail.append(event)

    def freeze(self, sse: bool) -> RequestTrace:
        f = self.f
        if sse:
            f["events"] = tuple(self.events) + tuple(self.tail or ())
        elif "status" in f:
            f["body"] = self.body.decode("utf-8", errors="replace")
        return RequestTrace(chunk_times_s=tuple(self.chunk_times), body_truncated=self.truncated,
                            **f)


def prepare_body(endpoint: Endpoint, scenario: Scenario, spec: RequestSpec, *,
                 fixture_base_url: str | None = None) -> bytes | None:
    """The wire body of one request: media placeholders resolved (data URLs, and
    fixture-server URLs under `fixture_base_url`), `model` filled in when absent. Raises
    what cannot be encoded, e.g. a fixture URL without a base or a value json refuses.
    (`run_scenario` encodes a whole scenario with one `fuzz.wire.BodyEncoder`.)"""
    return BodyEncoder(scenario, endpoint.model, fixture_base_url=fixture_base_url).encode(spec)


async def _read_body(content: aiohttp.StreamReader, rec: _Recorder, sse: bool,
                     want: int | None, dog: _Watchdog, stall_s: float,
                     t0: float, last: float) -> bool:
    """Read to the end (True) or until `want` chunks arrived (False: hang up)."""
    parser = SseParser() if sse else None
    readany = content.readany
    times = rec.chunk_times
    while want is None or len(times) < want:
        dog.phase("stall", stall_s, last)
        chunk = await readany()
        last = _clock()
        if parser is None:
            if not chunk:
                return True
            rec.add_bytes(chunk, last - t0)
            continue
        events = parser.feed(chunk) if chunk else parser.close()
        if events:
            rec.add_events(events if want is None else events[:want - len(times)], last - t0)
        if not chunk:
            return True
    return False


async def _run_one(client: HttpClient, endpoint: Endpoint, spec: RequestSpec,
                   headers: dict[str, str], data: bytes | None, prep_error: str | None,
                   t0: float, deadlines: Deadlines, cap: int) -> RequestTrace:
    loop = asyncio.get_running_loop()
    sent_at = _clock()
    rec = _Recorder(spec.id, sent_at - t0, cap)
    if prep_error is not None:
        rec.f.update(error=prep_error, end_s=_clock() - t0)
        return rec.freeze(sse=False)
    dog = _Watchdog(loop, sent_at, deadlines.total_s)
    dog.phase("first_byte", deadlines.first_byte_s, sent_at)
    resp: aiohttp.ClientResponse | None = None
    sse, clean = False, False
    try:
        resp = await client.request(spec.method, endpoint.url(spec.path), data=data,
                                    headers=headers)
        first = _clock()
        sse = resp.content_type == "text/event-stream"
        rec.f.update(status=resp.status, headers=dict(resp.headers), first_byte_s=first - t0)
        clean = await _read_body(resp.content, rec, sse, spec.disconnect_after_chunks, dog,
                                 deadlines.stall_s, t0, first)
        rec.f["disconnected"] = not clean
    except asyncio.CancelledError:
        if not dog.owns_cancel():
            raise
        rec.f.update(deadline=dog.name, deadline_s=dog.limit_s)
    except Exception as exc:  # everything the server does wrong is data, never a crash
        rec.f["error"] = describe_error(exc)
    finally:
        dog.stop()
        if resp is not None and clean:
            resp.release()
        elif resp is not None:
            resp.close()  # drop the connection: it may be mid-body or poisoned
        rec.f["end_s"] = _clock() - t0
    return rec.freeze(sse=sse)


async def _play(client: HttpClient, endpoint: Endpoint, scenario: Scenario,
                prepared: list[tuple[bytes | None, str | None]],
                deadlines_of: Mapping[str, Deadlines], deadlines: Deadlines,
                cap: int) -> tuple[list[Any], float]:
    """Start every request's task at its offset; their results (or exceptions) in
    scenario order, and the wall time from the scenario's start to the last end."""
    loop = asyncio.get_running_loop()
    headers = {**endpoint.headers(), "Content-Type": "application/json"}
    specs = scenario.requests
    tasks: list[asyncio.Task[RequestTrace] | None] = [None] * len(specs)
    t0 = _clock()
    try:
        for i in sorted(range(len(specs)), key=lambda i: specs[i].offset_ms):
            spec = specs[i]
            at = t0 + spec.offset_ms / 1000.0
            while (delay := at - _clock()) > 0:  # a timer may fire a little early
                await asyncio.sleep(delay)
            data, err = prepared[i]
            tasks[i] = loop.create_task(_run_one(
                client, endpoint, spec, headers, data, err, t0,
                deadlines_of.get(spec.id, deadlines), cap))
        results = await asyncio.gather(*tasks, return_exceptions=True)  # type: ignore[arg-type]
    except BaseException:  # cancelled while dispatching: take the started requests down too
        started = [t for t in tasks if t is not None]
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)
        raise
    return results, _clock() - t0


async def run_scenario(endpoint: Endpoint, scenario: Scenario, deadlines: Deadlines, *,
                       body_cap_bytes: int = 1_000_000, probe: bool = True,
                       canary_deadline_s: float = 30.0, metrics: bool = True,
                       settle_cap_s: float = 5.0, kv_tolerance: float = KV_TOLERANCE,
                       request_deadlines: Mapping[str, Deadlines] | None = None,
                       fixture_base_url: str | None = None,
                       client: HttpClient | None = None) -> Trace:
    """Send every request at its offset, all concurrently; never raises for server faults.

    Bodies are built before the clock starts so media encoding does not skew offsets;
    fixture-server image URLs resolve under `fixture_base_url` (without it such a
    request records an error instead of being sent). `client` is an open `HttpClient`
    whose kept-alive connections this scenario may reuse and leave for the next one;
    without it the scenario opens and closes a client of its own. `wall_s` covers the
    requests only; the probe, if any, runs afterwards. `request_deadlines` overrides
    `deadlines` for the request ids it names. With `metrics`, `/metrics` is read before
    and, polled for up to `settle_cap_s` until idle (nothing running or waiting, KV use
    within `kv_tolerance` of the baseline), after."""
    if client is not None and not client.is_open:  # a caller's bug, not the server's fault
        raise RuntimeError("run_scenario(client=...) needs an open HttpClient")
    deadlines_of = dict(request_deadlines or {})
    before = await read_metrics(endpoint) if metrics else None
    prepared: list[tuple[bytes | None, str | None]] = []
    encoder = BodyEncoder(scenario, endpoint.model, fixture_base_url=fixture_base_url)
    for spec in scenario.requests:
        try:
            prepared.append((encoder.encode(spec), None))
        except Exception as exc:  # e.g. a body json cannot encode: record, don't raise
            prepared.append((None, describe_error(exc)))
    if client is None:
        async with HttpClient() as own:
            results, wall_s = await _play(own, endpoint, scenario, prepared, deadlines_of,
                                          deadlines, body_cap_bytes)
    else:
        results, wall_s = await _play(client, endpoint, scenario, prepared, deadlines_of,
                                      deadlines, body_cap_bytes)
    traces = tuple(
        r if isinstance(r, RequestTrace)
        else RequestTrace(id=spec.id, sent_s=0.0, error=describe_error(r))  # runner bug
        for spec, r in zip(scenario.requests, results))
    settled, waited = (await settle_metrics(endpoint, before, settle_cap_s, kv_tolerance)
                       if before is not None else (None, None))
    after = await probe_target(endpoint, deadline_s=canary_deadline_s) if probe else None
    return Trace(requests=traces, deadlines=deadlines, probe_after=after, wall_s=wall_s,
                 metrics_before=before, metrics_after=settled, metrics_wait_s=waited)
