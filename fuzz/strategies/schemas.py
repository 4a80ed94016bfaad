"""Structured-output `response_format`s built from the seed JSON Schemas in
`schemas/structured/` (checked against their metaschema when loaded) and from
generated schemas (`schema_gen`), narrowed by excluded `structured:`/`schema:` tags."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
from hypothesis import reject

from fuzz.strategies._common import Draw, check_int, corpus_dir
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.schema_gen import SchemaSpec, draw_schema, schema_features, schema_spec

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


@dataclass(frozen=True)
class SchemaSource:
    """Seed schemas (kept as JSON text: every draw gets a private copy) and generated
    ones, narrowed by the exclusion."""

    seeds: st.SearchStrategy[tuple[str, str]] | None
    generated: SchemaSpec | None
    generated_percent: int


def schema_source(*, generated_percent: int = 40, schemas: Path | str | None = None,
                  exclusion: Exclusion = NOTHING) -> SchemaSource:
    check_int("generated_percent", generated_percent, 0, 100)
    ex = exclusion
    seeds = tuple((name, json.dumps(s)) for name, s in seed_schemas(schemas).items()
                  if ex.allows_all(schema_tags(name, s)))
    generated = schema_spec(exclusion=ex) if ex.allows("schema:generated") else None
    return SchemaSource(seeds=st.sampled_from(seeds) if seeds else None, generated=generated,
                        generated_percent=generated_percent if generated else 0)


def schema_tags(name: str, schema: Any) -> tuple[str, ...]:
    return (f"schema:{name}", *(f"schema:feature:{f}" for f in sorted(schema_features(schema))))


def draw_named_schema(dice: Dice, source: SchemaSource
                      ) -> tuple[str, dict[str, Any]] | None:
    """(name, schema): about `generated_percent`% generated ("generated"), else a seed;
    a seed also when no allowed schema was generated, None when there is neither."""
    if source.generated is not None and (source.seeds is None
                                         or dice.flip(source.generated_percent)):
        schema = draw_schema(dice, source.generated)
        if schema is not None:
            return "generated", schema
    if source.seeds is None:
        return None
    name, text = dice.draw(source.seeds)
    return name, json.loads(text)


def any_schemas(*, generated_percent: int = 40,
                schemas: Path | str | None = None) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(name, schema): a seed schema, or about `generated_percent`% a generated one
    (named "generated")."""
    source = schema_source(generated_percent=generated_percent, schemas=schemas)

    @st.composite
    def build(draw: Draw) -> tuple[str, dict[str, Any]]:
        named = draw_named_schema(Dice.rolled(draw), source)
        if named is None:
            reject()
        return named

    return build()


@dataclass(frozen=True)
class FormatSpec:
    """What `response_formats` draws from, narrowed by the exclusion."""

    schemas: SchemaSource
    json_object_percent: int  # 100: json_schema is excluded
    strict_percent: int
    usable: bool  # False: exclusion leaves no response_format at all


def format_spec(*, json_object_percent: int = 10, generated_percent: int = 40,
                schemas: Path | str | None = None, exclusion: Exclusion = NOTHING) -> FormatSpec:
    check_int("json_object_percent", json_object_percent, 0, 100)
    ex = exclusion
    json_object = ex.percent(json_object_percent, "structured:json_object")
    usable = ex.allows("structured:json_schema") or ex.allows("structured:json_object")
    if not ex.allows("structured:json_schema"):
        json_object = 100
    return FormatSpec(schema_source(generated_percent=generated_percent, schemas=schemas,
                                    exclusion=ex), json_object,
                      ex.percent(50, "structured:strict"), usable)


def draw_response_format(dice: Dice, spec: FormatSpec) -> dict[str, Any] | None:
    """A `response_format` (see `response_formats`); None when nothing allowed fits."""
    if not spec.usable:
        return None
    if dice.flip(spec.json_object_percent):
        return {"type": "json_object"}
    named = draw_named_schema(dice, spec.schemas)
    if named is None:
        return None
    name, schema = named
    out: dict[str, Any] = {"name": name, "schema": schema}
    if dice.flip(30):
        out["strict"] = dice.flip(spec.strict_percent)
    if dice.flip(20):
        out["description"] = f"Return a {name.replace('_', ' ')} object."
    return {"type": "json_schema", "json_schema": out}


def response_formats(*, json_object_percent: int = 10, generated_percent: int = 40,
                     schemas: Path | str | None = None,
                     exclude_features: Exclusion | frozenset[str] | None = None
                     ) -> st.SearchStrategy[dict[str, Any]]:
    """`response_format` values: mostly json_schema (seed or generated schema,
    sometimes with `strict` or a description), about `json_object_percent`% json_object.
    Values with an excluded `structured:` or `schema:` tag are not drawn."""
    spec = format_spec(json_object_percent=json_object_percent,
                       generated_percent=generated_percent, schemas=schemas,
                       exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        value = draw_response_format(Dice.rolled(draw), spec)
        if value is None:
            reject()
        return value

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
