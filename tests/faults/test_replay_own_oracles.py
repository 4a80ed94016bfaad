"""Bundles the ordinary oracles cannot judge, replayed by `vlfuzz replay` and by their
standalone repro.py: isolation divergences, cross-request leaks, interference slowdowns
(judged against the same requests run alone) and errors in the server's log.

Each bundle is recorded the way the campaign records it (the isolation watch judges
and confirms the finding, so its evidence carries the bar it was judged by; the
server-log finding comes from a trace that followed the log), against a server of
tests/isolation_servers.py that has the bug. Then, for each kind: STILL FAILING / exit 1
against that server, FIXED / exit 0 against a healthy one, and ERROR / exit 2 when the
bundle cannot be judged (no logprobs served, a victim that cannot be timed alone, no
server log, a log that is not the server's). Never FIXED when it cannot tell.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from isolation_servers import IsolationServer

from fuzz.bundle import Bundle, fuzzer_info, load_bundle, write_bundle
from fuzz.cli import main
from fuzz.isolation import NoiseModel, calibrate_latency, canary, plant_canary, probe_request
from fuzz.isolation.scenarios import user_message
from fuzz.isolation_record import KEY
from fuzz.isolation_watch import Calibration, IsolationWatch, victim_request
from fuzz.media import ImageRecipe, render
from fuzz.model import Deadlines, Failure, Media, RequestSpec, Scenario, Trace
from fuzz.oracles import check
from fuzz.replay import Verdict, replay_bundle, replay_paths
from fuzz.runner import Endpoint, run_scenario
from fuzz.server_log import LogFollower, excerpt
from fuzz.triage import first_reproduced

MODEL = "iso-model"
FAST = Deadlines(first_byte_s=10.0, stall_s=10.0, total_s=30.0)
NOISE = NoiseModel(margin_threshold=0.1)  # the stand-in's near ties are 0.01-0.03 nats


# --- servers --------------------------------------------------------------------------


def _vllm_line(level: str, where: str, message: str) -> str:
    stamp = time.strftime("%m-%d %H:%M:%S")
    return f"(APIServer pid=4242) {level} {stamp} [{where}] {message}"


def error_record() -> list[str]:
    """What vLLM logs when the hermes tool parser fails and the answer goes out as
    plain content, with a 200."""
    where = "hermes_tool_parser.py:120"
    return [_vllm_line("ERROR", where, m) for m in (
        "Error in extracting tool call from response.",
        "Traceback (most recent call last):",
        '  File "/venv/vllm/tool_parsers/hermes_tool_parser.py", line 99, in extract',
        "    function_call_arr = json.loads(raw)",
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 2 (char 1)")]


class LoggingServer(IsolationServer):
    """The healthy stand-in writing a log file as vLLM does: an access line per answer,
    and, with `fault`, an ERROR record with a traceback behind each 200."""

    def __init__(self, log: Path, *, fault: bool, lines: bool = True) -> None:
        super().__init__("healthy")
        self.log, self.fault, self.lines = log, fault, lines

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        resp = await super()._chat(request)
        out = error_record() if self.fault else []
        out += ['INFO:     127.0.0.1:50000 - "POST /v1/chat/completions HTTP/1.1" 200 OK']
        if self.lines:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write("\n".join(out) + "\n")
        return resp


class NoLogprobs(IsolationServer):
    """Answers as the healthy stand-in, but without logprobs."""

    @staticmethod
    def _logprob_entry(body: dict[str, Any], token: str, lp: float,
                       top: list[tuple[str, float]]) -> dict[str, Any] | None:
        return None


class StreamsFail(IsolationServer):
    """The healthy stand-in, except that every streamed request gets a 500."""

    async def _answer(self, request: web.Request, req: Any,
                      max_tokens: int) -> web.StreamResponse:
        if req.body.get("stream") is True:
            return web.json_response({"error": {"message": "EngineCore died"}}, status=500)
        return await super()._answer(request, req, max_tokens)


class SlowsDown(IsolationServer):
    """Healthy for its first `fast` requests, then slow for everyone (a target under
    someone else's load, or throttled: not interference)."""

    def __init__(self, fast: int) -> None:
        super().__init__("healthy")
        self.fast = fast

    async def _pause(self, req: Any, seconds: float, state: dict[str, Any]) -> None:
        if req.n > self.fast and not state.get("slow"):
            state["slow"], seconds = True, seconds + 0.6
        await super()._pause(req, seconds, state)


# --- scenarios and bundles as the campaign records them ------------------------------


def _image(seed: int) -> Media:
    return render(ImageRecipe(width_px=32, height_px=32, mode="RGB", format="PNG",
                              content="gradient", seed=seed))


def divergence_scenario() -> Scenario:
    """A text probe beside a request about an image (the `perturb` server bends it)."""
    img = _image(1)
    looks = RequestSpec("r0", {"messages": [user_message("What is in the picture?",
                                                         [img.sha256])], "max_tokens": 16})
    probe = probe_request("iso-probe", "Explain why the sky looks blue.", offset_ms=10.0)
    return Scenario((looks, probe), {img.sha256: img})


def swap_scenario() -> Scenario:
    """Two image probes at once (the `swap` server gives each the other's answer)."""
    a, b = _image(1), _image(2)
    pa = probe_request("pa", "Describe this image.", images=[a.sha256])
    pb = probe_request("pb", "What colour dominates here?", images=[b.sha256], offset_ms=5.0)
    return Scenario((pa, pb), {a.sha256: a, b.sha256: b})


def stall_scenario() -> Scenario:
    """The calibrated victim beside a heavy request (the `stall` server starves it)."""
    heavy = RequestSpec("heavy", {"messages": [{"role": "user", "content": "Write an essay."}],
                                  "max_tokens": 256})
    return Scenario((heavy, replace(victim_request(), offset_ms=20.0)))


def canary_scenario() -> Scenario:
    """Two requests about images, one with a canary (the `swap` server leaks its prompt
    into the other's answer). Neither is greedy: a canary needs no logprobs."""
    a, b = _image(1), _image(2)
    ra = RequestSpec("ra", {"messages": [user_message("Describe this image.", [a.sha256])],
                            "max_tokens": 8})
    rb = RequestSpec("rb", {"messages": [user_message("What is here?", [b.sha256])],
                            "max_tokens": 8}, offset_ms=5.0)
    return Scenario((plant_canary(ra, canary("replay-test")), rb), {a.sha256: a, b.sha256: b})


KINDS = {  # kind -> (faulty mode, scenario)
    "isolation_divergence": ("perturb", divergence_scenario),
    "cross_request_leak": ("swap", swap_scenario),
    "interference_slowdown": ("stall", stall_scenario),
}


async def _judged(server: IsolationServer, scenario: Scenario,
                  kind: str) -> tuple[Trace, Failure]:
    """The scenario run once and judged by the campaign's isolation watch."""
    endpoint = Endpoint(server.base_url, MODEL)
    victim = victim_request()
    alone = await calibrate_latency(endpoint, Scenario((victim,)), victim.id, runs=3)
    watch = IsolationWatch(lambda: endpoint, Calibration(NOISE, "test", True, victim, alone))
    trace = await run_scenario(endpoint, scenario, FAST, probe=False, metrics=False)
    judged = await watch.judge(scenario, trace, None, FAST)
    found = [f for f in judged.confirmed if f.kind == kind]
    assert found, (kind, judged)
    return trace, found[0]


def _write(scenario: Scenario, trace: Trace, failure: Failure, out: Path) -> Path:
    bundle = Bundle(scenario, failure, trace, first_reproduced(failure), {"model_id": MODEL},
                    fuzzer_info(0), len(scenario.requests))
    return write_bundle(bundle, out)


def _log_bundle(out: Path) -> Path:
    """A request whose 200 came with an ERROR and a traceback in the server's log."""
    log = out / "recorded.log"
    scenario = Scenario((RequestSpec("r0", {"messages": [{"role": "user", "content": "Hi"}],
                                            "max_tokens": 4}),))
    with LoggingServer(log, fault=True) as server:
        follower = LogFollower(log)
        follower.skip_to_end()
        trace = asyncio.run(run_scenario(Endpoint(server.base_url, MODEL), scenario, FAST,
                                         probe=False, metrics=False))
    trace = replace(trace, server_log=excerpt(follower.read_new()))
    failure = next(f for f in check(scenario, trace) if f.kind == "server_log_error")
    return _write(scenario, trace, failure, out / "bundles")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for kind, (mode, scenario) in KINDS.items():
        with IsolationServer(mode) as server:
            trace, failure = asyncio.run(_judged(server, scenario(), kind))
        out[kind] = _write(scenario(), trace, failure, tmp_path_factory.mktemp(kind))
    out["server_log_error"] = _log_bundle(tmp_path_factory.mktemp("server_log_error"))
    with IsolationServer("swap") as server:
        trace, failure = asyncio.run(_judged(server, canary_scenario(), "cross_request_leak"))
    out["canary"] = _write(canary_scenario(), trace, failure, tmp_path_factory.mktemp("canary"))
    return out


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "server.log"
    path.write_text("INFO 01-01 00:00:00 [api_server.py:1] started\n", encoding="utf-8")
    return path


def _server(kind: str, faulty: bool, log: Path) -> IsolationServer:
    if kind == "server_log_error":
        return LoggingServer(log, fault=faulty)
    return IsolationServer(KINDS[kind][0] if faulty else "healthy")


def _replay(folder: Path, server: IsolationServer, **kw: Any) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = replay_paths([folder], Endpoint(server.base_url, ""), runs=2, out=lines.append, **kw)
    return code, lines


ALL = [*KINDS, "server_log_error"]


# --- what the campaign records ----------------------------------------------------------


def test_bundles_record_the_bar_they_were_judged_by(bundles: dict[str, Path]) -> None:
    for kind in KINDS:
        bundle = load_bundle(bundles[kind])
        judged = bundle.failure.evidence[KEY]
        assert bundle.failure.request_id in judged["subjects"], kind
        if kind == "interference_slowdown":
            assert judged["rule"]["factor"] == 5.0 and judged["alone"]["samples"]
        else:
            assert judged["noise"]["margin_threshold"] == NOISE.margin_threshold
    leak = load_bundle(bundles["cross_request_leak"]).failure
    assert set(leak.evidence[KEY]["subjects"]) == {"pa", "pb"}


def test_the_minimizers_replays_record_it_too() -> None:
    """A minimized bundle is written from what the watch's own replay reported."""
    scenario = divergence_scenario()
    with IsolationServer("perturb") as server:
        endpoint = Endpoint(server.base_url, MODEL)
        trace, failure = asyncio.run(_judged(server, scenario, "isolation_divergence"))
        victim = victim_request()
        alone = asyncio.run(calibrate_latency(endpoint, Scenario((victim,)), victim.id, runs=1))
        watch = IsolationWatch(lambda: endpoint, Calibration(NOISE, "test", True, victim, alone))
        own = watch.replay_for(failure, scenario, FAST)
        assert own is not None
        _, found = asyncio.run(own(scenario))
    assert found and all(f.evidence[KEY]["subjects"] == ["iso-probe"] for f in found)
    assert found[0].evidence[KEY]["noise"]["margin_threshold"] == NOISE.margin_threshold


# --- vlfuzz replay ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_replay_still_failing_against_the_faulty_server_and_fixed_against_a_healthy_one(
        bundles: dict[str, Path], kind: str, log: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    with _server(kind, True, log) as server:
        code, lines = _replay(bundles[kind], server, server_log=log, junit_path=junit)
    assert code == 1, lines
    assert lines[0].startswith(f"STILL FAILING 2/2  {kind}|"), lines
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"
    with _server(kind, False, log) as server:
        code, lines = _replay(bundles[kind], server, server_log=log)
    assert code == 0, lines
    assert lines[0].startswith("FIXED         0/2"), lines


def test_a_canary_leak_needs_no_logprobs(bundles: dict[str, Path]) -> None:
    leak = load_bundle(bundles["canary"]).failure
    assert leak.evidence["canary"] and leak.request_id == "rb"
    with NoLogprobs("swap") as server:
        code, lines = _replay(bundles["canary"], server)
    assert code == 1 and lines[0].startswith("STILL FAILING 2/2  cross_request_leak|"), lines
    with IsolationServer("healthy") as server:
        code, lines = _replay(bundles["canary"], server)
    assert code == 0, lines
    with NoLogprobs("swap") as server:
        proc = repro(bundles["canary"], server.base_url)
    assert proc.returncode == 1 and "planted in ra" in proc.stdout, proc.stdout
    with IsolationServer("healthy") as server:
        assert repro(bundles["canary"], server.base_url).returncode == 0


def test_a_slowdown_replay_says_what_it_compared(bundles: dict[str, Path]) -> None:
    with IsolationServer("stall") as server:
        result = asyncio.run(replay_bundle(bundles["interference_slowdown"],
                                           Endpoint(server.base_url, ""), runs=1))
    assert result.verdict is Verdict.STILL_FAILING
    assert "time to first token alone median" in result.message
    assert "(limit 5x; recorded" in result.message


def test_a_slowdown_replay_sends_under_the_recorded_deadlines(
        bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request goes out under the per-request deadlines the failure was recorded
    with, as an ordinary replay's do (they used to be dropped); deadlines the caller
    chose apply to every request instead."""
    import fuzz.replay_judges as judges

    bundle = load_bundle(bundles["interference_slowdown"])
    victim = bundle.failure.request_id
    mine = Deadlines(first_byte_s=11.0, stall_s=12.0, total_s=31.0)
    bundle = replace(bundle, fuzzer={**bundle.fuzzer,
                                     "request_deadlines": {victim: mine.to_json()}})
    sent: list[Any] = []

    async def spy(*args: Any, **kw: Any) -> Trace:
        sent.append(kw.get("request_deadlines"))
        return await run_scenario(*args, **kw)

    monkeypatch.setattr(judges, "run_scenario", spy)
    with IsolationServer("stall") as server:
        result = asyncio.run(replay_bundle(bundle, Endpoint(server.base_url, ""), runs=1))
        assert result.verdict is Verdict.STILL_FAILING, result.message
        assert sent == [{victim: mine}]
        sent.clear()
        asyncio.run(replay_bundle(bundle, Endpoint(server.base_url, ""), runs=1,
                                  deadlines=FAST))
    assert sent == [{}]


def test_an_isolation_bundle_without_logprobs_served_is_an_error(
        bundles: dict[str, Path]) -> None:
    for kind in ("isolation_divergence", "cross_request_leak"):
        with NoLogprobs("perturb") as server:
            code, lines = _replay(bundles[kind], server)
        assert code == 2 and lines[0].startswith("ERROR"), lines
        assert "no greedy answer with logprobs alone" in lines[0]


def test_a_victim_that_cannot_be_timed_alone_is_an_error(bundles: dict[str, Path]) -> None:
    with StreamsFail("stall") as server:
        code, lines = _replay(bundles["interference_slowdown"], server)
    assert code == 2 and "cannot measure the victim alone" in lines[0], lines


def test_a_target_slow_for_everyone_is_not_taken_for_interference(
        bundles: dict[str, Path]) -> None:
    """The victim is slowed in the scenario, and then just as slow alone."""
    with SlowsDown(fast=4) as server:  # a warm-up and three timed runs alone, then slow
        result = asyncio.run(replay_bundle(bundles["interference_slowdown"],
                                           Endpoint(server.base_url, ""), runs=1))
    assert result.verdict is Verdict.ERROR, result.message
    assert "the victim is now slow alone as well" in result.message


def test_a_server_log_bundle_without_the_log_is_an_error(bundles: dict[str, Path],
                                                          log: Path) -> None:
    with LoggingServer(log, fault=True) as server:
        code, lines = _replay(bundles["server_log_error"], server)
        assert code == 2 and "needs the server log" in lines[0], lines
        assert server.answers == 0  # nothing was sent
        code, lines = _replay(bundles["server_log_error"], server,
                              server_log=log.with_name("nowhere.log"))
        assert code == 2 and "does not exist" in lines[0], lines


def test_a_log_that_does_not_grow_cannot_say_fixed(bundles: dict[str, Path],
                                                   log: Path) -> None:
    with LoggingServer(log, fault=False, lines=False) as server:
        code, lines = _replay(bundles["server_log_error"], server, server_log=log)
    assert code == 2 and "did not grow" in lines[0], lines


def test_an_older_bundle_without_the_recorded_bar_still_replays(
        bundles: dict[str, Path], tmp_path: Path) -> None:
    """Bundles written before `judged_by` existed: a divergence's own threshold is the
    bar, a slowdown's factor the rule."""
    for kind in ("isolation_divergence", "interference_slowdown"):
        bundle = load_bundle(bundles[kind])
        evidence = {k: v for k, v in bundle.failure.evidence.items() if k != KEY}
        old = write_bundle(replace(bundle, failure=replace(bundle.failure, evidence=evidence)),
                           tmp_path / kind)
        with IsolationServer(KINDS[kind][0]) as server:
            code, lines = _replay(old, server)
        assert code == 1, lines


def test_cli_replay_follows_the_given_server_log(bundles: dict[str, Path], log: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(bundles["server_log_error"])
    with LoggingServer(log, fault=True) as server:
        args = ["replay", folder, "--endpoint", server.base_url, "--model", MODEL, "--runs", "1"]
        assert main(args) == 2
        assert "needs the server log" in capsys.readouterr().out
        assert main(args + ["--server-log", str(log)]) == 1
        assert "STILL FAILING 1/1  server_log_error|" in capsys.readouterr().out


# --- repro.py -------------------------------------------------------------------------------


def repro(folder: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(folder / "repro.py"), "--endpoint", url,
                           "--settle", "0.3", *args], capture_output=True, text=True, timeout=60)


SAYS = {  # what the still-failing repro.py prints
    "isolation_divergence": "position 2: alone it chose",
    "cross_request_leak": "which is what pb answers alone",
    "interference_slowdown": "time to first token alone: median",
    "server_log_error": "hermes_tool_parser.py: Error in extracting tool call from response. "
                        "-> json.decoder.JSONDecodeError: Expecting value",
}


@pytest.mark.parametrize("kind", ALL)
def test_repro_exits_1_while_failing_and_0_once_fixed(bundles: dict[str, Path], kind: str,
                                                     log: Path) -> None:
    with _server(kind, True, log) as server:
        proc = repro(bundles[kind], server.base_url, "--server-log", str(log))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "STILL FAILING" in proc.stdout and SAYS[kind] in proc.stdout, proc.stdout
    with _server(kind, False, log) as server:
        proc = repro(bundles[kind], server.base_url, "--server-log", str(log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT REPRODUCED" in proc.stdout and "PASS " in proc.stdout


def test_repro_prints_both_continuations_and_the_latencies(bundles: dict[str, Path]) -> None:
    with IsolationServer("perturb") as server:
        out = repro(bundles["isolation_divergence"], server.base_url).stdout
    assert "alone it went on ' " in out and "in the scenario ' " in out
    assert "[iso-probe alone, run 2] 200" in out
    with IsolationServer("stall") as server:
        out = repro(bundles["interference_slowdown"], server.base_url).stdout
    assert "over 3 runs; in the scenario:" in out and "(recorded: " in out
    assert "[iso-victim alone, run 3] 200" in out


def test_repro_cannot_judge_without_what_it_needs(bundles: dict[str, Path],
                                                  log: Path) -> None:
    with LoggingServer(log, fault=True) as server:
        proc = repro(bundles["server_log_error"], server.base_url)
        assert proc.returncode == 2 and "needs the server log" in proc.stdout, proc.stdout
        assert server.answers == 0
    with LoggingServer(log, fault=True, lines=False) as server:
        proc = repro(bundles["server_log_error"], server.base_url, "--server-log", str(log))
    assert proc.returncode == 2 and "did not grow" in proc.stdout, proc.stdout
    for kind in ("isolation_divergence", "cross_request_leak"):
        with NoLogprobs(KINDS[kind][0]) as server:
            proc = repro(bundles[kind], server.base_url)
        assert proc.returncode == 2, proc.stdout
        assert "no greedy answer with logprobs alone: HTTP 200 without logprobs" in proc.stdout
    with StreamsFail("stall") as server:
        proc = repro(bundles["interference_slowdown"], server.base_url)
    assert proc.returncode == 2 and "no complete answer alone: HTTP 500" in proc.stdout


def test_repro_scripts_embed_what_they_need_and_are_lint_clean(
        bundles: dict[str, Path]) -> None:
    import ast
    import io

    api = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter

    for kind, folder in bundles.items():
        source = (folder / "repro.py").read_text()
        ast.parse(source, feature_version=(3, 8))
        out = io.StringIO()
        assert api.check(source, "repro.py", Reporter(out, out)) == 0, (kind, out.getvalue())
        assert "sys.exit(main_own())" in source and "import fuzz" not in source
        data = json.loads((folder / "bundle.json").read_text())
        assert data["failure"]["kind"] == ("cross_request_leak" if kind == "canary" else kind)
