"""The oracle on the server's own log: a scenario whose responses all looked fine must
not have made the server log an ERROR or a traceback.

vLLM catches some exceptions and still answers 200 (a tool parser failing on the
model's output and falling back to plain content, for one), so the log is the only
place those bugs show. When a response or the probe did go wrong, the log is evidence
for the oracle that caught that (and the campaign bundles its tail), so this one stays
silent rather than echo it. It is inert when the trace carries no log lines: an
external target, or a campaign that does not follow the embedded target's log.
"""

from __future__ import annotations

from fuzz.model import Failure, Scenario, Trace
from fuzz.oracles.reading import error_of, failure, head, parse_or_none
from fuzz.oracles.registry import oracle
from fuzz.server_log import classify
from fuzz.signature import normalise_message

EVIDENCE_LINES = 80


def responses_looked_fine(trace: Trace) -> bool:
    """No 5xx, transport error, deadline or error event in a stream on any request, and a
    healthy probe: the log is then evidence for the oracle that saw that."""
    for r in trace.requests:
        if (r.status is not None and r.status >= 500) or r.deadline is not None:
            return False
        if r.error is not None:
            return False
        if any(error_of(parse_or_none(ev)) is not None for ev in r.events if '"error"' in ev):
            return False
    probe = trace.probe_after
    return probe is None or (probe.health_status == 200 and probe.canary_ok is not False)


@oracle
def server_log_clean(scenario: Scenario, trace: Trace) -> list[Failure]:
    """One `server_log_error` per distinct ERROR/traceback the server logged during a
    scenario that otherwise looked fine; the signature names where it was logged, its
    message, and (as detail) the normalised exception line."""
    if not trace.server_log or not responses_looked_fine(trace):
        return []
    out: dict[str, Failure] = {}
    seen: dict[str, int] = {}
    for event in classify(trace.server_log):
        if not event.is_error:
            continue
        header = event.header or "traceback"
        detail = normalise_message(event.exception) if event.exception else ""
        found = failure(
            "server_log_error", None, f"{event.origin}: {header}", detail=detail,
            summary=f"the server logged {'a traceback' if event.exception else 'an error'} "
                    f"in {event.origin} behind responses that looked fine: "
                    f"{head(event.exception or header, 300)}",
            evidence={"origin": event.origin, "level": event.level, "header": event.header,
                      "exceptions": list(event.exceptions),
                      "log_lines": list(event.lines[:EVIDENCE_LINES])})
        seen[found.signature] = seen.get(found.signature, 0) + 1
        out.setdefault(found.signature, found)
    return [Failure(kind=f.kind, signature=f.signature, message=f.message,
                    request_id=f.request_id,
                    evidence={**f.evidence, "occurrences": seen[f.signature]})
            for f in out.values()]
