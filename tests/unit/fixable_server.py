"""A fault server whose bug can be fixed, for the bundle round-trip tests (repro.py,
replay): the same request fails on it, or gets a correct answer once it is "fixed"."""

from __future__ import annotations

import json
from typing import Any

from faults import FaultServer


class Target(FaultServer):
    """A fault server whose bug can be fixed: `fixed` (a fault spec) answers every chat
    request instead of the spec it carries, for the first `fixed_for` requests (all
    when None). A spec with `"kill": true` takes the server down after answering (dead
    /health, failing chat), one with `"wedge": true` breaks chat but not /health."""

    def __init__(self, fixed: dict[str, Any] | None = None, fixed_for: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(hang_s=3.0, **kwargs)
        self.fixed, self.fixed_for, self.chats = fixed, fixed_for, 0

    async def _chat(self, request):  # type: ignore[no-untyped-def]
        self.chats += 1
        if self.fixed is not None and (self.fixed_for is None or self.chats <= self.fixed_for):
            request = request.clone(headers={**request.headers, "X-Fault": json.dumps(self.fixed)})
        try:
            return await super()._chat(request)
        finally:
            spec = _own_spec(self.bodies[-1] if self.bodies else None)
            if spec.get("kill") and request.headers.get("X-Fault") is None:
                self.health, self.canary = "dead", "error"
            if spec.get("wedge") and request.headers.get("X-Fault") is None:
                self.canary = "error"


def _own_spec(body: Any) -> dict[str, Any]:
    users = [m for m in (body or {}).get("messages", []) if m.get("role") == "user"]
    try:
        spec = json.loads(users[-1]["content"]) if users else {}
    except (TypeError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


class Recorded(FaultServer):
    """Answers each request of a bundle's scenario with the answer the bundle recorded
    (status, body or SSE events) and, if the recorded probe found the server dead
    afterwards, dies the same way: a server that still has the bundle's bug."""

    def __init__(self, bundle: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bundle = bundle

    def _recorded(self, body: Any) -> Any:
        """The trace of the scenario request that `body` is (media inlined), or None.
        Images are compared by their pixels: replays send them byte-new each run."""
        from fuzz.model import resolve_media

        body = _by_pixels(body)
        for spec in self.bundle.scenario.requests:
            sent = _by_pixels(resolve_media(spec.body, self.bundle.scenario.media))
            if isinstance(body, dict) and isinstance(sent, dict) and all(
                    body.get(k) == v for k, v in sent.items()):
                return self.bundle.trace.request(spec.id)
        return None

    async def _chat(self, request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        rt = self._recorded(json.loads(await request.read()))
        if rt is None:  # the canary: FaultServer's own answer, by `self.canary`
            return await super()._chat(request)
        self.bodies.append(rt.id)
        probe = self.bundle.trace.probe_after
        if probe is not None and probe.health_status != 200:
            self.health, self.canary = "dead", "error"
        if rt.body is not None:
            return web.Response(status=rt.status or 200, text=rt.body,
                                content_type="application/json")
        resp = web.StreamResponse(status=rt.status or 200,
                                  headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in rt.events:
            await resp.write(f"data: {event}\n\n".encode())
        await resp.write_eof()
        return resp


def _by_pixels(value: Any) -> Any:
    """`value` with every base64 data URL replaced by a digest of the image's pixels (of
    its bytes when it does not decode), so a stamped copy equals its original."""
    import base64
    import binascii
    import hashlib
    import io

    from PIL import Image

    if isinstance(value, dict):
        return {k: _by_pixels(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_by_pixels(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and ";base64," in value:
        try:
            data = base64.b64decode(value.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            return value
        try:
            with Image.open(io.BytesIO(data)) as image:
                data = image.mode.encode() + image.tobytes()
        except Exception:  # noqa: BLE001 - a broken image is compared by its bytes
            pass
        return "pixels:" + hashlib.sha256(data).hexdigest()
    return value
