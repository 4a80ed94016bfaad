"""Pure edits of one chat-completions body: the simpler variants the passes try.

Every function returns new objects (bodies are deep-copied, never mutated), and
lists variants biggest cut first, so a pass that stops at the first accepted variant
has taken the largest step it could.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from fuzz.model import MEDIA_SCHEME

Body = dict[str, Any]
Site = tuple[int, int | None]  # (message index, part index or None for a string content)

SAMPLING_KEYS: tuple[str, ...] = (
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "logprobs",
    "top_logprobs", "presence_penalty", "frequency_penalty", "repetition_penalty", "n",
    "best_of", "logit_bias", "min_tokens", "ignore_eos", "user", "parallel_tool_calls")
STREAM_KEYS: tuple[str, ...] = ("stream", "stream_options")
MIN_TEXT_CHARS = 1  # an empty prompt is usually a validation error, not the bug
MAX_CUT_DIVISOR = 8  # smallest cut tried is 1/8 of the text


def copy_body(body: Mapping[str, Any]) -> Body:
    return copy.deepcopy(dict(body))


def without_keys(body: Mapping[str, Any], keys: tuple[str, ...]) -> Body:
    out = copy_body(body)
    for k in keys:
        out.pop(k, None)
    return out


# -- text ----------------------------------------------------------------------------------

def text_sites(body: Mapping[str, Any]) -> list[Site]:
    """Where the messages keep text, in order."""
    out: list[Site] = []
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            out.append((i, None))
        elif isinstance(content, list):
            out.extend((i, j) for j, p in enumerate(content)
                       if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return out


def text_at(body: Mapping[str, Any], site: Site) -> str:
    content = body["messages"][site[0]]["content"]
    return content if site[1] is None else content[site[1]]["text"]


def with_text(body: Mapping[str, Any], site: Site, text: str) -> Body:
    out = copy_body(body)
    message = out["messages"][site[0]]
    if site[1] is None:
        message["content"] = text
    else:
        message["content"][site[1]]["text"] = text
    return out


def shorter_texts(text: str) -> Iterator[str]:
    """Halves first, then cuts of a quarter, an eighth: Shrink Ray's cut ladder."""
    n = len(text)
    seen = {text}
    half = n // 2
    candidates = [text[:max(half, MIN_TEXT_CHARS)], text[half:]]
    divisor = 4
    while divisor <= MAX_CUT_DIVISOR and n // divisor >= 1:
        size = n // divisor
        candidates.extend(text[:i] + text[i + size:] for i in range(0, n - size + 1, size))
        divisor *= 2
    for c in candidates:
        if len(c) >= MIN_TEXT_CHARS and c not in seen:
            seen.add(c)
            yield c


# -- messages and images ---------------------------------------------------------------------

def droppable_messages(body: Mapping[str, Any]) -> list[int]:
    """Indices of messages that can go: all but the last one."""
    return list(range(len(body.get("messages") or ()) - 1))


def without_messages(body: Mapping[str, Any], indices: set[int]) -> Body:
    out = copy_body(body)
    out["messages"] = [m for i, m in enumerate(out["messages"]) if i not in indices]
    return out


def image_sites(body: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(message, part) of every image part that refers to stored media."""
    out = []
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            out.extend((i, j) for j, p in enumerate(content) if _is_media_part(p))
    return out


def without_parts(body: Mapping[str, Any], sites: set[tuple[int, int]]) -> Body:
    out = copy_body(body)
    for i, message in enumerate(out["messages"]):
        if isinstance(message.get("content"), list):
            message["content"] = [p for j, p in enumerate(message["content"]) if (i, j) not in sites]
    return out


def _is_media_part(part: Any) -> bool:
    if not isinstance(part, Mapping) or part.get("type") != "image_url":
        return False
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    return isinstance(url, str) and url.startswith(MEDIA_SCHEME)


# -- structured output and tools ---------------------------------------------------------------

def simpler_response_formats(body: Mapping[str, Any]) -> Iterator[Body]:
    """No response_format; json_object; then the json_schema with one part removed."""
    rf = body.get("response_format")
    if rf is None:
        return
    yield without_keys(body, ("response_format",))
    if not isinstance(rf, Mapping) or rf.get("type") != "json_schema":
        return
    yield {**copy_body(body), "response_format": {"type": "json_object"}}
    spec = rf.get("json_schema")
    if not isinstance(spec, Mapping):
        return
    for key in ("strict", "description"):
        if key in spec:
            yield _with_spec(body, {k: v for k, v in spec.items() if k != key})
    schema = spec.get("schema")
    if isinstance(schema, Mapping):
        for smaller in schema_reductions(schema):
            yield _with_spec(body, {**spec, "schema": smaller})


def simpler_structured_outputs(body: Mapping[str, Any]) -> Iterator[Body]:
    """vLLM's `structured_outputs`: none; its options one at a time; then a smaller JSON
    Schema (kept a string when it was sent as one) or one `choice` fewer. A real schema
    bug (a tuple `items` sending xgrammar to its guidance fallback) stayed unshrunk
    while only `response_format` was simplified."""
    so = body.get("structured_outputs")
    if so is None:
        return
    yield without_keys(body, ("structured_outputs",))
    if not isinstance(so, Mapping):
        return
    for key in so:
        if key not in _CONSTRAINTS:
            yield _with_outputs(body, {k: v for k, v in so.items() if k != key})
    schema, as_text = so.get("json"), False
    if isinstance(schema, str):
        try:
            schema, as_text = json.loads(schema), True
        except ValueError:
            schema = None
    if isinstance(schema, Mapping):
        for smaller in schema_reductions(schema):
            yield _with_outputs(body, {**so, "json": json.dumps(smaller) if as_text else smaller})
    choice = so.get("choice")
    if isinstance(choice, list) and len(choice) > 1:
        for i in range(len(choice)):
            yield _with_outputs(body, {**so, "choice": choice[:i] + choice[i + 1:]})


_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")


def _with_outputs(body: Mapping[str, Any], so: Mapping[str, Any]) -> Body:
    out = copy_body(body)
    out["structured_outputs"] = copy.deepcopy(dict(so))
    return out


def _with_spec(body: Mapping[str, Any], spec: Mapping[str, Any]) -> Body:
    out = copy_body(body)
    out["response_format"] = {**out["response_format"], "json_schema": copy.deepcopy(dict(spec))}
    return out


def schema_reductions(schema: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The schema with one keyword or one property removed, shallow nodes first;
    `type` stays so the result is still a schema of the same kind."""
    queue: list[tuple[tuple[Any, ...], Any]] = [((), schema)]
    while queue:
        path, node = queue.pop(0)
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key != "type":
                    yield _edit(schema, path, lambda d, k=key: _drop_key(d, k))
                if key == "properties" and isinstance(value, Mapping):
                    for prop in value:
                        yield _edit(schema, path, lambda d, p=prop: _drop_property(d, p))
                if key in _LISTS and isinstance(value, list) and len(value) > 1:
                    for i in range(len(value)):
                        yield _edit(schema, path + (key,), lambda d, i=i: d.pop(i))
                queue.append((path + (key,), value))
        elif isinstance(node, list):
            queue.extend((path + (i,), v) for i, v in enumerate(node))


# Keywords whose lists lose one element at a time (a branch, a tuple slot, a value).
_LISTS = ("anyOf", "oneOf", "allOf", "items", "prefixItems", "enum", "required", "type")


def _edit(schema: Mapping[str, Any], path: tuple[Any, ...], change: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(schema))
    node: Any = out
    for step in path:
        node = node[step]
    change(node)
    return out


def _drop_key(node: dict[str, Any], key: str) -> None:
    node.pop(key, None)
    if key == "properties":
        node.pop("required", None)


def _drop_property(node: dict[str, Any], prop: str) -> None:
    node["properties"].pop(prop, None)
    if isinstance(node.get("required"), list):
        node["required"] = [r for r in node["required"] if r != prop]


def simpler_tool_configs(body: Mapping[str, Any]) -> Iterator[Body]:
    """No tools at all; the default tool_choice; then one tool fewer (never the one a
    named tool_choice asks for)."""
    tools = body.get("tools")
    if not tools:
        return
    yield without_keys(body, ("tools", "tool_choice"))
    choice = body.get("tool_choice")
    if choice is not None and choice != "auto":
        yield without_keys(body, ("tool_choice",))
    named = choice.get("function", {}).get("name") if isinstance(choice, Mapping) else None
    if len(tools) > 1:
        for i, tool in enumerate(tools):
            if (tool.get("function") or {}).get("name") != named:
                out = copy_body(body)
                del out["tools"][i]
                yield out
    for i, tool in enumerate(tools):
        params = (tool.get("function") or {}).get("parameters") if isinstance(tool, Mapping) else None
        if isinstance(params, Mapping):
            for smaller in schema_reductions(params):
                out = copy_body(body)
                out["tools"][i]["function"]["parameters"] = smaller
                yield out
