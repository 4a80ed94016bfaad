"""`vlfuzz replay` against the real target: a committed regression bundle that still
fails, and a bundle whose failure is gone."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fuzz.bundle import Bundle, Reproduced, load_bundle, write_bundle
from fuzz.model import Failure, RequestSpec, Scenario, Trace
from fuzz.target.server import launch_flags

REPO = Path(__file__).resolve().parents[2]
TOOL_BUNDLE = next((REPO / "corpora" / "bundles").glob("tool-call-invalid-*-3d9134ce"))


def _replay(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fuzz.cli", "replay", *args],
                          capture_output=True, text=True, timeout=timeout_s)


def test_committed_bundle_still_fails_on_the_real_target(real_target, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = _replay(str(TOOL_BUNDLE), "--endpoint", real_target.base_url, "--runs", "2",
                   "--junit", str(junit))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "STILL FAILING" in proc.stdout
    suite = ET.parse(junit).getroot()
    cases = suite.iter("testcase")
    assert [len(c.findall("failure")) for c in cases] == [1]


# Each corpus bundle, loaded once: the vLLM flags it was recorded with beyond the
# embedded target's own (none: recorded as the tests start the target), and its kind.
ALL = sorted(p for p in (REPO / "corpora" / "bundles").iterdir() if (p / "bundle.json").exists())
_LOADED = {p: load_bundle(p) for p in ALL}
FLAGS = {p: launch_flags(b.target.get("server_argv")) or () for p, b in _LOADED.items()}

# Bundles whose failure needs what a fresh server sees first: vLLM 0.32 latches one
# structured-output backend per engine on its first structured request (vllm#43920), so
# these scenarios open with the request that latches it, and are replayed each on a newly
# started target (`--fresh-target`); and the engine-killing one.
NEEDS_FRESH = ("-log-ke-5a7760cd", "-schema-n-e6a5551a", "-log-ru-388a2de1")
FRESH = [p for p in ALL if p.name.endswith(NEEDS_FRESH)
         or _LOADED[p].failure.kind in ("target_dead", "target_wedged")]
# The rest that need other vLLM flags (another structured-output backend): replayed on
# the embedded target restarted with the flags each was recorded with, grouped by flags.
OTHER_FLAGS = sorted((p for p in ALL if p not in FRESH and FLAGS[p]), key=FLAGS.__getitem__)
# And the rest, on the test session's target as it runs.
SURVIVABLE = [p for p in ALL if p not in FRESH and p not in OTHER_FLAGS]


def test_every_survivable_corpus_bundle_still_fails_on_the_real_target(real_target):
    assert SURVIVABLE and OTHER_FLAGS and len(ALL) >= 10
    assert sum(p.name.endswith(NEEDS_FRESH) for p in FRESH) == len(NEEDS_FRESH)  # not stale
    proc = _replay(*map(str, SURVIVABLE), "--endpoint", real_target.base_url, "--runs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("STILL FAILING") == len(SURVIVABLE), proc.stdout


def test_a_fixed_bundle_replays_as_fixed(real_target, tmp_path):
    old = load_bundle(TOOL_BUNDLE)
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    bundle = Bundle(scenario=Scenario(requests=(RequestSpec(id="r0", body=body),)),
                    failure=Failure(kind="server_error", signature="server_error|500|long gone",
                                    message="HTTP 500: long gone", request_id="r0"),
                    trace=Trace(requests=()), reproduced=Reproduced(1, 1), target=old.target,
                    fuzzer=old.fuzzer, original_request_count=1)
    path = write_bundle(bundle, tmp_path / "bundles")
    proc = _replay(str(path), "--endpoint", real_target.base_url, "--runs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FIXED" in proc.stdout


def test_a_hostile_bundle_is_an_error_not_a_crash(real_target, tmp_path):
    bad = tmp_path / "evil"
    bad.mkdir()
    (bad / "bundle.json").write_text('{"format_version": 99}')
    proc = _replay(str(bad), "--endpoint", real_target.base_url)
    assert proc.returncode == 2
    assert "ERROR" in proc.stdout
    assert "Traceback" not in proc.stderr


# Last in this module: these restart the embedded target (the next test's `real_target`
# brings it back with the default flags).
def test_every_corpus_bundle_of_other_flags_still_fails_on_the_target_launched_with_them(
        target_paths, _session_target):
    assert OTHER_FLAGS
    proc = _replay(*map(str, OTHER_FLAGS), "--runs", "1", timeout_s=300 * len(OTHER_FLAGS))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("STILL FAILING") == len(OTHER_FLAGS), proc.stdout
    assert "runs with other flags; restarting it" in proc.stdout


def test_every_state_dependent_corpus_bundle_still_fails_on_a_fresh_target(
        target_paths, _session_target):
    proc = _replay(*map(str, FRESH), "--fresh-target", "--runs", "1", timeout_s=300 * len(FRESH))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("STILL FAILING") == len(FRESH), proc.stdout
    assert proc.stdout.count("starting vLLM") == len(FRESH)
