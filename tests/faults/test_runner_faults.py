"""The real runner against the fault-injecting server: every misbehaviour becomes trace
fields and the right oracle failure, never an exception."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from faults import FaultServer, fault_body

from fuzz.model import Deadlines, Media, RequestSpec, Scenario, Trace, media_url
from fuzz.oracles import check
from fuzz.runner import Endpoint, fetch_target_info, probe_target, run_scenario

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
    assert failures[0].signature.endswith(f"|{deadline}>{limit[deadline]:g}s")
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
