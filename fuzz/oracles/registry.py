"""The oracle registry: a name -> pure function table that refuses duplicate names.

It is the one piece of global mutable state in vlfuzz, filled at import time, so that an
oracle is declared where it is written and a name can never silently shadow another."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fuzz.model import Failure, Scenario, Trace

Oracle = Callable[[Scenario, Trace], Sequence[Failure]]

ORACLES: dict[str, Oracle] = {}


def oracle(fn: Oracle) -> Oracle:
    """Register `fn` under its own name (the property that must hold)."""
    name = getattr(fn, "__name__", None)
    if not name:
        raise ValueError(f"an oracle needs a name: {fn!r}")
    if name in ORACLES:
        raise ValueError(f"duplicate oracle name {name!r}")
    ORACLES[name] = fn
    return fn
