"""Structured-output `response_format`s built from the seed JSON Schemas in
`schemas/structured/` (checked against their metaschema when loaded)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema

from fuzz.strategies._common import Draw, chance, check_int, corpus_dir

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def seed_schemas(directory: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """name (file stem) -> schema, each validated with its draft's `check_schema`."""
    path = corpus_dir(directory, "schemas", "structured")
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(path.glob("*.json")):
        if not _NAME.match(file.stem):
            raise ValueError(f"schema file name {file.name!r} is not a valid json_schema name")
        schema = json.loads(file.read_text(encoding="utf-8"))
        jsonschema.validators.validator_for(schema).check_schema(schema)
        out[file.stem] = schema
    if not out:
        raise ValueError(f"no *.json schemas in {path}")
    return out


def response_formats(*, json_object_percent: int = 10,
                     schemas: Path | str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """`response_format` values: mostly json_schema (sometimes with `strict` or a
    description), about `json_object_percent`% plain json_object."""
    check_int("json_object_percent", json_object_percent, 0, 100)
    # Kept as JSON text so every draw gets a private copy of the schema.
    frozen = tuple((name, json.dumps(s)) for name, s in seed_schemas(schemas).items())

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        if chance(draw, json_object_percent):
            return {"type": "json_object"}
        name, text = draw(st.sampled_from(frozen))
        spec: dict[str, Any] = {"name": name, "schema": json.loads(text)}
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
    return tuple(tags)
