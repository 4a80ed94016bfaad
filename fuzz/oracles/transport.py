"""Oracles on how the server answered at all: status, connection, time, liveness."""

from __future__ import annotations

from fuzz.model import CHAT_PATH, Failure, Scenario, Trace
from fuzz.oracles.reading import (error_message, failure, head, loads_strict, log_detail,
                                  pairs)
from fuzz.oracles.registry import oracle

_JSON_PATHS = (CHAT_PATH, "/v1/completions", "/v1/embeddings", "/tokenize", "/detokenize")
_PHRASES = {"first_byte": "no response within the first-byte deadline",
            "stall": "stream stalled between chunks",
            "total": "request exceeded the total deadline"}


@oracle
def no_server_error(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A server must never answer 5xx; the message is vLLM's `error.message`, and when
    that is generic, the cause the server log names is the signature's detail."""
    out = []
    for spec, rt in pairs(scenario, trace):
        if rt.status is not None and rt.status >= 500:
            msg = error_message(rt.body)
            detail, from_log = log_detail(trace, rt, msg)
            out.append(failure("server_error", rt.status, msg, detail=detail,
                               request_id=rt.id,
                               summary=f"HTTP {rt.status}: {head(msg, 500)}",
                               evidence={"status": rt.status, "path": spec.path,
                                         "error_head": head(rt.body), **from_log}))
    return out


@oracle
def no_transport_failure(scenario: Scenario, trace: Trace) -> list[Failure]:
    """The connection must not fail (refused, reset, truncated) unless the client hung up
    on purpose or a deadline cut it; a 200 JSON answer must be JSON."""
    out = []
    for spec, rt in pairs(scenario, trace):
        if rt.error is not None and rt.deadline is None and not rt.disconnected:
            out.append(failure("transport", rt.status, rt.error, request_id=rt.id,
                               evidence={"status": rt.status, "error": head(rt.error),
                                         "chunks_received": len(rt.chunk_times_s)}))
            continue
        judged = (rt.status == 200 and rt.error is None and rt.deadline is None
                  and not rt.disconnected and not rt.body_truncated and not spec.stream)
        content_type = next((v for k, v in rt.headers.items()
                             if k.lower() == "content-type"), "")
        json_expected = spec.path in _JSON_PATHS or "json" in content_type
        if not (judged and json_expected):
            continue
        if rt.body is None:
            problem, detail = "body is an event stream for a non-streaming request", "stream"
        else:
            try:
                loads_strict(rt.body)
                continue
            except ValueError as exc:
                problem = "response body is not valid JSON"
                detail = getattr(exc, "msg", "invalid")
        out.append(failure("malformed_body", rt.status, problem, detail=detail,
                           request_id=rt.id,
                           evidence={"status": rt.status, "body_head": head(rt.body),
                                     "events_head": list(rt.events[:3])}))
    return out


@oracle
def no_hang(scenario: Scenario, trace: Trace) -> list[Failure]:
    """Every request must finish within its deadlines; the one that fired is named.

    The signature carries the deadline's phase, not its value: with learnt deadlines
    one hang would otherwise split into a signature per limit."""
    out = []
    for _spec, rt in pairs(scenario, trace):
        if rt.deadline is None:
            continue
        limit = f"{rt.deadline_s:g}s" if rt.deadline_s is not None else "?"
        phrase = _PHRASES.get(rt.deadline, f"deadline {rt.deadline} fired")
        out.append(failure("hang", rt.status, phrase, detail=rt.deadline,
                           request_id=rt.id, summary=f"{phrase} ({rt.deadline} > {limit})",
                           evidence={"deadline": rt.deadline, "deadline_s": rt.deadline_s,
                                     "status": rt.status, "first_byte_s": rt.first_byte_s,
                                     "chunks_received": len(rt.chunk_times_s),
                                     "sent_s": rt.sent_s, "end_s": rt.end_s}))
    return out


@oracle
def target_alive(scenario: Scenario, trace: Trace) -> list[Failure]:
    """After a scenario, `/health` must be 200 and a tiny canary generation must work."""
    probe = trace.probe_after
    if probe is None:
        return []
    evidence = probe.to_json()
    if probe.health_status != 200:
        # The signature keeps how it is dead (status or error class), not the message.
        how = (probe.health_error or "no answer").split(":")[0]
        return [failure("target_dead", probe.health_status, "/health not 200 after scenario",
                        detail=how if probe.health_status is None else "",
                        summary=f"/health after scenario: {probe.health_status} "
                                f"{probe.health_error or ''}".rstrip(),
                        evidence=evidence)]
    if probe.canary_ok is False:
        how = (probe.canary_error or "failed").split(":")[0]
        return [failure("target_wedged", None, "canary failed while /health is 200",
                        detail=how, summary=f"canary failed while /health is 200: "
                                            f"{head(probe.canary_error, 500)}",
                        evidence=evidence)]
    return []
