"""ISSUE.md for a bundle: a bug report ready to paste upstream (vLLM's tracker).

Written for a maintainer who has never heard of vlfuzz: what breaks, on what, how to
trigger it with plain curl or one script, and what the scenario needs (so they can
guess the subsystem before running anything).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fuzz import __version__
from fuzz.bundle import target_model
from fuzz.model import RequestSpec, Scenario, Trace, resolve_media
from fuzz.signature import normalise_message

if TYPE_CHECKING:
    from fuzz.bundle import Bundle

CURL_MAX_BYTES = 8 * 1024
_STRUCTURED_KEYS = ("response_format", "structured_outputs", "guided_json", "guided_regex",
                    "guided_choice", "guided_grammar")
_EXPECTED = (
    (("hang", "deadline", "stall", "timeout"), "Every request gets its first byte and completes "
     "within the deadlines (or is refused promptly with a 4xx)."),
    (("death", "dead", "wedge", "health", "canary"), "The server stays healthy: `/health` "
     "answers 200 and a small generation succeeds after the scenario."),
    (("leak", "metrics"), "After the requests finish, `/metrics` returns to idle: no running "
     "or waiting requests and KV cache usage back at its baseline."),
    (("structured", "schema", "json"), "With `finish_reason` `stop`, the output parses and "
     "validates against the requested schema."),
    (("tool",), "A forced tool call has `arguments` that are a JSON object valid against the "
     "function's `parameters`."),
    (("stream", "sse"), "The stream is well-formed SSE, ends with `data: [DONE]`, and carries "
     "usage when `stream_options.include_usage` is set."),
    (("reject", "4xx", "2xx", "spec"), "The server accepts valid requests and refuses invalid "
     "ones, as the OpenAI API and vLLM's docs specify."),
)
_DEFAULT_EXPECTED = ("Every request is answered without a 5xx, transport error or hang, each "
                     "response matches the OpenAI response shape, and the server stays healthy.")


def issue_title(kind: str, message: str, limit: int = 100) -> str:
    """Kind plus the message with ids and numbers folded, so one bug has one title."""
    text = normalise_message(message)
    return f"{kind}: {text if len(text) <= limit else text[:limit - 1].rstrip() + '…'}"


def expected_text(kind: str) -> str:
    k = kind.lower()
    return next((text for words, text in _EXPECTED if any(w in k for w in words)),
                _DEFAULT_EXPECTED)


def curl_body(req: RequestSpec, scenario: Scenario, model: str | None) -> str | None:
    """The wire body as the runner sends it: media inlined, `model` filled in when
    absent, compact ASCII JSON (a string body is sent raw; None: no body)."""
    body = resolve_media(req.body, scenario.media)
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        if req.method.upper() in ("GET", "HEAD") and not body:
            return None
        if req.method.upper() == "POST" and "model" not in body:
            body = {"model": model or "MODEL", **body}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)


def _curlable(body: str) -> bool:
    """Small enough to paste, and passable as a shell argument."""
    try:
        return len(body.encode("utf-8")) < CURL_MAX_BYTES and "\x00" not in body
    except UnicodeEncodeError:
        return False


def curl_script(scenario: Scenario, model: str | None) -> tuple[list[str], list[str]]:
    """Shell lines sending the scenario (concurrently, offsets kept) and the ids of the
    requests too big for a curl line."""
    lines, too_big = ["ENDPOINT=http://127.0.0.1:8000"], []
    many = len(scenario.requests) > 1
    for req in scenario.requests:
        body = curl_body(req, scenario, model)
        if body is not None and not _curlable(body):
            too_big.append(req.id)
            continue
        stream = "-N " if req.stream else ""
        data = (f" -H 'Content-Type: application/json' --data-binary {shlex.quote(body)}"
                if body is not None else "")
        cmd = f'curl -sS {stream}-X {req.method} "$ENDPOINT{req.path}"{data}'
        if req.offset_ms > 0:
            cmd = f"(sleep {req.offset_ms / 1000:.3f}; {cmd})"
        note = f"  # {req.id} at +{req.offset_ms:g} ms"
        if req.disconnect_after_chunks is not None:
            note += f"; client hangs up after {req.disconnect_after_chunks} chunks (repro.py does)"
        lines.append(cmd + (" &" if many else "") + note)
    if many:
        lines.append("wait")
    return lines, too_big


def _overlapping(trace: Trace) -> bool:
    spans = sorted((r.sent_s, r.end_s if r.end_s is not None else float("inf"))
                   for r in trace.requests)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def needs(bundle: Bundle) -> list[str]:
    """What the scenario exercises, one bullet each."""
    sc, out = bundle.scenario, []
    n = len(sc.requests)
    offsets = ", ".join(f"{r.offset_ms:g}" for r in sc.requests)
    concurrent = _overlapping(bundle.trace) if bundle.trace.requests else n > 1
    shape = "concurrently" if concurrent else "one after another"
    out.append(f"{n} request{'s' * (n != 1)} (minimized from {bundle.original_request_count})"
               + (f", sent {shape} (offsets ms: {offsets})" if n > 1 else ""))
    refs = [h for r in sc.requests for h in r.media_refs()]
    if refs:
        mimes = sorted({sc.media[h].mime for h in refs})
        out.append(f"images: {len(refs)} ({len(set(refs))} distinct; "
                   f"claimed types {', '.join(mimes)})")
    streams = [r for r in sc.requests if r.stream]
    if streams:
        cut = sum(r.disconnect_after_chunks is not None for r in streams)
        out.append(f"streaming: {len(streams)} of {n}"
                   + (f", {cut} disconnecting early" if cut else ""))
    bodies = [r.body for r in sc.requests if isinstance(r.body, Mapping)]
    structured = sorted({k for b in bodies for k in _STRUCTURED_KEYS if b.get(k) not in (None, {})})
    if structured:
        out.append(f"structured output: {', '.join(structured)}")
    tools = [b for b in bodies if b.get("tools")]
    if tools:
        choices = sorted({json.dumps(b.get("tool_choice", "auto")) for b in tools})
        out.append(f"tools: {len(tools)} request(s), tool_choice {', '.join(choices)}")
    minimizer = bundle.fuzzer.get("minimizer")
    if isinstance(minimizer, Mapping) and minimizer.get("schedule_note"):
        out.append(f"schedule: {minimizer['schedule_note']}")
    return out


def _actual(bundle: Bundle) -> list[str]:
    f = bundle.failure
    lines = [f"- {f.message}"]
    try:
        rt = bundle.trace.request(f.request_id) if f.request_id else None
    except KeyError:
        rt = None
    if rt is not None:
        facts = [f"status {rt.status}"] + ([f"error `{rt.error}`"] if rt.error else [])
        if rt.deadline:
            facts.append(f"cut by the {rt.deadline} deadline ({rt.deadline_s} s)")
        lines.append(f"- request `{rt.id}`: " + ", ".join(facts))
        head = rt.body if rt.body is not None else "\n".join(rt.events[:5])
        if head:
            lines += ["", "Response head:", "```", head[:600], "```"]
    if f.evidence:
        lines += ["", "Evidence:", "```json",
                  json.dumps(f.evidence, indent=1, default=str)[:1500], "```"]
    return lines


def render_issue(bundle: Bundle) -> str:
    f, t = bundle.failure, bundle.target
    k, n = bundle.reproduced
    model = target_model(t)
    env = [f"- {key}: `{json.dumps(t[key], default=str)}`" for key in _ENV_KEYS if t.get(key) is not None]
    env.append(f"- vlfuzz: {bundle.fuzzer.get('vlfuzz_version', __version__)}"
               f" (seed {bundle.fuzzer.get('seed')})")
    lines, too_big = curl_script(bundle.scenario, model)
    curl = ["```sh", *lines, "```"]
    if too_big:
        curl.append(f"Request(s) {', '.join(too_big)}: the body with inlined media is 8 KB or "
                    "more (or not shell-safe); see bundle.json (media in media/), or use repro.py.")
    return "\n".join([
        f"# {issue_title(f.kind, f.message)}", "",
        f"Found by vlfuzz. Signature: `{f.signature}`. Reproduced in **{k}/{n}** runs.", "",
        "## Environment", "", *env, "",
        "## What the scenario needs", "", *(f"- {x}" for x in needs(bundle)), "",
        "## Steps to reproduce", "",
        "From the bundle folder (needs Python 3 and aiohttp):", "",
        "```sh", "python repro.py --endpoint http://127.0.0.1:8000", "```", "",
        "Or with curl:", "", *curl, "",
        "## Expected", "", expected_text(f.kind), "",
        "## Actual", "", *_actual(bundle), "",
        "## Reproduction rate", "",
        f"{k}/{n} runs of the minimized scenario showed this failure.", "",
        *_server_log(t),
    ])


# What identifies the server; long or volatile fields (model lists, errors) stay in bundle.json.
_ENV_KEYS = ("version", "model", "model_id", "max_model_len", "base_url", "embedded", "server_argv")


def _server_log(target: Mapping[str, Any]) -> list[str]:
    """The embedded server's log tail, folded away, when the bundle carries one."""
    tail = target.get("server_log_tail")
    if not isinstance(tail, str) or not tail.strip():
        return []
    return ["<details><summary>Server log (tail)</summary>", "", "```", tail.strip()[-12000:],
            "```", "", "</details>", ""]
