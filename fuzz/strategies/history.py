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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, check_int, ints
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion

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


_NOT_JSON = st.sampled_from(('{"q": "unterminated', "{'q': 1}", "q=1", "{,}"))
_NOT_OBJECT = st.sampled_from(("[1, 2]", '"text"', "42", "null"))


def _arguments(draw: Draw, tool: Mapping[str, Any], broken: str | None) -> Any:
    if broken == "not_json":
        return draw(_NOT_JSON)
    if broken == "not_object":
        return draw(_NOT_OBJECT)
    if broken == "empty":
        return ""
    value = example_for(tool["function"].get("parameters", {}))
    return value if broken == "object_not_string" else json.dumps(value)


@dataclass(frozen=True)
class HistorySpec:
    """Validated `histories` arguments, narrowed by the exclusion."""

    turns: st.SearchStrategy[int]
    tool_call_percent: int
    broken: st.SearchStrategy[str] | None
    broken_percent: int
    max_calls: int  # 1 when parallel calls are excluded


def history_spec(*, max_turns: int = 3, tool_call_percent: int = 40, broken_percent: int = 10,
                 exclusion: Exclusion = NOTHING) -> HistorySpec:
    check_int("max_turns", max_turns, 1)
    check_int("tool_call_percent", tool_call_percent, 0, 100)
    check_int("broken_percent", broken_percent, 0, 100)
    ex = exclusion
    turns = ex.require(tuple(n for n in range(1, max_turns + 1)
                             if ex.allows(f"history:{min(n, 3)}")), "history length")
    broken = ex.keep(BROKEN_HISTORY, lambda b: (f"history:broken:{b}",))
    calls = ex.percent(tool_call_percent, "history:tool_calls")
    return HistorySpec(
        turns=st.integers(1, max_turns) if len(turns) == max_turns else st.sampled_from(turns),
        tool_call_percent=calls, broken=st.sampled_from(broken) if broken else None,
        broken_percent=broken_percent if broken else 0,
        max_calls=3 if ex.allows("history:parallel_calls") else 1)


def draw_history(dice: Dice, spec: HistorySpec, text: Callable[[], str],
                 tools: Sequence[Mapping[str, Any]] = ()
                 ) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """(messages, tags), as `histories`; `text()` draws each message's text."""
    pool = list(tools) or [FALLBACK_TOOL]
    messages: list[dict[str, Any]] = []
    tags: list[str] = []
    turns = dice.draw(spec.turns)
    for turn in range(turns):
        messages.append({"role": "user", "content": text()})
        if not dice.flip(spec.tool_call_percent):
            messages.append({"role": "assistant", "content": text()})
            continue
        broken = dice.draw(spec.broken) if spec.broken is not None and dice.flip(
            spec.broken_percent) else None
        calls = []
        for i in range(dice.draw(ints(1, spec.max_calls))):
            tool = dice.pick(pool)
            arg_break = broken if broken in BROKEN_ARGUMENTS and i == 0 else None
            calls.append({"id": f"call_{turn}_{i}_{dice.number(0, 2**32 - 1):08x}",
                          "type": "function", "function": {
                              "name": tool["function"]["name"],
                              "arguments": _arguments(dice.draw, tool, arg_break)}})
        assistant: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
        if dice.flip(30):
            assistant["content"] = text()
        messages.append(assistant)
        answered = calls[:-1] if broken == "missing_result" else calls
        for call in answered:
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": json.dumps({"ok": True, "result": text()[:200]})})
        if broken == "orphan_result":
            messages.append({"role": "tool", "tool_call_id": "call_never_issued",
                             "content": "stale result"})
        messages.append({"role": "assistant", "content": text()})
        tags.append("history:tool_calls")
        if len(calls) > 1:
            tags.append("history:parallel_calls")
        if broken:
            tags.append(f"history:broken:{broken}")
    tags.append(f"history:{min(turns, 3)}")
    return messages, tuple(tags)


def histories(*, texts: st.SearchStrategy[str], tools: Sequence[Mapping[str, Any]] = (),
              max_turns: int = 3, tool_call_percent: int = 40, broken_percent: int = 10,
              exclude_features: Exclusion | frozenset[str] | None = None
              ) -> st.SearchStrategy[tuple[list[dict[str, Any]], tuple[str, ...]]]:
    """(messages, tags): 1..max_turns earlier turns; about `tool_call_percent`% of
    assistant turns call 1..3 of `tools` (or a fallback tool), about `broken_percent`%
    of those are broken in one of BROKEN_HISTORY's ways. Histories with an excluded
    `history:` tag are not drawn."""
    spec = history_spec(max_turns=max_turns, tool_call_percent=tool_call_percent,
                        broken_percent=broken_percent, exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        dice = Dice.rolled(draw)
        return draw_history(dice, spec, lambda: dice.draw(texts), tools)

    return build()
