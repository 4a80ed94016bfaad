"""A small JSON Schema validator that `repro.py` embeds (see `fuzz.repro_checks`):
enough of JSON Schema for vlfuzz's schemas and tool parameters, in standard-library
Python, with errors spelt like the oracles' details (`keyword@path`).

Keep these functions free of imports other than json, math and re, and of module
globals other than other functions of this module: that is what makes them copyable.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


def short(value: Any, limit: int = 200) -> str:
    """A one-line head of `value` for printing."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "..."


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"



def schema_errors(value: Any, schema: Any, documents: Any = None, path: str = "$",
                  root: Any = None) -> list:
    """Where `value` breaks `schema`, as "keyword@path: why" strings ([] when valid).

    A small JSON Schema validator covering what vlfuzz's schemas use: $ref (in the
    schema, or "file.json#/..." into `documents`), type, enum, const, properties,
    required, additionalProperties, patternProperties, items, prefixItems, minItems,
    maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum,
    exclusiveMinimum, exclusiveMaximum, multipleOf, minProperties, maxProperties,
    anyOf, oneOf, allOf, not. `format` is not asserted (as in JSON Schema 2020-12);
    `unchecked_keywords` lists the keywords a schema uses beyond these."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    if schema is False:
        return ["false@%s: no value is allowed here" % path]
    if not isinstance(schema, dict):
        return []
    errors = []
    if "$ref" in schema:
        ref, here = schema["$ref"], root
        doc, _, pointer = ref.partition("#")
        if doc:
            here = (documents or {}).get(doc)
        target = here
        for part in [p for p in pointer.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if target is not None:
            errors += schema_errors(value, target, documents, path, here)
    types = schema.get("type")
    names = types if isinstance(types, list) else [types]
    if types is not None and not any(is_json_type(value, name) for name in names):
        return errors + ["type@%s: expected %s, got %s %s" % (
            path, " or ".join(map(str, names)), json_kind(value), short(value, 60))]
    if "enum" in schema and not any(json_equal(value, v) for v in schema["enum"]):
        errors.append("enum@%s: %s is not one of %s" % (path, short(value, 60),
                                                         short(schema["enum"], 120)))
    if "const" in schema and not json_equal(value, schema["const"]):
        errors.append("const@%s: expected %s, got %s" % (path, short(schema["const"], 60),
                                                          short(value, 60)))
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            passing = [s for s in schema[key] if not schema_errors(value, s, documents, path, root)]
            if not passing or (key == "oneOf" and len(passing) > 1):
                errors.append("%s@%s: matches %d of the %d alternatives" % (
                    key, path, len(passing), len(schema[key])))
    for sub in schema.get("allOf") or []:
        errors += schema_errors(value, sub, documents, path, root)
    if "not" in schema and not schema_errors(value, schema["not"], documents, path, root):
        errors.append("not@%s: matches a schema it must not match" % path)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                errors.append("required@%s: %r is required" % (path, name))
        for name, item in value.items():
            where = "%s.%s" % (path, name)
            matched = [s for p, s in patterns.items() if re.search(p, name)]
            if name in props:
                errors += schema_errors(item, props[name], documents, where, root)
            for sub in matched:
                errors += schema_errors(item, sub, documents, where, root)
            extra = schema.get("additionalProperties", True)
            if name not in props and not matched and extra is not True:
                if extra is False:
                    errors.append("additionalProperties@%s: %r is not allowed" % (path, name))
                else:
                    errors += schema_errors(item, extra, documents, where, root)
        if len(value) < schema.get("minProperties", 0):
            errors.append("minProperties@%s: %d properties" % (path, len(value)))
        if len(value) > schema.get("maxProperties", math.inf):
            errors.append("maxProperties@%s: %d properties" % (path, len(value)))
    if isinstance(value, list):
        tuple_items = schema.get("prefixItems")
        rest = schema.get("items", True)
        if isinstance(rest, list):  # draft-07 tuple form
            tuple_items, rest = rest, schema.get("additionalItems", True)
        tuple_items = tuple_items or []
        for i, item in enumerate(value):
            sub = tuple_items[i] if i < len(tuple_items) else rest
            errors += schema_errors(item, sub, documents, "%s[%d]" % (path, i), root)
        if len(value) < schema.get("minItems", 0):
            errors.append("minItems@%s: %d items, at least %s needed" % (
                path, len(value), schema["minItems"]))
        if len(value) > schema.get("maxItems", math.inf):
            errors.append("maxItems@%s: %d items, at most %s allowed" % (
                path, len(value), schema["maxItems"]))
        if schema.get("uniqueItems") is True and any(
                json_equal(a, b) for i, a in enumerate(value) for b in value[i + 1:]):
            errors.append("uniqueItems@%s: items repeat" % path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append("minLength@%s: %d characters" % (path, len(value)))
        if len(value) > schema.get("maxLength", math.inf):
            errors.append("maxLength@%s: %d characters" % (path, len(value)))
        if isinstance(schema.get("pattern"), str):
            try:
                if not re.search(schema["pattern"], value):
                    errors.append("pattern@%s: %s does not match %s" % (
                        path, short(value, 60), schema["pattern"]))
            except re.error:
                pass  # a pattern Python cannot compile is not judged
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = (("minimum", lambda b: value < b), ("maximum", lambda b: value > b),
                  ("exclusiveMinimum", lambda b: value <= b),
                  ("exclusiveMaximum", lambda b: value >= b))
        for key, breaks in bounds:
            bound = schema.get(key)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool) and breaks(bound):
                errors.append("%s@%s: %s breaks the bound %s" % (key, path, value, bound))
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0 \
                and not is_multiple(value, step):
            errors.append("multipleOf@%s: %s is not a multiple of %s" % (path, value, step))
    return errors


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def is_json_type(value: Any, name: Any) -> bool:
    """Whether a decoded value has JSON Schema type `name` (2.0 is an integer)."""
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return json_kind(value) == name


def is_multiple(value: Any, step: Any) -> bool:
    """`value` is a whole multiple of `step`, computed as JSON Schema validators do
    (remainder for an integer step, quotient for a float one, exact when it overflows)."""
    if not isinstance(step, float):
        return value % step == 0
    try:
        quotient = value / step
        return int(quotient) == quotient
    except OverflowError:
        from fractions import Fraction

        return Fraction(value) % Fraction(step) == 0


def schema_problems(value: Any, schema: Any, documents: Any = None) -> list:
    """`schema_errors`, except that a schema too broken to apply judges nothing (as
    the oracles do: a schema the fuzzer made up is not the server's fault)."""
    try:
        return schema_errors(value, schema, documents)
    except (TypeError, ValueError, AttributeError, RecursionError):
        return []


def unchecked_keywords(schema: Any) -> list:
    """Assertion keywords `schema` uses that `schema_errors` does not check."""
    known = {"$ref", "type", "enum", "const", "properties", "required",
             "additionalProperties", "patternProperties", "items", "prefixItems",
             "additionalItems", "minItems", "maxItems", "uniqueItems", "minLength",
             "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "multipleOf", "minProperties", "maxProperties", "anyOf",
             "oneOf", "allOf", "not", "$defs", "definitions", "$schema", "$id", "$comment",
             "title", "description", "default", "examples", "format", "readOnly",
             "writeOnly", "deprecated", "$anchor"}
    found: set = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            found.update(k for k in node if k not in known)
            for key, sub in node.items():
                if key in ("properties", "patternProperties", "$defs", "definitions") \
                        and isinstance(sub, dict):
                    stack.extend(sub.values())
                elif key not in ("enum", "const", "default", "examples"):
                    stack.append(sub)
    return sorted(found)
