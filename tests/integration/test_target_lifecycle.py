"""The embedded target: idempotent `up`, status, death detection and restart.
Runs last among the integration tests (it kills the server on purpose)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from fuzz.model import Scenario, Trace
from fuzz.oracles import check
from fuzz.runner import probe_target
from fuzz.supervisor import EmbeddedSupervisor
from fuzz.target import embedded, server
from fuzz.target.server import ServerConfig


def test_up_is_idempotent_and_status_reports_up(real_target, target_paths):
    before = server.read_state(target_paths)
    proc = subprocess.run([sys.executable, "-m", "fuzz.cli", "target", "up"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stdout
    assert server.read_state(target_paths).pid == before.pid
    status = subprocess.run([sys.executable, "-m", "fuzz.cli", "target", "status"],
                            capture_output=True, text=True)
    assert status.returncode == 0 and '"state": "up"' in status.stdout


def test_a_killed_target_is_detected_and_restarted(real_target, target_paths):
    state = server.read_state(target_paths)
    os.killpg(state.pid, signal.SIGKILL)
    probe = asyncio.run(probe_target(real_target, deadline_s=10))
    assert probe.health_status is None
    failures = check(Scenario(requests=()), Trace(requests=(), probe_after=probe))
    assert [f.kind for f in failures] == ["target_dead"]
    # SIGKILL is asynchronous: poll (bounded) until the kernel has taken the process down.
    deadline = time.monotonic() + 15
    while server.status(target_paths)["state"] != "dead" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.status(target_paths)["state"] == "dead"

    supervisor = EmbeddedSupervisor(target_paths, ServerConfig(), real_target, log=print)
    assert not supervisor.healthy()
    supervisor.recover()
    assert supervisor.healthy() and supervisor.restarts == 1
    assert server.read_state(target_paths).pid != state.pid
    after = asyncio.run(probe_target(supervisor.endpoint))
    assert after.health_status == 200 and after.canary_ok
    assert embedded.up(target_paths, log=print).pid == server.read_state(target_paths).pid
