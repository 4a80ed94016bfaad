"""`http://` image URLs on the fuzzer's loopback fixture server, as placeholders.

A request body holds `vlfuzz-fixture:/<behaviour>/...` (see `fuzz.model.fixture_url`);
the runner resolves it against the server's base URL. Paths (served by
`fuzz.fixtures.FixtureServer`):

    /media/<sha256>              the Media's bytes, its own MIME type     ("ok")
    /slow/<ms>/<sha256>          the same, dribbled over about <ms> ms
    /wrong_type/<sha256>         the same bytes labelled text/html
    /missing/<name>              404
    /hang/<name>                 headers, then nothing until the client gives up
    /huge/<bytes>/<name>         a PNG signature then <bytes> of filler, streamed

A sha256 as last segment makes the Media part of the scenario (bundled, replayable)."""

from __future__ import annotations

import hypothesis.strategies as st

from fuzz.model import Media, fixture_url
from fuzz.strategies._common import Draw

URL_BEHAVIOURS: tuple[str, ...] = ("ok", "slow", "wrong_type", "missing", "hang", "huge")
NEEDS_MEDIA: frozenset[str] = frozenset({"ok", "slow", "wrong_type"})
SLOW_MS: tuple[int, ...] = (50, 500, 3000)
HUGE_BYTES: tuple[int, ...] = (8 * 2**20, 64 * 2**20, 512 * 2**20)


def fixture_path(behaviour: str, media: Media | None = None, *, slow_ms: int = 500,
                 huge_bytes: int = 8 * 2**20, name: str = "image.png") -> str:
    """The server path for a behaviour (see the module docstring)."""
    if behaviour in NEEDS_MEDIA:
        if media is None:
            raise ValueError(f"behaviour {behaviour!r} needs a Media")
        return {"ok": f"/media/{media.sha256}", "slow": f"/slow/{slow_ms}/{media.sha256}",
                "wrong_type": f"/wrong_type/{media.sha256}"}[behaviour]
    if behaviour == "missing":
        return f"/missing/{name}"
    if behaviour == "hang":
        return f"/hang/{name}"
    if behaviour == "huge":
        return f"/huge/{huge_bytes}/{name}"
    raise ValueError(f"behaviour {behaviour!r} not in {URL_BEHAVIOURS}")


def draw_fixture_url(draw: Draw, media: Media, behaviours: tuple[str, ...] = URL_BEHAVIOURS
                     ) -> tuple[str, str, bool]:
    """(placeholder, behaviour, uses_media) for one image served by the fixture server."""
    behaviour = draw(st.sampled_from(behaviours))
    name = f"img-{draw(st.integers(0, 2**32 - 1)):08x}.png"
    path = fixture_path(behaviour, media, slow_ms=draw(st.sampled_from(SLOW_MS)),
                        huge_bytes=draw(st.sampled_from(HUGE_BYTES)), name=name)
    return fixture_url(path), behaviour, behaviour in NEEDS_MEDIA
