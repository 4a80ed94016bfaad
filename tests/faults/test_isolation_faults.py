"""The isolation and interference oracles end to end, through the real runner, against
in-process servers (tests/isolation_servers.py) that swap answers, mix up images,
perturb a token under concurrency, stall a victim behind a heavy neighbour, or are
merely noisy. The faulty ones must be caught and confirmed by replay; the noisy one
must raise nothing. The minimizer shrinks the neighbours and keeps the subject.

The only timing judged is the interference oracle's own (a 20x stall against a 5x
limit; under the fairness guard, a victim stalled 1 s while its neighbours took a
fraction of that against a 2x limit), so the tests hold on a loaded machine."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from isolation_servers import IsolationServer

from fuzz.isolation import (ConfirmPolicy, NoiseModel, SlowdownRule, Verdict, calibrate_latency,
                            canary, derive_noise, interference_failures, interference_replay,
                            interference_suspects,
                            isolation_failures, isolation_replay, isolation_suspects,
                            measure_noise, plant_canary, probe_ids, probe_request,
                            subject_ids)
from fuzz.isolation.calibrate import alone_answers
from fuzz.isolation.scenarios import neutral_requests
from fuzz.minimize import Budget, minimize
from fuzz.model import Deadlines, Media, RequestSpec, Scenario, Trace
from fuzz.runner import Endpoint, run_scenario

DL = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=30.0)
POLICY = ConfirmPolicy(runs=3, need=2, alone_runs=2)
RULE = SlowdownRule(factor=5.0, min_excess_s=0.1, min_excess_tpot_s=0.01)  # a 20x stall
FAIR = SlowdownRule(factor=5.0, min_excess_s=0.1, min_excess_tpot_s=0.01, neighbour_factor=2.0)
STALL = {"stall_s": 1.0, "heavy_s": 0.2}  # the victim waits 5x as long as the heavy one


def image(tag: str) -> Media:
    return Media(data=f"not really a PNG: {tag}".encode(), mime="image/png")


def scenario_of(*specs: RequestSpec, media: tuple[Media, ...] = ()) -> Scenario:
    return Scenario(requests=specs, media={m.sha256: m for m in media})


def heavy(request_id: str = "H") -> RequestSpec:
    return RequestSpec(id=request_id, body={"messages": [{"role": "user", "content": "long"}],
                                            "max_tokens": 256})


def served(mode: str, test: Callable[[IsolationServer, Endpoint], Awaitable[Any]],
           **kw: Any) -> Any:
    async def main() -> Any:
        async with IsolationServer(mode, **kw) as server:
            return await test(server, Endpoint(server.base_url, server.model))
    return asyncio.run(main())


async def calibrated(ep: Endpoint) -> NoiseModel:
    """The server's natural variance, from text-only probes in neutral batches."""
    probes = scenario_of(probe_request("c0", "Calibrate with this."),
                         probe_request("c1", "And with this, streamed.", stream=True))
    return derive_noise(await measure_noise(ep, probes, alone_runs=3, batch_sizes=(2, 4, 8),
                                            batch_runs=2, deadlines=DL))


async def play(ep: Endpoint, scenario: Scenario) -> Trace:
    return await run_scenario(ep, scenario, DL, probe=False, metrics=False)


def found(verdict: Verdict) -> set[tuple[str, str, str | None]]:
    """(kind, signature detail or "", request id) of each confirmed failure."""
    out = set()
    for f in verdict.confirmed:
        parts = f.signature.split("|")
        out.add((f.kind, parts[3] if len(parts) > 3 else "", f.request_id))
        assert f.evidence["confirmation"]["hits"] >= POLICY.need
    return out


def test_swapped_answers_are_caught_confirmed_and_minimized() -> None:
    a, b = image("a"), image("b")
    scenario = scenario_of(
        plant_canary(probe_request("A", "Describe the image.", images=[a.sha256]), canary(1)),
        probe_request("B", "Describe the image.", images=[b.sha256]), media=(a, b))

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        noise = await calibrated(ep)
        verdict = await isolation_failures(ep, scenario, await play(ep, scenario), noise,
                                           policy=POLICY, deadlines=DL)
        # the canary leak, minimized out of a crowd: who planted it is kept too
        crowd = scenario_of(*neutral_requests(2), *scenario.requests,
                            *neutral_requests(2, prefix="x"), media=(a, b))
        leak = next(f for f in verdict.confirmed if f.signature.endswith("|canary"))
        result = await minimize(crowd, leak.signature,
                                isolation_replay(ep, noise, subject_ids(leak), deadlines=DL),
                                budget=Budget(max_replays=40, max_wall_s=120.0), final_runs=1)
        return noise, verdict, result

    noise, verdict, result = served("swap", test, ttft_s=0.05)
    assert {r.id for r in result.scenario.requests} == {"A", "B"} and result.final.hits == 1
    assert noise.max_flip_margin == 0.0  # text-only calibration never triggers the swap
    assert found(verdict) == {
        ("isolation_divergence", "image_probe", "A"), ("isolation_divergence", "image_probe", "B"),
        ("cross_request_leak", "answer_of_other_request", "A"),
        ("cross_request_leak", "answer_of_other_request", "B"),
        ("cross_request_leak", "canary", "B")}
    assert verdict.unconfirmed == ()
    divergence = next(f for f in verdict.confirmed if f.kind == "isolation_divergence"
                      and f.request_id == "B")
    d = divergence.evidence["divergence"]
    assert d["position"] == 0 and d["margin"] > noise.margin_threshold
    assert d["alone_continuation"] != d["got_continuation"]
    assert "reproduced in" in divergence.message


def test_images_mixed_up_are_caught_and_confirmed() -> None:
    a, b = image("a"), image("b")
    scenario = scenario_of(probe_request("A", "Describe the image.", images=[a.sha256]),
                           probe_request("B", "Describe the image.", images=[b.sha256]),
                           media=(a, b))

    async def test(server: IsolationServer, ep: Endpoint) -> Verdict:
        noise = await calibrated(ep)
        return await isolation_failures(ep, scenario, await play(ep, scenario), noise,
                                        policy=POLICY, deadlines=DL)

    verdict = served("image_mixup", test, ttft_s=0.05)
    kinds = found(verdict)
    assert ("cross_request_leak", "same_answer_different_images", "B") in kinds
    assert ("isolation_divergence", "image_probe", "B") in kinds  # B answered about A's image
    assert not any(rid == "A" for _, _, rid in kinds)  # A kept its own image


def test_one_token_perturbed_under_concurrency_is_caught_confirmed_and_minimized() -> None:
    n = image("n")
    neighbour = probe_request("N", "Describe the image.", images=[n.sha256])
    scenario = scenario_of(probe_request("P", "List the steps to brew tea."), neighbour,
                           *neutral_requests(4), media=(n,))

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        noise = await calibrated(ep)
        text_only = scenario.with_requests(tuple(r for r in scenario.requests if r.id != "N"))
        quiet = await isolation_failures(ep, text_only, await play(ep, text_only), noise,
                                         policy=POLICY, deadlines=DL)
        cache: dict = {}
        verdict = await isolation_failures(ep, scenario, await play(ep, scenario), noise,
                                           cache=cache, policy=POLICY, deadlines=DL)
        failure = verdict.confirmed[0]
        replay = isolation_replay(ep, noise, subject_ids(failure), cache=cache, deadlines=DL)
        result = await minimize(scenario, failure.signature, replay,
                                budget=Budget(max_replays=60, max_wall_s=120.0), final_runs=2)
        return noise, quiet, verdict, result

    noise, quiet, verdict, result = served("perturb", test)
    assert quiet.confirmed == () and quiet.unconfirmed == ()
    # every text-only probe beside the image request is hit, the fillers included
    assert found(verdict) == {("isolation_divergence", "text_probe", rid)
                              for rid in ("P", "neutral0", "neutral1", "neutral2", "neutral3")}
    assert verdict.confirmed[0].request_id == "P"
    d = verdict.confirmed[0].evidence["divergence"]
    assert d["position"] >= 2 and d["margin"] >= 1.5 > noise.margin_threshold
    assert d["context"] and d["alone_token"] != d["got_token"]
    assert {r.id for r in result.scenario.requests} == {"P", "N"}
    assert result.final.hits >= 1


def test_stalled_victim_is_caught_confirmed_and_its_neighbours_minimized() -> None:
    """The victim stalls behind the heavy request while neutral requests sent once the
    heavy one is done are served at once: starved, under the fairness guard too."""
    victim = probe_request("V", "I am the victim.", stream=True)
    scenario = scenario_of(victim, *neutral_requests(3, offset_ms=700.0), heavy("H"),
                           *neutral_requests(2, prefix="late", offset_ms=700.0))

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        alone = await calibrate_latency(ep, scenario, "V", runs=5, deadlines=DL)
        verdict = await interference_failures(ep, scenario, await play(ep, scenario),
                                              {alone.key: alone}, rule=FAIR, policy=POLICY,
                                              deadlines=DL)
        assert verdict.confirmed, verdict
        replay = interference_replay(ep, victim, alone, rule=FAIR, deadlines=DL)
        result = await minimize(scenario, verdict.confirmed[0].signature, replay,
                                budget=Budget(max_replays=60, max_wall_s=180.0), final_runs=2)
        return alone, verdict, result

    alone, verdict, result = served("stall", test, **STALL)
    assert found(verdict) == {("interference_slowdown", "", "V")}
    slowdown = verdict.confirmed[0].evidence["slowdown"]
    assert slowdown["ratio"] > FAIR.factor
    assert slowdown["neighbour_ratio"] > FAIR.neighbour_factor
    excess = slowdown["observed_median_s"] - slowdown["alone_median_s"]
    assert excess > RULE.floor(slowdown["metric"])
    assert len(verdict.confirmed[0].evidence["alone_fresh"]) == POLICY.alone_runs
    assert {r.id for r in result.scenario.requests} == {"V", "H"}
    assert result.scenario.request("V").body == victim.body  # the victim is kept as it was
    assert result.final.hits >= 1


def test_a_batch_slow_for_every_light_request_is_no_interference() -> None:
    """Every light request stalls while the heavy one is in flight: the victim is 20x
    slower than alone, but no slower than its neighbours. The guard lets it pass; the
    rule without it calls it a slowdown."""
    victim = probe_request("V", "I am the victim.", stream=True)
    scenario = scenario_of(victim, *neutral_requests(4), heavy("H"))

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        alone = await calibrate_latency(ep, scenario, "V", runs=3, deadlines=DL)
        trace = await play(ep, scenario)
        verdict = await interference_failures(ep, scenario, trace, {alone.key: alone},
                                              rule=FAIR, policy=POLICY, deadlines=DL)
        return verdict, interference_suspects(scenario, trace, {alone.key: alone}, RULE)

    verdict, unguarded = served("stall", test, **STALL)
    assert verdict == Verdict()  # not even a suspect: nothing replayed
    assert [f.request_id for f in unguarded] == ["V"]


async def guarded_bundles(ep: Endpoint) -> list[Any]:
    """Bundles of a starved victim and of one merely as slow as its batch, as a campaign
    records them: suspected by the plain rule, judged by the one with the fairness guard."""
    from fuzz.bundle import Bundle, fuzzer_info
    from fuzz.isolation_record import JudgedBy, with_judged_by
    from fuzz.triage import first_reproduced

    victim = probe_request("V", "I am the victim.", stream=True)
    starved = scenario_of(victim, *neutral_requests(3, offset_ms=700.0), heavy("H"))
    batch = scenario_of(victim, *neutral_requests(4), heavy("H"))
    bundles = []
    for scenario in (starved, batch):
        alone = await calibrate_latency(ep, scenario, "V", runs=3, deadlines=DL)
        trace = await play(ep, scenario)
        f = interference_suspects(scenario, trace, {alone.key: alone}, RULE)[0]
        f = with_judged_by(f, JudgedBy(subjects=("V",), rule=FAIR, alone=alone))
        bundles.append(Bundle(scenario, f, trace, first_reproduced(f), {"model_id": "iso-model"},
                              fuzzer_info(0), len(scenario.requests)))
    return bundles


def test_the_replay_judge_applies_a_recorded_fairness_guard() -> None:
    """`vlfuzz replay` judges a bundle whose rule has the guard by it: the starved
    victim still fails, the one merely as slow as its batch does not."""
    from fuzz.oracles import check
    from fuzz.replay_judges import replay_interference

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        return [await replay_interference(bundle, ep, runs=2, deadlines=DL, check=check)
                for bundle in await guarded_bundles(ep)]

    slowed, batched = served("stall", test, **STALL)
    assert slowed.failing == 2 and "as long as its neighbours (limit 2x)" in slowed.note
    assert batched.runs == 2 and batched.failing == 0 and batched.error is None


def test_repro_py_applies_a_recorded_fairness_guard(tmp_path: Path) -> None:
    """The standalone repro.py judges by the guard too: it fails for the starved victim
    and passes the one as slow as the requests beside it."""
    import sys

    from fuzz.bundle import write_bundle

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        outs = []
        for i, bundle in enumerate(await guarded_bundles(ep)):
            folder = write_bundle(bundle, tmp_path / str(i))
            assert "more than 2x as long as the requests answered beside it" in \
                " ".join((folder / "repro.py").read_text().split())
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(folder / "repro.py"), "--endpoint", server.base_url,
                "--runs", "2", "--settle", "0.1", stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            outs.append((proc.returncode, out.decode()))
        return outs

    (starved, starved_out), (batch, batch_out) = served("stall", test, **STALL)
    assert starved == 1 and "STILL FAILING" in starved_out, starved_out
    assert "or no more than 2x as long as the requests beside it" in starved_out
    assert batch == 0 and "NOT REPRODUCED" in batch_out, batch_out
    assert "as long as the requests beside it" in batch_out


def test_a_merely_noisy_server_raises_nothing() -> None:
    a, b = image("a"), image("b")
    victim = probe_request("V", "I am the victim.", stream=True)
    scenarios = [
        scenario_of(probe_request("P", "List the steps to brew tea."), victim,
                    *neutral_requests(6), media=()),
        scenario_of(plant_canary(probe_request("A", "Describe the image.", images=[a.sha256]),
                                 canary(2)),
                    probe_request("B", "Describe the image.", images=[b.sha256]),
                    probe_request("S", "Explain the sky.", stream=True, max_tokens=24), victim,
                    *neutral_requests(4), media=(a, b)),
        scenario_of(victim, probe_request("P", "List the steps to brew tea."),
                    *neutral_requests(8), heavy("H1"), media=()),
    ]

    async def test(server: IsolationServer, ep: Endpoint) -> Any:
        noise = await calibrated(ep)
        alone = await calibrate_latency(ep, scenarios[0], "V", runs=5, deadlines=DL)
        cache: dict = {}
        verdicts, suspects, naive = [], [], []
        for _ in range(2):
            for scenario in scenarios:
                trace = await play(ep, scenario)
                refs = {rid: await alone_answers(ep, scenario, rid, deadlines=DL, cache=cache)
                        for rid in probe_ids(scenario)}
                suspects += isolation_suspects(scenario, trace, refs, noise)
                naive += isolation_suspects(scenario, trace, refs, NoiseModel(margin_threshold=0))
                verdicts.append(await isolation_failures(ep, scenario, trace, noise, cache=cache,
                                                         policy=POLICY, deadlines=DL))
                verdicts.append(await interference_failures(
                    ep, scenario, trace, {alone.key: alone}, rule=RULE, policy=POLICY,
                    deadlines=DL))
        return noise, verdicts, suspects, naive, server.flips

    noise, verdicts, suspects, naive, flips = served("noisy", test)
    assert flips > 0  # the server did flip near-ties under concurrency...
    assert noise.max_flip_margin > 0 and noise.margin_threshold > noise.max_flip_margin
    assert any(f.kind == "isolation_divergence" for f in naive)  # (an uncalibrated bar trips)
    assert suspects == []  # ...and none of it got past the calibrated bar
    assert [f for v in verdicts for f in v.confirmed] == []


def test_bench_variance_prints_a_table_and_writes_the_model(tmp_path, capsys) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "variance.py"
    spec = importlib.util.spec_from_file_location("bench_variance", path)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "noise.json"
    with IsolationServer("noisy") as server:
        code = bench.main(["--endpoint", server.base_url, "--model", server.model,
                           "--repeats", "3", "--batch-sizes", "2,4", "--batch-runs", "2",
                           "--max-tokens", "12", "--latency-runs", "2", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "alone" in text and "margin threshold" in text and "alone latency" in text
    noise = NoiseModel.from_json(json.loads(out.read_text()))
    assert [b.batch_size for b in noise.batches] == [1, 2, 4] and noise.probes == 4
