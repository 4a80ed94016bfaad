"""The new oracles through the real runner against the fault server: wrong answers with a
200, leaking `/metrics`, spec contradictions, and per-request deadlines."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from faults import FaultServer, fault_body

from fuzz.model import Deadlines, RequestSpec, Scenario, Trace
from fuzz.oracles import check
from fuzz.runner import Endpoint, run_scenario

FAST = Deadlines(first_byte_s=0.5, stall_s=0.5, total_s=1.0)


def play(server: FaultServer, *specs: RequestSpec, **kw: Any) -> tuple[Trace, list]:
    scenario = Scenario(requests=specs)
    kw.setdefault("probe", False)
    trace = asyncio.run(run_scenario(Endpoint(server.base_url, "fault-model"), scenario,
                                     kw.pop("deadlines", FAST), canary_deadline_s=0.5, **kw))
    return trace, check(scenario, trace)


def details(failures: list) -> list[str]:
    return [f"{f.kind}|{f.signature.rsplit('|', 1)[1]}" for f in failures]


def one(server: FaultServer, fault: str = "ok", *, stream: bool = False,
        extra: dict[str, Any] | None = None, **params: Any) -> list:
    body = {**fault_body(fault, stream=stream, **params), "max_tokens": 8, **(extra or {})}
    return play(server, RequestSpec(id="r", body=body))[1]


USAGE = {"stream_options": {"include_usage": True}}


@pytest.mark.parametrize("stream", [False, True])
def test_healthy_answers_are_silent(fault_server: FaultServer, stream: bool) -> None:
    assert one(fault_server, stream=stream, extra=USAGE if stream else None) == []


def test_wrong_choice_count(fault_server: FaultServer) -> None:
    assert one(fault_server, extra={"n": 2}) == []
    assert details(one(fault_server, choices=1, extra={"n": 3})) == ["wrong_choice_count|fewer"]


@pytest.mark.parametrize("stream", [False, True])
def test_usage_that_does_not_add_up(fault_server: FaultServer, stream: bool) -> None:
    wrong = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 7}
    over = {"prompt_tokens": 5, "completion_tokens": 30, "total_tokens": 35}
    extra = USAGE if stream else None
    assert details(one(fault_server, stream=stream, usage=wrong, extra=extra)) == [
        "usage_inconsistent|sum"]
    assert details(one(fault_server, stream=stream, usage=over, extra=extra)) == [
        "usage_inconsistent|over_max"]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_to_a_function_not_offered(fault_server: FaultServer, stream: bool) -> None:
    tools = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    assert one(fault_server, stream=stream, tool_calls=[["f", "{}"]], extra=tools) == []
    assert details(one(fault_server, stream=stream, tool_calls=[["g", "{}"]], extra=tools)) == [
        "tool_call_invalid|auto:unknown_function"]


@pytest.mark.parametrize("stream, shape, problem", [
    (False, {"object": "text_completion"}, "const@$.object"),
    (False, {"created": "now"}, "type@$.created"),
    (True, {"object": "chat.completion"}, "const@$.object"),
    (True, {"choices": [{"index": 0}]}, "required@$.choices[*]"),
])
def test_response_shape(fault_server: FaultServer, stream: bool, shape: dict,
                        problem: str) -> None:
    assert details(one(fault_server, stream=stream, shape=shape)) == [
        f"shape_mismatch|{problem}"]


def test_valid_error_body_for_an_invalid_request_is_silent(fault_server: FaultServer) -> None:
    found = one(fault_server, "error", status=400, message="bad", extra={"n": 0})
    assert found == []


def test_spec_contradictions(fault_server: FaultServer) -> None:
    assert details(one(fault_server, extra={"n": 0})) == [
        "spec_contradiction|must_reject:n_below_1"]
    plain = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    fault_server.canary = "error"  # no fault spec in a plain body: the canary behaviour
    _, found = play(fault_server, RequestSpec(id="p", body=plain))
    assert "spec_contradiction|must_accept:plain_chat" not in details(found)  # a 500
    _, found = play(fault_server, RequestSpec(id="p", body={
        **plain, "messages": [{"role": "user", "content": '{"fault": "error", "status": 400}'}]}))
    assert details(found) == ["spec_contradiction|must_accept:plain_chat"]


# -- leaks ------------------------------------------------------------------------------------

@pytest.fixture
def metrics_server() -> Any:
    with FaultServer(hang_s=5.0, metrics=True, kv_idle=0.05) as server:
        yield server


def test_metrics_read_before_and_after(metrics_server: FaultServer) -> None:
    trace, found = play(metrics_server, RequestSpec(id="r", body=fault_body("ok")))
    assert trace.metrics_before == {"running": 0.0, "waiting": 0.0, "kv_cache_usage": 0.05}
    assert trace.metrics_after == trace.metrics_before and found == []
    assert trace.metrics_wait_s is not None and trace.metrics_wait_s < 0.5
    assert metrics_server.metrics_reads == 2


def test_leak_is_caught_after_a_bounded_quiet_period(metrics_server: FaultServer) -> None:
    start = time.monotonic()
    trace, found = play(metrics_server, RequestSpec(id="r", body=fault_body("ok", leak=1)),
                        settle_cap_s=0.4)
    assert 0.4 <= time.monotonic() - start < 2.0 and trace.metrics_wait_s >= 0.4
    assert details(found) == ["leak|running", "leak|kv_cache"]
    assert found[0].evidence["after"]["running"] == 1.0


def test_quiet_period_waits_for_slow_requests_to_finish(metrics_server: FaultServer) -> None:
    """A request the client cut but the server still finishes is not a leak once done."""
    spec = RequestSpec(id="r", body=fault_body("slow", stream=True, chunks=6, delay_s=0.05),
                       disconnect_after_chunks=1)
    trace, found = play(metrics_server, spec, settle_cap_s=2.0)
    assert trace.requests[0].disconnected and found == []
    assert trace.metrics_after is not None and trace.metrics_after["running"] == 0.0


def test_metrics_can_be_turned_off(metrics_server: FaultServer) -> None:
    trace, _ = play(metrics_server, RequestSpec(id="r", body=fault_body("ok", leak=1)),
                    metrics=False)
    assert trace.metrics_before is None and metrics_server.metrics_reads == 0


def test_no_metrics_endpoint_is_no_failure(fault_server: FaultServer) -> None:
    start = time.monotonic()
    trace, found = play(fault_server, RequestSpec(id="r", body=fault_body("ok", leak=1)))
    assert trace.metrics_before is None and trace.metrics_after is None and found == []
    assert time.monotonic() - start < 1.0


# -- per-request deadlines --------------------------------------------------------------------

def test_request_deadlines_override_per_request(fault_server: FaultServer) -> None:
    slow = fault_body("slow", stream=True, chunks=6, delay_s=0.1)
    specs = (RequestSpec(id="tight", body=slow), RequestSpec(id="loose", body=slow))
    trace, found = play(fault_server, *specs, deadlines=Deadlines(1.0, 1.0, 2.0),
                        request_deadlines={"tight": Deadlines(1.0, 1.0, 0.3)})
    assert trace.request("tight").deadline == "total"
    assert trace.request("tight").deadline_s == 0.3
    assert trace.request("loose").deadline is None
    assert details(found) == ["hang|total"]
    assert trace.deadlines == Deadlines(1.0, 1.0, 2.0)
