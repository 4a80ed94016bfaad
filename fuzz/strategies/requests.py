"""OpenAI chat-completions request bodies (without `model`, which the runner adds)
with images as media placeholders, sampling knobs, structured outputs and tools.

A `MediaPool` is shared by all requests of one scenario so that images sometimes
repeat byte-for-byte (media/prefix caches) and sometimes differ only by seed."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis.strategies as st

from fuzz.media import ImageRecipe, render
from fuzz.model import Media, RequestSpec, media_url
from fuzz.strategies._common import Draw, chance, check_int, emit, unique
from fuzz.strategies.images import MAX_PIXELS, SEED_MAX, image_recipes, image_tags
from fuzz.strategies.schemas import response_format_tags, response_formats
from fuzz.strategies.texts import text_tags, texts
from fuzz.strategies.tools import tool_configs, tool_tags


@dataclass(frozen=True)
class ChatRequest:
    """A drawn request: its body, the media its placeholders name, and its tags."""

    body: dict[str, Any]
    media: dict[str, Media]
    tags: tuple[str, ...]

    def to_spec(self, request_id: str, offset_ms: float = 0.0,
                disconnect_after_chunks: int | None = None,
                extra_tags: tuple[str, ...] = ()) -> RequestSpec:
        """A RequestSpec with its own copy of the body (repeats never share dicts)."""
        return RequestSpec(id=request_id, body=copy.deepcopy(self.body), offset_ms=offset_ms,
                           disconnect_after_chunks=disconnect_after_chunks,
                           tags=unique(self.tags + extra_tags))


@dataclass
class MediaPool:
    """Images drawn so far in one scenario (local to a single draw, never global);
    renders each recipe once."""

    rendered: dict[ImageRecipe, Media] = field(default_factory=dict)

    def image(self, draw: Draw, recipes: st.SearchStrategy[ImageRecipe],
              reuse_percent: int) -> tuple[Media, tuple[str, ...]]:
        """Draw a new image, a byte-identical repeat, or a same-recipe variant with a
        fresh seed; returns the media and its tags."""
        known = {m.sha256 for m in self.rendered.values()}
        tags: list[str] = []
        if self.rendered and chance(draw, reuse_percent):
            base = draw(st.sampled_from(list(self.rendered)))
            if draw(st.booleans()):
                base = replace(base, seed=draw(st.integers(0, SEED_MAX)))
                tags.append("image:variant")
            recipe = base
        else:
            recipe = draw(recipes)
        if recipe not in self.rendered:
            self.rendered[recipe] = render(recipe)
        media = self.rendered[recipe]
        if media.sha256 in known:
            tags = ["image:repeat"]
        return media, image_tags(recipe) + tuple(tags)


@dataclass(frozen=True)
class RequestSettings:
    """Validated knobs and the sub-strategies built from them (corpora load once)."""

    max_images: int
    max_output_tokens: int
    recipes: st.SearchStrategy[ImageRecipe]
    prompts: st.SearchStrategy[str]
    short_texts: st.SearchStrategy[str]
    formats: st.SearchStrategy[dict[str, Any]]
    tools: st.SearchStrategy[dict[str, Any]]
    structured_percent: int
    tools_percent: int
    reuse_percent: int


def request_settings(*, max_images: int = 4, max_output_tokens: int = 64,
                     max_prompt_tokens: int = 3000, max_pixels: int = MAX_PIXELS,
                     broken_percent: int = 8, structured_percent: int = 20,
                     tools_percent: int = 20, reuse_percent: int = 30) -> RequestSettings:
    check_int("max_images", max_images, 0)
    check_int("max_output_tokens", max_output_tokens, 1)
    check_int("max_prompt_tokens", max_prompt_tokens, 0)
    for name, value in (("structured_percent", structured_percent),
                        ("tools_percent", tools_percent), ("reuse_percent", reuse_percent)):
        check_int(name, value, 0, 100)
    return RequestSettings(
        max_images=max_images, max_output_tokens=max_output_tokens,
        recipes=image_recipes(max_pixels=max_pixels, broken_percent=broken_percent),
        prompts=texts(min_tokens=0, max_tokens=max_prompt_tokens),
        short_texts=texts(min_tokens=1, max_tokens=min(max(max_prompt_tokens, 1), 64)),
        formats=response_formats(), tools=tool_configs(),
        structured_percent=structured_percent, tools_percent=tools_percent,
        reuse_percent=reuse_percent)


def draw_chat_request(draw: Draw, settings: RequestSettings, pool: MediaPool) -> ChatRequest:
    """One request; images come from (and go into) `pool`."""
    tags: list[str] = []
    messages: list[dict[str, Any]] = []
    if chance(draw, 25):
        messages.append({"role": "system", "content": draw(settings.short_texts)})
        tags.append("system")
    turns = draw(st.integers(1, 2)) if chance(draw, 15) else 0
    for _ in range(turns):
        messages.append({"role": "user", "content": draw(settings.short_texts)})
        messages.append({"role": "assistant", "content": draw(settings.short_texts)})
    if turns:
        tags.append(f"history:{turns}")

    media: dict[str, Media] = {}
    parts: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, settings.max_images))):
        m, image_tags_ = pool.image(draw, settings.recipes, settings.reuse_percent)
        media[m.sha256] = m
        parts.append({"type": "image_url", "image_url": {"url": media_url(m.sha256)}})
        tags.extend(image_tags_)
    text = draw(settings.prompts)
    tags.extend(text_tags(text))
    if not parts and chance(draw, 50):
        content: Any = text
    else:
        if text or not parts:
            parts.insert(draw(st.integers(0, len(parts))), {"type": "text", "text": text})
        content = parts
    messages.append({"role": "user", "content": content})
    n_images = sum(p["type"] == "image_url" for p in parts)
    tags.insert(0, f"images:{n_images}")

    body: dict[str, Any] = {"messages": messages,
                            "max_tokens": draw(st.integers(1, settings.max_output_tokens))}
    tags.append("max_tokens:1" if body["max_tokens"] == 1 else "max_tokens:small")
    if draw(st.booleans()):
        body["stream"] = True
        tags.append("stream")
        if chance(draw, 50):
            body["stream_options"] = {"include_usage": True}
            tags.append("stream:include_usage")
    elif chance(draw, 30):
        body["stream"] = False
    temperature = draw(st.sampled_from((None, 0.0, "random")))
    if temperature == "random":
        body["temperature"] = draw(st.floats(0.0, 1.5, allow_nan=False).map(lambda t: round(t, 3)))
        tags.append("temperature")
    elif temperature is not None:
        body["temperature"] = 0.0
        tags.append("temperature:0")
    if chance(draw, 30):
        body["seed"] = draw(st.integers(0, 2**31 - 1))
        tags.append("seed")
    if chance(draw, settings.structured_percent):
        body["response_format"] = draw(settings.formats)
        tags.extend(response_format_tags(body["response_format"]))
    if chance(draw, settings.tools_percent):
        body.update(draw(settings.tools))
        tags.extend(tool_tags(body))
    return ChatRequest(body=body, media=media, tags=unique(tags))


def chat_requests(*, max_images: int = 4, max_output_tokens: int = 64,
                  max_prompt_tokens: int = 3000, max_pixels: int = MAX_PIXELS,
                  broken_percent: int = 8, structured_percent: int = 20,
                  tools_percent: int = 20) -> st.SearchStrategy[ChatRequest]:
    """Single chat requests (tags reported via `hypothesis.event`)."""
    settings = request_settings(
        max_images=max_images, max_output_tokens=max_output_tokens,
        max_prompt_tokens=max_prompt_tokens, max_pixels=max_pixels,
        broken_percent=broken_percent, structured_percent=structured_percent,
        tools_percent=tools_percent)

    @st.composite
    def build(draw: Draw) -> ChatRequest:
        request = draw_chat_request(draw, settings, MediaPool())
        emit(request.tags)
        return request

    return build()
