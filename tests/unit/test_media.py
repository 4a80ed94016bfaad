"""fuzz.media: recipes render deterministically to the size/mode/format asked, and
broken variants are really broken."""

from __future__ import annotations

import io
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from fuzz.media import (CONTENTS, CORRUPTIONS, FORMATS, MIME, MODES, ImageRecipe, encode,
                        render, saved_mode)
from fuzz.model import sha256_hex
from fuzz.strategies import image_recipes

# Modes Pillow (and so the server) reads back differently from what was written.
READS_AS = {("BMP", "RGBA"): "RGB", ("GIF", "L"): "P", ("GIF", "1"): "L"}
PIL_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
            "GIF": "image/gif", "BMP": "image/bmp"}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def expected_mode(recipe: ImageRecipe) -> str:
    written = saved_mode(recipe.mode, recipe.format)
    return READS_AS.get((recipe.format, written), written)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_format_renders_what_was_asked(mode: str, fmt: str) -> None:
    recipe = ImageRecipe(width_px=37, height_px=23, mode=mode, format=fmt, content="noise", seed=1)
    media = render(recipe)
    image = opened(media.data)
    assert image.size == (37, 23)
    assert image.format == fmt
    assert image.mode == expected_mode(recipe)
    assert media.mime == MIME[fmt]
    assert media.recipe == recipe.to_json()


def test_saved_mode_only_converts_what_the_format_cannot_hold() -> None:
    assert saved_mode("RGBA", "JPEG") == "RGB"
    assert saved_mode("CMYK", "JPEG") == "CMYK"
    assert saved_mode("CMYK", "PNG") == "RGB"
    assert saved_mode("RGB", "GIF") == "P"
    assert saved_mode("1", "JPEG") == "L"
    assert saved_mode("L", "WEBP") == "RGB"
    assert all(saved_mode(m, "PNG") == m for m in MODES if m != "CMYK")


@pytest.mark.parametrize("content", CONTENTS)
def test_rendering_is_deterministic_and_seeded(content: str) -> None:
    recipe = ImageRecipe(width_px=64, height_px=48, mode="RGB", format="PNG", content=content, seed=7)
    first, second = render(recipe), render(ImageRecipe.from_json(recipe.to_json()))
    assert first.data == second.data and first.sha256 == second.sha256
    other = render(ImageRecipe(width_px=64, height_px=48, mode="RGB", format="PNG",
                               content=content, seed=8))
    assert other.data != first.data


def test_noise_has_many_colours_and_flat_has_one() -> None:
    noise = opened(render(ImageRecipe(32, 32, "RGB", "PNG", "noise", 3)).data)
    flat = opened(render(ImageRecipe(32, 32, "RGB", "PNG", "flat", 3)).data)
    assert len(noise.getcolors(4096) or ()) > 500
    assert len(flat.getcolors() or ()) == 1


def test_progressive_jpeg_is_progressive() -> None:
    progressive = opened(render(ImageRecipe(64, 64, "RGB", "JPEG", "gradient", 1, progressive=True)).data)
    baseline = opened(render(ImageRecipe(64, 64, "RGB", "JPEG", "gradient", 1)).data)
    assert progressive.info.get("progressive") and not baseline.info.get("progressive")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [(1, 1), (8, 8), (200, 120)])
@pytest.mark.parametrize("corruption", ["truncated", "empty", "not_image"])
def test_broken_variants_do_not_decode(corruption: str, size: tuple[int, int], fmt: str) -> None:
    recipe = ImageRecipe(*size, mode="RGB", format=fmt, content="noise", seed=5, corruption=corruption)
    media = render(recipe)
    assert media.mime == MIME[fmt]  # still claims to be the format
    with pytest.raises(Exception):
        opened(media.data)
    if corruption == "empty":
        assert media.data == b""
    if corruption == "truncated":
        assert 0 < len(media.data) < len(encode(recipe))


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_mime_is_a_valid_image_with_a_lying_mime(fmt: str) -> None:
    for seed in range(6):
        media = render(ImageRecipe(16, 16, "RGB", fmt, "flat", seed, corruption="wrong_mime"))
        assert opened(media.data).format == fmt
        assert media.mime != PIL_MIME[fmt]


def test_not_image_variants_differ_by_seed() -> None:
    datas = {render(ImageRecipe(8, 8, "RGB", "PNG", "flat", s, corruption="not_image")).data
             for s in range(8)}
    assert len(datas) >= 4


def test_recipe_json_round_trip() -> None:
    recipe = ImageRecipe(10, 20, "P", "GIF", "stripes", 99, progressive=True, corruption="truncated")
    d = json.loads(json.dumps(recipe.to_json()))
    assert d["kind"] == "image"
    assert ImageRecipe.from_json(d) == recipe
    with pytest.raises(ValueError):
        ImageRecipe.from_json({**d, "kind": "video"})


@pytest.mark.parametrize("kwargs", [
    dict(width_px=0), dict(height_px=-1), dict(mode="LA"), dict(format="TIFF"),
    dict(content="plasma"), dict(corruption="bitflip"), dict(seed=-1), dict(width_px=1.5),
    dict(format="WEBP", width_px=20000), dict(width_px=True),
])
def test_recipe_rejects_bad_fields(kwargs: dict) -> None:
    base = dict(width_px=8, height_px=8, mode="RGB", format="PNG", content="flat", seed=0)
    with pytest.raises(ValueError):
        ImageRecipe(**{**base, **kwargs})


def test_megapixel_noise_png_renders_fast() -> None:
    recipe = ImageRecipe(1024, 1024, "RGB", "PNG", "noise", 0)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        render(recipe)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_recipes(max_pixels=64 * 64))
def test_any_drawn_recipe_renders_reproducibly(recipe: ImageRecipe) -> None:
    media = render(recipe)
    assert media.data == render(recipe).data
    assert media.sha256 == sha256_hex(media.data)
    if recipe.corruption in (None, "wrong_mime"):
        image = opened(media.data)
        assert image.size == (recipe.width_px, recipe.height_px)
        assert image.mode == expected_mode(recipe)
    else:
        with pytest.raises(Exception):
            opened(media.data)


def test_corruptions_listed() -> None:
    assert set(CORRUPTIONS) == {"truncated", "empty", "not_image", "wrong_mime"}
