"""Building the scenarios the isolation and interference oracles need, as plain data:
greedy probe requests, neutral fillers, benign batches, a request on its own, canary
planting, and the identity of a request across scenarios.

A probe is a greedy request that reports its logprobs (temperature 0, no seed needed,
`logprobs: true, top_logprobs: k`, one choice): the only kind of request whose answer
alone and in a crowd can be compared token by token.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from fuzz.media import ImageRecipe, render
from fuzz.model import CHAT_PATH, Media, RequestSpec, Scenario, media_url

TOP_LOGPROBS = 5
PROBE_PROMPTS: tuple[str, ...] = (
    "Describe a quiet harbour at dawn in a few sentences.",
    "List the steps to brew a cup of tea.",
    "Explain why the sky looks blue.",
)
NEUTRAL_PROMPTS: tuple[str, ...] = (
    "Name three colours.", "Count from one to five.", "Say hello politely.",
    "What is two plus two?", "Give a synonym for happy.", "Name a large animal.",
    "Write a short greeting.", "Name a fruit.",
)


def greedy_body(messages: Sequence[Mapping[str, Any]], *, max_tokens: int = 16,
                seed: int | None = None, top_logprobs: int = TOP_LOGPROBS,
                stream: bool = False) -> dict[str, Any]:
    """A chat body whose answer is reproducible and comparable position by position.

    Greedy decoding needs no seed, and by default sends none: on vLLM 0.32's CPU build
    a streamed seeded request kills the engine ("CPU Generator does not use offset"),
    and the oracles' own probes must not trip a known bug a hunt has excluded."""
    body: dict[str, Any] = {"messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                            "temperature": 0, "logprobs": True, "top_logprobs": top_logprobs}
    if seed is not None:
        body["seed"] = seed
    if stream:
        body["stream"] = True
    return body


def user_message(text: str, images: Sequence[str] = ()) -> dict[str, Any]:
    """A user message; with image sha256s, a content list with one image part each."""
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": media_url(h)}}
                                   for h in images]
    return {"role": "user", "content": parts + [{"type": "text", "text": text}]}


def probe_request(request_id: str, prompt: str, *, images: Sequence[str] = (),
                  max_tokens: int = 16, stream: bool = False, offset_ms: float = 0.0,
                  seed: int | None = None) -> RequestSpec:
    """A greedy probe (see the module docstring); `images` are sha256s of Media."""
    return RequestSpec(id=request_id, offset_ms=offset_ms, tags=("isolation_probe",),
                       body=greedy_body([user_message(prompt, images)], max_tokens=max_tokens,
                                        stream=stream, seed=seed))


def default_probes(*, max_tokens: int = 32, image: bool = True) -> Scenario:
    """The calibration probes: the text prompts of PROBE_PROMPTS and, with `image`,
    one prompt about a small rendered PNG (the vision path has its own kernels)."""
    specs = [probe_request(f"text{i}", p, max_tokens=max_tokens)
             for i, p in enumerate(PROBE_PROMPTS)]
    media = {}
    if image:
        img = render(ImageRecipe(width_px=64, height_px=64, mode="RGB", format="PNG",
                                 content="gradient", seed=7))
        media[img.sha256] = img
        specs.append(probe_request("image0", "Describe this image.", images=[img.sha256],
                                   max_tokens=max_tokens))
    return Scenario(requests=tuple(specs), media=media)


def neutral_requests(count: int, *, prefix: str = "neutral", max_tokens: int = 16,
                     offset_ms: float = 0.0) -> tuple[RequestSpec, ...]:
    """`count` short, distinct, text-only greedy requests: benign batch-mates."""
    def prompt(i: int) -> str:
        text = NEUTRAL_PROMPTS[i % len(NEUTRAL_PROMPTS)]
        return text if i < len(NEUTRAL_PROMPTS) else f"{text} ({i})"
    return tuple(RequestSpec(id=f"{prefix}{i}", offset_ms=offset_ms, tags=("neutral",),
                             body=greedy_body([user_message(prompt(i))], max_tokens=max_tokens))
                 for i in range(count))


def is_probe(spec: RequestSpec) -> bool:
    """A complete greedy chat request with logprobs, one choice, read to its end."""
    body = spec.body if isinstance(spec.body, Mapping) else {}
    return (spec.path == CHAT_PATH and spec.method.upper() == "POST"
            and spec.disconnect_after_chunks is None
            and body.get("temperature") == 0 and not isinstance(body.get("temperature"), bool)
            and body.get("logprobs") is True and body.get("n", 1) in (1, None))


def probe_ids(scenario: Scenario) -> list[str]:
    return [s.id for s in scenario.requests if is_probe(s)]


def probe_shape(spec: RequestSpec) -> str:
    """"image_probe" or "text_probe": a coarse class that keeps divergences of the
    two kinds of request apart in signatures (they rarely share a cause)."""
    return "image_probe" if _has_image_part(spec.body) else "text_probe"


def _has_image_part(body: Any) -> bool:
    messages = body.get("messages") if isinstance(body, Mapping) else None
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, Mapping) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, Mapping) and "image_url" in part:
                return True
    return False


def insert_request(scenario: Scenario, spec: RequestSpec, *,
                   media: Mapping[str, Media] | None = None,
                   offset_ms: float | None = None) -> Scenario:
    """`scenario` with `spec` added (at `offset_ms` when given) and the media it uses;
    how a calibrated victim or a probe joins a generated scenario. Its id must be new."""
    if offset_ms is not None:
        spec = replace(spec, offset_ms=offset_ms)
    pool = {**scenario.media, **(media or {})}
    used = set(spec.media_refs())
    return Scenario(requests=scenario.requests + (spec,),
                    media={**scenario.media, **{h: pool[h] for h in used if h in pool}},
                    seed=scenario.seed)


def request_key(spec: RequestSpec) -> str:
    """What makes two requests the same request in different scenarios (not id or
    offset): method, path, body (media by hash), client behaviour."""
    text = json.dumps({"method": spec.method.upper(), "path": spec.path, "body": spec.body,
                       "disconnect": spec.disconnect_after_chunks}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def keeps_request(scenario: Scenario, spec: RequestSpec) -> bool:
    """`scenario` still holds `spec` (same id and request key; the offset may move).
    The minimizer's guard: a candidate that dropped or changed the victim or probe
    says nothing about it."""
    try:
        mine = scenario.request(spec.id)
    except KeyError:
        return False
    return request_key(mine) == request_key(spec)


def alone_scenario(scenario: Scenario, request_id: str) -> Scenario:
    """Only request `request_id`, sent at once (with the media it uses)."""
    return scenario.with_requests((replace(scenario.request(request_id), offset_ms=0.0),))


def batch_scenario(probe: RequestSpec, media: Mapping[str, Media], batch_size: int, *,
                   fillers: Sequence[RequestSpec] | None = None) -> Scenario:
    """`probe` with `batch_size - 1` neutral requests, all sent at once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pool = tuple(fillers) if fillers is not None else neutral_requests(batch_size - 1)
    if len(pool) < batch_size - 1:
        raise ValueError(f"{len(pool)} fillers for a batch of {batch_size}")
    requests = (replace(probe, offset_ms=0.0),) + tuple(
        replace(f, offset_ms=0.0) for f in pool[:batch_size - 1])
    used = {h for r in requests for h in r.media_refs()}
    return Scenario(requests=requests, media={h: m for h, m in media.items() if h in used})


def plant_canary(spec: RequestSpec, canary: str) -> RequestSpec:
    """`spec` with `canary` added to its last user message, as a code to repeat (a
    model that echoes it makes a leak of the output visible too)."""
    body = dict(spec.body) if isinstance(spec.body, Mapping) else {}
    messages = [dict(m) for m in body.get("messages") or []]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    note = f"Remember this code and repeat it: {canary}"
    if not users:
        messages.append({"role": "user", "content": note})
    else:
        last = messages[users[-1]]
        content = last.get("content")
        if isinstance(content, list):
            last["content"] = list(content) + [{"type": "text", "text": note}]
        else:
            last["content"] = f"{content or ''}\n{note}".lstrip("\n")
    return replace(spec, body={**body, "messages": messages})
