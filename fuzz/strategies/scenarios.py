"""Scenarios: a burst or a short spread of chat requests ("r0", "r1", ...) sharing
one media pool, with arrival offsets shaped as a burst, uniform or Poisson-ish."""

from __future__ import annotations

import math

import hypothesis.strategies as st

from fuzz.model import Media, RequestSpec, Scenario
from fuzz.strategies._common import (Draw, StrategyArgumentError, chance, check_int,
                                     check_order, emit)
from fuzz.strategies.images import MAX_PIXELS
from fuzz.strategies.requests import ChatRequest, MediaPool, draw_chat_request, request_settings

TRAFFIC_SHAPES: tuple[str, ...] = ("burst", "uniform", "poisson")


def arrival_offsets(*, count: int, shape: str | None = None,
                    max_spread_ms: float = 2500.0) -> st.SearchStrategy[list[float]]:
    """Sorted offsets in ms (0.1 ms resolution) within [0, max_spread_ms]; all zero
    for a burst. `shape` None draws one of TRAFFIC_SHAPES."""
    check_int("count", count, 1)
    if shape is not None and shape not in TRAFFIC_SHAPES:
        raise StrategyArgumentError(f"shape {shape!r} not in {TRAFFIC_SHAPES}")
    if not (isinstance(max_spread_ms, (int, float)) and 0 < max_spread_ms < math.inf):
        raise StrategyArgumentError(f"max_spread_ms must be a positive number, got {max_spread_ms!r}")

    @st.composite
    def build(draw: Draw) -> list[float]:
        kind = shape or draw(st.sampled_from(TRAFFIC_SHAPES))
        if kind == "burst":
            return [0.0] * count
        span = draw(st.floats(min(100.0, max_spread_ms), float(max_spread_ms)))
        if kind == "uniform":
            raw = [draw(st.floats(0.0, span)) for _ in range(count)]
        else:  # exponential gaps with mean span/count: a Poisson process, clipped
            gaps = [-math.log1p(-draw(st.floats(0.0, 0.99))) * span / count for _ in range(count)]
            raw = list(_cumsum(gaps))
        return sorted(min(round(t, 1), float(max_spread_ms)) for t in raw)

    return build()


def _cumsum(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out


def scenarios(*, min_requests: int = 1, max_requests: int = 32,
              max_images_per_request: int = 4, max_output_tokens: int = 64,
              max_prompt_tokens: int = 3000, max_pixels: int = MAX_PIXELS,
              max_spread_ms: float = 2500.0, broken_percent: int = 8,
              structured_percent: int = 20, tools_percent: int = 20,
              reuse_percent: int = 30, repeat_request_percent: int = 10,
              disconnect_percent: int = 10) -> st.SearchStrategy[Scenario]:
    """Scenarios of min_requests..max_requests chat requests. Every request has
    messages and a small max_tokens; images are rendered recipes shared through one
    pool; some requests repeat an earlier body verbatim; some streams hang up early
    (`disconnect_after_chunks`). Tags go to `RequestSpec.tags` and `hypothesis.event`."""
    check_int("min_requests", min_requests, 1)
    check_int("max_requests", max_requests, 1)
    check_order("min_requests", min_requests, "max_requests", max_requests)
    check_int("repeat_request_percent", repeat_request_percent, 0, 100)
    check_int("disconnect_percent", disconnect_percent, 0, 100)
    arrival_offsets(count=1, max_spread_ms=max_spread_ms)  # validates max_spread_ms
    settings = request_settings(
        max_images=max_images_per_request, max_output_tokens=max_output_tokens,
        max_prompt_tokens=max_prompt_tokens, max_pixels=max_pixels,
        broken_percent=broken_percent, structured_percent=structured_percent,
        tools_percent=tools_percent, reuse_percent=reuse_percent)

    @st.composite
    def build(draw: Draw) -> Scenario:
        count = draw(st.integers(min_requests, max_requests))
        shape = draw(st.sampled_from(TRAFFIC_SHAPES))
        offsets = draw(arrival_offsets(count=count, shape=shape, max_spread_ms=max_spread_ms))
        pool = MediaPool()
        drawn: list[ChatRequest] = []
        specs: list[RequestSpec] = []
        media: dict[str, Media] = {}
        for i, offset in enumerate(offsets):
            extra = [f"traffic:{shape}"]
            if drawn and chance(draw, repeat_request_percent):
                request = drawn[draw(st.integers(0, len(drawn) - 1))]
                extra.append("request:repeat")
            else:
                request = draw_chat_request(draw, settings, pool)
            drawn.append(request)
            disconnect = None
            if request.body.get("stream") is True and chance(draw, disconnect_percent):
                disconnect = draw(st.integers(0, 8))
                extra.append("disconnect")
            spec = request.to_spec(f"r{i}", offset, disconnect, tuple(extra))
            emit(spec.tags)
            specs.append(spec)
            media.update(request.media)
        emit([f"scenario:requests:{_bucket(count)}"])
        return Scenario(requests=tuple(specs), media=media)

    return build()


def _bucket(n: int) -> str:
    return "1" if n == 1 else "2-4" if n <= 4 else "5-16" if n <= 16 else "17+"
