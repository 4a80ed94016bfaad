"""Image recipes: sizes that matter to Qwen3-VL's 32-pixel grid and to its
processor's min/max pixel bounds, every mode/format pair, a few animations and a
small share of broken files. Drawn as `ImageRecipe`s so Hypothesis
shrinks parameters, rendered with `fuzz.media.render`.

A recipe's size is one or two Hypothesis choices; which kind of size, which
format x mode x content, its pixel seed and its yes/no decisions (progressive?
animated? broken?) come from its `Dice`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import hypothesis.strategies as st
from hypothesis import reject

from fuzz.media import (BAD_ENCODINGS, CONTENTS, CORRUPTIONS, FORMATS, MODES, ImageRecipe,
                        can_animate, render)
from fuzz.model import Media
from fuzz.strategies._common import Draw, StrategyArgumentError, check_int, check_order, ints
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, REDRAWS, Exclusion

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


_GRID_OFFSETS: tuple[int, ...] = (0, -1, 1)


def _fits(size: tuple[int, int], max_pixels: int, max_side: int) -> bool:
    w, h = size
    return w * h <= max_pixels and w <= max_side and h <= max_side


@dataclass(frozen=True)
class SizeSpec:
    """The size kinds to draw from: fixed tables, grid steps, free sizes and sizes
    around the processor's pixel bounds (each kind equally likely: a `Dice` pick)."""

    kinds: tuple[tuple[str, Any], ...]
    max_pixels: int
    max_side: int


def size_spec(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
              min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
              max_pixels_bound: int = PROCESSOR_MAX_PIXELS) -> SizeSpec:
    check_int("max_pixels", max_pixels, 1)
    check_int("max_side", max_side, 1, MAX_SIDE)
    check_int("min_pixels_bound", min_pixels_bound, 1)
    check_int("max_pixels_bound", max_pixels_bound, 1)
    check_order("min_pixels_bound", min_pixels_bound, "max_pixels_bound", max_pixels_bound)
    kinds: list[tuple[str, Any]] = []
    for table in (TINY_SIZES, TYPICAL_SIZES, EXTREME_SIZES):
        fitting = [s for s in table if _fits(s, max_pixels, max_side)]
        if fitting:
            kinds.append(("table", st.sampled_from(fitting)))
    kinds += [("grid", None), ("free", None)]
    bounds = tuple(b for b in (min_pixels_bound, max_pixels_bound) if b <= max_pixels)
    if bounds:
        kinds.append(("bound", st.sampled_from(list(itertools.product(
            bounds, _BOUND_ASPECTS, _GRID_OFFSETS)))))
    return SizeSpec(tuple(kinds), max_pixels, max_side)


def draw_size(dice: Dice, spec: SizeSpec) -> tuple[int, int]:
    """(width, height) with width*height <= max_pixels: a table entry; sides at
    k*32 - 1, k*32 or k*32 + 1 (where patch/merge rounding changes); any size with
    sides up to 2048 (extreme aspects stay the tables' job); or w*h just under, at or
    just over a processor pixel bound, in a few aspects (where resizing starts)."""
    kind, table = dice.pick(spec.kinds)
    max_pixels, max_side = spec.max_pixels, spec.max_side
    if kind == "table":
        return dice.draw(table)
    if kind == "grid":
        w = _grid_side(dice.draw, min(max_side, max_pixels))
        return w, _grid_side(dice.draw, min(max_side, max(1, max_pixels // w)))
    if kind == "free":
        w = dice.draw(ints(1, min(max_side, max_pixels, 2048)))
        return w, dice.draw(ints(1, min(max_side, max(1, max_pixels // w), 2048)))
    bound, (aw, ah), offset = dice.draw(table)
    w = max(1, round((bound * aw / ah) ** 0.5))
    h = max(1, bound // w) + offset
    w, h = min(max(w, 1), max_side), min(max(h, 1), max_side)
    while w * h > max_pixels and h > 1:
        h -= 1
    return w, h


def _grid_side(draw: Draw, limit: int) -> int:
    """One choice for k and the offset together (k-major, so it shrinks toward 32)."""
    steps = max(1, (limit + 1) // GRID)
    j = draw(ints(0, 3 * steps - 1))
    return max(1, min(limit, GRID * (j // 3 + 1) + _GRID_OFFSETS[j % 3]))


def image_sizes(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
                max_pixels_bound: int = PROCESSOR_MAX_PIXELS) -> st.SearchStrategy[tuple[int, int]]:
    """(width, height) pairs with width*height <= max_pixels, from tiny to extreme,
    including sizes around the processor's `min/max_pixels_bound` (see `draw_size`)."""
    spec = size_spec(max_pixels=max_pixels, max_side=max_side,
                     min_pixels_bound=min_pixels_bound, max_pixels_bound=max_pixels_bound)

    @st.composite
    def build(draw: Draw) -> tuple[int, int]:
        return draw_size(Dice.rolled(draw), spec)

    return build()


def _subset(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(values)
    bad = [v for v in chosen if v not in allowed]
    if not chosen or bad:
        raise StrategyArgumentError(f"{name} must be a non-empty subset of {tuple(allowed)}")
    return chosen


@dataclass(frozen=True)
class RecipeSpec:
    """Validated `image_recipes` arguments, narrowed by the exclusion."""

    sizes: SizeSpec
    looks: tuple[tuple[str, str, str], ...]  # (format, mode, content), a Dice pick
    corruptions: st.SearchStrategy[str] | None
    frames: st.SearchStrategy[int]
    broken_percent: int
    animated_percent: int
    progressive_percent: int
    exclusion: Exclusion


def recipe_spec(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
                contents: Sequence[str] = CONTENTS, corruptions: Sequence[str] = CORRUPTIONS,
                broken_percent: int = 8, animated_percent: int = 3, max_frames: int = 4,
                min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
                max_pixels_bound: int = PROCESSOR_MAX_PIXELS,
                exclusion: Exclusion = NOTHING) -> RecipeSpec:
    sizes = size_spec(max_pixels=max_pixels, max_side=max_side,
                      min_pixels_bound=min_pixels_bound, max_pixels_bound=max_pixels_bound)
    modes = _subset("modes", modes, MODES)
    formats = _subset("formats", formats, FORMATS)
    contents = _subset("contents", contents, CONTENTS)
    corruptions = _subset("corruptions", corruptions, CORRUPTIONS)
    check_int("broken_percent", broken_percent, 0, 100)
    check_int("animated_percent", animated_percent, 0, 100)
    check_int("max_frames", max_frames, 2, 16)
    ex = exclusion
    looks = ex.require(ex.keep(itertools.product(formats, modes, contents), lambda look: (
        f"image:format:{look[0].lower()}", f"image:mode:{look[1].lower()}",
        f"image:content:{look[2]}")), "image format, mode and content")
    broken = ex.keep(corruptions, lambda c: (f"image:broken:{c}",))
    return RecipeSpec(
        sizes=sizes, looks=looks,
        corruptions=st.sampled_from(broken) if broken else None,
        frames=st.integers(2, max_frames),
        broken_percent=ex.percent(broken_percent, "image:broken") if broken else 0,
        animated_percent=ex.percent(animated_percent, "image:animated"),
        progressive_percent=ex.percent(50, "image:progressive"), exclusion=ex)


def draw_recipe(dice: Dice, spec: RecipeSpec) -> ImageRecipe | None:
    """One recipe (see `image_recipes`); None when REDRAWS attempts all carried an
    excluded tag that follows from the drawn size."""
    for _ in range(REDRAWS if spec.exclusion else 1):
        recipe = _recipe(dice, spec)
        if spec.exclusion and recipe.corruption == "bad_base64":
            recipe = _allowed_encoding(recipe, spec.exclusion)
        if spec.exclusion.allows_all(image_tags(recipe)):
            return recipe
    return None


def _recipe(dice: Dice, spec: RecipeSpec) -> ImageRecipe:
    w, h = draw_size(dice, spec.sizes)
    fmt, mode, content = dice.pick(spec.looks)
    frames = 1
    if can_animate(mode, fmt) and dice.flip(spec.animated_percent):
        frames = dice.draw(spec.frames)
        while w * h * 4 > spec.sizes.max_pixels and max(w, h) > 1:
            w, h = max(1, w // 2), max(1, h // 2)
    corruption = None
    if spec.corruptions is not None and dice.flip(spec.broken_percent):
        corruption = dice.draw(spec.corruptions)
    return ImageRecipe(
        width_px=w, height_px=h, mode=mode, format=fmt, content=content,
        seed=dice.number(0, SEED_MAX),
        progressive=fmt in ("JPEG", "GIF") and dice.flip(spec.progressive_percent),
        corruption=corruption, frames=frames)


def _allowed_encoding(recipe: ImageRecipe, ex: Exclusion) -> ImageRecipe:
    """The nearest seed whose mis-encoding (chosen by seed) is not excluded."""
    for step in range(len(BAD_ENCODINGS)):
        bumped = replace(recipe, seed=(recipe.seed + step) % (SEED_MAX + 1))
        if ex.allows(f"image:encoding:{bumped.encoding}"):
            return bumped
    return recipe


def image_recipes(*, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                  modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
                  contents: Sequence[str] = CONTENTS, corruptions: Sequence[str] = CORRUPTIONS,
                  broken_percent: int = 8, animated_percent: int = 3, max_frames: int = 4,
                  min_pixels_bound: int = PROCESSOR_MIN_PIXELS,
                  max_pixels_bound: int = PROCESSOR_MAX_PIXELS,
                  exclude_features: Exclusion | frozenset[str] | None = None
                  ) -> st.SearchStrategy[ImageRecipe]:
    """Image recipes; about `broken_percent`% carry one of `corruptions` and about
    `animated_percent`% of those in an animatable format get 2..max_frames frames
    (animations are capped at a quarter of `max_pixels` per frame: cost is per frame).
    Recipes with an excluded `image:` tag are not drawn."""
    spec = recipe_spec(max_pixels=max_pixels, max_side=max_side, modes=modes, formats=formats,
                       contents=contents, corruptions=corruptions, broken_percent=broken_percent,
                       animated_percent=animated_percent, max_frames=max_frames,
                       min_pixels_bound=min_pixels_bound, max_pixels_bound=max_pixels_bound,
                       exclusion=Exclusion.of(exclude_features))

    @st.composite
    def build(draw: Draw) -> ImageRecipe:
        recipe = draw_recipe(Dice.rolled(draw), spec)
        if recipe is None:
            reject()
        return recipe

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


def size_tags(width: int, height: int) -> tuple[str, ...]:
    """The tags that follow from an image's size alone."""
    w, h = width, height
    tags = [size_tag(w, h)]
    if max(w, h) >= 8 * min(w, h):
        tags.append("image:aspect:extreme")
    if w % GRID == 0 and h % GRID == 0:
        tags.append("image:grid:aligned")
    elif all(s >= GRID - 1 and s % GRID in (1, GRID - 1) for s in (w, h)):
        tags.append("image:grid:off_by_one")
    for bound, name in ((PROCESSOR_MIN_PIXELS, "min"), (PROCESSOR_MAX_PIXELS, "max")):
        if abs(w * h - bound) <= max(w, h):
            tags.append(f"image:bound:{name}")
    return tuple(tags)


def image_tags(recipe: ImageRecipe) -> tuple[str, ...]:
    """Stable tags naming what an image exercises."""
    tags = [f"image:format:{recipe.format.lower()}", f"image:mode:{recipe.mode.lower()}",
            f"image:content:{recipe.content}", *size_tags(recipe.width_px, recipe.height_px)]
    if recipe.progressive:
        tags.append("image:progressive")
    if recipe.frames > 1:
        tags.append("image:animated")
    if recipe.corruption is not None:
        tags.append(f"image:broken:{recipe.corruption}")
        if recipe.corruption == "bad_base64":
            tags.append(f"image:encoding:{recipe.encoding}")
    return tuple(tags)
