"""The committed seed images (`corpora/images/`, written by
`corpora/make_seed_images.py`) as a content source beside the rendered recipes.

They bring what recipes do not: photo-like and textual content, a CMYK JPEG with its
Adobe marker, partial palette transparency, a 1x1 tracking-pixel GIF, 1000:1 strips.
A `SeedImage` names one file and a nonce: nonce 0 sends the file as committed (the
same bytes in every scenario and every run, so server media caches get hit), any
other nonce is stamped into a comment the decoders skip (same pixels, new sha256)."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from fuzz.media import MIME, stamped
from fuzz.model import Media
from fuzz.strategies._common import corpus_dir
from fuzz.strategies.images import size_tags

SEED_KIND = "seed_image"  # `Media.recipe["kind"]` of a seed image
EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".gif"})


@dataclass(frozen=True)
class SeedImage:
    """One seed file, by name, and the nonce stamped into it (0: none)."""

    name: str
    nonce: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": SEED_KIND, "name": self.name, "nonce": self.nonce}


@dataclass(frozen=True)
class SeedFile:
    """A seed file's bytes and what it is, read once; `tags` name what it exercises
    in the vocabulary of recipe tags, plus `image:seed:<stem>`."""

    name: str
    data: bytes
    format: str
    mode: str
    width_px: int
    height_px: int
    tags: tuple[str, ...]

    @property
    def pixels(self) -> int:
        return self.width_px * self.height_px


def _identified(name: str, data: bytes) -> SeedFile:
    image = Image.open(io.BytesIO(data))
    fmt, (w, h) = str(image.format), image.size
    mode = "pt" if image.mode == "P" and "transparency" in image.info else image.mode.lower()
    tags = [f"image:seed:{Path(name).stem}", f"image:format:{fmt.lower()}", f"image:mode:{mode}",
            "image:content:seed", *size_tags(w, h)]
    if image.info.get("progressive") or image.info.get("progression") \
            or image.info.get("interlace"):
        tags.append("image:progressive")
    if getattr(image, "n_frames", 1) > 1:
        tags.append("image:animated")
    return SeedFile(name=name, data=data, format=fmt, mode=image.mode, width_px=w, height_px=h,
                    tags=tuple(tags))


def seed_files(directory: Path | str | None = None) -> tuple[SeedFile, ...]:
    """The seed images, sorted by name (read and identified once per directory)."""
    return _load(str(corpus_dir(directory, "corpora", "images")))


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> tuple[SeedFile, ...]:
    out = [_identified(path.name, path.read_bytes()) for path in sorted(Path(directory).iterdir())
           if path.suffix.lower() in EXTENSIONS]
    if not out:
        raise ValueError(f"no seed images in {directory}")
    return tuple(out)


def seed_media(seed: SeedImage, file: SeedFile) -> Media:
    """The Media for a seed image. Its recipe names the file and nonce, and says what
    the file is (size, mode, format) for reports; `ImageRecipe.from_json` refuses it
    (kind "seed_image"), so a minimizer leaves the image as it is."""
    if file.name != seed.name:
        raise ValueError(f"{seed} is not a stamp of {file.name}")
    return Media(data=stamped(file.data, seed.nonce), mime=MIME[file.format],
                 recipe={**seed.to_json(), "width_px": file.width_px,
                         "height_px": file.height_px, "mode": file.mode,
                         "format": file.format, "content": f"seed {Path(file.name).stem}"})
