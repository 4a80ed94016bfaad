"""Oracles on 200 answers that are wrong although well-formed: the number of choices, the
usage arithmetic, and tool calls naming a function nobody offered.

Only complete 200s are judged (see `reading.complete_200`): a cut or truncated answer is
expected to be incomplete."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles.reading import (body_of, complete_200, error_of, failure, head, pairs,
                                  parse_or_none, response_choices)
from fuzz.oracles.registry import oracle
from fuzz.oracles.structured import forced_tool_choice, offered_functions


def _int(value: Any) -> int | None:
    """`value` if it is a real int (JSON booleans are not counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_INT_TEXT = re.compile(r"\s*([+-]?\d+(?:_\d+)*)(?:\.0*)?\s*")


def lax_int(value: Any) -> int | None:
    """`value` read as the server reads an integer field: vLLM's request models are
    pydantic in lax mode, so `"2"`, `2.0` and `true` are accepted as 2, 2 and 1.
    Judging a mistyped `"n": "2"` as n=1 made a false `over_max` alarm on a real run."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _INT_TEXT.fullmatch(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None
    return None


def requested_n(body: Mapping[str, Any]) -> int | None:
    """The `n` the request asked for (1 when absent); None when not a valid count."""
    n = body.get("n", 1)
    n = 1 if n is None else lax_int(n)
    return n if n is not None and n >= 1 else None


def _indices(spec: RequestSpec, rt: RequestTrace) -> list[Any] | None:
    """Choice indices of a complete 200, one per choice object (streams: distinct); None
    for a stream that carries an error event (stream_well_formed's, and cut short)."""
    if not complete_200(rt):
        return None
    if spec.stream:
        seen: list[Any] = []
        for ev in rt.events:
            doc = parse_or_none(ev) if ev != "[DONE]" else None
            if error_of(doc) is not None:
                return None
            for ch in (doc.get("choices") if isinstance(doc, Mapping) else None) or []:
                idx = ch.get("index") if isinstance(ch, Mapping) else None
                if idx not in seen:
                    seen.append(idx)
        return seen
    doc = parse_or_none(rt.body)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("choices"), list):
        return None
    return [ch.get("index") if isinstance(ch, Mapping) else None for ch in doc["choices"]]


@oracle
def choice_count(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A 200 answer carries exactly `n` choices, indexed 0..n-1."""
    out = []
    for spec, rt in pairs(scenario, trace):
        n = requested_n(body_of(spec))
        indices = _indices(spec, rt) if n is not None else None
        if indices is None:
            continue
        if len(indices) != n:
            detail = "fewer" if len(indices) < n else "more"
        elif sorted(indices, key=str) != sorted(range(n), key=str):
            detail = "bad_indices"
        else:
            continue
        out.append(failure("wrong_choice_count", rt.status, "number of choices differs from n",
                           detail=detail, request_id=rt.id,
                           summary=f"asked n={n}, got {len(indices)} choices "
                                   f"(indices {indices[:10]})",
                           evidence={"n": n, "choices": len(indices), "indices": indices[:50],
                                     "stream": spec.stream}))
    return out


def _usages(spec: RequestSpec, rt: RequestTrace) -> Iterator[Mapping[str, Any]]:
    """Every usage object of a complete 200 (streams: each chunk that carries one)."""
    if not complete_200(rt):
        return
    docs = [parse_or_none(ev) for ev in rt.events if ev != "[DONE]"] if spec.stream \
        else [parse_or_none(rt.body)]
    for doc in docs:
        usage = doc.get("usage") if isinstance(doc, Mapping) else None
        if isinstance(usage, Mapping):
            yield usage


def usage_problem(usage: Mapping[str, Any], max_tokens: int | None, n: int) -> str | None:
    """Why `usage` cannot be right: `sum` (prompt + completion != total) or `over_max`
    (completion beyond `max_tokens` per choice); non-integer fields are the shape oracle's."""
    prompt, completion, total = (_int(usage.get(k)) for k in
                                 ("prompt_tokens", "completion_tokens", "total_tokens"))
    if prompt is not None and completion is not None and total is not None \
            and prompt + completion != total:
        return "sum"
    if completion is not None and max_tokens is not None and completion > max_tokens * n:
        return "over_max"
    return None


def requested_max_tokens(body: Mapping[str, Any]) -> int | None:
    """The output cap per choice: `max_completion_tokens` wins over `max_tokens` (vLLM)."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            value = lax_int(value)
            return value if value is not None and value >= 1 else None
    return None


@oracle
def usage_consistent(scenario: Scenario, trace: Trace) -> list[Failure]:
    """Usage adds up (prompt + completion == total) and stays within `max_tokens` per
    choice, in bodies and in every stream chunk that carries usage."""
    out = []
    for spec, rt in pairs(scenario, trace):
        body = body_of(spec)
        cap, n = requested_max_tokens(body), requested_n(body) or 1
        for usage in _usages(spec, rt):
            problem = usage_problem(usage, cap, n)
            if problem is None:
                continue
            out.append(failure("usage_inconsistent", rt.status, "usage numbers do not add up",
                               detail=problem, request_id=rt.id,
                               summary=f"usage {dict(usage)} ({problem}; max_tokens={cap}, "
                                       f"n={n})",
                               evidence={"usage": head(json.dumps(usage, default=str)),
                                         "max_tokens": cap, "n": n, "stream": spec.stream}))
            break
    return out


def _tool_choice_mode(body: Mapping[str, Any]) -> str:
    choice = body.get("tool_choice")
    if choice == "none":
        return "none"
    return "auto" if body.get("tools") else "no_tools"


@oracle
def tool_calls_offered(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A tool call must name an offered function, whatever `tool_choice` says; with
    `tool_choice: "none"` or no tools at all there must be no tool call. Forced calls
    are judged in full by `forced_tool_calls_valid`, so they are skipped here."""
    out = []
    for spec, rt in pairs(scenario, trace):
        body = body_of(spec)
        if forced_tool_choice(body):
            continue
        mode, offered = _tool_choice_mode(body), offered_functions(body)
        for ch in response_choices(spec, rt) or []:
            bad = [c for c in ch["tool_calls"] or []
                   if mode != "auto" or _name(c) not in offered]
            if not bad:
                continue
            detail = f"{mode}:unexpected_call" if mode != "auto" else "auto:unknown_function"
            out.append(failure("tool_call_invalid", rt.status,
                               "tool call names a function that was not offered",
                               detail=detail, request_id=rt.id,
                               summary=f"choice {ch['index']}: tool call to {_name(bad[0])!r} "
                                       f"(offered {sorted(offered)}, tool_choice {mode})",
                               evidence={"choice": ch["index"], "offered": sorted(offered),
                                         "mode": mode, "call_head": head(json.dumps(bad[0])),
                                         "stream": spec.stream}))
    return out


def _name(call: Any) -> Any:
    fn = call.get("function") if isinstance(call, Mapping) else None
    return fn.get("name") if isinstance(fn, Mapping) else None
