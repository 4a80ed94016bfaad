"""The wrong-answer-with-200 oracles (choices vs n, usage arithmetic, unoffered tools) and
the response-shape oracle: each catches its fault on a hand-built trace and is silent on
healthy ones, including real vLLM 0.32 answers captured from the embedded target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fuzz.model import Probe, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import check
from fuzz.oracles.answers import lax_int, requested_max_tokens, requested_n, usage_problem
from fuzz.oracles.shapes import shape_problem

FIXTURES = Path(__file__).parent / "fixtures"
META = {"id": "chatcmpl-9", "created": 1700000000, "model": "vlfuzz-tiny-qwen3-vl"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def run(request: Any, **trace: Any) -> list:
    fields: dict[str, Any] = {"status": 200, "first_byte_s": 0.1, "end_s": 0.2}
    fields.update(trace)
    scenario = Scenario(requests=(RequestSpec(id="r1", body=request),))
    return check(scenario, Trace(requests=(RequestTrace(id="r1", sent_s=0.0, **fields),),
                                 probe_after=Probe(health_status=200, canary_ok=True)))


def sigs(failures: list) -> list[str]:
    return [f.kind + "|" + f.signature.rsplit("|", 1)[1] for f in failures]


def body(n: int = 1, usage: dict | None = None, calls: list | None = None,
         **top: Any) -> str:
    msg: dict[str, Any] = {"role": "assistant", "content": "hello" if not calls else None}
    if calls:
        msg["tool_calls"] = [{"id": f"chatcmpl-tool-{i}", "type": "function",
                              "function": {"name": name, "arguments": "{}"}}
                             for i, name in enumerate(calls)]
    return json.dumps({**META, "object": "chat.completion",
                       "choices": [{"index": i, "message": msg, "logprobs": None,
                                    "finish_reason": "tool_calls" if calls else "stop"}
                                   for i in range(n)],
                       "usage": usage or {"prompt_tokens": 9, "completion_tokens": 3 * n,
                                          "total_tokens": 9 + 3 * n}, **top})


def chunk(choices: list, usage: dict | None = None, **top: Any) -> str:
    return json.dumps({**META, "object": "chat.completion.chunk", "choices": choices,
                       **({"usage": usage} if usage else {}), **top})


def stream(indices: tuple[int, ...] = (0,), usage: dict | None = None) -> tuple[str, ...]:
    events = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None}]) for i in indices]
    events += [chunk([{"index": i, "delta": {"content": "x"}, "finish_reason": "length"}])
               for i in indices]
    if usage:
        events.append(chunk([], usage))
    return tuple(events) + ("[DONE]",)


# -- real vLLM answers -----------------------------------------------------------------------

def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("vllm_*.json")))
def test_real_vllm_answers_are_silent(name: str) -> None:
    cap = fixture(name)
    rt = {"body": cap["body"]} if cap.get("body") is not None else {"events": tuple(cap["events"])}
    assert run(cap["request"], status=cap["status"], **rt) == [], name


def test_real_fixtures_cover_a_body_and_a_stream_with_usage() -> None:
    caps = [fixture(p.name) for p in FIXTURES.glob("vllm_*.json")]
    assert any(c["status"] == 200 and c.get("body") for c in caps)
    assert any(c.get("events") and c["request"].get("stream_options") for c in caps)


# -- choice_count -----------------------------------------------------------------------------

def test_choice_count() -> None:
    assert run({**CHAT, "n": 2}, body=body(n=2)) == []
    assert sigs(run({**CHAT, "n": 3}, body=body(n=2))) == ["wrong_choice_count|fewer"]
    assert sigs(run(CHAT, body=body(n=2))) == ["wrong_choice_count|more"]
    doubled = json.loads(body(n=2))
    doubled["choices"][1]["index"] = 0
    assert sigs(run({**CHAT, "n": 2}, body=json.dumps(doubled))) == [
        "wrong_choice_count|bad_indices"]
    assert run({**CHAT, "n": 2, "stream": True}, events=stream((0, 1))) == []
    assert sigs(run({**CHAT, "n": 2, "stream": True}, events=stream((0,)))) == [
        "wrong_choice_count|fewer"]


def test_choice_count_ignores_invalid_n_and_cut_answers() -> None:
    assert requested_n({"n": 0}) is None and requested_n({"n": "two"}) is None
    assert requested_n({}) == requested_n({"n": None}) == 1
    assert "wrong_choice_count" not in [f.kind for f in run({**CHAT, "n": "x"}, body=body(2))]
    assert run({**CHAT, "n": 2}, body=body(1)[:40], body_truncated=True) == []


# -- usage_consistent -------------------------------------------------------------------------

@pytest.mark.parametrize("usage, cap, n, problem", [
    ({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}, 8, 1, None),
    ({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 9}, 8, 1, "sum"),
    ({"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}, 8, 1, "over_max"),
    ({"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}, 8, 2, None),
    ({"prompt_tokens": 5, "completion_tokens": 99, "total_tokens": 104}, None, 1, None),
    ({"prompt_tokens": "5", "completion_tokens": 3, "total_tokens": 9}, 8, 1, None),
])
def test_usage_problem(usage: dict, cap: int | None, n: int, problem: str | None) -> None:
    assert usage_problem(usage, cap, n) == problem


def test_max_completion_tokens_wins() -> None:
    assert requested_max_tokens({"max_tokens": 4, "max_completion_tokens": 10}) == 10
    assert requested_max_tokens({"max_tokens": 4}) == 4
    assert requested_max_tokens({"max_tokens": -1}) is None


# What pydantic (lax mode, as in vLLM's request models) made of each value, checked
# against the vLLM 0.32.0 venv: the oracles must count what the server counted.
@pytest.mark.parametrize("value, server_reads", [
    ("2", 2), (" 2 ", 2), ("2.0", 2), (2.0, 2), (True, 1), ("+3", 3), ("1_000", 1000),
    (2.5, None), ("0x10", None), ("2.5", None), ([2], None)])
def test_integer_fields_are_read_as_the_server_reads_them(value: Any, server_reads: int | None) -> None:
    assert lax_int(value) == server_reads


def test_a_mistyped_n_the_server_coerced_is_not_a_usage_alarm() -> None:
    # Found on the real target: "n": "2" gave two choices of 28 tokens each.
    usage = {"prompt_tokens": 5, "completion_tokens": 56, "total_tokens": 61}
    body = {"max_tokens": 28, "n": "2"}
    assert usage_problem(usage, requested_max_tokens(body), requested_n(body) or 1) is None
    assert usage_problem(usage, requested_max_tokens({"max_tokens": 28}), 1) == "over_max"


def test_usage_consistent_in_bodies_and_streams() -> None:
    bad_sum = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 13}
    assert sigs(run(CHAT, body=body(usage=bad_sum))) == ["usage_inconsistent|sum"]
    over = {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}
    assert sigs(run(CHAT, body=body(usage=over))) == ["usage_inconsistent|over_max"]
    s = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    assert run(s, events=stream(usage={"prompt_tokens": 9, "completion_tokens": 1,
                                       "total_tokens": 10})) == []
    assert sigs(run(s, events=stream(usage=bad_sum))) == ["usage_inconsistent|sum"]


# -- tool_calls_offered -----------------------------------------------------------------------

def test_tool_calls_must_name_an_offered_function() -> None:
    auto = {**CHAT, "tools": TOOLS}
    assert run(auto, body=body(calls=["get_weather"])) == []
    assert sigs(run(auto, body=body(calls=["get_weather", "rm_rf"]))) == [
        "tool_call_invalid|auto:unknown_function"]
    assert sigs(run({**auto, "tool_choice": "none"}, body=body(calls=["get_weather"]))) == [
        "tool_call_invalid|none:unexpected_call"]
    assert sigs(run(CHAT, body=body(calls=["get_weather"]))) == [
        "tool_call_invalid|no_tools:unexpected_call"]
    # Forced calls are forced_tool_calls_valid's: reported once, with its detail.
    forced = {**auto, "tool_choice": "required"}
    assert sigs(run(forced, body=body(calls=["rm_rf"]))) == [
        "tool_call_invalid|required:unknown_function"]


def test_tool_calls_offered_reassembles_streams() -> None:
    def call(name: str) -> str:
        return chunk([{"index": 0, "delta": {"tool_calls": [{
            "index": 0, "id": "chatcmpl-tool-1", "type": "function",
            "function": {"name": name, "arguments": "{}"}}]}, "finish_reason": "tool_calls"}])
    auto = {**CHAT, "tools": TOOLS, "stream": True}
    assert run(auto, events=(call("get_weather"), "[DONE]")) == []
    assert sigs(run(auto, events=(call("nope"), "[DONE]"))) == [
        "tool_call_invalid|auto:unknown_function"]


# -- response_shape ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, problem", [
    ({"object": "chat.completions"}, "const@$.object"),
    ({"created": "today"}, "type@$.created"),
    ({"id": 7}, "type@$.id"),
    ({"choices": {"0": {}}}, "type@$.choices"),
    ({"usage": {"prompt_tokens": 1.5, "completion_tokens": 1, "total_tokens": 2.5}},
     "type@$.usage.prompt_tokens"),
])
def test_shape_mismatch_in_bodies(change: dict, problem: str) -> None:
    doc = {**json.loads(body()), **change}
    found = [f for f in run(CHAT, body=json.dumps(doc)) if f.kind == "shape_mismatch"]
    assert [f.signature.rsplit("|", 1)[1] for f in found] == [problem]


@pytest.mark.parametrize("mutate, problem", [
    (lambda c: c.update(index="0"), "type@$.choices[*].index"),
    (lambda c: c.update(finish_reason="done"), "enum@$.choices[*].finish_reason"),
    (lambda c: c["message"].update(content=5), "type@$.choices[*].message.content"),
    (lambda c: c.pop("message"), "required@$.choices[*]"),
])
def test_shape_mismatch_in_choices(mutate: Any, problem: str) -> None:
    doc = json.loads(body())
    mutate(doc["choices"][0])
    assert shape_problem(doc, "chat.completion") == problem


def test_shape_of_stream_chunks_and_errors() -> None:
    events = stream()
    bad = json.loads(events[1])
    bad["choices"][0]["delta"]["content"] = ["x"]
    found = run({**CHAT, "stream": True}, events=(events[0], json.dumps(bad), "[DONE]"))
    assert sigs(found) == ["shape_mismatch|type@$.choices[*].delta.content"]
    assert shape_problem({"error": {"message": "m", "type": "BadRequestError", "param": None,
                                    "code": 400}}, "error") is None
    assert shape_problem({"object": "error", "message": "m", "type": "x", "code": 400},
                         "error") is None
    assert shape_problem({"error": {"message": 3, "type": "x"}}, "error") is not None
    assert sigs(run({**CHAT, "n": 0}, status=400, body='{"error": "flat string"}')) == [
        "shape_mismatch|type@$.error"]


def test_extra_vllm_fields_are_allowed() -> None:
    doc = json.loads(body())
    doc.update(prompt_logprobs=None, prompt_token_ids=None, kv_transfer_params=None,
               service_tier=None, system_fingerprint=None)
    doc["choices"][0].update(stop_reason=None, token_ids=None, routed_experts=None)
    doc["choices"][0]["message"].update(reasoning=None, refusal=None, annotations=None,
                                        audio=None, function_call=None)
    assert shape_problem(doc, "chat.completion") is None


def test_new_oracles_are_registered() -> None:
    from fuzz.oracles import ORACLES
    assert {"response_shape", "choice_count", "usage_consistent", "tool_calls_offered",
            "spec_conformance", "no_leak"} <= set(ORACLES)


def test_an_error_event_is_reported_once() -> None:
    err = json.dumps({"error": {"message": "boom", "type": "InternalServerError", "code": 500}})
    events = stream((0,))
    found = run({**CHAT, "n": 2, "stream": True}, events=(events[0], err, "[DONE]"))
    assert [f.kind for f in found] == ["stream_error_event"]


def test_a_real_valid_scenario_through_the_runner_is_silent() -> None:
    """Nine valid requests (n=2 streams with continuous usage, tools auto and named, a
    400 for n=0, a client-cut stream) run by the runner against vLLM 0.32.0, with
    /metrics read before and after: no oracle may complain."""
    saved = fixture("live_valid_scenario.json")
    scenario = Scenario.from_json(saved["scenario"], {})
    trace = Trace.from_json(saved["trace"])
    assert trace.metrics_before is not None and trace.metrics_after is not None
    assert check(scenario, trace) == []
