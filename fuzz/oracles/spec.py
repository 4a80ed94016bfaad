"""The oracle on rejections that contradict the spec: an explicit list of chat requests
that MUST be refused with a 4xx and of requests that MUST be accepted.

Each rule is a small predicate over the request body as sent (a string body is the raw
wire text). Only rules backed by the OpenAI API reference or vLLM's own request validation
(`ChatCompletionRequest` validators, `SamplingParams._verify_args`) AND seen enforced by
the embedded vLLM 0.32.0 are listed (its answers are kept in
tests/unit/fixtures/observed_spec_rules.json); anything that depends on the model
(vocabulary, context length) or on server flags is left out. A 2xx for a MUST-reject
request, or a 4xx for a MUST-accept one, is a `spec_contradiction` failure naming the rule.

| rule                            | expect | when                                               |
|---------------------------------|--------|----------------------------------------------------|
| body_not_json                   | reject | the body is not JSON                               |
| body_not_object                 | reject | the body is JSON but not an object                 |
| messages_missing                | reject | no `messages`                                      |
| messages_not_list               | reject | `messages` is not an array                         |
| messages_empty                  | reject | `messages` is []                                   |
| message_not_object              | reject | an element of `messages` is not an object          |
| n_below_1                       | reject | `n` < 1                                            |
| max_tokens_below_1              | reject | `max_completion_tokens` (else `max_tokens`) < 1    |
| temperature_negative            | reject | `temperature` < 0                                  |
| temperature_above_2             | reject | `temperature` > 2                                  |
| n_above_1_greedy                | reject | `n` > 1 with `temperature` 0 (vLLM)                |
| top_p_out_of_range              | reject | `top_p` <= 0 or > 1                                |
| penalty_out_of_range            | reject | presence/frequency penalty outside [-2, 2]         |
| repetition_penalty_not_positive | reject | `repetition_penalty` <= 0                          |
| min_p_out_of_range              | reject | `min_p` outside [0, 1]                             |
| top_k_below_minus_1             | reject | `top_k` < -1                                       |
| seed_outside_int64              | reject | `seed` outside the signed 64-bit range             |
| stream_options_without_stream   | reject | `stream_options` set, `stream` not true            |
| top_logprobs_without_logprobs   | reject | `top_logprobs` > 0, `logprobs` not true            |
| top_logprobs_negative           | reject | `top_logprobs` < 0 (and not vLLM's -1)             |
| top_logprobs_over_20            | reject | `logprobs` true and `top_logprobs` > 20            |
| tools_empty                     | reject | `tools` is []                                      |
| tool_choice_without_tools       | reject | `tool_choice` other than "none", no `tools`        |
| tool_choice_invalid             | reject | `tool_choice` a string not none/auto/required      |
| tool_choice_unknown_function    | reject | `tool_choice` names a function not in `tools`      |
| stop_empty_string               | reject | `stop` is or contains ""                           |
| generation_prompt_conflict      | reject | `continue_final_message` + `add_generation_prompt` |
| plain_chat                      | accept | short text chat, in-range basic parameters only    |

`plain_chat` assumes a text model with a context of at least 4096 tokens: at most 500
characters of text in all (4 bytes each at worst under byte-level BPE) plus at most 256
output tokens, no `model` field (the runner fills the served one), no images or tools,
no lone surrogates, and no `<|` (text that spells a special token such as
`<|image_pad|>` is tokenized as one by vLLM, which is a different question).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fuzz.model import CHAT_PATH, Failure, Scenario, Trace, lax_bool
from fuzz.oracles.reading import error_message, failure, head, pairs
from fuzz.oracles.registry import oracle

NOT_JSON = object()  # what a string body that does not parse decodes to
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
PLAIN_TEXT_CHARS = 500
PLAIN_MAX_TOKENS = 256


@dataclass(frozen=True)
class Rule:
    """`applies(body)` says the request MUST get `expect` ("reject": a 4xx, "accept":
    a 2xx). `body` is the decoded request body, `NOT_JSON` for unparsable text."""

    name: str
    expect: str
    applies: Callable[[Any], bool]


def _num(body: Any, key: str) -> float | None:
    """A finite JSON number under `key`, else None (booleans are not numbers)."""
    value = body.get(key) if isinstance(body, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _below(key: str, limit: float) -> Callable[[Any], bool]:
    return lambda b: (v := _num(b, key)) is not None and v < limit


def _outside(key: str, lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], bool]:
    def check(b: Any) -> bool:
        v = _num(b, key)
        return v is not None and (v > hi or v < lo or (lo_open and v == lo))
    return check


def _obj(b: Any) -> Mapping[str, Any]:
    return b if isinstance(b, Mapping) else {}


def _cap(b: Any) -> float | None:
    """vLLM's output cap: `max_completion_tokens` when given, else `max_tokens`."""
    key = "max_completion_tokens" if _obj(b).get("max_completion_tokens") is not None \
        else "max_tokens"
    return _num(b, key)


def _tool_names(b: Any) -> set[Any]:
    tools = _obj(b).get("tools")
    return {t["function"].get("name") for t in tools if isinstance(t, Mapping)
            and isinstance(t.get("function"), Mapping)} if isinstance(tools, list) else set()


def _named_choice(b: Any) -> Any:
    choice = _obj(b).get("tool_choice")
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    return fn.get("name") if isinstance(fn, Mapping) else None


def _top_logprobs(b: Any) -> float | None:
    v = _num(b, "top_logprobs")
    return v if v is not None and v == int(v) else None


def _stop_empty(b: Any) -> bool:
    stop = _obj(b).get("stop")
    return stop == "" or (isinstance(stop, list) and "" in stop)


def _plain_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
            isinstance(p, Mapping) and set(p) == {"type", "text"} and p["type"] == "text"
            and isinstance(p["text"], str) for p in content):
        return "".join(p["text"] for p in content)
    return None


_PLAIN_KEYS = {"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
               "stream", "stream_options", "seed", "n", "user"}


def plain_chat(b: Any) -> bool:
    """A request nobody could call invalid (see the module table)."""
    if not isinstance(b, Mapping) or not set(b) <= _PLAIN_KEYS or "messages" not in b:
        return False
    msgs = b["messages"]
    if not isinstance(msgs, list) or not 1 <= len(msgs) <= 16:
        return False
    texts = []
    for m in msgs:
        if not (isinstance(m, Mapping) and set(m) == {"role", "content"}
                and m["role"] in ("system", "user", "assistant")):
            return False
        texts.append(_plain_text(m["content"]))
    if None in texts or not any(m["role"] == "user" for m in msgs):
        return False
    text = "".join(texts)  # type: ignore[arg-type]
    if (len(text) > PLAIN_TEXT_CHARS or "<|" in text
            or any("\ud800" <= c <= "\udfff" for c in text)):
        return False
    ints = {"max_tokens": (1, PLAIN_MAX_TOKENS), "max_completion_tokens": (1, PLAIN_MAX_TOKENS),
            "n": (1, 1), "seed": (0, 2 ** 31 - 1)}
    for key, (lo, hi) in ints.items():
        v = b.get(key)
        if key in b and not (type(v) is int and lo <= v <= hi):
            return False
    for key, (lo, hi) in {"temperature": (0.0, 2.0), "top_p": (0.01, 1.0)}.items():
        v = _num(b, key)
        if key in b and (v is None or not lo <= v <= hi):
            return False
    if "stream" in b and not isinstance(b["stream"], bool):
        return False
    if "stream_options" in b and not (b.get("stream") is True and isinstance(
            b["stream_options"], Mapping) and set(b["stream_options"]) <= {"include_usage"}
            and all(isinstance(v, bool) for v in b["stream_options"].values())):
        return False
    return "user" not in b or isinstance(b["user"], str)


RULES: tuple[Rule, ...] = (
    Rule("body_not_json", "reject", lambda b: b is NOT_JSON),
    Rule("body_not_object", "reject", lambda b: b is not NOT_JSON and not isinstance(b, Mapping)),
    Rule("messages_missing", "reject", lambda b: isinstance(b, Mapping) and "messages" not in b),
    Rule("messages_not_list", "reject",
         lambda b: "messages" in _obj(b) and not isinstance(b["messages"], list)),
    Rule("messages_empty", "reject", lambda b: _obj(b).get("messages") == []),
    Rule("message_not_object", "reject", lambda b: isinstance(_obj(b).get("messages"), list)
         and any(not isinstance(m, Mapping) for m in b["messages"])),
    Rule("n_below_1", "reject", _below("n", 1)),
    Rule("max_tokens_below_1", "reject", lambda b: (c := _cap(b)) is not None and c < 1),
    Rule("temperature_negative", "reject", _below("temperature", 0)),
    Rule("temperature_above_2", "reject", lambda b: (v := _num(b, "temperature")) is not None
         and v > 2),
    Rule("n_above_1_greedy", "reject", lambda b: (n := _num(b, "n")) is not None and n > 1
         and _num(b, "temperature") == 0),
    Rule("top_p_out_of_range", "reject", _outside("top_p", 0.0, 1.0, lo_open=True)),
    Rule("penalty_out_of_range", "reject", lambda b: _outside("presence_penalty", -2, 2)(b)
         or _outside("frequency_penalty", -2, 2)(b)),
    Rule("repetition_penalty_not_positive", "reject",
         lambda b: (v := _num(b, "repetition_penalty")) is not None and v <= 0),
    Rule("min_p_out_of_range", "reject", _outside("min_p", 0.0, 1.0)),
    Rule("top_k_below_minus_1", "reject", _below("top_k", -1)),
    Rule("seed_outside_int64", "reject", lambda b: type(_obj(b).get("seed")) is int
         and not _INT64[0] <= b["seed"] <= _INT64[1]),
    Rule("stream_options_without_stream", "reject",
         lambda b: bool(_obj(b).get("stream_options")) and not lax_bool(_obj(b).get("stream"))),
    Rule("top_logprobs_without_logprobs", "reject",
         lambda b: (v := _top_logprobs(b)) is not None and v > 0 and not _obj(b).get("logprobs")),
    Rule("top_logprobs_negative", "reject",
         lambda b: (v := _top_logprobs(b)) is not None and v < -1),
    Rule("top_logprobs_over_20", "reject", lambda b: _obj(b).get("logprobs") is True
         and (v := _top_logprobs(b)) is not None and v > 20),
    Rule("tools_empty", "reject", lambda b: _obj(b).get("tools") == []),
    Rule("tool_choice_without_tools", "reject",
         lambda b: _obj(b).get("tool_choice") not in (None, "none")
         and _obj(b).get("tools") is None),
    Rule("tool_choice_invalid", "reject", lambda b: isinstance(_obj(b).get("tool_choice"), str)
         and b["tool_choice"] not in ("none", "auto", "required")),
    Rule("tool_choice_unknown_function", "reject",
         lambda b: isinstance(_obj(b).get("tools"), list) and isinstance(_named_choice(b), str)
         and _named_choice(b) not in _tool_names(b)),
    Rule("stop_empty_string", "reject", _stop_empty),
    Rule("generation_prompt_conflict", "reject",
         lambda b: _obj(b).get("continue_final_message") is True
         and _obj(b).get("add_generation_prompt") is True),
    Rule("plain_chat", "accept", plain_chat),
)


def decode_body(body: Any) -> Any:
    """The body as the server parses it: a string body is raw JSON text."""
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except ValueError:
        return NOT_JSON


def contradicted(body: Any, status: int) -> list[Rule]:
    """The rules that a `status` answer to `body` (as in RequestSpec.body) breaks."""
    decoded = decode_body(body)
    if 200 <= status < 300:
        expect = "reject"
    elif 400 <= status < 500:
        expect = "accept"
    else:
        return []
    return [r for r in RULES if r.expect == expect and r.applies(decoded)]


@oracle
def spec_conformance(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A chat request the spec says must be refused gets a 4xx; one that must be served
    does not get a 4xx (5xx and transport failures are judged elsewhere)."""
    out = []
    for spec, rt in pairs(scenario, trace):
        if spec.path != CHAT_PATH or spec.method.upper() != "POST" or rt.status is None:
            continue
        for rule in contradicted(spec.body, rt.status):
            if rule.expect == "reject":
                msg, summary = "invalid request accepted", f"HTTP {rt.status} for a request " \
                    f"that must be rejected ({rule.name})"
            else:
                msg = error_message(rt.body)
                summary = f"HTTP {rt.status} for a request that must be accepted: {head(msg, 300)}"
            out.append(failure("spec_contradiction", rt.status, msg,
                               detail=f"must_{rule.expect}:{rule.name}", request_id=rt.id,
                               summary=summary,
                               evidence={"rule": rule.name, "expect": rule.expect,
                                         "status": rt.status, "body_head": head(rt.body)}))
    return out
