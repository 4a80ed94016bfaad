"""Sampling and vLLM-extra request fields, including edge values (max_tokens 0, seed
at the int64 bounds and past them, out-of-vocabulary logit_bias, nonzero priority
without priority scheduling) and a small share of unknown or mistyped fields.

Some of these must be refused with a 400 (that is what they test); the tags say
which were drawn so the coverage table shows both halves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies._common import Draw, chance, check_int, check_order
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


@dataclass(frozen=True)
class SamplingSettings:
    """Validated knobs for `draw_sampling`."""

    max_output_tokens: int = 64
    large_output_tokens: int = 256
    large_percent: int = 3
    zero_percent: int = 2
    extras_percent: int = 30
    unknown_percent: int = 3
    mistyped_percent: int = 3
    vocab_size: int = 2048

    def __post_init__(self) -> None:
        check_int("max_output_tokens", self.max_output_tokens, 1)
        check_int("large_output_tokens", self.large_output_tokens, 1)
        check_order("max_output_tokens", self.max_output_tokens,
                    "large_output_tokens", self.large_output_tokens)
        for name in ("large_percent", "zero_percent", "extras_percent", "unknown_percent",
                     "mistyped_percent"):
            check_int(name, getattr(self, name), 0, 100)
        check_int("vocab_size", self.vocab_size, 1)


def draw_max_tokens(draw: Draw, s: SamplingSettings) -> tuple[int, str]:
    """(max_tokens, tag): 0 (invalid), 1, small (<= max_output_tokens) or large."""
    if chance(draw, s.zero_percent):
        return 0, "max_tokens:0"
    if s.large_output_tokens > s.max_output_tokens and chance(draw, s.large_percent):
        return draw(st.integers(s.max_output_tokens + 1, s.large_output_tokens)), "max_tokens:large"
    n = draw(st.integers(1, s.max_output_tokens))
    return n, "max_tokens:1" if n == 1 else "max_tokens:small"


def draw_sampling(draw: Draw, s: SamplingSettings, body: dict[str, Any]) -> list[str]:
    """Add sampling/extra fields to `body` (which already has max_tokens); return tags."""
    tags: list[str] = []
    temperature = draw(st.sampled_from((None, 0.0, "random")))
    if temperature == "random":
        body["temperature"] = draw(st.floats(0.0, 1.5, allow_nan=False).map(lambda t: round(t, 3)))
        tags.append("temperature")
    elif temperature is not None:
        body["temperature"] = 0.0
        tags.append("temperature:0")
    if chance(draw, 30):
        bound = chance(draw, 20)
        body["seed"] = draw(st.sampled_from(SEEDS)) if bound else draw(st.integers(0, 2**31 - 1))
        tags.append("seed:bound" if bound else "seed")
        if abs(body["seed"]) > INT64_MAX and body["seed"] != -(2**63):
            tags.append("seed:out_of_range")
    if not chance(draw, s.extras_percent):
        return tags
    extras = draw(st.lists(st.sampled_from(("n", "stop", "logprobs", "min_tokens", "ignore_eos",
                                            "logit_bias", "priority", "top_k", "penalties")),
                           min_size=1, max_size=3, unique=True))
    for extra in extras:
        tags.append(_extra(draw, s, body, extra))
    return tags


def _extra(draw: Draw, s: SamplingSettings, body: dict[str, Any], extra: str) -> str:
    if extra == "n":
        body["n"] = draw(st.integers(2, 4))
        return "sampling:n"
    if extra == "stop":
        body["stop"] = draw(st.lists(st.sampled_from(STOPS), min_size=0, max_size=4))
        if chance(draw, 30):
            body["stop_token_ids"] = draw(st.lists(st.integers(0, s.vocab_size - 1), max_size=3))
        return "sampling:stop"
    if extra == "logprobs":
        body["logprobs"] = True
        body["top_logprobs"] = draw(st.sampled_from((0, 1, 5, 20, -1)))
        return "sampling:logprobs"
    if extra == "min_tokens":
        body["min_tokens"] = draw(st.integers(0, body["max_tokens"] + 2))
        return "sampling:min_tokens" + (":over_max" if body["min_tokens"] > body["max_tokens"] else "")
    if extra == "ignore_eos":
        body["ignore_eos"] = True
        return "sampling:ignore_eos"
    if extra == "logit_bias":
        oov = chance(draw, 20)
        ids = st.integers(s.vocab_size, 10**7) if oov else st.integers(0, s.vocab_size - 1)
        body["logit_bias"] = {str(draw(ids)): draw(st.sampled_from((-100, -1.5, 0, 5, 100, 1e6)))
                              for _ in range(draw(st.integers(1, 4)))}
        return "sampling:logit_bias" + (":oov" if oov else "")
    if extra == "priority":
        body["priority"] = draw(st.sampled_from((0, 0, 1, -10, 2**31)))
        return "sampling:priority" + ("" if body["priority"] == 0 else ":nonzero")
    if extra == "top_k":
        body["top_k"] = draw(st.sampled_from((-1, 0, 1, 5, 50)))
        body["top_p"] = draw(st.sampled_from((0.01, 0.5, 1.0)))
        body["min_p"] = draw(st.sampled_from((0.0, 0.1)))
        return "sampling:top_k"
    body["presence_penalty"] = draw(st.sampled_from((-2.0, 0.0, 1.0, 2.0)))
    body["frequency_penalty"] = draw(st.sampled_from((-2.0, 0.5, 2.0)))
    body["repetition_penalty"] = draw(st.sampled_from((0.5, 1.0, 1.3)))
    return "sampling:penalties"


def draw_stream(draw: Draw, body: dict[str, Any]) -> list[str]:
    """`stream` (true, explicit false or absent) and `stream_options` for streams."""
    if not draw(st.booleans()):
        if chance(draw, 30):
            body["stream"] = False
        return []
    body["stream"] = True
    tags = ["stream"]
    if chance(draw, 50):
        body["stream_options"] = {"include_usage": True}
        tags.append("stream:include_usage")
        if chance(draw, 30):
            body["stream_options"]["continuous_usage_stats"] = True
            tags.append("stream:continuous_usage")
    return tags


def draw_oddities(draw: Draw, s: SamplingSettings, body: dict[str, Any]) -> list[str]:
    """Unknown and mistyped fields (each about its percent); applied last so they win."""
    tags = []
    if chance(draw, s.unknown_percent):
        key, value = draw(st.sampled_from(UNKNOWN_FIELDS))
        body[key] = value
        tags.append("extra:unknown_field")
    if chance(draw, s.mistyped_percent):
        key, value = draw(st.sampled_from(MISTYPED))
        body[key] = value
        tags.append(f"extra:mistyped:{key}")
    return tags
