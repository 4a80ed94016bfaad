"""Scenarios: chat requests ("r0", "r1", ...) sharing one media pool, on an arrival
schedule (`traffic`), with repeated payloads, mid-stream disconnects and
order-dependent pairs (a request B sent shortly after a request A that may leave
the server in a different state: a cancelled stream, a broken image, a rejected
constraint, B reusing A's images or prefix)."""

from __future__ import annotations

from collections.abc import Callable, Collection

import hypothesis.strategies as st

from fuzz.model import Media, RequestSpec, Scenario
from fuzz.strategies._common import Draw, check_int, check_order, emit, ints
from fuzz.strategies.dice import SEEDS, Dice
from fuzz.strategies.exclusion import Exclusion
from fuzz.strategies.images import MAX_PIXELS
from fuzz.strategies.pool import MediaPool
from fuzz.strategies.requests import ChatRequest, draw_allowed_request, request_settings
from fuzz.strategies.traffic import (TRAFFIC_SHAPES, arrival_offsets, check_spread,
                                     concurrency_bucket)
from fuzz.tokens import TokenScale

__all__ = ["TRAFFIC_SHAPES", "arrival_offsets", "scenarios"]

DEFAULT_MAX_MODEL_LEN = 8192
_PAIR_GAPS_MS = st.sampled_from((0.0, 1.0, 50.0, 500.0))
_DISCONNECT_AFTER = st.integers(0, 8)
_PERCENT = st.integers(0, 99)


def scenarios(*, min_requests: int = 1, max_requests: int = 32,
              max_images_per_request: int = 4, max_output_tokens: int = 64,
              max_prompt_tokens: int = 3000, max_pixels: int = MAX_PIXELS,
              max_spread_ms: float = 2500.0, broken_percent: int = 8,
              structured_percent: int = 20, tools_percent: int = 20,
              reuse_percent: int = 30, repeat_request_percent: int = 10,
              disconnect_percent: int = 10, pair_percent: int = 5,
              shapes: tuple[str, ...] = TRAFFIC_SHAPES, image_limit: int = 8,
              at_limit_percent: int = 2, over_limit_percent: int = 2,
              url_image_percent: int = 0, max_model_len: int | None = None,
              long_context_percent: int = 1,
              count_tokens: Callable[[str], int] | None = None, history_percent: int = 20,
              max_tools: int = 4, large_output_tokens: int = 256,
              sampling_extras_percent: int = 30, unknown_field_percent: int = 3,
              mistyped_percent: int = 3, invalid_structured_percent: int = 5,
              animated_percent: int = 3, zero_max_tokens_percent: int = 2,
              large_output_percent: int = 3, seed_image_percent: int = 10,
              max_distinct_requests: int = 48, token_scale: TokenScale | None = None,
              exclude_features: Collection[str] | None = None) -> st.SearchStrategy[Scenario]:
    """Scenarios of min_requests..max_requests chat requests (hundreds are fine: the
    schedule is cheap, images are pooled). Images are rendered recipes or, about
    `seed_image_percent`% of new ones, seed files from `corpora/images/`, shared
    through one pool; some requests repeat an earlier body verbatim; some streams
    hang up early (`disconnect_after_chunks`); about `pair_percent`% of scenarios end
    with an A-then-B pair. `url_image_percent` > 0 needs the runner to serve fixtures
    (see `fuzz.fixtures`). Past `max_distinct_requests` drawn bodies, further requests
    are clones of drawn ones differing only in `user` (Hypothesis caps the choices
    one example may make, and a few hundred full draws exceed it). Tags go to
    `RequestSpec.tags` and `hypothesis.event`.

    Text is sized in tokens by `count_tokens` when given, else by `token_scale`
    (`fuzz.tokens.measure_token_scale` on the target), else by an estimate;
    `max_model_len` defaults to the scale's, else 8192. `exclude_features` (tags or
    tag prefixes, see `fuzz.strategies.exclusion`) are never generated."""
    check_int("min_requests", min_requests, 1)
    check_int("max_requests", max_requests, 1)
    check_order("min_requests", min_requests, "max_requests", max_requests)
    check_int("repeat_request_percent", repeat_request_percent, 0, 100)
    check_int("disconnect_percent", disconnect_percent, 0, 100)
    check_int("pair_percent", pair_percent, 0, 100)
    check_int("max_distinct_requests", max_distinct_requests, 1)
    check_spread(max_spread_ms)
    for shape in shapes:
        arrival_offsets(count=1, shape=shape)  # validates each shape name
    if not shapes:
        raise ValueError("shapes must not be empty")
    ex = Exclusion.of(exclude_features)
    if max_model_len is None:
        max_model_len = (token_scale.max_model_len if token_scale is not None
                         and token_scale.max_model_len else DEFAULT_MAX_MODEL_LEN)
    settings = request_settings(
        max_images=max_images_per_request, max_output_tokens=max_output_tokens,
        max_prompt_tokens=max_prompt_tokens, max_pixels=max_pixels,
        broken_percent=broken_percent, structured_percent=structured_percent,
        tools_percent=tools_percent, reuse_percent=reuse_percent, image_limit=image_limit,
        at_limit_percent=at_limit_percent, over_limit_percent=over_limit_percent,
        url_image_percent=url_image_percent, max_model_len=max_model_len,
        long_context_percent=long_context_percent, count_tokens=count_tokens,
        history_percent=history_percent, max_tools=max_tools,
        large_output_tokens=large_output_tokens, sampling_extras_percent=sampling_extras_percent,
        unknown_field_percent=unknown_field_percent, mistyped_percent=mistyped_percent,
        invalid_structured_percent=invalid_structured_percent, animated_percent=animated_percent,
        zero_max_tokens_percent=zero_max_tokens_percent, large_output_percent=large_output_percent,
        seed_image_percent=seed_image_percent, token_scale=token_scale, exclude_features=ex)
    shapes = ex.require(ex.keep(shapes, lambda shape: (f"traffic:{shape}",)), "traffic shape")
    counts = st.integers(min_requests, max_requests)
    if ex:
        counts = st.sampled_from(ex.require(tuple(
            n for n in range(min_requests, max_requests + 1)
            if ex.allows(f"traffic:requests:{concurrency_bucket(n)}")
            and (n <= max_distinct_requests or ex.allows("request:clone"))), "request count"))
    pair_percent = ex.percent(pair_percent, "pair")
    repeat_request_percent = ex.percent(repeat_request_percent, "request:repeat")
    disconnect_percent = ex.percent(disconnect_percent, "disconnect")
    shape_choice = st.sampled_from(shapes)
    schedules = {shape: {} for shape in shapes}

    @st.composite
    def build(draw: Draw) -> Scenario:
        scenario_seed = draw(SEEDS)
        dice = Dice(draw, scenario_seed)
        count = dice.draw(counts)
        # A choice of its own, not a dice flip: little comes before it to vary it by.
        pair = count >= 2 and draw(_PERCENT) >= 100 - pair_percent  # shrinks to no pair
        shape = dice.draw(shape_choice)
        schedule = schedules[shape].get(count)
        if schedule is None:
            schedule = schedules[shape].setdefault(count, arrival_offsets(
                count=count, shape=shape, max_spread_ms=max_spread_ms))
        offsets = dice.draw(schedule)
        if pair:  # B follows A by 0..500 ms, both after everything else
            offsets[-1] = min(offsets[-2] + dice.draw(_PAIR_GAPS_MS), float(max_spread_ms))
        pool = MediaPool()
        drawn: list[ChatRequest] = []
        specs: list[RequestSpec] = []
        media: dict[str, Media] = {}
        common = (f"traffic:{shape}", f"traffic:requests:{concurrency_bucket(count)}")
        for i, offset in enumerate(offsets):
            extra = list(common)
            if pair and i >= count - 2:
                extra.append("pair:first" if i == count - 2 else "pair:second")
            if len(drawn) >= max_distinct_requests and not (pair and i >= count - 2):
                base = drawn[i % max_distinct_requests]
                request = ChatRequest(body={**base.body, "user": f"vlfuzz-clone-{i}"},
                                      media=base.media, tags=base.tags)
                extra.append("request:clone")
            elif drawn and dice.flip(repeat_request_percent):
                request = drawn[dice.draw(ints(0, len(drawn) - 1))]
                extra.append("request:repeat")
            else:
                request = draw_allowed_request(draw, settings, pool, (scenario_seed, i))
            drawn.append(request)
            dice.mix(request.tags)  # later repeats and hang-ups vary with what came before
            disconnect = None
            if (request.body.get("stream") is True and i < max_distinct_requests
                    and dice.flip(disconnect_percent)):
                disconnect = dice.draw(_DISCONNECT_AFTER)
                extra.append("disconnect")
            spec = request.to_spec(f"r{i}", offset, disconnect, tuple(extra))
            emit(spec.tags)
            specs.append(spec)
            media.update(request.media)
        emit([f"scenario:requests:{concurrency_bucket(count)}"])
        return Scenario(requests=tuple(specs), media=media)

    return build()
