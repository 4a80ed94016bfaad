"""vLLM's own constraint field, `structured_outputs` (vLLM >= 0.12; 0.32 checked):
exactly one of json / regex / choice / grammar / json_object, plus the whitespace
and additionalProperties options. A small share is deliberately invalid (two
constraints, none, a broken regex or grammar, an empty choice list): vLLM must
answer those with a 400, never a 5xx or a hang."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, chance, check_int
from fuzz.strategies.schemas import any_schemas
from fuzz.strategies.schema_gen import schema_features
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


def structured_outputs(*, invalid_percent: int = 5, generated_percent: int = 40,
                       options_percent: int = 15) -> st.SearchStrategy[dict[str, Any]]:
    """`structured_outputs` values; about `invalid_percent`% must be refused, about
    `options_percent`% carry whitespace/additionalProperties options."""
    check_int("invalid_percent", invalid_percent, 0, 100)
    check_int("options_percent", options_percent, 0, 100)
    schemas = any_schemas(generated_percent=generated_percent)

    @st.composite
    def valid(draw: Draw, kind: str) -> dict[str, Any]:
        if kind == "json":
            return {"json": draw(schemas)[1]}
        if kind == "regex":
            return {"regex": draw(st.sampled_from(REGEXES))}
        if kind == "choice":
            return {"choice": list(draw(st.sampled_from(CHOICES)))}
        if kind == "grammar":
            return {"grammar": draw(st.sampled_from(GRAMMARS))}
        return {"json_object": True}

    @st.composite
    def build(draw: Draw) -> dict[str, Any]:
        if chance(draw, invalid_percent):
            bad = draw(st.sampled_from(INVALID_KINDS))
            if bad == "multiple":
                a, b = draw(st.lists(st.sampled_from(KINDS), min_size=2, max_size=2, unique=True))
                return {**draw(valid(a)), **draw(valid(b))}
            if bad == "none":
                return {"disable_any_whitespace": True}
            if bad == "bad_regex":
                return {"regex": draw(st.sampled_from(BAD_REGEXES))}
            if bad == "bad_grammar":
                return {"grammar": draw(st.sampled_from(BAD_GRAMMARS))}
            return {"choice": []}
        out = draw(valid(draw(st.sampled_from(KINDS))))
        if chance(draw, options_percent):
            option = draw(st.sampled_from(("disable_any_whitespace", "disable_additional_properties",
                                           "whitespace_pattern")))
            out[option] = r"[ \n]?" if option == "whitespace_pattern" else True
        return out

    return build()


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
