"""The oracle on SSE framing of 200 streams that ran to their end."""

from __future__ import annotations

from collections.abc import Mapping

from fuzz.model import Failure, Scenario, Trace
from fuzz.oracles.reading import (body_of, error_of, failure, head, log_detail, pairs,
                                  parse_or_none)
from fuzz.oracles.registry import oracle


@oracle
def stream_well_formed(scenario: Scenario, trace: Trace) -> list[Failure]:
    """A 200 stream is JSON events then `[DONE]`, carries no error event, and ends with a
    usage chunk when `stream_options.include_usage` asked for one. Streams the client
    cut (disconnect, deadline) or lost (transport error) are judged elsewhere. A generic
    error event gets the server log's cause as its signature's detail."""
    out: list[Failure] = []
    for spec, rt in pairs(scenario, trace):
        if not (spec.stream and rt.status == 200 and rt.error is None
                and rt.deadline is None and not rt.disconnected):
            continue
        evidence = {"status": rt.status, "events": len(rt.events),
                    "last_events": [head(e, 500) for e in rt.events[-3:]]}

        def malformed(problem: str, why: str, at: str | None = None) -> None:
            out.append(failure("stream_malformed", rt.status, "malformed SSE stream",
                               detail=problem, request_id=rt.id, summary=why,
                               evidence={**evidence, "event_head": head(at, 500)}))

        if rt.body is not None and not rt.events:
            malformed("not_event_stream", "200 answer to a stream request is not an "
                      "event stream", rt.body)
            continue
        done_at = rt.events.index("[DONE]") if "[DONE]" in rt.events else None
        body = rt.events[:done_at]
        docs = [parse_or_none(ev) for ev in body]
        bad = next((ev for ev, doc in zip(body, docs) if doc is None and ev.strip() != "null"),
                   None)
        if bad is not None:
            malformed("unparsable_event", "stream event is not JSON", bad)
        err = next((e for e in map(error_of, docs) if e is not None), None)
        if err is not None:
            msg = str(err.get("message", "(no message)"))
            code = err.get("code")
            detail, from_log = log_detail(trace, rt, msg,
                                          f"code={code}" if code is not None else "")
            out.append(failure("stream_error_event", rt.status, msg, detail=detail,
                               request_id=rt.id,
                               summary=f"error event in a 200 stream: {head(msg, 500)}",
                               evidence={**evidence, "error_event": head(str(dict(err))),
                                         **from_log}))
        if done_at is None:
            malformed("no_done", "stream ended without [DONE]")
        elif done_at != len(rt.events) - 1:
            malformed("event_after_done", "events after [DONE]", rt.events[done_at + 1])
        opts = body_of(spec).get("stream_options")
        wants_usage = isinstance(opts, Mapping) and opts.get("include_usage") is True
        if wants_usage and err is None and body and docs[-1] is not None:
            if not isinstance(docs[-1], Mapping) or not isinstance(docs[-1].get("usage"),
                                                                   Mapping):
                malformed("no_usage", "include_usage asked but the last chunk has no usage",
                          body[-1])
    return out
