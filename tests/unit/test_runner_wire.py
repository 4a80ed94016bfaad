"""fuzz.wire: a scenario's bodies, each image encoded once, are byte for byte what
encoding each body on its own gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fuzz.model import Media, RequestSpec, Scenario, fixture_url, media_url, resolve_media
from fuzz.wire import BodyEncoder

PNG = Media(data=b"\x89PNG\r\n\x1a\n" + bytes(range(256)), mime="image/png")
ODD = Media(data=b"GIF89a\x00\xff", mime='image/gif"; q=\u00e9\\', encoding="base64_linebreaks")
BIG = Media(data=bytes(range(256)) * 300, mime="image/jpeg", encoding="base64_invalid_chars")
MEDIA = {m.sha256: m for m in (PNG, ODD, BIG)}
BASE = "http://127.0.0.1:4321"


def plain(spec: RequestSpec, model: str = "m") -> bytes | None:
    """The reference: resolve everything, then json.dumps the whole body."""
    body: Any = resolve_media(spec.body, MEDIA, BASE)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, dict):
        if spec.method.upper() in ("GET", "HEAD") and not body:
            return None
        if spec.method.upper() == "POST" and "model" not in body:
            body = {"model": model, **body}
    return json.dumps(body).encode("utf-8")


def image(m: Media) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": media_url(m.sha256)}}


SPECS = [
    RequestSpec(id="one", body={"messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"}, image(PNG)]}]}),
    RequestSpec(id="repeats", body={"messages": [{"role": "user", "content": [
        image(PNG), image(BIG), image(PNG), image(ODD)]}], "model": "explicit"}),
    RequestSpec(id="lookalikes", body={
        "messages": [{"role": "user", "content": "data:vlfuzz-splice- \"vlfuzz-splice-x\""}],
        media_url(PNG.sha256): "a key is not resolved", "n": [1, 2.5, None, True]}),
    RequestSpec(id="fixture", body={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": fixture_url(f"/media/{PNG.sha256}")}},
        image(PNG)]}]}),
    RequestSpec(id="unicode", body={"messages": [{"role": "user", "content": [
        {"type": "text", "text": "\u00e9\ud800<|image_pad|>\x00"}, image(ODD)]}]}),
    RequestSpec(id="raw", body=media_url(PNG.sha256)),  # type: ignore[arg-type]
    RequestSpec(id="get", body={}, method="GET", path="/v1/models"),
    RequestSpec(id="list", body=[image(PNG)]),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_bodies_equal_encoding_each_on_its_own(spec: RequestSpec) -> None:
    scenario = Scenario(requests=tuple(SPECS), media=MEDIA)
    encoder = BodyEncoder(scenario, "m", fixture_base_url=BASE)
    assert encoder.encode(spec) == plain(spec)
    assert encoder.encode(spec) == plain(spec)  # and again, from the cache


def test_what_cannot_be_encoded_still_raises() -> None:
    bad = RequestSpec(id="bad", body={"x": {1, 2}})
    nobase = RequestSpec(id="nobase", body={"u": fixture_url("/missing/x.png")})
    encoder = BodyEncoder(Scenario(requests=(bad, nobase)), "m")
    with pytest.raises(TypeError):
        encoder.encode(bad)
    with pytest.raises(ValueError, match="fixture_base_url"):
        encoder.encode(nobase)
