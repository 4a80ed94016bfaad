"""Shrink a failing scenario to the smallest one that still fails the same way.

`minimize()` (in `minimizer`) drives named passes (`passes`, `timing`) over a
`Problem` that owns the replays, the budget and the verdicts. A live server is
flaky, so "still fails" is a sequential test over repeated replays
(`reproduction`), derived from the original's own reproduction rate.
"""

from fuzz.minimize.minimizer import TIERS, MinimizeResult, Pass, minimize
from fuzz.minimize.problem import Budget, PassStats, Problem, Replay
from fuzz.minimize.reproduction import Outcome, ReproductionTest, wilson_interval

__all__ = ["TIERS", "Budget", "MinimizeResult", "Outcome", "Pass", "PassStats", "Problem",
           "Replay", "ReproductionTest", "minimize", "wilson_interval"]
