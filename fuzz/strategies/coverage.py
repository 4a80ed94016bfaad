"""Coverage accounting over generated scenarios, from the tags on their requests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fuzz.model import Scenario


def feature_counts(scenarios: Iterable[Scenario]) -> Counter[str]:
    """How many requests carry each tag, summed over `scenarios` (pure)."""
    counts: Counter[str] = Counter()
    for scenario in scenarios:
        for request in scenario.requests:
            counts.update(set(request.tags))
    return counts
