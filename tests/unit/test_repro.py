"""repro.py for every failure kind the oracles report.

Each case records a failing run against an in-process fault server (the real runner and
oracles make the bundle), writes the bundle, and then runs its repro.py as a subprocess
against a server that still has the bug (exit 1), one where it is fixed (exit 0) and
ones that leave nothing to judge (exit 2). The embedded checks are also held to the
oracles' verdicts on the same traces, both ways.
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from faults import FaultServer, fault_body
from fixable_server import Target

from fuzz.bundle import Bundle, fuzzer_info, load_bundle, validate_json, write_bundle
from fuzz.issue import recorded_after, recorded_outcomes, recorded_result
from fuzz.model import Deadlines, Failure, Media, RequestSpec, Scenario, Trace, media_url
from fuzz.oracles import check
from fuzz.repro_checks import check_for, verdict
from fuzz.runner import Endpoint, run_scenario

MODEL = "fault-model"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["location"], "additionalProperties": False}}}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}},
          "required": ["answer"]}
QUICK = Deadlines(first_byte_s=3.0, stall_s=0.5, total_s=5.0)


@dataclass(frozen=True)
class Case:
    """One failure kind: the request that shows it, what the still-failing repro must
    print, and the fault spec of the fixed server."""

    kind: str
    body: dict[str, Any]
    says: str
    fixed: dict[str, Any] = field(default_factory=lambda: {"fault": "ok"})
    deadlines: Deadlines = QUICK
    server: dict[str, Any] = field(default_factory=dict)


def _with(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**body, **extra}


CASES = [
    Case("tool_call_invalid",
         _with(fault_body("ok", tool_calls=[["get_weather", "null"]]), tools=TOOLS,
               tool_choice=NAMED),
         'arguments "null", which is JSON null, not an object',
         fixed={"fault": "ok", "tool_calls": [["get_weather", '{"location": "Lisbon"}']]}),
    Case("schema_violation",
         _with(fault_body("ok", content='{"answer": "forty-two"}'),
               response_format={"type": "json_schema",
                                "json_schema": {"name": "a", "schema": SCHEMA}}),
         "type@$.answer: expected integer, got string",
         fixed={"fault": "ok", "content": '{"answer": 42}'}),
    Case("wrong_choice_count", _with(fault_body("ok", choices=1), n=2, temperature=1.0),
         "1 choice(s)"),
    Case("usage_inconsistent",
         fault_body("ok", usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 9}),
         "prompt_tokens 5 + completion_tokens 3 != total_tokens 9"),
    Case("stream_malformed", fault_body("no_done", stream=True), "no [DONE] at the end"),
    Case("stream_error_event", fault_body("error_event", stream=True),
         "the 200 stream carried an error event: EngineCore encountered an issue"),
    Case("shape_mismatch", fault_body("ok", shape={"created": "now"}),
         "type@$.created: expected integer, got string"),
    Case("malformed_body", fault_body("garbage"), "not JSON"),
    Case("server_error", fault_body("error", status=500), "HTTP 500: EngineCore"),
    Case("transport", fault_body("reset"), "connection failed:"),
    Case("hang", fault_body("stall", stream=True, after=1), "the stall deadline (0.5s) fired"),
    Case("spec_contradiction", fault_body("ok") | {"n": 0}, "HTTP 200",
         fixed={"fault": "error", "status": 400, "message": "n must be at least 1",
                "type": "BadRequestError"}),
    Case("target_dead", fault_body("ok", kill=True),
         "/health answered 500; a chat completion then got HTTP 500: EngineCore"),
    Case("target_wedged", fault_body("ok", wedge=True),
         "/health is 200 but a chat completion failed: HTTP 500: EngineCore"),
    Case("leak", fault_body("ok", leak=1), "1.0 running requests",
         server={"metrics": True}),
]


def _scenario(case: Case) -> Scenario:
    return Scenario((RequestSpec("r0", case.body),))


def _record(case: Case, server: Target) -> Trace:
    endpoint = Endpoint(server.base_url, MODEL)
    return asyncio.run(run_scenario(endpoint, _scenario(case), case.deadlines, settle_cap_s=0.5,
                                    canary_deadline_s=5.0))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One bundle per case, recorded against a server that has the bug."""
    out = {}
    for case in CASES:
        with Target(**case.server) as server:
            trace = _record(case, server)
        found = [f for f in check(_scenario(case), trace) if f.kind == case.kind]
        assert found, (case.kind, [f.signature for f in check(_scenario(case), trace)])
        bundle = Bundle(_scenario(case), found[0], trace, (1, 1),
                        {"model_id": MODEL, "version": "0.0-fault"}, fuzzer_info(0), 1)
        out[case.kind] = write_bundle(bundle, tmp_path_factory.mktemp(case.kind))
    return out


def repro(folder: Path, server: FaultServer | str, *args: str) -> subprocess.CompletedProcess:
    url = server if isinstance(server, str) else server.base_url
    return subprocess.run([sys.executable, str(folder / "repro.py"), "--endpoint", url,
                           "--settle", "0.3", *args], capture_output=True, text=True, timeout=60)


def _ids(cases: list[Case]) -> list[str]:
    return [c.kind for c in cases]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_still_failing_exits_1_and_says_what_differs(bundles: dict[str, Path], case: Case) -> None:
    with Target(**case.server) as server:
        proc = repro(bundles[case.kind], server)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "STILL FAILING" in out and "FAIL " in out and "expected: " in out
    assert case.says in out, out


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_fixed_exits_0(bundles: dict[str, Path], case: Case) -> None:
    with Target(fixed=case.fixed, **case.server) as server:
        proc = repro(bundles[case.kind], server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT REPRODUCED in 1 run(s)" in proc.stdout and "PASS " in proc.stdout


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_checks_agree_with_the_oracles(bundles: dict[str, Path], case: Case) -> None:
    """On the recorded (failing) run the check fails; on a fixed run the oracles see no
    failure of the kind and the check passes."""
    bundle = load_bundle(bundles[case.kind])
    assert verdict(recorded_outcomes(bundle), bundle.failure.request_id) == "fail"
    with Target(fixed=case.fixed, **case.server) as server:
        trace = _record(case, server)
    assert case.kind not in {f.kind for f in check(bundle.scenario, trace)}
    chk, _ = check_for(case.kind)
    pairs = [(r.to_json(), recorded_result(trace.request(r.id))) for r in bundle.scenario.requests]
    outcomes = chk(pairs, recorded_after(trace), bundle.failure.to_json(),
                   _data(bundle))
    assert verdict(outcomes, bundle.failure.request_id) == "pass", outcomes


def _data(bundle: Bundle) -> dict[str, Any]:
    from fuzz.repro_template import check_data

    return check_data(bundle.failure.kind, dict(bundle.failure.evidence))


def test_every_bundle_validates_and_embeds_only_its_own_check(bundles: dict[str, Path]) -> None:
    for kind, folder in bundles.items():
        validate_json(json.loads((folder / "bundle.json").read_text()))
        source = (folder / "repro.py").read_text()
        own = check_for(kind)[0].__name__
        assert f"CHECK = {own}" in source
        others = {c.__name__ for c, _ in [check_for(k) for k in bundles]} - {own}
        assert not any(f"def {name}(" in source for name in others), kind
        assert "import fuzz" not in source and "jsonschema" not in source


# --- could not run, could not judge ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_exit_2(bundles: dict[str, Path]) -> None:
    proc = repro(bundles["tool_call_invalid"], f"http://127.0.0.1:{_free_port()}")
    assert proc.returncode == 2 and "COULD NOT RUN: cannot reach" in proc.stdout


def test_unhealthy_server_before_the_replay_is_exit_2(bundles: dict[str, Path]) -> None:
    with Target(health="dead") as server:
        proc = repro(bundles["target_dead"], server)
    assert proc.returncode == 2 and "not healthy before the replay" in proc.stdout
    assert server.bodies == []  # nothing was sent to a server already down


def test_an_answer_with_nothing_to_judge_is_exit_2(bundles: dict[str, Path]) -> None:
    with Target(fixed={"fault": "error", "status": 500}) as server:
        proc = repro(bundles["tool_call_invalid"], server)
    assert proc.returncode == 2, proc.stdout
    assert "UNJUDGED" in proc.stdout and "HTTP 500" in proc.stdout
    assert "COULD NOT CHECK" in proc.stdout


def test_kind_without_a_check_cannot_say_fixed(tmp_path: Path) -> None:
    body = fault_body("ok")
    scenario = Scenario((RequestSpec("r0", body),))
    with Target() as server:
        trace = _record(Case("x", body, ""), server)
        failure = Failure("brand_new_kind", "brand_new_kind|200|something", "something", "r0")
        folder = write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": MODEL},
                                     fuzzer_info(0), 1), tmp_path)
        proc = repro(folder, server)
    assert proc.returncode == 2 and "no check for failures of kind 'brand_new_kind'" in (
        folder / "repro.py").read_text()
    with Target(fixed={"fault": "error"}) as server:
        assert repro(folder, server).returncode == 1


def test_flaky_failure_is_replayed_enough_times(tmp_path: Path, bundles: dict[str, Path]) -> None:
    bundle = replace(load_bundle(bundles["server_error"]), reproduced=(1, 3))
    folder = write_bundle(bundle, tmp_path)
    assert "DEFAULT_RUNS = 8" in (folder / "repro.py").read_text()
    with Target(fixed={"fault": "ok"}, fixed_for=2) as server:  # fails from the 3rd request
        proc = repro(folder, server)
    assert proc.returncode == 1 and "STILL FAILING" in proc.stdout and "run 3 of 8" in proc.stdout


def test_fixture_urls_cannot_be_replayed_standalone(tmp_path: Path) -> None:
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "vlfuzz-fixture:/404/a.png"}}]}]}
    scenario = Scenario((RequestSpec("r0", body),))
    from fuzz.model import RequestTrace

    trace = Trace((RequestTrace("r0", 0.0, 500, body="{}", end_s=0.1),), QUICK)
    failure = Failure("server_error", "server_error|500|x", "x", "r0")
    folder = write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": MODEL},
                                 fuzzer_info(0), 1), tmp_path)
    with Target() as server:
        proc = repro(folder, server)
    assert proc.returncode == 2 and "fixture server" in proc.stdout and server.bodies == []


# --- what is sent ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base64", "base64_invalid_chars", "base64_unpadded",
                                      "base64_urlsafe", "base64_linebreaks"])
def test_same_bytes_as_the_runner_including_broken_media(tmp_path: Path, encoding: str) -> None:
    img = Media(b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "image/png", encoding=encoding)
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(img.sha256)}},
        {"type": "text", "text": json.dumps({"fault": "error", "status": 500})}]}]}
    scenario = Scenario((RequestSpec("r0", body),), {img.sha256: img})
    with Target() as server:
        trace = asyncio.run(run_scenario(Endpoint(server.base_url, MODEL), scenario, QUICK,
                                         probe=False, metrics=False))
        failure = Failure("server_error", "server_error|500|x", "x", "r0")
        folder = write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": MODEL},
                                     fuzzer_info(0), 1), tmp_path)
        proc = repro(folder, server, "--dump-bodies", str(tmp_path / "bodies"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dumped = json.loads((tmp_path / "bodies" / "r0.json").read_text())
        assert dumped == server.bodies[0]  # what the runner sent
        repro(folder, server)
        assert server.bodies[1] == server.bodies[0]  # what repro.py sends


def test_streams_are_cut_where_the_fuzzer_hung_up(tmp_path: Path) -> None:
    """A request the fuzzer disconnected is disconnected again, and not judged as a
    stream that lacks its [DONE]."""
    cut = RequestSpec("r0", fault_body("ok", stream=True, chunks=8), disconnect_after_chunks=2)
    boom = RequestSpec("r1", fault_body("error", status=500), offset_ms=50)
    scenario = Scenario((cut, boom))
    with Target() as server:
        trace = asyncio.run(run_scenario(Endpoint(server.base_url, MODEL), scenario, QUICK,
                                         probe=False, metrics=False))
        assert trace.request("r0").disconnected
        failure = next(f for f in check(scenario, trace) if f.kind == "server_error")
        folder = write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": MODEL},
                                     fuzzer_info(0), 1), tmp_path)
        proc = repro(folder, server)
    assert proc.returncode == 1
    assert "[r0 +0ms] 200" in proc.stdout and "[r1 +50ms] 500" in proc.stdout


@pytest.fixture
def corpus_bundles() -> Iterator[list[Path]]:
    root = Path(__file__).resolve().parents[2] / "corpora" / "bundles"
    yield sorted(p for p in root.iterdir() if (p / "bundle.json").is_file())


def test_committed_bundles_have_a_repro_that_fails_on_their_own_evidence(
        corpus_bundles: list[Path]) -> None:
    """The check embedded in each committed bundle's repro.py flags its recorded run."""
    assert corpus_bundles
    for folder in corpus_bundles:
        bundle = load_bundle(folder)
        assert verdict(recorded_outcomes(bundle), bundle.failure.request_id) == "fail", folder
        source = (folder / "repro.py").read_text()
        compile(source, "repro.py", "exec")
        assert f"CHECK = {check_for(bundle.failure.kind)[0].__name__}" in source


def test_generated_scripts_are_lint_clean(bundles: dict[str, Path]) -> None:
    """No undefined name hides in a branch the tests did not take."""
    import io

    api = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter

    for kind, folder in bundles.items():
        source = (folder / "repro.py").read_text()
        ast.parse(source, feature_version=(3, 8))  # the oldest Python its docstring promises
        out = io.StringIO()
        warnings = api.check(source, "repro.py", Reporter(out, out))
        assert warnings == 0, (kind, out.getvalue())


def test_committed_bundles_are_rendered_by_this_vlfuzz(corpus_bundles: list[Path]) -> None:
    """ISSUE.md and repro.py of the regression bundles are current (else: `vlfuzz bundle
    refresh DIR`)."""
    from fuzz.issue import render_issue
    from fuzz.repro_template import render_repro

    for folder in corpus_bundles:
        bundle = load_bundle(folder)
        assert (folder / "repro.py").read_text() == render_repro(bundle), folder
        assert (folder / "ISSUE.md").read_text() == render_issue(bundle), folder


FIXED_COMMITTED = {"tool_call_invalid": {"fault": "ok", "tool_calls": [
    ["get_weather", '{"location": "Lisbon, Portugal"}']]}, "target_dead": {"fault": "ok"},
    "stream_error_event": {"fault": "ok"}, "server_error": {"fault": "ok"},
    "schema_violation": {"fault": "ok", "content": "{}"}}


def test_committed_repro_scripts_fail_on_the_recorded_answers_and_pass_when_fixed(
        corpus_bundles: list[Path]) -> None:
    """Each committed repro.py, run as it ships, against a server that gives the recorded
    answers (exit 1) and against one that answers correctly (exit 0)."""
    from fixable_server import Recorded

    for folder in corpus_bundles:
        bundle = load_bundle(folder)
        with Recorded(bundle) as server:
            proc = repro(folder, server)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "STILL FAILING" in proc.stdout
        with Target(fixed=FIXED_COMMITTED[bundle.failure.kind]) as server:
            proc = repro(folder, server)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hostile_text_from_the_bundle_cannot_break_the_script(tmp_path: Path) -> None:
    nasty = 'C:\\Users\\N """ \\N{oops} \'\'\' \x00 \ud800 é'
    scenario = Scenario((RequestSpec("r0", fault_body("error")),))
    from fuzz.model import RequestTrace

    trace = Trace((RequestTrace("r0", 0.0, 500, body="{}", end_s=0.1),), QUICK)
    failure = Failure(nasty, f"{nasty}|500|{nasty}", nasty, "r0")
    folder = write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": MODEL},
                                 fuzzer_info(0), 1), tmp_path)
    source = (folder / "repro.py").read_text()
    ast.parse(source)
    namespace: dict[str, Any] = {"__name__": "not_main", "__file__": str(folder / "repro.py")}
    exec(compile(source, "repro.py", "exec"), namespace)  # noqa: S102 - our own output
    assert namespace["SIGNATURE"] == failure.signature and namespace["KIND"] == nasty
