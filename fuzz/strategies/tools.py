"""Tool lists from the seed tools in `corpora/tools/` plus generated ones, every
`tool_choice` form ("auto", "required", "none", a named function that is always one
of the offered tools, or absent) and `parallel_tool_calls`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema

from fuzz.strategies._common import Draw, check_int, check_order, corpus_dir, ints
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.schema_gen import SchemaSpec, draw_schema, schema_spec

TOOL_CHOICE_MODES: tuple[str, ...] = ("auto", "required", "named", "none")
_TOOL_SCHEMAS = schema_spec(max_depth=2, max_properties=4, drafts=("2020-12",))


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


def generated_tool(dice: Dice, index: int,
                   schemas: SchemaSpec = _TOOL_SCHEMAS) -> dict[str, Any]:
    """A function tool `gen_tool_<index>` whose parameters come from `json_schemas`
    (so tool-call grammars meet $ref, recursion, tuples, huge bounds...)."""
    schema = draw_schema(dice, schemas) or {"type": "object"}
    return {"type": "function", "function": {
        "name": f"gen_tool_{index}", "description": f"Generated tool number {index}.",
        "parameters": {k: v for k, v in schema.items() if k != "$schema"}}}


@dataclass(frozen=True)
class ToolSpec:
    """Validated tool-list arguments and the seed tools (as JSON text: every draw
    gets a private copy), narrowed by the exclusion."""

    seeds: tuple[str, ...]
    counts: st.SearchStrategy[int]
    generated_percent: int
    modes: tuple[str, ...]  # tool_choice forms allowed
    default_percent: int  # tool_choice omitted
    parallel: tuple[bool, ...]  # parallel_tool_calls values allowed
    parallel_percent: int


def tool_spec(*, min_tools: int = 1, max_tools: int = 4, generated_percent: int = 25,
              tools: Path | str | None = None, exclusion: Exclusion = NOTHING) -> ToolSpec:
    check_int("min_tools", min_tools, 1)
    check_int("max_tools", max_tools, 1, 128)
    check_order("min_tools", min_tools, "max_tools", max_tools)
    check_int("generated_percent", generated_percent, 0, 100)
    ex = exclusion
    frozen = tuple(json.dumps(t) for t in seed_tools(tools).values())
    generated_percent = ex.percent(generated_percent, "tools:generated")
    if not generated_percent:
        max_tools = min(max_tools, len(frozen))
    if min_tools > len(frozen) and generated_percent == 0:
        raise ValueError(f"min_tools={min_tools} but only {len(frozen)} seed tools")
    counts: st.SearchStrategy[int] = st.integers(min_tools, max_tools)
    if ex:
        counts = st.sampled_from(ex.require(tuple(
            n for n in range(min_tools, max_tools + 1)
            if ex.allows(f"tools:{n if n <= 4 else 'many'}")), "tool count"))
    modes = ex.keep(TOOL_CHOICE_MODES, lambda m: (f"tools:{m}",))
    default = ex.allows_all(("tools:auto", "tools:choice_default"))
    if not modes and not default:
        ex.require((), "tool_choice")
    parallel = ex.keep((True, False), lambda p: (f"tools:parallel:{str(p).lower()}",))
    return ToolSpec(seeds=frozen, counts=counts, generated_percent=generated_percent,
                    modes=modes, default_percent=(10 if modes else 100) if default else 0,
                    parallel=parallel, parallel_percent=40 if parallel else 0)


def draw_tools(dice: Dice, spec: ToolSpec) -> list[dict[str, Any]]:
    """Distinct tools (by name): seed tools, and with about `generated_percent`%
    chance per list, generated ones filling the rest."""
    want = dice.draw(spec.counts)
    seeds = min(want, len(spec.seeds))
    if spec.generated_percent and (want > len(spec.seeds) or dice.flip(spec.generated_percent)):
        seeds = dice.draw(ints(0, seeds))
    left = list(spec.seeds)
    chosen = [json.loads(left.pop(dice.number(0, len(left) - 1))) for _ in range(seeds)]
    return chosen + [generated_tool(dice, i) for i in range(want - seeds)]


def draw_tool_config(dice: Dice, spec: ToolSpec) -> dict[str, Any]:
    """`{"tools": [...], "tool_choice"?: ..., "parallel_tool_calls"?: ...}`."""
    offered = draw_tools(dice, spec)
    config: dict[str, Any] = {"tools": offered}
    if not dice.flip(spec.default_percent):
        mode = dice.pick(spec.modes)
        config["tool_choice"] = mode if mode != "named" else {"type": "function", "function": {
            "name": dice.pick(offered)["function"]["name"]}}
    if dice.flip(spec.parallel_percent):
        config["parallel_tool_calls"] = dice.pick(spec.parallel)
    return config


def tool_sets(*, min_tools: int = 1, max_tools: int = 4, generated_percent: int = 25,
              tools: Path | str | None = None) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of distinct tools (by name), min_tools..max_tools long: seed tools, and
    with about `generated_percent`% chance per list, generated ones filling the rest."""
    spec = tool_spec(min_tools=min_tools, max_tools=max_tools,
                     generated_percent=generated_percent, tools=tools)

    @st.composite
    def build(draw: Draw) -> list[dict[str, Any]]:
        return draw_tools(Dice.rolled(draw), spec)

    return build()


def tool_choices(offered: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[Any]:
    """`tool_choice` values valid for the `offered` tools."""
    names = [t["function"]["name"] for t in offered]
    if not names:
        raise ValueError("tool_choices needs at least one offered tool")
    named = st.sampled_from(names).map(lambda n: {"type": "function", "function": {"name": n}})
    return st.one_of(st.just("auto"), st.just("required"), named, st.just("none"))


def tool_configs(*, min_tools: int = 1, max_tools: int = 4, generated_percent: int = 25,
                 tools: Path | str | None = None,
                 exclude_features: Exclusion | frozenset[str] | None = None
                 ) -> st.SearchStrategy[dict[str, Any]]:
    """Body fragments `{"tools": [...], "tool_choice": ..., "parallel_tool_calls"?}`
    to merge into a request (tool_choice omitted sometimes: the server's default).
    Configs with an excluded `tools:` tag are not drawn."""
    spec = tool_spec(min_tools=min_tools, max_tools=max_tools,
                     generated_percent=generated_percent, tools=tools,
                     exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        return draw_tool_config(Dice.rolled(draw), spec)

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
