"""Generated JSON Schemas: the keywords grammar compilers (xgrammar, guidance) handle
differently — nesting, $ref/$defs, recursion, enum/const, pattern, format, string and
numeric bounds (integers past 2**53), anyOf/oneOf, additionalProperties, min/maxItems
and tuples (2020-12 `prefixItems` or draft-07 array-form `items`).

Every schema passes its draft's `check_schema`; bounds are kept ordered so schemas
stay satisfiable (an unsatisfiable one would make the validity oracle cry wolf)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import reject

from fuzz.strategies._common import Draw, StrategyArgumentError, check_int, ints
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, REDRAWS, Exclusion

DRAFTS: dict[str, str] = {"2020-12": "https://json-schema.org/draft/2020-12/schema",
                          "draft-07": "http://json-schema.org/draft-07/schema#"}
PATTERNS: tuple[str, ...] = (r"^[a-z]{2,8}$", r"^\d{3}-\d{4}$", r"^[A-Z][a-z]+( [A-Z][a-z]+)*$",
                             r"^(yes|no|maybe)$", r"^#[0-9a-fA-F]{6}$", r"^\S+@\S+\.\S+$",
                             r"^[\u4e00-\u9fff]{1,4}$", r"^.{0,3}$")
FORMATS: tuple[str, ...] = ("date-time", "date", "time", "email", "uri", "uuid", "ipv4",
                            "ipv6", "hostname", "duration")
BIG = 2**53
WORDS: tuple[str, ...] = ("id", "name", "value", "items", "tags", "kind", "price", "count",
                          "meta", "child", "note", "url", "score", "ok", "when", "ключ", "名前",
                          "with space", "$dollar", "a.b")
LEAF_KINDS: tuple[str, ...] = ("string", "integer", "number", "boolean", "null", "enum", "const")
NESTED_KINDS: tuple[str, ...] = ("object", "array", "tuple", "anyOf", "oneOf", "ref", "recursive")
# Schema features (as `schema_features` names them) each node kind always brings.
_KIND_FEATURES: dict[str, tuple[str, ...]] = {
    "enum": ("enum",), "const": ("const",), "anyOf": ("anyOf",), "oneOf": ("oneOf",),
    "ref": ("ref",), "recursive": ("ref", "recursion", "maxItems", "maxLength")}
_STRING_EXTRAS: dict[str, tuple[str, ...]] = {
    "none": (), "bounds": ("minLength", "maxLength"), "pattern": ("pattern",), "format": ("format",)}
_ADDITIONAL: dict[str, str] = {"false": "additionalProperties:False",
                               "true": "additionalProperties:True",
                               "schema": "additionalProperties:schema"}
_PATTERNS = st.sampled_from(PATTERNS)
_FORMATS = st.sampled_from(FORMATS)
_MULTIPLES = st.sampled_from((2, 5, 10, 7))
_LOWS = st.sampled_from((-1e308, -1.5, 0, 0.1, 1e-9, 1e15))
_HIGHS = st.sampled_from((1e308, 2.5, 1e16))
_WORD = st.sampled_from(WORDS)
_HUGE = st.integers(-BIG * 2, BIG * 2)
_SAFE = st.integers(-BIG, BIG)


@dataclass(frozen=True)
class SchemaSpec:
    """Validated `json_schemas` arguments and the features left to generate."""

    drafts: st.SearchStrategy[str]
    max_depth: int
    max_properties: int
    root_object: bool
    leaf_kinds: st.SearchStrategy[str]
    nested_kinds: st.SearchStrategy[str]
    string_extras: st.SearchStrategy[str]
    additional: st.SearchStrategy[str]
    names: st.SearchStrategy[list[str]]
    enums: st.SearchStrategy[list[Any]]
    consts: st.SearchStrategy[Any]
    exclusion: Exclusion

    def allows(self, feature: str) -> bool:
        return self.exclusion.allows(f"schema:feature:{feature}")


def schema_spec(*, max_depth: int = 3, max_properties: int = 5,
                drafts: tuple[str, ...] = ("2020-12", "draft-07"), root_object: bool = True,
                exclusion: Exclusion = NOTHING) -> SchemaSpec:
    check_int("max_depth", max_depth, 0, 8)
    check_int("max_properties", max_properties, 1, 64)
    if not drafts or any(d not in DRAFTS for d in drafts):
        raise StrategyArgumentError(f"drafts must be a non-empty subset of {tuple(DRAFTS)}")
    ex = exclusion
    feature = lambda names: tuple(f"schema:feature:{n}" for n in names)  # noqa: E731
    leaf = ex.keep(LEAF_KINDS, lambda k: feature(_KIND_FEATURES.get(k, ())))
    nested = ex.keep(NESTED_KINDS, lambda k: feature(_KIND_FEATURES.get(k, ())))
    values = st.one_of(_WORD, _HUGE if ex.allows("schema:feature:bigint") else _SAFE,
                       st.booleans(), st.none())
    return SchemaSpec(
        drafts=st.sampled_from(drafts), max_depth=max_depth, max_properties=max_properties,
        root_object=root_object, leaf_kinds=st.sampled_from(ex.require(leaf, "schema leaf type")),
        nested_kinds=st.sampled_from(leaf + nested),
        string_extras=st.sampled_from(ex.keep(_STRING_EXTRAS, lambda e: feature(_STRING_EXTRAS[e]))),
        additional=st.sampled_from(("omit",) + ex.keep(_ADDITIONAL, lambda a: (
            f"schema:feature:{_ADDITIONAL[a]}",))),
        names=st.lists(_WORD, min_size=1, max_size=max_properties, unique=True),
        enums=st.lists(values, min_size=1, max_size=6, unique_by=lambda v: (type(v), v)),
        consts=st.one_of(_WORD, _HUGE if ex.allows("schema:feature:bigint") else _SAFE),
        exclusion=ex)


def draw_schema(dice: Dice, spec: SchemaSpec) -> dict[str, Any] | None:
    """One schema (see `json_schemas`); None when REDRAWS attempts all used an
    excluded feature (nested $refs count as recursion, for instance)."""
    for _ in range(REDRAWS if spec.exclusion else 1):
        schema = _schema(dice, spec)
        if spec.exclusion.allows_all(f"schema:feature:{f}" for f in schema_features(schema)):
            return schema
    return None


def _schema(dice: Dice, spec: SchemaSpec) -> dict[str, Any]:
    draft = dice.draw(spec.drafts)
    gen = _Gen(dice, spec, draft)
    schema = gen.object(spec.max_depth) if spec.root_object else gen.node(spec.max_depth)
    if gen.defs:
        schema[gen.defs_key] = gen.defs
    if draft != "2020-12" or dice.flip(70):  # draft-07 must say so to be read as such
        schema = {"$schema": DRAFTS[draft], **schema}
    return schema


def json_schemas(*, max_depth: int = 3, max_properties: int = 5, drafts: tuple[str, ...] = ("2020-12", "draft-07"),
                 root_object: bool = True,
                 exclude_features: Exclusion | frozenset[str] | None = None
                 ) -> st.SearchStrategy[dict[str, Any]]:
    """Schemas up to `max_depth` nested levels with objects of <= `max_properties`;
    `root_object` forces an object at the top (as OpenAI's json_schema expects).
    Excluded `schema:feature:` tags are not generated."""
    spec = schema_spec(max_depth=max_depth, max_properties=max_properties, drafts=drafts,
                       root_object=root_object, exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        schema = draw_schema(Dice.rolled(draw), spec)
        if schema is None:
            reject()
        return schema

    return build()


class _Gen:
    """One schema's drawing state: the draft and the definitions collected so far."""

    def __init__(self, dice: Dice, spec: SchemaSpec, draft: str) -> None:
        self.dice, self.spec, self.draft = dice, spec, draft
        self.defs_key = "$defs" if draft == "2020-12" else "definitions"
        self.defs: dict[str, Any] = {}

    def node(self, depth: int) -> dict[str, Any]:
        kind = self.dice.draw(self.spec.nested_kinds if depth > 0 else self.spec.leaf_kinds)
        return getattr(self, kind.replace("Of", "_of"))(depth)

    def string(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string"}
        extra = self.dice.draw(self.spec.string_extras)
        if extra == "bounds":
            lo = self.dice.draw(ints(0, 20))
            s.update(minLength=lo, maxLength=lo + self.dice.draw(ints(0, 40)))
        elif extra == "pattern":
            s["pattern"] = self.dice.draw(_PATTERNS)
        elif extra == "format":
            s["format"] = self.dice.draw(_FORMATS)
        return s

    def integer(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer"}
        flip, spec = self.dice.flip, self.spec
        if flip(60):
            huge = flip(30 if spec.allows("bigint") else 0)
            if huge:  # |lo| > 2**53 on purpose: wide ranges are drawn mostly small
                lo = self.dice.draw(ints(BIG + 1, BIG * 4)) * (-1 if flip(50) else 1)
            else:
                lo = self.dice.draw(ints(-1000, 1000))
            span = self.dice.draw(ints(0, BIG * 2) if huge else ints(0, 1000))
            exclusive = flip(20 if spec.allows("exclusiveMinimum") else 0)
            s["exclusiveMinimum" if exclusive else "minimum"] = lo
            s["maximum"] = lo + span + (1 if exclusive else 0)
        if flip(10 if spec.allows("multipleOf") else 0):
            s["multipleOf"] = self.dice.draw(_MULTIPLES)
            s.pop("exclusiveMinimum", None), s.pop("minimum", None), s.pop("maximum", None)
        return s

    def number(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "number"}
        if self.dice.flip(50):
            lo = self.dice.draw(_LOWS)
            s.update(minimum=lo, maximum=self.dice.draw(_HIGHS) + max(lo, 0))
        return s

    def boolean(self, depth: int) -> dict[str, Any]:
        return {"type": "boolean"}

    def null(self, depth: int) -> dict[str, Any]:
        return {"type": "null"}

    def enum(self, depth: int) -> dict[str, Any]:
        return {"enum": self.dice.draw(self.spec.enums)}

    def const(self, depth: int) -> dict[str, Any]:
        return {"const": self.dice.draw(self.spec.consts)}

    def object(self, depth: int) -> dict[str, Any]:
        names = self.dice.draw(self.spec.names)
        props = {n: self.node(max(depth - 1, 0)) for n in names}
        s: dict[str, Any] = {"type": "object", "properties": props}
        required = [n for n in names if self.dice.flip(60)]
        if required:
            s["required"] = required
        extra = self.dice.draw(self.spec.additional)
        if extra in ("false", "true"):
            s["additionalProperties"] = extra == "true"
        elif extra == "schema":
            s["additionalProperties"] = self.node(0)
        return s

    def array(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "array", "items": self.node(depth - 1)}
        spec = self.spec
        if self.dice.flip(60 if spec.allows("minItems") and spec.allows("maxItems") else 0):
            lo = self.dice.draw(ints(0, 4))
            s.update(minItems=lo, maxItems=lo + self.dice.draw(ints(0, 6)))
        if self.dice.flip(15 if spec.allows("uniqueItems") else 0):
            s["uniqueItems"] = True
            s["items"] = {"type": "integer"}
        return s

    def tuple(self, depth: int) -> dict[str, Any]:
        if not self.spec.allows("prefixItems" if self.draft == "2020-12" else "tupleItems07"):
            return self.array(depth)
        members = [self.node(depth - 1) for _ in range(self.dice.draw(ints(1, 4)))]
        closed = self.dice.flip(50)
        if self.draft == "2020-12":
            s: dict[str, Any] = {"type": "array", "prefixItems": members}
            if closed:
                s["items"] = False
        else:
            s = {"type": "array", "items": members}
            if closed:
                s["additionalItems"] = False
        if self.dice.flip(50 if self.spec.allows("minItems") else 0):
            s["minItems"] = len(members)
        return s

    def any_of(self, depth: int) -> dict[str, Any]:
        return {"anyOf": [self.node(depth - 1) for _ in range(self.dice.draw(ints(1, 3)))]}

    def one_of(self, depth: int) -> dict[str, Any]:
        # Distinct primitive types keep oneOf satisfiable (no value matches two branches).
        kinds = self.dice.draw(_ONE_OF_KINDS)
        return {"oneOf": [getattr(self, k)(0) for k in kinds]}

    def ref(self, depth: int) -> dict[str, Any]:
        name = f"d{len(self.defs)}"
        self.defs[name] = self.node(depth - 1)
        return {"$ref": f"#/{self.defs_key}/{name}"}

    def recursive(self, depth: int) -> dict[str, Any]:
        """A tree node whose children are (optionally) more of the same via $ref."""
        name = f"tree{len(self.defs)}"
        self.defs[name] = {"type": "object", "properties": {
            "label": {"type": "string", "maxLength": 16},
            "children": {"type": "array", "maxItems": 3,
                         "items": {"$ref": f"#/{self.defs_key}/{name}"}}},
            "required": ["label"]}
        return {"$ref": f"#/{self.defs_key}/{name}"}


_ONE_OF_KINDS = st.lists(st.sampled_from(("string", "integer", "boolean", "null")),
                         min_size=1, max_size=3, unique=True)


def schema_features(schema: Any) -> set[str]:
    """Names of the interesting keywords a schema uses (for coverage tags)."""
    found: set[str] = set()
    for key, value in _walk(schema):
        if key in ("$ref", "enum", "const", "pattern", "format", "anyOf", "oneOf", "allOf",
                   "prefixItems", "minItems", "maxItems", "minLength", "maxLength",
                   "multipleOf", "uniqueItems", "exclusiveMinimum"):
            found.add(key.lstrip("$"))
        elif key == "additionalProperties":
            found.add(f"additionalProperties:{'schema' if isinstance(value, Mapping) else value}")
        elif key == "items" and isinstance(value, list):
            found.add("tupleItems07")
        elif key in ("minimum", "maximum", "exclusiveMinimum") and isinstance(value, int) \
                and not isinstance(value, bool) and abs(value) > BIG:
            found.add("bigint")
        elif key in ("$defs", "definitions") and "#/" + key in str(value):
            found.add("recursion")
    if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > BIG
           for k, vs in _walk(schema) if k in ("enum", "const")
           for v in (vs if isinstance(vs, list) else [vs])):
        found.add("bigint")
    return found


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k), v
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
