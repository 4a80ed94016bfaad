"""The campaign's side of the isolation oracles without a server: planting a probe,
the victim and a canary into a generated scenario (fresh ids, offsets inside its
schedule, deterministic for a seed), which requests are judged (the alone-run cost is
capped), which scenarios cannot be judged (fixture URLs), and the calibration's trip
through the journal."""

from __future__ import annotations

import random

from fuzz import ledger
from fuzz.isolation import AloneLatency, LatencySample, NoiseModel, is_probe, probe_request
from fuzz.isolation.leaks import planted_canaries
from fuzz.isolation.scenarios import default_probes
from fuzz.isolation_watch import (Calibration, Planted, has_fixture_urls, judged_probes, plant,
                                  victim_request)
from fuzz.model import RequestSpec, Scenario, fixture_url
from fuzz.report import Summary

PROBES = default_probes(max_tokens=16)


def generated(n: int = 3, *, clash: bool = False) -> Scenario:
    ids = ["iso-probe", "iso-victim"] if clash else []
    ids += [f"r{i}" for i in range(n - len(ids))]
    return Scenario(requests=tuple(
        RequestSpec(id=rid, offset_ms=100.0 * i,
                    body={"messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 8})
        for i, rid in enumerate(ids)))


def planted_many(scenario: Scenario, seeds: range) -> list[tuple[Scenario, Planted]]:
    return [plant(scenario, random.Random(seed), probes=PROBES, victim=victim_request(),
                  canary_text="vlfuzz-canary-0123456789ab") for seed in seeds]


def test_plants_land_inside_the_schedule_with_fresh_ids() -> None:
    scenario = generated(3, clash=True)
    runs = planted_many(scenario, range(40))
    for out, p in runs:
        assert p.probe == "iso-probe-2" and p.victim in (None, "iso-victim-2")
        assert [r.id for r in out.requests][:3] == [r.id for r in scenario.requests]
        probe = out.request(p.probe)
        assert is_probe(probe) and 0.0 <= probe.offset_ms <= 200.0
        assert set(probe.media_refs()) <= set(out.media)
        if p.canary_in is not None:
            assert planted_canaries(out.request(p.canary_in)) == {"vlfuzz-canary-0123456789ab"}
            others = [r for r in out.requests if r.id != p.canary_in]
            assert not any(planted_canaries(r) for r in others)
    assert any(p.victim for _, p in runs) and any(p.victim is None for _, p in runs)
    assert any(p.canary_in for _, p in runs) and any(p.canary_in is None for _, p in runs)
    assert {out.request(p.probe).body["messages"][0]["content"].__class__ for out, p in runs} \
        == {str, list}, "the image probe was never chosen"
    assert planted_many(scenario, range(40)) == runs  # the same seed plants the same


def test_judged_requests_are_the_plants_and_a_few_generated_probes() -> None:
    greedy = [probe_request(f"g{i}", f"generated greedy {i}", offset_ms=10.0) for i in range(4)]
    scenario = Scenario(requests=(*generated(2).requests, *greedy))
    assert judged_probes(scenario, None) == ["g0", "g1"]
    out, p = plant(scenario, random.Random(1), probes=PROBES, victim=None, canary_text="c")
    assert judged_probes(out, p) == [p.probe, "g0", "g1"]
    assert judged_probes(out, p, cap=0) == [p.probe]


def test_scenarios_using_the_fixture_server_are_not_judged() -> None:
    assert not has_fixture_urls(generated())
    with_url = Scenario(requests=(RequestSpec(id="r0", body={"messages": [{"role": "user",
        "content": [{"type": "image_url",
                     "image_url": {"url": fixture_url("/missing/x.png")}}]}]}),))
    assert has_fixture_urls(with_url)


def test_a_journaled_calibration_is_read_back_by_a_resumed_campaign() -> None:
    victim = victim_request()
    calibration = Calibration(
        noise=NoiseModel(margin_threshold=0.1, max_logprob_delta=0.02, probes=3),
        source="measured", image=False, victim=victim,
        alone=AloneLatency(key="k", samples=(LatencySample(0.05, 0.003, 0.1, 16),)))
    summary = Summary(seed=0, endpoint="x")
    for rec in calibration.records():
        ledger.apply(summary, {**rec, "t": 1.0})
    again = Calibration.from_journal(summary.noise, summary.victim)
    assert again == Calibration(calibration.noise, "journal", False, victim, calibration.alone)
    assert [r.id for r in again.probes().requests] == ["text0", "text1", "text2"]
    assert Calibration.from_journal({}, {}) is None
    assert Calibration.from_journal({"model": {"format_version": 9}}, summary.victim) is None
