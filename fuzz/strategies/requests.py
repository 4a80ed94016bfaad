"""OpenAI chat-completions request bodies (without `model`, which the runner adds)
with images as media (or fixture-URL) placeholders, histories, long contexts,
structured outputs, tools and sampling knobs. Each dimension is a module of its
own; this one composes them and decides how often each appears.

A `MediaPool` is shared by all requests of one scenario so that images sometimes
repeat byte-for-byte (media/prefix caches) and sometimes differ only by seed.

Cost: a request's yes/no decisions and plain entropy come from one `Dice` (one
Hypothesis choice); Hypothesis draws the values (sizes, counts, budgets, which
schema...): some fifteen choices for a typical request instead of sixty. Every
sub-strategy is built once, in `request_settings`, never while drawing."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import reject

from fuzz.model import Media, RequestSpec, media_url
from fuzz.strategies._common import Draw, StrategyArgumentError, check_int, emit, ints, unique
from fuzz.strategies.contexts import ContextSpec, context_spec, draw_context
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, REDRAWS, Exclusion
from fuzz.strategies.history import HistorySpec, draw_history, history_spec
from fuzz.strategies.images import MAX_PIXELS, RecipeSpec, recipe_spec
from fuzz.strategies.pool import ImageSources, MediaPool, image_sources
from fuzz.strategies.sampling import (SamplingSettings, draw_max_tokens, draw_oddities,
                                      draw_sampling, draw_stream)
from fuzz.strategies.schemas import (FormatSpec, draw_response_format, format_spec,
                                     response_format_tags)
from fuzz.strategies.seed_images import seed_files
from fuzz.strategies.structured import (OutputsSpec, draw_structured_outputs, outputs_spec,
                                        structured_outputs_tags)
from fuzz.strategies.texts import PROMPTS, TextSpec, draw_text, sizer, text_spec, text_tags
from fuzz.strategies.tools import ToolSpec, draw_tool_config, tool_spec, tool_tags
from fuzz.strategies.urls import URL_BEHAVIOURS, draw_fixture_url
from fuzz.tokens import TokenScale

__all__ = ["ChatRequest", "MediaPool", "RequestSettings", "chat_requests", "draw_allowed_request",
           "draw_chat_request", "request_settings"]

_CONTENT_TAGS = ("text:unicode", "text:unicode_edge", "text:special_tokens")


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
        return RequestSpec(id=request_id, body=_copied(self.body), offset_ms=offset_ms,
                           disconnect_after_chunks=disconnect_after_chunks,
                           tags=unique(self.tags + extra_tags))


def _copied(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, tuples, scalars), several times
    faster than `copy.deepcopy`, which a body of a few hundred nodes made costly."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    return value


@dataclass(frozen=True)
class RequestSettings:
    """Validated knobs and the sub-specs built from them (corpora load once)."""

    max_images: int
    image_counts: st.SearchStrategy[int]
    image_limit: int
    at_limit_percent: int
    over_limit_percent: int
    url_image_percent: int
    url_behaviours: tuple[str, ...]
    images: ImageSources
    limit_images: ImageSources
    prompts: TextSpec
    short_texts: TextSpec
    max_model_len: int
    long_context_percent: int
    contexts: ContextSpec | None
    formats: FormatSpec
    outputs: OutputsSpec
    tools: ToolSpec
    history: HistorySpec | None
    sampling: SamplingSettings
    system_percent: int
    structured_percent: int
    response_format_percent: int  # of structured requests; the rest use structured_outputs
    tools_percent: int
    history_percent: int
    exclusion: Exclusion


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
                     large_output_percent: int = 3, seed_image_percent: int = 10,
                     token_scale: TokenScale | None = None,
                     exclude_features: Exclusion | Collection[str] | None = None
                     ) -> RequestSettings:
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
                        ("history_percent", history_percent),
                        ("seed_image_percent", seed_image_percent)):
        check_int(name, value, 0, 100)
    ex = Exclusion.of(exclude_features)
    measure = sizer(count_tokens, token_scale)
    sampling = SamplingSettings(
        max_output_tokens=max_output_tokens,
        large_output_tokens=max(large_output_tokens, max_output_tokens),
        zero_percent=zero_max_tokens_percent, large_percent=large_output_percent,
        extras_percent=sampling_extras_percent, unknown_percent=unknown_field_percent,
        mistyped_percent=mistyped_percent, exclusion=ex)
    seeds = seed_files()
    limit_pixels = min(max_pixels, 64 * 64)
    images = image_sources(
        _recipes_or_none(max_pixels=max_pixels, broken_percent=broken_percent,
                  animated_percent=animated_percent, exclusion=ex),
        seeds, seed_percent=seed_image_percent, reuse_percent=reuse_percent,
        max_pixels=max_pixels, exclusion=ex)
    limit_images = image_sources(
        _recipes_or_none(max_pixels=limit_pixels, broken_percent=0, animated_percent=0, exclusion=ex),
        seeds, seed_percent=seed_image_percent, reuse_percent=reuse_percent,
        max_pixels=limit_pixels, exclusion=ex)
    counts = tuple(n for n in range(max_images + 1) if ex.allows(f"images:{n}")
                   and (n == 0 or images.usable))
    behaviours = ex.keep(URL_BEHAVIOURS, lambda b: (f"image:url:{b}",))
    content_only = Exclusion(frozenset(t for t in _CONTENT_TAGS if ex.excludes(t)))
    contexts = None
    if ex.allows("text:long") and ex.allows("context"):
        contexts = context_spec(measure=measure, exclusion=ex)
    history = None
    if any(ex.allows(f"history:{n}") for n in (1, 2, 3)):
        history = history_spec(exclusion=ex)
    formats = format_spec(exclusion=ex)
    outputs = outputs_spec(invalid_percent=invalid_structured_percent, exclusion=ex)
    can_format = ex.allows("structured") and formats.usable
    can_output = ex.allows("structured_outputs") and outputs.kinds is not None
    return RequestSettings(
        max_images=max_images,
        image_counts=ints(0, max_images) if len(counts) == max_images + 1 else st.sampled_from(
            ex.require(counts, "image count")),
        image_limit=image_limit,
        at_limit_percent=ex.percent(at_limit_percent, "images:at_limit") if limit_images.usable
        else 0,
        over_limit_percent=ex.percent(over_limit_percent, "images:over_limit")
        if limit_images.usable else 0,
        url_image_percent=url_image_percent if behaviours else 0, url_behaviours=behaviours,
        images=images, limit_images=limit_images,
        prompts=text_spec(min_tokens=0, max_tokens=max_prompt_tokens, sizer_=measure,
                          exclusion=ex),
        short_texts=text_spec(min_tokens=1, max_tokens=min(max(max_prompt_tokens, 1), 64),
                              sizer_=measure, exclusion=content_only),
        max_model_len=max_model_len,
        long_context_percent=long_context_percent if contexts is not None else 0,
        contexts=contexts, formats=formats, outputs=outputs,
        tools=tool_spec(max_tools=max_tools, exclusion=ex if ex.allows("tools") else NOTHING),
        history=history, sampling=sampling,
        system_percent=ex.percent(25, "system"),
        structured_percent=structured_percent if can_format or can_output else 0,
        response_format_percent=(50 if can_output else 100) if can_format else 0,
        tools_percent=ex.percent(tools_percent, "tools"),
        history_percent=ex.percent(history_percent, "history") if history is not None else 0,
        exclusion=ex)


def _recipes_or_none(*, exclusion: Exclusion, **kwargs: Any) -> RecipeSpec | None:
    """The recipe spec, or None when the exclusion leaves no recipe (bad arguments
    still raise)."""
    spec = recipe_spec(**kwargs)
    try:
        return recipe_spec(**kwargs, exclusion=exclusion) if exclusion else spec
    except StrategyArgumentError:
        return None


def _draw_images(dice: Dice, s: RequestSettings, pool: MediaPool
                 ) -> tuple[list[dict[str, Any]], dict[str, Media], list[str]]:
    tags: list[str] = []
    sources = s.images
    if s.image_limit and dice.flip(s.over_limit_percent):
        count = s.image_limit + dice.draw(ints(1, 2))
        sources = s.limit_images
        tags.append("images:over_limit")
    elif s.image_limit and dice.flip(s.at_limit_percent):
        count, sources = s.image_limit, s.limit_images
        tags.append("images:at_limit")
    else:
        count = dice.draw(s.image_counts)
    media: dict[str, Media] = {}
    parts: list[dict[str, Any]] = []
    for _ in range(count):
        drawn = pool.image(dice, sources)
        if drawn is None:  # nothing allowed came out: one image fewer
            continue
        m, sha, image_tags_ = drawn
        url = media_url(sha)
        uses_media = True
        if dice.flip(s.url_image_percent):
            url, behaviour, uses_media = draw_fixture_url(dice.draw, m, s.url_behaviours)
            tags.append(f"image:url:{behaviour}")
        if uses_media:
            media[sha] = m
            tags.extend(image_tags_)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts, media, tags


def draw_chat_request(draw: Draw, settings: RequestSettings, pool: MediaPool,
                      salt: tuple[int, ...] = ()) -> ChatRequest | None:
    """One request; images come from (and go into) `pool`; `salt` tells its dice
    apart from other requests' (see `Dice`). None only when the exclusion rules out
    a tag that follows from what was drawn (e.g. the image count after an excluded
    image was left out): the caller draws again."""
    s = settings
    dice = Dice.rolled(draw, salt)
    tags: list[str] = []
    messages: list[dict[str, Any]] = []
    max_tokens, max_tokens_tag = draw_max_tokens(dice, s.sampling)
    body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
    if dice.flip(s.tools_percent):
        body.update(draw_tool_config(dice, s.tools))
        tags.extend(tool_tags(body))

    def short_text() -> str:
        return draw_text(dice, s.short_texts) or PROMPTS[0]

    if dice.flip(s.system_percent):
        messages.append({"role": "system", "content": short_text()})
        tags.append("system")
    if s.history is not None and dice.flip(s.history_percent):
        history, history_tags = draw_history(dice, s.history, short_text,
                                             body.get("tools", ()))
        messages.extend(history)
        tags.extend(history_tags)

    parts, media, image_tags_ = _draw_images(dice, s, pool)
    tags.extend(image_tags_)
    budget_tokens = max(1, max_tokens)
    text: str | None
    if s.contexts is not None and budget_tokens < s.max_model_len \
            and dice.flip(s.long_context_percent):
        position, text = draw_context(dice.draw, s.contexts, s.max_model_len - budget_tokens)
        tags.extend([f"context:{position}", "text:long"])
    else:
        text = draw_text(dice, s.prompts)
        if text is None:
            return None
        tags.extend(text_tags(text))
    if not parts and dice.flip(50):
        content: Any = text
    else:
        if text or not parts:
            parts.insert(dice.draw(ints(0, len(parts))), {"type": "text", "text": text})
        content = parts
    messages.append({"role": "user", "content": content})
    tags.insert(0, f"images:{sum(p['type'] == 'image_url' for p in parts)}")
    tags.append(max_tokens_tag)
    tags.extend(draw_stream(dice, body, s.exclusion))
    tags.extend(draw_sampling(dice, s.sampling, body))
    if dice.flip(s.structured_percent):
        if dice.flip(s.response_format_percent):
            value = draw_response_format(dice, s.formats)
            if value is not None:
                body["response_format"] = value
                tags.extend(response_format_tags(value))
        else:
            value = draw_structured_outputs(dice, s.outputs)
            if value is not None:
                body["structured_outputs"] = value
                tags.extend(structured_outputs_tags(value))
    tags.extend(draw_oddities(dice, s.sampling, body))
    request = ChatRequest(body=body, media=media, tags=unique(tags))
    if s.exclusion and not s.exclusion.allows_all(request.tags):
        return None
    return request


def draw_allowed_request(draw: Draw, settings: RequestSettings, pool: MediaPool,
                         salt: tuple[int, ...] = ()) -> ChatRequest:
    """`draw_chat_request`, drawn again (up to REDRAWS times) while it returns None;
    the example is rejected after that (only odd exclusions get there)."""
    for attempt in range(REDRAWS):
        request = draw_chat_request(draw, settings, pool, salt + (attempt,))
        if request is not None:
            return request
    reject()
    raise AssertionError("unreachable")  # reject() raises


def chat_requests(**kwargs: Any) -> st.SearchStrategy[ChatRequest]:
    """Single chat requests (keyword arguments as `request_settings`; tags are
    reported via `hypothesis.event`)."""
    settings = request_settings(**kwargs)

    @st.composite
    def build(draw: Draw) -> ChatRequest:
        request = draw_allowed_request(draw, settings, MediaPool())
        emit(request.tags)
        return request

    return build()
