"""Oracles on 200 answers that were constrained: structured output and forced tool calls.

Only what the request made mandatory is judged: content that must match a JSON schema
when generation stopped on its own (`finish_reason == "stop"`), and tool calls when the
request forced them (`tool_choice` "required" or a named function)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fuzz.model import Failure, Scenario, Trace
from fuzz.oracles.reading import body_of, failure, head, loads_strict, pairs, response_choices
from fuzz.oracles.registry import oracle
from fuzz.oracles.validation import schema_problem

_MISSING = object()


def _requested_schema(body: Mapping[str, Any]) -> Any:
    """The JSON schema the output must follow: `response_format` json_schema, or vLLM's
    `structured_outputs.json` (a dict or a JSON string); `_MISSING` when none."""
    rf = body.get("response_format")
    if isinstance(rf, Mapping) and rf.get("type") == "json_schema":
        js = rf.get("json_schema")
        return js.get("schema", _MISSING) if isinstance(js, Mapping) else _MISSING
    so = body.get("structured_outputs")
    if isinstance(so, Mapping) and "json" in so:
        schema = so["json"]
        if isinstance(schema, str):
            try:
                return json.loads(schema)
            except ValueError:
                return _MISSING
        return schema
    return _MISSING


@oracle
def output_matches_schema(scenario: Scenario, trace: Trace) -> list[Failure]:
    """Structured output that stopped on its own must parse and validate."""
    out = []
    for spec, rt in pairs(scenario, trace):
        schema = _requested_schema(body_of(spec))
        choices = response_choices(spec, rt) if schema is not _MISSING else None
        for ch in choices or []:
            if ch["finish_reason"] != "stop":
                continue
            content = ch["content"]
            if not isinstance(content, str):
                detail, why = "no_content", "no content"
            else:
                try:
                    detail = schema_problem(loads_strict(content), schema)
                    why = f"does not validate ({detail})"
                except ValueError:
                    detail, why = "not_json", "does not parse as JSON"
            if detail is None:
                continue
            out.append(failure("schema_violation", rt.status,
                               "structured output violates its schema", detail=detail,
                               request_id=rt.id,
                               summary=f"choice {ch['index']}: structured output {why}",
                               evidence={"status": rt.status, "choice": ch["index"],
                                         "content_head": head(content if isinstance(
                                             content, str) else repr(content)),
                                         "stream": spec.stream}))
    return out


def forced_tool_choice(body: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """("required", None) or ("named", name) when the request forces a tool call."""
    choice = body.get("tool_choice")
    if choice == "required":
        return "required", None
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            return "named", fn["name"]
    return None


def offered_functions(body: Mapping[str, Any]) -> dict[str, Any]:
    """Offered function name -> its `parameters` schema (absent: any object)."""
    out: dict[str, Any] = {}
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters", {"type": "object"})
    return out


def _call_problem(call: Any, offered: dict[str, Any], named: str | None) -> str | None:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping):
        return "no_function"
    name = fn.get("name")
    if name not in offered:
        return "unknown_function"
    if named is not None and name != named:
        return "wrong_function"
    try:
        args = loads_strict(fn.get("arguments")) if isinstance(fn.get("arguments"), str) \
            else fn.get("arguments")
    except ValueError:
        return "arguments_not_json"
    if not isinstance(args, dict):
        return "arguments_not_object"
    return schema_problem(args, offered[name])


@oracle
def forced_tool_calls_valid(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A forced tool call must happen, name an offered (the named) function, and carry
    arguments that are a JSON object valid against that function's `parameters`."""
    out = []
    for spec, rt in pairs(scenario, trace):
        body = body_of(spec)
        forced = forced_tool_choice(body)
        choices = response_choices(spec, rt) if forced else None
        if not choices:
            continue
        mode, named = forced  # type: ignore[misc]
        offered = offered_functions(body)
        for ch in choices:
            if ch["finish_reason"] not in ("stop", "tool_calls"):
                continue  # cut by length etc.: incomplete calls are expected
            calls = ch["tool_calls"] or []
            problems = [("no_tool_calls", None)] if not calls else [
                (p, c) for c in calls if (p := _call_problem(c, offered, named)) is not None]
            for problem, call in problems[:1]:
                out.append(failure(
                    "tool_call_invalid", rt.status, "forced tool call is invalid",
                    detail=f"{mode}:{problem}", request_id=rt.id,
                    summary=f"choice {ch['index']}: tool_choice {mode} gave {problem}",
                    evidence={"status": rt.status, "choice": ch["index"], "mode": mode,
                              "named": named, "offered": sorted(offered),
                              "call_head": head(json.dumps(call)) if call else None,
                              "content_head": head(ch["content"]) if isinstance(
                                  ch["content"], str) else None,
                              "stream": spec.stream}))
    return out
