"""Each oracle catches its fault on a hand-built trace and stays silent on a healthy one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fuzz.model import Deadlines, Probe, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import ORACLES, check, oracle

HEALTHY = Probe(health_status=200, canary_ok=True, canary_latency_s=0.1)
ENGINE = "EngineCore encountered an issue. See stack trace (above) for the root cause."
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "noop"}}]


META = {"created": 1700000000, "model": "vlfuzz-tiny-qwen3-vl"}


def run(request: dict[str, Any], disconnect: int | None = None, probe: Probe | None = HEALTHY,
        **trace: Any) -> list:
    """check() on one request `request` whose trace has the given fields (`body` is the
    response body)."""
    fields: dict[str, Any] = {"status": 200, "first_byte_s": 0.1, "end_s": 0.2}
    fields.update(trace)
    scenario = Scenario(requests=(RequestSpec(id="r1", body=request,
                                              disconnect_after_chunks=disconnect),))
    t = Trace(requests=(RequestTrace(id="r1", sent_s=0.0, **fields),), probe_after=probe)
    return check(scenario, t)


def completion(content: str | None = "hi", finish: str = "stop",
               tool_calls: list | None = None) -> str:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        msg["tool_calls"] = [{"id": f"call-{i}", "type": "function",
                              "function": {"name": n, "arguments": a}}
                             for i, (n, a) in enumerate(tool_calls)]
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", **META,
                       "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def sse(*deltas: dict[str, Any], finish: str = "stop", usage: bool = False,
        done: bool = True) -> tuple[str, ...]:
    def chunk(delta: dict[str, Any], fr: str | None = None) -> str:
        return json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", **META,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]})
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk(d) for d in deltas] + [chunk({}, finish)]
    if usage:
        events.append(json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                  **META, "choices": [], "usage": {"prompt_tokens": 1,
                                                           "completion_tokens": 2,
                                                           "total_tokens": 3}}))
    return tuple(events + (["[DONE]"] if done else []))


def kinds(failures: list) -> list[str]:
    return [f.kind for f in failures]


CHAT = {"messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
JSON_SCHEMA = {**CHAT, "response_format": {"type": "json_schema",
                                           "json_schema": {"name": "s", "schema": SCHEMA}}}


def test_registry_has_the_seven_oracles_and_refuses_duplicates() -> None:
    assert {"no_server_error", "no_transport_failure", "no_hang", "target_alive",
            "output_matches_schema", "forced_tool_calls_valid",
            "stream_well_formed"} <= set(ORACLES)
    with pytest.raises(ValueError, match="duplicate"):
        oracle(ORACLES["no_hang"])


def test_healthy_traces_are_silent() -> None:
    assert run(CHAT, body=completion()) == []
    assert run(STREAM, events=sse({"content": "hi"})) == []
    assert run({**STREAM, "stream_options": {"include_usage": True}},
               events=sse({"content": "hi"}, usage=True)) == []
    assert run({**CHAT, "n": 0}, status=400, body=json.dumps(
        {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}})) == []
    assert run(CHAT, probe=None, body=completion()) == []


def test_no_server_error_uses_the_vllm_error_message() -> None:
    body = json.dumps({"error": {"message": ENGINE, "type": "InternalServerError",
                                 "param": None, "code": 500}})
    [f] = run(CHAT, status=500, body=body)
    assert f.kind == "server_error" and f.request_id == "r1"
    assert f.signature == ("server_error|500|EngineCore encountered an issue. "
                           "See stack trace for the root cause.")
    [g] = run(CHAT, status=502, body="<html>Bad gateway</html>")
    assert g.signature == "server_error|502|<html>Bad gateway</html>"


def test_no_transport_failure() -> None:
    [f] = run(CHAT, status=None, error="ServerDisconnectedError: Server disconnected")
    assert f.kind == "transport" and f.signature.startswith("transport|-|ServerDisconnected")
    assert run(STREAM, disconnect=2, events=sse()[:2], disconnected=True,
               error="ClientPayloadError: whatever") == []


def test_malformed_200_body() -> None:
    [f] = run(CHAT, body="<html>oops")
    assert f.kind == "malformed_body" and f.signature.startswith("malformed_body|200|")
    [g] = run(CHAT, body='{"x": NaN}')
    assert g.kind == "malformed_body"
    assert run(CHAT, body="<html>oops"[:3], body_truncated=True) == []


def test_no_hang_names_the_deadline() -> None:
    [f] = run(CHAT, status=None, first_byte_s=None, deadline="first_byte", deadline_s=60.0)
    assert f.kind == "hang" and f.signature.endswith("|first_byte") and "60s" in f.message
    assert f.evidence["deadline_s"] == 60.0
    [g] = run(STREAM, events=sse()[:2], deadline="stall", deadline_s=0.5)
    assert g.signature.endswith("|stall") and g.signature != f.signature
    [h] = run(CHAT, status=None, first_byte_s=None, deadline="first_byte", deadline_s=5.0)
    assert h.signature == f.signature  # a learnt, different limit is the same hang


def test_target_alive() -> None:
    [dead] = run(CHAT, body=completion(), probe=Probe(
        health_status=None, health_error="ClientConnectorError: Cannot connect to host"))
    assert dead.kind == "target_dead" and dead.request_id is None
    [dead500] = run(CHAT, body=completion(), probe=Probe(health_status=500))
    assert dead500.kind == "target_dead" and dead500.signature != dead.signature
    [wedged] = run(CHAT, body=completion(), probe=Probe(
        health_status=200, canary_ok=False, canary_error="TimeoutError: canary gave no answer"))
    assert wedged.kind == "target_wedged" and wedged.signature.endswith("|TimeoutError")


@pytest.mark.parametrize("content, detail", [
    ('{"name": 3}', "type@$.name"),
    ('{"tags": ["a"]}', "required@$"),
    ('{"name": "a", "tags": [1]}', "type@$.tags[*]"),
    ('{"name": "a", "extra": 1}', "additionalProperties@$"),
    ('{"name": "a"', "not_json"),
    ("NaN", "not_json"),
])
def test_output_matches_schema_catches(content: str, detail: str) -> None:
    [f] = run(JSON_SCHEMA, body=completion(content))
    assert f.kind == "schema_violation" and f.signature.endswith("|" + detail)


def test_output_matches_schema_silent_cases() -> None:
    assert run(JSON_SCHEMA, body=completion('{"name": "a", "tags": ["x"]}')) == []
    assert run(JSON_SCHEMA, body=completion('{"name": ', finish="length")) == []
    bad_schema = {**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"type": "no-such-type"}}}}
    assert run(bad_schema, body=completion("1")) == []


def test_output_matches_schema_reassembles_streams() -> None:
    body = {**JSON_SCHEMA, "stream": True}
    assert run(body, events=sse({"content": '{"name"'}, {"content": ': "a"}'})) == []
    [f] = run(body, events=sse({"content": '{"name"'}, {"content": ": 1}"}))
    assert f.signature.endswith("|type@$.name")


def tool_body(choice: Any, stream: bool = False) -> dict[str, Any]:
    return {**CHAT, "tools": TOOLS, "tool_choice": choice, **({"stream": True} if stream else {})}


NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("choice, calls, detail", [
    ("required", None, "required:no_tool_calls"),
    ("required", [("get_weather", '{"city": 1}')], "required:type@$.city"),
    ("required", [("get_weather", "{}")], "required:required@$"),
    ("required", [("get_weather", '{"city": ')], "required:arguments_not_json"),
    ("required", [("get_weather", '["x"]')], "required:arguments_not_object"),
    ("required", [("launch", "{}")], "required:unknown_function"),
    (NAMED, [("noop", "{}")], "named:wrong_function"),
])
def test_forced_tool_calls_valid_catches(choice: Any, calls: Any, detail: str) -> None:
    [f] = run(tool_body(choice), body=completion(None, "tool_calls", calls))
    assert f.kind == "tool_call_invalid" and f.signature.endswith("|" + detail)


def test_forced_tool_calls_silent_cases() -> None:
    ok = [("get_weather", '{"city": "Oslo"}'), ("noop", "{}")]
    assert run(tool_body("required"), body=completion(None, "tool_calls", ok)) == []
    assert run(tool_body(NAMED), body=completion(None, "stop", ok[:1])) == []
    assert run(tool_body("auto"), body=completion("no call")) == []
    assert run(tool_body("required"), body=completion(None, "length", [("get_weather", "{")])) == []


def test_forced_tool_calls_reassembled_from_stream_deltas() -> None:
    def call(i: int, name: str | None = None, args: str = "") -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": args}
        if name:
            fn["name"] = name
        return {"tool_calls": [{"index": i, "function": fn}]}
    good = sse(call(0, "get_weather"), call(0, args='{"city"'), call(0, args=': "Oslo"}'),
               finish="tool_calls")
    assert run(tool_body("required", stream=True), events=good) == []
    bad = sse(call(0, "get_weather"), call(0, args='{"city"'), call(0, args=": 5}"),
              finish="tool_calls")
    [f] = run(tool_body("required", stream=True), events=bad)
    assert f.signature.endswith("|required:type@$.city")


def test_stream_well_formed_catches() -> None:
    [no_done] = run(STREAM, events=sse({"content": "hi"}, done=False))
    assert no_done.kind == "stream_malformed" and no_done.signature.endswith("|no_done")
    events = sse({"content": "hi"})
    [bad] = run(STREAM, events=events[:1] + ("{not json",) + events[1:])
    assert bad.signature.endswith("|unparsable_event")
    err = json.dumps({"error": {"message": ENGINE, "type": "InternalServerError", "code": 500}})
    [ev] = run(STREAM, events=events[:2] + (err,) + events[2:])
    assert ev.kind == "stream_error_event" and "EngineCore encountered" in ev.signature
    [usage] = run({**STREAM, "stream_options": {"include_usage": True}}, events=events)
    assert usage.signature.endswith("|no_usage")
    [after] = run(STREAM, events=events + ("{}",))
    assert after.signature.endswith("|event_after_done")


def test_stream_well_formed_ignores_cut_streams() -> None:
    partial = sse({"content": "hi"}, done=False)[:2]
    assert run(STREAM, disconnect=2, events=partial, disconnected=True) == []
    assert kinds(run(STREAM, events=partial, deadline="stall", deadline_s=1.0)) == ["hang"]


def test_check_deduplicates_and_survives_garbage() -> None:
    scenario = Scenario(requests=(RequestSpec(id="a", body=JSON_SCHEMA),
                                  RequestSpec(id="b", body=tool_body("required"))))
    rts = tuple(RequestTrace(id=i, sent_s=0.0, status=200, body=b, events=("[", "]"))
                for i, b in (("a", '{"choices": [1, {"message": 3}]}'), ("b", "[]")))
    found = check(scenario, Trace(requests=rts, deadlines=Deadlines()))
    # No oracle crashes on garbage; only the shape oracle judges it.
    assert sorted((f.kind, f.request_id) for f in found) == [
        ("shape_mismatch", "a"), ("shape_mismatch", "b"), ("wrong_choice_count", "a")]


# What pydantic (lax mode, as in vLLM's request models) made of `stream`, checked against
# the vLLM 0.32.0 venv. Found on the real target: `"stream": "yes"` streamed, and a strict
# reading called the event stream a malformed body.
@pytest.mark.parametrize("value, server_reads", [
    (True, True), (False, False), ("yes", True), ("YES", True), ("True", True), ("1", True),
    ("on", True), ("t", True), ("y", True), ("0", False), ("n", False), ("off", False),
    (1, True), (0, False), (1.0, True), (0.0, False), (" yes", None), (2, None),
    ("maybe", None), (1.5, None), (None, None), ([True], None)])
def test_stream_is_read_as_the_server_reads_it(value: Any, server_reads: bool | None) -> None:
    from fuzz.model import lax_bool
    from fuzz.repro_checks import streamed

    assert lax_bool(value) is server_reads
    assert RequestSpec(id="r", body={"stream": value}).stream is (server_reads is True)
    assert streamed({"stream": value}) is (server_reads is True)  # repro.py reads it alike


def test_a_stream_the_server_read_from_yes_is_judged_as_a_stream() -> None:
    request = {**CHAT, "stream": "yes"}
    assert run(request, events=sse({"content": "hi"}), body=None) == []
    [f] = run(request, events=sse({"content": "hi"}, done=False), body=None)
    assert f.kind == "stream_malformed"
