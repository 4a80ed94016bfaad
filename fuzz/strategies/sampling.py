"""Sampling and vLLM-extra request fields, including edge values (max_tokens 0, seed
at the int64 bounds and past them, out-of-vocabulary logit_bias, nonzero priority
without priority scheduling) and a small share of unknown or mistyped fields.

Some of these must be refused with a 400 (that is what they test); the tags say
which were drawn so the coverage table shows both halves. Whether a field appears
is a `Dice` flip; its value is a Hypothesis choice."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import check_int, check_order, ints
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.texts import SPECIAL_TOKENS

INT64_MAX = 2**63 - 1
SEEDS: tuple[int, ...] = (0, 1, -1, 2**31 - 1, 2**32, INT64_MAX, -(2**63), 2**63, 2**64)
STOPS: tuple[str, ...] = ("\n", ".", "the", "}", "```", "</s>", "日本", "🙂", " ") + SPECIAL_TOKENS[:6]
UNKNOWN_FIELDS: tuple[tuple[str, Any], ...] = (
    ("vlfuzz_unknown", 1), ("frequency_penalty_typo", 0.5), ("extra_body", {"top_k": 5}),
    ("functions", []), ("best_of", 2), ("kv_transfer_params", {}), ("", None))
MISTYPED: tuple[tuple[str, Any], ...] = (
    ("max_tokens", "16"), ("max_tokens", 1.5), ("temperature", "hot"), ("n", "2"),
    ("stream", "yes"), ("seed", 1.5), ("stop", 7), ("logprobs", "true"), ("top_logprobs", -5),
    ("logit_bias", ["1", 2]), ("stream_options", True), ("priority", "high"),
    ("top_p", 2.0), ("temperature", -1.0), ("min_tokens", -1), ("n", 0))


EXTRAS: tuple[str, ...] = ("n", "stop", "logprobs", "min_tokens", "ignore_eos", "logit_bias",
                          "priority", "top_k", "penalties")
TEMPERATURES = st.floats(0.0, 1.5, allow_nan=False).map(lambda t: round(t, 3))
_WARM = st.floats(0.001, 1.5, allow_nan=False).map(lambda t: max(round(t, 3), 0.001))
_STOP_LISTS = st.lists(st.sampled_from(STOPS), min_size=0, max_size=4)
_TOP_LOGPROBS = st.sampled_from((0, 1, 5, 20, -1))
_BIASES = st.sampled_from((-100, -1.5, 0, 5, 100, 1e6))
_TOP_K = st.sampled_from((-1, 0, 1, 5, 50))
_TOP_P = st.sampled_from((0.01, 0.5, 1.0))
_MIN_P = st.sampled_from((0.0, 0.1))
_PRESENCE = st.sampled_from((-2.0, 0.0, 1.0, 2.0))
_FREQUENCY = st.sampled_from((-2.0, 0.5, 2.0))
_REPETITION = st.sampled_from((0.5, 1.0, 1.3))
_NEW_SEEDS = st.integers(0, 2**31 - 1)


@functools.lru_cache(maxsize=16)
def _token_ids(lo: int, hi: int) -> tuple[st.SearchStrategy[int], st.SearchStrategy[list[int]]]:
    ids = st.integers(lo, hi)
    return ids, st.lists(ids, max_size=3)


@dataclass(frozen=True)
class SamplingSettings:
    """Validated knobs for `draw_sampling`, narrowed by `exclusion` (derived fields)."""

    max_output_tokens: int = 64
    large_output_tokens: int = 256
    large_percent: int = 3
    zero_percent: int = 2
    extras_percent: int = 30
    unknown_percent: int = 3
    mistyped_percent: int = 3
    vocab_size: int = 2048
    exclusion: Exclusion = NOTHING
    temperatures: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    random_temperatures: st.SearchStrategy[float] = field(init=False, repr=False, compare=False)
    small_tokens: st.SearchStrategy[int] | None = field(init=False, repr=False, compare=False)
    extras: tuple[str, ...] = field(init=False, repr=False, compare=False)
    seeds: st.SearchStrategy[int] = field(init=False, repr=False, compare=False)
    mistyped: st.SearchStrategy[tuple[str, Any]] | None = field(init=False, repr=False,
                                                               compare=False)

    def __post_init__(self) -> None:
        check_int("max_output_tokens", self.max_output_tokens, 1)
        check_int("large_output_tokens", self.large_output_tokens, 1)
        check_order("max_output_tokens", self.max_output_tokens,
                    "large_output_tokens", self.large_output_tokens)
        for name in ("large_percent", "zero_percent", "extras_percent", "unknown_percent",
                     "mistyped_percent"):
            check_int(name, getattr(self, name), 0, 100)
        check_int("vocab_size", self.vocab_size, 1)
        ex = self.exclusion
        temperatures = ex.keep((None, 0.0, "random"), lambda t: () if t is None else (
            "sampling:temperature:0" if t == 0.0 else "sampling:temperature",))
        lo = 1 if ex.allows("max_tokens:1") else 2
        hi = self.max_output_tokens if ex.allows("max_tokens:small") else 1
        seeds = ex.keep(SEEDS, lambda v: ("sampling:seed:out_of_range",) * _out_of_range(v))
        mistyped = ex.keep(MISTYPED, lambda kv: (f"extra:mistyped:{kv[0]}",))
        for name, value in (
                ("temperatures", temperatures),
                ("random_temperatures", TEMPERATURES if ex.allows("sampling:temperature:0")
                 else _WARM),
                ("small_tokens", ints(lo, hi) if lo <= hi else None),
                ("extras", ex.keep(EXTRAS, lambda e: (f"sampling:{e}",))),
                ("seeds", st.sampled_from(seeds)),
                ("mistyped", st.sampled_from(mistyped) if mistyped else None)):
            object.__setattr__(self, name, value)
        if self.small_tokens is None and not (self.percent("zero") or self.percent("large")):
            ex.require((), "max_tokens value")

    def percent(self, what: str) -> int:
        """A knob's percent, 0 where exclusion (or the bounds) rule it out."""
        ex = self.exclusion
        if what == "zero":
            return ex.percent(self.zero_percent, "max_tokens:0")
        if what == "large":
            return ex.percent(self.large_percent, "max_tokens:large") \
                if self.large_output_tokens > self.max_output_tokens else 0
        if what == "extras":
            return self.extras_percent if self.extras else 0
        if what == "unknown":
            return ex.percent(self.unknown_percent, "extra:unknown_field")
        return self.mistyped_percent if self.mistyped is not None else 0


def _out_of_range(seed: int) -> bool:
    return abs(seed) > INT64_MAX and seed != -(2**63)


def draw_max_tokens(dice: Dice, s: SamplingSettings) -> tuple[int, str]:
    """(max_tokens, tag): 0 (invalid), 1, small (<= max_output_tokens) or large."""
    zero, large = s.percent("zero"), s.percent("large")
    if dice.flip(zero) or (s.small_tokens is None and not large):
        return 0, "max_tokens:0"
    if dice.flip(large) or s.small_tokens is None:
        return dice.draw(ints(s.max_output_tokens + 1, s.large_output_tokens)), "max_tokens:large"
    n = dice.draw(s.small_tokens)
    return n, "max_tokens:1" if n == 1 else "max_tokens:small"


def draw_sampling(dice: Dice, s: SamplingSettings, body: dict[str, Any]) -> list[str]:
    """Add sampling/extra fields to `body` (which already has max_tokens); return tags."""
    tags: list[str] = []
    ex = s.exclusion
    temperature = dice.pick(s.temperatures)  # absent, greedy or drawn
    if temperature == "random":
        body["temperature"] = dice.draw(s.random_temperatures)
        tags.append("sampling:temperature" if body["temperature"] else "sampling:temperature:0")
    elif temperature is not None:
        body["temperature"] = 0.0
        tags.append("sampling:temperature:0")
    if dice.flip(ex.percent(30, "sampling:seed")):
        bound = dice.flip(ex.percent(20, "sampling:seed:bound"))
        body["seed"] = dice.draw(s.seeds) if bound else dice.draw(_NEW_SEEDS)
        tags.append("sampling:seed:bound" if bound else "sampling:seed")
        if _out_of_range(body["seed"]):
            tags.append("sampling:seed:out_of_range")
    if not dice.flip(s.percent("extras")):
        return tags
    chosen = list(s.extras)
    for _ in range(dice.draw(ints(1, min(3, len(chosen))))):
        extra = chosen.pop(dice.number(0, len(chosen) - 1))
        tags.append(_extra(dice, s, body, extra))
    return tags


def _extra(dice: Dice, s: SamplingSettings, body: dict[str, Any], extra: str) -> str:
    ex = s.exclusion
    if extra == "n":
        body["n"] = dice.draw(ints(2, 4))
        return "sampling:n"
    if extra == "stop":
        body["stop"] = dice.draw(_STOP_LISTS)
        if dice.flip(30):
            body["stop_token_ids"] = dice.draw(_token_ids(0, s.vocab_size - 1)[1])
        return "sampling:stop"
    if extra == "logprobs":
        body["logprobs"] = True
        body["top_logprobs"] = dice.draw(_TOP_LOGPROBS)
        return "sampling:logprobs"
    if extra == "min_tokens":
        over = 2 if ex.allows("sampling:min_tokens:over_max") else 0
        body["min_tokens"] = dice.draw(ints(0, body["max_tokens"] + over))
        return "sampling:min_tokens" + (":over_max" if body["min_tokens"] > body["max_tokens"] else "")
    if extra == "ignore_eos":
        body["ignore_eos"] = True
        return "sampling:ignore_eos"
    if extra == "logit_bias":
        oov = dice.flip(ex.percent(20, "sampling:logit_bias:oov"))
        ids = _token_ids(s.vocab_size, 10**7)[0] if oov else _token_ids(0, s.vocab_size - 1)[0]
        body["logit_bias"] = {str(dice.draw(ids)): dice.draw(_BIASES) for _ in range(dice.draw(ints(1, 4)))}
        return "sampling:logit_bias" + (":oov" if oov else "")
    if extra == "priority":
        nonzero = ex.allows("sampling:priority:nonzero")
        body["priority"] = dice.draw(_PRIORITIES if nonzero else st.just(0))
        return "sampling:priority" + ("" if body["priority"] == 0 else ":nonzero")
    if extra == "top_k":
        body["top_k"] = dice.draw(_TOP_K)
        body["top_p"] = dice.draw(_TOP_P)
        body["min_p"] = dice.draw(_MIN_P)
        return "sampling:top_k"
    body["presence_penalty"] = dice.draw(_PRESENCE)
    body["frequency_penalty"] = dice.draw(_FREQUENCY)
    body["repetition_penalty"] = dice.draw(_REPETITION)
    return "sampling:penalties"


_PRIORITIES = st.sampled_from((0, 0, 1, -10, 2**31))


def draw_stream(dice: Dice, body: dict[str, Any],
                exclusion: Exclusion = NOTHING) -> list[str]:
    """`stream` (true, explicit false or absent) and `stream_options` for streams."""
    ex = exclusion
    if not dice.flip(ex.percent(50, "stream")):
        if dice.flip(30):
            body["stream"] = False
        return []
    body["stream"] = True
    tags = ["stream"]
    if dice.flip(ex.percent(50, "stream:include_usage")):
        body["stream_options"] = {"include_usage": True}
        tags.append("stream:include_usage")
        if dice.flip(ex.percent(30, "stream:continuous_usage")):
            body["stream_options"]["continuous_usage_stats"] = True
            tags.append("stream:continuous_usage")
    return tags


def draw_oddities(dice: Dice, s: SamplingSettings, body: dict[str, Any]) -> list[str]:
    """Unknown and mistyped fields (each about its percent); applied last so they win."""
    tags = []
    if dice.flip(s.percent("unknown")):
        key, value = dice.draw(_UNKNOWN)
        body[key] = value
        tags.append("extra:unknown_field")
    if s.mistyped is not None and dice.flip(s.percent("mistyped")):
        key, value = dice.draw(s.mistyped)
        body[key] = value
        tags.append(f"extra:mistyped:{key}")
    return tags


_UNKNOWN = st.sampled_from(UNKNOWN_FIELDS)
