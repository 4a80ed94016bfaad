"""What a scenario exercises, in words: the trigger in a title ("1 streamed chat request
with 4 images and a seed") and the feature combination a failure needs (requests and
their timing, messages, images by size/mode/format, streaming, structured output, tools,
sampling), so a maintainer can guess the subsystem before running anything.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fuzz.curl import FIXTURE_HOST
from fuzz.model import FIXTURE_SCHEME, Trace, strings_in

if TYPE_CHECKING:
    from fuzz.bundle import Bundle

STRUCTURED_KEYS = ("response_format", "structured_outputs", "guided_json", "guided_regex",
                    "guided_choice", "guided_grammar")


SAMPLING_KEYS = ("max_tokens", "max_completion_tokens", "min_tokens", "n", "temperature",
                  "top_p", "top_k", "min_p", "seed", "stop", "ignore_eos", "logprobs",
                  "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
                  "repetition_penalty", "priority", "stream_options", "parallel_tool_calls")


def trigger(bundle: Bundle, *, extras: bool = True) -> str:
    """What was sent, in a few words: '1 streamed chat request with 4 images and a seed'."""
    sc = bundle.scenario
    n = len(sc.requests)
    bodies = [r.body for r in sc.requests if isinstance(r.body, Mapping)]
    streamed = "streamed " if bodies and all(b.get("stream") is True for b in bodies) else ""
    concurrent = "concurrent " if n > 1 and _overlapping(bundle.trace) else ""
    paths = {r.path for r in sc.requests}
    api = "chat " if paths == {"/v1/chat/completions"} else ""
    text = f"{n} {concurrent}{streamed}{api}request{'s' * (n != 1)}"
    found = []
    images = sum(len(r.media_refs()) for r in sc.requests)
    if images:
        found.append(f"{images} image{'s' * (images != 1)}")
    if any(b.get("seed") is not None for b in bodies):
        found.append("a seed")
    if any(b.get(k) not in (None, {}) for b in bodies for k in STRUCTURED_KEYS):
        found.append("structured output")
    if any(b.get("tools") for b in bodies):
        found.append("tools")
    if found and extras:
        text += " with " + (", ".join(found[:-1]) + " and " + found[-1] if len(found) > 1
                            else found[0])
    return text


def _overlapping(trace: Trace) -> bool:
    spans = sorted((r.sent_s, r.end_s if r.end_s is not None else float("inf"))
                   for r in trace.requests)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def _image_line(bundle: Bundle, refs: list[str]) -> str:
    """Images by what matters to an image processor: size, mode, format, content."""
    sc = bundle.scenario
    kinds: Counter[str] = Counter()
    for h in refs:
        m = sc.media[h]
        r = m.recipe or {}
        if r.get("width_px") and r.get("height_px"):
            desc = f"{r['width_px']}×{r['height_px']} {r.get('mode', '')} {r.get('format', '')}"
            desc += f" ({r['content']})" if r.get("content") else ""
        else:
            desc = f"{len(m.data)} bytes"
        if r.get("corruption"):
            desc += f", corrupted: {r['corruption']}"
        if m.encoding != "base64":
            desc += f", data URL deliberately malformed ({m.encoding})"
        kinds[" ".join(desc.split())] += 1
    parts = [f"{c} × {d}" if c > 1 else d for d, c in kinds.items()]
    mimes = ", ".join(sorted({sc.media[h].mime for h in refs}))
    return (f"images: {len(refs)} ({len(set(refs))} distinct): {'; '.join(parts)}; sent as "
            f"base64 data URLs claiming {mimes}")


def needs(bundle: Bundle) -> list[str]:
    """The feature combination the minimized scenario exercises, one bullet each."""
    sc, out = bundle.scenario, []
    n, original = len(sc.requests), bundle.original_request_count
    concurrent = _overlapping(bundle.trace) if bundle.trace.requests else n > 1
    offsets = ", ".join(f"{r.offset_ms:g}" for r in sc.requests)
    if n == 1:
        out.append("a single request is enough" + (f" (minimized from {original})"
                                                   if original > 1 else ""))
    else:
        out.append(f"{n} requests (minimized from {original}), sent "
                   f"{'concurrently' if concurrent else 'one after another'} "
                   f"(offsets ms: {offsets})")
    minimizer = bundle.fuzzer.get("minimizer")
    if isinstance(minimizer, Mapping) and minimizer.get("schedule_note"):
        out.append(f"schedule: {minimizer['schedule_note']}")
    bodies = [r.body for r in sc.requests if isinstance(r.body, Mapping)]
    for b in bodies[:3]:
        msgs = b.get("messages")
        if isinstance(msgs, list) and msgs:
            roles = [m.get("role", "?") for m in msgs if isinstance(m, Mapping)]
            chars = len(" ".join(_texts(msgs)))
            out.append(f"messages: {len(msgs)} ({', '.join(map(str, roles))}), "
                       f"{chars:,} characters of text")
            break
    refs = [h for r in sc.requests for h in r.media_refs()]
    if refs:
        out.append(_image_line(bundle, refs))
    fetched = [s for r in sc.requests for s in strings_in(r.body) if s.startswith(FIXTURE_SCHEME)]
    if fetched:
        kinds = sorted({s[len(FIXTURE_SCHEME):].split("/")[1] for s in fetched if "/" in s})
        out.append(f"image URLs: {len(fetched)} fetched by the server from vlfuzz's loopback "
                   f"fixture server ({', '.join(kinds)}); the curl lines write its host as "
                   f"{FIXTURE_HOST}")
    streams = [r for r in sc.requests if r.stream]
    if streams:
        cut = sum(r.disconnect_after_chunks is not None for r in streams)
        out.append(f"streaming: {len(streams)} of {n}"
                   + (f", {cut} disconnecting early" if cut else ""))
    structured = sorted({k for b in bodies for k in STRUCTURED_KEYS if b.get(k) not in (None, {})})
    if structured:
        out.append(f"structured output: {', '.join(structured)}")
    tools = [b for b in bodies if b.get("tools")]
    if tools:
        names = sorted({t.get("function", {}).get("name", "?") for b in tools for t in b["tools"]
                        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)})
        choices = sorted({json.dumps(b.get("tool_choice", "auto")) for b in tools})
        out.append(f"tools: {', '.join(names)} in {len(tools)} request(s), tool_choice "
                   f"{', '.join(choices)}")
    sampling = {k: b[k] for b in bodies for k in SAMPLING_KEYS if k in b}
    if sampling:
        out.append("sampling: " + ", ".join(f"{k} {short_json(v)}" for k, v in sampling.items()))
    return out


def _texts(value: Any) -> list[str]:
    """The text of chat messages (content strings and text parts)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        if value.get("type") == "text":
            return _texts(value.get("text"))
        return _texts(value.get("content")) if "content" in value else []
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def short_json(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"
