"""vLLM's own constraint field, `structured_outputs` (vLLM >= 0.12; 0.32 checked):
exactly one of json / regex / choice / grammar / json_object, plus the whitespace
and additionalProperties options. A small share is deliberately invalid (two
constraints, none, a broken regex or grammar, an empty choice list): vLLM must
answer those with a 400, never a 5xx or a hang."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import reject

from fuzz.strategies._common import Draw, check_int
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.schema_gen import schema_features
from fuzz.strategies.schemas import SchemaSource, draw_named_schema, schema_source
from fuzz.strategies.texts import SPECIAL_TOKENS

KINDS: tuple[str, ...] = ("json", "regex", "choice", "grammar", "json_object")
INVALID_KINDS: tuple[str, ...] = ("multiple", "none", "bad_regex", "bad_grammar", "empty_choice")
REGEXES: tuple[str, ...] = (
    r"\d{3}-\d{4}", r"(yes|no)", r"[A-Z][a-z]{2,10}", r"\w+@\w+\.com", r"[\u4e00-\u9fff]{2}",
    r"(a|b)*c", r".{0,5}", r"-?(0|[1-9]\d*)(\.\d+)?", r"\{\"k\": \"[a-z]{1,8}\"\}", r"[^\n]{1,40}\n")
# GBNF/EBNF as xgrammar reads it, and one Lark grammar (guidance's dialect).
GRAMMARS: tuple[str, ...] = (
    'root ::= "yes" | "no"',
    'root ::= [0-9]+ ("." [0-9]+)?',
    'root ::= "(" expr ")"\nexpr ::= term (("+" | "-") term)*\nterm ::= [0-9]+',
    'root ::= item ("," item)*\nitem ::= [a-z]{1,5}',
    'root ::= "<|im_end|>" | "plain"',
    '?start: "a"+ | "b"',
)
CHOICES: tuple[tuple[str, ...], ...] = (
    ("positive", "negative"), ("yes",), ("red", "green", "blue", "red"), ("", "non-empty"),
    ("日本", "中国", "한국"), ("🙂", "🙃"), SPECIAL_TOKENS[:3], tuple(f"option {i}" for i in range(50)),
)
BAD_REGEXES: tuple[str, ...] = ("([a-z]", "a{5,2}", "(?P<x>a)(?P<x>b)", "*")
BAD_GRAMMARS: tuple[str, ...] = ("root ::= ", "root ::= undefined_rule", "not a grammar at all")


OPTIONS: tuple[str, ...] = ("disable_any_whitespace", "disable_additional_properties",
                           "whitespace_pattern")


@dataclass(frozen=True)
class OutputsSpec:
    """What `structured_outputs` draws from, narrowed by the exclusion."""

    kinds: st.SearchStrategy[str] | None
    pairs: st.SearchStrategy[list[str]] | None  # two kinds at once (invalid)
    invalid: st.SearchStrategy[str] | None
    options: st.SearchStrategy[str] | None
    regexes: st.SearchStrategy[str]
    grammars: st.SearchStrategy[str]
    choices: st.SearchStrategy[tuple[str, ...]]
    schemas: SchemaSource
    invalid_percent: int
    options_percent: int


def outputs_spec(*, invalid_percent: int = 5, generated_percent: int = 40,
                 options_percent: int = 15, exclusion: Exclusion = NOTHING) -> OutputsSpec:
    check_int("invalid_percent", invalid_percent, 0, 100)
    check_int("options_percent", options_percent, 0, 100)
    ex = exclusion
    schemas = schema_source(generated_percent=generated_percent, exclusion=ex)
    kinds = ex.keep(KINDS, lambda k: (f"structured_outputs:{k}",))
    if schemas.seeds is None and schemas.generated is None:
        kinds = tuple(k for k in kinds if k != "json")
    invalid_kinds = ex.keep(INVALID_KINDS, lambda k: (
        "structured_outputs:invalid", *{"bad_regex": ("structured_outputs:regex",),
                                        "bad_grammar": ("structured_outputs:grammar",),
                                        "empty_choice": ("structured_outputs:choice",)}.get(k, ())))
    if len(kinds) < 2:
        invalid_kinds = tuple(k for k in invalid_kinds if k != "multiple")
    options = ex.keep(OPTIONS, lambda o: (f"structured_outputs:{o}",))
    grammars = ex.keep(GRAMMARS, lambda g: ("structured_outputs:grammar:lark",)
                       if g.startswith("?start") else ())
    return OutputsSpec(
        kinds=st.sampled_from(kinds) if kinds else None,
        pairs=st.lists(st.sampled_from(kinds), min_size=2, max_size=2, unique=True)
        if len(kinds) >= 2 else None,
        invalid=st.sampled_from(invalid_kinds) if invalid_kinds else None,
        options=st.sampled_from(options) if options else None,
        regexes=st.sampled_from(REGEXES), grammars=st.sampled_from(grammars or GRAMMARS),
        choices=st.sampled_from(CHOICES), schemas=schemas,
        invalid_percent=invalid_percent if invalid_kinds else 0,
        options_percent=options_percent if options else 0)


def _valid(dice: Dice, spec: OutputsSpec, kind: str) -> dict[str, Any] | None:
    if kind == "json":
        named = draw_named_schema(dice, spec.schemas)
        return None if named is None else {"json": named[1]}
    if kind == "regex":
        return {"regex": dice.draw(spec.regexes)}
    if kind == "choice":
        return {"choice": list(dice.draw(spec.choices))}
    if kind == "grammar":
        return {"grammar": dice.draw(spec.grammars)}
    return {"json_object": True}


def draw_structured_outputs(dice: Dice, spec: OutputsSpec) -> dict[str, Any] | None:
    """A `structured_outputs` value (see `structured_outputs`); None when the
    exclusion leaves nothing to draw."""
    if spec.invalid is not None and dice.flip(spec.invalid_percent):
        bad = dice.draw(spec.invalid)
        if bad == "multiple" and spec.pairs is not None:
            a, b = dice.draw(spec.pairs)
            first, second = _valid(dice, spec, a), _valid(dice, spec, b)
            if first is not None and second is not None:
                return {**first, **second}
        if bad == "none":
            return {"disable_any_whitespace": True}
        if bad == "bad_regex":
            return {"regex": dice.draw(_BAD_REGEXES)}
        if bad == "bad_grammar":
            return {"grammar": dice.draw(_BAD_GRAMMARS)}
        if bad == "empty_choice":
            return {"choice": []}
    if spec.kinds is None:
        return None
    out = _valid(dice, spec, dice.draw(spec.kinds))
    if out is not None and spec.options is not None and dice.flip(spec.options_percent):
        option = dice.draw(spec.options)
        out[option] = r"[ \n]?" if option == "whitespace_pattern" else True
    return out


def structured_outputs(*, invalid_percent: int = 5, generated_percent: int = 40,
                       options_percent: int = 15,
                       exclude_features: Exclusion | frozenset[str] | None = None
                       ) -> st.SearchStrategy[dict[str, Any]]:
    """`structured_outputs` values; about `invalid_percent`% must be refused, about
    `options_percent`% carry whitespace/additionalProperties options. Values with an
    excluded `structured_outputs:` or `schema:` tag are not drawn."""
    spec = outputs_spec(invalid_percent=invalid_percent, generated_percent=generated_percent,
                        options_percent=options_percent, exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        value = draw_structured_outputs(Dice.rolled(draw), spec)
        if value is None:
            reject()
        return value

    return build()


_BAD_REGEXES = st.sampled_from(BAD_REGEXES)
_BAD_GRAMMARS = st.sampled_from(BAD_GRAMMARS)


def structured_outputs_tags(value: Mapping[str, Any]) -> tuple[str, ...]:
    """`structured_outputs:<kind>` per constraint present, `:invalid` when not exactly
    one valid constraint, plus schema features for json."""
    present = [k for k in KINDS if value.get(k) is not None]
    tags = [f"structured_outputs:{k}" for k in present]
    if (len(present) != 1 or value.get("regex") in BAD_REGEXES
            or value.get("grammar") in BAD_GRAMMARS or value.get("choice") == []):
        tags.append("structured_outputs:invalid")
    if isinstance(value.get("grammar"), str) and value["grammar"].startswith("?start"):
        tags.append("structured_outputs:grammar:lark")
    tags.extend(f"structured_outputs:{k}" for k in ("disable_any_whitespace",
                "disable_additional_properties", "whitespace_pattern") if k in value
                and "structured_outputs:invalid" not in tags)
    if isinstance(value.get("json"), Mapping):
        tags.extend(f"schema:feature:{f}" for f in sorted(schema_features(value["json"])))
    return tuple(tags)
