"""`fuzz.model.strings_in`, the one walk over a JSON-like body that media refs, canary
detection (`fuzz.isolation.leaks`) and the scenario summary share."""

from __future__ import annotations

from types import SimpleNamespace

from fuzz.isolation.leaks import canary, planted_canaries
from fuzz.model import FIXTURE_SCHEME, RequestSpec, Scenario, Trace, strings_in
from fuzz.scenario_summary import needs


def test_strings_in_walks_dict_values_lists_and_tuples_in_order() -> None:
    body = {"a": "x", "b": ["y", ("z", {"c": "w"})], "d": 3, "e": None, "key-not-value": 1.5}
    assert list(strings_in(body)) == ["x", "y", "z", "w"]
    assert list(strings_in("solo")) == ["solo"]
    assert list(strings_in(7)) == []


def test_canaries_and_media_refs_are_found_inside_tuples() -> None:
    mark = canary(1)
    url = FIXTURE_SCHEME + "/media/" + "a" * 64
    spec = RequestSpec(id="r", body={"messages": ({"content": (mark, url)},)})
    assert planted_canaries(spec) == {mark}
    assert spec.media_refs() == ["a" * 64]


def test_scenario_summary_counts_fixture_urls_inside_tuples() -> None:
    url = FIXTURE_SCHEME + "/hang/image.png"  # no sha256: no media needed
    spec = RequestSpec(id="r", body={"messages": [{"content": (url,)}]})
    bundle = SimpleNamespace(scenario=Scenario(requests=(spec,)), original_request_count=1,
                             trace=Trace(requests=()), fuzzer={})
    assert any(line.startswith("image URLs: 1 fetched") and "(hang)" in line
               for line in needs(bundle))  # type: ignore[arg-type]
