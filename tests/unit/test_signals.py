"""Server-side signals -> features: `/metrics` pages shaped like vLLM 0.32's (the fixture
is a real page from the embedded target), log lines, the report rows, and the poller
that samples gauge peaks while a scenario runs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp.web
import pytest

from fuzz.metrics_poller import MetricsPoller
from fuzz.runner import Endpoint
from fuzz.signals import (ServerSignals, fold_peaks, log2_bucket, log_features, metric_features,
                          read_series, server_features, state_markdown, state_rows)
from fuzz.server_log import classify

PAGE = (Path(__file__).parent / "fixtures" / "vllm_metrics.txt").read_text()


def set_value(text: str, name: str, value: float, **labels: str) -> str:
    """`text` with the sample `name{...labels...}` set to `value` (exactly one line)."""
    out, hits = [], 0
    for line in text.splitlines():
        m = re.match(r"^([\w:]+)(\{[^}]*\})?\s+\S+$", line)
        if m and m.group(1) == name and all(f'{k}="{v}"' in (m.group(2) or "")
                                             for k, v in labels.items()):
            line = f"{name}{m.group(2) or ''} {float(value)!r}"
            hits += 1
        out.append(line)
    assert hits == 1, (name, labels, hits)
    return "\n".join(out) + "\n"


def signals(after: str, before: str = PAGE, peaks: dict | None = None) -> ServerSignals:
    return ServerSignals(before=read_series(before), after=read_series(after), peaks=peaks or {})


def test_read_series_from_a_real_page() -> None:
    s = read_series(PAGE)
    assert s["preemptions"] == 0.0 and s["prefix_cache_queries"] == 230.0
    assert s["mm_cache_queries"] == 8.0 and s["mm_cache_hits"] == 0.0
    assert s["finished:length"] == 5.0 and s["finished:abort"] == 0.0
    assert s["admission_rejected:max_num_queued_reqs"] == 0.0
    assert s["tool_parser:streaming:tool_call"] == 0.0  # summed over request types
    assert s["running"] == 4.0 and s["waiting:capacity"] == 0.0
    assert s["kv_cache_usage"] == pytest.approx(0.000488, rel=1e-3)
    assert s["hist:iteration_tokens:256.0"] == 40.0 and s["hist:iteration_tokens:+Inf"] == 40.0
    assert not any("created" in k or "flops" in k for k in s)


def test_read_series_sums_engines_and_tolerates_garbage() -> None:
    text = ('vllm:num_preemptions_total{engine="0"} 2.0\n'
            'vllm:num_preemptions_total{engine="1"} 3.0\n'
            'vllm:kv_cache_usage_perc{engine="0"} 0.2\nvllm:kv_cache_usage_perc{engine="1"} 0.4\n'
            "vllm:num_preemptions_created 1.7e9\nvllm:num_requests_waiting NaN\n"
            "vllm:num_requests_running oops\n# HELP vllm:x y\nnot metrics\n")
    assert read_series(text) == {"preemptions": 5.0, "kv_cache_usage": 0.4}
    assert read_series("") == {} and read_series("<html>404</html>") == {}


def test_log2_buckets() -> None:
    assert [log2_bucket(n) for n in (0, 0.5, 1, 2, 3, 4, 7, 8, 1000)] == [
        None, None, "1", "2-3", "2-3", "4-7", "4-7", "8-15", "512-1023"]


def test_nothing_happened_gives_only_trivial_features() -> None:
    assert metric_features(signals(PAGE)) == frozenset()


def test_preemptions_are_bucketed() -> None:
    one = set_value(PAGE, "vllm:num_preemptions_total", 1)
    three = set_value(PAGE, "vllm:num_preemptions_total", 3)
    assert "preemptions:1" in metric_features(signals(one))
    assert "preemptions:2-3" in metric_features(signals(three))
    assert "preemptions:1" not in metric_features(signals(three))


def test_cache_hit_rates_and_hits() -> None:
    after = set_value(PAGE, "vllm:prefix_cache_queries_total", 330)  # +100 tokens queried
    after = set_value(after, "vllm:prefix_cache_hits_total", 60)  # 60 of them hit
    after = set_value(after, "vllm:mm_cache_queries_total", 12)  # +4 images, no hit
    found = metric_features(signals(after))
    assert {"prefix_cache:hit_rate:50-75%", "prefix_cache:hits:32-63",
            "mm_cache:hit_rate:0%"} <= found
    assert not any(f.startswith("mm_cache:hits") for f in found)
    all_hits = set_value(set_value(PAGE, "vllm:mm_cache_queries_total", 10),
                         "vllm:mm_cache_hits_total", 2)
    assert {"mm_cache:hit_rate:>=75%", "mm_cache:hits:2-3"} <= metric_features(signals(all_hits))
    low = set_value(set_value(PAGE, "vllm:prefix_cache_queries_total", 330),
                    "vllm:prefix_cache_hits_total", 10)
    assert "prefix_cache:hit_rate:0-25%" in metric_features(signals(low))


def test_finish_reasons_rejections_and_tool_parser() -> None:
    after = set_value(PAGE, "vllm:request_success_total", 1, finished_reason="abort")
    after = set_value(after, "vllm:request_success_total", 10, finished_reason="length")
    after = set_value(after, "vllm:admission_rejections_total", 2, reason="max_num_queued_reqs")
    after = set_value(after, "vllm:tool_call_parser_invocations_total", 1, mode="streaming",
                      outcome="tool_call", request_type="chat_completions")
    found = metric_features(signals(after))
    assert {"finished:abort:1", "finished:length:4-7", "admission_rejected:max_num_queued_reqs:2-3",
            "tool_parser:streaming:tool_call:1"} <= found
    assert not any(f.startswith("finished:stop") for f in found)


def test_peaks_and_histogram_maxima() -> None:
    peaks = fold_peaks({}, read_series(PAGE))
    peaks = fold_peaks(peaks, {"running": 6.0, "waiting": 3.0, "waiting:capacity": 3.0,
                               "kv_cache_usage": 0.3, "preemptions": 99.0})
    peaks = fold_peaks(peaks, {"running": 1.0, "kv_cache_usage": 0.0})
    assert peaks["running"] == 6.0 and peaks["kv_cache_usage"] == 0.3
    assert "preemptions" not in peaks  # counters are not peaks
    after = PAGE
    for le, count in (("1.0", 16), ("8.0", 34), ("16.0", 34), ("32.0", 39), ("64.0", 39),
                      ("128.0", 39), ("256.0", 40)):
        after = set_value(after, "vllm:iteration_tokens_total_bucket", count, le=le)
    for le in ("512.0", "1024.0", "2048.0", "4096.0", "8192.0", "16384.0", "+Inf"):
        after = set_value(after, "vllm:iteration_tokens_total_bucket", 42, le=le)
    found = metric_features(signals(after, peaks=peaks))
    assert {"peak:running:4-7", "peak:waiting:2-3", "peak:waiting:capacity:2-3",
            "peak:kv_cache_usage:25-50%", "max:iteration_tokens:512"} <= found
    assert not any(f.startswith("peak:waiting:deferred") for f in found)


def test_kv_use_that_did_not_rise_is_not_a_state() -> None:
    idle = read_series(PAGE)["kv_cache_usage"]
    assert metric_features(signals(PAGE, peaks={"kv_cache_usage": idle})) == frozenset()


def test_a_restart_mid_scenario_makes_no_counter_features() -> None:
    before = set_value(PAGE, "vllm:num_preemptions_total", 50)
    assert metric_features(signals(PAGE, before=before)) == frozenset()


def test_server_signals_round_trip() -> None:
    s = signals(set_value(PAGE, "vllm:num_preemptions_total", 2), peaks={"running": 3.0})
    again = ServerSignals.from_json(s.to_json())
    assert again == s and metric_features(again) == metric_features(s)


VLLM_WARN = ("(APIServer pid={pid}) WARNING 11-27 05:40:54 [hf.py:839] Chat template rejected the "
             "request: Cannot apply chat template to an empty conversation. Provide at least one "
             "message.")
TOOL_WARN = ("(APIServer pid=6105) WARNING 11-27 07:35:36 [chat_utils.py:2217] Tool call "
             "'gen_tool_{n}' arguments decoded to str, not a JSON object; coercing to an empty "
             "object.")
HERMES = "(APIServer pid=13049) ERROR 11-27 05:08:46 [hermes_tool_parser.py:117] "
TRACEBACK = [HERMES + m for m in (
    "Error in extracting tool call from response.", "Traceback (most recent call last):",
    '  File "/x/json/decoder.py", line 353, in raw_decode', "    obj, end = self.scan_once(s, idx)",
    "json.decoder.JSONDecodeError: Extra data: line 1 column 43 (char 42)")]


def test_log_features_fold_numbers_and_name_tracebacks() -> None:
    lines = [VLLM_WARN.format(pid=1), VLLM_WARN.format(pid=2), TOOL_WARN.format(n=1),
             TOOL_WARN.format(n=7), *TRACEBACK,
             'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK']
    found = log_features(classify(lines))
    assert len(found) == 3  # pids and tool numbers do not split a warning
    assert "log:traceback:hermes_tool_parser.py:json.decoder.JSONDecodeError" in found
    [hf] = [f for f in found if f.startswith("log:warning:hf.py:")]
    assert hf.startswith("log:warning:hf.py:Chat template rejected the request: Cannot apply")
    [tool] = [f for f in found if f.startswith("log:warning:chat_utils.py:")]
    assert "'gen_tool_<n>' arguments decoded to str" in tool
    assert all(len(f.split(":", 3)[3]) <= 100 for f in (hf, tool))


def test_server_features_combine_metrics_and_log() -> None:
    assert server_features(None) == frozenset()
    s = signals(set_value(PAGE, "vllm:num_preemptions_total", 1))
    found = server_features(s, TRACEBACK)
    traceback = "log:traceback:hermes_tool_parser.py:json.decoder.JSONDecodeError"
    assert {"preemptions:1", traceback} <= found


def test_state_rows_and_markdown() -> None:
    counts = {"log:warning:hf.py:x": 1, "preemptions:1": 3, "prefix_cache:hit_rate:0%": 9,
              "never": 0}
    rows = state_rows(counts, {"preemptions:1": 12.0, "prefix_cache:hit_rate:0%": 1.0})
    assert [r["feature"] for r in rows] == ["preemptions:1", "prefix_cache:hit_rate:0%",
                                            "log:warning:hf.py:x"]
    assert rows[0] == {"feature": "preemptions:1", "family": "preemptions", "scenarios": 3,
                       "first_seen": 12.0}
    assert rows[2]["first_seen"] is None
    text = state_markdown(rows)
    assert text.startswith("## Server states reached (3)")
    assert "| `preemptions:1` | 3 | 12s |" in text and "**log**" in text
    assert "None observed" in state_markdown([])


# --- the poller against a fake /metrics --------------------------------------------

def _page(running: float, waiting: float, kv: float, preemptions: float) -> str:
    page = set_value(PAGE, "vllm:num_requests_running", running)
    page = set_value(page, "vllm:num_requests_waiting", waiting)
    page = set_value(page, "vllm:kv_cache_usage_perc", kv)
    return set_value(page, "vllm:num_preemptions_total", preemptions)


async def _with_server(pages: list[str], body, status: int = 200,  # type: ignore[no-untyped-def]
                       hang: bool = False):
    """Serve `pages` in turn (the last one repeated) at /metrics, or never answer if
    `hang`; `body(endpoint, served)` sees the live count of /metrics requests received."""
    served = {"n": 0}
    release = asyncio.Event()

    async def metrics(_request: aiohttp.web.Request) -> aiohttp.web.Response:
        page = pages[min(served["n"], len(pages) - 1)]
        served["n"] += 1
        if hang:
            await release.wait()
        return aiohttp.web.Response(text=page, status=status)

    app = aiohttp.web.Application()
    app.router.add_get("/metrics", metrics)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await body(Endpoint(f"http://127.0.0.1:{port}", "m"), served), served["n"]
    finally:
        release.set()  # let a hanging handler finish, or cleanup waits for it
        await runner.cleanup()


async def _until(condition, cap_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for `condition()` to hold, polling; fail after a generous `cap_s`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + cap_s
    while not condition():
        if loop.time() > give_up:
            pytest.fail(f"condition not met within {cap_s} s")
        await asyncio.sleep(0.01)


def test_poller_catches_peaks_that_are_gone_by_the_end() -> None:
    pages = [_page(0, 0, 0.0, 0), _page(3, 0, 0.1, 0), _page(8, 5, 0.6, 1),
             _page(2, 0, 0.2, 2), _page(0, 0, 0.0, 2)]

    async def body(endpoint: Endpoint, served: dict[str, int]) -> ServerSignals | None:
        async with MetricsPoller(endpoint, every_s=0.01) as poller:
            # Reads are sequential on one connection, so once read len(pages)+1 has
            # reached the server every page was read and folded by the poller.
            await _until(lambda: served["n"] > len(pages))
        return poller.signals

    s, served = asyncio.run(_with_server(pages, body))
    assert s is not None and len(pages) < s.samples <= served
    assert s.before["running"] == 0 and s.after["running"] == 0
    expected: dict[str, float] = {}
    for page in pages:
        expected = fold_peaks(expected, read_series(page))
    assert s.peaks == expected  # the peak seen is the peak served
    assert s.peaks["running"] == 8 and s.peaks["waiting"] == 5 and s.peaks["kv_cache_usage"] == 0.6
    assert {"preemptions:2-3", "peak:running:8-15", "peak:waiting:4-7",
            "peak:kv_cache_usage:50-75%"} <= metric_features(s)


def test_poller_closes_its_session_when_cancelled_during_the_baseline() -> None:
    async def body(endpoint: Endpoint, served: dict[str, int]) -> bool:
        poller = MetricsPoller(endpoint, baseline_deadline_s=60.0, deadline_s=60.0)

        async def scenario() -> None:
            async with poller:
                pytest.fail("the baseline read never answers")

        task = asyncio.ensure_future(scenario())
        await _until(lambda: served["n"] >= 1)  # the baseline read is waiting on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert poller._session is not None
        return poller._session.closed

    closed, _ = asyncio.run(_with_server([PAGE], body, hang=True))
    assert closed


def test_poller_baseline_gives_up_sooner_than_the_sample_deadline() -> None:
    async def body(endpoint: Endpoint,
                   _served: dict[str, int]) -> tuple[float, ServerSignals | None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with MetricsPoller(endpoint, baseline_deadline_s=0.2, deadline_s=60.0) as poller:
            entered_s = loop.time() - started
        return entered_s, poller.signals

    (entered_s, s), _ = asyncio.run(_with_server([PAGE], body, hang=True))
    assert s is None and entered_s < 30.0  # the baseline's 0.2 s, not the 60 s deadline
    assert MetricsPoller(Endpoint("http://127.0.0.1:9", "m")).baseline_deadline_s == 0.5
    with pytest.raises(ValueError, match="baseline_deadline_s"):
        MetricsPoller(Endpoint("http://127.0.0.1:9", "m"), baseline_deadline_s=0)


def test_poller_without_metrics_gives_none() -> None:
    async def body(endpoint: Endpoint, _served: dict[str, int]) -> ServerSignals | None:
        async with MetricsPoller(endpoint, every_s=0.05) as poller:
            await asyncio.sleep(0.1)
        return poller.signals

    s, _ = asyncio.run(_with_server(["gone"], body, status=404))
    assert s is None

    async def nothing_listening() -> ServerSignals | None:
        async with MetricsPoller(Endpoint("http://127.0.0.1:9", "m"), every_s=0.05,
                                 deadline_s=0.5) as poller:
            await asyncio.sleep(0.05)
        return poller.signals

    assert asyncio.run(nothing_listening()) is None
