"""How complicated a scenario is, as one lexicographic key.

The minimizer only accepts a candidate whose key is strictly smaller than the current
best's, which is what makes "repeat the passes until none makes progress" terminate.
The order is what a maintainer cares about first: fewer requests, then fewer and
smaller images, less text, a smaller body, plainer image files, no streaming, and
last the schedule (fewer overlapping requests, fewer simultaneous starts). Each pass
lowers one component without raising an earlier one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fuzz.model import Media, RequestSpec, Scenario

DEFAULT_LATENCY_S = 1.0  # assumed request duration when no trace has timed it
PLAIN_IMAGE = {"format": "PNG", "mode": "RGB", "content": "flat", "progressive": False}


def complexity(scenario: Scenario, latency_s: Mapping[str, float]) -> tuple[float, ...]:
    """The key; `latency_s` (request id -> seconds) decides which requests overlap."""
    refs = [h for r in scenario.requests for h in r.media_refs()]
    return (
        len(scenario.requests),
        len(refs),
        sum(_pixels(scenario.media[h]) for h in refs),
        sum(len(t) for r in scenario.requests for t in message_texts(r.body)),
        sum(len(json.dumps(r.body, sort_keys=True, default=str)) for r in scenario.requests),
        sum(_fanciness(scenario.media[h]) for h in refs),
        sum(r.stream + (r.disconnect_after_chunks is not None) for r in scenario.requests),
        len(overlapping_pairs(scenario, latency_s)),
        _simultaneous_starts(scenario.requests),
    )


def message_texts(body: Mapping[str, Any]) -> list[str]:
    """Every text the messages carry (string contents and text parts)."""
    out: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content
                       if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return out


def interval_ms(spec: RequestSpec, latency_s: Mapping[str, float]) -> tuple[float, float]:
    """When a request is (expected to be) in flight, from its offset and timed latency."""
    return spec.offset_ms, spec.offset_ms + 1000.0 * latency_s.get(spec.id, DEFAULT_LATENCY_S)


def overlapping_pairs(scenario: Scenario,
                      latency_s: Mapping[str, float]) -> list[tuple[str, str]]:
    """Pairs of request ids whose in-flight intervals intersect, earlier start first."""
    specs = sorted(scenario.requests, key=lambda r: r.offset_ms)
    out = []
    for i, a in enumerate(specs):
        a_start, a_end = interval_ms(a, latency_s)
        for b in specs[i + 1:]:
            b_start, _ = interval_ms(b, latency_s)
            if b_start < a_end and a_start <= b_start:
                out.append((a.id, b.id))
    return out


def _simultaneous_starts(requests: tuple[RequestSpec, ...]) -> int:
    offsets = [r.offset_ms for r in requests]
    return sum(offsets.count(o) - 1 for o in set(offsets))


def _pixels(media: Media) -> int:
    recipe = media.recipe
    if recipe and isinstance(recipe.get("width_px"), int) and isinstance(recipe.get("height_px"), int):
        return recipe["width_px"] * recipe["height_px"]
    return len(media.data)


def _fanciness(media: Media) -> int:
    """How far an image's recipe is from a flat PNG RGB (0 for plain or unknown)."""
    recipe = media.recipe or {}
    return sum(1 for k, plain in PLAIN_IMAGE.items() if k in recipe and recipe[k] != plain)
