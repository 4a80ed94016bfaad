"""Does a candidate still fail? Sequential statistics over repeated replays.

One lucky run is not evidence on a flaky server, and one unlucky run is not proof of
a fix. A candidate is judged by Wald's sequential probability ratio test (SPRT):
H1 "it fails at the original's rate p1" against H0 "it fails at a useless rate p0",
replaying it until the log-likelihood ratio crosses a boundary. Both rates come from
the original's measured k-of-n, so a deterministic failure costs one replay per
candidate and a flaky one as many as the evidence needs.

Continuing the same walk to a stricter boundary (`stricter()`) is still a valid
SPRT; the minimizer uses that to confirm its current best before building on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

DETERMINISTIC_P0_FRACTION = 0.05  # original never missed: anything near 0 is useless
FLAKY_P0_FRACTION = 0.25  # original missed sometimes: a quarter of its rate is useless
DETERMINISTIC_ALPHA = 0.05
FLAKY_ALPHA = 0.01
MAX_P1 = 0.95  # never assume certainty: leaves room for one miss in a long walk


@dataclass(frozen=True)
class Outcome:
    """k of n replays reproduced the signature."""

    hits: int
    runs: int

    @property
    def reproduces(self) -> bool:
        return self.hits > 0

    @property
    def rate(self) -> float:
        return self.hits / self.runs if self.runs else 0.0

    def plus(self, hit: bool) -> Outcome:
        return Outcome(self.hits + int(hit), self.runs + 1)

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval for the reproduction rate (honest at small n)."""
        return wilson_interval(self.hits, self.runs, z)

    def __str__(self) -> str:
        return f"{self.hits}/{self.runs}"


def wilson_interval(hits: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval; (0, 1) when nothing was run."""
    if runs <= 0:
        return 0.0, 1.0
    p = hits / runs
    denom = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denom
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ReproductionTest:
    """SPRT of H1: rate >= p1 against H0: rate <= p0.

    `alpha` bounds accepting a useless candidate (a false reduction), `beta` bounds
    rejecting a good one (a missed reduction, which only costs size). The walk is
    truncated at `max_runs`, where an undecided candidate is rejected: a missed
    reduction is cheaper than a scenario that no longer shows the bug."""

    p1: float = MAX_P1
    p0: float = MAX_P1 * DETERMINISTIC_P0_FRACTION
    alpha: float = 0.05
    beta: float = 0.1
    max_runs: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < self.p1 < 1.0:
            raise ValueError(f"need 0 < p0 ({self.p0}) < p1 ({self.p1}) < 1")
        if not (0.0 < self.alpha < 0.5 and 0.0 < self.beta < 0.5):
            raise ValueError(f"alpha ({self.alpha}) and beta ({self.beta}) must be in (0, 0.5)")
        if self.max_runs < 1:
            raise ValueError(f"max_runs must be >= 1, got {self.max_runs}")

    @classmethod
    def for_original(cls, original: Outcome, *, beta: float = 0.1,
                     max_runs: int = 30) -> ReproductionTest:
        """The test implied by the original's k-of-n: p1 is its rate (capped), p0 a
        small fraction of it. When the original never missed, one hit accepts and
        one miss rejects. When it is flaky, p0 sits closer and alpha is smaller: a
        background failure rate must not pass for the bug, since every later step
        would build on it."""
        if not original.reproduces:
            raise ValueError(f"the original does not reproduce ({original})")
        p1 = min(original.rate, MAX_P1)
        if original.hits == original.runs:
            return cls(p1=p1, p0=p1 * DETERMINISTIC_P0_FRACTION, alpha=DETERMINISTIC_ALPHA,
                       beta=beta, max_runs=max_runs)
        return cls(p1=p1, p0=p1 * FLAKY_P0_FRACTION, alpha=FLAKY_ALPHA, beta=beta,
                   max_runs=max_runs)

    def llr(self, hits: int, runs: int) -> float:
        """log(P(data | p1) / P(data | p0))."""
        misses = runs - hits
        return hits * math.log(self.p1 / self.p0) + misses * math.log((1 - self.p1) / (1 - self.p0))

    def decided(self, hits: int, runs: int) -> bool | None:
        """True: still fails at a useful rate; False: does not; None: run again."""
        llr = self.llr(hits, runs)
        if llr >= math.log((1 - self.beta) / self.alpha):
            return True
        if llr <= math.log(self.beta / (1 - self.alpha)):
            return False
        if runs >= self.max_runs:
            return False  # no evidence either way: do not build on it
        return None

    @property
    def single_run_decides(self) -> bool:
        """True for a deterministic-looking failure: one run settles a candidate."""
        return self.decided(1, 1) is True and self.decided(0, 1) is False

    def stricter(self, factor: float = 10.0) -> ReproductionTest:
        """The same walk with a `factor` times smaller false-acceptance bound and a
        longer truncation: for confirming an accepted candidate."""
        return replace(self, alpha=self.alpha / factor, max_runs=self.max_runs * 2)

    def describe(self) -> str:
        return (f"SPRT p1={self.p1:.2f} vs p0={self.p0:.3f}, alpha={self.alpha:g}, "
                f"beta={self.beta:g}, max {self.max_runs} runs")
