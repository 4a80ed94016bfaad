"""`exclude_features`: a request carrying an excluded feature is never generated, for
decided features (a field, an option) and derived ones (an image's size class, a
schema's keywords) alike; the rest keeps being generated; impossible or mistyped
exclusions fail eagerly; and exclusion does not trip Hypothesis' health checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import InvalidArgument

from fuzz.media import ImageRecipe
from fuzz.model import FIXTURE_SCHEME, Scenario
from fuzz.strategies import (SPECIAL_TOKENS, Exclusion, feature_counts, image_recipes,
                             response_formats, scenarios, texts, tool_configs)
from test_strategies import all_strings, check_tool_history, sample

SMALL = dict(max_pixels=48 * 48, max_prompt_tokens=200, max_requests=4, max_output_tokens=8)
Body = dict[str, Any]


def recipes(scenario: Scenario) -> list[dict[str, Any]]:
    return [dict(m.recipe) for m in scenario.media.values()]


def bodies(scenario: Scenario) -> list[Body]:
    return [dict(r.body) for r in scenario.requests]


def gif(s: Scenario) -> bool:
    return any(r.get("format") == "GIF" for r in recipes(s))


def special(s: Scenario) -> bool:
    return any(tok in text for b in bodies(s) for text in all_strings(b["messages"])
               for tok in SPECIAL_TOKENS)


def broken_history(s: Scenario) -> bool:
    try:
        for b in bodies(s):
            check_tool_history(b["messages"])
    except (AssertionError, ValueError, TypeError):
        return True
    return False


def tiny(s: Scenario) -> bool:
    return any(r.get("width_px", 99) * r.get("height_px", 99) <= 32 * 32 for r in recipes(s))


def field(name: str, test: Callable[[Any], bool] = lambda v: True) -> Callable[[Scenario], bool]:
    return lambda s: any(name in b and test(b[name]) for b in bodies(s))


# (excluded, knobs that make it frequent, what it looks like in a scenario)
CASES: list[tuple[str, dict[str, Any], Callable[[Scenario], bool]]] = [
    ("sampling:seed", {}, field("seed")),
    ("sampling:temperature:0", {}, field("temperature", lambda t: t == 0.0)),
    ("stream", {"mistyped_percent": 0}, field("stream", lambda v: v is True)),
    ("structured", {"structured_percent": 100}, field("response_format")),
    ("structured_outputs", {"structured_percent": 100}, field("structured_outputs")),
    ("structured_outputs:grammar", {"structured_percent": 100},
     field("structured_outputs", lambda v: "grammar" in v)),
    ("tools", {"tools_percent": 100}, field("tools")),
    ("tools:named", {"tools_percent": 100}, field("tool_choice", lambda v: isinstance(v, dict))),
    ("history:broken", {"history_percent": 100}, broken_history),
    ("text:special_tokens", {"history_percent": 60}, special),
    ("image:format:gif", {}, gif),
    ("image:seed", {"seed_image_percent": 100},
     lambda s: any(r.get("kind") == "seed_image" for r in recipes(s))),
    ("image:broken", {"broken_percent": 100},
     lambda s: any(r.get("corruption") for r in recipes(s))),
    ("image:size:tiny", {}, tiny),
    ("image:url", {"url_image_percent": 100},
     lambda s: FIXTURE_SCHEME in str([b["messages"] for b in bodies(s)])),
    ("max_tokens:0", {"zero_max_tokens_percent": 100, "mistyped_percent": 0},
     field("max_tokens", lambda v: v == 0)),
    ("extra:unknown_field", {"unknown_field_percent": 100},
     lambda s: any(t == "extra:unknown_field" for r in s.requests for t in r.tags)),
    ("disconnect", {"disconnect_percent": 100},
     lambda s: any(r.disconnect_after_chunks is not None for r in s.requests)),
    ("pair", {"pair_percent": 100, "min_requests": 2},
     lambda s: any(t.startswith("pair:") for r in s.requests for t in r.tags)),
    ("traffic:burst", {"shapes": ("burst", "uniform")},
     lambda s: any("traffic:burst" in r.tags for r in s.requests)),
]


@pytest.mark.parametrize("excluded,knobs,present", CASES, ids=[c[0] for c in CASES])
def test_an_excluded_feature_is_never_generated(excluded: str, knobs: dict[str, Any],
                                                present: Callable[[Scenario], bool]) -> None:
    kwargs = {**SMALL, **knobs}
    # A broken history is a small share by design (a few % of tool-call turns): one CI
    # run drew none in 25 scenarios, so the control looks further for it.
    control = sample(scenarios(**kwargs), 100 if excluded == "history:broken" else 25)
    assert any(present(s) for s in control), "the knobs should make the feature appear"
    drawn = sample(scenarios(**kwargs, exclude_features=frozenset({excluded})), 25)
    ex = Exclusion.of({excluded})
    for scenario in drawn:
        assert not present(scenario)
        for spec in scenario.requests:
            assert not [t for t in spec.tags if ex.excludes(t)], spec.tags
    assert sum(len(s.requests) for s in drawn) >= 25  # requests keep coming


def test_the_rest_keeps_being_generated() -> None:
    excluded = frozenset({"sampling:seed", "image:format:gif", "structured_outputs:grammar"})
    counts = feature_counts(sample(scenarios(**SMALL, structured_percent=60,
                                             exclude_features=excluded), 40))
    assert counts["stream"] and counts["structured_outputs:regex"]
    assert counts["image:format:png"] and counts["sampling:temperature:0"]
    assert not any(Exclusion.of(excluded).excludes(t) for t in counts)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(**SMALL, exclude_features=frozenset({
    "sampling:seed", "image:size:tiny", "text:short", "schema:feature:ref", "tools:2",
    "history:broken", "image:format:jpeg", "stream:include_usage", "images:1"})))
def test_exclusion_passes_the_health_checks(scenario: Scenario) -> None:
    for spec in scenario.requests:
        assert not {"sampling:seed", "image:size:tiny", "text:short", "tools:2",
                    "stream:include_usage", "images:1"} & set(spec.tags)
        assert not any(t.startswith(("history:broken", "image:format:jpeg"))
                       for t in spec.tags)


def test_the_sub_strategies_take_the_keyword_too() -> None:
    assert not any(tok in t for t in sample(texts(max_tokens=100, exclude_features={
        "text:special_tokens"}), 80) for tok in SPECIAL_TOKENS)
    assert all(r.format != "GIF" for r in sample(image_recipes(exclude_features={
        "image:format:gif"}, max_pixels=64 * 64), 60))
    assert all(rf["type"] == "json_schema" for rf in sample(response_formats(
        json_object_percent=50, exclude_features={"structured:json_object"}), 30))
    assert all(not isinstance(c.get("tool_choice"), dict) for c in sample(tool_configs(
        exclude_features={"tools:named"}), 40))


def test_matching_is_by_whole_tag_segments() -> None:
    ex = Exclusion.of({"sampling:seed", "image:format:"})
    assert ex.excludes("sampling:seed") and ex.excludes("sampling:seed:bound")
    assert not ex.excludes("sampling:seeds") and not ex.excludes("sampling")
    assert ex.excludes("image:format:gif") and not ex.excludes("image:mode:p")
    assert Exclusion.of(None) == Exclusion.of(frozenset()) and not Exclusion.of(None)
    assert ex.allows_all(["stream", "images:1"]) and not ex.allows_all(["stream", "sampling:seed"])


@pytest.mark.parametrize("bad", [
    "sampling:seed",  # a lone string, not a collection of tags
    {"seed"},  # no tag starts with "seed:" (the sampling seed is sampling:seed)
    {""}, {":"}, {3},
    {"traffic"},  # every traffic shape
    {"max_tokens"}, {"images"}, {"text"},
    {"image", "images:0"},  # no image can be made, and no count without one is allowed
])
def test_impossible_or_mistyped_exclusions_fail_eagerly(bad: Any) -> None:
    with pytest.raises(ValueError):
        scenarios(exclude_features=bad)
    with pytest.raises(InvalidArgument):
        scenarios(exclude_features=bad)


def test_excluding_every_image_leaves_text_only_requests() -> None:
    every_format = {f"image:format:{f}" for f in ("png", "jpeg", "webp", "gif", "bmp", "tiff")}
    for excluded in ({"image"}, every_format):
        for scenario in sample(scenarios(**SMALL, at_limit_percent=50,
                                         exclude_features=excluded), 15):
            assert not scenario.media
            assert all("images:0" in r.tags for r in scenario.requests)


def test_excluded_recipe_tags_never_reach_the_media() -> None:
    for scenario in sample(scenarios(**SMALL, seed_image_percent=0, exclude_features={
            "image:mode:cmyk", "image:content:noise"}), 25):
        for media in scenario.media.values():
            recipe = ImageRecipe.from_json(media.recipe)
            assert recipe.mode != "CMYK" and recipe.content != "noise"
