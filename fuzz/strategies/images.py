"""Image recipes: sizes that matter to Qwen3-VL's 32-pixel grid, every mode/format
pair, and a small share of broken files. Drawn as `ImageRecipe`s so Hypothesis
shrinks parameters, rendered with `fuzz.media.render`."""

from __future__ import annotations

from collections.abc import Sequence

import hypothesis.strategies as st

from fuzz.media import CONTENTS, CORRUPTIONS, FORMATS, MODES, ImageRecipe, render
from fuzz.model import Media
from fuzz.strategies._common import Draw, StrategyArgumentError, chance, check_int

MAX_PIXELS = 1_100_000  # ~1.1 MP: the CPU target is slow
MAX_SIDE = 16383  # WEBP's limit, so every format can hold every drawn size
GRID = 32  # Qwen3-VL: patch 16 x spatial merge 2
SEED_MAX = 2**32 - 1

TINY_SIZES: tuple[tuple[int, int], ...] = (
    (1, 1), (2, 2), (1, 8), (8, 1), (8, 8), (16, 16), (28, 28), (31, 31), (32, 32), (33, 33))
TYPICAL_SIZES: tuple[tuple[int, int], ...] = (
    (224, 224), (256, 256), (336, 336), (448, 448), (512, 384), (384, 512), (640, 480),
    (800, 600), (1024, 768), (768, 1024), (1024, 1024))
EXTREME_SIZES: tuple[tuple[int, int], ...] = (
    (1024, 8), (8, 1024), (4, 900), (900, 4), (1, 1000), (1000, 1), (2048, 16), (32, 2048),
    (1100, 1), (1, 1100), (4096, 64), (10000, 2))


def _fits(size: tuple[int, int], max_pixels: int, max_side: int) -> bool:
    w, h = size
    return w * h <= max_pixels and w <= max_side and h <= max_side


@st.composite
def _grid_sizes(draw: Draw, max_pixels: int, max_side: int) -> tuple[int, int]:
    """Sides at k*32 - 1, k*32 or k*32 + 1: where patch/merge rounding changes."""
    def side(limit: int) -> int:
        k = draw(st.integers(1, max(1, (limit + 1) // GRID)))
        return max(1, min(limit, GRID * k + draw(st.sampled_from((0, -1, 1)))))
    w = side(min(max_side, max_pixels))
    h = side(min(max_side, max(1, max_pixels // w)))
    return w, h


@st.composite
def _free_sizes(draw: Draw, max_pixels: int, max_side: int) -> tuple[int, int]:
    """Any size; sides capped at 2048 so extreme aspects stay the EXTREME_SIZES' job."""
    w = draw(st.integers(1, min(max_side, max_pixels, 2048)))
    h = draw(st.integers(1, min(max_side, max(1, max_pixels // w), 2048)))
    return w, h


def image_sizes(*, max_pixels: int = MAX_PIXELS,
                max_side: int = MAX_SIDE) -> st.SearchStrategy[tuple[int, int]]:
    """(width, height) pairs with width*height <= max_pixels, from tiny to extreme."""
    check_int("max_pixels", max_pixels, 1)
    check_int("max_side", max_side, 1, MAX_SIDE)
    branches: list[st.SearchStrategy[tuple[int, int]]] = []
    for table in (TINY_SIZES, TYPICAL_SIZES, EXTREME_SIZES):
        fitting = [s for s in table if _fits(s, max_pixels, max_side)]
        if fitting:
            branches.append(st.sampled_from(fitting))
    branches.append(_grid_sizes(max_pixels, max_side))
    branches.append(_free_sizes(max_pixels, max_side))
    return st.one_of(branches)


def _subset(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(values)
    bad = [v for v in chosen if v not in allowed]
    if not chosen or bad:
        raise StrategyArgumentError(f"{name} must be a non-empty subset of {tuple(allowed)}")
    return chosen


def image_recipes(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                  modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
                  contents: Sequence[str] = CONTENTS,
                  broken_percent: int = 8) -> st.SearchStrategy[ImageRecipe]:
    """Image recipes; about `broken_percent`% carry a corruption."""
    sizes = image_sizes(max_pixels=max_pixels, max_side=max_side)
    modes = _subset("modes", modes, MODES)
    formats = _subset("formats", formats, FORMATS)
    contents = _subset("contents", contents, CONTENTS)
    check_int("broken_percent", broken_percent, 0, 100)

    @st.composite
    def build(draw: Draw) -> ImageRecipe:
        w, h = draw(sizes)
        fmt = draw(st.sampled_from(formats))
        return ImageRecipe(
            width_px=w, height_px=h, mode=draw(st.sampled_from(modes)), format=fmt,
            content=draw(st.sampled_from(contents)), seed=draw(st.integers(0, SEED_MAX)),
            progressive=fmt in ("JPEG", "GIF") and draw(st.booleans()),
            corruption=draw(st.sampled_from(CORRUPTIONS)) if chance(draw, broken_percent) else None)

    return build()


def images(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
           modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
           contents: Sequence[str] = CONTENTS, broken_percent: int = 8) -> st.SearchStrategy[Media]:
    """Rendered images (see `image_recipes`); shrinking still acts on the recipe."""
    return image_recipes(max_pixels=max_pixels, max_side=max_side, modes=modes, formats=formats,
                         contents=contents, broken_percent=broken_percent).map(render)


def size_tag(width: int, height: int) -> str:
    pixels = width * height
    if pixels <= 32 * 32:
        return "image:size:tiny"
    if pixels < 200 * 200:
        return "image:size:small"
    if pixels <= 640 * 640:
        return "image:size:typical"
    return "image:size:large"


def image_tags(recipe: ImageRecipe) -> tuple[str, ...]:
    """Stable tags naming what an image exercises."""
    w, h = recipe.width_px, recipe.height_px
    tags = [f"image:format:{recipe.format.lower()}", f"image:mode:{recipe.mode.lower()}",
            f"image:content:{recipe.content}", size_tag(w, h)]
    if max(w, h) >= 8 * min(w, h):
        tags.append("image:aspect:extreme")
    if all(s % GRID == 0 for s in (w, h)):
        tags.append("image:grid:aligned")
    elif all(s >= GRID - 1 and s % GRID in (1, GRID - 1) for s in (w, h)):
        tags.append("image:grid:off_by_one")
    if recipe.progressive:
        tags.append("image:progressive")
    if recipe.corruption is not None:
        tags.append(f"image:broken:{recipe.corruption}")
    return tuple(tags)
