"""Greybox steering and the server-log oracle in whole campaigns against the fault
server.

A fault server whose `/metrics` counts what each scenario did (a counter per request,
prefix-cache hits for a prompt sent before) gives every scenario server states: the
campaign journals them with the scenario's origin, keeps the scenarios that reached
new ones and interleaves their mutants with fresh scenarios; summary.json, report.md
and report.html list the states and what reached each first. A fault server that
writes a traceback to its log while answering 200 is caught by the server-log oracle,
bundled with the log lines and minimized by replays that follow the log too.

Scenarios are fed in order (the campaign's strategy is replaced); everything asserted
is counted, nothing is timed."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from aiohttp import web
from faults import FaultServer, fault_body

import fuzz.campaign as campaign
from fuzz.bundle import load_bundle
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.events import BundleWritten, MinimizationStarted, ScenarioFinished
from fuzz.journal import read_journal
from fuzz.minimize import Budget
from fuzz.model import Deadlines, RequestSpec, Scenario
from fuzz.outputs import validate_summary
from fuzz.runner import Endpoint
from fuzz.supervisor import ExternalSupervisor

FAST = Deadlines(first_byte_s=5.0, stall_s=5.0, total_s=10.0)
FRESH_STATES = ["preemptions:1", "prefix_cache:hit_rate:0%"]  # one request, a prompt not seen
LOG_HEADER = "(APIServer pid=4242) ERROR 11-27 05:08:46 [hermes_tool_parser.py:117] "
TRACEBACK = ["Error in extracting tool call from response.",
             "Traceback (most recent call last):",
             '  File "/venv/vllm/tool_parsers/hermes_tool_parser.py", line 91, in extract',
             "    raw_function_calls = [",
             "json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column 47 (char 46)"]


def spec_of(body: Any) -> dict[str, Any] | None:
    """The fault spec a request carries in its user message (the canary carries none)."""
    try:
        spec = json.loads(body["messages"][-1]["content"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return spec if isinstance(spec, dict) and "fault" in spec else None


class CountingServer(FaultServer):
    """`/metrics` counts the chat requests that carry a fault spec (the runner's canary
    does not) as preemptions, and a spec seen before as a prefix-cache hit."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(metrics=True, **kw)
        self.counted = self.queries = self.hits = 0
        self.seen: set[str] = set()

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        labels = f'{{engine="0",model_name="{self.model}"}}'
        text = (f"vllm:num_preemptions_total{labels} {self.counted}\n"
                f"vllm:prefix_cache_queries_total{labels} {self.queries}\n"
                f"vllm:prefix_cache_hits_total{labels} {self.hits}\n")
        return web.Response(text=text, content_type="text/plain")

    async def _counted_chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        spec = spec_of(body)
        if spec is not None:
            key = json.dumps(spec, sort_keys=True)
            self.counted += 1
            self.queries += 16
            self.hits += 16 if key in self.seen else 0
            self.seen.add(key)
        return await super()._counted_chat(request)


class LoggingServer(FaultServer):
    """Writes a vLLM traceback to `log_file` (as the embedded target's log would show
    it) while answering 200 to a request whose spec says `"log": "traceback"`."""

    def __init__(self, log_file: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.log_file = log_file

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        spec = spec_of(json.loads(await request.read())) or {}
        with self.log_file.open("a") as f:
            f.write('INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n')
            if spec.get("log") == "traceback":
                f.write("".join(LOG_HEADER + line + "\n" for line in TRACEBACK))
        return await super()._chat(request)


def feed(monkeypatch: pytest.MonkeyPatch, scenarios: Iterator[Scenario]) -> None:
    """Make the campaign draw exactly these scenarios, in order."""
    monkeypatch.setattr(campaign, "scenarios",
                        lambda **kw: st.integers(0, 2**62).map(lambda _: next(scenarios)))


def fresh(i: int) -> Scenario:
    return Scenario(requests=(RequestSpec(id="r0", body=fault_body("ok", tag=f"s{i}")),))


def run(tmp_path: Path, server: FaultServer, scenarios: int, **kw: Any) -> list[dict[str, Any]]:
    """A campaign stopped after `scenarios` scenarios; its journal."""
    stop = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, ScenarioFinished) and event.index + 1 >= scenarios:
            stop.set()

    config = CampaignConfig(out_dir=tmp_path, duration_s=600.0, seed=5, deadlines=FAST,
                            examples_per_round=4, minimize=False, **kw)
    run_campaign(config, ExternalSupervisor(Endpoint(server.base_url, server.model)), on_event,
                 stop=stop)
    return read_journal(tmp_path / "journal.jsonl")


def test_server_states_are_journaled_reported_and_steer_mutants(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(monkeypatch, (fresh(i) for i in itertools.count()))
    with CountingServer() as server:
        records = run(tmp_path, server, scenarios=12)
    done = [r for r in records if r["type"] == "scenario"]
    assert len(done) == 12
    assert done[0]["origin"] == "generated" and done[0]["server_features"] == FRESH_STATES
    # once the corpus holds a scenario, each fresh scenario is followed by a mutant
    assert [r["origin"] == "generated" for r in done] == [True, False] * 6
    mutants = [r for r in done if r["origin"] != "generated"]
    assert all(set(r["origin"].split("+")) <= {"duplicate", "concurrency", "lengthen",
                                               "disconnect", "splice", "compress", "stretch",
                                               "align", "drop", "swap_images"} for r in mutants)
    assert any(r["requests"] > 1 for r in mutants), "no mutant added requests"
    reached = {f for r in done for f in r["server_features"]}
    by_fresh = {f for r in done if r["origin"] == "generated" for f in r["server_features"]}
    assert by_fresh == set(FRESH_STATES)  # one new prompt each time: nothing else
    assert reached - by_fresh, "steering reached no state that generation did not"
    assert any(f.startswith("prefix_cache:hits:") for f in reached - by_fresh)

    doc = json.loads((tmp_path / "summary.json").read_text())
    validate_summary(doc)
    rows = {r["feature"]: r for r in doc["server_states"]}
    assert set(rows) == reached
    assert rows["preemptions:1"]["origin"] == "generated"
    assert rows["preemptions:1"]["scenarios"] == sum("preemptions:1" in r["server_features"]
                                                     for r in done)
    assert all(rows[f]["origin"] != "generated" for f in reached - by_fresh)
    assert doc["steering"]["steered"] == 6 and doc["steering"]["origins"]["generated"] == {
        "scenarios": 6, "new_states": 1}
    report = (tmp_path / "report.md").read_text()
    assert f"## Server states reached ({len(reached)})" in report and "`preemptions:1`" in report
    html = (tmp_path / "report.html").read_text()
    assert 'id="server-states"' in html and html.count('class="server-state"') == len(reached)


def test_without_steering_every_scenario_is_fresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(monkeypatch, (fresh(i) for i in itertools.count()))
    with CountingServer() as server:
        records = run(tmp_path, server, scenarios=5, steering=False)
    done = [r for r in records if r["type"] == "scenario"]
    assert [r["origin"] for r in done] == ["generated"] * 5
    assert all(r["server_features"] == FRESH_STATES for r in done)
    started = next(r for r in records if r["type"] == "started")
    assert started["settings"]["steering"] is False


def test_a_traceback_in_the_log_behind_a_200_is_a_finding_that_minimizes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = tmp_path / "vllm.log"
    log_file.write_text(LOG_HEADER + "an error from before the campaign\n")
    quiet = [fresh(i) for i in range(2)]
    noisy = Scenario(requests=(
        RequestSpec(id="a", body=fault_body("ok", tag="neighbour")),
        RequestSpec(id="b", body=fault_body("ok", tag="culprit", log="traceback")),
        RequestSpec(id="c", body=fault_body("ok", tag="other"), offset_ms=20.0)))
    feed(monkeypatch, itertools.chain(quiet, [noisy], (fresh(i) for i in itertools.count(10))))
    stop = threading.Event()
    minimizing: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, MinimizationStarted):
            minimizing.append(event.signature)
        elif isinstance(event, BundleWritten) and minimizing:
            stop.set()

    config = CampaignConfig(out_dir=tmp_path / "out", duration_s=600.0, seed=5, deadlines=FAST,
                            examples_per_round=4, steering=False, server_log=log_file,
                            minimize_budget=Budget(max_replays=12, max_wall_s=120.0))
    with LoggingServer(log_file) as server:
        supervisor = ExternalSupervisor(Endpoint(server.base_url, server.model))
        run_campaign(config, supervisor, on_event, stop=stop)
    records = read_journal(tmp_path / "out" / "journal.jsonl")
    done = [r for r in records if r["type"] == "scenario"]
    assert [r["failures"] for r in done[:2]] == [[], []], "the error logged before was blamed"
    failure = next(r for r in records if r["type"] == "failure")
    assert failure["kind"] == "server_log_error" and failure["scenario"] == 2
    assert "hermes_tool_parser.py" in failure["signature"]
    assert "JSONDecodeError" in failure["message"]
    assert "log:traceback:hermes_tool_parser.py:json.decoder.JSONDecodeError" in \
        done[2]["server_features"]
    assert minimizing == [failure["signature"]]
    minimized = next(r for r in records if r["type"] == "minimized")
    assert minimized["requests_after"] == 1, minimized
    bundle = load_bundle(Path(next(r["path"] for r in reversed(records) if r["type"] == "bundle")))
    assert [r.id for r in bundle.scenario.requests] == ["b"]
    assert bundle.reproduced.k >= 1, "the replays did not follow the log"
    assert any("JSONDecodeError" in line for line in bundle.trace.server_log)
    assert not any("from before the campaign" in line for line in bundle.trace.server_log)
