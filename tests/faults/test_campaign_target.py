"""Target supervision and secrets in a campaign against the fault server: the scenario
that killed the target is the one blamed, a vanished endpoint is waited for (and the
wait reported), and no secret reaches any output."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web
from faults import FaultServer, error_json

from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import ScenarioFinished, TargetStateChanged
from fuzz.journal import read_journal
from fuzz.model import Deadlines
from fuzz.runner import CANARY_PROMPT, Endpoint
from fuzz.supervisor import ExternalSupervisor, TargetUnavailable

FAST = Deadlines(first_byte_s=2.0, stall_s=2.0, total_s=4.0)


class DyingServer(FaultServer):
    """Dies (health 500, chats 500) on the `kill_at`-th fuzz request (canaries are not
    counted); records the chat requests it gets while dead, and every chat's headers."""

    def __init__(self, kill_at: int | None = None, echo_auth: int = 0, **kw: Any) -> None:
        super().__init__(hang_s=2.0, **kw)
        self.kill_at, self.echo_auth = kill_at, echo_auth
        self.chats, self.while_dead = 0, 0
        self.headers: list[dict[str, str]] = []

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if CANARY_PROMPT not in (await request.text()):
            self.chats += 1
        if self.chats == self.kill_at and self.health == "ok":
            self.health, self.canary = "dead", "error"
        if self.health != "ok":
            self.while_dead += 1
        if self.chats <= self.echo_auth:  # a server that quotes the credentials back
            auth = request.headers.get("Authorization", "") + request.headers.get("X-Gateway-Token", "")
            return web.json_response(error_json(500, f"bad credentials {auth}"), status=500)
        return await super()._chat(request)


class FakeEmbedded:
    """An embedded-style supervisor whose restart just revives the fault server."""

    def __init__(self, server: DyingServer) -> None:
        self.server, self.restarts = server, 0
        self.endpoint = Endpoint(server.base_url, "fault-model")
        self.dead_requests_at_restart: int | None = None

    def healthy(self) -> bool:
        return self.server.health == "ok"

    def recover(self) -> None:
        self.restarts += 1
        self.dead_requests_at_restart = self.server.while_dead
        self.server.health, self.server.canary = "ok", "ok"

    def evidence(self) -> dict[str, object]:
        return {}

    def identity(self) -> dict[str, object]:
        return {"embedded": True}


def test_the_scenario_that_killed_the_target_is_blamed_and_nothing_is_sent_while_dead(
        tmp_path: Path) -> None:
    stop = threading.Event()
    finished: list[ScenarioFinished] = []

    def on_event(event: object) -> None:
        if isinstance(event, ScenarioFinished):
            finished.append(event)
            if len(finished) >= 4 and supervisor.restarts:
                stop.set()

    with DyingServer(kill_at=6) as server:
        supervisor = FakeEmbedded(server)
        config = CampaignConfig(out_dir=tmp_path, duration_s=60, seed=2, deadlines=FAST,
                                max_requests=3, minimize=False)
        summary = run_campaign(config, supervisor, on_event, stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    scenarios = [r for r in records if r["type"] == "scenario"]
    dead = [s for s in scenarios if any(sig.startswith("target_dead") for sig in s["failures"])]
    assert len(dead) == 1, [s["failures"] for s in scenarios]
    killer = dead[0]
    assert sum(s["requests"] for s in scenarios if s["index"] < killer["index"]) < 6 \
        <= sum(s["requests"] for s in scenarios if s["index"] <= killer["index"])
    # the restart comes right after the killing scenario, before the next one
    kinds = [(r["type"], r.get("index")) for r in records if r["type"] in ("scenario", "target")]
    at = kinds.index(("scenario", killer["index"]))
    assert kinds[at + 1] == ("target", None) and kinds[at + 2][0] == "scenario"
    # only the killing scenario's own later requests (and its canary) met the dead server
    assert supervisor.dead_requests_at_restart <= killer["requests"] + 1
    assert supervisor.restarts == 1 and summary.target_restarts == 1
    assert "target restarts: 1" in (tmp_path / "report.md").read_text()


def test_external_endpoint_that_goes_away_is_waited_for_and_the_wait_reported(tmp_path: Path) -> None:
    states: list[TargetStateChanged] = []
    stop = threading.Event()
    with DyingServer(kill_at=2) as server:
        supervisor = ExternalSupervisor(Endpoint(server.base_url, "fault-model"),
                                        initial_delay_s=0.05, max_delay_s=0.2, max_wait_s=30)

        def on_event(event: object) -> None:
            if isinstance(event, TargetStateChanged):
                states.append(event)
                if event.state == "waiting":  # comes back on its own, a little later
                    threading.Timer(0.6, lambda: setattr(server, "health", "ok")).start()
                    server.canary = "ok"
                elif event.state == "up" and event.waited_s is not None:
                    stop.set()

        config = CampaignConfig(out_dir=tmp_path, duration_s=60, seed=2, deadlines=FAST,
                                max_requests=3, minimize=False)
        summary = run_campaign(config, supervisor, on_event, stop=stop)
        asked_while_waiting = server.while_dead
    assert [s.state for s in states][-2:] == ["waiting", "up"]
    assert states[-1].waited_s is not None and states[-1].waited_s >= 0.5
    waits = [r for r in read_journal(tmp_path / "journal.jsonl") if r["type"] == "target"]
    assert [w["event"] for w in waits] == ["waited"] and waits[0]["wait_s"] >= 0.5
    assert summary.target_waits == [waits[0]["wait_s"]]
    assert "waits for the target: 1" in (tmp_path / "report.md").read_text()
    assert asked_while_waiting <= 4, "requests were sent into the dead server while waiting"


def test_an_endpoint_that_never_comes_back_ends_the_campaign_with_a_report(tmp_path: Path) -> None:
    with DyingServer(kill_at=1) as server:
        supervisor = ExternalSupervisor(Endpoint(server.base_url, "fault-model"),
                                        initial_delay_s=0.05, max_delay_s=0.1, max_wait_s=0.5)
        config = CampaignConfig(out_dir=tmp_path, duration_s=60, seed=2, deadlines=FAST,
                                max_requests=3, minimize=False)
        summary = run_campaign(config, supervisor)
    assert summary.stopped_because.startswith("target unavailable")
    records = read_journal(tmp_path / "journal.jsonl")
    assert [r["event"] for r in records if r["type"] == "target"] == ["unavailable"]
    assert records[-1]["type"] == "finished" and (tmp_path / "summary.json").exists()
    assert issubclass(TargetUnavailable, RuntimeError)


def _texts(root: Path) -> dict[str, bytes]:
    """Every output file's bytes, archives unpacked."""
    out: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if path.is_file():
            out[str(path)] = path.read_bytes()
            if path.name.endswith(".tar.gz"):
                with tarfile.open(path) as tar:
                    for m in tar.getmembers():
                        f = tar.extractfile(m)
                        if f is not None:
                            out[f"{path}!{m.name}"] = f.read()
    return out


def test_secrets_reach_the_server_but_no_output(tmp_path: Path) -> None:
    key, token = "canary-KEY-5f1c29e0", "canary-TOKEN-77ab03d4"
    out = tmp_path / "c"
    with DyingServer(echo_auth=3) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "fuzz.cli", "run", "--endpoint", server.base_url,
             "--header", f"X-Gateway-Token: {token}", "--duration", "4s", "--seed", "8",
             "--out", str(out), "--max-requests", "3", "--no-minimize",
             "--first-byte-timeout", "2", "--stall-timeout", "2", "--total-timeout", "4"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "VLFUZZ_API_KEY": key})
        seen = server.headers
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert any(h.get("Authorization") == f"Bearer {key}" and h.get("X-Gateway-Token") == token
               for h in seen), "the credentials were not sent"
    records = read_journal(out / "journal.jsonl")
    assert any("<redacted>" in str(r) for r in records if r["type"] == "failure"), \
        "the echoing server should have produced a redacted failure"
    files = _texts(out)
    assert any(name.endswith("bundle.json") for name in files)
    for secret in (key, token):
        for name, data in files.items():
            assert secret.encode() not in data, f"{secret} leaked into {name}"
        assert secret not in proc.stdout + proc.stderr


def test_a_generator_error_costs_one_round_not_the_campaign(tmp_path: Path, monkeypatch) -> None:
    import hypothesis.strategies as st

    import fuzz.campaign as campaign
    real = campaign.scenarios
    calls = {"n": 0}

    def flaky_scenarios(**kw: Any):
        calls["n"] += 1
        if calls["n"] == 1:  # round 0's generator is broken
            return st.integers().map(lambda _i: (_ for _ in ()).throw(OSError("broken data stream")))
        return real(**kw)

    monkeypatch.setattr(campaign, "scenarios", flaky_scenarios)
    stop = threading.Event()
    with FaultServer(hang_s=2.0) as server:
        summary = run_campaign(
            CampaignConfig(out_dir=tmp_path, duration_s=60, seed=2, deadlines=FAST, max_requests=2,
                           minimize=False),
            ExternalSupervisor(Endpoint(server.base_url, "fault-model")),
            lambda e: stop.set() if isinstance(e, ScenarioFinished) else None, stop=stop)
    records = read_journal(tmp_path / "journal.jsonl")
    assert [r["round"] for r in records if r["type"] == "generator_error"] == [0]
    assert summary.generator_errors == 1 and summary.scenarios >= 1
    assert {r["round"] for r in records if r["type"] == "scenario"} == {1}


def test_a_generator_that_always_fails_stops_the_campaign(tmp_path: Path, monkeypatch) -> None:
    import hypothesis.strategies as st

    import fuzz.campaign as campaign
    monkeypatch.setattr(campaign, "scenarios", lambda **kw: st.integers().map(
        lambda _i: (_ for _ in ()).throw(OSError("broken"))))
    with FaultServer(hang_s=2.0) as server:
        summary = run_campaign(
            CampaignConfig(out_dir=tmp_path, duration_s=60, seed=2, deadlines=FAST),
            ExternalSupervisor(Endpoint(server.base_url, "fault-model")))
        assert server.bodies == []
    assert summary.stopped_because.startswith("generator broken") and summary.generator_errors == 3
