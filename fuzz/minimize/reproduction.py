"""Does a candidate still fail? A small sequential test over repeated replays.

One lucky run is not evidence on a flaky server, and one unlucky run is not proof
of a fix: a candidate is replayed until `needed` runs reproduced the signature
(accept) or so many missed that `needed` can no longer be reached (reject).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReproductionTest:
    """Accept after `needed` reproductions within `max_runs` runs."""

    needed: int = 2
    max_runs: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.needed <= self.max_runs:
            raise ValueError(f"need 1 <= needed ({self.needed}) <= max_runs ({self.max_runs})")

    def decided(self, hits: int, runs: int) -> bool | None:
        """True: reproduces; False: does not; None: run again."""
        if hits >= self.needed:
            return True
        if hits + (self.max_runs - runs) < self.needed:
            return False
        return None


@dataclass(frozen=True)
class Outcome:
    """k of n replays reproduced the signature."""

    hits: int
    runs: int

    @property
    def reproduces(self) -> bool:
        return self.hits > 0

    def __str__(self) -> str:
        return f"{self.hits}/{self.runs}"
