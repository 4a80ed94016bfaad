"""The leak oracle on hand-built traces, and the runner's pure `/metrics` helpers."""

from __future__ import annotations

from pathlib import Path

from fuzz.model import Scenario, Trace
from fuzz.oracles import check
from fuzz.metrics import metrics_idle, parse_metrics

IDLE = {"running": 0.0, "waiting": 0.0, "kv_cache_usage": 0.01}

# Shaped like vLLM 0.32's /metrics (labels, HELP/TYPE lines, histograms, timestamps).
PROMETHEUS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="vlfuzz-tiny-qwen3-vl"} 2.0
vllm:num_requests_running{engine="1",model_name="odd \\"name\\" {x} 9"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="vlfuzz-tiny-qwen3-vl"} 4.0 1700000000000
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="vlfuzz-tiny-qwen3-vl"} 0.125
vllm:kv_cache_usage_perc{engine="1",model_name="vlfuzz-tiny-qwen3-vl"} 0.25
vllm:num_requests_running_created 1.7e9
vllm:request_success_total{finished_reason="stop"} 12.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf"} 12.0
not a metric line at all
"""


def test_parse_metrics_sums_requests_and_takes_the_largest_kv_use() -> None:
    assert parse_metrics(PROMETHEUS) == {"running": 3.0, "waiting": 4.0, "kv_cache_usage": 0.25}


def test_parse_metrics_tolerates_older_names_and_garbage() -> None:
    assert parse_metrics("vllm:gpu_cache_usage_perc 0.5\nvllm:num_requests_running NaN\n") == {
        "kv_cache_usage": 0.5}
    assert parse_metrics("vllm:cpu_cache_usage_perc{a=\"b\"} 0.1") == {"kv_cache_usage": 0.1}
    assert parse_metrics("") == {} and parse_metrics("<html>404</html>") == {}
    assert parse_metrics("vllm:num_requests_running{engine=\"0\"} oops") == {}


def test_metrics_idle() -> None:
    assert metrics_idle(IDLE, IDLE)
    assert metrics_idle({**IDLE, "kv_cache_usage": 0.025}, IDLE)
    assert not metrics_idle({**IDLE, "running": 1.0}, IDLE)
    assert not metrics_idle({**IDLE, "waiting": 1.0}, IDLE)
    assert not metrics_idle({**IDLE, "kv_cache_usage": 0.2}, IDLE)
    assert metrics_idle({}, {})  # a server without those gauges has nothing to show


def leaks(before: dict | None, after: dict | None) -> list[str]:
    trace = Trace(requests=(), metrics_before=before, metrics_after=after, metrics_wait_s=5.0)
    return [f.signature for f in check(Scenario(requests=()), trace)]


def test_no_leak_catches_each_gauge() -> None:
    assert leaks(IDLE, {**IDLE, "running": 1.0}) == [
        "leak|-|requests still running after the scenario settled|running"]
    assert leaks(IDLE, {**IDLE, "waiting": 2.0}) == [
        "leak|-|requests still waiting after the scenario settled|waiting"]
    assert leaks(IDLE, {**IDLE, "kv_cache_usage": 0.5}) == [
        "leak|-|KV cache use above the idle baseline|kv_cache"]


def test_no_leak_is_silent_when_settled_or_unmeasured() -> None:
    assert leaks(IDLE, IDLE) == []
    assert leaks(IDLE, {**IDLE, "kv_cache_usage": 0.02}) == []
    assert leaks({**IDLE, "kv_cache_usage": 0.4}, {**IDLE, "kv_cache_usage": 0.4}) == []
    assert leaks(None, {**IDLE, "running": 3.0}) == []
    assert leaks(IDLE, None) == []
    assert leaks({"running": 0.0}, {"running": 0.0}) == []


def test_metrics_survive_the_trace_json_round_trip() -> None:
    trace = Trace(requests=(), metrics_before=IDLE, metrics_after={**IDLE, "running": 1.0},
                  metrics_wait_s=1.5)
    again = Trace.from_json(trace.to_json())
    assert again == trace and Trace.from_json({"requests": []}).metrics_before is None


def test_parse_metrics_on_a_real_vllm_page() -> None:
    """A /metrics page of vLLM 0.32.0, with `num_requests_waiting_by_reason` beside the
    gauge it must not be confused with."""
    page = (Path(__file__).parent / "fixtures" / "vllm_metrics.txt").read_text()
    assert "vllm:num_requests_waiting_by_reason" in page
    found = parse_metrics(page)
    assert set(found) == {"running", "waiting", "kv_cache_usage"}
    assert found["waiting"] == 0.0 and 0.0 <= found["kv_cache_usage"] < 0.01
