"""Bounded latency statistics and a per-interval time series for long campaigns.

An 8-hour campaign sends hundreds of thousands of requests; keeping every latency
would grow memory without bound. A log-bucketed histogram (about 9% relative error)
gives percentiles in constant space, and the timeline keeps one small record per
interval, doubling the interval (merging neighbours exactly) when it gets too long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_PER_DOUBLING = 8          # buckets per factor of two: ~9% resolution
_FLOOR_S = 0.001           # everything below 1 ms shares bucket 0


def _bucket(value_s: float) -> int:
    if value_s <= _FLOOR_S:
        return 0
    return 1 + int(math.log2(value_s / _FLOOR_S) * _PER_DOUBLING)


def _bucket_value(index: int) -> float:
    """The geometric middle of a bucket: its representative latency."""
    if index == 0:
        return _FLOOR_S
    return _FLOOR_S * 2 ** ((index - 0.5) / _PER_DOUBLING)


@dataclass
class Histogram:
    """Sparse log-bucketed counts; constant memory whatever the number of samples."""

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    max_s: float = 0.0

    def add(self, value_s: float) -> None:
        b = _bucket(value_s)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.total += 1
        self.max_s = max(self.max_s, value_s)

    def merge(self, other: Histogram) -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.total += other.total
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100), None when empty; never above the true max."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100 * self.total))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(_bucket_value(b), self.max_s)
        return self.max_s


@dataclass
class Interval:
    """What happened in one slice of campaign time."""

    start_s: float
    requests: int = 0
    errors: int = 0
    new_failures: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def merge(self, other: Interval) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.new_failures += other.new_failures
        self.latency.merge(other.latency)

    def to_json(self, width_s: float) -> dict[str, Any]:
        return {"t_s": round(self.start_s, 3), "requests": self.requests,
                "requests_per_s": round(self.requests / width_s, 3), "errors": self.errors,
                "new_failures": self.new_failures, "p50_s": _round(self.latency.percentile(50)),
                "p99_s": _round(self.latency.percentile(99))}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


@dataclass
class Timeline:
    """Intervals of `width_s` seconds; at most `max_points`, merged pairwise when full."""

    width_s: float = 10.0
    max_points: int = 480
    intervals: dict[int, Interval] = field(default_factory=dict)

    def _at(self, t_s: float) -> Interval:
        while t_s / self.width_s >= self.max_points:
            self._coarsen()
        i = int(max(t_s, 0.0) // self.width_s)
        if i not in self.intervals:
            self.intervals[i] = Interval(start_s=i * self.width_s)
        return self.intervals[i]

    def _coarsen(self) -> None:
        self.width_s *= 2
        merged: dict[int, Interval] = {}
        for i, iv in sorted(self.intervals.items()):
            j = i // 2
            if j in merged:
                merged[j].merge(iv)
            else:
                iv.start_s = j * self.width_s
                merged[j] = iv
        self.intervals = merged

    def add_request(self, t_s: float, latency_s: float | None, error: bool) -> None:
        iv = self._at(t_s)
        iv.requests += 1
        iv.errors += int(error)
        if latency_s is not None:
            iv.latency.add(latency_s)

    def add_failure(self, t_s: float) -> None:
        self._at(t_s).new_failures += 1

    def points(self) -> list[dict[str, Any]]:
        """Every interval from 0 to the last one, empty ones included (gaps show)."""
        if not self.intervals:
            return []
        last = max(self.intervals)
        return [(self.intervals.get(i) or Interval(start_s=i * self.width_s)).to_json(self.width_s)
                for i in range(last + 1)]
