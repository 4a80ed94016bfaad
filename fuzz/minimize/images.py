"""Re-rendering a scenario's images smaller or plainer, keeping media consistent.

Images carry their `ImageRecipe` in `Media.recipe`, so a smaller version is a new
render, not a resample. Sides shrink in whole 32-pixel steps (Qwen3-VL: patch 16 x
spatial merge 2) and keep their remainder modulo 32, so an image that sat one pixel
past a grid line still does: the rounding the server does stays the same kind.
When an image changes, every placeholder for it in every body is rewritten and the
media map is rebuilt from what the bodies use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from fuzz.media import ImageRecipe, render
from fuzz.model import Media, Scenario, media_url

GRID_PX = 32
PLAINER_STEPS: tuple[dict[str, Any], ...] = (
    {"format": "PNG", "mode": "RGB", "progressive": False},  # the lowest-level format
    {"content": "flat"},  # the simplest pixels
)
UNSIZED_CORRUPTIONS = frozenset({"empty", "not_image"})  # bytes do not depend on the size


def recipe_of(media: Media) -> ImageRecipe | None:
    """The recipe, when the image can be re-rendered at another size."""
    if media.recipe is None:
        return None
    try:
        recipe = ImageRecipe.from_json(media.recipe)
    except (KeyError, TypeError, ValueError):
        return None
    return None if recipe.corruption in UNSIZED_CORRUPTIONS else recipe


def smaller_sides(side_px: int) -> list[int]:
    """Sides below `side_px` with the same remainder mod 32, ascending (never 0)."""
    rem = side_px % GRID_PX
    return [s for s in range(rem if rem else GRID_PX, side_px, GRID_PX)]


def size_ladder(width_px: int, height_px: int) -> list[tuple[int, int]]:
    """Joint (width, height) steps from smallest to just below the current size,
    both sides moving through their grid steps at the same pace."""
    ws, hs = smaller_sides(width_px) + [width_px], smaller_sides(height_px) + [height_px]
    steps = max(len(ws), len(hs))
    out: list[tuple[int, int]] = []
    for t in range(steps - 1):
        w = ws[round(t * (len(ws) - 1) / (steps - 1))]
        h = hs[round(t * (len(hs) - 1) / (steps - 1))]
        if (w, h) != (width_px, height_px) and (w, h) not in out:
            out.append((w, h))
    return out


def rerendered(scenario: Scenario, sha256: str,
               recipe: ImageRecipe) -> tuple[Scenario, str] | None:
    """The scenario with image `sha256` replaced by `render(recipe)` everywhere, and
    the new image's sha256; None when it cannot be rendered or renders the same."""
    try:
        media = render(recipe)
    except (ValueError, OSError):
        return None
    if media.sha256 == sha256:
        return None
    return replace_media(scenario, sha256, media), media.sha256


def replace_media(scenario: Scenario, old_sha256: str, new: Media) -> Scenario:
    """Swap one image for another in all bodies; unused media are dropped."""
    old_url, new_url = media_url(old_sha256), media_url(new.sha256)
    requests = tuple(replace(r, body=_swap(r.body, old_url, new_url)) for r in scenario.requests)
    widened = replace(scenario, media={**scenario.media, new.sha256: new})
    return widened.with_requests(requests)


def _swap(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, Mapping):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_swap(v, old, new) for v in value]
    return value
