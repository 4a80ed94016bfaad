"""Write the seed images in corpora/images/: small committed files with properties
the rendered recipes do not give (natural-looking and textual content, a CMYK JPEG
with its Adobe marker, partial palette transparency, a 1x1 tracking-pixel GIF,
strips at 1000:1), which `fuzz.strategies` serves beside its recipes.

    python3 corpora/make_seed_images.py [--out DIR]

Deterministic: no clock, no randomness but seeded NumPy generators, Pillow's
built-in bitmap font, no metadata that varies. Re-running it with the same Pillow
(and so zlib / libjpeg) build rewrites the committed files byte for byte;
tests/unit/test_seed_images.py checks that."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "images"


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _gradient(w: int, h: int, seed: int) -> np.ndarray:
    """An HxWx3 float image: a smooth two-colour field with soft blobs and sensor-like
    noise, the texture of a photo at thumbnail size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / max(w - 1, 1) * 0.7 + y / max(h - 1, 1) * 0.3)[..., None]
    img = a * (1 - t) + b * t
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(w / 10, w / 3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - 0.6 * blob) + rng.uniform(0, 255, 3) * 0.6 * blob
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255)


def photo_jpeg() -> bytes:
    return _save(Image.fromarray(_gradient(192, 128, 1).astype(np.uint8)), "JPEG", quality=80)


def noise_png() -> bytes:
    rng = np.random.default_rng(2)
    return _save(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), "PNG")


def receipt_png() -> bytes:
    """Black text on white, grayscale: something to read (OCR-style prompts)."""
    image = Image.new("L", (240, 96), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default_imagefont()
    lines = ("RECEIPT #1042   2026-03-14", "coffee  2x          3.80", "croissant 1x        2.10",
             "----------------------------", "TOTAL            5.90 EUR", "thank you!")
    for i, line in enumerate(lines):
        draw.text((8, 6 + 14 * i), line, fill=0, font=font)
    return _save(image, "PNG")


def banner_png() -> bytes:
    """Coloured text on a coloured band, RGB: text that is not black on white."""
    image = Image.new("RGB", (320, 40), (24, 60, 140))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default_imagefont()
    draw.rectangle((0, 30, 319, 39), fill=(250, 200, 40))
    draw.text((10, 8), "EXIT -> Platform 9 3/4   (no smoking)", fill=(255, 255, 255), font=font)
    return _save(image, "PNG")


def line_art_png() -> bytes:
    """1-bit line drawing: thin strokes, large flat areas."""
    image = Image.new("1", (128, 128), 1)
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, 119, 119), outline=0)
    draw.ellipse((24, 24, 104, 104), outline=0)
    draw.polygon([(64, 16), (112, 100), (16, 100)], outline=0)
    for i in range(0, 128, 16):
        draw.line((0, i, i, 127), fill=0)
    return _save(image, "PNG")


def pixel_png() -> bytes:
    return _save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")


def pixel_gif() -> bytes:
    """The classic 1x1 transparent tracking pixel."""
    image = Image.new("P", (1, 1), 0)
    image.putpalette([0, 0, 0, 255, 255, 255])
    return _save(image, "GIF", transparency=0)


def strip_wide_png() -> bytes:
    row = np.linspace(0, 255, 2000, dtype=np.float32)
    pixels = np.stack([row, row[::-1], np.full_like(row, 128)], axis=-1)
    return _save(Image.fromarray(np.repeat(pixels[None], 2, axis=0).astype(np.uint8)), "PNG")


def strip_tall_png() -> bytes:
    column = np.linspace(0, 255, 1000, dtype=np.float32).astype(np.uint8)
    return _save(Image.fromarray(np.repeat(column[:, None], 1, axis=1)), "PNG")


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (Pillow writes the Adobe marker and inverted channels)."""
    rgb = Image.fromarray(_gradient(96, 96, 3).astype(np.uint8))
    return _save(rgb.convert("CMYK"), "JPEG", quality=85)


def palette_alpha_png() -> bytes:
    """Paletted PNG whose tRNS gives 16 palette entries 16 levels of alpha."""
    y, x = np.mgrid[0:64, 0:64]
    index = ((x // 16) + 4 * (y // 16)).astype(np.uint8)
    image = Image.fromarray(index, "P")
    palette = [c for i in range(16) for c in (i * 16, 255 - i * 16, (i * 53) % 256)]
    image.putpalette(palette)
    return _save(image, "PNG", transparency=bytes(i * 17 for i in range(16)))


def rgba_png() -> bytes:
    """RGBA with alpha falling off from the centre (soft edges)."""
    y, x = np.mgrid[0:60, 0:80].astype(np.float32)
    alpha = np.clip(255 - np.hypot(x - 40, y - 30) * 7, 0, 255)
    rgb = _gradient(80, 60, 4)
    return _save(Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA"), "PNG")


def animated_gif() -> bytes:
    """Four 48x48 frames of a square moving across a palette image, looping."""
    frames = []
    for i in range(4):
        image = Image.new("P", (48, 48), 0)
        image.putpalette([255, 255, 255, 220, 40, 40, 40, 40, 220])
        ImageDraw.Draw(image).rectangle((4 + 10 * i, 14, 18 + 10 * i, 28), fill=1 + i % 2)
        frames.append(image)
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                 loop=0, disposal=2)


def progressive_jpeg() -> bytes:
    rgb = Image.fromarray(_gradient(128, 96, 5).astype(np.uint8))
    return _save(rgb.convert("L"), "JPEG", quality=75, progressive=True)


SEED_IMAGES: dict[str, Callable[[], bytes]] = {
    "photo.jpg": photo_jpeg, "noise.png": noise_png, "text_receipt.png": receipt_png,
    "text_banner.png": banner_png, "line_art.png": line_art_png, "pixel_1x1.png": pixel_png,
    "tracking_pixel.gif": pixel_gif, "strip_2000x2.png": strip_wide_png,
    "strip_1x1000.png": strip_tall_png, "cmyk.jpg": cmyk_jpeg,
    "palette_alpha.png": palette_alpha_png, "rgba_soft.png": rgba_png,
    "animated.gif": animated_gif, "progressive_gray.jpg": progressive_jpeg,
}


def seed_images() -> dict[str, bytes]:
    """File name -> bytes, for every seed image."""
    return {name: make() for name, make in SEED_IMAGES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, data in seed_images().items():
        (args.out / name).write_bytes(data)
        total += len(data)
    print(f"{len(SEED_IMAGES)} seed images, {total} bytes, in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
