"""The real runner against the fault-injecting server: every misbehaviour becomes trace
fields and the right oracle failure, never an exception. The kept-alive connection tests
use their own small server that closes idle connections and breaks reused ones on
purpose: a stale connection must never become a transport failure, and a real reset
must never be retried away."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable
from typing import Any

import pytest
from faults import FaultServer, fault_body

from fuzz.model import Deadlines, Media, RequestSpec, Scenario, Trace, fixture_url, media_url
from fuzz.oracles import check
from fuzz.runner import (Endpoint, HttpClient, fetch_target_info, probe_target,
                         run_scenario)

FAST = Deadlines(first_byte_s=0.3, stall_s=0.3, total_s=1.0)


def play(server: FaultServer, *specs: RequestSpec, deadlines: Deadlines = FAST,
         probe: bool = False, media: tuple[Media, ...] = (), **kw: Any) -> Trace:
    endpoint = Endpoint(server.base_url, "fault-model")
    scenario = Scenario(requests=specs, media={m.sha256: m for m in media})
    return asyncio.run(run_scenario(endpoint, scenario, deadlines,
                                    probe=probe, canary_deadline_s=0.3, **kw))


def one(server: FaultServer, fault: str, *, stream: bool = False, disconnect: int | None = None,
        body_extra: dict[str, Any] | None = None, **params: Any) -> tuple[Trace, list]:
    body = {**fault_body(fault, stream=stream, **params), **(body_extra or {})}
    spec = RequestSpec(id="r", body=body, disconnect_after_chunks=disconnect)
    trace = play(server, spec)
    return trace, check(Scenario(requests=(spec,)), trace)


def kinds(failures: list) -> list[str]:
    return [f.kind for f in failures]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_json_and_stream(fault_server: FaultServer) -> None:
    usage = {"stream_options": {"include_usage": True}}
    specs = (RequestSpec(id="json", body=fault_body("ok", content="hello")),
             RequestSpec(id="sse", body={**fault_body("ok", stream=True, chunks=4), **usage}))
    trace = play(fault_server, *specs, probe=True)
    js, st = trace.request("json"), trace.request("sse")
    assert js.status == 200 and json.loads(js.body)["choices"][0]["message"]["content"] == "hello"
    assert js.events == () and js.first_byte_s is not None and js.end_s >= js.first_byte_s
    assert st.status == 200 and st.body is None and st.events[-1] == "[DONE]"
    assert len(st.chunk_times_s) == len(st.events) and list(st.chunk_times_s) == sorted(
        st.chunk_times_s)
    assert "usage" in json.loads(st.events[-2])
    assert trace.probe_after is not None and trace.probe_after.canary_ok is True
    assert check(Scenario(requests=specs), trace) == []
    assert all(b["model"] == "fault-model" for b in fault_server.bodies)


def test_media_resolved_and_explicit_model_kept(fault_server: FaultServer) -> None:
    media = Media(data=b"\x89PNG fake", mime="image/png")
    body = {"model": "mine", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(media.sha256)}}]}]}
    play(fault_server, RequestSpec(id="m", body=body), media=(media,))  # no fault spec: canary behaviour
    [sent] = fault_server.bodies
    assert sent["model"] == "mine"
    assert sent["messages"][0]["content"][0]["image_url"]["url"] == media.data_url()


def test_server_error_and_client_error(fault_server: FaultServer) -> None:
    trace, failures = one(fault_server, "error")
    assert trace.requests[0].status == 500
    assert [f.signature for f in failures] == [
        "server_error|500|EngineCore encountered an issue. See stack trace for the root cause."]
    trace, failures = one(fault_server, "error", status=400, message="Token id 5000 is out of "
                          "vocabulary", type="BadRequestError",
                          body_extra={"logit_bias": {"5000": 1}})
    assert trace.requests[0].status == 400 and failures == []


@pytest.mark.parametrize("fault, status", [("reset", 200), ("reset_early", None),
                                           ("truncated", 200), ("bad_chunked", None)])
def test_broken_connections_are_transport_failures(fault_server: FaultServer, fault: str,
                                                   status: int | None) -> None:
    trace, failures = one(fault_server, fault)
    rt = trace.requests[0]
    assert rt.status == status and rt.error and rt.deadline is None and rt.end_s is not None
    assert kinds(failures) == ["transport"]
    assert failures[0].signature.startswith(f"transport|{status or '-'}|{rt.error.split(':')[0]}")


def test_garbage_200_is_a_malformed_body(fault_server: FaultServer) -> None:
    trace, failures = one(fault_server, "garbage")
    assert trace.requests[0].body == "<html>upstream oops"
    assert kinds(failures) == ["malformed_body"]


@pytest.mark.parametrize("fault, params, deadline", [
    ("hang", {}, "first_byte"),
    ("stall", {"after": 2}, "stall"),
    ("slow", {"chunks": 40, "delay_s": 0.05}, "total"),
])
def test_deadlines_fire_with_their_name(fault_server: FaultServer, fault: str,
                                        params: dict[str, Any], deadline: str) -> None:
    trace, failures = one(fault_server, fault, stream=True, **params)
    rt = trace.requests[0]
    limit = {"first_byte": FAST.first_byte_s, "stall": FAST.stall_s, "total": FAST.total_s}
    assert rt.deadline == deadline and rt.deadline_s == limit[deadline] and rt.error is None
    assert limit[deadline] - 0.05 <= rt.latency_s <= limit[deadline] + 0.5
    assert kinds(failures) == ["hang"]
    assert failures[0].signature.endswith(f"|{deadline}")  # the phase, not the limit
    assert failures[0].evidence["deadline_s"] == limit[deadline]
    if deadline == "stall":
        assert rt.status == 200 and len(rt.events) == 2


@pytest.mark.parametrize("fault, kind, detail", [
    ("no_done", "stream_malformed", "no_done"),
    ("bad_event", "stream_malformed", "unparsable_event"),
    ("no_usage", "stream_malformed", "no_usage"),
    ("error_event", "stream_error_event", "code=500"),
])
def test_broken_streams(fault_server: FaultServer, fault: str, kind: str, detail: str) -> None:
    usage = {"stream_options": {"include_usage": True}}
    trace, failures = one(fault_server, fault, stream=True, body_extra=usage)
    assert trace.requests[0].status == 200 and trace.requests[0].error is None
    assert [(f.kind, f.signature.rsplit("|", 1)[1]) for f in failures] == [(kind, detail)]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_disconnect_after_chunks(fault_server: FaultServer, k: int) -> None:
    trace, failures = one(fault_server, "slow", stream=True, disconnect=k, chunks=10,
                          delay_s=0.01)
    rt = trace.requests[0]
    assert rt.disconnected and len(rt.events) == k == len(rt.chunk_times_s)
    assert rt.latency_s < 0.5 and failures == []


def test_offsets_are_honoured_in_order(fault_server: FaultServer) -> None:
    offsets = {"c": 240.0, "a": 0.0, "d": 360.0, "b": 120.0}
    specs = tuple(RequestSpec(id=i, offset_ms=ms, body=fault_body("ok", tag=i))
                  for i, ms in offsets.items())
    trace = play(fault_server, *specs)
    for rt in trace.requests:
        assert offsets[rt.id] / 1000 <= rt.sent_s <= offsets[rt.id] / 1000 + 0.1
    tags = [tag for tag, _ in fault_server.arrivals]
    assert tags == ["a", "b", "c", "d"]
    times = [t for _, t in fault_server.arrivals]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.07 <= g <= 0.2 for g in gaps), gaps


def test_hundreds_of_concurrent_requests(fault_server: FaultServer) -> None:
    specs = tuple(RequestSpec(id=str(i), body=fault_body("slow", stream=True, chunks=3,
                                                         delay_s=0.1)) for i in range(300))
    trace = play(fault_server, *specs, deadlines=Deadlines(2.0, 2.0, 5.0))
    assert all(rt.status == 200 and rt.events[-1] == "[DONE]" for rt in trace.requests)
    assert trace.wall_s < 3.0  # concurrent, not 300 x 0.4 s


def test_body_cap_keeps_the_tail_of_streams(fault_server: FaultServer) -> None:
    spec = RequestSpec(id="r", body=fault_body("ok", stream=True, chunks=50, content="x" * 500))
    trace = play(fault_server, spec, body_cap_bytes=600)
    rt = trace.requests[0]
    assert rt.body_truncated and rt.events[-1] == "[DONE]" and len(rt.events) < 50
    assert check(Scenario(requests=(spec,)), trace) == []
    spec = RequestSpec(id="j", body=fault_body("ok", content="y" * 5000))
    rt = play(fault_server, spec, body_cap_bytes=100).requests[0]
    assert rt.body_truncated and len(rt.body) == 100
    assert check(Scenario(requests=(spec,)), Trace(requests=(rt,))) == []


def test_wrong_answers_through_the_runner(fault_server: FaultServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    rf = {"response_format": {"type": "json_schema", "json_schema": {"name": "s",
                                                                    "schema": schema}}}
    tools = {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
             "tool_choice": "required"}
    for stream in (False, True):
        _, failures = one(fault_server, "ok", stream=stream, body_extra=rf, content='{"n": "1"}')
        assert [f.signature.rsplit("|", 1)[1] for f in failures] == ["type@$.n"]
        _, failures = one(fault_server, "ok", stream=stream, body_extra=rf, content='{"n": 1}')
        assert failures == []
        _, failures = one(fault_server, "ok", stream=stream, body_extra=tools,
                          tool_calls=[["f", '{"n": 1.5}']])
        assert [f.signature.rsplit("|", 1)[1] for f in failures] == ["required:type@$.n"]


def test_unencodable_body_is_recorded_not_raised(fault_server: FaultServer) -> None:
    trace = play(fault_server, RequestSpec(id="bad", body={"x": {1, 2}}),
                 RequestSpec(id="good", body=fault_body("ok")))
    assert trace.request("bad").error.startswith("TypeError")
    assert trace.request("good").status == 200


def test_refused_connection_and_dead_target() -> None:
    endpoint = Endpoint(f"http://127.0.0.1:{closed_port()}", "m")
    spec = RequestSpec(id="r", body=fault_body("ok"))
    trace = asyncio.run(run_scenario(endpoint, Scenario(requests=(spec,)), FAST,
                                     canary_deadline_s=0.3))
    assert trace.requests[0].error.startswith("ClientConnectorError")
    assert kinds(check(Scenario(requests=(spec,)), trace)) == ["transport", "target_dead"]
    info = asyncio.run(fetch_target_info(endpoint, deadline_s=0.3))
    assert info["version"] is None and set(info["errors"]) == {"/version", "/v1/models"}


@pytest.mark.parametrize("health, canary, expected", [
    ("ok", "ok", (200, True)),
    ("error", "ok", (500, True)),
    ("hang", "ok", (None, None)),
    ("ok", "hang", (200, False)),
    ("ok", "error", (200, False)),
])
def test_probe_target(fault_server: FaultServer, health: str, canary: str,
                      expected: tuple) -> None:
    fault_server.health, fault_server.canary = health, canary
    probe = asyncio.run(probe_target(Endpoint(fault_server.base_url, "m"), deadline_s=0.3))
    assert (probe.health_status, probe.canary_ok) == expected
    if canary == "hang":
        assert probe.canary_error.startswith("TimeoutError")


def test_fetch_target_info(fault_server: FaultServer) -> None:
    info = asyncio.run(fetch_target_info(Endpoint(fault_server.base_url, "fault-model")))
    assert info["version"] == "0.0-fault" and info["model_id"] == "fault-model"
    assert info["max_model_len"] == 8192 and info["errors"] == {}


def test_fixture_images_are_sent_as_http_urls_under_the_base(fault_server: FaultServer) -> None:
    image = Media(data=b"\x89PNG fake", mime="image/png")
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": fixture_url(f"/media/{image.sha256}")}}]}]}
    trace = play(fault_server, RequestSpec(id="f", body=body), media=(image,),
                 fixture_base_url="http://127.0.0.1:9/")
    assert trace.request("f").status == 200
    [sent] = fault_server.bodies
    assert sent["messages"][0]["content"][0]["image_url"]["url"] == (
        f"http://127.0.0.1:9/media/{image.sha256}")
    trace = play(fault_server, RequestSpec(id="nobase", body=body), media=(image,))
    assert trace.request("nobase").error.startswith("ValueError") and len(fault_server.bodies) == 1


def test_cancelling_the_scenario_is_not_mistaken_for_a_deadline(
        fault_server: FaultServer) -> None:
    scenario = Scenario(requests=(RequestSpec(id="h", body=fault_body("hang")),))

    async def main() -> None:
        task = asyncio.ensure_future(run_scenario(Endpoint(fault_server.base_url, "m"),
                                                  scenario, Deadlines(5, 5, 5), probe=False))
        while not fault_server.arrivals:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


# ----------------------------------------------------------------- kept-alive connections

class KeepAliveServer:
    """A minimal HTTP/1.1 server that keeps connections alive and misbehaves on purpose.

    `idle_close_s` closes a connection that has been idle that long (what uvicorn's
    timeout_keep_alive does). `first` and `later` say what happens to the first request
    of a connection and to the ones after it: "ok" (a JSON completion), "drop" (close
    without a byte: the idle close racing a request, made deterministic), "reset" (TCP
    reset, no byte), "partial_head" (half a status line, then close), "reset_mid"
    (headers and half the body, then a reset); `by_id` overrides both for the request
    ids it names. `log` has one (connection number, request number on it, request id)
    per request received."""

    def __init__(self, *, idle_close_s: float | None = None, first: str = "ok",
                 later: str = "ok", by_id: dict[str, str] | None = None) -> None:
        self.idle_close_s, self.first, self.later = idle_close_s, first, later
        self.by_id = by_id or {}
        self.log: list[tuple[int, int, str]] = []
        self.connections = self.idle_closes = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _KeepAliveConn(self), "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def ids(self) -> list[str]:
        return [rid for _, _, rid in self.log]


class _KeepAliveConn(asyncio.Protocol):
    def __init__(self, server: KeepAliveServer) -> None:
        server.connections += 1
        self.server, self.number, self.served = server, server.connections, 0
        self.buf = b""
        self.idle: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if len(rest) < length:
            return
        body, self.buf = rest[:length], rest[length:]
        self.served += 1
        request_id = json.loads(body)["messages"][0]["content"]
        self.server.log.append((self.number, self.served, request_id))
        how = self.server.first if self.served == 1 else self.server.later
        self.answer(self.server.by_id.get(request_id, how), request_id)

    def answer(self, how: str, request_id: str) -> None:
        transport = self.transport
        assert transport is not None
        payload = json.dumps({
            "id": request_id, "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(payload))
        if how == "ok":
            transport.write(head + payload)
            if self.server.idle_close_s is not None:
                self.idle = asyncio.get_running_loop().call_later(self.server.idle_close_s,
                                                                  self.close_idle)
            return
        if how == "partial_head":
            transport.write(b"HTTP/1.1 20")
        if how == "reset_mid":
            transport.write(head + payload[:len(payload) // 2])
        if how in ("reset", "reset_mid"):
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    def close_idle(self) -> None:
        self.server.idle_closes += 1
        if self.transport is not None:
            self.transport.close()


def chat(request_id: str, offset_ms: float = 0.0) -> RequestSpec:
    return RequestSpec(id=request_id, offset_ms=offset_ms,
                       body={"messages": [{"role": "user", "content": request_id}]})


async def play_with(client: HttpClient, base_url: str, *specs: RequestSpec) -> list[Any]:
    """One scenario through `client`'s connections; its failures per request."""
    scenario = Scenario(requests=specs)
    trace = await run_scenario(Endpoint(base_url, "m"), scenario, FAST, probe=False,
                               metrics=False, client=client)
    assert [rt.id for rt in trace.requests] == [spec.id for spec in specs]
    return [(rt, [f for f in check(scenario, trace) if f.request_id == rt.id])
            for rt in trace.requests]


def sequential(base_url: str, client: HttpClient, ids: list[str]) -> Awaitable[list[Any]]:
    """One single-request scenario after another, all through `client`'s connections:
    (request trace, its failures) per request."""
    async def run() -> list[Any]:
        return [r for rid in ids for r in await play_with(client, base_url, chat(rid))]
    return run()


def run_with_client(server: KeepAliveServer, body: Any, **client_kw: Any) -> Any:
    async def main() -> Any:
        async with server as base_url, HttpClient(**client_kw) as client:
            return await body(base_url, client)
    return asyncio.run(main())


def test_idle_closes_by_the_server_across_idle_gaps_are_not_failures() -> None:
    server = KeepAliveServer(idle_close_s=0.05)

    async def body(base_url: str, client: HttpClient) -> list[Any]:
        results = []
        for i, gap_s in enumerate([0, 0.01, 0.04, 0.05, 0.06, 0.1, 0, 0.045, 0.055, 0.2]):
            await asyncio.sleep(gap_s)  # idle gaps around the server's keep-alive timeout
            results += await play_with(client, base_url,
                                       *(chat(f"s{i}r{j}", 20.0 * j) for j in range(4)))
        return results

    results = run_with_client(server, body)  # the client would keep connections for 2 s
    assert server.idle_closes > 0 and server.connections > 1
    assert [(rt.status, rt.error, failures) for rt, failures in results] == (
        [(200, None, [])] * len(results))


@pytest.mark.parametrize("later", ["drop", "reset"])
def test_a_close_racing_a_request_on_a_reused_connection_is_retried_once(later: str) -> None:
    server = KeepAliveServer(later=later)
    ids = [f"r{i}" for i in range(6)]

    async def body(base_url: str, client: HttpClient) -> tuple[list[Any], int]:
        return await sequential(base_url, client, ids), client.stale_retries

    results, retries = run_with_client(server, body)
    assert [(rt.status, rt.error, failures) for rt, failures in results] == (
        [(200, None, [])] * len(ids))
    # every second request met a reused connection that died before answering, and was
    # sent once more, as the first request of a new connection
    tries = {rid: [(conn, n) for conn, n, r in server.log if r == rid] for rid in ids}
    assert retries == 3 and [len(tries[rid]) for rid in ids] == [1, 2] * 3
    for (conn, n), (again_conn, again_n) in (t for t in tries.values() if len(t) == 2):
        assert n > 1 and again_n == 1 and again_conn != conn


@pytest.mark.parametrize("warm, fault, sent, status, error", [
    (False, "reset", 1, None, "ClientOSError"),          # on a fresh connection: never retried
    (True, "reset_mid", 1, 200, "ClientPayloadError"),   # mid-response on a reused one
    (True, "partial_head", 1, None, "ServerDisconnectedError"),  # half a status line
    (True, "reset", 2, None, "ClientOSError"),           # every time: the retry is reset too
    (True, "drop", 2, None, "ServerDisconnectedError"),  # every time: the retry is dropped too
])
def test_real_resets_are_still_reported(warm: bool, fault: str, sent: int, status: int | None,
                                        error: str) -> None:
    server = KeepAliveServer(by_id={"r": fault})

    async def body(base_url: str, client: HttpClient) -> list[Any]:
        if warm:  # leave a good kept-alive connection for "r" to reuse
            await sequential(base_url, client, ["warm"])
        return await sequential(base_url, client, ["r"])

    [(rt, failures)] = run_with_client(server, body)
    assert rt.status == status and rt.error.startswith(error), rt.error
    assert kinds(failures) == ["transport"]
    assert server.ids().count("r") == sent


def test_client_drops_connections_idle_longer_than_keepalive() -> None:
    server = KeepAliveServer()

    async def body(base_url: str, client: HttpClient) -> int:
        await sequential(base_url, client, ["a", "b"])  # b reuses a's connection
        await asyncio.sleep(0.15)  # longer than the client's keep-alive
        await sequential(base_url, client, ["c"])
        return client.stale_retries

    assert run_with_client(server, body, keepalive_s=0.1) == 0
    assert [conn for conn, _, _ in server.log] == [1, 1, 2]
