"""Arrival schedules: when each request of a scenario starts, in ms from its start.

Shapes: a burst (all at 0: peak concurrency), uniform, Poisson (exponential gaps),
gamma (gaps with shape k < 1 clump into mini-bursts, k > 1 are regular), and ramps
(rate rising or falling linearly: the scheduler sees load change mid-scenario)."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np

from fuzz.strategies._common import Draw, StrategyArgumentError, check_int

TRAFFIC_SHAPES: tuple[str, ...] = ("burst", "uniform", "poisson", "gamma", "ramp_up", "ramp_down")
GAMMA_SHAPES: tuple[float, ...] = (0.2, 0.5, 2.0, 5.0)


def check_spread(max_spread_ms: object) -> float:
    if not (isinstance(max_spread_ms, (int, float)) and not isinstance(max_spread_ms, bool)
            and 0 < max_spread_ms < math.inf):
        raise StrategyArgumentError(f"max_spread_ms must be a positive number, got {max_spread_ms!r}")
    return float(max_spread_ms)


def arrival_offsets(*, count: int, shape: str | None = None,
                    max_spread_ms: float = 2500.0) -> st.SearchStrategy[list[float]]:
    """Sorted offsets in ms (0.1 ms resolution) within [0, max_spread_ms]; all zero
    for a burst. `shape` None draws one of TRAFFIC_SHAPES."""
    check_int("count", count, 1)
    if shape is not None and shape not in TRAFFIC_SHAPES:
        raise StrategyArgumentError(f"shape {shape!r} not in {TRAFFIC_SHAPES}")
    limit = check_spread(max_spread_ms)

    @st.composite
    def build(draw: Draw) -> list[float]:
        kind = shape or draw(st.sampled_from(TRAFFIC_SHAPES))
        if kind == "burst":
            return [0.0] * count
        span = draw(st.floats(min(100.0, limit), limit))
        if kind == "uniform":
            raw = [draw(st.floats(0.0, span)) for _ in range(count)]
        elif kind == "poisson":  # exponential gaps with mean span/count, clipped
            gaps = [-math.log1p(-draw(st.floats(0.0, 0.99))) * span / count for _ in range(count)]
            raw = list(np.cumsum(gaps) - gaps[0])
        elif kind == "gamma":  # one drawn seed: cheap for hundreds of requests
            k = draw(st.sampled_from(GAMMA_SHAPES))
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            gaps = rng.gamma(k, span / count / k, count)
            raw = list(np.cumsum(gaps) - gaps[0])
        else:  # linear rate ramp: the i-th arrival at span*sqrt(i/n) (or its mirror)
            frac = [math.sqrt(i / max(count - 1, 1)) for i in range(count)]
            raw = [span * f if kind == "ramp_up" else span * (1 - f) for f in frac]
        return sorted(min(max(round(float(t), 1), 0.0), limit) for t in raw)

    return build()


def concurrency_bucket(n: int) -> str:
    """Coverage bucket for a request count (1, 2-4, 5-16, 17-64, 65-256, 257+)."""
    for hi, name in ((1, "1"), (4, "2-4"), (16, "5-16"), (64, "17-64"), (256, "65-256")):
        if n <= hi:
            return name
    return "257+"
