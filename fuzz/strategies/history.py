"""Conversation histories placed before the final user message: system prompts,
user/assistant turns, and assistant tool calls followed by their tool results.

Chat templates render all of these (Qwen's lists tool calls inside `<tool_call>`),
so history is where template bugs live. Most histories are well-formed: every
assistant `tool_calls[i].id` is answered by a `tool` message with that
`tool_call_id`, in order, before the next turn. A small share is broken on purpose:
`arguments` that are not JSON, JSON that is not an object, an object instead of a
string, or a tool result answering an id that was never issued."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, chance, check_int

BROKEN_ARGUMENTS: tuple[str, ...] = ("not_json", "not_object", "object_not_string", "empty")
BROKEN_HISTORY: tuple[str, ...] = BROKEN_ARGUMENTS + ("orphan_result", "missing_result")
FALLBACK_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}


def example_for(schema: Any, depth: int = 0) -> Any:
    """A small instance of a schema, best effort (const/enum/type; required object
    properties; minItems for arrays). Good enough for plausible tool-call history."""
    if not isinstance(schema, Mapping) or depth > 6:
        return "x"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    branch = (schema.get("anyOf") or schema.get("oneOf") or [None])[0]
    if branch is not None and "type" not in schema and "properties" not in schema:
        return example_for(branch, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = kind[0] if kind else "string"
    if kind == "object":
        props = schema.get("properties", {})
        required = list(schema.get("required", []))
        if isinstance(branch, Mapping):  # e.g. anyOf: [{required: [a]}, {required: [b]}]
            required += [k for k in branch.get("required", []) if k not in required]
        return {k: example_for(props.get(k, {}), depth + 1) for k in required}
    if kind == "array":
        prefix = schema.get("prefixItems") or (schema["items"] if isinstance(
            schema.get("items"), list) else [])
        item = schema.get("items", {}) if not isinstance(schema.get("items"), list) else {}
        count = max(int(schema.get("minItems", 0)), len(prefix) if prefix else 0)
        return [example_for(prefix[i] if i < len(prefix) else item, depth + 1)
                for i in range(count)]
    if kind in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return lo + 1 if "exclusiveMinimum" in schema else lo
    return {"boolean": True, "null": None}.get(kind, "x" * int(schema.get("minLength", 1)))


def _arguments(draw: Draw, tool: Mapping[str, Any], broken: str | None) -> Any:
    if broken == "not_json":
        return draw(st.sampled_from(('{"q": "unterminated', "{'q': 1}", "q=1", "{,}")))
    if broken == "not_object":
        return draw(st.sampled_from(("[1, 2]", '"text"', "42", "null")))
    if broken == "empty":
        return ""
    value = example_for(tool["function"].get("parameters", {}))
    return value if broken == "object_not_string" else json.dumps(value)


@st.composite
def histories(draw: Draw, *, texts: st.SearchStrategy[str], tools: Sequence[Mapping[str, Any]] = (),
              max_turns: int = 3, tool_call_percent: int = 40,
              broken_percent: int = 10) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """(messages, tags): 1..max_turns earlier turns; about `tool_call_percent`% of
    assistant turns call 1..3 of `tools` (or a fallback tool), about `broken_percent`%
    of those are broken in one of BROKEN_HISTORY's ways."""
    check_int("max_turns", max_turns, 1)
    check_int("tool_call_percent", tool_call_percent, 0, 100)
    check_int("broken_percent", broken_percent, 0, 100)
    pool = list(tools) or [FALLBACK_TOOL]
    messages: list[dict[str, Any]] = []
    tags: list[str] = []
    turns = draw(st.integers(1, max_turns))
    for turn in range(turns):
        messages.append({"role": "user", "content": draw(texts)})
        if not chance(draw, tool_call_percent):
            messages.append({"role": "assistant", "content": draw(texts)})
            continue
        broken = draw(st.sampled_from(BROKEN_HISTORY)) if chance(draw, broken_percent) else None
        calls = []
        for i in range(draw(st.integers(1, 3))):
            tool = draw(st.sampled_from(pool))
            arg_break = broken if broken in BROKEN_ARGUMENTS and i == 0 else None
            calls.append({"id": f"call_{turn}_{i}_{draw(st.integers(0, 2**32 - 1)):08x}",
                          "type": "function", "function": {
                              "name": tool["function"]["name"],
                              "arguments": _arguments(draw, tool, arg_break)}})
        assistant: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
        if chance(draw, 30):
            assistant["content"] = draw(texts)
        messages.append(assistant)
        answered = calls[:-1] if broken == "missing_result" else calls
        for call in answered:
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": json.dumps({"ok": True, "result": draw(texts)[:200]})})
        if broken == "orphan_result":
            messages.append({"role": "tool", "tool_call_id": "call_never_issued",
                             "content": "stale result"})
        messages.append({"role": "assistant", "content": draw(texts)})
        tags.append("history:tool_calls")
        if len(calls) > 1:
            tags.append("history:parallel_calls")
        if broken:
            tags.append(f"history:broken:{broken}")
    tags.append(f"history:{min(turns, 3)}")
    return messages, tuple(tags)
