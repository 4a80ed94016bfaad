"""How many tokens a text costs on the target: `TokenScale`, characters per token by
kind of text, measured once through the server's `/tokenize` (vLLM: POST
{"model", "prompt"} -> {"count", "tokens", "max_model_len"}) or assumed.

The strategies size prompts "just under, at and past max_model_len"; how close that
lands depends on the target's tokenizer, which the fuzzer does not have. Asking the
server for every candidate prefix would cost a round trip per binary-search step, so
the scale is measured once on a few sample texts (`SAMPLES`: prose, code, CJK, other
scripts, emoji, chat-template special tokens) and then applied locally, per
character:

- ASCII splits into word characters (letters, digits, space) and symbols; their
  costs are solved from the prose and code rates (code is denser in symbols, so
  the two samples pin both down);
- a CJK, emoji or other non-ASCII character costs 1 / its kind's rate, where the
  rate counts that kind's characters only (the ASCII spaces and digits in its
  sample are paid for at the ASCII costs);
- a special token typed as text costs 1 / `special` per character of it.

A count is the ceiling of the summed costs, so it grows with the prefix and `fit`
cuts a text to a token budget in one pass. `ESTIMATE`, the scale the strategies
assume without a measurement, reproduces their rule exactly: an ASCII character is
a quarter token, any other character a whole one.

Measuring is the only I/O here and is best effort: any failure gives None."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ESTIMATE", "KINDS", "SAMPLES", "SPECIAL_TOKENS", "TokenScale",
           "measure_token_scale", "scale_from_counts"]

# Qwen2/3-VL chat-template tokens, which a user can type as plain text.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|im_start|>",
    "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
)
KINDS: tuple[str, ...] = ("prose", "code", "cjk", "other", "emoji", "special")

# One sample per kind, cut from (or written like) what `corpora/texts/` holds.
SAMPLES: Mapping[str, str] = {
    "prose": (
        "The harbour town woke slowly that morning. Fog lay across the water like a folded "
        "blanket, and the fishing boats, still tied to their moorings, knocked gently against "
        "one another whenever a wake rolled in from the channel. On the quay a woman in a green "
        "raincoat was counting crates of ice, tapping each lid with a pencil and writing the "
        "number on the back of her hand because her notebook had blown into the sea the week "
        "before. Further up the hill the bakery had been open for an hour."),
    "code": (
        "export async function search(query, { signal } = {}) {\n"
        "  const url = new URL(\"/api/search\", window.location.origin);\n"
        "  url.searchParams.set(\"q\", query.trim());\n"
        "  const response = await fetch(url, { signal });\n"
        "  if (!response.ok) {\n"
        "    throw new Error(`search failed: ${response.status}`);\n  }\n"
        "  return (await response.json()).results ?? [];\n}\n\n"
        "def schedule(jobs: list[Job], budget_ms: float) -> Iterator[Job]:\n"
        "    heap = [(j.priority, i, j) for i, j in enumerate(jobs)]\n"
        "    heapq.heapify(heap)\n    while heap and budget_ms > 0:\n"
        "        _, _, job = heapq.heappop(heap)\n        budget_ms -= job.cost_ms\n"
        "        yield job\n"),
    "cjk": ("いろはにほへと ちりぬるを わかよたれそ つねならむ。今日は良い天気ですね。"
            "我能吞下玻璃而不伤身体。图片里有几只猫？请用一句话描述。"
            "다람쥐 헌 쳇바퀴에 타고파. 이 사진을 설명해 주세요."),
    "other": ("Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. "
              "Съешь же ещё этих мягких французских булок, да выпей чаю. "
              "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. "
              "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر."),
    "emoji": "👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇯🇵 🐈‍⬛ ❤️‍🔥 1️⃣ 🧑🏿‍🚀 😀😃😄😁🙂🙃",
    "special": "".join(SPECIAL_TOKENS),
}

_WORD, _SYMBOL, _CJK, _OTHER, _EMOJI, _SPECIAL = range(6)
_EPS = 1e-9
# Code point ranges above ASCII that are not "other": (first, last, class).
_RANGES: tuple[tuple[int, int, int], ...] = (
    (0x1100, 0x11FF, _CJK), (0x200D, 0x200D, _EMOJI), (0x20E3, 0x20E3, _EMOJI),
    (0x2300, 0x23FF, _EMOJI), (0x2600, 0x27BF, _EMOJI), (0x2B00, 0x2BFF, _EMOJI),
    (0x2E80, 0x9FFF, _CJK), (0xA960, 0xA97F, _CJK), (0xAC00, 0xD7FF, _CJK),
    (0xF900, 0xFAFF, _CJK), (0xFE00, 0xFE0F, _EMOJI), (0xFF00, 0xFFEF, _CJK),
    (0x1F000, 0x1FAFF, _EMOJI), (0x20000, 0x3FFFF, _CJK), (0xE0000, 0xE007F, _EMOJI),
)


def _class_table() -> np.ndarray:
    """The class of every code point (1.1 MB, so classifying a text is one gather)."""
    table = np.full(0x110000, _OTHER, dtype=np.int8)
    table[:128] = [_WORD if chr(c).isalnum() or c == 32 else _SYMBOL for c in range(128)]
    for first, last, cls in _RANGES:
        table[first:last + 1] = cls
    return table


_TABLE = _class_table()


def _classes_of(text: str) -> np.ndarray:
    """The character class of every code point (lone surrogates are "other")."""
    return _TABLE[np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")]


def _class_counts(text: str) -> np.ndarray:
    return np.bincount(_classes_of(text), minlength=6)


@dataclass(frozen=True)
class TokenScale:
    """Characters per token: `prose` and `code` for ASCII text of those genres,
    `cjk`, `other` and `emoji` for characters of those kinds, `special` for
    chat-template tokens typed as text; and the context length the target reported
    (None when unknown). Counting and fitting are pure and local."""

    prose: float
    code: float
    cjk: float
    other: float
    emoji: float
    special: float
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < math.inf:
                raise ValueError(f"{kind}={value!r} must be a positive number of chars per token")
        if self.max_model_len is not None and (isinstance(self.max_model_len, bool) or not
                                               isinstance(self.max_model_len, int)
                                               or self.max_model_len < 1):
            raise ValueError(f"max_model_len={self.max_model_len!r} must be a positive int")
        word, symbol = _ascii_costs(self.prose, self.code)
        costs = np.array([word, symbol, 1 / self.cjk, 1 / self.other, 1 / self.emoji,
                          1 / self.special])
        object.__setattr__(self, "_costs", costs)
        # All ASCII costs one price, special tokens included: no classes needed.
        object.__setattr__(self, "_flat_ascii", word == symbol == costs[_SPECIAL])

    def per_kind(self) -> dict[str, float]:
        """Characters per token by kind (what was measured)."""
        return {kind: float(getattr(self, kind)) for kind in KINDS}

    def to_json(self) -> dict[str, Any]:
        return {**self.per_kind(), "max_model_len": self.max_model_len}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TokenScale:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def count(self, text: str) -> int:
        """Estimated tokens in `text` (the ceiling of its characters' costs)."""
        if not text:
            return 0
        if self._flat_ascii and text.isascii():
            return math.ceil(len(text) * self._costs[_WORD] - _EPS)
        return math.ceil(float(np.cumsum(self._char_costs(text))[-1]) - _EPS)

    def fit(self, text: str, target: int) -> str:
        """The longest prefix of `text` counting at most `target` tokens, never cut
        inside a special token (one pass over the text, not a search)."""
        if target < 0:
            raise ValueError(f"target={target} must be >= 0")
        if not text:
            return text
        if self._flat_ascii and text.isascii():
            return text[: int(target / self._costs[_WORD] + _EPS)]
        text = text[: int(target / float(self._costs.min())) + 2]  # no longer prefix fits
        costs = np.cumsum(self._char_costs(text))
        if costs[-1] - _EPS <= target:
            return text
        keep = int(np.searchsorted(costs, target + _EPS, side="right"))
        if not self._flat_ascii:  # a cut special token is plain ASCII: it costs more
            keep = _not_inside_special(text, keep)
        while keep and self.count(text[:keep]) > target:  # float rounding only
            keep -= 1
        return text[:keep]

    def _char_costs(self, text: str) -> np.ndarray:
        classes = _classes_of(text)
        if "<" in text and not self._flat_ascii:
            for start, stop in _special_spans(text):
                classes[start:stop] = _SPECIAL
        return self._costs[classes]


def _ascii_costs(prose: float, code: float) -> tuple[float, float]:
    """Tokens per ASCII word character and per symbol, solved so that the prose and
    code samples cost what their rates say; one shared cost when the rates agree
    or the solution is not positive."""
    if prose == code:
        return 1 / prose, 1 / prose
    p, c = _class_counts(SAMPLES["prose"]), _class_counts(SAMPLES["code"])
    prose_tokens, code_tokens = (p[_WORD] + p[_SYMBOL]) / prose, (c[_WORD] + c[_SYMBOL]) / code
    det = p[_WORD] * c[_SYMBOL] - p[_SYMBOL] * c[_WORD]
    if det:
        word = (prose_tokens * c[_SYMBOL] - p[_SYMBOL] * code_tokens) / det
        symbol = (p[_WORD] * code_tokens - prose_tokens * c[_WORD]) / det
        if word > 0 and symbol > 0:
            return float(word), float(symbol)
    shared = (prose_tokens + code_tokens) / (p[_WORD] + p[_SYMBOL] + c[_WORD] + c[_SYMBOL])
    return float(shared), float(shared)


def scale_from_counts(counts: Mapping[str, int], max_model_len: int | None = None) -> TokenScale:
    """The scale whose costs reproduce the token count measured for each of `SAMPLES`
    (a kind missing from `counts` keeps `ESTIMATE`'s rate). Non-ASCII rates are net
    of the sample's ASCII characters, priced at the ASCII costs just solved."""
    rates = ESTIMATE.per_kind()
    for kind in ("prose", "code", "special"):
        if kind in counts:
            rates[kind] = len(SAMPLES[kind]) / counts[kind]
    word, symbol = _ascii_costs(rates["prose"], rates["code"])
    for kind in ("cjk", "other", "emoji"):
        if kind not in counts:
            continue
        classes = _class_counts(SAMPLES[kind])
        own = int(classes[_CJK] + classes[_OTHER] + classes[_EMOJI])
        left = counts[kind] - classes[_WORD] * word - classes[_SYMBOL] * symbol
        rates[kind] = float(own / left if left > 0 else len(SAMPLES[kind]) / counts[kind])
    return TokenScale(**rates, max_model_len=max_model_len)


def _special_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for token in SPECIAL_TOKENS:
        at = text.find(token)
        while at >= 0:
            spans.append((at, at + len(token)))
            at = text.find(token, at + len(token))
    return spans


def _not_inside_special(text: str, keep: int) -> int:
    for start, stop in _special_spans(text):
        if start < keep < stop:
            return start
    return keep


ESTIMATE = TokenScale(prose=4.0, code=4.0, cjk=1.0, other=1.0, emoji=1.0, special=4.0)


async def measure_token_scale(base_url: str, model: str,
                              session: aiohttp.ClientSession | None = None, *,
                              headers: Mapping[str, str] | None = None,
                              timeout_s: float = 10.0) -> TokenScale | None:
    """Tokenize each of `SAMPLES` on the target and return characters per token by
    kind, or None when the target has no usable `/tokenize` (absent, an error
    status, an answer without a count, unreachable, too slow). `session` is used
    as is when given (with its own base headers); otherwise one is opened and
    closed here. Special tokens are not added (`add_special_tokens: false`), so
    a count is the text's own."""
    import aiohttp

    async def tokenized(client: aiohttp.ClientSession, text: str) -> tuple[int, int | None]:
        async with client.post(base_url.rstrip("/") + "/tokenize", headers=dict(headers or {}),
                               json={"model": model, "prompt": text,
                                     "add_special_tokens": False},
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                raise LookupError(f"/tokenize answered {response.status}")
            return _read_count(await response.json(content_type=None))

    async def measure(client: aiohttp.ClientSession) -> TokenScale | None:
        answers = await asyncio.gather(*(tokenized(client, SAMPLES[k]) for k in KINDS))
        lengths = {m for _, m in answers if m is not None}
        return scale_from_counts({k: count for k, (count, _) in zip(KINDS, answers)},
                                 max(lengths) if lengths else None)

    try:
        if session is not None:
            return await measure(session)
        async with aiohttp.ClientSession() as own:
            return await measure(own)
    except (aiohttp.ClientError, asyncio.TimeoutError, LookupError, ValueError, TypeError):
        return None


def _read_count(answer: Any) -> tuple[int, int | None]:
    """(token count, max_model_len or None) from a /tokenize answer; LookupError
    when it says neither how many tokens nor which."""
    if not isinstance(answer, Mapping):
        raise LookupError("/tokenize answer is not an object")
    count = answer.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        tokens = answer.get("tokens")
        if not isinstance(tokens, list):
            raise LookupError("/tokenize answer has neither count nor tokens")
        count = len(tokens)
    if count < 1:
        raise LookupError(f"/tokenize counted {count} tokens for a non-empty sample")
    limit = answer.get("max_model_len")
    ok_limit = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
    return count, limit if ok_limit else None
