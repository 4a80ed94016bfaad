"""Shrink a failing scenario to the smallest one that still fails the same way.

A live server is flaky, so "still fails" is a repeated measurement (see
`reproduction`), and every pass only keeps a candidate that passes it.
"""

from fuzz.minimize.minimizer import Budget, MinimizeResult, Replay, minimize
from fuzz.minimize.reproduction import Outcome, ReproductionTest

__all__ = ["Budget", "MinimizeResult", "Outcome", "Replay", "ReproductionTest", "minimize"]
