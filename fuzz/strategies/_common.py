"""Small helpers shared by the strategy modules: argument checks, memoised integer
strategies, tag emission, and where the seed corpora live."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
from hypothesis.errors import InvalidArgument

REPO_ROOT = Path(__file__).resolve().parents[2]

Draw = Callable[[st.SearchStrategy[Any]], Any]


class StrategyArgumentError(InvalidArgument, ValueError):
    """A strategy was built with bad arguments; both a Hypothesis InvalidArgument
    and a ValueError, so callers can catch either."""


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """Eagerly validate an integer argument (bools rejected)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise StrategyArgumentError(f"{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise StrategyArgumentError(f"{name}={value} outside {bound}")
    return value


def check_order(lo_name: str, lo: int, hi_name: str, hi: int) -> None:
    if lo > hi:
        raise StrategyArgumentError(f"{lo_name}={lo} > {hi_name}={hi}")


@functools.lru_cache(maxsize=4096)
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """`st.integers(lo, hi)`, memoised: bounds that depend on an earlier draw would
    otherwise build (and validate) a new strategy every time."""
    return st.integers(lo, hi)


def unique(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags in first-seen order without repeats."""
    return tuple(dict.fromkeys(tags))


def emit(tags: Iterable[str]) -> None:
    """Report each tag to Hypothesis statistics (`hypothesis.event`)."""
    for tag in tags:
        hypothesis.event(tag)


def corpus_dir(override: Path | str | None, *parts: str) -> Path:
    path = Path(override) if override is not None else REPO_ROOT.joinpath(*parts)
    if not path.is_dir():
        raise StrategyArgumentError(f"corpus directory {path} does not exist")
    return path
