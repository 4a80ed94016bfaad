"""The curl lines of ISSUE.md: the scenario as shell commands a maintainer can paste.

Requests keep their offsets (sleep) and run concurrently (&, wait); bodies too big to
paste are sent from the files `repro.py --dump-bodies` writes. Everything taken from
the bundle is shell-quoted: a bundle may come from a stranger.
"""

from __future__ import annotations

import json
import shlex

from fuzz.model import RequestSpec, Scenario, resolve_media

CURL_MAX_BYTES = 8 * 1024
FIXTURE_HOST = "http://FIXTURE_SERVER"


def curl_body(req: RequestSpec, scenario: Scenario, model: str | None) -> str | None:
    """The wire body as the runner sends it: media inlined, `model` filled in when
    absent, compact ASCII JSON (a string body is sent raw; None: no body). Image URLs on
    vlfuzz's fixture server are written with the host `FIXTURE_SERVER`."""
    body = resolve_media(req.body, scenario.media, fixture_base_url=FIXTURE_HOST)
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        if req.method.upper() in ("GET", "HEAD") and not body:
            return None
        if req.method.upper() == "POST" and "model" not in body:
            body = {"model": model or "MODEL", **body}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)


def _curlable(body: str) -> bool:
    """Small enough to paste, and passable as a shell argument."""
    try:
        return len(body.encode("utf-8")) < CURL_MAX_BYTES and "\x00" not in body
    except UnicodeEncodeError:
        return False


def curl_script(scenario: Scenario, model: str | None,
                check_health: bool = False) -> tuple[list[str], list[str]]:
    """Shell lines sending the scenario (concurrently, offsets kept) and the ids of the
    requests too big to paste, which are sent from files `repro.py --dump-bodies .`
    writes. With `check_health`, a last line asks /health."""
    lines, too_big = ["ENDPOINT=http://127.0.0.1:8000"], []
    many = len(scenario.requests) > 1
    for req in scenario.requests:
        body = curl_body(req, scenario, model)
        stream = "-N " if req.stream else ""
        if body is None:
            data = ""
        elif _curlable(body):
            data = f" -H 'Content-Type: application/json' --data-binary {shlex.quote(body)}"
        else:
            too_big.append(req.id)
            data = (" -H 'Content-Type: application/json' --data-binary "
                    + shlex.quote(f"@{dump_name(req.id)}"))
        cmd = (f'curl -sS {stream}-X {shlex.quote(req.method)} "$ENDPOINT"'
               f'{shlex.quote(req.path)}{data}')
        if req.offset_ms > 0:
            cmd = f"(sleep {req.offset_ms / 1000:.3f}; {cmd})"
        note = f"  # {req.id} at +{req.offset_ms:g} ms"
        if req.disconnect_after_chunks is not None:
            note += f"; client hangs up after {req.disconnect_after_chunks} chunks (repro.py does)"
        lines.append(cmd + (" &" if many else "") + note)
    if too_big:
        lines.insert(1, "python repro.py --dump-bodies .  # writes " + ", ".join(
            dump_name(i) for i in too_big) + " (too big to paste: media inlined)")
    if many:
        lines.append("wait")
    if check_health:
        lines.append("sleep 5; curl -sS -o /dev/null -w '/health: %{http_code}\\n' "
                     '"$ENDPOINT/health"  # expected: 200')
    return lines, too_big


def dump_name(request_id: str) -> str:
    """The file `repro.py --dump-bodies` writes a request's body to (same rule)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in request_id) + ".json"
