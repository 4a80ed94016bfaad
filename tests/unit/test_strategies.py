"""fuzz.strategies: generated scenarios are well-formed, round-trip through JSON,
reference only media they carry, and cover the features they claim in their tags."""

from __future__ import annotations

import json
import re
from collections import Counter

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fuzz.media import ImageRecipe
from fuzz.model import MEDIA_SCHEME, Media, RequestSpec, Scenario, resolve_media
from fuzz.strategies import (SPECIAL_TOKENS, ChatRequest, arrival_offsets, chat_requests,
                             estimate_tokens, feature_counts, image_recipes, image_sizes,
                             response_formats, scenarios, seed_files, seed_schemas, seed_tools, texts,
                             tool_configs, tool_sets, TRAFFIC_SHAPES)

FAST = settings(max_examples=20, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SMALL = dict(max_pixels=48 * 48, max_prompt_tokens=300, max_requests=8)


def recipes_of(scenario: Scenario) -> list[ImageRecipe]:
    """The rendered images' recipes (seed images have none)."""
    return [ImageRecipe.from_json(m.recipe) for m in scenario.media.values()
            if m.recipe.get("kind") != "seed_image"]


def pixels_of(media: Media) -> int:
    if media.recipe.get("kind") == "seed_image":
        return next(f.pixels for f in seed_files() if f.name == media.recipe["name"])
    return ImageRecipe.from_json(media.recipe).pixels


def all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


def check_body(body: dict, max_output_tokens: int, tags: tuple[str, ...] = (),
               max_tools: int = 4) -> None:
    """What every generated body must satisfy; deliberate breakage is excused only
    by the tag that announces it."""
    mistyped = {t.split(":", 2)[2] for t in tags if t.startswith("extra:mistyped:")}
    assert "model" not in body
    assert isinstance(body["messages"], list) and body["messages"]
    assert body["messages"][-1]["role"] == "user"
    if "max_tokens" not in mistyped:
        assert isinstance(body["max_tokens"], int)
        if "max_tokens:0" in tags:
            assert body["max_tokens"] == 0
        elif "max_tokens:large" in tags:
            assert body["max_tokens"] > max_output_tokens
        else:
            assert 1 <= body["max_tokens"] <= max_output_tokens
    if "stream_options" in body and not mistyped & {"stream", "stream_options"}:
        assert body["stream"] is True
    if "tools" in body:
        offered = {t["function"]["name"] for t in body["tools"]}
        assert 1 <= len(offered) == len(body["tools"]) <= max_tools
        for tool in body["tools"]:
            jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
        choice = body.get("tool_choice", "auto")
        if isinstance(choice, dict):
            assert choice["type"] == "function" and choice["function"]["name"] in offered
        else:
            assert choice in ("auto", "required", "none")
    rf = body.get("response_format")
    if rf is not None and rf["type"] == "json_schema":
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", rf["json_schema"]["name"])
        schema = rf["json_schema"]["schema"]
        jsonschema.validators.validator_for(schema).check_schema(schema)
    so = body.get("structured_outputs")
    if so is not None and "structured_outputs:invalid" not in tags:
        assert sum(so.get(k) is not None for k in ("json", "regex", "choice", "grammar",
                                                    "json_object")) == 1
        if "json" in so:
            jsonschema.validators.validator_for(so["json"]).check_schema(so["json"])
        if "regex" in so:
            re.compile(so["regex"])
    if not any(t.startswith("history:broken:") for t in tags):
        check_tool_history(body["messages"])
    json.dumps(body)  # sendable as JSON (the runner uses json.dumps)


def check_tool_history(messages: list[dict]) -> None:
    """Each assistant tool call is answered, in order, by a tool message with its id,
    before anything else; no tool message answers an unknown id."""
    pending: list[str] = []
    for m in messages:
        if m["role"] == "tool":
            assert pending and m["tool_call_id"] == pending.pop(0)
            continue
        assert not pending, f"unanswered tool calls {pending}"
        for call in m.get("tool_calls", ()):
            assert call["type"] == "function" and isinstance(call["function"]["arguments"], str)
            assert isinstance(json.loads(call["function"]["arguments"]), dict)
            pending.append(call["id"])
    assert not pending


def image_parts(body: dict) -> int:
    return sum(1 for m in body["messages"] if isinstance(m.get("content"), list)
               for p in m["content"] if p.get("type") == "image_url")


def check_tags(spec: RequestSpec) -> None:
    tags = set(spec.tags)
    assert tags and len(tags) == len(spec.tags)
    assert f"images:{image_parts(dict(spec.body))}" in tags
    if "extra:mistyped:stream" not in tags:  # "yes" streams (lax), the tag says mistyped
        assert ("stream" in tags) == spec.stream
    assert any(t.startswith("traffic:") for t in tags)
    assert ("structured:json_schema" in tags) == (
        spec.body.get("response_format", {}).get("type") == "json_schema")
    assert any(t.startswith("structured_outputs:") for t in tags) == ("structured_outputs" in spec.body)
    assert any(t.startswith("tools:") for t in tags) == ("tools" in spec.body)
    assert ("disconnect" in tags) == (spec.disconnect_after_chunks is not None)


@FAST
@given(scenarios(max_output_tokens=16, **SMALL))
def test_scenarios_are_well_formed(scenario: Scenario) -> None:
    assert 1 <= len(scenario.requests) <= 8
    assert [r.id for r in scenario.requests] == [f"r{i}" for i in range(len(scenario.requests))]
    assert scenario.seed is None
    offsets = [r.offset_ms for r in scenario.requests]
    assert offsets == sorted(offsets) and all(0.0 <= t <= 2500.0 for t in offsets)
    if "traffic:burst" in scenario.requests[0].tags:
        # Everything is sent at once, except a pair's B, which follows its A on purpose.
        assert {r.offset_ms for r in scenario.requests if "pair:second" not in r.tags} == {0.0}
    if "pair:second" in scenario.requests[-1].tags:
        assert "pair:first" in scenario.requests[-2].tags
        assert scenario.requests[-1].offset_ms >= scenario.requests[-2].offset_ms
    used = {h for r in scenario.requests for h in r.media_refs()}
    assert used == set(scenario.media)  # every placeholder resolves, nothing unused
    for spec in scenario.requests:
        check_body(dict(spec.body), max_output_tokens=16, tags=spec.tags)
        check_tags(spec)
        limit = 10 if "images:over_limit" in spec.tags else 8 if "images:at_limit" in spec.tags else 4
        assert len(spec.media_refs()) <= limit
        assert not any(s.startswith(MEDIA_SCHEME) for s in all_strings(
            resolve_media(spec.body, scenario.media)))
    for media in scenario.media.values():
        assert pixels_of(media) <= 48 * 48


@FAST
@given(scenarios(**SMALL))
def test_scenarios_round_trip_through_json(scenario: Scenario) -> None:
    text = json.dumps(scenario.to_json())
    blobs = {h: m.data for h, m in scenario.media.items()}
    again = Scenario.from_json(json.loads(text), blobs)
    assert again == scenario
    assert json.dumps(again.to_json()) == text


@settings(max_examples=4, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(max_requests=12))
def test_default_scenarios_stay_within_bounds(scenario: Scenario) -> None:
    assert 1 <= len(scenario.requests) <= 12
    for spec in scenario.requests:
        check_body(dict(spec.body), max_output_tokens=64, tags=spec.tags)
        assert estimate_tokens(json.dumps(spec.body)) < 40_000
    for media in scenario.media.values():
        assert pixels_of(media) <= 1_100_000


@FAST
@given(st.integers(1, 5).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 8))).flatmap(
    lambda b: st.tuples(st.just(b), scenarios(min_requests=b[0], max_requests=b[1],
                                              max_pixels=16 * 16, max_prompt_tokens=50))))
def test_request_count_respects_bounds(bounded: tuple) -> None:
    (lo, hi), scenario = bounded
    assert lo <= len(scenario.requests) <= hi


@FAST
@given(chat_requests(max_images=2, max_output_tokens=3, max_pixels=48 * 48, max_prompt_tokens=300,
                     image_limit=0))
def test_chat_requests(request: ChatRequest) -> None:
    check_body(request.body, max_output_tokens=3, tags=request.tags)
    spec = request.to_spec("x", 5.0)
    assert set(spec.media_refs()) == set(request.media)
    assert len(spec.media_refs()) <= 2 and f"images:{len(spec.media_refs())}" in request.tags
    assert spec.body == request.body and spec.body is not request.body


def sample(strategy: st.SearchStrategy, n: int) -> list:
    """`n` deterministic draws (derandomized, no shrinking), for "sometimes" checks."""
    seen: list = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: object) -> None:
        seen.append(value)

    collect()
    return seen


def test_generation_sometimes_repeats_and_varies_images() -> None:
    drawn = sample(scenarios(min_requests=2, max_requests=6, max_pixels=32 * 32,
                             max_prompt_tokens=50), 40)

    def repeats(s: Scenario) -> bool:
        refs = [h for r in s.requests for h in r.media_refs()]
        return len(refs) > len(set(refs))

    def variant(s: Scenario) -> bool:
        recipes = recipes_of(s)
        keys = Counter((r.width_px, r.height_px, r.mode, r.format, r.content) for r in recipes)
        return any(n > 1 for n in keys.values())

    assert any(repeats(s) for s in drawn)
    assert any(variant(s) for s in drawn)
    assert any(r.corruption for s in drawn for r in recipes_of(s))
    counts = feature_counts(drawn)
    assert counts["image:repeat"] and counts["image:variant"] and counts["stream"]


@FAST
@given(image_sizes(max_pixels=5000, max_side=300))
def test_image_sizes_respect_budget(size: tuple[int, int]) -> None:
    w, h = size
    assert 1 <= w <= 300 and 1 <= h <= 300 and w * h <= 5000


@FAST
@given(image_recipes(formats=["JPEG"], modes=["RGBA"], broken_percent=0, max_pixels=100))
def test_image_recipes_honour_choices(recipe: ImageRecipe) -> None:
    assert (recipe.format, recipe.mode, recipe.corruption) == ("JPEG", "RGBA", None)


@FAST
@given(st.integers(0, 3000).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 3000))).flatmap(
    lambda b: st.tuples(st.just(b), texts(min_tokens=b[0], max_tokens=b[1]))))
def test_texts_respect_token_bounds(bounded: tuple) -> None:
    (lo, hi), text = bounded
    assert lo <= estimate_tokens(text) <= hi


def test_texts_reach_long_unicode_and_special_tokens() -> None:
    drawn = sample(texts(), 150)
    assert any(estimate_tokens(t) > 2000 for t in drawn)
    assert any(estimate_tokens(t) < 32 for t in drawn)
    assert any(any(ord(c) > 127 for c in t) for t in drawn)
    assert any(any(tok in t for tok in SPECIAL_TOKENS) for t in drawn)


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("日本語") == 3


def test_seed_schemas_and_tools_are_valid() -> None:
    schemas = seed_schemas()
    assert len(schemas) >= 30
    for schema in schemas.values():
        jsonschema.validators.validator_for(schema).check_schema(schema)
    assert any("$ref" in json.dumps(s) for s in schemas.values())
    assert any("enum" in json.dumps(s) for s in schemas.values())
    tools = seed_tools()
    assert {"get_weather", "search_web", "create_calendar_event", "calculator"} <= set(tools)
    for tool in tools.values():
        assert tool["function"]["parameters"]["type"] == "object"


@FAST
@given(response_formats())
def test_response_formats(rf: dict) -> None:
    assert rf["type"] in ("json_schema", "json_object")
    if rf["type"] == "json_schema":
        check_body({"messages": [{"role": "user", "content": ""}], "max_tokens": 1,
                    "response_format": rf}, 1)


@FAST
@given(tool_configs())
def test_tool_configs_name_an_offered_tool(config: dict) -> None:
    check_body({"messages": [{"role": "user", "content": ""}], "max_tokens": 1, **config}, 1)


def test_every_tool_choice_form_is_drawn() -> None:
    configs = sample(tool_configs(), 100)
    choices = [c["tool_choice"] for c in configs if "tool_choice" in c]
    assert any("tool_choice" not in c for c in configs)
    assert {True, False} <= {c.get("parallel_tool_calls") for c in configs}
    assert {"auto", "required", "none"} <= {c for c in choices if isinstance(c, str)}
    assert any(isinstance(c, dict) for c in choices)


@FAST
@given(st.sampled_from(TRAFFIC_SHAPES).flatmap(
    lambda shape: st.tuples(st.just(shape), arrival_offsets(count=10, shape=shape, max_spread_ms=800))))
def test_arrival_offsets(drawn: tuple) -> None:
    shape, offsets = drawn
    assert len(offsets) == 10 and offsets == sorted(offsets)
    assert all(0.0 <= t <= 800.0 for t in offsets)
    if shape == "burst":
        assert set(offsets) == {0.0}


@pytest.mark.parametrize("make", [
    lambda: scenarios(min_requests=0),
    lambda: scenarios(min_requests=5, max_requests=2),
    lambda: scenarios(max_output_tokens=0),
    lambda: scenarios(max_images_per_request=-1),
    lambda: scenarios(max_requests=True),
    lambda: scenarios(max_spread_ms=0),
    lambda: scenarios(max_pixels=0),
    lambda: chat_requests(structured_percent=101),
    lambda: texts(min_tokens=10, max_tokens=5),
    lambda: tool_sets(min_tools=0),
    lambda: tool_sets(min_tools=3, max_tools=2),
    lambda: image_sizes(max_side=20000),
    lambda: image_recipes(formats=["PDF"]),
    lambda: image_recipes(max_frames=1),
    lambda: scenarios(image_limit=-1),
    lambda: scenarios(url_image_percent=101),
    lambda: scenarios(shapes=("zigzag",)),
    lambda: scenarios(max_model_len=1),
    lambda: chat_requests(sampling_extras_percent=-1),
    lambda: scenarios(pair_percent=200),
    lambda: image_recipes(modes=[]),
    lambda: arrival_offsets(count=3, shape="ramp"),
    lambda: arrival_offsets(count=3, max_spread_ms=float("inf")),
])
def test_bad_arguments_fail_eagerly(make) -> None:
    with pytest.raises(ValueError):
        make()
    with pytest.raises(InvalidArgument):
        make()


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        scenarios(1, 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        texts(0, 10)  # type: ignore[misc]


def test_feature_counts_counts_requests_per_tag() -> None:
    a = Scenario(requests=(RequestSpec("r0", {}, tags=("stream", "images:0")),
                           RequestSpec("r1", {}, tags=("images:0",))))
    b = Scenario(requests=(RequestSpec("r0", {}, tags=("images:0", "images:0")),))
    assert feature_counts([a, b]) == Counter({"images:0": 3, "stream": 1})
    assert feature_counts([]) == Counter()
