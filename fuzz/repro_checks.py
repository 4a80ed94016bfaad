"""The checks a bundle's `repro.py` runs: one per failure kind, in plain standard-library
Python, because repro.py must run with nothing but Python and aiohttp.

`repro_template` copies the source of the one check a bundle needs, and of the helpers
it calls, into that bundle's repro.py; `issue` runs the same check on the recorded
evidence. So the "actual" in ISSUE.md and repro.py's verdict come from one function.
They restate the oracles (`fuzz.oracles`) without vlfuzz or jsonschema; the tests hold
them to the oracles' verdicts.

Every check has the signature `check(pairs, after, failure, data) -> outcomes`:

- `pairs`: (req, res) per request. `req` is a request of bundle.json's scenario;
  `res` is what happened to it: `status`, `body` (text, non-streaming answers),
  `events` (SSE `data:` payloads), `content_type`, `error` (transport failure),
  `deadline`/`deadline_s` (the client deadline that cut it), `disconnected` (the client
  hung up on purpose), `body_truncated`, `took_s`, `sent_s` (after the scenario's
  start) and `event_times` (each event's seconds after sending);
- `after`: the server after the requests: `health_before`, `health`, `health_error`,
  `canary_ok`, `canary_error`, `metrics_before`, `metrics_after` (absent: not probed);
  for the isolation, interference and server-log checks also `alone` (request id ->
  results of that request run on its own) and
  `log_lines` (what the server's log gained meanwhile);
- `failure`: bundle.json's `failure`; `data`: what the check needs beyond the bundle;
- an outcome is `(where, verdict, expected, actual)`, verdict "fail", "pass" or
  "unjudged" (the answer gives nothing to judge, e.g. a 500 instead of a tool call).

Keep these functions free of imports other than the standard library's, and of module
globals other than functions of this module and of `fuzz.repro_schema` (whose
validator they use): that is what makes them copyable.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from typing import Any

from fuzz.repro_schema import json_kind, schema_problems, short

Outcome = tuple[str, str, str, str]
Check = Callable[..., list[Outcome]]


# --- reading answers ------------------------------------------------------------------


def loads_strict(text: str) -> Any:
    """json.loads that also refuses NaN and Infinity, which are not JSON."""
    def refuse(name: str) -> Any:
        raise ValueError(name + " is not valid JSON")
    return json.loads(text, parse_constant=refuse)


def parse_or_none(text: Any) -> Any:
    """The JSON value of `text`, or None when it is absent or not JSON."""
    try:
        return None if text is None else loads_strict(text)
    except (TypeError, ValueError):
        return None


def body_of(req: dict) -> dict:
    body = req.get("body")
    return body if isinstance(body, dict) else {}


def streamed(body: dict) -> bool:
    """Whether the server streams the answer: vLLM reads `stream` as pydantic's lax mode
    reads a bool (true/false, yes/no, on/off, t/f, y/n, 1/0 in any case, and 1/0)."""
    value = body.get("stream")
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return isinstance(value, str) and value.lower() in ("1", "on", "t", "true", "y", "yes")


def error_text(res: dict) -> str:
    """An error answer's `error.message` (vLLM's two shapes, FastAPI's `detail`), or the
    body's head."""
    doc = parse_or_none(res.get("body"))
    err = error_event(doc)
    if err is not None and err.get("message") is not None:
        return short(str(err["message"]), 300)
    if isinstance(doc, dict) and "detail" in doc:
        return short(str(doc["detail"]), 300)
    return short(res.get("body") or "(empty body)", 300)


def complete_200(res: dict) -> bool:
    """A 200 read to its end: the only kind of answer whose content can be judged."""
    return (res.get("status") == 200 and not res.get("error") and not res.get("deadline")
            and not res.get("disconnected") and not res.get("body_truncated"))


def why_unjudged(res: dict) -> str:
    """Why an answer's content cannot be judged (it is not a complete 200)."""
    if res.get("error"):
        return "no answer: " + str(res["error"])
    if res.get("deadline"):
        return "cut by the %s deadline (%ss)" % (res["deadline"], res.get("deadline_s"))
    if res.get("disconnected"):
        return "the client hung up mid-answer on purpose"
    if res.get("body_truncated"):
        return "the answer was too long to keep"
    if res.get("status") != 200:
        return "HTTP %s: %s" % (res.get("status"), error_text(res))
    return "no answer"


def stream_docs(res: dict) -> list:
    """The decoded events of a stream before `[DONE]` (None for unparsable ones)."""
    events = res.get("events") or []
    end = events.index("[DONE]") if "[DONE]" in events else len(events)
    return [parse_or_none(ev) for ev in events[:end]]


def error_event(doc: Any) -> Any:
    """The error object an SSE event carries, in either of vLLM's shapes, else None."""
    if not isinstance(doc, dict):
        return None
    if "error" in doc:
        return doc["error"] if isinstance(doc["error"], dict) else {"message": str(doc["error"])}
    return doc if doc.get("object") == "error" else None


def choices_of(req: dict, res: dict) -> Any:
    """Choices as {index, finish_reason, content, tool_calls}, from the body or put back
    together from stream deltas; None when there is no complete 200 to judge."""
    if not complete_200(res):
        return None
    if not streamed(body_of(req)):
        doc = parse_or_none(res.get("body"))
        if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
            return None
        out = []
        for pos, ch in enumerate(doc["choices"]):
            if isinstance(ch, dict):
                msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
                calls = msg.get("tool_calls")
                out.append({"index": ch.get("index", pos), "finish_reason": ch.get("finish_reason"),
                            "content": msg.get("content"),
                            "tool_calls": calls if isinstance(calls, list) else None})
        return out
    slots: dict = {}
    for doc in stream_docs(res):
        for ch in (doc.get("choices") if isinstance(doc, dict) else None) or []:
            if not isinstance(ch, dict):
                continue
            slot = slots.setdefault(ch.get("index", 0), {"content": None, "calls": {},
                                                         "finish_reason": None})
            delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str):
                slot["content"] = (slot["content"] or "") + delta["content"]
            for pos, tc in enumerate(delta.get("tool_calls") or []):
                if not isinstance(tc, dict):
                    continue
                call = slot["calls"].setdefault(tc.get("index", pos), {
                    "id": None, "type": "function", "function": {"name": None, "arguments": ""}})
                fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
                if fn.get("name") and not call["function"]["name"]:
                    call["function"]["name"] = fn["name"]
                if isinstance(fn.get("arguments"), str):
                    call["function"]["arguments"] += fn["arguments"]
            if ch.get("finish_reason") is not None:
                slot["finish_reason"] = ch["finish_reason"]
    return [{"index": i, "finish_reason": s["finish_reason"], "content": s["content"],
             "tool_calls": [s["calls"][k] for k in sorted(s["calls"], key=str)] or None}
            for i, s in slots.items()]


# --- one check per failure kind -----------------------------------------------------------


def check_no_server_error(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Every request is answered without a 5xx."""
    out = []
    for req, res in pairs:
        status = res.get("status")
        if status is None:
            out.append((req["id"], "unjudged", "an answer without a 5xx", why_unjudged(res)))
        elif status >= 500:
            out.append((req["id"], "fail", "an answer without a 5xx",
                        "HTTP %s: %s" % (status, error_text(res))))
        else:
            out.append((req["id"], "pass", "an answer without a 5xx", "HTTP %s" % status))
    return out


def check_no_transport_failure(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """The connection is not refused, reset or cut short (unless the client hung up on
    purpose or one of its deadlines cut the request)."""
    out = []
    for req, res in pairs:
        expected = "a complete HTTP answer"
        if res.get("error") and not res.get("deadline") and not res.get("disconnected"):
            out.append((req["id"], "fail", expected, "connection failed: " + res["error"]))
        elif res.get("deadline"):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
        else:
            out.append((req["id"], "pass", expected, "HTTP %s" % res.get("status")))
    return out


def check_no_hang(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Every request gets its first byte, keeps streaming, and ends within the client's
    deadlines (first byte, stall between chunks, total)."""
    out = []
    for req, res in pairs:
        expected = "an answer within the deadlines"
        if res.get("deadline"):
            out.append((req["id"], "fail", expected, "the %s deadline (%ss) fired" % (
                res["deadline"], res.get("deadline_s"))))
        elif res.get("error"):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
        else:
            out.append((req["id"], "pass", expected, "HTTP %s after %.2fs" % (
                res.get("status"), res.get("took_s") or 0.0)))
    return out


def check_answered(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Every request is answered: no 5xx, no failed connection, no deadline fired. (This
    script has no check of its own for this failure's kind, so it cannot tell that the
    failure is gone; it only reports these basic problems.)"""
    out = []
    for req, res in pairs:
        expected = "an answer (no 5xx, no transport failure, no hang)"
        if res.get("deadline") or (res.get("error") and not res.get("disconnected")) or (
                res.get("status") or 0) >= 500:
            out.append((req["id"], "fail", expected, why_unjudged(res)))
        else:
            out.append((req["id"], "unjudged", expected, "HTTP %s" % res.get("status")))
    return out


def check_body_is_json(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """A complete 200 answer to a non-streaming JSON API request is one valid JSON
    document (not an event stream, not cut, no NaN)."""
    out = []
    json_paths = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize",
                  "/detokenize")
    for req, res in pairs:
        if streamed(body_of(req)):
            continue
        if req.get("path", "/v1/chat/completions") not in json_paths and "json" not in (
                res.get("content_type") or ""):
            continue
        expected = "a body that is valid JSON"
        if not complete_200(res):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
        elif res.get("body") is None:
            out.append((req["id"], "fail", expected,
                        "an event stream, for a request that did not ask to stream"))
        else:
            try:
                loads_strict(res["body"])
                out.append((req["id"], "pass", expected, "valid JSON"))
            except ValueError as e:
                out.append((req["id"], "fail", expected, "not JSON (%s): %s" % (
                    e, short(res["body"], 120))))
    return out


def readable_error(text: Any) -> str:
    """"HTTP 500: {json error body}" with the body reduced to its message."""
    match = re.match(r"^(HTTP \d+): (.*)$", str(text), re.S)
    if not match:
        return str(text)
    return "%s: %s" % (match.group(1), error_text({"body": match.group(2)}))


def check_server_alive(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """After the requests, the server stays healthy: `GET /health` answers 200 and a small
    chat completion (4 tokens) succeeds."""
    expected = ("the server stays healthy: /health answers 200 and a small chat completion "
                "succeeds after the requests")
    if after.get("health_before") not in (None, 200):
        return [("server", "unjudged", expected, "/health was already %s before the requests"
                 % after["health_before"])]
    if "health" not in after:
        return [("server", "unjudged", expected, "the server was not probed")]
    if after["health"] != 200:
        canary = ("; a chat completion then got %s" % readable_error(after["canary_error"])
                  if after.get("canary_error") else "")
        return [("server", "fail", expected, "/health answered %s%s" % (
            after["health"] if after["health"] is not None else "nothing (" + str(
                after.get("health_error")) + ")", canary))]
    if after.get("canary_ok") is False:
        return [("server", "fail", expected, "/health is 200 but a chat completion failed: %s"
                 % readable_error(after.get("canary_error")))]
    return [("server", "pass", expected, "/health 200" + (
        " and a chat completion worked" if after.get("canary_ok") else ""))]


def check_no_leak(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Once the requests are over and the server had time to settle, `/metrics` shows
    no request running or waiting and KV cache use back at its idle level (+2%)."""
    expected = "no running or waiting requests, KV cache use at its idle level"
    before, now = after.get("metrics_before"), after.get("metrics_after")
    if not before or not now:
        return [("server", "unjudged", expected, "/metrics could not be read")]
    problems = ["%s %s requests" % (now[key], key) for key in ("running", "waiting")
                if now.get(key, 0.0) > 0]
    kv_before, kv_now = before.get("kv_cache_usage"), now.get("kv_cache_usage")
    if kv_before is not None and kv_now is not None and kv_now > kv_before + 0.02:
        problems.append("KV cache use %.1f%% (idle: %.1f%%)" % (100 * kv_now, 100 * kv_before))
    if problems:
        return [("server", "fail", expected, ", ".join(problems))]
    return [("server", "pass", expected, "idle")]


def requested_schema(body: dict) -> Any:
    """The JSON schema a request's output must follow, or None."""
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        js = rf.get("json_schema")
        return js.get("schema") if isinstance(js, dict) else None
    so = body.get("structured_outputs")
    if isinstance(so, dict) and "json" in so:
        return parse_or_none(so["json"]) if isinstance(so["json"], str) else so["json"]
    return None


def check_structured_output(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """With a JSON schema requested (`response_format` json_schema or
    `structured_outputs.json`), output that stopped on its own (`finish_reason` "stop")
    parses as JSON and validates against the schema."""
    out = []
    for req, res in pairs:
        schema = requested_schema(body_of(req))
        if schema is None:
            continue
        expected = "content that is JSON valid against the requested schema"
        choices = choices_of(req, res)
        if choices is None:
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        for ch in choices:
            where = "%s choice %s" % (req["id"], ch["index"])
            content = ch["content"]
            if ch["finish_reason"] != "stop":
                out.append((where, "unjudged", expected, "finish_reason %s: not judged, only "
                            "output that stopped on its own must be complete" % ch["finish_reason"]))
            elif not isinstance(content, str):
                out.append((where, "fail", expected, "no content"))
            else:
                try:
                    problems = schema_problems(loads_strict(content), schema)
                except ValueError:
                    problems = ["not JSON: " + short(content, 160)]
                out.append((where, "fail" if problems else "pass", expected,
                            "; ".join(problems[:3]) if problems else "valid: " + short(content, 80)))
    return out


def forced_tool_choice(body: dict) -> Any:
    """("required", None) or ("named", name) when the request forces a tool call."""
    choice = body.get("tool_choice")
    if choice == "required":
        return ("required", None)
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return ("named", fn["name"])
    return None


def offered_functions(body: dict) -> dict:
    """Offered function name -> its `parameters` schema."""
    out = {}
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters", {"type": "object"})
    return out


def tool_call_problem(call: Any, offered: dict, named: Any) -> Any:
    """Why a forced tool call is wrong, as (code, what was seen), or None."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return ("no_function", "a tool call without a function: " + short(call, 120))
    name, raw = fn.get("name"), fn.get("arguments")
    if name not in offered:
        return ("unknown_function", "a call to %r, which was not offered" % (name,))
    if named is not None and name != named:
        return ("wrong_function", "a call to %r instead of %r" % (name, named))
    shown = short(json.dumps(raw) if isinstance(raw, str) else raw, 120)
    try:
        args = loads_strict(raw) if isinstance(raw, str) else raw
    except ValueError:
        return ("arguments_not_json", "arguments %s, which is not JSON" % shown)
    if not isinstance(args, dict):
        return ("arguments_not_object", "arguments %s, which is JSON %s, not an object" % (
            shown, json_kind(args)))
    problems = schema_problems(args, offered[name])
    if problems:
        return ("invalid_arguments", "arguments %s: %s" % (shown, "; ".join(problems[:3])))
    return None


def call_name(call: Any) -> Any:
    fn = call.get("function") if isinstance(call, dict) else None
    return fn.get("name") if isinstance(fn, dict) else None


def check_tool_calls(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """A forced tool call (`tool_choice` "required" or a named function) happens, calls
    an offered function (the named one) and has `arguments` that are a JSON object valid
    against that function's `parameters`; an unforced call names an offered function,
    and with `tool_choice` "none" or no tools there is no call."""
    out = []
    for req, res in pairs:
        body = body_of(req)
        concerned = bool(body.get("tools")) or body.get("tool_choice") is not None
        forced, offered = forced_tool_choice(body), offered_functions(body)
        if forced and forced[0] == "named":
            expected = ("a call to %s with arguments that are a JSON object valid against its "
                        "parameters" % forced[1])
        elif forced:
            expected = "a tool call with arguments valid against the function's parameters"
        elif body.get("tool_choice") == "none" or not body.get("tools"):
            expected = "no tool call (tool_choice %s)" % body.get("tool_choice", "absent, no tools")
        else:
            expected = "tool calls, if any, to offered functions (%s)" % ", ".join(sorted(offered))
        choices = choices_of(req, res)
        if choices is None:
            if concerned:
                out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        for ch in choices:
            where = "%s choice %s" % (req["id"], ch["index"])
            calls = ch["tool_calls"] or []
            if forced and ch["finish_reason"] not in ("stop", "tool_calls"):
                out.append((where, "unjudged", expected, "finish_reason %s: the call may be "
                            "incomplete" % ch["finish_reason"]))
            elif forced and not calls:
                out.append((where, "fail", expected, "no tool call; content: " + short(
                    ch["content"] or "", 120)))
            elif forced:
                found = [p for p in (tool_call_problem(c, offered, forced[1]) for c in calls) if p]
                out.append((where, "fail", expected, "%s (finish_reason %s) [%s]" % (
                    found[0][1], ch["finish_reason"], found[0][0])) if found else (
                    where, "pass", expected, "%d valid call(s)" % len(calls)))
            else:
                allowed = body.get("tools") and body.get("tool_choice") != "none"
                bad = [c for c in calls if not allowed or call_name(c) not in offered]
                if bad:
                    out.append((where, "fail", expected, "a tool call: " + short(bad[0], 160)))
                elif concerned:
                    out.append((where, "pass", expected, "%d call(s)" % len(calls)))
    return out


def check_stream(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """A 200 stream is a sequence of JSON events ending with `data: [DONE]`, carries no
    error event, and ends with a usage chunk when `stream_options.include_usage` is set."""
    out = []
    for req, res in pairs:
        body = body_of(req)
        if not streamed(body) or res.get("disconnected"):
            continue  # a stream the client hung up on is not judged
        expected = "JSON events, no error event, then [DONE]"
        if not (res.get("status") == 200 and not res.get("error") and not res.get("deadline")):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        events = res.get("events") or []
        if res.get("body") is not None and not events:
            out.append((req["id"], "fail", expected, "not an event stream: " + short(
                res["body"], 120)))
            continue
        docs = stream_docs(res)
        problems = []
        bad = [ev for ev, doc in zip(events, docs) if doc is None and ev.strip() != "null"]
        if bad:
            problems.append("an event that is not JSON: " + short(bad[0], 120))
        errors = [e for e in map(error_event, docs) if e is not None]
        if errors:
            problems.append("the 200 stream carried an error event: " + short(
                errors[0].get("message"), 200))
        if "[DONE]" not in events:
            problems.append("no [DONE] at the end (%d events)" % len(events))
        elif events.index("[DONE]") != len(events) - 1:
            problems.append("events after [DONE]")
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage") is True and not errors and docs \
                and docs[-1] is not None and not (isinstance(docs[-1], dict) and isinstance(
                    docs[-1].get("usage"), dict)):
            problems.append("include_usage was asked but the last chunk has no usage")
        out.append((req["id"], "fail" if problems else "pass", expected,
                    "; ".join(problems) if problems else "%d events, then [DONE]" % len(docs)))
    return out


def check_choice_count(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """A 200 answer carries exactly `n` choices (1 when `n` is absent), indexed 0..n-1."""
    out = []
    for req, res in pairs:
        n = 1 if body_of(req).get("n") is None else as_count(body_of(req)["n"])
        if n is None or n < 1:
            continue
        expected = "%d choice(s), indexed 0..%d" % (n, n - 1)
        if not complete_200(res):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        if streamed(body_of(req)):
            docs = stream_docs(res)
            if any(error_event(d) is not None for d in docs):
                out.append((req["id"], "unjudged", expected, "the stream carries an error event"))
                continue
            indices = []
            for doc in docs:
                for ch in (doc.get("choices") if isinstance(doc, dict) else None) or []:
                    idx = ch.get("index") if isinstance(ch, dict) else None
                    if idx not in indices:
                        indices.append(idx)
        else:
            doc = parse_or_none(res.get("body"))
            if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
                out.append((req["id"], "unjudged", expected, "no choices list in the body"))
                continue
            indices = [ch.get("index") if isinstance(ch, dict) else None for ch in doc["choices"]]
        ok = sorted(map(str, indices)) == sorted(map(str, range(n)))
        out.append((req["id"], "pass" if ok else "fail", expected,
                    "%d choice(s), indices %s" % (len(indices), short(indices, 80))))
    return out


def as_count(value: Any) -> Any:
    """`value` if it is a JSON integer (booleans are not counts), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_problem(usage: dict, cap: Any, n: int) -> Any:
    """Why a usage object is wrong, or None."""
    prompt, completion, total = (as_count(usage.get(k)) for k in (
        "prompt_tokens", "completion_tokens", "total_tokens"))
    if None not in (prompt, completion, total) and prompt + completion != total:
        return "prompt_tokens %d + completion_tokens %d != total_tokens %d" % (
            prompt, completion, total)
    if completion is not None and cap is not None and completion > cap * n:
        return "completion_tokens %d > max_tokens %d x n %d" % (completion, cap, n)
    return None


def check_usage(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Usage adds up (prompt + completion == total) and stays within `max_tokens` per
    choice, in the body and in every stream chunk that carries usage."""
    out = []
    for req, res in pairs:
        body = body_of(req)
        cap = as_count(next((body[k] for k in ("max_completion_tokens", "max_tokens")
                             if body.get(k) is not None), None))
        cap = cap if cap is not None and cap >= 1 else None
        n = as_count(body.get("n"))
        n = n if n is not None and n >= 1 else 1
        expected = "usage that adds up, within max_tokens"
        if not complete_200(res):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        docs = stream_docs(res) if streamed(body) else [parse_or_none(res.get("body"))]
        usages = [d["usage"] for d in docs if isinstance(d, dict) and isinstance(d.get("usage"),
                                                                                 dict)]
        problems = [p for p in (usage_problem(u, cap, n) for u in usages) if p]
        if problems:
            out.append((req["id"], "fail", expected, problems[0]))
        elif usages:
            out.append((req["id"], "pass", expected, short(usages[-1], 120)))
    return out


def check_response_shape(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Answers have the OpenAI shape (`data["shape"]`): a complete 200 body is a
    chat.completion, each stream event a chat.completion.chunk, a JSON 4xx body an
    error object; checked against the schema in `data["schema"]`."""
    out = []
    shape, schema, docs = data.get("shape"), data.get("schema"), data.get("documents")
    for req, res in pairs:
        if req.get("path", "/v1/chat/completions") != "/v1/chat/completions":
            continue
        expected = "a valid %s" % shape
        status = res.get("status")
        if shape == "error":
            if status is None or not 400 <= status < 500 or res.get("body_truncated"):
                continue
            found = [parse_or_none(res.get("body"))]
            found = [d for d in found if isinstance(d, dict)]
        elif not complete_200(res):
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
            continue
        elif shape == "chat.completion.chunk":
            if not streamed(body_of(req)):
                continue
            found = [d for d in stream_docs(res) if d is not None and error_event(d) is None]
        else:
            if streamed(body_of(req)):
                continue
            found = [d for d in [parse_or_none(res.get("body"))] if d is not None]
        problems = [p for d in found for p in schema_problems(d, schema, docs)]
        if found:
            out.append((req["id"], "fail" if problems else "pass", expected,
                        "; ".join(problems[:3]) if problems else "valid"))
    return out


def check_spec_rule(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """The request recorded in the bundle is refused with a 4xx when the API spec says it
    must be, and served when the spec says it must be accepted (rule in the evidence)."""
    evidence = failure.get("evidence") or {}
    rule, expect = evidence.get("rule"), evidence.get("expect")
    out = []
    for req, res in pairs:
        if req["id"] != failure.get("request_id"):
            continue
        status = res.get("status")
        expected = ("a 4xx refusal (%s)" if expect == "reject" else "no 4xx refusal (%s)") % rule
        if status is None or status >= 500:
            out.append((req["id"], "unjudged", expected, why_unjudged(res)))
        elif expect == "reject":
            out.append((req["id"], "pass" if 400 <= status < 500 else "fail", expected,
                        "HTTP %s" % status))
        else:
            out.append((req["id"], "fail" if 400 <= status < 500 else "pass", expected,
                        "HTTP %s: %s" % (status, error_text(res)) if status >= 400
                        else "HTTP %s" % status))
    return out


# --- answers compared with the same requests alone, and the server's log ----------------
#
# These checks need more than the scenario's answers: `after["alone"]` holds, per request
# id, the results of that request run on its own (`alone_requests` says which), and
# `after["log_lines"]` what the server logged meanwhile. Without them they judge nothing.


def is_greedy_probe(req: dict) -> bool:
    """A greedy chat request with logprobs and one choice, read to its end: the only
    kind whose answers alone and in a crowd can be compared token by token."""
    body = body_of(req)
    temperature = body.get("temperature")
    return (req.get("path", "/v1/chat/completions") == "/v1/chat/completions"
            and str(req.get("method", "POST")).upper() == "POST"
            and req.get("disconnect_after_chunks") is None
            and temperature == 0 and not isinstance(temperature, bool)
            and body.get("logprobs") is True and body.get("n", 1) in (1, None))


def alone_requests(requests: list, failure: dict, data: dict) -> list:
    """The ids of the requests to run on their own before the scenario: the victim of
    a slowdown, or the greedy requests an isolation finding is about."""
    if data.get("victim"):
        return [data["victim"]]
    if not data.get("needs_alone"):
        return []
    subjects = data.get("subjects") or []
    return [req["id"] for req in requests if req["id"] in subjects and is_greedy_probe(req)]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def first_choice(doc: Any) -> Any:
    """The choice with index 0 of a completion or chunk, else None."""
    choices = doc.get("choices") if isinstance(doc, dict) else None
    for ch in choices if isinstance(choices, list) else []:
        if isinstance(ch, dict) and ch.get("index", 0) == 0:
            return ch
    return None


def logprob_steps(choice: dict) -> Any:
    """A choice's logprobs as [token, logprob, [[token, logprob], ...] best first] per
    position; [] without logprobs, None when they are malformed."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if content is None:
        return []
    if not isinstance(content, list):
        return None
    steps = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str) \
                or not is_number(entry.get("logprob")):
            return None
        top = [[alt["token"], float(alt["logprob"])] for alt in entry.get("top_logprobs") or []
               if isinstance(alt, dict) and isinstance(alt.get("token"), str)
               and is_number(alt.get("logprob"))]
        top.sort(key=lambda t: -t[1])
        steps.append([entry["token"], float(entry["logprob"]), top])
    return steps


def token_answer_of(req: dict, res: dict) -> Any:
    """The first choice of a complete 200 as {"steps", "text", "finish"} (see
    `logprob_steps`), or None: no complete answer, or text without logprobs."""
    if not complete_200(res):
        return None
    steps, text, finish = [], "", None
    if streamed(body_of(req)):
        seen = False
        for doc in stream_docs(res):
            ch = first_choice(doc)
            if ch is None:
                continue
            seen, more = True, logprob_steps(ch)
            if more is None:
                return None
            steps += more
            delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
            text += delta["content"] if isinstance(delta.get("content"), str) else ""
            finish = ch.get("finish_reason") or finish
        if not seen:
            return None
    else:
        ch = first_choice(parse_or_none(res.get("body")))
        steps = logprob_steps(ch) if ch is not None else None
        if steps is None:
            return None
        msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
        text = msg["content"] if isinstance(msg.get("content"), str) else ""
        finish = ch.get("finish_reason")
    if not steps and text:
        return None
    return {"steps": steps, "text": text, "finish": finish}


def step_margin(step: list) -> float:
    """How far the chosen token led the runner-up, in nats (0 when it was not the top
    one; bounded by 1 - p when no runner-up is listed)."""
    token, logprob, top = step
    if top and top[0][0] != token and top[0][1] > logprob:
        return 0.0
    others = [lp for _, lp in top]
    mine = [i for i, (tok, _) in enumerate(top) if tok == token]
    if mine:
        del others[mine[0]]
    if others:
        return max(0.0, logprob - max(others))
    rest = 1.0 - math.exp(min(logprob, 0.0))
    return math.inf if rest <= 0.0 else max(0.0, logprob - math.log(rest))


def step_lead(step: list, token: str) -> float:
    """How far the chosen token led `token` here, in nats (a lower bound when `token`
    is not listed)."""
    if token == step[0]:
        return 0.0
    listed = [lp for tok, lp in step[2] if tok == token]
    if listed:
        return max(0.0, step[1] - max(listed))
    if step[2]:
        return max(0.0, step[1] - min(lp for _, lp in step[2]))
    return step_margin(step)


def first_difference(ref: dict, other: dict) -> Any:
    """(position, the reference's lead over its runner-up there, its lead over the token
    `other` chose) where `other` leaves `ref`; leads None when `ref` ended first; None
    when both have the same tokens."""
    for pos, (a, b) in enumerate(zip(ref["steps"], other["steps"])):
        if a[0] != b[0]:
            return (pos, step_margin(a), step_lead(a, b[0]))
    pos = min(len(ref["steps"]), len(other["steps"]))
    if len(ref["steps"]) == len(other["steps"]):
        return None
    margin = step_margin(ref["steps"][pos]) if pos < len(ref["steps"]) else None
    return (pos, margin, margin)


def tokens_text(answer: dict, start: int, stop: int) -> str:
    return "".join(step[0] for step in answer["steps"][max(start, 0):max(stop, 0)])


def divergence(alone: list, got: dict, threshold: float) -> Any:
    """Where `got` leaves its alone answers by more than natural variance explains (the
    alone top token led the one chosen by more than `threshold` nats), reported against
    the alone answer it followed longest; None when any alone answer explains it."""
    found = None
    for ref in alone:
        diff = first_difference(ref, got)
        if diff is None or diff[1] is None or diff[2] is None or diff[2] <= threshold:
            return None
        pos = diff[0]
        if found is None or pos > found["position"]:
            found = {"position": pos, "margin": diff[1], "lead": diff[2],
                     "alone_token": ref["steps"][pos][0],
                     "got_token": got["steps"][pos][0] if pos < len(got["steps"]) else None,
                     "context": tokens_text(ref, pos - 16, pos),
                     "alone_continuation": tokens_text(ref, pos, pos + 16),
                     "got_continuation": tokens_text(got, pos, pos + 16)}
    return found


def agrees(ref: dict, other: dict, threshold: float, min_tokens: int = 1) -> bool:
    """`other` is `ref`'s answer: the same tokens, or the same first `min_tokens` and
    then a flip within natural variance."""
    diff = first_difference(ref, other)
    if diff is None:
        return len(ref["steps"]) >= min_tokens
    return diff[0] >= min_tokens and diff[2] is not None and diff[2] <= threshold


def answers_apart(a: list, b: list, threshold: float) -> bool:
    """Alone, two requests answer differently (no answer of one is the other's)."""
    return bool(a and b) and not any(agrees(y, x, threshold, 4) for x in a for y in b) \
        and not any(agrees(x, y, threshold, 4) for x in a for y in b)


def strings_in(value: Any) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def output_text(req: dict, res: dict) -> Any:
    """Everything a complete answer says (content, tool names and arguments), or None."""
    choices = choices_of(req, res)
    if choices is None:
        return None
    parts = []
    for ch in choices:
        parts.append(ch["content"] or "")
        for call in ch["tool_calls"] or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                parts += [str(fn.get("name") or ""), str(fn.get("arguments") or "")]
    return "\n".join(parts)


def foreign_canaries(pairs: list, subjects: list) -> list:
    """A canary (a unique code planted in one request's prompt) in the output of a
    request it was not planted in: its prompt or output leaked across requests. The
    `subjects` are also reported when they pass, or cannot be judged."""
    pattern = r"vlfuzz-canary-[0-9a-f]{12}"
    planted = {req["id"]: set(re.findall(pattern, " ".join(strings_in(req.get("body")))))
               for req, _ in pairs}
    expected = "no canary planted in another request in the output"
    out = []
    for req, res in pairs:
        text = output_text(req, res)
        if text is None:
            if req["id"] in subjects:
                out.append((req["id"] + " canary", "unjudged", expected, why_unjudged(res)))
            continue
        for found in sorted(set(re.findall(pattern, text)) - planted[req["id"]]):
            sources = sorted(i for i, c in planted.items() if found in c)
            out.append((req["id"] + " canary", "fail", expected, "the output holds %s, planted "
                        "in %s" % (found, ", ".join(sources) or "no request of this scenario")))
        if req["id"] in subjects and not any(o[0] == req["id"] + " canary" for o in out):
            out.append((req["id"] + " canary", "pass", expected, "none"))
    return out


def media_of(req: dict) -> set:
    return {s for s in strings_in(req.get("body")) if s.startswith("vlfuzz-media:")}


def no_answer_because(res: dict) -> str:
    return "HTTP 200 without logprobs" if complete_200(res) else why_unjudged(res)


def check_isolation(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """Each greedy request the failure is about answers in the scenario as it does alone:
    the same tokens, or a first difference where natural variance can flip a near-tie
    (the alone answer's top token led the one chosen by no more than the threshold
    vlfuzz measured on the quiet server); it does not answer what another request answers
    alone; and no output holds a canary planted in another request."""
    threshold = data.get("threshold")
    threshold = math.inf if threshold is None else threshold
    runs = after.get("alone") or {}
    by_id = {req["id"]: (req, res) for req, res in pairs}
    expected = ("the answer it gives alone (a first difference only where natural variance "
                "flips a near-tie: a lead of at most %.3g nats)" % threshold)
    got, alone, out = {}, {}, []
    for rid in alone_requests([req for req, _ in pairs], failure, data):
        req, res = by_id[rid]
        answers = [a for a in (token_answer_of(req, r) for r in runs.get(rid) or []) if a]
        mine = token_answer_of(req, res)
        if not answers:
            why = no_answer_because(runs[rid][0]) if runs.get(rid) else "it was not run alone"
            out.append((rid, "unjudged", expected, "no greedy answer with logprobs alone: " + why))
            continue
        if mine is None:
            out.append((rid, "unjudged", expected, "no greedy answer with logprobs in the "
                        "scenario: " + no_answer_because(res)))
            continue
        got[rid], alone[rid] = mine, answers
        d = divergence(answers, mine, threshold)
        if d is None:
            same = any(first_difference(a, mine) is None for a in answers)
            out.append((rid, "pass", expected, "the same %d tokens as alone" % len(
                mine["steps"]) if same else "a first difference within natural variance"))
            continue
        after_text = "after %r" % d["context"] if d["context"] else "at the start"
        here = ("the answer ended there" if d["got_token"] is None else "it chose %r, which "
                "alone trailed by %.3g nats" % (d["got_token"], d["lead"]))
        out.append((rid, "fail", expected, "position %d: alone it chose %r (%.3g nats ahead of "
                    "its runner-up), in the scenario %s; %s, alone it went on %r, in the "
                    "scenario %r" % (d["position"], d["alone_token"], d["margin"], here,
                                     after_text, d["alone_continuation"],
                                     d["got_continuation"])))
    moved = {rid for rid in got if divergence(alone[rid], got[rid], threshold) is not None}
    ids = list(got)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if not ({a, b} & moved) or not answers_apart(alone[a], alone[b], threshold):
                continue
            images = (media_of(by_id[a][0]), media_of(by_id[b][0]))
            if images[0] and images[1] and images[0] != images[1] \
                    and agrees(got[a], got[b], threshold, 4):
                out.append(("%s %s" % (a, b), "fail", "different answers for different images",
                            "both answered %r, while alone they answer differently"
                            % tokens_text(got[a], 0, 24)))
                continue
            for x, y in ((a, b), (b, a)):
                if x in moved and any(agrees(r, got[x], threshold, 4) for r in alone[y]):
                    out.append((x, "fail", "its own answer, not another request's",
                                "it answered %r, which is what %s answers alone" % (
                                    tokens_text(got[x], 0, 24), y)))
    shown = (data.get("subjects") or []) if data.get("canary") else []
    return out + foreign_canaries(pairs, shown)


def median(values: list) -> Any:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def carries_token(event: str) -> bool:
    """An SSE event that delivers output (content, a tool call or token logprobs)."""
    doc = parse_or_none(event) if event != "[DONE]" else None
    choices = doc.get("choices") if isinstance(doc, dict) else None
    for ch in choices if isinstance(choices, list) else []:
        delta = ch.get("delta") if isinstance(ch, dict) else None
        logprobs = ch.get("logprobs") if isinstance(ch, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
        if isinstance(logprobs, dict) and logprobs.get("content"):
            return True
    return False


def latency_of(req: dict, res: dict) -> Any:
    """A complete answer's timing: time to first token and per output token (streams
    timed event by event), end to end; None for anything but a complete 200."""
    if not complete_200(res) or res.get("took_s") is None:
        return None
    sample = {"ttft_s": None, "tpot_s": None, "e2e_s": res["took_s"]}
    events, times = res.get("events") or [], res.get("event_times")
    if not streamed(body_of(req)) or times is None or len(times) != len(events):
        return sample
    marks = [t for ev, t in zip(events, times) if carries_token(ev)]
    if marks:
        sample["ttft_s"] = marks[0]
        sample["tpot_s"] = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else None
    return sample


def fair_measure(sample: dict, metric: str) -> Any:
    """What the fairness guard compares for a slowed `metric`: the wait (time to first
    token, else end to end) for time to first token, end to end otherwise."""
    if metric == "ttft_s":
        return sample["ttft_s"] if sample.get("ttft_s") is not None else sample.get("e2e_s")
    return sample.get("e2e_s")


def neighbour_ratio(observed: list, neighbours: Any, metric: str, resolution_s: float) -> Any:
    """The median over runs of the victim's measure / its neighbours' median measure
    (`neighbours[i]`: the neighbours' samples in the run of `observed[i]`), over the runs
    that have both; None when none has."""
    ratios = []
    for sample, beside in zip(observed, neighbours or []):
        mine = fair_measure(sample, metric)
        theirs = [v for v in (fair_measure(n, metric) for n in beside or []) if v is not None]
        if mine is not None and theirs:
            ratios.append(mine / max(median(theirs), resolution_s, 1e-9))
    return median(ratios)


def neighbours_of(pairs: list, victim: str, window_s: float) -> list:
    """The latencies of the victim's neighbours in one run: every other request answered
    with a complete 200, sent no later than `window_s` after the victim and ended no
    earlier than the victim was sent."""
    by_id = {req["id"]: res for req, res in pairs}
    mine = by_id.get(victim) or {}
    sent = mine.get("sent_s")
    if sent is None:
        return []
    out = []
    for req, res in pairs:
        start, took = res.get("sent_s"), res.get("took_s")
        if req["id"] == victim or start is None or took is None or start + took < sent \
                or start > sent + window_s:
            continue
        sample = latency_of(req, res)
        if sample is not None:
            out.append(sample)
    return out


def slowdown(alone: list, observed: list, rule: dict, neighbours: Any = None) -> Any:
    """The worst metric whose observed median exceeds `factor` x the alone median and
    the alone median by more than the rule's floor, else None. A rule with a
    `neighbour_factor` (the fairness guard) lets a metric pass when the victim took no
    more than that factor as long as its `neighbours` (one list per observed run)."""
    worst = None
    guard = rule.get("neighbour_factor")
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        base = median([s[metric] for s in alone])
        seen = median([s[metric] for s in observed])
        if base is None or seen is None:
            continue
        floor = rule["min_excess_tpot_s"] if metric == "tpot_s" else rule["min_excess_s"]
        if seen > rule["factor"] * max(base, rule["resolution_s"]) and seen - base > floor:
            fair = (neighbour_ratio(observed, neighbours, metric, rule["resolution_s"])
                    if guard is not None else None)
            if fair is not None and fair <= guard:
                continue  # no worse off than its neighbours: the whole batch was slow
            ratio = seen / max(base, rule["resolution_s"], 1e-9)
            if worst is None or ratio > worst["ratio"]:
                worst = {"metric": metric, "alone": base, "seen": seen, "ratio": ratio,
                         "neighbour_ratio": fair}
    return worst


def check_interference(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """The victim request is not starved by the requests beside it: its time to first
    token, time per output token and end-to-end latency stay within the recorded factor
    of its median latency alone (or, if not, within an absolute margin above it: under
    load some slowdown is the price of batching)."""
    victim, rule = data.get("victim"), data.get("rule")
    by_id = {req["id"]: (req, res) for req, res in pairs}
    if not rule or victim not in by_id:
        return [(str(victim), "unjudged", "", "the bundle records no slowdown rule or victim")]
    expected = ("latency within %gx its median alone, or less than %gs above it (%gs per "
                "output token)" % (rule["factor"], rule["min_excess_s"],
                                   rule["min_excess_tpot_s"]))
    req, res = by_id[victim]
    alone = [s for s in (latency_of(req, r) for r in (after.get("alone") or {}).get(
        victim) or []) if s]
    mine = latency_of(req, res)
    if not alone:
        runs = (after.get("alone") or {}).get(victim)
        return [(victim, "unjudged", expected, "no complete answer alone: " + (
            why_unjudged(runs[0]) if runs else "it was not run alone"))]
    if mine is None:
        return [(victim, "unjudged", expected, "no complete answer in the scenario: "
                 + why_unjudged(res))]
    guard = rule.get("neighbour_factor")
    beside = ([neighbours_of(pairs, victim, rule.get("neighbour_window_s", 1.0))]
              if guard is not None else None)
    worst = slowdown(alone, [mine], rule, beside)
    metric = worst["metric"] if worst else data.get("metric") or "e2e_s"
    base = median([s.get(metric) for s in alone])
    if base is None or mine.get(metric) is None:
        metric, base = "e2e_s", median([s["e2e_s"] for s in alone])
    names = {"ttft_s": "time to first token", "tpot_s": "time per output token",
             "e2e_s": "end-to-end latency"}
    recorded = (" (recorded: %.1fx)" % data["ratio"]) if is_number(data.get("ratio")) else ""
    actual = "%s alone: median %.1f ms over %d runs; in the scenario: %.1f ms, %.1fx%s" % (
        names[metric], 1000 * base, len(alone), 1000 * mine[metric],
        mine[metric] / max(base, rule["resolution_s"], 1e-9), recorded)
    fair = neighbour_ratio([mine], beside, metric, rule["resolution_s"]) if beside else None
    if fair is not None:
        expected += ", or no more than %gx as long as the requests beside it" % guard
        actual += "; %.1fx as long as the requests beside it" % fair
    return [(victim, "fail" if worst else "pass", expected, actual)]


def parse_log_line(text: str) -> dict:
    """A log line's level, origin and message, in vLLM's prefixed format
    (`(Proc pid=N) LEVEL MM-DD HH:MM:SS [file.py:N] message`), uvicorn's, glog's,
    Python warnings' or transformers'; `stream` groups the lines of one vLLM record."""
    raw = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text.rstrip("\r\n"))
    m = re.match(r"^(?:\(([\w.\-]+) pid=(\d+)\)\s+)?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
                 r"(\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s+\[([^\]]+)\](?: (.*))?$", raw)
    if m:
        return {"raw": raw, "message": m.group(6) or "", "level": m.group(3),
                "origin": m.group(5).split(":")[0],
                "stream": "|".join(g or "" for g in m.group(1, 2, 3, 4, 5))}
    line = {"raw": raw, "message": raw, "level": None, "origin": "", "stream": ""}
    m = re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(.*)$", raw)
    if m:
        return dict(line, message=m.group(2), level=m.group(1), origin="uvicorn")
    m = re.match(r"^(\S+?\.py):\d+: (\w*Warning: .*)$", raw)
    if m:
        return dict(line, message=m.group(2), level="WARNING",
                    origin="python:" + m.group(1).replace("\\", "/").rsplit("/", 1)[-1])
    m = re.match(r"^\[?([WEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+([^\]\s]+)\]\s?(.*)$", raw)
    if m:
        return dict(line, message=m.group(3), level="WARNING" if m.group(1) == "W" else "ERROR",
                    origin="glog:" + m.group(2).rsplit("/", 1)[-1].split(":")[0])
    m = re.match(r"^\[transformers\] (.*)$", raw)
    if m:
        return dict(line, message=m.group(1), level="WARNING", origin="transformers")
    return line


def log_events(lines: list) -> list:
    """The records among log lines, a traceback regrouped with its header (the lines of
    one vLLM record share its prefix even when other processes' lines interleave):
    {level, origin, header, exceptions}, in order of first line."""
    chains = ("During handling of the above exception, another exception occurred:",
              "The above exception was the direct cause of the following exception:")
    opened, done = {}, []
    for order, text in enumerate(lines):
        line = parse_log_line(text)
        key = line["stream"] or "raw"
        if not line["stream"] and line["origin"] == "uvicorn" and line["level"] in (
                "INFO", "DEBUG"):
            done += [opened.pop("raw")] if "raw" in opened else []
            continue
        msg, cur = line["message"], opened.get(key)
        stripped = msg.strip()
        indented = msg[:1] in (" ", "\t", "^", "~")
        if stripped == "Traceback (most recent call last):":
            if cur is not None and cur["state"] in ("text", "after_exc", "chain"):
                cur["state"] = "frames"
                continue
            header, state = None, "frames"
        elif cur is not None and cur["state"] == "frames":
            if stripped and not indented:
                cur["exceptions"].append(stripped)
                cur["state"] = "after_exc"
            continue
        elif cur is not None and stripped in chains:
            cur["state"] = "chain"
            continue
        elif cur is not None and (not stripped or indented):
            continue
        elif key == "raw" and line["level"] is None:
            done += [opened.pop("raw")] if cur is not None else []
            continue
        else:
            header, state = stripped, "text"
        if cur is not None:
            done.append(opened.pop(key))
        opened[key] = {"order": order, "level": line["level"] or "ERROR",
                       "origin": line["origin"] or "stderr", "header": header,
                       "exceptions": [], "state": state}
    done += list(opened.values())
    return [{k: e[k] for k in ("level", "origin", "header", "exceptions")}
            for e in sorted(done, key=lambda e: e["order"])]


def log_template(text: Any) -> str:
    """A log message with numbers, hex and quoted values folded (for recognising one)."""
    text = re.sub(r"0x[0-9a-fA-F]+|\d+(\.\d+)?", "<n>", " ".join(str(text or "").split()))
    return re.sub(r"'[^']*'|\"[^\"]*\"", "<str>", text)


def check_server_log(pairs: list, after: dict, failure: dict, data: dict) -> list:
    """While the requests are answered, the server logs no ERROR and no traceback (vLLM
    catches some exceptions and still answers 200: its log is the only place they show).
    Judged only when every response looked fine (no 5xx, failed connection or hang):
    otherwise what the server logged belongs to that failure."""
    expected = "no ERROR or traceback in the server log"
    lines = after.get("log_lines")
    if lines is None:
        return [("server log", "unjudged", expected, "the server log was not followed "
                 "(repro.py needs the server log: --server-log FILE)")]
    for req, res in pairs:
        status = res.get("status") or 0
        if status >= 500 or res.get("error") or res.get("deadline"):
            return [("server log", "unjudged", expected, "request %s failed (%s): the log "
                     "is that failure's evidence" % (req["id"], why_unjudged(res)))]
    if not lines:
        return [("server log", "unjudged", expected, "the server log did not grow while the "
                 "requests were answered: is it the server's log file?")]
    recorded = (data.get("origin"), log_template(data.get("header")),
                log_template(data.get("exception")))
    out = []
    for event in log_events(lines):
        if event["level"] not in ("ERROR", "CRITICAL"):
            continue
        exception = event["exceptions"][-1] if event["exceptions"] else None
        same = (event["origin"], log_template(event["header"]),
                log_template(exception)) == recorded
        out.append(("server log", "fail", expected, "%s: %s%s%s" % (
            event["origin"], event["header"] or "traceback",
            " -> " + short(exception, 200) if exception else "",
            " (as recorded)" if same else "")))
    return out or [("server log", "pass", expected, "no ERROR or traceback in %d new log "
                    "lines" % len(lines))]


def read_gauges(text: str) -> dict:
    """`running`, `waiting` and `kv_cache_usage` from vLLM's Prometheus `/metrics` text."""
    names = {"vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
             "vllm:kv_cache_usage_perc": "kv_cache_usage",
             "vllm:gpu_cache_usage_perc": "kv_cache_usage",
             "vllm:cpu_cache_usage_perc": "kv_cache_usage"}
    out: dict = {}
    for line in text.splitlines():
        match = re.match(r'^([A-Za-z_:][\w:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)',
                         line.strip())
        key = names.get(match.group(1)) if match else None
        if key is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        if key not in out:
            out[key] = value
        else:
            out[key] = max(out[key], value) if key == "kv_cache_usage" else out[key] + value
    return out


def encode_payload(data: bytes, encoding: str) -> str:
    """A data URL's base64 payload, broken on purpose for every encoding but "base64"
    (the same bytes vlfuzz sent)."""
    text = base64.b64encode(data).decode("ascii")
    if encoding == "base64_invalid_chars":
        return text[: len(text) // 2] + "!*%$" + text[len(text) // 2:]
    if encoding == "base64_unpadded":
        text = text.rstrip("=")
        return text if len(text) % 4 else text[:-1]
    if encoding == "base64_urlsafe":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if encoding == "base64_linebreaks":
        return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    return text


# kind -> (check, what repro.py must probe after the requests)
CHECKS: dict[str, tuple[Check, tuple[str, ...]]] = {
    "server_error": (check_no_server_error, ()),
    "transport": (check_no_transport_failure, ()),
    "hang": (check_no_hang, ()),
    "malformed_body": (check_body_is_json, ()),
    "target_dead": (check_server_alive, ("health", "canary")),
    "target_wedged": (check_server_alive, ("health", "canary")),
    "leak": (check_no_leak, ("metrics",)),
    "schema_violation": (check_structured_output, ()),
    "tool_call_invalid": (check_tool_calls, ()),
    "stream_malformed": (check_stream, ()),
    "stream_error_event": (check_stream, ()),
    "wrong_choice_count": (check_choice_count, ()),
    "usage_inconsistent": (check_usage, ()),
    "shape_mismatch": (check_response_shape, ()),
    "spec_contradiction": (check_spec_rule, ()),
    "isolation_divergence": (check_isolation, ()),
    "cross_request_leak": (check_isolation, ()),
    "interference_slowdown": (check_interference, ()),
    "server_log_error": (check_server_log, ()),
}
# The kinds whose check compares with requests run alone or reads the server's log:
# their repro.py runs those first (`alone_requests`), and follows the log.
ALONE_OR_LOG_KINDS = frozenset({"isolation_divergence", "cross_request_leak",
                                "interference_slowdown", "server_log_error"})


def check_for(kind: str) -> tuple[Check, tuple[str, ...]]:
    """The check and probes for a failure kind (`check_answered` for kinds without one)."""
    return CHECKS.get(kind, (check_answered, ()))


def verdict(outcomes: list, request_id: str | None) -> str:
    """"fail" if any outcome failed; "unjudged" if nothing passed, or the request the
    failure was recorded on could not be judged; else "pass"."""
    if any(o[1] == "fail" for o in outcomes):
        return "fail"
    mine = [o for o in outcomes if request_id and o[0].split(" ")[0] == request_id]
    if not any(o[1] == "pass" for o in outcomes) or any(o[1] == "unjudged" for o in mine):
        return "unjudged"
    return "pass"
