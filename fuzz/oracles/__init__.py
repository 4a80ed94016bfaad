"""Oracles: pure functions `(scenario, trace) -> failures`, one per property that must hold.

`check` runs them all and deduplicates by (signature, request_id)."""

from __future__ import annotations

from fuzz.model import Failure, Scenario, Trace
# Importing the oracle modules registers them, in this (report) order.
from fuzz.oracles import transport  # noqa: F401  isort: skip
from fuzz.oracles import structured  # noqa: F401  isort: skip
from fuzz.oracles import stream  # noqa: F401  isort: skip
from fuzz.oracles import shapes  # noqa: F401  isort: skip
from fuzz.oracles import answers  # noqa: F401  isort: skip
from fuzz.oracles import spec  # noqa: F401  isort: skip
from fuzz.oracles import leaks  # noqa: F401  isort: skip
from fuzz.oracles import server_log  # noqa: F401  isort: skip
from fuzz.oracles.reading import failure
from fuzz.oracles.registry import ORACLES, Oracle, oracle

__all__ = ["ORACLES", "Oracle", "check", "oracle"]


def check(scenario: Scenario, trace: Trace) -> list[Failure]:
    """All oracles' failures, first occurrence of each (signature, request_id) kept.

    An oracle that raises is an oracle bug; it is reported as an `oracle_error` failure
    instead of stopping a campaign."""
    seen: set[tuple[str, str | None]] = set()
    out: list[Failure] = []
    for name, fn in ORACLES.items():
        try:
            found = list(fn(scenario, trace))
        except Exception as exc:  # noqa: BLE001
            found = [failure("oracle_error", None, f"{name}: {type(exc).__name__}",
                             summary=f"oracle {name} raised {type(exc).__name__}: {exc}",
                             evidence={"oracle": name, "exception": repr(exc)[:2000]})]
        for f in found:
            key = (f.signature, f.request_id)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out
