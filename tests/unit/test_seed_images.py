"""The committed seed images: `corpora/make_seed_images.py` reproduces them byte for
byte, they have the edge-case properties they are there for, and the scenario
strategy serves them beside rendered recipes, as-is (cache hits), repeated, and
stamped into byte-unique variants with unchanged pixels."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuzz.media import stamped
from fuzz.model import Scenario
from fuzz.strategies import feature_counts, scenarios, seed_files
from test_strategies import sample

CORPORA = Path(__file__).resolve().parents[2] / "corpora"


def load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_seed_images",
                                                  CORPORA / "make_seed_images.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def pixels(data: bytes) -> tuple[str, tuple[int, int], int, bytes]:
    image = Image.open(io.BytesIO(data))
    frames = getattr(image, "n_frames", 1)
    image.load()
    return image.mode, image.size, frames, np.asarray(image).tobytes()


def test_the_script_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    script = load_script()
    committed = {p.name: p.read_bytes() for p in (CORPORA / "images").iterdir()}
    assert script.seed_images() == committed
    assert script.main(["--out", str(tmp_path)]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == committed
    assert sum(map(len, committed.values())) < 100_000  # a few KB each
    assert max(map(len, committed.values())) < 16_000


def test_seed_images_carry_the_edge_cases_they_are_there_for() -> None:
    files = {f.name: f for f in seed_files()}
    tags = {t for f in files.values() for t in f.tags}
    assert files["cmyk.jpg"].mode == "CMYK" and files["cmyk.jpg"].format == "JPEG"
    assert "image:mode:pt" in files["palette_alpha.png"].tags
    assert "image:mode:pt" in files["tracking_pixel.gif"].tags
    assert {(f.width_px, f.height_px) for f in files.values()} >= {(1, 1), (2000, 2), (1, 1000)}
    assert {"image:aspect:extreme", "image:animated", "image:progressive", "image:size:tiny",
            "image:format:png", "image:format:jpeg", "image:format:gif"} <= tags
    assert len({t for t in tags if t.startswith("image:seed:")}) == len(files)  # one per file


@pytest.mark.parametrize("name", [f.name for f in seed_files()])
def test_stamping_changes_the_bytes_not_the_pixels(name: str) -> None:
    data = next(f.data for f in seed_files() if f.name == name)
    assert stamped(data, 0) == data
    one, two = stamped(data, 1), stamped(data, 2**40)
    assert len({data, one, two}) == 3
    assert pixels(one) == pixels(data) == pixels(two)


def test_stamping_refuses_formats_it_cannot_comment() -> None:
    with pytest.raises(ValueError):
        stamped(b"BM" + bytes(60), 1)


def test_scenarios_serve_seed_images_as_is_stamped_and_repeated() -> None:
    committed = {f.data: f for f in seed_files()}
    drawn = sample(scenarios(max_requests=4, max_pixels=64 * 64, max_prompt_tokens=20,
                             seed_image_percent=100, broken_percent=0), 40)
    seen_as_is, seen_stamped = set(), set()
    for scenario in drawn:
        for media in scenario.media.values():
            recipe = media.recipe
            if recipe.get("kind") != "seed_image":
                continue
            file = next(f for f in seed_files() if f.name == recipe["name"])
            assert file.pixels <= 64 * 64
            if recipe["nonce"] == 0:
                assert media.data in committed
                seen_as_is.add(file.name)
            else:
                assert media.data not in committed
                assert pixels(media.data) == pixels(file.data)
                seen_stamped.add(file.name)
        again = Scenario.from_json(scenario.to_json(), {h: m.data for h, m in
                                                       scenario.media.items()})
        assert again == scenario
    counts = feature_counts(drawn)
    assert len(seen_as_is) >= 3 and len(seen_stamped) >= 3
    assert counts["image:repeat"] and counts["image:seed:stamped"]
    assert not any(t.startswith("image:content:") and t != "image:content:seed" for t in counts)


def test_seed_images_are_one_source_among_recipes_and_can_be_turned_off() -> None:
    default = feature_counts(sample(scenarios(max_requests=4, max_pixels=64 * 64,
                                              max_prompt_tokens=20), 40))
    assert default["image:content:seed"] and any(
        t.startswith("image:content:") and t != "image:content:seed" for t in default)
    off = feature_counts(sample(scenarios(max_requests=4, max_pixels=64 * 64,
                                          max_prompt_tokens=20, seed_image_percent=0), 20))
    assert not any(t.startswith("image:seed") or t == "image:content:seed" for t in off)
