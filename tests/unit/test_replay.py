"""Replay: verdicts, exit codes and JUnit XML, with the runner and oracles faked."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fuzz.bundle import Bundle, fuzzer_info, write_bundle
from fuzz.model import Deadlines, Failure, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.replay import ReplayResult, Verdict, check_health, replay_bundle, replay_paths


@dataclass(frozen=True)
class FakeEndpoint:
    base_url: str
    model: str
    api_key: str | None = None


ENDPOINT = FakeEndpoint("http://127.0.0.1:9", "")


def make_bundle(signature: str) -> Bundle:
    scenario = Scenario((RequestSpec("r0", {"messages": [{"role": "user", "content": "x"}]}),))
    trace = Trace((RequestTrace("r0", 0.0, 500, end_s=0.1),), Deadlines(1.0, 2.0, 3.0))
    return Bundle(scenario, Failure("server_error", signature, "boom", "r0"), trace, (3, 3),
                  {"model_id": "tiny"}, fuzzer_info(1), 5)


class Fakes:
    """A target whose failures are scripted per run: `plan[i]` is what run i shows."""

    def __init__(self, plan: list[list[str]] | None = None, healthy: bool = True) -> None:
        self.plan, self.healthy, self.calls = plan or [], healthy, []

    async def run(self, endpoint, scenario, deadlines) -> Trace:
        self.calls.append((endpoint, deadlines))
        return Trace((), deadlines)

    def check(self, scenario, trace) -> list[Failure]:
        sigs = self.plan[len(self.calls) - 1] if len(self.calls) <= len(self.plan) else []
        return [Failure("k", s, "m") for s in sigs]

    async def health(self, endpoint) -> str | None:
        return None if self.healthy else "GET /health failed: ConnectionRefusedError"

    def inject(self) -> dict:
        return {"run": self.run, "check": self.check, "health": self.health}


def replay(bundle, fakes: Fakes, **kw) -> ReplayResult:
    return asyncio.run(replay_bundle(bundle, ENDPOINT, **fakes.inject(), **kw))


def test_still_failing_when_signature_shows_in_any_run() -> None:
    fakes = Fakes([[], ["other|1|x"], ["sig|500|a", "other|1|x"]])
    r = replay(make_bundle("sig|500|a"), fakes)
    assert (r.verdict, r.failing_runs, r.runs) == (Verdict.STILL_FAILING, 1, 3)
    assert r.observed_signatures == ("other|1|x", "sig|500|a") and "other|1|x" in r.message
    assert r.line().startswith("STILL FAILING 1/3  sig|500|a")


def test_fixed_when_never_seen_and_defaults_from_bundle() -> None:
    fakes = Fakes([["unrelated"]])
    r = replay(make_bundle("sig|500|a"), fakes, runs=2)
    assert (r.verdict, r.failing_runs, r.runs) == (Verdict.FIXED, 0, 2)
    endpoint, deadlines = fakes.calls[0]
    assert endpoint.model == "tiny" and deadlines == Deadlines(1.0, 2.0, 3.0)
    fakes = Fakes()
    asyncio.run(replay_bundle(make_bundle("s"), FakeEndpoint("http://x", "mine"), runs=1,
                              deadlines=Deadlines(9, 9, 9), **fakes.inject()))
    assert fakes.calls[0] == (FakeEndpoint("http://x", "mine"), Deadlines(9, 9, 9))


def test_error_when_target_down_before_replay() -> None:
    fakes = Fakes(healthy=False)
    r = replay(make_bundle("sig"), fakes)
    assert r.verdict is Verdict.ERROR and "health" in r.message and fakes.calls == []


def test_error_when_a_run_raises_but_still_failing_wins() -> None:
    class Boom(Fakes):
        async def run(self, endpoint, scenario, deadlines):
            await super().run(endpoint, scenario, deadlines)
            if len(self.calls) == 2:
                raise RuntimeError("runner broke")
            return Trace(())

    r = replay(make_bundle("sig"), Boom([[]]))
    assert r.verdict is Verdict.ERROR and "runner broke" in r.message and r.runs == 1
    r = replay(make_bundle("sig"), Boom([["sig"]]))
    assert r.verdict is Verdict.STILL_FAILING and "runner broke" in r.message


def test_unloadable_bundle_path_is_error(tmp_path: Path) -> None:
    (tmp_path / "bad.tar.gz").write_bytes(b"junk")
    r = replay(tmp_path / "bad.tar.gz", Fakes())
    assert r.verdict is Verdict.ERROR and r.bundle_path == tmp_path / "bad.tar.gz"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for sig in ("alpha|500|a", "beta|500|b"):
        write_bundle(make_bundle(sig), tmp_path / "bundles")
    return tmp_path / "bundles"


def _run_paths(paths, fakes: Fakes, tmp_path: Path) -> tuple[int, list[str], ET.Element]:
    lines: list[str] = []
    junit = tmp_path / "reports" / "junit.xml"
    code = replay_paths(paths, ENDPOINT, runs=1, junit_path=junit, out=lines.append,
                        **fakes.inject())
    return code, lines, ET.parse(junit).getroot()


def test_exit_0_when_all_fixed(corpus: Path, tmp_path: Path) -> None:
    code, lines, root = _run_paths([corpus], Fakes(), tmp_path)
    assert code == 0 and sum(line.startswith("FIXED") for line in lines) == 2
    suite = root.find("testsuite")
    assert suite.get("name") == "vlfuzz.replay" and suite.get("tests") == "2"
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert not suite.findall("testcase/failure") and not suite.findall("testcase/error")


def test_exit_1_when_still_failing(corpus: Path, tmp_path: Path) -> None:
    code, lines, root = _run_paths([corpus], Fakes([["beta|500|b"], ["beta|500|b"]]), tmp_path)
    assert code == 1 and any(line.startswith("STILL FAILING 1/1  beta|500|b") for line in lines)
    failures = root.findall("testsuite/testcase/failure")
    assert len(failures) == 1 and "beta|500|b" in failures[0].get("message")
    assert root.find("testsuite").get("failures") == "1"


def test_corrupt_bundle_among_good_ones_is_error_not_crash(corpus: Path, tmp_path: Path) -> None:
    (corpus / "zz-corrupt.tar.gz").write_bytes(b"\x1f\x8b\x08\x00\x00broken")
    code, lines, root = _run_paths([corpus, tmp_path / "nowhere"],
                                   Fakes([["alpha|500|a"]]), tmp_path)
    assert code == 2
    assert [line.split()[0] for line in lines[:-1]] == ["STILL", "FIXED", "ERROR", "ERROR"]
    names = [c.get("name") for c in root.findall("testsuite/testcase")]
    assert names[0].startswith("alpha-500-a-") and names[1].startswith("beta-500-b-")
    assert names[2:] == ["zz-corrupt.tar.gz", "nowhere"]
    assert len(root.findall("testsuite/testcase/error")) == 2
    assert len(root.findall("testsuite/testcase/failure")) == 1


def test_empty_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    lines: list[str] = []
    assert replay_paths([tmp_path / "empty"], ENDPOINT, out=lines.append, **Fakes().inject()) == 0
    assert "no bundles" in lines[0]


def test_each_bundle_is_replayed_on_the_target_its_preparer_readies(corpus: Path,
                                                                     tmp_path: Path) -> None:
    """`vlfuzz replay` on the embedded target: `prepare` sees every bundle before its
    replay and gives the endpoint it runs on; a target that will not start is that
    bundle's ERROR, and the others still replay."""
    readied: list[str] = []

    async def prepare(bundle: Bundle) -> FakeEndpoint:
        readied.append(bundle.signature)
        if bundle.signature.startswith("beta"):
            raise RuntimeError("vLLM exited with code 1 during start-up")
        return FakeEndpoint(f"http://127.0.0.1:{len(readied)}", "")

    (corpus / "zz-corrupt.tar.gz").write_bytes(b"junk")
    fakes, lines = Fakes([["alpha|500|a"]]), []
    code = replay_paths([corpus], None, runs=1, out=lines.append, prepare=prepare,
                        **fakes.inject())
    assert readied == ["alpha|500|a", "beta|500|b"]
    assert [e.base_url for e, _ in fakes.calls] == ["http://127.0.0.1:1"]
    assert code == 2 and lines[0].startswith("STILL FAILING 1/1  alpha|500|a")
    assert lines[1].startswith("ERROR") and "vLLM exited with code 1" in lines[1]
    assert lines[2].startswith("ERROR") and "zz-corrupt" in lines[2]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_check_health_on_loopback() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert asyncio.run(check_health(FakeEndpoint(base, "m"))) is None
        assert asyncio.run(check_health(FakeEndpoint(base + "/v1", "m"))) is None
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    problem = asyncio.run(check_health(FakeEndpoint(f"http://127.0.0.1:{port}", "m"), 2.0))
    assert problem is not None and "failed" in problem


def test_triage_is_shown_and_recorded_deadlines_are_used() -> None:
    from fuzz.bundle_triage import BundleTriage
    from fuzz.junit import junit_xml
    from fuzz.replay import _bundle_runner
    from fuzz.runner import run_scenario

    bundle = replace(make_bundle("sig"), triage=BundleTriage("model-artefact"),
                     fuzzer={**fuzzer_info(1), "request_deadlines": {
                         "r0": {"first_byte_s": 9.0, "stall_s": 8.0, "total_s": 20.0}}})
    r = replay(bundle, Fakes([["sig"]]))
    assert r.line().endswith("(triage: model-artefact)")
    assert b"triage: model-artefact" in junit_xml([r])
    run = _bundle_runner(bundle, use_recorded=True)
    assert run.keywords == {"request_deadlines": {"r0": Deadlines(9.0, 8.0, 20.0)}}
    assert _bundle_runner(bundle, use_recorded=False) is run_scenario


def _tool_call_bundle(out: Path) -> Path:
    """A real `tool_call_invalid` bundle of request r0, recorded on a buggy Target."""
    from faults import fault_body
    from fixable_server import Target

    from fuzz.oracles import check
    from fuzz.runner import Endpoint, run_scenario

    scenario = Scenario((RequestSpec("r0", fault_body("ok", tool_calls=[["f", "[]"]]) | {
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "required"}),))
    with Target() as server:
        trace = asyncio.run(run_scenario(Endpoint(server.base_url, "fault-model"), scenario,
                                         Deadlines(3, 3, 5), settle_cap_s=0.2))
    failure = next(f for f in check(scenario, trace) if f.kind == "tool_call_invalid")
    return write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": "fault-model"},
                               fuzzer_info(0), 1), out)


FIXED_TOOL_CALL = {"fault": "ok", "tool_calls": [["f", "{}"]]}


def test_round_trip_against_in_process_servers(tmp_path: Path) -> None:
    """write -> validate -> load -> replay with the real runner and oracles: STILL
    FAILING against the buggy server, FIXED once fixed, ERROR when it is down."""
    from fixable_server import Target

    from fuzz.runner import Endpoint

    _tool_call_bundle(tmp_path / "bundles")
    junit = tmp_path / "junit.xml"

    def replay_against(url: str) -> tuple[int, list[str]]:
        lines: list[str] = []
        code = replay_paths([tmp_path / "bundles"], Endpoint(url, ""), runs=2,
                            junit_path=junit, out=lines.append)
        return code, lines

    with Target() as server:
        code, lines = replay_against(server.base_url)
    assert code == 1 and lines[0].startswith("STILL FAILING 2/2  tool_call_invalid|200|")
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"
    with Target(fixed=FIXED_TOOL_CALL) as server:
        code, lines = replay_against(server.base_url)
    assert code == 0 and lines[0].startswith("FIXED         0/2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, lines = replay_against(f"http://127.0.0.1:{port}")
    assert code == 2 and lines[0].startswith("ERROR") and "health" in lines[0]
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"


@pytest.mark.parametrize("lost, reason", [
    ("dies", "the target died during the run"),
    ("wedges", "the target wedged during the run"),
    ("hangs", "the bundle's request r0 got no whole answer (cut by the first_byte deadline)"),
    ("resets", "the bundle's request r0 got no whole answer ("),
])
def test_a_target_lost_during_the_replay_is_an_error_not_fixed(tmp_path: Path, lost: str,
                                                               reason: str) -> None:
    """Healthy before the replay, then lost on the bundle's own request: the bug had no
    chance to show, so its absence is no fix (it used to say FIXED)."""
    from fixable_server import Target

    from fuzz.runner import Endpoint

    class Loses(Target):
        async def _chat(self, request):  # type: ignore[no-untyped-def]
            try:
                return await super()._chat(request)
            finally:
                if lost == "dies":
                    self.health, self.canary = "dead", "error"
                elif lost == "wedges":
                    self.canary = "error"

    folder = _tool_call_bundle(tmp_path / "bundles")
    fixed = {"hangs": {"fault": "hang"}, "resets": {"fault": "reset_early"}}.get(
        lost, FIXED_TOOL_CALL)
    with Loses(fixed=fixed, fixed_for=1) as server:  # the canary after gets its own answer
        r = asyncio.run(replay_bundle(folder, Endpoint(server.base_url, ""), runs=1,
                                      deadlines=Deadlines(0.5, 0.5, 1.0)))
    assert r.verdict is Verdict.ERROR, r.line()
    assert r.message.startswith(f"1 of 1 runs could not be judged: run 1: {reason}"), r.message


def test_replay_authenticates_and_a_refused_replay_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`vlfuzz replay --api-key --header` reaches a target behind a bearer token (the
    secrets never printed); without them every request is answered 401, and that says
    nothing about the bug: ERROR, not authorised (it used to say FIXED)."""
    from guarded_server import KEY, TEAM, Guarded

    from fuzz.auth import AuthEndpoint
    from fuzz.cli import main

    folder = _tool_call_bundle(tmp_path / "bundles")
    monkeypatch.delenv("VLFUZZ_API_KEY", raising=False)
    printed: list[str] = []
    with Guarded() as server:
        url = server.base_url
        code = main(["replay", str(folder), "--endpoint", url, "--runs", "1",
                     "--api-key", KEY, "--header", f"{TEAM[0]}: {TEAM[1]}"])
        out = capsys.readouterr()
        printed += [out.out, out.err]
        assert code == 1 and "STILL FAILING 1/1  tool_call_invalid|" in out.out, out
        assert server.refused == 0
        monkeypatch.setenv("VLFUZZ_API_KEY", KEY)  # the default, as for `vlfuzz run`
        code = main(["replay", str(folder), "--endpoint", url, "--runs", "1",
                     "--header", f"{TEAM[0]}:{TEAM[1]}"])
        out = capsys.readouterr()
        printed += [out.out, out.err]
        assert code == 1 and server.refused == 0, out
        monkeypatch.delenv("VLFUZZ_API_KEY")
        code = main(["replay", str(folder), "--endpoint", url, "--model", "fault-model",
                     "--runs", "1"])
        out = capsys.readouterr()
        printed += [out.out, out.err]
        assert code == 2 and out.out.startswith("ERROR"), out
        assert "not authorised: request r0 was answered HTTP 401" in out.out
        wrong = AuthEndpoint(url, "", api_key="wrong", extra_headers=(TEAM,))
        r = asyncio.run(replay_bundle(folder, wrong, runs=1))
        assert r.verdict is Verdict.ERROR and "not authorised" in r.message, r.line()
    assert not [t for t in printed if KEY in t or TEAM[1] in t]


# --- kinds the ordinary oracles cannot judge on their own ------------------------------


def test_a_replay_that_could_not_judge_a_run_is_never_fixed() -> None:
    from fuzz.replay import verdict_of
    from fuzz.replay_judges import Tally

    assert verdict_of(Tally(3, 0, ("other",)), "s") == (
        Verdict.FIXED, "not seen in 3 runs; other failures seen: other")
    verdict, message = verdict_of(Tally(3, 0, (), ("run 2: request p gave no answer",)), "s")
    assert verdict is Verdict.ERROR
    assert message == "1 of 3 runs could not be judged: run 2: request p gave no answer"
    assert verdict_of(Tally(3, 1, ("s",), ("run 2: x",)), "s")[0] is Verdict.STILL_FAILING
    assert verdict_of(Tally(0, 0), "s")[0] is Verdict.ERROR
    assert verdict_of(Tally(2, 0, error="boom", note="5x"), "s") == (Verdict.ERROR, "boom; 5x")
    assert verdict_of(Tally(2, 2, ("s",), note="5x"), "s") == (
        Verdict.STILL_FAILING, "reproduced in 2/2 runs; 5x")


ERROR_LINE = ("(APIServer pid=7) ERROR 11-27 05:08:46 [hermes_tool_parser.py:117] "
              "Error in extracting tool call from response.")


def _log_bundle() -> Bundle:
    from fuzz.oracles.server_log import server_log_clean

    base = make_bundle("unused")
    [failure] = server_log_clean(base.scenario, Trace((), server_log=(ERROR_LINE,)))
    return replace(base, failure=failure)


class Logging(Fakes):
    """A target that writes `line` (or nothing) to its log on every run."""

    def __init__(self, log: Path, line: str | None) -> None:
        super().__init__()
        self.log, self.line = log, line

    async def run(self, endpoint, scenario, deadlines) -> Trace:
        await super().run(endpoint, scenario, deadlines)
        if self.line is not None:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(self.line + "\n")
        return Trace((), deadlines)

    def inject(self) -> dict:
        from fuzz.oracles import check

        return {"run": self.run, "check": check, "health": self.health}


def test_a_server_log_bundle_is_judged_by_following_the_log(tmp_path: Path) -> None:
    bundle, log = _log_bundle(), tmp_path / "server.log"
    log.write_text("INFO: started\n")
    fakes = Logging(log, ERROR_LINE)
    r = replay(bundle, fakes, runs=2, server_log=log)
    assert (r.verdict, r.failing_runs) == (Verdict.STILL_FAILING, 2), r.message
    fixed = Logging(log, 'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK')
    assert replay(bundle, fixed, runs=2, server_log=log).verdict is Verdict.FIXED
    quiet = replay(bundle, Logging(log, None), runs=2, server_log=log)
    assert quiet.verdict is Verdict.ERROR and "did not grow" in quiet.message
    blind = Logging(log, ERROR_LINE)
    r = replay(bundle, blind)
    assert r.verdict is Verdict.ERROR and "needs the server log" in r.message
    assert blind.calls == []  # judged unjudgeable before anything was sent
    r = replay(bundle, Logging(log, ERROR_LINE), server_log=tmp_path / "nowhere.log")
    assert r.verdict is Verdict.ERROR and "does not exist" in r.message


def test_a_traceback_logged_after_the_answer_still_fails(tmp_path: Path) -> None:
    """The server logs the traceback 1 s after answering: the log is followed until
    it has been quiet for the settle interval (here longer than that second, well
    under the cap), so the late line is still seen (a fixed short wait said FIXED)."""
    from fuzz.replay_judges import LOG_SETTLE_CAP_S

    log = tmp_path / "server.log"
    log.write_text("INFO: started\n")
    timers: list[threading.Timer] = []

    class LateLogging(Logging):
        async def run(self, endpoint, scenario, deadlines) -> Trace:
            self.calls.append((endpoint, deadlines))
            with open(self.log, "a", encoding="utf-8") as f:  # the access line, at once
                f.write('INFO: "POST /v1/chat/completions HTTP/1.1" 200 OK\n')

            def late() -> None:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(ERROR_LINE + "\n")

            timers.append(threading.Timer(1.0, late))
            timers[-1].start()
            return Trace((), deadlines)

    settle_s = min(2.0, LOG_SETTLE_CAP_S)
    try:
        r = replay(_log_bundle(), LateLogging(log, None), runs=1, server_log=log,
                   log_settle_s=settle_s)
    finally:
        for t in timers:
            t.cancel()
    assert (r.verdict, r.failing_runs) == (Verdict.STILL_FAILING, 1), r.line()


def test_log_settling_is_capped_and_validated(tmp_path: Path) -> None:
    """A log that never stops growing is judged after the cap, not waited on for ever."""
    from fuzz.replay_judges import LogFollowingRun

    log = tmp_path / "server.log"
    log.write_text("")
    with pytest.raises(ValueError):
        LogFollowingRun(Fakes().run, log, settle_s=2.0, settle_cap_s=1.0)
    stop = threading.Event()

    def chatter() -> None:
        while not stop.wait(0.02):
            with open(log, "a", encoding="utf-8") as f:
                f.write("DEBUG: busy\n")

    writer = threading.Thread(target=chatter, daemon=True)
    writer.start()
    try:
        followed = LogFollowingRun(Fakes().run, log, settle_s=0.5, settle_cap_s=0.5)
        trace = asyncio.run(followed(ENDPOINT, make_bundle("s").scenario, Deadlines(1, 1, 1)))
    finally:
        stop.set()
        writer.join(5)
    assert followed.lines > 0 and trace.server_log == ()  # returned; chatter not notable


def test_other_bundles_follow_a_given_log_for_context_only(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("")
    fakes = Logging(log, ERROR_LINE)
    fakes.plan = [["sig"]]

    def check(scenario, trace) -> list[Failure]:
        from fuzz.oracles import check as real

        return [Failure("k", "sig", "m")] + real(scenario, trace)

    r = asyncio.run(replay_bundle(make_bundle("sig"), ENDPOINT, runs=1, server_log=log,
                                  **{**fakes.inject(), "check": check}))
    assert r.verdict is Verdict.STILL_FAILING
    assert any(s.startswith("server_log_error|") for s in r.observed_signatures)
    quiet = replay(make_bundle("sig"), Logging(log, None), runs=1, server_log=log)
    assert quiet.verdict is Verdict.FIXED  # a silent log matters only to log bundles


def test_a_kind_no_oracle_here_reports_is_an_error_not_fixed() -> None:
    base = make_bundle("sig")
    bundle = replace(base, failure=replace(base.failure, kind="from_a_newer_vlfuzz"))
    fakes = Fakes()
    r = replay(bundle, fakes)
    assert r.verdict is Verdict.ERROR and "no oracle for failures of kind" in r.message
    assert fakes.calls == []


def test_the_ordinary_kinds_are_every_kind_the_oracles_report() -> None:
    """Keeps `ORDINARY_KINDS` in step with `fuzz/oracles` (a kind missing there would
    replay as ERROR)."""
    import ast

    import fuzz.oracles
    from fuzz.replay_judges import ORDINARY_KINDS

    kinds = set()
    for source in Path(fuzz.oracles.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "failure" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                kinds.add(node.args[0].value)
    assert len(kinds) > 10 and kinds <= ORDINARY_KINDS


def test_a_server_log_bundle_whose_requests_now_fail_is_not_judged(tmp_path: Path) -> None:
    """The log oracle stays silent when a response failed: such a run tells nothing."""
    log = tmp_path / "server.log"
    log.write_text("")

    class Failing(Logging):
        async def run(self, endpoint, scenario, deadlines) -> Trace:
            await super().run(endpoint, scenario, deadlines)
            return Trace((RequestTrace("r0", 0.0, 500, body="{}", end_s=0.1),), deadlines)

    r = replay(_log_bundle(), Failing(log, ERROR_LINE), runs=2, server_log=log)
    assert r.verdict is Verdict.ERROR, r.message
    assert r.message.startswith("2 of 2 runs could not be judged: run 1: request r0 failed "
                                "(HTTP 500)")
    assert any(s.startswith("server_error|500|") for s in r.observed_signatures)
