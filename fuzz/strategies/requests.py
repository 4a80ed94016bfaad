"""OpenAI chat-completions request bodies (without `model`, which the runner adds)
with images as media (or fixture-URL) placeholders, histories, long contexts,
structured outputs, tools and sampling knobs. Each dimension is a module of its
own; this one composes them and decides how often each appears.

A `MediaPool` is shared by all requests of one scenario so that images sometimes
repeat byte-for-byte (media/prefix caches) and sometimes differ only by seed."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis.strategies as st

from fuzz.media import ImageRecipe, render
from fuzz.model import Media, RequestSpec, media_url
from fuzz.strategies._common import Draw, chance, check_int, emit, unique
from fuzz.strategies.contexts import context_texts
from fuzz.strategies.history import histories
from fuzz.strategies.images import MAX_PIXELS, SEED_MAX, image_recipes, image_tags
from fuzz.strategies.sampling import (SamplingSettings, draw_max_tokens, draw_oddities,
                                      draw_sampling, draw_stream)
from fuzz.strategies.schemas import response_format_tags, response_formats
from fuzz.strategies.structured import structured_outputs, structured_outputs_tags
from fuzz.strategies.texts import text_tags, texts
from fuzz.strategies.tools import tool_configs, tool_tags
from fuzz.strategies.urls import draw_fixture_url


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


class RenderCache:
    """Process-wide memo of `render` (pure, so safe), bounded by total bytes: Hypothesis
    re-draws the same recipes when it mutates earlier examples, and re-encoding a
    megapixel TIFF each time dominated generation time."""

    def __init__(self, max_bytes: int = 128 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[ImageRecipe, tuple[Media, str]] = OrderedDict()
        self._bytes = 0

    def get(self, recipe: ImageRecipe) -> tuple[Media, str]:
        hit = self._items.get(recipe)
        if hit is not None:
            self._items.move_to_end(recipe)
            return hit
        media = render(recipe)
        hit = (media, media.sha256)
        if len(media.data) <= self.max_bytes // 4:
            self._items[recipe] = hit
            self._bytes += len(media.data)
            while self._bytes > self.max_bytes:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= len(old.data)
        return hit


RENDER_CACHE = RenderCache()


@dataclass
class MediaPool:
    """Images drawn so far in one scenario (local to a single draw, never global);
    renders each recipe once and keeps sha256 unique per (mime, encoding)."""

    rendered: dict[ImageRecipe, Media] = field(default_factory=dict)
    shas: dict[ImageRecipe, str] = field(default_factory=dict)  # Media.sha256 is not cached

    def image(self, draw: Draw, recipes: st.SearchStrategy[ImageRecipe],
              reuse_percent: int) -> tuple[Media, str, tuple[str, ...]]:
        """Draw a new image, a byte-identical repeat, or a same-recipe variant with a
        fresh seed; returns the media, its sha256 and its tags."""
        known = set(self.shas.values())
        tags: list[str] = []
        if self.rendered and chance(draw, reuse_percent):
            base = draw(st.sampled_from(list(self.rendered)))
            if draw(st.booleans()):
                base = replace(base, seed=draw(st.integers(0, SEED_MAX)))
                tags.append("image:variant")
            recipe = base
        else:
            recipe = draw(recipes)
        recipe = self._render(recipe)
        media = self.rendered[recipe]
        if self.shas[recipe] in known:
            tags = ["image:repeat"]
        return media, self.shas[recipe], image_tags(recipe) + tuple(tags)

    def _render(self, recipe: ImageRecipe) -> ImageRecipe:
        """Render once; if the bytes equal another recipe's but the data URL would
        differ (a wrong MIME, a bad encoding), bump the seed: one sha, one Media."""
        for _ in range(3):
            if recipe in self.rendered:
                return recipe
            media, sha = RENDER_CACHE.get(recipe)
            clash = [r for r, h in self.shas.items() if h == sha and (
                self.rendered[r].mime, self.rendered[r].encoding) != (media.mime, media.encoding)]
            if not clash:
                self.rendered[recipe], self.shas[recipe] = media, sha
                return recipe
            previous = clash[0]
            recipe = replace(recipe, seed=(recipe.seed + 1) % 2**64)
        return previous  # bytes independent of the seed (empty, fixed not_image): reuse


@dataclass(frozen=True)
class RequestSettings:
    """Validated knobs and the sub-strategies built from them (corpora load once)."""

    max_images: int
    image_limit: int
    at_limit_percent: int
    over_limit_percent: int
    url_image_percent: int
    recipes: st.SearchStrategy[ImageRecipe]
    limit_recipes: st.SearchStrategy[ImageRecipe]
    prompts: st.SearchStrategy[str]
    short_texts: st.SearchStrategy[str]
    max_model_len: int
    long_context_percent: int
    count_tokens: Callable[[str], int] | None
    formats: st.SearchStrategy[dict[str, Any]]
    outputs: st.SearchStrategy[dict[str, Any]]
    tools: st.SearchStrategy[dict[str, Any]]
    sampling: SamplingSettings
    structured_percent: int
    tools_percent: int
    history_percent: int
    reuse_percent: int


def request_settings(*, max_images: int = 4, max_output_tokens: int = 64,
                     max_prompt_tokens: int = 3000, max_pixels: int = MAX_PIXELS,
                     broken_percent: int = 8, structured_percent: int = 20,
                     tools_percent: int = 20, reuse_percent: int = 30, image_limit: int = 8,
                     at_limit_percent: int = 2, over_limit_percent: int = 2,
                     url_image_percent: int = 0, max_model_len: int = 8192,
                     long_context_percent: int = 1,
                     count_tokens: Callable[[str], int] | None = None,
                     history_percent: int = 20, max_tools: int = 4,
                     large_output_tokens: int = 256, sampling_extras_percent: int = 30,
                     unknown_field_percent: int = 3, mistyped_percent: int = 3,
                     invalid_structured_percent: int = 5,
                     animated_percent: int = 3, zero_max_tokens_percent: int = 2,
                     large_output_percent: int = 3) -> RequestSettings:
    check_int("max_images", max_images, 0)
    check_int("image_limit", image_limit, 0)
    check_int("max_prompt_tokens", max_prompt_tokens, 0)
    check_int("max_model_len", max_model_len, 2)
    for name, value in (("structured_percent", structured_percent),
                        ("tools_percent", tools_percent), ("reuse_percent", reuse_percent),
                        ("at_limit_percent", at_limit_percent),
                        ("over_limit_percent", over_limit_percent),
                        ("url_image_percent", url_image_percent),
                        ("long_context_percent", long_context_percent),
                        ("history_percent", history_percent)):
        check_int(name, value, 0, 100)
    sampling = SamplingSettings(
        max_output_tokens=max_output_tokens,
        large_output_tokens=max(large_output_tokens, max_output_tokens),
        zero_percent=zero_max_tokens_percent, large_percent=large_output_percent,
        extras_percent=sampling_extras_percent, unknown_percent=unknown_field_percent,
        mistyped_percent=mistyped_percent)
    return RequestSettings(
        max_images=max_images, image_limit=image_limit, at_limit_percent=at_limit_percent,
        over_limit_percent=over_limit_percent, url_image_percent=url_image_percent,
        recipes=image_recipes(max_pixels=max_pixels, broken_percent=broken_percent,
                              animated_percent=animated_percent),
        limit_recipes=image_recipes(max_pixels=min(max_pixels, 64 * 64), broken_percent=0,
                                    animated_percent=0),
        prompts=texts(min_tokens=0, max_tokens=max_prompt_tokens),
        short_texts=texts(min_tokens=1, max_tokens=min(max(max_prompt_tokens, 1), 64)),
        max_model_len=max_model_len, long_context_percent=long_context_percent,
        count_tokens=count_tokens,
        formats=response_formats(),
        outputs=structured_outputs(invalid_percent=invalid_structured_percent),
        tools=tool_configs(max_tools=max_tools), sampling=sampling,
        structured_percent=structured_percent, tools_percent=tools_percent,
        history_percent=history_percent, reuse_percent=reuse_percent)


def _draw_images(draw: Draw, s: RequestSettings, pool: MediaPool
                 ) -> tuple[list[dict[str, Any]], dict[str, Media], list[str]]:
    tags: list[str] = []
    recipes = s.recipes
    if s.image_limit and chance(draw, s.over_limit_percent):
        count = s.image_limit + draw(st.integers(1, 2))
        recipes = s.limit_recipes
        tags.append("images:over_limit")
    elif s.image_limit and chance(draw, s.at_limit_percent):
        count, recipes = s.image_limit, s.limit_recipes
        tags.append("images:at_limit")
    else:
        count = draw(st.integers(0, s.max_images))
    media: dict[str, Media] = {}
    parts: list[dict[str, Any]] = []
    for _ in range(count):
        m, sha, image_tags_ = pool.image(draw, recipes, s.reuse_percent)
        url = media_url(sha)
        uses_media = True
        if chance(draw, s.url_image_percent):
            url, behaviour, uses_media = draw_fixture_url(draw, m)
            tags.append(f"image:url:{behaviour}")
        if uses_media:
            media[sha] = m
            tags.extend(image_tags_)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts, media, tags


def draw_chat_request(draw: Draw, settings: RequestSettings, pool: MediaPool) -> ChatRequest:
    """One request; images come from (and go into) `pool`."""
    s = settings
    tags: list[str] = []
    messages: list[dict[str, Any]] = []
    max_tokens, max_tokens_tag = draw_max_tokens(draw, s.sampling)
    body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
    if chance(draw, s.tools_percent):
        body.update(draw(s.tools))
        tags.extend(tool_tags(body))
    if chance(draw, 25):
        messages.append({"role": "system", "content": draw(s.short_texts)})
        tags.append("system")
    if chance(draw, s.history_percent):
        history, history_tags = draw(histories(texts=s.short_texts, tools=body.get("tools", ())))
        messages.extend(history)
        tags.extend(history_tags)

    parts, media, image_tags_ = _draw_images(draw, s, pool)
    tags.extend(image_tags_)
    budget_tokens = max(1, max_tokens)
    if budget_tokens < s.max_model_len and chance(draw, s.long_context_percent):
        position, text = draw(context_texts(max_model_len=s.max_model_len,
                                            max_tokens=budget_tokens, count_tokens=s.count_tokens))
        tags.extend([f"context:{position}", "text:long"])
    else:
        text = draw(s.prompts)
        tags.extend(text_tags(text))
    if not parts and chance(draw, 50):
        content: Any = text
    else:
        if text or not parts:
            parts.insert(draw(st.integers(0, len(parts))), {"type": "text", "text": text})
        content = parts
    messages.append({"role": "user", "content": content})
    tags.insert(0, f"images:{sum(p['type'] == 'image_url' for p in parts)}")
    tags.append(max_tokens_tag)
    tags.extend(draw_stream(draw, body))
    tags.extend(draw_sampling(draw, s.sampling, body))
    if chance(draw, s.structured_percent):
        if draw(st.booleans()):
            body["response_format"] = draw(s.formats)
            tags.extend(response_format_tags(body["response_format"]))
        else:
            body["structured_outputs"] = draw(s.outputs)
            tags.extend(structured_outputs_tags(body["structured_outputs"]))
    tags.extend(draw_oddities(draw, s.sampling, body))
    return ChatRequest(body=body, media=media, tags=unique(tags))


def chat_requests(**kwargs: Any) -> st.SearchStrategy[ChatRequest]:
    """Single chat requests (keyword arguments as `request_settings`; tags are
    reported via `hypothesis.event`)."""
    settings = request_settings(**kwargs)

    @st.composite
    def build(draw: Draw) -> ChatRequest:
        request = draw_chat_request(draw, settings, MediaPool())
        emit(request.tags)
        return request

    return build()
