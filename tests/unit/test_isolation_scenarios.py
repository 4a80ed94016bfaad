"""Probe and batch scenarios, request identity, and the minimizer's guards."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fuzz.isolation.replays import keeps_ids, subject_ids
from fuzz.isolation.scenarios import (alone_scenario, batch_scenario, insert_request, is_probe,
                                      keeps_request, neutral_requests, probe_ids, probe_request,
                                      probe_shape, request_key)
from fuzz.model import Failure, Media, RequestSpec, Scenario

IMG = Media(b"an image", "image/png")


def test_probe_request_is_a_greedy_logprob_request() -> None:
    p = probe_request("p", "hello", images=[IMG.sha256], max_tokens=8, stream=True, seed=3)
    body = p.body
    assert body["temperature"] == 0 and body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["seed"] == 3 and body["max_tokens"] == 8 and body["stream"] is True
    assert "seed" not in probe_request("q", "hello").body  # greedy needs none (see greedy_body)
    assert p.media_refs() == [IMG.sha256] and is_probe(p)


@pytest.mark.parametrize("change", [
    {"temperature": 0.7}, {"temperature": False}, {"logprobs": False}, {"n": 2},
])
def test_not_probes(change: dict) -> None:
    p = probe_request("p", "hello")
    assert not is_probe(replace(p, body={**p.body, **change}))
    assert not is_probe(replace(p, disconnect_after_chunks=2))
    assert not is_probe(replace(p, path="/v1/completions"))


def test_neutral_requests_are_distinct_probes() -> None:
    fillers = neutral_requests(10)
    assert len({request_key(f) for f in fillers}) == 10
    assert all(is_probe(f) for f in fillers) and fillers[0].id == "neutral0"


def test_batch_and_alone_scenarios() -> None:
    probe = probe_request("p", "hello", images=[IMG.sha256], offset_ms=500.0)
    media = {IMG.sha256: IMG, "unused": Media(b"x", "image/png")}
    batch = batch_scenario(probe, media, 4)
    assert [r.id for r in batch.requests] == ["p", "neutral0", "neutral1", "neutral2"]
    assert all(r.offset_ms == 0.0 for r in batch.requests)
    assert set(batch.media) == {IMG.sha256}
    assert batch_scenario(probe, media, 1).requests == (replace(probe, offset_ms=0.0),)
    with pytest.raises(ValueError):
        batch_scenario(probe, media, 0)
    with pytest.raises(ValueError):
        batch_scenario(probe, media, 3, fillers=neutral_requests(1))
    alone = alone_scenario(batch, "neutral1")
    assert [r.id for r in alone.requests] == ["neutral1"] and alone.media == {}
    assert probe_ids(batch) == ["p", "neutral0", "neutral1", "neutral2"]


def test_request_key_and_keeps_request() -> None:
    v = probe_request("v", "victim")
    s = Scenario(requests=(v,) + neutral_requests(2))
    assert request_key(v) == request_key(replace(v, id="other", offset_ms=99.0))
    assert request_key(v) != request_key(replace(v, body={**v.body, "max_tokens": 1}))
    assert keeps_request(s, v)
    assert keeps_request(Scenario(requests=(replace(v, offset_ms=40.0),)), v)
    assert not keeps_request(s.with_requests(s.requests[1:]), v)
    assert not keeps_request(Scenario(requests=(replace(v, body={**v.body, "stream": True}),)), v)


def test_isolation_guards() -> None:
    f = Failure(kind="cross_request_leak", signature="s", message="m", request_id="A",
                evidence={"source": "B"})
    assert subject_ids(f) == ("A", "B")
    g = Failure(kind="cross_request_leak", signature="s", message="m", request_id="B",
                evidence={"requests": ["A", "B"]})
    assert subject_ids(g) == ("B", "A")
    c = Failure(kind="cross_request_leak", signature="s", message="m", request_id="B",
                evidence={"sources": ["A"]})
    assert subject_ids(c) == ("B", "A")
    a, b = probe_request("A", "a"), probe_request("B", "b")
    assert keeps_ids(Scenario(requests=(a, b)), ("A", "B"))
    shorter = replace(a, body={**a.body, "max_tokens": 2})
    assert keeps_ids(Scenario(requests=(shorter, b)), ("A", "B"))  # simplified: kept
    assert not keeps_ids(Scenario(requests=(a,)), ("A", "B"))


def test_probe_shape() -> None:
    assert probe_shape(probe_request("p", "hi")) == "text_probe"
    assert probe_shape(probe_request("p", "hi", images=[IMG.sha256])) == "image_probe"
    url = RequestSpec(id="u", body={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "vlfuzz-fixture:/slow/x.png"}}]}]})
    assert probe_shape(url) == "image_probe"


def test_insert_request() -> None:
    base = Scenario(requests=neutral_requests(2), seed=5)
    victim = probe_request("victim", "v", images=[IMG.sha256])
    s = insert_request(base, victim, media={IMG.sha256: IMG, "other": IMG}, offset_ms=120.0)
    assert [r.id for r in s.requests] == ["neutral0", "neutral1", "victim"]
    assert s.request("victim").offset_ms == 120.0 and set(s.media) == {IMG.sha256}
    assert s.seed == 5
    with pytest.raises(ValueError, match="duplicate"):
        insert_request(s, victim, media={IMG.sha256: IMG})
    with pytest.raises(ValueError, match="media"):
        insert_request(base, victim)


def test_default_probes() -> None:
    from fuzz.isolation.scenarios import PROBE_PROMPTS, default_probes
    s = default_probes(max_tokens=8)
    assert len(s.requests) == len(PROBE_PROMPTS) + 1 and all(is_probe(r) for r in s.requests)
    assert probe_shape(s.request("image0")) == "image_probe" and len(s.media) == 1
    assert default_probes(image=False).media == {}
    assert default_probes().requests[0].body == default_probes().requests[0].body  # stable
