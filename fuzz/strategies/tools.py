"""Tool lists from the seed tools in `corpora/tools/` and every `tool_choice` form:
"auto", "required", "none" and a named function that is always one of the offered
tools."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema

from fuzz.strategies._common import Draw, check_int, check_order, corpus_dir

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


def tool_sets(*, min_tools: int = 1, max_tools: int = 4,
              tools: Path | str | None = None) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of distinct tools (by name), min_tools..max_tools long."""
    check_int("min_tools", min_tools, 1)
    check_int("max_tools", max_tools, 1)
    check_order("min_tools", min_tools, "max_tools", max_tools)
    frozen = tuple(json.dumps(t) for t in seed_tools(tools).values())
    if min_tools > len(frozen):
        raise ValueError(f"min_tools={min_tools} but only {len(frozen)} seed tools")
    return st.lists(st.sampled_from(frozen), min_size=min_tools,
                    max_size=min(max_tools, len(frozen)), unique=True).map(
        lambda texts: [json.loads(t) for t in texts])


def tool_choices(offered: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[Any]:
    """`tool_choice` values valid for the `offered` tools."""
    names = [t["function"]["name"] for t in offered]
    if not names:
        raise ValueError("tool_choices needs at least one offered tool")
    named = st.sampled_from(names).map(lambda n: {"type": "function", "function": {"name": n}})
    return st.one_of(st.just("auto"), st.just("required"), named, st.just("none"))


def tool_configs(*, min_tools: int = 1, max_tools: int = 4,
                 tools: Path | str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Body fragments `{"tools": [...], "tool_choice": ...}` to merge into a request."""
    sets = tool_sets(min_tools=min_tools, max_tools=max_tools, tools=tools)

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        offered = draw(sets)
        return {"tools": offered, "tool_choice": draw(tool_choices(offered))}

    return build()


def tool_tags(body: Mapping[str, Any]) -> tuple[str, ...]:
    offered = body.get("tools")
    if not offered:
        return ()
    choice = body.get("tool_choice", "auto")
    mode = "named" if isinstance(choice, Mapping) else str(choice)
    return (f"tools:{len(offered)}", f"tools:{mode}")
