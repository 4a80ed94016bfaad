"""The oracle on response shapes: 200 bodies, stream chunks and 4xx error bodies must match
the OpenAI shapes kept as JSON Schemas under `schemas/openai/`.

The schemas are written against what vLLM really returns: strict about the types clients
rely on, permissive about optional and vLLM-only fields. A shape problem is reported as
`keyword@path` (array positions folded), so one bug keeps one signature."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, exceptions
from referencing import Registry, Resource

from fuzz.model import CHAT_PATH, Failure, Scenario, Trace
from fuzz.oracles.reading import complete_200, error_of, failure, head, pairs, parse_or_none
from fuzz.oracles.registry import oracle
from fuzz.oracles.validation import path_shape

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "openai"
SHAPES = ("chat.completion", "chat.completion.chunk", "error")


@cache
def _validators() -> dict[str, Draft202012Validator]:
    """One validator per shape; schemas refer to each other by file name."""
    docs = {name: json.loads((SCHEMA_DIR / f"{name}.json").read_text()) for name in SHAPES}
    resources = [(f"{name}.json", Resource.from_contents(doc)) for name, doc in docs.items()]
    resources += [(doc["$id"], Resource.from_contents(doc)) for doc in docs.values()]
    registry = Registry().with_resources(resources)
    for doc in docs.values():
        Draft202012Validator.check_schema(doc)
    return {name: Draft202012Validator(doc, registry=registry) for name, doc in docs.items()}


def shape_problem(doc: Any, shape: str) -> str | None:
    """`keyword@path` of the best-matching mismatch of `doc` against `shape`, or None."""
    error = exceptions.best_match(_validators()[shape].iter_errors(doc))
    return None if error is None else f"{error.validator}@{path_shape(error.absolute_path)}"


@oracle
def response_shape(scenario: Scenario, trace: Trace) -> list[Failure]:
    """Chat answers must have the OpenAI shape: a complete 200 body is a `chat.completion`,
    every stream event before `[DONE]` a `chat.completion.chunk` (error events and
    unparsable ones are `stream_well_formed`'s), and a JSON 4xx body an error object.
    Non-JSON bodies are other oracles' business; only POSTs to the chat path are judged."""
    out: list[Failure] = []
    for spec, rt in pairs(scenario, trace):
        if spec.path != CHAT_PATH or spec.method.upper() != "POST":
            continue
        if rt.status is not None and 400 <= rt.status < 500 and not rt.body_truncated:
            doc = parse_or_none(rt.body)
            found = [(shape_problem(doc, "error"), "error", rt.body)] \
                if isinstance(doc, Mapping) else []
        elif complete_200(rt) and spec.stream:
            found = []
            done = rt.events.index("[DONE]") if "[DONE]" in rt.events else len(rt.events)
            for ev in rt.events[:done]:
                doc = parse_or_none(ev)
                if doc is None or error_of(doc) is not None:
                    continue
                problem = shape_problem(doc, "chat.completion.chunk")
                if problem is not None:
                    found = [(problem, "chat.completion.chunk", ev)]
                    break
        elif complete_200(rt) and rt.body is not None:
            doc = parse_or_none(rt.body)
            found = [(shape_problem(doc, "chat.completion"), "chat.completion", rt.body)] \
                if doc is not None else []
        else:
            continue
        for problem, shape, text in found:
            if problem is None:
                continue
            out.append(failure("shape_mismatch", rt.status, f"response is not a {shape}",
                               detail=problem, request_id=rt.id,
                               summary=f"response is not a valid {shape} ({problem})",
                               evidence={"status": rt.status, "shape": shape,
                                         "problem": problem, "stream": spec.stream,
                                         "head": head(text, 1000)}))
    return out
