"""Two worker processes against two in-process fault servers, sharing one campaign
folder: each sends only to its own endpoint, from its own seed stream, into its own
journal; the reports merge both; `--resume` resumes both."""

from __future__ import annotations

import json
from pathlib import Path

from faults import FaultServer

from fuzz.campaign import CampaignConfig
from fuzz.journal import read_journal
from fuzz.layout import journal_path
from fuzz.model import Deadlines
from fuzz.outputs import validate_summary
from fuzz.workers import WorkerSpec, run_workers, worker_configs

FAST = Deadlines(first_byte_s=2.0, stall_s=2.0, total_s=4.0)
SEED = 5


def run(out: Path, servers: list[FaultServer], duration_s: float, resume: bool = False):
    base = CampaignConfig(out_dir=out, duration_s=duration_s, seed=SEED, deadlines=FAST,
                          max_requests=3, minimize=False, resume=resume)
    specs = [WorkerSpec(config=c, base_url=servers[c.worker % len(servers)].base_url,
                        model="fault-model", max_target_wait_s=5.0, log=False)
             for c in worker_configs(base, 2)]
    return run_workers(specs, out_dir=out, seed=SEED, endpoint="2 endpoints", every_s=0.5)


def records_of(out: Path, worker: int, kind: str) -> list[dict]:
    return [r for r in read_journal(journal_path(out, worker)) if r["type"] == kind]


def test_two_workers_share_a_folder_and_resume_together(tmp_path: Path) -> None:
    out = tmp_path / "c"
    with FaultServer(hang_s=2.0) as a, FaultServer(hang_s=2.0) as b:
        summary, codes = run(out, [a, b], duration_s=3.0)
        assert codes == [0, 0]
        assert a.bodies and b.bodies, "each worker sends to its own endpoint"
        first = {w: len(records_of(out, w, "scenario")) for w in (0, 1)}
        used = max(r.get("t", 0.0) for w in (0, 1) for r in read_journal(journal_path(out, w)))
        resumed, codes = run(out, [a, b], duration_s=used + 4.0, resume=True)
        assert codes == [0, 0]
    assert (out / "journal.jsonl").exists() and (out / "journal-w1.jsonl").exists()
    for w in (0, 1):
        starts = records_of(out, w, "started")
        assert [(s["worker"], s["seed"], s["resumed"]) for s in starts] == \
            [(w, SEED, False), (w, SEED, True)]
        rounds = records_of(out, w, "round")
        assert all(r["seed"] == (SEED + w) * 1_000_003 + r["round"] for r in rounds)
        assert [r["round"] for r in rounds] == list(range(len(rounds))), "a round repeated"
        scenarios = records_of(out, w, "scenario")
        assert len(scenarios) > first[w], f"worker {w} did not go on after --resume"
        assert [s["index"] for s in scenarios] == list(range(len(scenarios)))
    streams = [[(s["requests"], sorted(s["features"])) for s in records_of(out, w, "scenario")]
               for w in (0, 1)]
    assert streams[0][:3] != streams[1][:3], "both workers drew the same scenarios"

    doc = json.loads((out / "summary.json").read_text())
    validate_summary(doc)
    all_scenarios = [s for w in (0, 1) for s in records_of(out, w, "scenario")]
    assert doc["scenarios"] == resumed.scenarios == len(all_scenarios)
    assert doc["requests"] == sum(s["requests"] for s in all_scenarios)
    assert doc["sessions"] == 2 and doc["stopped_because"] == "duration reached"
    assert summary.scenarios < resumed.scenarios
    assert f"requests: {doc['requests']}" in (out / "report.md").read_text()


def test_cli_workers_stop_together_on_ctrl_c_and_report_both(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "c"
    with FaultServer(hang_s=2.0) as a, FaultServer(hang_s=2.0) as b:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fuzz.cli", "run", "--endpoint", a.base_url, "--endpoint",
             b.base_url, "--workers", "2", "--duration", "10m", "--seed", "3", "--out", str(out),
             "--max-requests", "2", "--no-minimize", "--first-byte-timeout", "2",
             "--stall-timeout", "2", "--total-timeout", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not all(records_of(out, w, "scenario") if journal_path(out, w).exists() else []
                          for w in (0, 1)):
                assert proc.poll() is None, proc.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "the workers never ran a scenario"
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)  # what ^C in a terminal does
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 1), stderr[-3000:]
    assert "Traceback" not in stderr and "with 2 workers" in stdout and "report:" in stdout
    for w in (0, 1):
        assert records_of(out, w, "finished")[-1]["stopped_because"] == "interrupted"
    doc = json.loads((out / "summary.json").read_text())
    assert doc["stopped_because"] == "interrupted"
    assert doc["scenarios"] == sum(len(records_of(out, w, "scenario")) for w in (0, 1))
