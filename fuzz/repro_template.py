"""The standalone `repro.py` written into every bundle.

It must run on a maintainer's machine with nothing but Python 3 and aiohttp, and it
must exit non-zero while the bug is there, whatever the bug's kind: so each bundle gets
its own script, made of a fixed part that replays the scenario (`_CORE`) and the source
of the one check its failure kind needs (`fuzz.repro_checks`, copied verbatim with the
helpers it calls). The script reads bundle.json and media/ at run time.

Isolation, interference and server-log failures cannot be judged from the scenario's
answers alone: their scripts also get `_OWN_CORE`, which first runs the requests the
check compares with on their own (`repro_checks.alone_requests`), times the victim,
and follows the server's log (`--server-log FILE`; without it a server-log script
exits 2), and its `main_own` replaces `main`. Other scripts do not carry it.
"""

from __future__ import annotations

import inspect
import json
import math
import pprint
import re
import textwrap
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fuzz import media, repro_checks, repro_schema
from fuzz.repro_checks import (ALONE_OR_LOG_KINDS, alone_requests, check_for, encode_payload,
                               output_text, read_gauges, verdict)
from fuzz.repro_schema import unchecked_keywords
from fuzz.signature import without_log_cause

if TYPE_CHECKING:
    from fuzz.bundle import Bundle

OPENAI_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "openai"
_EMBEDDABLE = (repro_checks.__name__, repro_schema.__name__)
MAX_DEFAULT_RUNS = 20


def default_runs(k: int, n: int, confidence: float = 0.95) -> int:
    """Runs needed to see a failure recorded in k of n runs with `confidence` (1 when it
    always reproduced), capped at MAX_DEFAULT_RUNS."""
    if n <= 0 or k >= n:
        return 1
    if k <= 0:
        return MAX_DEFAULT_RUNS
    runs = math.log(1 - confidence) / math.log(1 - k / n)
    return max(1, min(MAX_DEFAULT_RUNS, math.ceil(runs - 1e-9)))


def check_data(kind: str, evidence: dict[str, Any],
               request_id: str | None = None) -> dict[str, Any]:
    """What a kind's check needs beyond bundle.json: for a shape mismatch, the OpenAI
    response schema it was judged against (and the one its `$ref`s point into); for
    the isolation, interference and server-log kinds, the bar the campaign judged by
    (see `own_check_data`)."""
    if kind in ALONE_OR_LOG_KINDS:
        return own_check_data(kind, evidence, request_id)
    if kind != "shape_mismatch":
        return {}
    shape = evidence.get("shape")
    names = {"chat.completion", "chat.completion.chunk", "error"}
    if shape not in names or not (OPENAI_SCHEMAS / f"{shape}.json").is_file():
        return {}
    schema = json.loads((OPENAI_SCHEMAS / f"{shape}.json").read_text(encoding="utf-8"))
    docs = {"chat.completion.json": json.loads(
        (OPENAI_SCHEMAS / "chat.completion.json").read_text(encoding="utf-8"))}
    return {"shape": shape, "schema": schema, "documents": docs}


def _finite(value: Any) -> float | None:
    """A number pprint writes as a Python literal (not inf or nan), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def own_check_data(kind: str, evidence: dict[str, Any],
                   request_id: str | None = None) -> dict[str, Any]:
    """The recorded bar of an isolation, interference or server-log finding, for its
    check (`fuzz.isolation_record`): which requests it is about and which of them run
    alone first (`alone_requests`), the noise threshold, the slowdown rule, or the
    logged event. Alone answers and latencies are measured afresh by the script."""
    from dataclasses import asdict

    from fuzz.isolation_record import judged_by, needs_alone
    from fuzz.model import Failure

    if kind == "server_log_error":
        exceptions = evidence.get("exceptions") or []
        return {"needs_log": True, "origin": evidence.get("origin"),
                "header": evidence.get("header"),
                "exception": exceptions[-1] if exceptions else None}
    failure = Failure(kind, "", "", request_id, dict(evidence))
    judged = judged_by(failure)
    if kind == "interference_slowdown":
        recorded = evidence.get("slowdown") if isinstance(evidence.get("slowdown"), dict) else {}
        victim = request_id or recorded.get("request_id")
        return {"victim": victim, "timed": [victim] if victim else [], "warmup": 1,
                "alone_runs": 3, "rule": asdict(judged.rule) if judged.rule else None,
                "metric": recorded.get("metric"), "ratio": _finite(recorded.get("ratio"))}
    noise = judged.noise
    return {"subjects": list(judged.subjects), "needs_alone": needs_alone(failure),
            "threshold": _finite(noise.margin_threshold) if noise is not None else None,
            "alone_runs": judged.alone_runs, "canary": evidence.get("canary")}


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def embedded_functions(roots: Iterable[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """`roots` and every function of repro_checks/repro_schema they call, transitively:
    roots first, then helpers in source order."""
    found: dict[str, Callable[..., Any]] = {}
    todo = list(roots)
    while todo:
        fn = todo.pop()
        if fn.__name__ in found:
            continue
        found[fn.__name__] = fn
        for name in _names(fn.__code__):
            target = fn.__globals__.get(name)
            if inspect.isfunction(target) and target.__module__ in _EMBEDDABLE:
                todo.append(target)
    first = [fn.__name__ for fn in roots]
    rest = sorted((fn for name, fn in found.items() if name not in first),
                  key=lambda f: (_EMBEDDABLE.index(f.__module__), f.__code__.co_firstlineno))
    return [found[name] for name in dict.fromkeys(first)] + rest


def _schemas_of(bundle: Bundle) -> list[Any]:
    """The JSON schemas the check will apply: structured outputs and tool parameters."""
    out: list[Any] = []
    for req in bundle.scenario.requests:
        body = req.body if isinstance(req.body, dict) else {}
        schema = repro_checks.requested_schema(body)
        out += [schema] if schema is not None else []
        out += list(repro_checks.offered_functions(body).values())
    return out


def render_repro(bundle: Bundle) -> str:
    """The bundle's repro.py."""
    from fuzz.issue import report_title

    f = bundle.failure
    check, probes = check_for(f.kind)
    k, n = bundle.reproduced
    own = f.kind in ALONE_OR_LOG_KINDS
    data = check_data(f.kind, dict(f.evidence), f.request_id)
    funcs = embedded_functions([check, verdict, encode_payload, read_gauges]
                               + ([alone_requests, output_text] if own else []))
    funcs.append(media.stamped)  # self-contained: copied as is, not searched for helpers
    doc = inspect.getdoc(check) or ""
    notes = _own_notes(f.kind, data) if own else []
    if without_log_cause(f.signature) != f.signature:
        notes.append(textwrap.fill(
            "The signature's `log:` part is the cause the server's log named for this "
            "generic error. This script does not read the log: it checks for the error "
            "itself, whatever its cause (as `vlfuzz replay` does when it cannot read the "
            "target's log).", 88))
    if check is repro_checks.check_answered:
        notes.append(f"This script has no check for failures of kind {f.kind!r}: it reports "
                     "5xx answers, failed connections and hangs, and exits 2 when it sees "
                     "none of them (it cannot tell that the failure is gone).")
    if check in (repro_checks.check_structured_output, repro_checks.check_tool_calls):
        skipped = sorted({kw for s in _schemas_of(bundle) for kw in unchecked_keywords(s)})
        if skipped:
            notes.append("Schema keywords this script does not check: " + ", ".join(skipped)
                         + ".")
    header = _HEADER.format(
        title=_docsafe(report_title(bundle).removeprefix("[Bug]: ")),
        signature=_docsafe(f.signature), k=k, n=n, check=_plain(doc),
        notes="".join(f"\n{_docsafe(_plain(x))}\n" for x in notes))
    constants = "\n".join([
        f"KIND = {f.kind!r}", f"SIGNATURE = {f.signature!r}",
        f"REQUEST_ID = {f.request_id!r}  # the request the failure was recorded on",
        f"PROBES = {tuple(probes)!r}  # what to ask the server after the requests",
        f"DEFAULT_RUNS = {default_runs(k, n)}  # recorded {k}/{n}: enough runs to see it again",
        f"CHECK_DATA = {pprint.pformat(data, width=88)}",
        f"CHECK = {check.__name__}"])
    check_src = inspect.getsource(check).rstrip()
    helpers = "\n\n\n".join(inspect.getsource(fn).rstrip() for fn in funcs if fn is not check)
    core = (_CORE + _OWN_CORE + _MAIN % "main_own") if own else (_CORE + _MAIN % "main")
    return "".join([header, _imports(funcs), "\n\n\n", _CHECK_BANNER % f.kind, check_src, "\n\n\n",
                    _HELPERS_BANNER, helpers, "\n\n\n", constants, "\n", core])


def _own_notes(kind: str, data: dict[str, Any]) -> list[str]:
    """How the script judges a kind that needs more than the scenario's answers."""
    if kind == "server_log_error":
        note = ("This failure shows only in the server's log: run the script with "
                "`--server-log FILE` (the file the server writes its log to). It follows "
                "the file while the requests are answered, and exits 2 without it.")
    elif kind == "interference_slowdown":
        note = (f"Before each replay, the victim request ({data.get('victim')}) runs on its "
                f"own ({data.get('alone_runs')} timed runs after a warm-up, `--alone-runs N`); "
                "its latency in the scenario is compared with the median of those.")
        guard = (data.get("rule") or {}).get("neighbour_factor")
        if guard is not None:
            note += (f" It counts as slowed down only if it also took more than {guard:g}x "
                     "as long as the requests answered beside it (everyone slow together "
                     "is the cost of a batch, not starvation).")
    elif not data.get("needs_alone"):
        note = "A canary in the wrong output shows on its own: nothing runs alone first."
    else:
        bar = data.get("threshold")
        what = (f" beyond the natural variance vlfuzz measured on the quiet server (a lead "
                f"of {bar:.3g} nats)" if bar is not None else "")
        note = (f"Before each replay, the greedy requests the failure is about run on their "
                f"own ({data.get('alone_runs')} runs each, `--alone-runs N`); their answers "
                f"in the scenario are compared with those token by token{what}. The server "
                "must return logprobs.")
    return [textwrap.fill(note, 88)]


def _imports(funcs: list[Callable[..., Any]]) -> str:
    """The script's imports: what the replay needs, plus the standard modules the
    embedded functions use."""
    used = set().union(*(_names(fn.__code__) for fn in funcs))
    typed = any(re.search(r"\bAny\b", inspect.getsource(fn)) for fn in funcs)
    return _IMPORTS.format(any="from typing import Any\n" if typed else "",
                           **{m: f"import {m}\n" if m in used else ""
                              for m in ("math", "re", "struct", "zlib")})


def _docsafe(text: str) -> str:
    """Bundle text made safe inside the script's docstring: a server message may hold
    backslashes, triple quotes, control characters or lone surrogates."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return "".join(c if (c >= " " or c == "\n") and not "\ud800" <= c <= "\udfff"
                   else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
                   for c in text)


def _plain(text: str) -> str:
    """`text` with each line's indentation removed, for the script's docstring."""
    return "\n".join(line.strip() for line in text.splitlines())


_HEADER = '''#!/usr/bin/env python3
"""Reproduce: {title}

Signature: {signature}
Recorded: the failure showed up in {k} of {n} runs of this scenario.

What is checked:
{check}
{notes}
Usage:
  python repro.py --endpoint http://127.0.0.1:8000 [--model ID] [--runs N]
  python repro.py --dump-bodies DIR   # write each request body to DIR/<id>.json (for curl)

Needs Python 3.8+ and aiohttp (pip install aiohttp); reads bundle.json and media/ from
this folder. Sends the bundle's requests concurrently at their recorded offsets, prints
what came back, then runs the check above and prints what was expected and what came.

Exit status: 1 the failure still happens; 0 it did not; 2 it could not be run or judged
(server unreachable or unhealthy beforehand, or answers the check cannot judge).
"""
'''

_CHECK_BANNER = """\
# --- the check for this failure (kind %r), as vlfuzz runs it

"""
_HELPERS_BANNER = """\
# --- what the check uses

"""

_IMPORTS = '''from __future__ import annotations

import argparse
import asyncio
import base64
import json
{math}import os
{re}{struct}import sys
import textwrap
import time
{zlib}from pathlib import Path
{any}
import aiohttp'''

_CORE = r'''

# --- replaying the bundle (the same for every bundle)

HERE = Path(__file__).resolve().parent
MEDIA, FIXTURE = "vlfuzz-media:", "vlfuzz-fixture:"
CHAT = "/v1/chat/completions"
CANARY = {"messages": [{"role": "user", "content": "Reply with one word."}],
          "max_tokens": 4, "temperature": 0}
BODY_CAP = 1_000_000


class CannotRun(Exception):
    """The replay cannot happen or cannot be trusted (exit status 2)."""


def load_bundle():
    bundle = json.loads((HERE / "bundle.json").read_text(encoding="utf-8"))
    return bundle, media_urls(bundle, 0)


def media_urls(bundle, nonce):
    """The media's data URLs. With a nonce, intact PNG/JPEG/GIF carry it in a comment
    (same pixels, new bytes): vLLM caches images by their bytes, so a bug that needs the
    server's first sight of an image would hide from every run after the first."""
    urls = {}
    for m in bundle["scenario"]["media"]:
        rel = bundle["media_files"][m["sha256"]]
        if not (rel.startswith("media/%s." % m["sha256"]) and rel.rsplit(".", 1)[-1].isalnum()):
            raise CannotRun("media file %r is not media/<sha256>.<ext>" % rel)
        data = (HERE / rel).read_bytes()
        encoding = m.get("encoding", "base64")
        if nonce and encoding == "base64" and not (m.get("recipe") or {}).get("corruption"):
            try:
                data = stamped(data, nonce)
            except (ValueError, IndexError, struct.error):
                pass  # a format stamped() does not know, or too damaged: sent as recorded
        urls[m["sha256"]] = "data:%s;base64,%s" % (m["mime"], encode_payload(data, encoding))
    return urls


def inline(value, urls):
    """Replace every media placeholder with its data URL, as vlfuzz did."""
    if isinstance(value, str):
        if value.startswith(FIXTURE):
            raise CannotRun("this bundle fetches images from vlfuzz's fixture server (%s); "
                            "replay it with `vlfuzz replay`" % value[:80])
        return urls[value[len(MEDIA):]] if value.startswith(MEDIA) else value
    if isinstance(value, dict):
        return {k: inline(v, urls) for k, v in value.items()}
    if isinstance(value, list):
        return [inline(v, urls) for v in value]
    return value


def wire_body(req, urls, model):
    """The bytes vlfuzz sent: media inlined, `model` filled in when absent."""
    body, method = inline(req["body"], urls), req.get("method", "POST").upper()
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")  # deliberately raw
    if isinstance(body, dict):
        if method in ("GET", "HEAD") and not body:
            return None
        if method == "POST" and "model" not in body and model:
            body = {"model": model, **body}
    return json.dumps(body).encode("utf-8")


class SseParser:
    """Splits a text/event-stream into the `data:` payload of each event."""

    def __init__(self):
        self.buf, self.data = "", []

    def feed(self, chunk, final=False):
        self.buf += chunk.decode("utf-8", "replace")
        *lines, self.buf = self.buf.split("\n")
        if final:
            lines, self.buf = lines + [self.buf, ""], ""
        events = []
        for line in (x.rstrip("\r") for x in lines):
            if line == "" and self.data:
                events.append("\n".join(self.data))
                self.data = []
            elif line.startswith("data:"):
                self.data.append(line[6:] if line.startswith("data: ") else line[5:])
        return events


async def send(session, base, req, data, t0, limits, headers):
    """Send one request at its offset under the client deadlines vlfuzz used; record
    what happened. Never raises: everything the server does wrong is a result."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, req.get("offset_ms", 0) / 1000 - (loop.time() - t0)))
    sent = loop.time()
    res = {"status": None, "body": None, "events": None, "event_times": [], "content_type": "",
           "error": None, "deadline": None, "deadline_s": None, "disconnected": False,
           "body_truncated": False, "sent_s": sent - t0}
    phase = "first_byte"

    def seconds_left(name, since):
        """Until the `name` deadline or the total one, whichever is first."""
        nonlocal phase
        own = since + limits[name + "_s"] - loop.time()
        total = sent + limits["total_s"] - loop.time()
        phase = name if own <= total else "total"
        return max(0.0, min(own, total))

    resp, clean = None, False
    raw, events, parser = bytearray(), [], SseParser()
    try:
        resp = await asyncio.wait_for(session.request(
            req.get("method", "POST"), base + req.get("path", CHAT), data=data,
            headers={**headers, "Content-Type": "application/json"}),
            seconds_left("first_byte", sent))
        res["status"], res["content_type"] = resp.status, resp.content_type
        sse = resp.content_type == "text/event-stream"
        want, chunks, last = req.get("disconnect_after_chunks"), 0, loop.time()
        while want is None or chunks < want:
            chunk = await asyncio.wait_for(resp.content.readany(), seconds_left("stall", last))
            last = loop.time()
            new = parser.feed(chunk, final=not chunk) if sse else ([chunk] if chunk else [])
            new = new if want is None else new[:want - chunks]
            chunks += len(new)
            if sse:
                events += new
                res["event_times"] += [last - sent] * len(new)
            else:
                res["body_truncated"] |= len(raw) + sum(map(len, new)) > BODY_CAP
                raw += b"".join(new)[:max(0, BODY_CAP - len(raw))]
            if not chunk:
                clean = True
                break
        res["disconnected"] = not clean  # hung up after `want` chunks, as vlfuzz did
    except asyncio.TimeoutError:
        res["deadline"], res["deadline_s"] = phase, limits[phase + "_s"]
    except Exception as e:  # refused, reset, truncated, bad chunked encoding ...
        res["error"] = ("%s: %s" % (type(e).__name__, " ".join(str(e).split()))).rstrip(": ")
    finally:
        if resp is not None and clean:
            resp.release()
        elif resp is not None:
            resp.close()  # mid-answer: drop the connection
    if res["status"] is not None:
        if res["content_type"] == "text/event-stream":
            res["events"] = events
        else:
            res["body"] = raw.decode("utf-8", "replace")
    res["took_s"] = loop.time() - sent
    return res


async def get(session, url, headers, timeout_s=10.0):
    """(status, text, error) of a GET; status None when nothing answered."""
    try:
        async with session.get(url, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            return resp.status, await resp.text(errors="replace"), None
    except Exception as e:
        return None, "", "%s: %s" % (type(e).__name__, e)


async def probe_after(session, base, headers, model, settle_s, after):
    """What PROBES asks about the server once the requests are over; waits up to
    `settle_s` for it to show trouble (or, for /metrics, to become idle)."""
    deadline = time.monotonic() + settle_s
    if "health" in PROBES:
        while True:
            after["health"], _, after["health_error"] = await get(session, base + "/health",
                                                                  headers)
            if after["health"] != 200 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
    if "canary" in PROBES and after.get("health") is not None:
        try:
            async with session.post(base + CHAT, json={"model": model, **CANARY}, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                text = await resp.text(errors="replace")
            ok = resp.status == 200 and bool((json.loads(text) or {}).get("choices"))
            after["canary_ok"] = ok
            after["canary_error"] = None if ok else "HTTP %s: %s" % (resp.status, text[:2000])
        except Exception as e:
            after["canary_ok"], after["canary_error"] = False, "%s: %s" % (type(e).__name__, e)
    if "metrics" in PROBES and after.get("metrics_before"):
        while True:
            status, text, _ = await get(session, base + "/metrics", headers)
            after["metrics_after"] = read_gauges(text) if status == 200 else None
            now, before = after["metrics_after"] or {}, after["metrics_before"]
            idle = (not now.get("running") and not now.get("waiting") and now.get(
                "kv_cache_usage", 0) <= before.get("kv_cache_usage", 0) + 0.02)
            if not now or idle or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)


async def preflight(session, base, headers, model):
    """The server must be up before the replay (else nothing can be concluded), and
    the model must be one it serves. Returns (model to use, /health status)."""
    health, _, error = await get(session, base + "/health", headers)
    if health is None:
        raise CannotRun("cannot reach %s: %s" % (base, error))
    if health not in (200, 404):  # 404: a server without /health; go on
        raise CannotRun("the server is not healthy before the replay: /health answered %s"
                        % health)
    status, text, _ = await get(session, base + "/v1/models", headers)
    try:
        served = [m["id"] for m in json.loads(text)["data"]] if status == 200 else []
    except (ValueError, KeyError, TypeError):
        served = []
    if served and model not in served:
        print("note: the bundle's model %r is not served here; using %r (see --model)"
              % (model, served[0]))
        model = served[0]
    return model, health


async def run_once(bundle, urls, args, headers):
    """Send every request at its offset, all at once; then probe; then check."""
    requests = bundle["scenario"]["requests"]
    recorded = bundle["trace"].get("deadlines") or {}
    own = bundle.get("fuzzer", {}).get("request_deadlines") or {}
    base = args.endpoint.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0),
                                     headers=headers) as session:
        model, health = await preflight(session, base, {}, args.model)
        after = {"health_before": health}
        if "metrics" in PROBES:
            status, text, _ = await get(session, base + "/metrics", {})
            after["metrics_before"] = read_gauges(text) if status == 200 else None
        bodies = [wire_body(req, urls, model) for req in requests]
        jobs = []
        t0 = asyncio.get_running_loop().time()
        for req, data in zip(requests, bodies):
            limits = {"first_byte_s": 60.0, "stall_s": 30.0, "total_s": 180.0,
                      **recorded, **own.get(req["id"], {})}
            if args.timeout:
                limits["total_s"] = args.timeout
            jobs.append(send(session, base, req, data, t0, limits, {}))
        results = await asyncio.gather(*jobs)
        await probe_after(session, base, {}, model, args.settle, after)
    for req, res in zip(requests, results):
        head = res["body"] if res["body"] is not None else " | ".join(res["events"] or [])
        what = res["status"] if res["status"] is not None else "ERROR"
        extra = res["error"] or ("cut by the %s deadline" % res["deadline"]
                                 if res["deadline"] else "")
        print("[%s +%gms] %s %.2fs %s" % (req["id"], req.get("offset_ms", 0), what,
                                          res["took_s"], (extra or head)[:300].replace("\n", " ")))
    if "health" in after:
        print("after: /health %s%s" % (after["health"], "" if after.get("canary_ok") is None
                                       else ", chat completion %s" % (
                                           "ok" if after["canary_ok"] else "FAILED")))
    return CHECK(list(zip(requests, results)), after, bundle["failure"], CHECK_DATA)


def report(outcomes):
    for where, result, expected, actual in outcomes:
        print("  %-8s %s\n    expected: %s\n    actual:   %s" % (
            result.upper(), where, expected, actual))


def dump_bodies(bundle, urls, model, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for req in bundle["scenario"]["requests"]:
        data = wire_body(req, urls, model)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in req["id"]) + ".json"
        if data is not None:
            (folder / name).write_bytes(data)
            print(folder / name)


def main(run_once=run_once, own=False):
    """The script: parse flags, replay the bundle up to --runs times (each run with its
    images byte-new), print what came back and exit 1 / 0 / 2. `own` adds what the
    failures judged by their own machinery need (alone runs, the server's log)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="http://127.0.0.1:8000", help="server base URL")
    ap.add_argument("--model", help="model id (default: the bundle's, else the server's first)")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    ap.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                    help="replays; still failing if any run fails (default %d)" % DEFAULT_RUNS)
    if own:
        ap.add_argument("--alone-runs", type=int, default=CHECK_DATA.get("alone_runs", 2),
                        help="runs of each compared request on its own, per replay (default %d)"
                        % CHECK_DATA.get("alone_runs", 2))
        ap.add_argument("--server-log", metavar="FILE",
                        help="the server's log file, followed while the requests are answered"
                        + (" (required: this failure shows only there)"
                           if CHECK_DATA.get("needs_log") else ""))
    ap.add_argument("--timeout", type=float, help="total seconds per request (default: as recorded)")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds to %s after the requests (default 5)"
                    % ("wait for the server's log" if own else "watch the server"))
    ap.add_argument("--dump-bodies", metavar="DIR", help="write the request bodies and exit")
    args = ap.parse_args()
    try:
        bundle, urls = load_bundle()
        target = bundle.get("target") or {}
        args.model = args.model or target.get("model_id") or target.get("model")
        if args.dump_bodies:
            dump_bodies(bundle, urls, args.model, args.dump_bodies)
            return 0
        if own and CHECK_DATA.get("needs_log") and not args.server_log:
            raise CannotRun("this failure shows only in the server's log, so this script "
                            "needs the server log: --server-log FILE (the file the server "
                            "writes its log to)")
        if own and args.server_log and not os.path.isfile(args.server_log):
            raise CannotRun("no such server log file: %s" % args.server_log)
        headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
        print("failure:   %s\nsignature: %s" % (bundle["failure"]["message"], SIGNATURE))
        print(textwrap.fill(" ".join((CHECK.__doc__ or "").split("\n\n")[0].split()), 88,
                            initial_indent="check:     ", subsequent_indent=" " * 11))
        verdicts = []
        for run in range(max(1, args.runs)):
            if args.runs > 1:
                print("--- run %d of %d" % (run + 1, args.runs))
            fresh = media_urls(bundle, int.from_bytes(os.urandom(4), "big") | 1)
            outcomes = asyncio.run(run_once(bundle, fresh, args, headers))
            report(outcomes)
            verdicts.append(verdict(outcomes, REQUEST_ID))
            if verdicts[-1] == "fail":
                break
    except CannotRun as e:
        print("COULD NOT RUN: %s" % e)
        return 2
    except (OSError, ValueError, KeyError) as e:
        print("COULD NOT RUN: %s: %s" % (type(e).__name__, e))
        return 2
    if "fail" in verdicts:
        print("STILL FAILING (%s) in run %d of %d" % (SIGNATURE, len(verdicts), args.runs))
        return 1
    if "unjudged" in verdicts:
        print("COULD NOT CHECK: the answers above give nothing to judge this failure by")
        return 2
    print("NOT REPRODUCED in %d run(s): fixed, or rarer than recorded" % len(verdicts))
    return 0
'''

_MAIN = '''

if __name__ == "__main__":
    sys.exit(%s())
'''

_OWN_CORE = r'''


# --- judging against the requests run alone, or the server's log (this kind needs it)


async def send_timed(session, base, req, data, t0, limits, headers):
    """Like `send`, for a request whose latency is judged: read to its end under the
    total deadline, with the time each SSE event arrived (seconds after sending)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, req.get("offset_ms", 0) / 1000 - (loop.time() - t0)))
    sent = loop.time()
    res = {"status": None, "body": None, "events": None, "event_times": [], "content_type": "",
           "error": None, "deadline": None, "deadline_s": None, "disconnected": False,
           "body_truncated": False, "sent_s": sent - t0}
    raw, events, parser, sse = bytearray(), [], SseParser(), False
    try:
        async with session.request(
                req.get("method", "POST"), base + req.get("path", CHAT), data=data,
                headers={**headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=limits["total_s"])) as resp:
            res["status"], res["content_type"] = resp.status, resp.content_type
            sse = resp.content_type == "text/event-stream"
            async for chunk in resp.content.iter_any():
                new = parser.feed(chunk) if sse else []
                events += new
                res["event_times"] += [loop.time() - sent] * len(new)
                if not sse:
                    res["body_truncated"] |= len(raw) + len(chunk) > BODY_CAP
                    raw += chunk[:max(0, BODY_CAP - len(raw))]
            new = parser.feed(b"", final=True) if sse else []
            events += new
            res["event_times"] += [loop.time() - sent] * len(new)
    except asyncio.TimeoutError:
        res["deadline"], res["deadline_s"] = "total", limits["total_s"]
    except Exception as e:  # refused, reset, truncated ...
        res["error"] = ("%s: %s" % (type(e).__name__, " ".join(str(e).split()))).rstrip(": ")
    if res["status"] is not None:
        if sse:
            res["events"] = events
        else:
            res["body"] = raw.decode("utf-8", "replace")
    res["took_s"] = loop.time() - sent
    return res


def log_size(path):
    """How long the server's log is now (where the new lines will start)."""
    return os.stat(path).st_size


def read_log(path, offset):
    """The lines the server's log gained since `offset` (all of it if it was replaced
    by a shorter file, as a restarted server does)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(offset if size >= offset else 0)
        data = f.read(8 * 2 ** 20)
    return data.decode("utf-8", "replace").splitlines()


def show(label, req, res):
    """One line per answer: status, seconds, and what it said (its text when complete)."""
    text = output_text(req, res)
    head = res["body"] if res["body"] is not None else " | ".join(res["events"] or [])
    what = res["status"] if res["status"] is not None else "ERROR"
    extra = res["error"] or ("cut by the %s deadline" % res["deadline"] if res["deadline"] else "")
    said = repr(text) if text is not None and not extra else (extra or head)
    print("[%s] %s %.2fs %s" % (label, what, res["took_s"], said[:200].replace("\n", " ")))


async def run_once_own(bundle, urls, args, headers):
    """The requests the check compares with run alone, one after the other, then the
    whole scenario (following the server's log meanwhile); then the check."""
    requests = bundle["scenario"]["requests"]
    recorded = bundle["trace"].get("deadlines") or {}
    own = bundle.get("fuzzer", {}).get("request_deadlines") or {}
    timed = set(CHECK_DATA.get("timed") or ())
    solo_ids = alone_requests(requests, bundle["failure"], CHECK_DATA)
    base = args.endpoint.rstrip("/")

    def limits(req):
        out = {"first_byte_s": 60.0, "stall_s": 30.0, "total_s": 180.0,
               **recorded, **own.get(req["id"], {})}
        if args.timeout:
            out["total_s"] = args.timeout
        return out

    def sender(req):
        return send_timed if req["id"] in timed else send

    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0),
                                     headers=headers) as session:
        model, health = await preflight(session, base, {}, args.model)
        after = {"health_before": health, "alone": {}}
        warmup = CHECK_DATA.get("warmup", 0)
        for req in [r for r in requests if r["id"] in solo_ids]:
            solo = dict(req, offset_ms=0)
            data = wire_body(solo, urls, model)
            runs = []
            for i in range(warmup + max(1, args.alone_runs)):
                res = await sender(req)(session, base, solo, data,
                                        asyncio.get_running_loop().time(), limits(req), {})
                if i >= warmup:
                    runs.append(res)
                    show("%s alone, run %d" % (req["id"], len(runs)), req, res)
            after["alone"][req["id"]] = runs
        offset = log_size(args.server_log) if args.server_log else None
        bodies = [wire_body(req, urls, model) for req in requests]
        t0 = asyncio.get_running_loop().time()
        results = await asyncio.gather(*[sender(req)(session, base, req, data, t0, limits(req),
                                                     {}) for req, data in zip(requests, bodies)])
        if args.server_log:
            await asyncio.sleep(args.settle)
            after["log_lines"] = read_log(args.server_log, offset)
    for req, res in zip(requests, results):
        show("%s +%gms" % (req["id"], req.get("offset_ms", 0)), req, res)
    if "log_lines" in after:
        print("server log: %d new line(s) in %s" % (len(after["log_lines"]), args.server_log))
    return CHECK(list(zip(requests, results)), after, bundle["failure"], CHECK_DATA)


def main_own():
    return main(run_once_own, own=True)
'''
