"""Deterministic image rendering from small, shrinkable recipes.

Hypothesis draws an `ImageRecipe` (a handful of scalars) and `render()` turns it into
bytes. Shrinking therefore acts on sizes, modes and seeds rather than on megabytes of
pixels, and a stored recipe re-renders to the same bytes (for a given Pillow /
libjpeg / libwebp / zlib build), so a minimizer can re-render an image smaller.

Mode/format mapping. Not every Pillow mode can be written in every format; the
requested mode is converted to the nearest mode the format can hold (`saved_mode`):

    requested   PNG    JPEG   WEBP   GIF    BMP
    RGB         RGB    RGB    RGB    P      RGB
    RGBA        RGBA   RGB    RGBA   P      RGBA
    L           L      L      RGB    L      L
    P           P      RGB    RGB    P      P
    1           1      L      RGB    1      1
    CMYK        RGB    CMYK   RGB    P      RGB

Pillow (and so the server) reads three of these back in another mode: a 32-bit BMP
opens as RGB, an L GIF as P and a 1-bit GIF as L.

Conversions to P use Pillow's fixed web palette with Floyd-Steinberg dithering (fast
and deterministic, unlike adaptive quantization). `progressive` means a progressive
scan for JPEG and interlacing for GIF; other formats ignore it.

Corruptions: "truncated" keeps the first half of the valid file, "empty" is zero
bytes, "not_image" is text/HTML/JSON/garbage claiming to be the image format, and
"wrong_mime" is a valid file whose data URL claims another type.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from fuzz.model import Media

MODES: tuple[str, ...] = ("RGB", "RGBA", "L", "P", "1", "CMYK")
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
CONTENTS: tuple[str, ...] = ("flat", "gradient", "stripes", "noise")  # simplest first
CORRUPTIONS: tuple[str, ...] = ("truncated", "empty", "not_image", "wrong_mime")

MIME: Mapping[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
                           "GIF": "image/gif", "BMP": "image/bmp"}
_WRONG_MIMES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp", "image/gif",
                                 "image/bmp", "application/octet-stream", "text/plain")
_MAX_SIDE: Mapping[str, int] = {"PNG": 65535, "JPEG": 65500, "WEBP": 16383,
                                "GIF": 65535, "BMP": 65535}
_NATIVE: Mapping[str, frozenset[str]] = {
    "PNG": frozenset({"RGB", "RGBA", "L", "P", "1"}),
    "JPEG": frozenset({"RGB", "L", "CMYK"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "GIF": frozenset({"P", "L", "1"}),
    "BMP": frozenset({"RGB", "RGBA", "L", "P", "1"}),
}
_FALLBACK: Mapping[str, Mapping[str, str]] = {
    "PNG": {"CMYK": "RGB"},
    "JPEG": {"RGBA": "RGB", "P": "RGB", "1": "L"},
    "WEBP": {"L": "RGB", "P": "RGB", "1": "RGB", "CMYK": "RGB"},
    "GIF": {"RGB": "P", "RGBA": "P", "CMYK": "P"},
    "BMP": {"CMYK": "RGB"},
}
_SAVE_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "PNG": {}, "JPEG": {"quality": 85}, "WEBP": {"quality": 80, "method": 0},
    "GIF": {}, "BMP": {},
}


@dataclass(frozen=True)
class ImageRecipe:
    """Everything needed to re-render one image, validated on construction."""

    width_px: int
    height_px: int
    mode: str
    format: str
    content: str
    seed: int
    progressive: bool = False
    corruption: str | None = None

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} not in {MODES}")
        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r} not in {FORMATS}")
        if self.content not in CONTENTS:
            raise ValueError(f"content {self.content!r} not in {CONTENTS}")
        if self.corruption is not None and self.corruption not in CORRUPTIONS:
            raise ValueError(f"corruption {self.corruption!r} not in {CORRUPTIONS}")
        limit = _MAX_SIDE[self.format]
        if not (1 <= self.width_px <= limit and 1 <= self.height_px <= limit):
            raise ValueError(f"{self.width_px}x{self.height_px} outside 1..{limit} for {self.format}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed {self.seed} outside 0..2**64-1")

    @property
    def pixels(self) -> int:
        return self.width_px * self.height_px

    @property
    def mime(self) -> str:
        """The MIME type the data URL will claim (wrong on purpose for "wrong_mime")."""
        if self.corruption == "wrong_mime":
            others = [m for m in _WRONG_MIMES if m != MIME[self.format]]
            return others[self.seed % len(others)]
        return MIME[self.format]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "image", **asdict(self)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ImageRecipe:
        if d.get("kind", "image") != "image":
            raise ValueError(f"not an image recipe: kind={d.get('kind')!r}")
        return cls(width_px=int(d["width_px"]), height_px=int(d["height_px"]),
                   mode=str(d["mode"]), format=str(d["format"]), content=str(d["content"]),
                   seed=int(d["seed"]), progressive=bool(d.get("progressive", False)),
                   corruption=d.get("corruption"))


def saved_mode(mode: str, format: str) -> str:
    """The Pillow mode actually written for a requested mode in a format."""
    if mode in _NATIVE[format]:
        return mode
    return _FALLBACK[format][mode]


def render(recipe: ImageRecipe) -> Media:
    """Render a recipe to a `Media`; the same recipe always gives the same bytes."""
    if recipe.corruption == "empty":
        data = b""
    elif recipe.corruption == "not_image":
        data = _not_image(recipe.seed)
    else:
        data = encode(recipe)
        if recipe.corruption == "truncated":
            data = data[: len(data) // 2]
    return Media(data=data, mime=recipe.mime, recipe=recipe.to_json())


def encode(recipe: ImageRecipe) -> bytes:
    """The valid encoded file for a recipe, ignoring its corruption."""
    image = _image(recipe)
    options = dict(_SAVE_OPTIONS[recipe.format])
    if recipe.format == "JPEG":
        options["progressive"] = recipe.progressive
    elif recipe.format == "GIF":
        options["interlace"] = recipe.progressive
    buf = io.BytesIO()
    image.save(buf, recipe.format, **options)
    return buf.getvalue()


def _image(recipe: ImageRecipe) -> Image.Image:
    rgba = Image.fromarray(_rgba_pixels(recipe), "RGBA")
    target = saved_mode(recipe.mode, recipe.format)
    if target == "RGBA":
        return rgba
    rgb = rgba.convert("RGB")
    if target == "RGB":
        return rgb
    if target == "1":
        return rgb.convert("L").convert("1")
    return rgb.convert(target)  # L, P (web palette, dithered), CMYK


def _rgba_pixels(recipe: ImageRecipe) -> np.ndarray:
    """An HxWx4 uint8 array; alpha is drawn like the colour channels. Gradients and
    stripes are a per-coordinate colour table indexed by x, y or x+y (fast)."""
    h, w = recipe.height_px, recipe.width_px
    rng = np.random.default_rng(recipe.seed)
    c0 = rng.integers(0, 256, 4).astype(np.float32)
    c1 = rng.integers(0, 256, 4).astype(np.float32)
    if recipe.content == "noise":
        return np.frombuffer(rng.bytes(h * w * 4), dtype=np.uint8).reshape(h, w, 4)
    if recipe.content == "flat":
        return np.broadcast_to(c0.astype(np.uint8), (h, w, 4)).copy()
    direction = int(rng.integers(0, 3))  # 0 horizontal, 1 vertical, 2 diagonal
    n = (w, h, w + h - 1)[direction]
    coord = np.arange(n)
    if recipe.content == "gradient":
        t = (coord / max(n - 1, 1)).astype(np.float32)[:, None]
        table = np.clip(np.rint(c0 + (c1 - c0) * t), 0, 255).astype(np.uint8)
    else:
        period = int(rng.integers(1, 33))
        table = np.where(((coord // period) % 2 == 0)[:, None], c0, c1).astype(np.uint8)
    if direction == 0:
        return np.broadcast_to(table[None, :, :], (h, w, 4)).copy()
    if direction == 1:
        return np.broadcast_to(table[:, None, :], (h, w, 4)).copy()
    return table[np.add.outer(np.arange(h), np.arange(w))]


def _not_image(seed: int) -> bytes:
    """Plausible non-image payloads: what a broken upstream might hand over."""
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:
        return (f"vlfuzz: this is not an image (seed {seed})\n" * 8).encode()
    if kind == 1:
        return b"<!DOCTYPE html><html><head><title>404 Not Found</title></head>" \
               b"<body><h1>Not Found</h1></body></html>\n"
    if kind == 2:
        return b'{"error": {"message": "image not available", "code": 404}}'
    return b"VLFZ" + rng.bytes(64 + int(rng.integers(0, 960)))
