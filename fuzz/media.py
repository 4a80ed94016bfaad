"""Deterministic image rendering from small, shrinkable recipes.

Hypothesis draws an `ImageRecipe` (a handful of scalars) and `render()` turns it into
bytes. Shrinking therefore acts on sizes, modes and seeds rather than on megabytes of
pixels, and a stored recipe re-renders to the same bytes (for a given Pillow /
libjpeg / libwebp / libtiff / zlib build), so a minimizer can re-render it smaller.

Mode/format mapping. Not every Pillow mode can be written in every format; the
requested mode is converted to the nearest mode the format can hold (`saved_mode`;
"PT" is P with a transparent palette index):

    requested  PNG   JPEG  WEBP  GIF   BMP   TIFF
    RGB        RGB   RGB   RGB   P     RGB   RGB
    RGBA       RGBA  RGB   RGBA  P     RGBA  RGBA
    L          L     L     RGB   L     L     L
    P          P     RGB   RGB   P     P     P
    1          1     L     RGB   1     1     1
    CMYK       RGB   CMYK  RGB   P     RGB   CMYK
    LA         LA    L     RGBA  PT    RGBA  LA
    PT         PT    RGB   RGBA  PT    P     RGBA
    I;16       I;16  L     RGB   L     L     I;16
    F          I;16  L     RGB   L     L     F

Pillow (and so the server) reads some back in another mode: a 32-bit BMP opens as
RGB, an L GIF as P and a 1-bit GIF as L (see `read_mode`).

Conversions to P use Pillow's fixed web palette with Floyd-Steinberg dithering (fast
and deterministic). `progressive` means a progressive scan for JPEG and interlacing
for GIF. `frames` > 1 writes an animation (GIF, PNG as APNG, WEBP).

Corruptions: "truncated" keeps the first half of the valid file, "empty" is zero
bytes, "not_image" is text/HTML/JSON/garbage claiming to be the image format,
"wrong_mime" is a valid file whose data URL claims another type and "bad_base64" a
valid file whose data URL payload is mis-encoded (`Media.encoding`).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from fuzz.model import ENCODINGS, Media

MODES: tuple[str, ...] = ("RGB", "RGBA", "L", "P", "1", "CMYK", "LA", "PT", "I;16", "F")
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
ANIMATED_FORMATS: frozenset[str] = frozenset({"PNG", "WEBP", "GIF"})
MAX_FRAMES = 16
CONTENTS: tuple[str, ...] = ("flat", "gradient", "stripes", "noise")  # simplest first
CORRUPTIONS: tuple[str, ...] = ("truncated", "empty", "not_image", "wrong_mime", "bad_base64")
BAD_ENCODINGS: tuple[str, ...] = tuple(e for e in ENCODINGS if e != "base64")

MIME: Mapping[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
                           "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}
_WRONG_MIMES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp", "image/gif",
                                 "image/bmp", "image/tiff", "application/octet-stream",
                                 "text/plain")
_MAX_SIDE: Mapping[str, int] = {"PNG": 65535, "JPEG": 65500, "WEBP": 16383,
                                "GIF": 65535, "BMP": 65535, "TIFF": 65535}
_NATIVE: Mapping[str, frozenset[str]] = {
    "PNG": frozenset({"RGB", "RGBA", "L", "P", "1", "LA", "PT", "I;16"}),
    "JPEG": frozenset({"RGB", "L", "CMYK"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "GIF": frozenset({"P", "L", "1", "PT"}),
    "BMP": frozenset({"RGB", "RGBA", "L", "P", "1"}),
    "TIFF": frozenset({"RGB", "RGBA", "L", "P", "1", "CMYK", "LA", "I;16", "F"}),
}
_FALLBACK: Mapping[str, Mapping[str, str]] = {
    "PNG": {"CMYK": "RGB", "F": "I;16"},
    "JPEG": {"RGBA": "RGB", "P": "RGB", "1": "L", "LA": "L", "PT": "RGB", "I;16": "L", "F": "L"},
    "WEBP": {"L": "RGB", "P": "RGB", "1": "RGB", "CMYK": "RGB", "LA": "RGBA", "PT": "RGBA",
             "I;16": "RGB", "F": "RGB"},
    "GIF": {"RGB": "P", "RGBA": "P", "CMYK": "P", "LA": "PT", "I;16": "L", "F": "L"},
    "BMP": {"CMYK": "RGB", "LA": "RGBA", "PT": "P", "I;16": "L", "F": "L"},
    "TIFF": {"PT": "RGBA"},
}
_READS_AS: Mapping[tuple[str, str], str] = {("BMP", "RGBA"): "RGB", ("GIF", "L"): "P",
                                            ("GIF", "1"): "L", ("GIF", "PT"): "P",
                                            ("PNG", "PT"): "P"}
_SAVE_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "PNG": {}, "JPEG": {"quality": 85}, "WEBP": {"quality": 80, "method": 0},
    "GIF": {}, "BMP": {}, "TIFF": {"compression": "tiff_deflate"},
}
_TRANSPARENT_INDEX = 255  # outside the 226-colour web palette, so only set on purpose


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
    frames: int = 1

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px", "seed", "frames"):
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
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames {self.frames} outside 1..{MAX_FRAMES}")
        if self.frames > 1 and self.format not in ANIMATED_FORMATS:
            raise ValueError(f"{self.format} cannot hold an animation ({self.frames} frames)")
        if self.frames > 1 and not can_animate(self.mode, self.format):
            raise ValueError(f"Pillow cannot animate {self.mode} as {self.format}")

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

    @property
    def encoding(self) -> str:
        """The data URL payload encoding (mis-encoded on purpose for "bad_base64")."""
        if self.corruption == "bad_base64":
            return BAD_ENCODINGS[self.seed % len(BAD_ENCODINGS)]
        return "base64"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "image", **asdict(self)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ImageRecipe:
        if d.get("kind", "image") != "image":
            raise ValueError(f"not an image recipe: kind={d.get('kind')!r}")
        return cls(width_px=int(d["width_px"]), height_px=int(d["height_px"]),
                   mode=str(d["mode"]), format=str(d["format"]), content=str(d["content"]),
                   seed=int(d["seed"]), progressive=bool(d.get("progressive", False)),
                   corruption=d.get("corruption"), frames=int(d.get("frames", 1)))


def saved_mode(mode: str, format: str) -> str:
    """The mode actually written for a requested mode in a format ("PT": P + tRNS)."""
    if mode in _NATIVE[format]:
        return mode
    return _FALLBACK[format][mode]


def can_animate(mode: str, format: str) -> bool:
    """Whether `frames` > 1 is possible (Pillow writes no 16-bit APNG)."""
    return format in ANIMATED_FORMATS and saved_mode(mode, format) != "I;16"


def read_mode(mode: str, format: str) -> str:
    """The Pillow mode a decoder reports for the file written for `mode`."""
    written = saved_mode(mode, format)
    return _READS_AS.get((format, written), written)


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
    return Media(data=data, mime=recipe.mime, recipe=recipe.to_json(), encoding=recipe.encoding)


def encode(recipe: ImageRecipe) -> bytes:
    """The valid encoded file for a recipe, ignoring its corruption."""
    target = saved_mode(recipe.mode, recipe.format)
    frames = _distinct([_image(recipe, recipe.seed + i, target) for i in range(recipe.frames)])
    options = dict(_SAVE_OPTIONS[recipe.format])
    if recipe.format == "JPEG":
        options["progressive"] = recipe.progressive
    elif recipe.format == "GIF":
        options["interlace"] = recipe.progressive
    if target == "PT" and recipe.format in ("PNG", "GIF"):
        options["transparency"] = _TRANSPARENT_INDEX
    if recipe.frames > 1:
        options.update(save_all=True, append_images=frames[1:], duration=80, loop=0)
        if recipe.format == "GIF":
            options["disposal"] = 2
    buf = io.BytesIO()
    frames[0].save(buf, recipe.format, **options)
    return buf.getvalue()


def _image(recipe: ImageRecipe, seed: int, target: str) -> Image.Image:
    pixels = _rgba_pixels(recipe.width_px, recipe.height_px, recipe.content, seed % 2**64)
    rgba = Image.fromarray(pixels)
    if target == "RGBA":
        return rgba
    if target == "LA":
        return rgba.convert("LA")
    rgb = rgba.convert("RGB")
    if target in ("I;16", "F"):
        gray = np.asarray(rgb.convert("L"), dtype=np.uint16)
        if target == "I;16":  # full 16-bit range, low byte from alpha so it is not just L*257
            return Image.fromarray((gray << 8) | pixels[:, :, 3])
        return Image.fromarray(gray.astype(np.float32) / 255.0 * 2.0 - 0.5)  # beyond [0, 1]
    if target == "PT":
        return _transparent_palette(rgb, pixels[:, :, 3])
    if target == "1":
        return rgb.convert("L").convert("1")
    return rgb if target == "RGB" else rgb.convert(target)  # L, P (web palette), CMYK


def _distinct(frames: list[Image.Image]) -> list[Image.Image]:
    """Frames that each differ from the one before: Pillow's GIF and APNG writers fold
    a frame that looks like its predecessor into it (a mostly transparent or flat
    frame often does), and the file would hold fewer frames than the recipe says.
    A repeat gets its top-left pixel changed."""
    for i in range(1, len(frames)):
        if frames[i].convert("RGBA").tobytes() != frames[i - 1].convert("RGBA").tobytes():
            continue
        frame = frames[i] = frames[i].copy()
        value = frame.getpixel((0, 0))
        if frame.mode == "P":
            frame.putpixel((0, 0), 0 if value == _TRANSPARENT_INDEX else (value + 1) % 216)
        elif isinstance(value, tuple):
            frame.putpixel((0, 0), ((value[0] + 128) % 256, *value[1:-1], 255))
        elif frame.mode == "1":
            frame.putpixel((0, 0), 0 if value else 255)
        else:
            frame.putpixel((0, 0), value + 128 if value < 128 else value - 128)
    return frames


def _transparent_palette(rgb: Image.Image, alpha: np.ndarray) -> Image.Image:
    """Web-palette P image whose mostly-transparent pixels use the transparent index."""
    p = rgb.convert("P")
    index = np.asarray(p).copy()
    index[alpha < 128] = _TRANSPARENT_INDEX
    out = Image.frombytes("P", p.size, index.tobytes())
    palette = p.getpalette() or []
    out.putpalette(palette + [0] * (768 - len(palette)))
    out.info["transparency"] = _TRANSPARENT_INDEX
    return out


def _rgba_pixels(w: int, h: int, content: str, seed: int) -> np.ndarray:
    """An HxWx4 uint8 array; alpha is drawn like the colour channels. Gradients and
    stripes are a per-coordinate colour table indexed by x, y or x+y (fast)."""
    rng = np.random.default_rng(seed)
    c0 = rng.integers(0, 256, 4).astype(np.float32)
    c1 = rng.integers(0, 256, 4).astype(np.float32)
    if content == "noise":
        return np.frombuffer(rng.bytes(h * w * 4), dtype=np.uint8).reshape(h, w, 4)
    if content == "flat":
        return np.broadcast_to(c0.astype(np.uint8), (h, w, 4)).copy()
    direction = int(rng.integers(0, 3))  # 0 horizontal, 1 vertical, 2 diagonal
    n = (w, h, w + h - 1)[direction]
    coord = np.arange(n)
    if content == "gradient":
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


def stamped(data: bytes, nonce: int) -> bytes:
    """`data` made byte-unique by `nonce` written into a comment that decoders skip
    (PNG tEXt after IHDR, JPEG COM after the APPn segments, GIF comment extension after
    the colour table): the same pixels under a new sha256, to get past media caches
    keyed by content. Nonce 0 returns `data` unchanged; PNG, JPEG and GIF only."""
    if nonce == 0:
        return data
    note = f"vlfuzz {nonce}".encode("ascii")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if data[12:16] != b"IHDR" or len(data) < 33:
            raise ValueError("a PNG without its IHDR chunk cannot be stamped")
        body = b"tEXt" + b"Comment\x00" + note
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]  # signature (8) + IHDR (25)
    if data.startswith(b"\xff\xd8"):
        at = 2
        while data[at] == 0xFF and 0xE0 <= data[at + 1] <= 0xEF:  # APP0..APP15 first
            at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
        return data[:at] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + data[at:]
    if data[:6] in (b"GIF87a", b"GIF89a"):
        at = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        return b"GIF89a" + data[6:at] + b"\x21\xfe" + bytes([len(note)]) + note + b"\x00" + data[at:]
    raise ValueError("stamped() handles PNG, JPEG and GIF only")


def freshened(media: Mapping[str, Media], nonce: int) -> dict[str, Media]:
    """`media` under the same keys, each made byte-new by `nonce` where that is safe.

    vLLM caches processed images by a hash of their bytes, so a server that has seen an
    image remembers it: a failure that needs the server's first sight of an image (a
    rejected request leaving the multimodal cache out of step for the next one) passes
    on every later replay. Replays send media freshened by their own nonce, so each
    meets the server as the original run did. Deliberately broken media (a corruption
    recipe, a bad encoding) and formats `stamped` does not handle go as recorded."""
    out: dict[str, Media] = {}
    for key, item in media.items():
        out[key] = item
        if nonce == 0 or item.encoding != "base64" or (item.recipe or {}).get("corruption"):
            continue
        try:
            out[key] = Media(data=stamped(item.data, nonce), mime=item.mime,
                             recipe=item.recipe, encoding=item.encoding)
        except (ValueError, IndexError, struct.error):
            pass  # not a format stamped() knows, or too damaged to walk: send as is
    return out


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
