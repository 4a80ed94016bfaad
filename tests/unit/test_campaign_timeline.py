"""Latency statistics stay bounded and accurate enough over an 8-hour campaign."""

from __future__ import annotations

import random
import sys

from fuzz.timeline import Histogram, Timeline


def test_histogram_percentiles_are_within_ten_percent() -> None:
    rng = random.Random(0)
    values = [rng.lognormvariate(-1, 1.2) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.add(v)
    ordered = sorted(values)
    for q in (50, 90, 99):
        exact = ordered[int(q / 100 * len(ordered)) - 1]
        assert abs(h.percentile(q) - exact) / exact < 0.1, q
    assert h.percentile(100) <= h.max_s == max(values)
    assert len(h.counts) < 200 and Histogram().percentile(50) is None


def test_timeline_stays_bounded_over_eight_hours_and_keeps_totals() -> None:
    t = Timeline(width_s=10.0, max_points=480)
    for second in range(0, 8 * 3600, 3):
        t.add_request(float(second), 0.2, error=second % 30 == 0)
    t.add_failure(4 * 3600.0)
    points = t.points()
    assert len(points) <= 480 and t.width_s >= 60
    assert sum(p["requests"] for p in points) == 8 * 3600 // 3
    assert sum(p["new_failures"] for p in points) == 1
    assert all(p["p50_s"] is None or abs(p["p50_s"] - 0.2) < 0.02 for p in points)
    assert sys.getsizeof(t.intervals) < 50_000
