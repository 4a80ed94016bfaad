"""JSON Schema checks for model output, reduced to a stable detail string
(validator keyword @ path shape) so that one bug keeps one signature."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, exceptions, validators


def path_shape(path: Iterable[Any]) -> str:
    """`$.items[*].name`: property names kept, array positions folded."""
    out = "$"
    for part in path:
        out += "[*]" if isinstance(part, int) else f".{part}"
    return out


def schema_problem(instance: Any, schema: Any) -> str | None:
    """`keyword@path` of the best-matching validation error, or None when the instance is
    valid or the schema cannot be judged (invalid schema, unresolvable `$ref`): a schema
    the fuzzer made up is not the server's fault."""
    try:
        cls = validators.validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
        error = exceptions.best_match(cls(schema).iter_errors(instance))
    except Exception:
        return None
    if error is None:
        return None
    return f"{error.validator}@{path_shape(error.absolute_path)}"
