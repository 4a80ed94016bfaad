"""Structured-output `response_format`s built from the seed JSON Schemas in
`schemas/structured/` (checked against their metaschema when loaded) and from
generated schemas (`schema_gen`)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema

from fuzz.strategies._common import Draw, chance, check_int, corpus_dir
from fuzz.strategies.schema_gen import json_schemas, schema_features

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def seed_schemas(directory: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """name (file stem) -> schema, each validated with its draft's `check_schema`
    (validated once per directory and file contents; every call gets fresh dicts)."""
    path = corpus_dir(directory, "schemas", "structured")
    files = tuple((f.name, f.read_text(encoding="utf-8")) for f in sorted(path.glob("*.json")))
    if not files:
        raise ValueError(f"no *.json schemas in {path}")
    return {name: json.loads(text) for name, text in _checked(files)}


@functools.lru_cache(maxsize=8)
def _checked(files: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for file_name, text in files:
        stem = file_name[: -len(".json")]
        if not _NAME.match(stem):
            raise ValueError(f"schema file name {file_name!r} is not a valid json_schema name")
        schema = json.loads(text)
        jsonschema.validators.validator_for(schema).check_schema(schema)
        out.append((stem, text))
    return tuple(out)


def any_schemas(*, generated_percent: int = 40,
                schemas: Path | str | None = None) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(name, schema): a seed schema, or about `generated_percent`% a generated one
    (named "generated")."""
    check_int("generated_percent", generated_percent, 0, 100)
    # Kept as JSON text so every draw gets a private copy of the schema.
    frozen = tuple((name, json.dumps(s)) for name, s in seed_schemas(schemas).items())
    generated = json_schemas()

    @st.composite
    def build(draw: Draw) -> tuple[str, dict[str, Any]]:
        if chance(draw, generated_percent):
            return "generated", draw(generated)
        name, text = draw(st.sampled_from(frozen))
        return name, json.loads(text)

    return build()


def response_formats(*, json_object_percent: int = 10, generated_percent: int = 40,
                     schemas: Path | str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """`response_format` values: mostly json_schema (seed or generated schema,
    sometimes with `strict` or a description), about `json_object_percent`% json_object."""
    check_int("json_object_percent", json_object_percent, 0, 100)
    named = any_schemas(generated_percent=generated_percent, schemas=schemas)

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        if chance(draw, json_object_percent):
            return {"type": "json_object"}
        name, schema = draw(named)
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if chance(draw, 30):
            spec["strict"] = draw(st.booleans())
        if chance(draw, 20):
            spec["description"] = f"Return a {name.replace('_', ' ')} object."
        return {"type": "json_schema", "json_schema": spec}

    return build()


def response_format_tags(response_format: Mapping[str, Any]) -> tuple[str, ...]:
    kind = response_format.get("type")
    tags = [f"structured:{kind}"]
    spec = response_format.get("json_schema")
    if isinstance(spec, Mapping):
        tags.append(f"schema:{spec.get('name')}")
        if spec.get("strict") is True:
            tags.append("structured:strict")
        tags.extend(f"schema:feature:{f}" for f in sorted(schema_features(spec.get("schema"))))
    return tuple(tags)
