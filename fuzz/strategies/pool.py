"""Images shared by the requests of one scenario: a new image (a rendered recipe or a
seed file), a byte-identical repeat of one already sent (media and prefix caches),
or a byte-unique variant of one (same recipe or file, new seed or nonce: defeats
caches keyed by content).

Rendering is memoised process-wide (`RENDER_CACHE`): `render` is pure, and
Hypothesis re-draws the same recipes when it mutates earlier examples."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Union

from fuzz.media import ImageRecipe, render
from fuzz.model import Media
from fuzz.strategies.dice import Dice
from fuzz.strategies.exclusion import NOTHING, Exclusion
from fuzz.strategies.images import SEED_MAX, RecipeSpec, draw_recipe, image_tags
from fuzz.strategies.seed_images import SeedFile, SeedImage, seed_media

ImageKey = Union[ImageRecipe, SeedImage]


RENDER_CACHE_BYTES = 32 * 2**20


class RenderCache:
    """Process-wide memo of rendered images, bounded by total bytes: re-encoding a
    megapixel TIFF each time Hypothesis re-draws its recipe dominated generation.

    Small on purpose: re-draws come soon after the first draw (within a round), and a
    campaign's rounds use fresh seeds, so across rounds about 3% of draws hit; a big
    memo is mostly images never drawn again, held for the whole campaign (at 128 MiB
    it was most of an overnight campaign's memory growth, see bench/campaign_memory.py)."""

    def __init__(self, max_bytes: int = RENDER_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[ImageKey, tuple[Media, str]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of image data held (at most `max_bytes`)."""
        return self._bytes

    def get(self, key: ImageKey, make: Callable[[], Media] | None = None) -> tuple[Media, str]:
        """(media, sha256) for `key`, made by `make` (default: `render(key)`) once."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        media = make() if make is not None else render(key)  # type: ignore[arg-type]
        hit = (media, media.sha256)
        if len(media.data) <= self.max_bytes // 4:
            self._items[key] = hit
            self._bytes += len(media.data)
            while self._bytes > self.max_bytes:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= len(old.data)
        return hit


RENDER_CACHE = RenderCache()


@dataclass(frozen=True)
class ImageSources:
    """Where new images come from and how often an earlier one comes back."""

    recipes: RecipeSpec | None  # None: the exclusion leaves no recipe
    seeds: tuple[SeedFile, ...] = ()  # the seed files allowed here (fitting, not excluded)
    seed_percent: int = 0
    reuse_percent: int = 30
    variant_percent: int = 50  # of reuses: a variant rather than a byte-identical repeat
    stamp_percent: int = 50  # of new seed images: stamped with a nonce
    exclusion: Exclusion = NOTHING

    @property
    def usable(self) -> bool:
        return self.recipes is not None or bool(self.seeds)


def image_sources(recipes: RecipeSpec | None, seeds: tuple[SeedFile, ...], *, seed_percent: int,
                  reuse_percent: int, max_pixels: int, exclusion: Exclusion) -> ImageSources:
    """Sources narrowed by `exclusion`: a variant when repeats are excluded, no reuse
    when both are, only seed files that fit `max_pixels` and carry no excluded tag."""
    ex = exclusion
    seeds = ex.keep((f for f in seeds if f.pixels <= max_pixels), lambda f: f.tags)
    stamp = ex.percent(50, "image:seed:stamped")
    variant = ex.percent(50, "image:variant")
    if not ex.allows("image:repeat"):
        variant = 100 if variant else 0
        reuse_percent = reuse_percent if variant else 0
    seed_percent = ex.percent(seed_percent, "image:seed") if seeds else 0
    return ImageSources(recipes=recipes, seeds=seeds if seed_percent else (),
                        seed_percent=100 if recipes is None and seed_percent else seed_percent,
                        reuse_percent=reuse_percent, variant_percent=variant,
                        stamp_percent=stamp, exclusion=ex)


def key_tags(key: ImageKey, seeds: dict[str, SeedFile]) -> tuple[str, ...]:
    if isinstance(key, ImageRecipe):
        return image_tags(key)
    return seeds[key.name].tags + (("image:seed:stamped",) if key.nonce else ())


def _varied(key: ImageKey, n: int) -> ImageKey:
    """The same recipe or seed file under another seed or nonce."""
    if isinstance(key, ImageRecipe):
        return replace(key, seed=n % 2**64)
    return replace(key, nonce=n % 2**64 or 1)


@dataclass
class MediaPool:
    """Images drawn so far in one scenario (local to a single draw, never global);
    renders each key once and keeps one Media per sha256."""

    rendered: dict[ImageKey, Media] = field(default_factory=dict)
    shas: dict[ImageKey, str] = field(default_factory=dict)  # Media.sha256 is not cached
    by_sha: dict[str, ImageKey] = field(default_factory=dict)
    seeds: dict[str, SeedFile] = field(default_factory=dict)  # by name, as drawn

    def image(self, dice: Dice, sources: ImageSources
              ) -> tuple[Media, str, tuple[str, ...]] | None:
        """Draw a new image, a byte-identical repeat, or a variant; returns the media,
        its sha256 and its tags, or None when no allowed image came out."""
        tags: tuple[str, ...] = ()
        if self.rendered and dice.flip(sources.reuse_percent):
            key = dice.pick(list(self.rendered))
            if dice.flip(sources.variant_percent):
                key = _varied(key, dice.number(0, SEED_MAX))
                tags = ("image:variant",)
        elif sources.seeds and dice.flip(sources.seed_percent):
            file = dice.pick(sources.seeds)
            stamp = dice.flip(sources.stamp_percent)
            key = SeedImage(file.name, dice.number(1, SEED_MAX) if stamp else 0)
            self.seeds[file.name] = file
        else:
            recipe = None if sources.recipes is None else draw_recipe(dice, sources.recipes)
            if recipe is None:
                return None
            key = recipe
        key, seen = self._render(key)
        if seen:
            tags = ("image:repeat",)
        tags = key_tags(key, self.seeds) + tags
        if sources.exclusion and not sources.exclusion.allows_all(tags):
            return None
        return self.rendered[key], self.shas[key], tags

    def _render(self, key: ImageKey) -> tuple[ImageKey, bool]:
        """(key used, whether its bytes were already in the pool). Bytes equal to
        another key's with a different data URL (a wrong MIME, a bad encoding) bump the
        seed: one sha, one Media."""
        previous = key
        for _ in range(3):
            if key in self.rendered:
                return key, True
            make = None
            if isinstance(key, SeedImage):
                make = functools.partial(seed_media, key, self.seeds[key.name])
            media, sha = RENDER_CACHE.get(key, make)
            other = self.by_sha.get(sha)
            if other is None or (self.rendered[other].mime, self.rendered[other].encoding) == (
                    media.mime, media.encoding):
                self.rendered[key], self.shas[key] = media, sha
                self.by_sha.setdefault(sha, key)
                return key, other is not None
            previous = other
            key = _varied(key, (key.seed if isinstance(key, ImageRecipe) else key.nonce) + 1)
        return previous, True  # bytes independent of the seed (empty, fixed not_image): reuse
