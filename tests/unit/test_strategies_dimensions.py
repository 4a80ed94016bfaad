"""fuzz.strategies, one dimension at a time: generated schemas, structured_outputs,
tools and histories, sampling extras, long contexts, image counts and URLs,
traffic shapes, pairs, and seed reproducibility."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from fuzz.model import FIXTURE_SCHEME, Scenario, resolve_media
from fuzz.strategies import (TRAFFIC_SHAPES, URL_BEHAVIOURS, arrival_offsets, chat_requests,
                             context_texts, estimate_tokens, feature_counts, fit_to_tokens,
                             histories, image_sizes, json_schemas, scenarios, schema_features,
                             seed_tools, structured_outputs, structured_outputs_tags, texts,
                             tool_sets)
from fuzz.strategies.history import example_for
from fuzz.strategies.texts import LONE_SURROGATES
from test_strategies import check_body, check_tool_history, image_parts, sample

FAST = settings(max_examples=30, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))
TINY = dict(max_pixels=16 * 16, max_prompt_tokens=40)


def validator(schema: dict) -> type:
    return jsonschema.validators.validator_for(schema)


@FAST
@given(json_schemas())
def test_generated_schemas_are_valid_schemas(schema: dict) -> None:
    validator(schema).check_schema(schema)
    assert schema.get("type") == "object" or "$ref" in schema
    json.dumps(schema)


def test_generated_schemas_reach_every_keyword_family() -> None:
    features = set().union(*(schema_features(s) for s in sample(json_schemas(), 250)))
    assert {"ref", "recursion", "enum", "const", "pattern", "format", "anyOf", "oneOf",
            "prefixItems", "tupleItems07", "minItems", "maxItems", "minLength", "maxLength",
            "bigint", "additionalProperties:False", "additionalProperties:schema"} <= features


def test_example_instances_validate_against_seed_tool_parameters() -> None:
    for tool in seed_tools().values():
        params = tool["function"]["parameters"]
        errors = jsonschema.Draft202012Validator(params).iter_errors(example_for(params))
        assert {e.validator for e in errors} <= {"pattern", "format"}  # best effort there


def test_structured_outputs_are_well_formed_unless_tagged_invalid() -> None:
    drawn = sample(structured_outputs(invalid_percent=20), 200)
    kinds = ("json", "regex", "choice", "grammar", "json_object")
    seen = set()
    for value in drawn:
        tags = structured_outputs_tags(value)
        present = [k for k in kinds if value.get(k) is not None]
        if "structured_outputs:invalid" in tags:
            continue
        assert len(present) == 1, value
        seen.add(present[0])
        if "json" in value:
            validator(value["json"]).check_schema(value["json"])
        if "regex" in value:
            re.compile(value["regex"])
        if "choice" in value:
            assert value["choice"] and all(isinstance(c, str) for c in value["choice"])
    assert seen == set(kinds)
    assert sum("structured_outputs:invalid" in structured_outputs_tags(v) for v in drawn) >= 20


@FAST
@given(tool_sets(min_tools=5, max_tools=20))
def test_many_tools_with_generated_parameters(tools: list) -> None:
    names = [t["function"]["name"] for t in tools]
    assert 5 <= len(names) == len(set(names)) <= 20
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
    if len(tools) > len(seed_tools()):
        assert any(n.startswith("gen_tool_") for n in names)


def test_histories_are_well_formed_or_broken_as_tagged() -> None:
    tools = list(seed_tools().values())[:3]
    drawn = sample(histories(texts=st.just("hi"), tools=tools, max_turns=3, tool_call_percent=80,
                             broken_percent=40), 150)
    broken_seen = set()
    for messages, tags in drawn:
        assert messages[0]["role"] == "user" and messages[-1]["role"] == "assistant"
        broken = [t.split(":", 2)[2] for t in tags if t.startswith("history:broken:")]
        broken_seen.update(broken)
        if not broken:
            check_tool_history(messages)
            continue
        with pytest.raises((AssertionError, json.JSONDecodeError, TypeError)):
            check_tool_history(messages)
    assert broken_seen == {"not_json", "not_object", "object_not_string", "empty",
                           "orphan_result", "missing_result"}


def test_history_calls_use_offered_tools() -> None:
    tools = list(seed_tools().values())[:2]
    offered = {t["function"]["name"] for t in tools}
    for messages, _ in sample(histories(texts=st.just("x"), tools=tools, tool_call_percent=100), 30):
        for m in messages:
            for call in m.get("tool_calls", ()):
                assert call["function"]["name"] in offered


def test_sampling_extras_and_oddities_appear_and_stay_sendable() -> None:
    drawn = sample(chat_requests(**TINY, max_images=0, sampling_extras_percent=100,
                                 unknown_field_percent=30, mistyped_percent=30,
                                 zero_max_tokens_percent=20, large_output_percent=20,
                                 max_output_tokens=8, large_output_tokens=64), 150)
    counts = feature_counts([Scenario(requests=(r.to_spec("r0"),), media=r.media) for r in drawn])
    for tag in ("sampling:n", "sampling:stop", "sampling:logprobs", "sampling:min_tokens",
                "sampling:ignore_eos", "sampling:logit_bias", "sampling:priority",
                "extra:unknown_field", "max_tokens:0", "max_tokens:large", "sampling:seed:bound"):
        assert counts[tag], tag
    assert any(t.startswith("extra:mistyped:") for t in counts)
    for r in drawn:
        check_body(r.body, max_output_tokens=8, tags=r.tags)
        if "sampling:logit_bias:oov" in r.tags and "extra:mistyped:logit_bias" not in r.tags:
            assert any(int(k) >= 2048 for k in r.body["logit_bias"])
        if "max_tokens:large" in r.tags and "extra:mistyped:max_tokens" not in r.tags:
            assert 8 < r.body["max_tokens"] <= 64


def test_fit_to_tokens_uses_the_callers_counter() -> None:
    words = lambda text: len(text.split())  # noqa: E731
    text = " ".join(f"w{i}" for i in range(100))
    assert words(fit_to_tokens(text, 10, words)) == 10
    assert fit_to_tokens(text, 1000, words) == text
    assert fit_to_tokens("abcdefgh", 1) == "abcd"
    with pytest.raises(ValueError):
        fit_to_tokens(text, -1)


@pytest.mark.parametrize("count", [None, "words"])
def test_context_texts_land_under_at_and_over_the_budget(count: str | None) -> None:
    counter = (lambda t: len(t.split())) if count else estimate_tokens  # noqa: E731
    budget = 600 - 16
    seen = set()
    for position, text in sample(context_texts(max_model_len=600, max_tokens=16,
                                               count_tokens=counter if count else None), 40):
        n = counter(text)
        seen.add(position)
        assert {"under": budget - 64 <= n < budget - 1, "at": budget - 1 <= n <= budget,
                "over": budget < n <= budget + 64}[position], (position, n)
    assert seen == {"under", "at", "over"}


def test_long_contexts_reach_requests() -> None:
    drawn = sample(chat_requests(**TINY, max_images=0, long_context_percent=100,
                                 max_model_len=400, max_output_tokens=8), 20)
    assert all(any(t.startswith("context:") for t in r.tags) for r in drawn)
    assert any(estimate_tokens(json.dumps(r.body)) > 400 for r in drawn)


def test_texts_can_carry_unicode_edge_cases_and_lone_surrogates() -> None:
    drawn = sample(texts(max_tokens=64, lone_surrogates=True), 300)
    assert any(any(s in t for s in LONE_SURROGATES) for t in drawn)
    for t in drawn:
        json.loads(json.dumps(t))  # escaped, so the wire body stays valid JSON


@pytest.mark.parametrize("which,lo,hi", [("at_limit_percent", 3, 3), ("over_limit_percent", 4, 5)])
def test_image_counts_at_and_past_the_per_prompt_limit(which: str, lo: int, hi: int) -> None:
    other = "over_limit_percent" if which == "at_limit_percent" else "at_limit_percent"
    for r in sample(chat_requests(**TINY, image_limit=3, **{which: 100, other: 0}), 10):
        assert lo <= image_parts(r.body) <= hi
        assert ("images:over_limit" if lo > 3 else "images:at_limit") in r.tags


def test_image_sizes_straddle_the_processor_pixel_bounds() -> None:
    sizes = sample(image_sizes(min_pixels_bound=4096, max_pixels_bound=1_048_576), 300)
    near = lambda b: [w * h for w, h in sizes if abs(w * h - b) <= max(w, h)]  # noqa: E731
    assert {p < 4096 for p in near(4096)} == {True, False}
    assert {p <= 1_048_576 for p in near(1_048_576)} == {True, False}


def test_fixture_urls_are_placeholders_that_carry_their_media() -> None:
    drawn = sample(scenarios(**TINY, max_requests=3, url_image_percent=100, broken_percent=0), 40)
    behaviours = set()
    for scenario in drawn:
        for spec in scenario.requests:
            urls = [p["image_url"]["url"] for m in spec.body["messages"]
                    if isinstance(m.get("content"), list) for p in m["content"]
                    if p["type"] == "image_url"]
            assert all(u.startswith(FIXTURE_SCHEME) for u in urls)
            behaviours.update(t.split(":")[2] for t in spec.tags if t.startswith("image:url:"))
        if FIXTURE_SCHEME in json.dumps([r.body for r in scenario.requests]):
            with pytest.raises(ValueError):
                resolve_media([r.body for r in scenario.requests], scenario.media)
        wire = resolve_media([r.body for r in scenario.requests], scenario.media,
                             fixture_base_url="http://127.0.0.1:9/")
        assert FIXTURE_SCHEME not in json.dumps(wire)
        blobs = {h: m.data for h, m in scenario.media.items()}
        assert Scenario.from_json(json.loads(json.dumps(scenario.to_json())), blobs) == scenario
    assert behaviours == set(URL_BEHAVIOURS)


@FAST
@given(st.sampled_from(TRAFFIC_SHAPES).flatmap(lambda shape: st.tuples(
    st.just(shape), arrival_offsets(count=40, shape=shape, max_spread_ms=1000))))
def test_traffic_shapes_within_bounds(drawn: tuple) -> None:
    shape, offsets = drawn
    assert len(offsets) == 40 and offsets == sorted(offsets)
    assert all(0.0 <= t <= 1000.0 for t in offsets)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    if shape == "burst":
        assert set(offsets) == {0.0}
    if shape == "ramp_up":  # rate rises: gaps shrink
        assert gaps[0] >= gaps[-1]
    if shape == "ramp_down":
        assert gaps[0] <= gaps[-1]


def test_hundreds_of_concurrent_requests() -> None:
    [scenario] = sample(scenarios(min_requests=300, max_requests=300, max_images_per_request=0,
                                  max_prompt_tokens=20, structured_percent=0, tools_percent=0,
                                  history_percent=0, at_limit_percent=0, over_limit_percent=0,
                                  shapes=("burst",)), 1)
    assert len(scenario.requests) == 300 and {r.offset_ms for r in scenario.requests} == {0.0}
    assert "traffic:requests:257+" in scenario.requests[0].tags
    clones = [r for r in scenario.requests if "request:clone" in r.tags]
    assert len(clones) == 300 - 48
    users = [r.body["user"] for r in clones]
    assert len(set(users)) == len(users)  # clones differ (by `user`): not byte repeats


def test_order_dependent_pairs_close_the_scenario() -> None:
    for scenario in sample(scenarios(**TINY, min_requests=2, max_requests=4, pair_percent=100), 15):
        *_, a, b = scenario.requests
        assert "pair:first" in a.tags and "pair:second" in b.tags
        assert a.offset_ms <= b.offset_ms
        assert not any(t.startswith("pair:") for r in scenario.requests[:-2] for t in r.tags)


def test_a_seed_reproduces_the_same_scenarios() -> None:
    def run() -> list[str]:
        out: list[str] = []

        @hypothesis_seed(1234)
        @settings(max_examples=8, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(scenarios(**TINY, max_requests=4))
        def collect(scenario: Scenario) -> None:
            out.append(json.dumps(scenario.to_json(), sort_keys=True))

        collect()
        return out

    assert run() == run()


def test_features_appear_at_roughly_their_configured_rates() -> None:
    """Hypothesis does not draw uniformly, so the bands are wide; what matters is that
    a 20% knob is neither ~0 nor ~always, and that 0 and 100 are exact."""
    drawn = sample(chat_requests(**TINY), 300)
    share = lambda prefix: sum(any(t.startswith(prefix) for t in r.tags)  # noqa: E731
                               for r in drawn) / len(drawn)
    assert 0.05 < share("tools:") < 0.5
    assert 0.05 < share("structured") < 0.5
    assert 0.05 < share("history:") < 0.5
    assert 0.2 < share("stream") < 0.8
    forced = sample(chat_requests(**TINY, structured_percent=100, tools_percent=0,
                                  history_percent=0), 40)
    assert all(any(t.startswith("structured") for t in r.tags) for r in forced)
    assert not any("tools" in r.body or len(r.body["messages"]) > 2 for r in forced)
