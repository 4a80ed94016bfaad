"""The pytest plugin: bundles become test items; inert without --vlfuzz-bundles.

Inner runs (in-process, for speed) replace `fuzz.pytest_plugin.replay_one` from their
conftest, so no server is needed: a bundle's verdict is read off its name (fixed /
still / anything else).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fuzz.bundle import Bundle, fuzzer_info, write_bundle
import fuzz.replay  # noqa: F401 - imported once here, not by every inner run
from fuzz.model import Deadlines, Failure, RequestSpec, RequestTrace, Scenario, Trace

pytest_plugins = ["pytester"]
# In-process inner runs re-import (and assert-rewrite) every plugin they load, ~1.5 s
# for hypothesis + benchmark; blocking them (a no-op when absent) keeps runs ~50 ms.
FAST = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

CONFTEST = '''
import fuzz.pytest_plugin as plugin
from fuzz.replay import ReplayResult, Verdict

def fake_replay(bundle_path, *, endpoint_url, model, runs):
    name = bundle_path.name
    verdict = (Verdict.FIXED if name.startswith("fixed") else
               Verdict.STILL_FAILING if name.startswith("still") else Verdict.ERROR)
    failing = runs if verdict is Verdict.STILL_FAILING else 0
    return ReplayResult(bundle_path, verdict, runs, failing, (), f"fake via {endpoint_url}",
                        0.0, name)

_real = plugin.replay_one

def pytest_configure(config):
    plugin.replay_one = fake_replay

def pytest_unconfigure(config):  # inner runs are in-process: put the real one back
    plugin.replay_one = _real
'''


def _bundle(signature: str) -> Bundle:
    scenario = Scenario((RequestSpec("r0", {"messages": [{"role": "user", "content": "x"}]}),))
    trace = Trace((RequestTrace("r0", 0.0, 500),), Deadlines())
    return Bundle(scenario, Failure("server_error", signature, "boom"), trace, (1, 1),
                  {}, fuzzer_info(), 1)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    for sig in ("fixed|500|a", "still|500|b", "zzz|500|c"):
        write_bundle(_bundle(sig), pytester.path / "bundles")
    return pytester


def _run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_inprocess(*FAST, "--vlfuzz-endpoint",
                                  "http://127.0.0.1:9", *args)


def test_bundles_become_items(inner: pytest.Pytester) -> None:
    result = _run(inner, "--vlfuzz-bundles", "bundles", "--vlfuzz-runs", "2", "-rA")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["collected 4 items", "vlfuzz-bundles .FE*",
                                 "*ERROR at setup of vlfuzz bundle zzz-500-c-*",
                                 "ERROR         0/2  zzz-500-c-*  fake via http://127.0.0.1:9",
                                 "*vlfuzz bundle still-500-b-*",
                                 "STILL FAILING 2/2  still-500-b-*"])
    assert "Traceback" not in result.stdout.str() and "runner.py" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_fixed_bundle_passes_and_k_selects(inner: pytest.Pytester) -> None:
    result = _run(inner, "--vlfuzz-bundles", "bundles", "-k", "fixed", "-v")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["vlfuzz-bundles::fixed-500-a-* PASSED*"])
    assert result.ret == pytest.ExitCode.OK


def test_missing_bundle_path_errors(inner: pytest.Pytester) -> None:
    result = _run(inner, "--vlfuzz-bundles", "no-such-dir", "-k", "no-such")
    result.assert_outcomes(errors=1)


def test_inert_without_option(inner: pytest.Pytester) -> None:
    result = inner.runpytest_inprocess(*FAST)
    result.assert_outcomes(passed=1)
    assert "vlfuzz-bundles" not in result.stdout.str()


def test_bundles_need_an_endpoint(inner: pytest.Pytester) -> None:
    result = inner.runpytest_inprocess(*FAST, "--vlfuzz-bundles", "bundles")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vlfuzz-bundles needs --vlfuzz-endpoint*"])


def test_seam_restored_after_inner_runs() -> None:
    import fuzz.pytest_plugin as plugin

    assert plugin.replay_one.__module__ == "fuzz.pytest_plugin"


def test_plugin_import_is_light() -> None:
    code = ("import sys, fuzz.pytest_plugin\n"
            "heavy = [m for m in ('aiohttp', 'fuzz.replay', 'fuzz.bundle', 'fuzz.runner',"
            " 'jsonschema') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_subprocess_pytest_replays_real_bundles_against_a_server(tmp_path: Path) -> None:
    """The whole stack in a separate pytest process: plugin -> replay -> runner ->
    oracles, against an in-process server that still has one bug and fixed the other."""
    import asyncio

    from faults import fault_body
    from fixable_server import Target

    from fuzz.oracles import check
    from fuzz.runner import Endpoint, run_scenario

    bodies = {"still": fault_body("error", status=500, message="boom"),
              "fixed": fault_body("ok", usage={"prompt_tokens": 1, "completion_tokens": 1,
                                               "total_tokens": 5})}
    with Target() as server:
        for name, body in bodies.items():
            scenario = Scenario((RequestSpec("r0", body),))
            trace = asyncio.run(run_scenario(Endpoint(server.base_url, "fault-model"), scenario,
                                             Deadlines(3, 3, 5), probe=False, metrics=False))
            failure = check(scenario, trace)[0]
            write_bundle(Bundle(scenario, failure, trace, (1, 1), {"model_id": "fault-model"},
                                fuzzer_info(0), 1), tmp_path / "bundles" / name)
    (tmp_path / "bundles" / "broken.tar.gz").write_bytes(b"not an archive")
    # Bundles replay one after another, sorted: "fixed" first, and it gets a right answer.
    with Target(fixed={"fault": "ok"}, fixed_for=1) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *FAST, "-q", "-rA", "--vlfuzz-bundles", "bundles",
             "--vlfuzz-endpoint", server.base_url, "--vlfuzz-runs", "1"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out + proc.stderr
    assert "1 failed, 1 passed, 1 error" in out, out
    assert "STILL FAILING 1/1  server_error|500|boom" in out
    assert "broken.tar.gz" in out and "rejected archive" in out


LOG_CONFTEST = '''
import fuzz.pytest_plugin as plugin
from fuzz.replay import ReplayResult, Verdict

def fake_replay(bundle_path, *, endpoint_url, model, runs, server_log=None):
    verdict = Verdict.STILL_FAILING if server_log else Verdict.ERROR
    return ReplayResult(bundle_path, verdict, runs, runs if server_log else 0, (),
                        f"server log: {server_log}", 0.0, bundle_path.name)

_real = plugin.replay_one

def pytest_configure(config):
    plugin.replay_one = fake_replay

def pytest_unconfigure(config):
    plugin.replay_one = _real
'''


def test_the_server_log_reaches_the_replay(pytester: pytest.Pytester) -> None:
    """A server-log bundle needs the target's log: the option hands it to each replay,
    and without it the bundle is an error (the real replay says why), not a pass."""
    pytester.makeconftest(LOG_CONFTEST)
    write_bundle(_bundle("server_log_error|-|x.py: boom|"), pytester.path / "bundles")
    result = _run(pytester, "--vlfuzz-bundles", "bundles", "--vlfuzz-server-log",
                  "/var/log/vllm.log", "-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*server log: /var/log/vllm.log*"])
    result = _run(pytester, "--vlfuzz-bundles", "bundles", "-rA")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*server log: None*"])


def test_a_real_server_log_bundle_without_the_log_is_an_error(tmp_path: Path) -> None:
    from fuzz.pytest_plugin import replay_one
    from fuzz.replay import Verdict

    bundle = _bundle("server_log_error|-|x.py: boom|")
    folder = write_bundle(replace(bundle, failure=replace(bundle.failure,
                                                          kind="server_log_error")), tmp_path)
    result = replay_one(folder, endpoint_url="http://127.0.0.1:9", model=None, runs=1)
    assert result.verdict is Verdict.ERROR and "needs the server log" in result.message


AUTH_CONFTEST = '''
import fuzz.pytest_plugin as plugin
from fuzz.replay import ReplayResult, Verdict

def fake_replay(bundle_path, *, endpoint_url, model, runs, api_key=None, headers=()):
    verdict = Verdict.FIXED if api_key == "k-123" and headers == (("X-Team", "blue"),) \\
        else Verdict.ERROR
    return ReplayResult(bundle_path, verdict, runs, 0, (), "not authorised", 0.0,
                        bundle_path.name)

_real = plugin.replay_one

def pytest_configure(config):
    plugin.replay_one = fake_replay

def pytest_unconfigure(config):
    plugin.replay_one = _real
'''


def test_the_credentials_reach_the_replay(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--vlfuzz-api-key (default $VLFUZZ_API_KEY) and --vlfuzz-header reach each replay;
    a malformed header is a usage error."""
    pytester.makeconftest(AUTH_CONFTEST)
    write_bundle(_bundle("fixed|500|a"), pytester.path / "bundles")
    monkeypatch.delenv("VLFUZZ_API_KEY", raising=False)
    _run(pytester, "--vlfuzz-bundles", "bundles", "--vlfuzz-api-key", "k-123",
         "--vlfuzz-header", "X-Team: blue").assert_outcomes(passed=1)
    _run(pytester, "--vlfuzz-bundles", "bundles").assert_outcomes(errors=1)
    monkeypatch.setenv("VLFUZZ_API_KEY", "k-123")
    _run(pytester, "--vlfuzz-bundles", "bundles",
         "--vlfuzz-header", "X-Team:blue").assert_outcomes(passed=1)
    result = _run(pytester, "--vlfuzz-bundles", "bundles", "--vlfuzz-header", "no-colon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_real_replay_authenticates_and_unauthorised_is_an_error(tmp_path: Path) -> None:
    """The real `replay_one` against a target behind a bearer token: with the key and
    header the bug is still seen; without them the 401s make an ERROR, not a pass."""
    import asyncio

    from faults import fault_body
    from guarded_server import KEY, TEAM, Guarded

    from fuzz.auth import AuthEndpoint
    from fuzz.oracles import check
    from fuzz.pytest_plugin import replay_one
    from fuzz.replay import Verdict
    from fuzz.runner import run_scenario

    scenario = Scenario((RequestSpec("r0", fault_body("error", status=500, message="boom")),))
    with Guarded() as server:
        endpoint = AuthEndpoint(server.base_url, "fault-model", api_key=KEY,
                                extra_headers=(TEAM,))
        trace = asyncio.run(run_scenario(endpoint, scenario, Deadlines(3, 3, 5),
                                         probe=False, metrics=False))
        failure = check(scenario, trace)[0]
        folder = write_bundle(Bundle(scenario, failure, trace, (1, 1),
                                     {"model_id": "fault-model"}, fuzzer_info(0), 1), tmp_path)
        ok = replay_one(folder, endpoint_url=server.base_url, model=None, runs=1,
                        api_key=KEY, headers=(TEAM,))
        refused = replay_one(folder, endpoint_url=server.base_url, model=None, runs=1)
    assert ok.verdict is Verdict.STILL_FAILING, ok.line()
    assert refused.verdict is Verdict.ERROR and "not authorised" in refused.message
    assert KEY not in refused.line() + ok.line()
