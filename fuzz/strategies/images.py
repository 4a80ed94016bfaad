"""Image recipes: sizes that matter to Qwen3-VL's 32-pixel grid and to its
processor's min/max pixel bounds, every mode/format pair, a few animations and a
small share of broken files. Drawn as `ImageRecipe`s so Hypothesis
shrinks parameters, rendered with `fuzz.media.render`."""

from __future__ import annotations

from collections.abc import Sequence

import hypothesis.strategies as st

from fuzz.media import (CONTENTS, CORRUPTIONS, FORMATS, MODES, ImageRecipe, can_animate,
                        render)
from fuzz.model import Media
from fuzz.strategies._common import (Draw, StrategyArgumentError, chance, check_int,
                                     check_order)

MAX_PIXELS = 1_100_000  # ~1.1 MP: the CPU target is slow
MAX_SIDE = 16383  # WEBP's limit, so every format can hold every drawn size
GRID = 32  # Qwen3-VL: patch 16 x spatial merge 2
SEED_MAX = 2**32 - 1
PROCESSOR_MIN_PIXELS = 4096  # the embedded checkpoint's preprocessor_config.json
PROCESSOR_MAX_PIXELS = 1_048_576
_BOUND_ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (4, 3), (3, 4), (16, 9), (1, 4), (8, 1))

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


@st.composite
def _bound_sizes(draw: Draw, bounds: tuple[int, ...], max_pixels: int,
                 max_side: int) -> tuple[int, int]:
    """w*h just under, at or just over a processor pixel bound, in a few aspects:
    where the resize to the pixel range starts (or stops) being applied."""
    bound = draw(st.sampled_from(bounds))
    aw, ah = draw(st.sampled_from(_BOUND_ASPECTS))
    w = max(1, round((bound * aw / ah) ** 0.5))
    h = max(1, bound // w) + draw(st.sampled_from((0, -1, 1)))
    w, h = min(max(w, 1), max_side), min(max(h, 1), max_side)
    while w * h > max_pixels and h > 1:
        h -= 1
    return w, h


def image_sizes(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
                max_pixels_bound: int = PROCESSOR_MAX_PIXELS) -> st.SearchStrategy[tuple[int, int]]:
    """(width, height) pairs with width*height <= max_pixels, from tiny to extreme,
    including sizes around the processor's `min/max_pixels_bound`."""
    check_int("max_pixels", max_pixels, 1)
    check_int("max_side", max_side, 1, MAX_SIDE)
    check_int("min_pixels_bound", min_pixels_bound, 1)
    check_int("max_pixels_bound", max_pixels_bound, 1)
    check_order("min_pixels_bound", min_pixels_bound, "max_pixels_bound", max_pixels_bound)
    branches: list[st.SearchStrategy[tuple[int, int]]] = []
    for table in (TINY_SIZES, TYPICAL_SIZES, EXTREME_SIZES):
        fitting = [s for s in table if _fits(s, max_pixels, max_side)]
        if fitting:
            branches.append(st.sampled_from(fitting))
    branches.append(_grid_sizes(max_pixels, max_side))
    branches.append(_free_sizes(max_pixels, max_side))
    bounds = tuple(b for b in (min_pixels_bound, max_pixels_bound) if b <= max_pixels)
    if bounds:
        branches.append(_bound_sizes(bounds, max_pixels, max_side))
    return st.one_of(branches)


def _subset(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(values)
    bad = [v for v in chosen if v not in allowed]
    if not chosen or bad:
        raise StrategyArgumentError(f"{name} must be a non-empty subset of {tuple(allowed)}")
    return chosen


def image_recipes(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                  modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
                  contents: Sequence[str] = CONTENTS, corruptions: Sequence[str] = CORRUPTIONS,
                  broken_percent: int = 8, animated_percent: int = 3, max_frames: int = 4,
                  min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
                  max_pixels_bound: int = PROCESSOR_MAX_PIXELS) -> st.SearchStrategy[ImageRecipe]:
    """Image recipes; about `broken_percent`% carry one of `corruptions` and about
    `animated_percent`% of those in an animatable format get 2..max_frames frames
    (animations are capped at a quarter of `max_pixels` per frame: cost is per frame)."""
    sizes = image_sizes(max_pixels=max_pixels, max_side=max_side,
                        min_pixels_bound=min_pixels_bound, max_pixels_bound=max_pixels_bound)
    modes = _subset("modes", modes, MODES)
    formats = _subset("formats", formats, FORMATS)
    contents = _subset("contents", contents, CONTENTS)
    corruptions = _subset("corruptions", corruptions, CORRUPTIONS)
    check_int("broken_percent", broken_percent, 0, 100)
    check_int("animated_percent", animated_percent, 0, 100)
    check_int("max_frames", max_frames, 2, 16)

    @st.composite
    def build(draw: Draw) -> ImageRecipe:
        w, h = draw(sizes)
        fmt = draw(st.sampled_from(formats))
        mode = draw(st.sampled_from(modes))
        frames = 1
        if can_animate(mode, fmt) and chance(draw, animated_percent):
            frames = draw(st.integers(2, max_frames))
            while w * h * 4 > max_pixels and max(w, h) > 1:
                w, h = max(1, w // 2), max(1, h // 2)
        return ImageRecipe(
            width_px=w, height_px=h, mode=mode, format=fmt,
            content=draw(st.sampled_from(contents)), seed=draw(st.integers(0, SEED_MAX)),
            progressive=fmt in ("JPEG", "GIF") and draw(st.booleans()),
            corruption=draw(st.sampled_from(corruptions)) if chance(draw, broken_percent) else None,
            frames=frames)

    return build()


def images(**kwargs: object) -> st.SearchStrategy[Media]:
    """Rendered images (arguments as `image_recipes`); shrinking acts on the recipe."""
    return image_recipes(**kwargs).map(render)  # type: ignore[arg-type]


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
    for bound, name in ((PROCESSOR_MIN_PIXELS, "min"), (PROCESSOR_MAX_PIXELS, "max")):
        if abs(w * h - bound) <= max(w, h):
            tags.append(f"image:bound:{name}")
    if recipe.progressive:
        tags.append("image:progressive")
    if recipe.frames > 1:
        tags.append("image:animated")
    if recipe.corruption is not None:
        tags.append(f"image:broken:{recipe.corruption}")
        if recipe.corruption == "bad_base64":
            tags.append(f"image:encoding:{recipe.encoding}")
    return tuple(tags)
