"""fuzz.strategies.dice: decisions keep their rates, are reproducible from the seed,
the salt and the values drawn (in any process), and change when a drawn value does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis.strategies as st

from fuzz.strategies.dice import Dice

ROOT = Path(__file__).resolve().parents[2]


def fixed(*values: Any):  # type: ignore[no-untyped-def]
    """A stand-in for Hypothesis' draw that hands out `values` in order."""
    it = iter(values)
    return lambda strategy: next(it)


def decisions(dice: Dice, n: int = 40) -> list[Any]:
    return [(dice.flip(30), dice.number(0, 9), dice.pick("abcde")) for _ in range(n)]


def test_rates_and_bounds_hold() -> None:
    dice = Dice(fixed(), seed=12345)
    flips = [dice.flip(30) for _ in range(20_000)]
    assert 0.28 < sum(flips) / len(flips) < 0.32
    assert not any(dice.flip(0) for _ in range(1000)) and all(dice.flip(100) for _ in range(1000))
    numbers = Counter(dice.number(3, 7) for _ in range(5000))
    assert set(numbers) == {3, 4, 5, 6, 7} and min(numbers.values()) > 850
    assert dice.number(4, 4) == 4 and {dice.pick("xy") for _ in range(50)} == {"x", "y"}


def test_the_seed_salt_and_drawn_values_decide_everything() -> None:
    def run(seed: int, salt: tuple[int, ...], value: Any) -> list[Any]:
        dice = Dice(fixed(value), seed, salt)
        head = decisions(dice, 5)
        assert dice.draw(st.just(value)) == value
        return head + decisions(dice)

    base = run(7, (1, 2), "text")
    assert run(7, (1, 2), "text") == base
    assert run(8, (1, 2), "text") != base
    assert run(7, (1, 3), "text") != base  # equal seeds, different units
    changed = run(7, (1, 2), "texts")
    assert changed[:5] == base[:5] and changed[5:] != base[5:]  # only what follows the value


def test_decisions_do_not_depend_on_the_process() -> None:
    code = ("from fuzz.strategies.dice import Dice\n"
            "d = Dice(lambda s: ['é', 1.5, (2, 'x'), None], 99, (4,))\n"
            "d.draw(None)\n"
            "print([d.number(0, 10**9) for _ in range(5)])\n")
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1
