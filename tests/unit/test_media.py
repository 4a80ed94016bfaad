"""fuzz.media: recipes render deterministically to the size/mode/format asked, and
broken variants are really broken."""

from __future__ import annotations

import base64
import binascii
import io
import json

import numpy as np

import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from fuzz.media import (ANIMATED_FORMATS, BAD_ENCODINGS, CONTENTS, CORRUPTIONS, FORMATS, MIME,
                        MODES, ImageRecipe, can_animate, encode, freshened, read_mode, render,
                        saved_mode)
from fuzz.model import Media, Scenario, RequestSpec, media_url, sha256_hex
from fuzz.strategies import image_recipes

# Modes Pillow (and so the server) reads back differently from what was written.
READS_AS = {("BMP", "RGBA"): "RGB", ("GIF", "L"): "P", ("GIF", "1"): "L", ("GIF", "PT"): "P",
            ("PNG", "PT"): "P"}
PIL_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
            "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def expected_mode(recipe: ImageRecipe) -> str:
    written = saved_mode(recipe.mode, recipe.format)
    expected = READS_AS.get((recipe.format, written), written)
    assert read_mode(recipe.mode, recipe.format) == expected
    return expected


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
    if saved_mode(mode, fmt) == "PT":
        assert "transparency" in image.info


def test_new_modes_keep_what_makes_them_special() -> None:
    def img(mode: str, fmt: str = "TIFF") -> Image.Image:
        return opened(render(ImageRecipe(40, 30, mode, fmt, "noise", 2)).data)

    i16 = np.asarray(img("I;16", "PNG"))
    assert i16.dtype.itemsize == 2 and int(i16.max()) > 255  # really 16-bit
    f = np.asarray(img("F"))
    assert f.dtype == np.float32 and f.min() < 0 < 1 < f.max()  # floats beyond [0, 1]
    la = np.asarray(img("LA", "PNG"))
    assert la.shape == (30, 40, 2) and len(np.unique(la[:, :, 1])) > 1  # varying alpha
    pt = img("PT", "PNG")
    assert pt.info["transparency"] == 255 and 255 in np.asarray(pt)
    assert img("CMYK", "JPEG").mode == "CMYK" and img("CMYK").mode == "CMYK"


@pytest.mark.parametrize("fmt", sorted(ANIMATED_FORMATS))
def test_animations_have_the_frames_asked_for(fmt: str) -> None:
    recipe = ImageRecipe(24, 16, "RGB", fmt, "noise", 3, frames=3)
    image = opened(render(recipe).data)
    assert image.format == fmt and image.n_frames == 3 and image.is_animated
    frames = []
    for i in range(3):
        image.seek(i)
        frames.append(image.convert("RGB").tobytes())
    assert len(set(frames)) == 3  # each frame has its own seed


@pytest.mark.parametrize("kwargs", [dict(format="JPEG"), dict(format="TIFF"),
                                    dict(format="PNG", mode="I;16"), dict(frames=17)])
def test_impossible_animations_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ImageRecipe(**{**dict(width_px=8, height_px=8, mode="RGB", format="GIF",
                              content="flat", seed=0, frames=2), **kwargs})
    assert not can_animate("F", "PNG") and can_animate("F", "GIF")


@pytest.mark.parametrize("seed", range(len(BAD_ENCODINGS)))
def test_bad_base64_is_a_valid_image_in_a_broken_data_url(seed: int) -> None:
    recipe = ImageRecipe(30, 30, "RGB", "PNG", "noise", seed, corruption="bad_base64")
    media = render(recipe)
    assert opened(media.data).format == "PNG"  # the bytes are fine...
    assert media.encoding == BAD_ENCODINGS[seed] == recipe.encoding
    payload = media.data_url().split(",", 1)[1]
    with pytest.raises(binascii.Error):  # ...the data URL is not strict base64 of them
        assert base64.b64decode(payload, validate=True) == media.data
        raise binascii.Error("decodes to other bytes")
    # the encoding survives a scenario round trip
    spec = RequestSpec("r0", {"url": media_url(media.sha256)})
    scenario = Scenario(requests=(spec,), media={media.sha256: media})
    again = Scenario.from_json(json.loads(json.dumps(scenario.to_json())), {media.sha256: media.data})
    assert again.media[media.sha256].data_url() == media.data_url()


def test_media_rejects_unknown_encoding() -> None:
    with pytest.raises(ValueError):
        Media(data=b"", mime="image/png", encoding="base65")


def test_saved_mode_only_converts_what_the_format_cannot_hold() -> None:
    assert saved_mode("RGBA", "JPEG") == "RGB"
    assert saved_mode("CMYK", "JPEG") == "CMYK"
    assert saved_mode("CMYK", "PNG") == "RGB"
    assert saved_mode("RGB", "GIF") == "P"
    assert saved_mode("1", "JPEG") == "L"
    assert saved_mode("L", "WEBP") == "RGB"
    assert all(saved_mode(m, "PNG") == m for m in MODES if m not in ("CMYK", "F"))
    assert saved_mode("F", "PNG") == "I;16" and saved_mode("LA", "GIF") == "PT"
    assert all(saved_mode(m, "TIFF") == m for m in MODES if m != "PT")


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
    dict(width_px=0), dict(height_px=-1), dict(mode="LA;16"), dict(format="PDF"),
    dict(content="plasma"), dict(corruption="bitflip"), dict(seed=-1), dict(width_px=1.5),
    dict(format="WEBP", width_px=20000), dict(width_px=True),
])
def test_recipe_rejects_bad_fields(kwargs: dict) -> None:
    base = dict(width_px=8, height_px=8, mode="RGB", format="PNG", content="flat", seed=0)
    with pytest.raises(ValueError):
        ImageRecipe(**{**base, **kwargs})


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_recipes(max_pixels=64 * 64))
def test_any_drawn_recipe_renders_reproducibly(recipe: ImageRecipe) -> None:
    media = render(recipe)
    assert media.data == render(recipe).data
    assert media.sha256 == sha256_hex(media.data)
    if recipe.corruption in (None, "wrong_mime", "bad_base64"):
        image = opened(media.data)
        assert image.size == (recipe.width_px, recipe.height_px)
        assert image.mode == expected_mode(recipe)
        assert getattr(image, "n_frames", 1) == recipe.frames
    else:
        with pytest.raises(Exception):
            opened(media.data)


def test_corruptions_listed() -> None:
    assert set(CORRUPTIONS) == {"truncated", "empty", "not_image", "wrong_mime", "bad_base64"}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_freshened_media_are_new_bytes_with_the_same_pixels_under_the_same_key(fmt: str) -> None:
    original = render(ImageRecipe(24, 16, "RGB", fmt, "noise", 3))
    key = original.sha256
    first, second = freshened({key: original}, 1)[key], freshened({key: original}, 2)[key]
    assert len({original.data, first.data, second.data}) == 3  # a new sha256 per nonce
    assert freshened({key: original}, 1)[key].data == first.data  # deterministic
    for fresh in (first, second):
        assert (fresh.mime, fresh.recipe, fresh.encoding) == (original.mime, original.recipe,
                                                              original.encoding)
        assert np.array_equal(np.asarray(opened(fresh.data)), np.asarray(opened(original.data)))


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_freshened_leaves_broken_media_as_recorded(corruption: str) -> None:
    broken = render(ImageRecipe(24, 16, "RGB", "PNG", "noise", 4, corruption=corruption))
    assert freshened({"k": broken}, 7)["k"] is broken


def test_freshened_leaves_unstampable_formats_and_nonce_zero_alone() -> None:
    bmp = render(ImageRecipe(8, 8, "RGB", "BMP", "flat", 1))
    png = render(ImageRecipe(8, 8, "RGB", "PNG", "flat", 1))
    garbage = Media(data=b"\x89PNG\r\n\x1a\n", mime="image/png")  # cut inside the header
    out = freshened({"b": bmp, "p": png, "g": garbage}, 0)
    assert out["b"] is bmp and out["p"] is png
    out = freshened({"b": bmp, "g": garbage}, 5)
    assert out["b"] is bmp and out["g"].data == garbage.data
