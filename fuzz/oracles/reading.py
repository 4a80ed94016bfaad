"""Reading what the server answered: error messages, strict JSON, choices from a body or
reassembled from SSE deltas. Server output is untrusted, so nothing here assumes a shape."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from fuzz.model import Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.server_log import find_log_cause
from fuzz.signature import is_generic_message, make_signature, with_log_cause

EVIDENCE_CHARS = 2048


def head(text: str | None, limit: int = EVIDENCE_CHARS) -> str | None:
    """At most `limit` characters of `text`, for evidence."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """`json.loads` that also rejects NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=_reject_constant)


def parse_or_none(text: str | None) -> Any:
    try:
        return None if text is None else loads_strict(text)
    except ValueError:
        return None


def error_of(doc: Any) -> Mapping[str, Any] | None:
    """The error object in a vLLM error body or stream event, in either of its shapes
    (`{"error": {...}}` and the older `{"object": "error", "message": ...}`)."""
    if not isinstance(doc, Mapping):
        return None
    if "error" in doc:
        err = doc["error"]
        return err if isinstance(err, Mapping) else {"message": str(err)}
    if doc.get("object") == "error":
        return doc
    return None


def error_message(body: str | None) -> str:
    """`error.message` of a vLLM error body, FastAPI's `detail`, or the body's head."""
    doc = parse_or_none(body)
    err = error_of(doc)
    if err is not None and err.get("message") is not None:
        return str(err["message"])
    if isinstance(doc, Mapping) and "detail" in doc:
        return str(doc["detail"])
    return head(body, 300) or "(empty body)"


def failure(kind: str, status: int | None, message: str, *, detail: str = "",
            request_id: str | None = None, evidence: Mapping[str, Any] | None = None,
            summary: str | None = None) -> Failure:
    """A Failure whose signature is built from `message` and `detail`; `summary`, when
    given, is the human-readable message (it may carry values the signature folds)."""
    return Failure(kind=kind, signature=make_signature(kind, status, message, detail),
                   message=summary or message, request_id=request_id,
                   evidence=dict(evidence or {}))


def log_detail(trace: Trace, rt: RequestTrace, message: str, detail: str = ""
               ) -> tuple[str, dict[str, Any]]:
    """`detail` with the server log's cause appended (`|log:<cause>`) when `message` is
    generic and the log names a cause, plus its evidence; else `detail` unchanged and
    no evidence. Why: vLLM answers many different engine bugs with the same "Internal
    server error", which would make them one signature."""
    if not is_generic_message(message):
        return detail, {}
    found = find_log_cause(trace, rt)
    if found is None:
        return detail, {}
    return with_log_cause(detail, found.cause), {
        "log_cause": found.cause, "log_cause_by": "request id" if found.by_id else "only cause",
        "log_cause_lines": list(found.lines)}


def pairs(scenario: Scenario, trace: Trace) -> Iterator[tuple[RequestSpec, RequestTrace]]:
    """Each request spec with its trace, in scenario order (specs without one skipped)."""
    by_id = {r.id: r for r in trace.requests}
    for spec in scenario.requests:
        if spec.id in by_id:
            yield spec, by_id[spec.id]


def body_of(spec: RequestSpec) -> Mapping[str, Any]:
    return spec.body if isinstance(spec.body, Mapping) else {}


def complete_200(rt: RequestTrace) -> bool:
    """A 200 read to its end: the only kind of answer whose content can be judged."""
    return (rt.status == 200 and rt.error is None and rt.deadline is None
            and not rt.disconnected and not rt.body_truncated)


def response_choices(spec: RequestSpec, rt: RequestTrace) -> list[dict[str, Any]] | None:
    """Choices as `{"index", "finish_reason", "content", "tool_calls"}`, from the JSON body
    or reassembled from stream deltas; None when there is no complete 200 to judge."""
    if not complete_200(rt):
        return None
    if spec.stream:
        return _stream_choices(rt.events)
    doc = parse_or_none(rt.body)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("choices"), list):
        return None
    out = []
    for pos, ch in enumerate(doc["choices"]):
        if not isinstance(ch, Mapping):
            continue
        msg = ch.get("message") if isinstance(ch.get("message"), Mapping) else {}
        calls = msg.get("tool_calls")
        out.append({"index": ch.get("index", pos), "finish_reason": ch.get("finish_reason"),
                    "content": msg.get("content"),
                    "tool_calls": calls if isinstance(calls, list) else None})
    return out


def _stream_choices(events: tuple[str, ...]) -> list[dict[str, Any]]:
    acc: dict[Any, dict[str, Any]] = {}
    for ev in events:
        doc = parse_or_none(ev) if ev != "[DONE]" else None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("choices"), list):
            continue
        for ch in doc["choices"]:
            if not isinstance(ch, Mapping):
                continue
            slot = acc.setdefault(ch.get("index", 0), {"content": None, "calls": {},
                                                       "finish_reason": None})
            delta = ch.get("delta") if isinstance(ch.get("delta"), Mapping) else {}
            if isinstance(delta.get("content"), str):
                slot["content"] = (slot["content"] or "") + delta["content"]
            for pos, tc in enumerate(delta.get("tool_calls") or []):
                if isinstance(tc, Mapping):
                    _merge_call(slot["calls"], tc, pos)
            if ch.get("finish_reason") is not None:
                slot["finish_reason"] = ch["finish_reason"]
    return [{"index": idx, "finish_reason": s["finish_reason"], "content": s["content"],
             "tool_calls": [s["calls"][k] for k in sorted(s["calls"], key=str)] or None}
            for idx, s in acc.items()]


def _merge_call(calls: dict[Any, dict[str, Any]], delta: Mapping[str, Any], pos: int) -> None:
    """Fold one tool-call delta into the call at its `index`: the name arrives once, the
    arguments arrive in pieces."""
    call = calls.setdefault(delta.get("index", pos),
                            {"id": None, "type": "function",
                             "function": {"name": None, "arguments": ""}})
    if delta.get("id"):
        call["id"] = delta["id"]
    fn = delta.get("function") if isinstance(delta.get("function"), Mapping) else {}
    if fn.get("name") and not call["function"]["name"]:
        call["function"]["name"] = fn["name"]
    if isinstance(fn.get("arguments"), str):
        call["function"]["arguments"] += fn["arguments"]
