"""A generic 5xx or SSE error event gets the cause the server log names as its signature's
detail (`|log:<cause>`), so two engine bugs behind one "Internal server error" are two
signatures; replays and repro.py, which may see no log, still match those bundles."""

from __future__ import annotations

import ast
import asyncio
import json
from dataclasses import dataclass

from fuzz.bundle import Bundle, fuzzer_info
from fuzz.model import Deadlines, Failure, Probe, RequestSpec, RequestTrace, Scenario, Trace
from fuzz.oracles import check
from fuzz.replay import Verdict, replay_bundle
from fuzz.repro_template import render_repro
from fuzz.server_log import excerpt, find_log_cause, log_cause
from fuzz.signature import is_generic_message, signatures_match, without_log_cause

HEALTHY = Probe(health_status=200, canary_ok=True, canary_latency_s=0.1)
GENERIC_BODY = json.dumps({"error": {"message": "Internal server error",
                                     "type": "InternalServerError", "param": None,
                                     "code": 500}})

# (a) multimodal cache drift: a WARNING and an ERROR, both naming the request.
CACHE_DRIFT = """\
(EngineCore pid=2597) WARNING 11-27 09:12:06 [core.py:2011] Multi-modal cache miss for request chatcmpl-afb142d255392273-be2a6f5e (mm_hashes=['677c1eed7de23034a7828933fcccca7b5d8f9397e0d3410f2c83edb5856af49e']): P0/P1 cache drift; returning a retryable response so the items are resent with data.
(APIServer pid=2326) ERROR 11-27 09:12:06 [serving.py:203] Request chatcmpl-afb142d255392273 failed with an internal error during generation
""".splitlines()
CACHE_DRIFT_AGAIN = """\
(EngineCore pid=8811) WARNING 11-28 17:40:59 [core.py:2011] Multi-modal cache miss for request chatcmpl-0c3d9e7a11f2b604-19ac03ff (mm_hashes=['a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9']): P0/P1 cache drift; returning a retryable response so the items are resent with data.
(APIServer pid=8790) ERROR 11-28 17:40:59 [serving.py:203] Request chatcmpl-0c3d9e7a11f2b604 failed with an internal error during generation
""".splitlines()

# (b) an engine-side grammar compile error: a traceback ending in the exception.
GRAMMAR = """\
(EngineCore pid=2597) ERROR 11-27 09:30:41 [structured_output.py:118] Failed to compile the grammar for request chatcmpl-0d93be1c7f2a4e55-3c9d1e07
(EngineCore pid=2597) ERROR 11-27 09:30:41 [structured_output.py:118] Traceback (most recent call last):
(EngineCore pid=2597) ERROR 11-27 09:30:41 [structured_output.py:118]   File "/opt/vllm/lib/python3.12/site-packages/vllm/v1/structured_output/backend_xgrammar.py", line 97, in compile_grammar
(EngineCore pid=2597) ERROR 11-27 09:30:41 [structured_output.py:118]     ctx = self.compiler.compile_json_schema(grammar_spec, any_whitespace=True)
(EngineCore pid=2597) ERROR 11-27 09:30:41 [structured_output.py:118] RuntimeError: [09:30:41] /project/cpp/grammar_parser.cc:402: Unsupported JSON schema keyword "patternProperties" at position 1873
(APIServer pid=2326) ERROR 11-27 09:30:41 [serving.py:203] Request chatcmpl-0d93be1c7f2a4e55 failed with an internal error during generation
""".splitlines()
GRAMMAR_AGAIN = """\
(EngineCore pid=77) ERROR 12-01 23:05:13 [structured_output.py:118] Failed to compile the grammar for request chatcmpl-5e5e0b7c2d1a9f83-a0b1c2d3
(EngineCore pid=77) ERROR 12-01 23:05:13 [structured_output.py:118] Traceback (most recent call last):
(EngineCore pid=77) ERROR 12-01 23:05:13 [structured_output.py:118]   File "/srv/venv/lib/python3.12/site-packages/vllm/v1/structured_output/backend_xgrammar.py", line 97, in compile_grammar
(EngineCore pid=77) ERROR 12-01 23:05:13 [structured_output.py:118]     ctx = self.compiler.compile_json_schema(grammar_spec, any_whitespace=True)
(EngineCore pid=77) ERROR 12-01 23:05:13 [structured_output.py:118] RuntimeError: [23:05:13] /project/cpp/grammar_parser.cc:402: Unsupported JSON schema keyword "patternProperties" at position 52
(APIServer pid=61) ERROR 12-01 23:05:13 [serving.py:203] Request chatcmpl-5e5e0b7c2d1a9f83 failed with an internal error during generation
""".splitlines()


def chunk(rid: str, content: str) -> str:
    return json.dumps({"id": rid, "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [{"index": 0, "delta": {"content": content},
                                                  "finish_reason": None}]})


def error_event(code: int = 500) -> str:
    return json.dumps({"error": {"message": "Internal server error",
                                 "type": "InternalServerError", "code": code}})


def scenario(stream: bool = False) -> Scenario:
    body = {"messages": [{"role": "user", "content": "x"}], "stream": stream}
    return Scenario(requests=(RequestSpec(id="r1", body=body),))


def non_stream(log: list[str] | tuple[str, ...] = (), body: str = GENERIC_BODY) -> Trace:
    rt = RequestTrace(id="r1", sent_s=0.0, status=500, end_s=0.1, body=body)
    return Trace(requests=(rt,), deadlines=Deadlines(1.0, 2.0, 3.0), probe_after=HEALTHY,
                 server_log=excerpt(log))


def stream(rid: str, log: list[str] | tuple[str, ...] = ()) -> Trace:
    events = (chunk(rid, "a"), error_event(), "[DONE]")
    rt = RequestTrace(id="r1", sent_s=0.0, status=200, end_s=0.1, events=events)
    return Trace(requests=(rt,), probe_after=HEALTHY, server_log=excerpt(log))


def failure_of(kind: str, trace: Trace, stream_: bool = False) -> Failure:
    found = [f for f in check(scenario(stream_), trace) if f.kind == kind]
    assert len(found) == 1, found
    return found[0]


def test_the_two_real_causes_split_one_generic_500() -> None:
    drift = failure_of("server_error", non_stream(CACHE_DRIFT))
    grammar = failure_of("server_error", non_stream(GRAMMAR))
    assert drift.signature != grammar.signature
    for f in (drift, grammar):
        assert f.signature.startswith("server_error|500|Internal server error|log:")
        assert without_log_cause(f.signature) == "server_error|500|Internal server error"
        assert f.evidence["log_cause"] and f.evidence["log_cause_lines"]
    assert "Multi-modal cache miss" in drift.signature
    assert "RuntimeError: " in grammar.signature and "patternProperties" in grammar.signature
    assert "failed with an internal error" not in drift.signature + grammar.signature


def test_the_two_real_causes_split_one_generic_stream_error_event() -> None:
    drift = failure_of("stream_error_event", stream("chatcmpl-afb142d255392273", CACHE_DRIFT),
                       True)
    grammar = failure_of("stream_error_event", stream("chatcmpl-0d93be1c7f2a4e55", GRAMMAR),
                         True)
    assert drift.signature != grammar.signature
    assert drift.signature.startswith(
        "stream_error_event|200|Internal server error|code=500|log:Multi-modal cache miss")
    assert drift.evidence["log_cause_by"] == "request id"


def test_the_cause_is_the_same_across_ids_pids_times_and_hashes() -> None:
    for first, again in ((CACHE_DRIFT, CACHE_DRIFT_AGAIN), (GRAMMAR, GRAMMAR_AGAIN)):
        a, b = non_stream(first), non_stream(again)
        cause = log_cause(a, a.requests[0])
        assert cause is not None and cause == log_cause(b, b.requests[0])
        assert len(cause) <= 81
        assert failure_of("server_error", a).signature == failure_of("server_error", b).signature


def test_without_log_lines_the_signature_is_the_old_one() -> None:
    f = failure_of("server_error", non_stream())
    assert f.signature == "server_error|500|Internal server error"
    assert "log_cause" not in f.evidence
    empty = json.dumps({"error": {"message": "", "code": 500}})
    assert failure_of("server_error", non_stream(body=empty)).signature == "server_error|500|"
    f = failure_of("stream_error_event", stream("chatcmpl-afb142d255392273"), True)
    assert f.signature == "stream_error_event|200|Internal server error|code=500"


def test_an_empty_message_gets_the_cause_too() -> None:
    empty = json.dumps({"error": {"message": "", "code": 500}})
    f = failure_of("server_error", non_stream(CACHE_DRIFT, body=empty))
    assert f.signature.startswith("server_error|500||log:Multi-modal cache miss")
    assert without_log_cause(f.signature) == "server_error|500|"


def test_a_specific_message_is_untouched() -> None:
    body = json.dumps({"error": {"message": "Qwen3VLProcessor got an unexpected head_dim",
                                 "code": 500}})
    f = failure_of("server_error", non_stream(CACHE_DRIFT, body=body))
    assert f.signature == "server_error|500|Qwen3VLProcessor got an unexpected head_dim"
    assert "log_cause" not in f.evidence
    assert not is_generic_message("Qwen3VLProcessor got an unexpected head_dim")
    assert all(map(is_generic_message, ["", "Internal server error", "Internal Server Error.",
                                        "(empty body)"]))


def test_the_event_naming_the_request_wins_over_others() -> None:
    trace = stream("chatcmpl-afb142d255392273", GRAMMAR + CACHE_DRIFT)
    found = find_log_cause(trace, trace.requests[0])
    assert found is not None and found.by_id and found.cause.startswith("Multi-modal cache")
    trace = stream("chatcmpl-0d93be1c7f2a4e55", GRAMMAR + CACHE_DRIFT)
    assert log_cause(trace, trace.requests[0]).startswith("RuntimeError: ")


def test_two_causes_and_no_id_give_no_cause() -> None:
    trace = non_stream(CACHE_DRIFT + GRAMMAR)
    assert log_cause(trace, trace.requests[0]) is None
    assert failure_of("server_error", trace).signature == "server_error|500|Internal server error"
    trace = stream("chatcmpl-ffffffffffffffff", CACHE_DRIFT + GRAMMAR)
    assert log_cause(trace, trace.requests[0]) is None


def test_the_wrapper_error_alone_is_no_cause() -> None:
    trace = non_stream(CACHE_DRIFT[1:])
    assert log_cause(trace, trace.requests[0]) is None


def test_signatures_match_with_and_without_log() -> None:
    old = "server_error|500|Internal server error"
    drift, grammar = old + "|log:Multi-modal cache miss", old + "|log:RuntimeError: x"
    assert signatures_match(drift, old, have_log=False)
    assert signatures_match(drift, drift, have_log=True)
    assert not signatures_match(drift, grammar, have_log=True)
    assert signatures_match(drift, grammar, have_log=False)
    assert signatures_match(old, drift, have_log=True)  # a bundle from before causes
    assert signatures_match(old, old, have_log=True)
    assert not signatures_match(old, "server_error|500|other", have_log=False)
    assert without_log_cause("stream_error_event|200|x|code=500|log:y") == \
        "stream_error_event|200|x|code=500"
    assert without_log_cause("hang|-|phrase|stall") == "hang|-|phrase|stall"


# --- replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeEndpoint:
    base_url: str
    model: str


def bundle_of(trace: Trace) -> Bundle:
    f = failure_of("server_error", trace)
    return Bundle(scenario(), f, trace, (3, 3), {"model_id": "tiny"}, fuzzer_info(1), 5)


def replay_with(bundle: Bundle, trace: Trace) -> Verdict:
    async def run(endpoint, scenario_, deadlines) -> Trace:
        return trace

    async def health(endpoint) -> str | None:
        return None

    result = asyncio.run(replay_bundle(bundle, FakeEndpoint("http://127.0.0.1:9", "m"),
                                       runs=2, run=run, health=health))
    return result.verdict


def test_a_replay_without_log_matches_a_bundle_with_a_log_cause() -> None:
    bundle = bundle_of(non_stream(CACHE_DRIFT))
    assert "|log:" in bundle.signature
    assert replay_with(bundle, non_stream()) is Verdict.STILL_FAILING


def test_a_replay_with_log_tells_the_causes_apart() -> None:
    bundle = bundle_of(non_stream(CACHE_DRIFT))
    assert replay_with(bundle, non_stream(CACHE_DRIFT_AGAIN)) is Verdict.STILL_FAILING
    assert replay_with(bundle, non_stream(GRAMMAR)) is Verdict.FIXED


def test_an_old_bundle_without_a_cause_matches_as_before() -> None:
    bundle = bundle_of(non_stream())
    assert bundle.signature == "server_error|500|Internal server error"
    assert replay_with(bundle, non_stream(GRAMMAR)) is Verdict.STILL_FAILING
    assert replay_with(bundle, non_stream()) is Verdict.STILL_FAILING


def test_repro_py_says_it_does_not_read_the_log() -> None:
    with_cause = render_repro(bundle_of(non_stream(CACHE_DRIFT)))
    ast.parse(with_cause)
    assert "does not read the log" in with_cause
    assert "does not read the log" not in render_repro(bundle_of(non_stream()))


def test_a_cause_naming_another_request_of_the_scenario_is_not_a_guess() -> None:
    streamed = RequestTrace(id="r2", sent_s=0.0, status=200, end_s=0.1,
                            events=(chunk("chatcmpl-0d93be1c7f2a4e55", "a"), error_event(),
                                    "[DONE]"))
    plain = RequestTrace(id="r1", sent_s=0.0, status=500, end_s=0.1, body=GENERIC_BODY)
    trace = Trace(requests=(plain, streamed), server_log=excerpt(GRAMMAR + CACHE_DRIFT))
    assert log_cause(trace, plain).startswith("Multi-modal cache miss")
    assert log_cause(trace, streamed).startswith("RuntimeError: ")


def test_the_cause_does_not_count_the_images() -> None:
    two = [CACHE_DRIFT_AGAIN[0].replace("']", "', '" + "9f" * 32 + "']")]
    assert two[0].count("'") == 4
    a, b = non_stream(CACHE_DRIFT), non_stream(two)
    cause = log_cause(a, a.requests[0])
    assert cause is not None and cause == log_cause(b, b.requests[0])
