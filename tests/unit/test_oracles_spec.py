"""The spec-contradiction oracle: every MUST-reject rule fires on a 2xx and stays silent on
a 4xx; the MUST-accept rule fires on a 4xx for a plain request and never on odd ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fuzz.model import RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import check
from fuzz.oracles.spec import RULES, contradicted, plain_chat

MSGS = [{"role": "user", "content": "hi"}]
CHAT = {"messages": MSGS, "max_tokens": 8}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
ERROR = json.dumps({"error": {"message": "bad", "type": "BadRequestError", "param": None,
                              "code": 400}})

# One example per MUST-reject rule, and the rule it must trigger.
REJECT: list[tuple[str, Any]] = [
    ("body_not_json", "{messages: hi"),
    ("body_not_object", "[1, 2]"),
    ("body_not_object", [1, 2]),
    ("messages_missing", {"max_tokens": 4}),
    ("messages_not_list", {"messages": "hi"}),
    ("message_not_object", {"messages": ["hi"]}),
    ("n_below_1", {**CHAT, "n": 0}),
    ("n_below_1", {**CHAT, "n": -3}),
    ("messages_empty", {"messages": [], "max_tokens": 4}),
    ("max_tokens_below_1", {**CHAT, "max_tokens": -1}),
    ("max_tokens_below_1", {**CHAT, "max_tokens": 0}),
    ("max_tokens_below_1", {**CHAT, "max_tokens": 99, "max_completion_tokens": 0}),
    ("temperature_negative", {**CHAT, "temperature": -0.5}),
    ("temperature_above_2", {**CHAT, "temperature": 2.01}),
    ("n_above_1_greedy", {**CHAT, "n": 2, "temperature": 0}),
    ("top_p_out_of_range", {**CHAT, "top_p": 0}),
    ("top_p_out_of_range", {**CHAT, "top_p": 1.5}),
    ("penalty_out_of_range", {**CHAT, "presence_penalty": 2.5}),
    ("penalty_out_of_range", {**CHAT, "frequency_penalty": -3}),
    ("repetition_penalty_not_positive", {**CHAT, "repetition_penalty": 0}),
    ("min_p_out_of_range", {**CHAT, "min_p": 1.1}),
    ("top_k_below_minus_1", {**CHAT, "top_k": -2}),
    ("seed_outside_int64", {**CHAT, "seed": 2 ** 63}),
    ("stream_options_without_stream", {**CHAT, "stream_options": {"include_usage": True}}),
    ("top_logprobs_without_logprobs", {**CHAT, "top_logprobs": 3}),
    ("top_logprobs_negative", {**CHAT, "logprobs": True, "top_logprobs": -2}),
    ("top_logprobs_over_20", {**CHAT, "logprobs": True, "top_logprobs": 21}),
    ("tools_empty", {**CHAT, "tools": []}),
    ("tool_choice_without_tools", {**CHAT, "tool_choice": "required"}),
    ("tool_choice_invalid", {**CHAT, "tools": TOOLS, "tool_choice": "always"}),
    ("tool_choice_unknown_function", {**CHAT, "tools": TOOLS, "tool_choice": {
        "type": "function", "function": {"name": "g"}}}),
    ("stop_empty_string", {**CHAT, "stop": ["x", ""]}),
    ("generation_prompt_conflict", {**CHAT, "continue_final_message": True,
                                    "add_generation_prompt": True}),
]


def run(body: Any, status: int, response: str | None = None) -> list:
    scenario = Scenario(requests=(RequestSpec(id="r", body=body),))
    rt = RequestTrace(id="r", sent_s=0.0, status=status, first_byte_s=0.1, end_s=0.2,
                      body=response)
    return [f for f in check(scenario, Trace(requests=(rt,))) if f.kind == "spec_contradiction"]


def test_every_rule_has_an_example() -> None:
    named = {name for name, _ in REJECT} | {"plain_chat"}
    assert named == {r.name for r in RULES}


@pytest.mark.parametrize("rule, body", REJECT)
def test_must_reject_rule_fires_on_2xx_only(rule: str, body: Any) -> None:
    assert rule in [r.name for r in contradicted(body, 200)]
    found = run(body, 200, json.dumps({"choices": []}))
    assert f"must_reject:{rule}" in [f.signature.rsplit("|", 1)[1] for f in found]
    assert all(f.signature.startswith("spec_contradiction|200|invalid request accepted|")
               for f in found)
    assert run(body, 400, ERROR) == []
    assert run(body, 500, ERROR) == []  # a 5xx is no_server_error's


@pytest.mark.parametrize("rule, body", REJECT)
def test_reject_examples_are_not_plain(rule: str, body: Any) -> None:
    assert not plain_chat(body)


VALID_NEIGHBOURS = [
    {**CHAT, "n": 1}, {**CHAT, "max_tokens": 1}, {**CHAT, "temperature": 0},
    {**CHAT, "temperature": 2}, {**CHAT, "n": 2, "temperature": 0.5},
    {**CHAT, "max_tokens": 0, "max_completion_tokens": 5},
    {**CHAT, "top_p": 1}, {**CHAT, "presence_penalty": 2}, {**CHAT, "top_k": -1},
    {**CHAT, "seed": -1}, {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    {**CHAT, "logprobs": True, "top_logprobs": 20}, {**CHAT, "top_logprobs": 0},
    {**CHAT, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
    {**CHAT, "tool_choice": "none"}, {**CHAT, "stop": ["x"]},
    {**CHAT, "continue_final_message": True, "add_generation_prompt": False},
    {**CHAT, "temperature": "hot"},  # a type error, but no rule claims it
]


@pytest.mark.parametrize("body", VALID_NEIGHBOURS)
def test_reject_rules_stay_silent_on_valid_neighbours(body: dict) -> None:
    assert [r.name for r in contradicted(body, 200)] == []


PLAIN = [
    CHAT,
    {"messages": [{"role": "system", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                  {"role": "assistant", "content": ""}, {"role": "user", "content": "é\x00"}],
     "temperature": 0.7, "top_p": 0.9, "seed": 3, "n": 1, "max_completion_tokens": 256,
     "stream": True, "stream_options": {"include_usage": True}, "user": "u"},
]
NOT_PLAIN = [
    {**CHAT, "model": "other"}, {**CHAT, "max_tokens": 257}, {**CHAT, "n": 2},
    {**CHAT, "max_tokens": True}, {**CHAT, "temperature": 2.5}, {**CHAT, "logit_bias": {}},
    {"messages": [{"role": "user", "content": "x" * 501}]},
    {"messages": [{"role": "user", "content": "\ud800"}]},
    {"messages": [{"role": "user", "content": "<|vision_start|><|image_pad|><|vision_end|>"}]},
    {"messages": [{"role": "system", "content": "only a system message"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
    {"messages": [{"role": "tool", "content": "x"}]}, {"messages": []},
    {**CHAT, "stream_options": {"include_usage": True}}, {**CHAT, "stream": "yes"},
]


@pytest.mark.parametrize("body", PLAIN)
def test_plain_chat_must_be_accepted(body: dict) -> None:
    assert plain_chat(body)
    [f] = run(body, 400, ERROR)
    assert f.signature == "spec_contradiction|400|bad|must_accept:plain_chat"
    assert run(body, 200, None) == []


@pytest.mark.parametrize("body", NOT_PLAIN)
def test_odd_requests_are_not_claimed_plain(body: dict) -> None:
    assert not plain_chat(body)
    assert run(body, 400, ERROR) == []


def test_other_paths_and_transport_failures_are_not_judged() -> None:
    scenario = Scenario(requests=(RequestSpec(id="r", body={}, path="/tokenize"),
                                  RequestSpec(id="s", body={"n": 0})))
    rts = (RequestTrace(id="r", sent_s=0, status=200, body="{}"),
           RequestTrace(id="s", sent_s=0, error="ServerDisconnectedError"))
    assert [f for f in check(scenario, Trace(requests=rts))
            if f.kind == "spec_contradiction"] == []


OBSERVED = json.loads((Path(__file__).parent / "fixtures" / "observed_spec_rules.json")
                      .read_text())["cases"]


@pytest.mark.parametrize("case", sorted(OBSERVED))
def test_rules_agree_with_the_real_vllm(case: str) -> None:
    """What vLLM 0.32.0 answered: never a contradiction, and each refusal is one our rules
    demand (so a 2xx there would have been caught)."""
    seen = OBSERVED[case]
    assert contradicted(seen["request"], seen["status"]) == []
    if seen["status"] >= 400:
        assert [r.name for r in contradicted(seen["request"], 200)], seen["message"]
    else:
        assert seen["status"] == 200
