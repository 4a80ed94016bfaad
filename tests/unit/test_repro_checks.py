"""The pieces repro.py embeds, without a server: the JSON Schema subset against
jsonschema (the oracles' validator), the media encodings against the runner's, and the
run count for flaky failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.model import ENCODINGS, Media
from fuzz.oracles.validation import schema_problem
from fuzz.repro_checks import encode_payload, read_gauges, verdict
from fuzz.repro_schema import schema_errors, schema_problems, unchecked_keywords
from fuzz.repro_template import default_runs, embedded_functions

STRUCTURED = Path(__file__).resolve().parents[2] / "schemas" / "structured"


def _valid(instance: Any, schema: Any) -> bool:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema).is_valid(instance)


# --- values that mostly follow a schema, sometimes not ---------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**60, 2**60),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))


@st.composite
def instances(draw: Any, schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value shaped by `schema` (types, required names, bounds, enums) that breaks it
    now and then, so both verdicts are exercised."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 6 or draw(st.integers(0, 9)) == 0:
        return draw(SCALARS)
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return draw(instances(target, root, depth + 1))
    for key in ("enum", "const"):
        if key in schema:
            return draw(st.sampled_from(schema["enum"])) if key == "enum" else schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return draw(instances(draw(st.sampled_from(schema[key])), root, depth + 1))
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        names = [n for n in props if n in schema.get("required", []) or draw(st.booleans())]
        out = {n: draw(instances(props[n], root, depth + 1)) for n in names}
        if draw(st.integers(0, 5)) == 0:
            out["extra"] = draw(SCALARS)
        return out
    if kind == "array":
        prefix = schema.get("prefixItems") or (schema["items"] if isinstance(
            schema.get("items"), list) else [])
        rest = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        size = draw(st.integers(schema.get("minItems", 0), max(schema.get("maxItems", 4), 0)))
        return [draw(instances(prefix[i] if i < len(prefix) else rest, root, depth + 1))
                for i in range(size)]
    if kind == "integer":
        lo = schema.get("minimum", schema.get("exclusiveMinimum", -1000))
        hi = schema.get("maximum", lo + 2000)
        step = schema.get("multipleOf", 1)
        return draw(st.integers(int(lo), int(hi))) // step * step
    if kind == "number":
        return draw(st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6)))
    if kind == "string":
        lo = schema.get("minLength", 0)
        return draw(st.text(min_size=lo, max_size=max(lo, schema.get("maxLength", 10))))
    if kind == "boolean":
        return draw(st.booleans())
    return None if kind == "null" else draw(SCALARS)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_schema_subset_agrees_with_jsonschema_on_generated_schemas(data: st.DataObject) -> None:
    from fuzz.strategies.schema_gen import json_schemas  # the fuzzer's own schemas

    schema = data.draw(json_schemas(max_depth=3))
    instance = data.draw(instances(schema))
    assert unchecked_keywords(schema) == []
    errors = schema_problems(instance, schema)
    # The oracle's verdict: None when valid, or when the schema cannot be applied (a
    # $ref loop, say), which is what schema_problems says with [] too.
    assert (not errors) == (schema_problem(instance, schema) is None), (instance, errors)


@pytest.mark.parametrize("path", sorted(STRUCTURED.glob("*.json")), ids=lambda p: p.stem)
def test_schema_subset_on_the_seed_corpus(path: Path) -> None:
    """The structured-output seed schemas use nothing the subset skips (other than what
    it reports), and it agrees with jsonschema on a few simple instances."""
    schema = json.loads(path.read_text())
    assert set(unchecked_keywords(schema)) <= {"propertyNames"}
    for instance in ({}, [], "x", 1, None, {"id": 1}):
        assert (not schema_errors(instance, schema)) == _valid(instance, schema)


@pytest.mark.parametrize("schema,instance,detail", [
    ({"type": "object", "required": ["location"]}, {}, "required@$"),
    ({"properties": {"a": {"type": "integer"}}}, {"a": "1"}, "type@$.a"),
    ({"properties": {"a": {"items": {"enum": [1, 2]}}}}, {"a": [1, 3]}, "enum@$.a[*]"),
    ({"additionalProperties": False, "properties": {}}, {"b": 1}, "additionalProperties@$"),
    ({"type": "integer", "maximum": 7}, 8, "maximum@$"),
    ({"const": True}, 1, "const@$"),
])
def test_errors_are_spelt_like_the_oracle_details(schema: Any, instance: Any, detail: str) -> None:
    errors = schema_errors(instance, schema)
    assert schema_problem(instance, schema) == detail
    assert errors and errors[0].startswith(detail.replace("[*]", "[1]"))


def test_broken_schemas_judge_nothing() -> None:
    assert schema_problems(1, {"minimum": "three"}) == []
    assert unchecked_keywords({"if": {}, "then": {}, "properties": {"x": {"contains": {}}}}) == [
        "contains", "if", "then"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_media_encodings_match_the_runner(encoding: str) -> None:
    data = bytes(range(256)) * 3
    media = Media(data, "image/png", encoding=encoding)
    assert media.data_url() == f"data:image/png;base64,{encode_payload(data, encoding)}"


def test_gauges_match_the_metrics_reader() -> None:
    from fuzz.metrics import parse_metrics

    text = ('vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
            'vllm:num_requests_running{engine="1",model_name="m"} 1.0\n'
            "vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.25\n"
            "vllm:gpu_cache_usage_perc 0.5\n# HELP x\nother 3\n")
    assert read_gauges(text) == parse_metrics(text) == {"running": 3.0, "waiting": 0.0,
                                                         "kv_cache_usage": 0.5}


@pytest.mark.parametrize("k,n,runs", [(3, 3, 1), (1, 1, 1), (2, 3, 3), (1, 3, 8), (1, 10, 20),
                                      (0, 0, 1)])
def test_default_runs_catch_a_flaky_failure(k: int, n: int, runs: int) -> None:
    assert default_runs(k, n) == runs


def test_verdict() -> None:
    passed, failed = ("r0", "pass", "e", "a"), ("r1", "fail", "e", "a")
    unjudged = ("r0", "unjudged", "e", "a")
    assert verdict([passed, failed], "r0") == "fail"
    assert verdict([passed], "r0") == "pass"
    assert verdict([unjudged], "r0") == "unjudged"
    assert verdict([passed, ("r1", "unjudged", "e", "a")], "r1") == "unjudged"
    assert verdict([], None) == "unjudged"


def test_embedding_follows_calls_across_both_modules() -> None:
    from fuzz import repro_checks

    names = [f.__name__ for f in embedded_functions([repro_checks.check_tool_calls])]
    assert names[0] == "check_tool_calls"
    assert {"tool_call_problem", "choices_of", "schema_problems", "schema_errors",
            "json_equal", "short"} <= set(names)
    assert "check_stream" not in names and len(names) == len(set(names))
