"""Crash, kill and ^C a campaign against the fault server, then resume it: nothing
observed is lost, nothing is counted twice, pending minimizations get finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from faults import FaultServer

from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import BundleWritten, MinimizationStarted
from fuzz.journal import read_journal
from fuzz.minimize import Budget
from fuzz.model import Deadlines
from fuzz.outputs import validate_summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=2.0, stall_s=2.0, total_s=4.0)


def cli(server: FaultServer, *args: str) -> list[str]:
    return [sys.executable, "-m", "fuzz.cli", "run", "--endpoint", server.base_url,
            "--max-requests", "3", "--no-minimize", "--first-byte-timeout", "2",
            "--stall-timeout", "2", "--total-timeout", "4", *args]


def wait_for(predicate, what: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll with a bound; fail with the subprocess' output if it died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"fuzzer exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def scenario_count(journal: Path) -> int:
    return sum(1 for r in read_journal(journal) if r["type"] == "scenario") if journal.exists() else 0


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "c"
    journal = out / "journal.jsonl"
    with FaultServer(hang_s=2.0) as server:
        proc = subprocess.Popen(cli(server, "--duration", "10m", "--seed", "11", "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: scenario_count(journal) >= 3, "three scenarios", proc=proc)
        finally:
            proc.kill()
            proc.wait(30)
        first = read_journal(journal)
        used = max(r.get("t", 0.0) for r in first)
        resumed = subprocess.run(cli(server, "--resume", str(out), "--seed", "999",
                                     "--duration", f"{used + 4:.1f}s"),
                                 capture_output=True, text=True, timeout=120)
    assert resumed.returncode in (0, 1), resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    lines = journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines), "a torn line survived the resume"
    records = [json.loads(line) for line in lines]
    starts = [r for r in records if r["type"] == "started"]
    assert [s["resumed"] for s in starts] == [False, True]
    assert {s["seed"] for s in starts} == {11}, "resume must keep the campaign's seed stream"
    scenarios = [r for r in records if r["type"] == "scenario"]
    n_first = sum(1 for r in first if r["type"] == "scenario")
    assert len(scenarios) > n_first, "the resumed session ran no scenario"
    assert [s["index"] for s in scenarios] == list(range(len(scenarios)))
    first_rounds = {s["round"] for s in scenarios[:n_first]}
    assert all(s["round"] > max(first_rounds) for s in scenarios[n_first:]), \
        "the resumed session repeated a round"
    summary = json.loads((out / "summary.json").read_text())
    validate_summary(summary)
    assert summary["sessions"] == 2
    assert summary["scenarios"] == len(scenarios)
    assert summary["requests"] == sum(s["requests"] for s in scenarios)
    assert sum(summary["statuses"].values()) == summary["requests"]
    failures = [r for r in records if r["type"] == "failure"]
    new = Counter(r["signature"] for r in failures if r["new"])
    assert all(n == 1 for n in new.values()), f"a signature was new twice: {new}"
    seen = Counter(r["signature"] for r in failures)
    assert {f["signature"]: f["count"] for f in summary["failures"]} == dict(seen)
    bundles = Counter(r["signature"] for r in records if r["type"] == "bundle")
    assert all(n == 1 for n in bundles.values()) and set(bundles) <= set(new)
    assert f"requests: {summary['requests']}" in (out / "report.md").read_text()


def test_first_interrupt_finishes_gracefully_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "c"
    with FaultServer(hang_s=2.0) as server:
        proc = subprocess.Popen(cli(server, "--duration", "10m", "--out", str(out)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: scenario_count(out / "journal.jsonl") >= 1, "a scenario", proc=proc)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode in (0, 1), stderr[-3000:]
    assert "Traceback" not in stderr and "stopping after the scenario in flight" in stderr
    records = read_journal(out / "journal.jsonl")
    assert records[-1]["type"] == "finished" and records[-1]["stopped_because"] == "interrupted"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_because"] == "interrupted"
    assert summary["scenarios"] == sum(1 for r in records if r["type"] == "scenario")
    assert (out / "report.html").exists() and "report:" in stdout


class _Crash(BaseException):
    """Stands in for the process dying in the middle of a minimization."""


def test_failure_journaled_but_never_minimized_is_minimized_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "c"
    with FaultServer(hang_s=2.0) as server:
        endpoint = Endpoint(server.base_url, "fault-model")
        config = CampaignConfig(out_dir=out, duration_s=120.0, seed=4, deadlines=FAST,
                                max_requests=3, minimize_budget=Budget(max_replays=2, max_wall_s=30))

        def crash_on_minimize(event: object) -> None:
            if isinstance(event, MinimizationStarted):
                raise _Crash(event.signature)

        with pytest.raises(_Crash) as crashed:
            run_campaign(config, ExternalSupervisor(endpoint), crash_on_minimize)
        pending = str(crashed.value)
        stop = threading.Event()
        started: list[MinimizationStarted] = []

        def watch(event: object) -> None:
            if isinstance(event, MinimizationStarted):
                started.append(event)
            if isinstance(event, BundleWritten) and started:
                stop.set()  # the pending one is done: end the resumed session

        summary = run_campaign(CampaignConfig(**{**config.__dict__, "resume": True}),
                               ExternalSupervisor(endpoint), watch, stop=stop)
    assert started[0].signature == pending and started[0].resumed
    assert [e.signature for e in started].count(pending) == 1
    records = read_journal(out / "journal.jsonl")
    minimized = Counter(r["signature"] for r in records if r["type"] == "minimized")
    assert minimized[pending] == 1 and all(n == 1 for n in minimized.values())
    assert not summary.pending_minimizations
    assert summary.failures[pending].requests_after is not None
    assert summary.sessions == 2 and os.path.exists(summary.failures[pending].bundle)
