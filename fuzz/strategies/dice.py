"""`Dice`: where one drawn unit (a request, a text, an image recipe, a schema) gets
its randomness. Numbers that shape it (sizes, counts, token budgets, max_tokens)
are Hypothesis choices (`Dice.draw`), where Hypothesis' lean toward bounds, small
values and repeats finds bugs. Decisions (yes/no at a rate, one of a list) and
entropy that shapes nothing (an image's pixel seed, where to start reading a
document) come from a generator seeded by a single Hypothesis choice.

Why: every Hypothesis choice costs some 20-30 µs of engine bookkeeping. A request
takes a few dozen decisions (stream? tools? a broken image? which format?); as
separate choices they cost more than all the rest of generation, and for a pick
among options Hypothesis' lean toward the first one only crowds the mix. Drawn
here they keep their rates and seed reproducibility. What is lost is shrinking
decisions one by one; the fuzzer's own minimizer shrinks scenarios anyway.

Every value drawn through `Dice.draw` is mixed into the generator's state, so a
decision depends on the seed and on everything drawn before it: when Hypothesis
replays an earlier example with a value changed (its mutations do, often), the
decisions after it change as separate choices would, instead of repeating
wholesale. A `salt` (a request's place in its scenario) keeps equal seeds of
different units apart.

A Dice is mutable (it is a generator): one per drawn unit, never shared between
Hypothesis examples."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, TypeVar

import hypothesis.strategies as st

from fuzz.strategies._common import Draw

T = TypeVar("T")

SEEDS = st.integers(0, 2**64 - 1)
_MASK = 2**64 - 1
_GOLDEN = 0x9E3779B97F4A7C15
_FNV_PRIME = 0x100000001B3


class Dice:
    """Hypothesis values plus seeded decisions for one unit (see the module doc)."""

    __slots__ = ("_draw", "_state")

    def __init__(self, draw: Draw, seed: int, salt: tuple[int, ...] = ()) -> None:
        self._draw = draw
        self._state = seed & _MASK
        for part in salt:
            self._state = ((self._state ^ (part & _MASK)) * _FNV_PRIME) & _MASK

    @classmethod
    def rolled(cls, draw: Draw, salt: tuple[int, ...] = ()) -> Dice:
        """Dice seeded by one Hypothesis choice."""
        return cls(draw, draw(SEEDS), salt)

    def draw(self, strategy: st.SearchStrategy[T]) -> T:
        """A Hypothesis value, mixed into the state of later decisions."""
        return self.mix(self._draw(strategy))

    def mix(self, value: T) -> T:
        """Make later decisions depend on `value` too (something drawn elsewhere)."""
        self._state = ((self._state ^ _digest(value)) * _FNV_PRIME) & _MASK
        return value

    def flip(self, percent: int) -> bool:
        """True with `percent`% probability (exactly never at 0, always at 100)."""
        if percent >= 100:
            return True
        if percent <= 0:
            return False
        return self._next() * 100 < percent << 64

    def number(self, lo: int, hi: int) -> int:
        """A uniform integer in [lo, hi]: entropy, not a shape."""
        if hi <= lo:
            return lo
        return lo + self._next() % (hi - lo + 1)

    def pick(self, options: Sequence[T]) -> T:
        """One of `options`, each equally likely."""
        return options[self.number(0, len(options) - 1)]

    def _next(self) -> int:
        """splitmix64: 64 well-mixed bits per call."""
        self._state = z = (self._state + _GOLDEN) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)


def _digest(value: Any) -> int:
    """A stable 64-bit digest of a drawn value (str hashing is salted per process,
    so strings go through crc32; containers fold their items; anything else counts
    by type only)."""
    if value is None or isinstance(value, bool):
        return 3 if value is None else int(value) + 1
    if isinstance(value, int):
        return value & _MASK
    if isinstance(value, str):
        return zlib.crc32(value.encode("utf-8", "surrogatepass")) + 5
    if isinstance(value, float):
        return hash(value) & _MASK  # floats hash the same in every process
    if isinstance(value, (tuple, list)):
        h = len(value)
        for item in value:
            h = (h * 31 + _digest(item)) & _MASK
        return h
    return 7
