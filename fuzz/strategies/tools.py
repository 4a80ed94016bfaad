"""Tool lists from the seed tools in `corpora/tools/` plus generated ones, every
`tool_choice` form ("auto", "required", "none", a named function that is always one
of the offered tools, or absent) and `parallel_tool_calls`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema

from fuzz.strategies._common import Draw, chance, check_int, check_order, corpus_dir
from fuzz.strategies.schema_gen import json_schemas

TOOL_CHOICE_MODES: tuple[str, ...] = ("auto", "required", "named", "none")


def seed_tools(directory: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """function name -> tool definition; each `parameters` checked as a JSON Schema."""
    path = corpus_dir(directory, "corpora", "tools")
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(path.glob("*.json")):
        tool = json.loads(file.read_text(encoding="utf-8"))
        fn = tool.get("function", {})
        if tool.get("type") != "function" or not isinstance(fn.get("name"), str):
            raise ValueError(f"{file} is not a function tool definition")
        jsonschema.Draft202012Validator.check_schema(fn.get("parameters", {}))
        out[fn["name"]] = tool
    if not out:
        raise ValueError(f"no *.json tools in {path}")
    return out


def generated_tools(index: int) -> st.SearchStrategy[dict[str, Any]]:
    """A function tool `gen_tool_<index>` whose parameters come from `json_schemas`
    (so tool-call grammars meet $ref, recursion, tuples, huge bounds...)."""
    return json_schemas(max_depth=2, max_properties=4, drafts=("2020-12",)).map(
        lambda schema: {"type": "function", "function": {
            "name": f"gen_tool_{index}", "description": f"Generated tool number {index}.",
            "parameters": {k: v for k, v in schema.items() if k != "$schema"}}})


def tool_sets(*, min_tools: int = 1, max_tools: int = 4, generated_percent: int = 25,
              tools: Path | str | None = None) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of distinct tools (by name), min_tools..max_tools long: seed tools, and
    with about `generated_percent`% chance per list, generated ones filling the rest."""
    check_int("min_tools", min_tools, 1)
    check_int("max_tools", max_tools, 1, 128)
    check_order("min_tools", min_tools, "max_tools", max_tools)
    check_int("generated_percent", generated_percent, 0, 100)
    frozen = tuple(json.dumps(t) for t in seed_tools(tools).values())
    if min_tools > len(frozen) and generated_percent == 0:
        raise ValueError(f"min_tools={min_tools} but only {len(frozen)} seed tools")

    @st.composite
    def build(draw: Draw) -> list[dict[str, Any]]:
        want = draw(st.integers(min_tools, max_tools))
        seeds = min(want, len(frozen))
        if generated_percent and (want > len(frozen) or chance(draw, generated_percent)):
            seeds = draw(st.integers(0, seeds))
        chosen = [json.loads(t) for t in draw(st.lists(
            st.sampled_from(frozen), min_size=seeds, max_size=seeds, unique=True))]
        chosen += [draw(generated_tools(i)) for i in range(want - seeds)]
        return chosen

    return build()


def tool_choices(offered: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[Any]:
    """`tool_choice` values valid for the `offered` tools."""
    names = [t["function"]["name"] for t in offered]
    if not names:
        raise ValueError("tool_choices needs at least one offered tool")
    named = st.sampled_from(names).map(lambda n: {"type": "function", "function": {"name": n}})
    return st.one_of(st.just("auto"), st.just("required"), named, st.just("none"))


def tool_configs(*, min_tools: int = 1, max_tools: int = 4, generated_percent: int = 25,
                 tools: Path | str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Body fragments `{"tools": [...], "tool_choice": ..., "parallel_tool_calls"?}`
    to merge into a request (tool_choice omitted sometimes: the server's default)."""
    sets = tool_sets(min_tools=min_tools, max_tools=max_tools,
                     generated_percent=generated_percent, tools=tools)

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        offered = draw(sets)
        config: dict[str, Any] = {"tools": offered}
        if not chance(draw, 10):
            config["tool_choice"] = draw(tool_choices(offered))
        if chance(draw, 40):
            config["parallel_tool_calls"] = draw(st.booleans())
        return config

    return build()


def tool_tags(body: Mapping[str, Any]) -> tuple[str, ...]:
    offered = body.get("tools")
    if not offered:
        return ()
    choice = body.get("tool_choice", "auto")
    mode = "named" if isinstance(choice, Mapping) else str(choice)
    n = len(offered)
    tags = [f"tools:{n if n <= 4 else 'many'}", f"tools:{mode}"]
    if "tool_choice" not in body:
        tags.append("tools:choice_default")
    if "parallel_tool_calls" in body:
        tags.append(f"tools:parallel:{str(body['parallel_tool_calls']).lower()}")
    if any(str(t.get("function", {}).get("name", "")).startswith("gen_tool_") for t in offered):
        tags.append("tools:generated")
    return tuple(tags)
