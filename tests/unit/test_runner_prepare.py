"""fuzz.runner.prepare_body: what goes on the wire for a request spec."""

from __future__ import annotations

import json

import pytest

from fuzz.model import Media, RequestSpec, Scenario, fixture_url, media_url
from fuzz.runner import Endpoint, prepare_body

ENDPOINT = Endpoint("http://target:8000", "served-model")
IMAGE = Media(data=b"\x89PNG\r\n\x1a\nfake", mime="image/png")


def image_body(url: str) -> dict:
    return {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]}


def wire(spec: RequestSpec, **kw: str) -> dict:
    scenario = Scenario(requests=(spec,), media={IMAGE.sha256: IMAGE})
    data = prepare_body(ENDPOINT, scenario, spec, **kw)
    assert data is not None
    return json.loads(data)


def test_fixture_image_becomes_an_http_url_under_the_base() -> None:
    spec = RequestSpec(id="r", body=image_body(fixture_url(f"/media/{IMAGE.sha256}")))
    sent = wire(spec, fixture_base_url="http://127.0.0.1:4321/")
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == (
        f"http://127.0.0.1:4321/media/{IMAGE.sha256}")
    assert sent["model"] == "served-model"


def test_fixture_image_without_a_base_is_refused() -> None:
    spec = RequestSpec(id="r", body=image_body(fixture_url("/missing/x.png")))
    with pytest.raises(ValueError, match="fixture_base_url"):
        wire(spec)


def test_inline_media_is_a_data_url_and_explicit_model_is_kept() -> None:
    spec = RequestSpec(id="r", body={**image_body(media_url(IMAGE.sha256)), "model": "mine"})
    sent = wire(spec, fixture_base_url="http://127.0.0.1:1")
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == IMAGE.data_url()
    assert sent["model"] == "mine"


def test_raw_string_bodies_and_empty_gets() -> None:
    raw = RequestSpec(id="raw", body="{not json", method="POST")  # type: ignore[arg-type]
    scenario = Scenario(requests=(raw,))
    assert prepare_body(ENDPOINT, scenario, raw) == b"{not json"
    get = RequestSpec(id="get", body={}, method="GET", path="/v1/models")
    assert prepare_body(ENDPOINT, Scenario(requests=(get,)), get) is None
