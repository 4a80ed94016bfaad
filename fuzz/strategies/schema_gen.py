"""Generated JSON Schemas: the keywords grammar compilers (xgrammar, guidance) handle
differently — nesting, $ref/$defs, recursion, enum/const, pattern, format, string and
numeric bounds (integers past 2**53), anyOf/oneOf, additionalProperties, min/maxItems
and tuples (2020-12 `prefixItems` or draft-07 array-form `items`).

Every schema passes its draft's `check_schema`; bounds are kept ordered so schemas
stay satisfiable (an unsatisfiable one would make the validity oracle cry wolf)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, StrategyArgumentError, chance, check_int

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


def json_schemas(*, max_depth: int = 3, max_properties: int = 5, drafts: tuple[str, ...] = ("2020-12", "draft-07"),
                 root_object: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Schemas up to `max_depth` nested levels with objects of <= `max_properties`;
    `root_object` forces an object at the top (as OpenAI's json_schema expects)."""
    check_int("max_depth", max_depth, 0, 8)
    check_int("max_properties", max_properties, 1, 64)
    if not drafts or any(d not in DRAFTS for d in drafts):
        raise StrategyArgumentError(f"drafts must be a non-empty subset of {tuple(DRAFTS)}")

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        draft = draw(st.sampled_from(drafts))
        gen = _Gen(draw, draft, max_properties)
        schema = gen.object(max_depth) if root_object else gen.node(max_depth)
        if gen.defs:
            schema[gen.defs_key] = gen.defs
        if draft != "2020-12" or chance(draw, 70):  # draft-07 must say so to be read as such
            schema = {"$schema": DRAFTS[draft], **schema}
        return schema

    return build()


class _Gen:
    """One schema's drawing state: the draft and the definitions collected so far."""

    def __init__(self, draw: Draw, draft: str, max_properties: int) -> None:
        self.draw, self.draft, self.max_properties = draw, draft, max_properties
        self.defs_key = "$defs" if draft == "2020-12" else "definitions"
        self.defs: dict[str, Any] = {}

    def node(self, depth: int) -> dict[str, Any]:
        kinds = ["string", "integer", "number", "boolean", "null", "enum", "const"]
        if depth > 0:
            kinds += ["object", "array", "tuple", "anyOf", "oneOf", "ref", "recursive"]
        return getattr(self, self.draw(st.sampled_from(kinds)).replace("Of", "_of"))(depth)

    def string(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string"}
        extra = self.draw(st.sampled_from(("none", "bounds", "pattern", "format")))
        if extra == "bounds":
            lo = self.draw(st.integers(0, 20))
            s.update(minLength=lo, maxLength=lo + self.draw(st.integers(0, 40)))
        elif extra == "pattern":
            s["pattern"] = self.draw(st.sampled_from(PATTERNS))
        elif extra == "format":
            s["format"] = self.draw(st.sampled_from(FORMATS))
        return s

    def integer(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer"}
        if chance(self.draw, 60):
            huge = chance(self.draw, 30)
            lo = self.draw(st.integers(-BIG * 4, BIG * 4) if huge else st.integers(-1000, 1000))
            span = self.draw(st.integers(0, BIG * 2) if huge else st.integers(0, 1000))
            exclusive = chance(self.draw, 20)
            s["exclusiveMinimum" if exclusive else "minimum"] = lo
            s["maximum"] = lo + span + (1 if exclusive else 0)
        if chance(self.draw, 10):
            s["multipleOf"] = self.draw(st.sampled_from((2, 5, 10, 7)))
            s.pop("exclusiveMinimum", None), s.pop("minimum", None), s.pop("maximum", None)
        return s

    def number(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "number"}
        if chance(self.draw, 50):
            lo = self.draw(st.sampled_from((-1e308, -1.5, 0, 0.1, 1e-9, 1e15)))
            s.update(minimum=lo, maximum=self.draw(st.sampled_from((1e308, 2.5, 1e16))) + max(lo, 0))
        return s

    def boolean(self, depth: int) -> dict[str, Any]:
        return {"type": "boolean"}

    def null(self, depth: int) -> dict[str, Any]:
        return {"type": "null"}

    def enum(self, depth: int) -> dict[str, Any]:
        pool = st.one_of(st.sampled_from(WORDS), st.integers(-BIG * 2, BIG * 2), st.booleans(),
                         st.none())
        values = self.draw(st.lists(pool, min_size=1, max_size=6, unique_by=lambda v: (type(v), v)))
        return {"enum": values}

    def const(self, depth: int) -> dict[str, Any]:
        return {"const": self.draw(st.one_of(st.sampled_from(WORDS), st.integers(-BIG * 2, BIG * 2)))}

    def object(self, depth: int) -> dict[str, Any]:
        names = self.draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=self.max_properties,
                                   unique=True))
        props = {n: self.node(max(depth - 1, 0)) for n in names}
        s: dict[str, Any] = {"type": "object", "properties": props}
        required = [n for n in names if chance(self.draw, 60)]
        if required:
            s["required"] = required
        extra = self.draw(st.sampled_from(("omit", "false", "true", "schema")))
        if extra in ("false", "true"):
            s["additionalProperties"] = extra == "true"
        elif extra == "schema":
            s["additionalProperties"] = self.node(0)
        return s

    def array(self, depth: int) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "array", "items": self.node(depth - 1)}
        if chance(self.draw, 60):
            lo = self.draw(st.integers(0, 4))
            s.update(minItems=lo, maxItems=lo + self.draw(st.integers(0, 6)))
        if chance(self.draw, 15):
            s["uniqueItems"] = True
            s["items"] = {"type": "integer"}
        return s

    def tuple(self, depth: int) -> dict[str, Any]:
        members = [self.node(depth - 1) for _ in range(self.draw(st.integers(1, 4)))]
        closed = chance(self.draw, 50)
        if self.draft == "2020-12":
            s: dict[str, Any] = {"type": "array", "prefixItems": members}
            if closed:
                s["items"] = False
        else:
            s = {"type": "array", "items": members}
            if closed:
                s["additionalItems"] = False
        if chance(self.draw, 50):
            s["minItems"] = len(members)
        return s

    def any_of(self, depth: int) -> dict[str, Any]:
        return {"anyOf": [self.node(depth - 1) for _ in range(self.draw(st.integers(1, 3)))]}

    def one_of(self, depth: int) -> dict[str, Any]:
        # Distinct primitive types keep oneOf satisfiable (no value matches two branches).
        kinds = self.draw(st.lists(st.sampled_from(("string", "integer", "boolean", "null")),
                                   min_size=1, max_size=3, unique=True))
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
