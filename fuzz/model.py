"""The plain data that flows through vlfuzz: Scenario in, Trace out, Failure found.

Everything here is a frozen dataclass with a JSON form and no I/O. Media bytes are
kept out of the JSON: a request body refers to an image by `media_url(sha256)` and
the bytes live in `Scenario.media`, written as files beside `scenario.json`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

FORMAT_VERSION = 1
MEDIA_SCHEME = "vlfuzz-media:"
FIXTURE_SCHEME = "vlfuzz-fixture:"  # + "/<behaviour>/.../<name>": a URL on the fixture server
CHAT_PATH = "/v1/chat/completions"


def media_url(sha256: str) -> str:
    """The placeholder a request body uses instead of an inlined image."""
    return MEDIA_SCHEME + sha256


def fixture_url(path: str) -> str:
    """The placeholder for an http URL on the fuzzer's fixture server (`path` starts
    with "/"); a last segment that is a sha256 names a Media the server must serve."""
    return FIXTURE_SCHEME + path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# Media.encoding: how the data URL's payload is written (all but "base64" are broken).
ENCODINGS: tuple[str, ...] = ("base64", "base64_invalid_chars", "base64_unpadded",
                              "base64_urlsafe", "base64_linebreaks")


def _encode_payload(data: bytes, encoding: str) -> str:
    text = base64.b64encode(data).decode("ascii")
    if encoding == "base64_invalid_chars":
        return text[: len(text) // 2] + "!*%$" + text[len(text) // 2:]
    if encoding == "base64_unpadded":
        text = text.rstrip("=")
        return text if len(text) % 4 else text[:-1]
    if encoding == "base64_urlsafe":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if encoding == "base64_linebreaks":
        return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    return text


@dataclass(frozen=True)
class Media:
    """One media file, content-addressed. `mime` is what the data URL will claim
    (deliberately wrong for some broken inputs); `recipe` is how it was rendered,
    kept so the minimizer can re-render it smaller."""

    data: bytes
    mime: str
    recipe: Mapping[str, Any] | None = None
    encoding: str = "base64"  # see ENCODINGS; anything else is a deliberately bad data URL

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r} not in {ENCODINGS}")

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{_encode_payload(self.data, self.encoding)}"

    def meta(self) -> dict[str, Any]:
        meta = {"sha256": self.sha256, "mime": self.mime, "size_bytes": len(self.data),
                "recipe": dict(self.recipe) if self.recipe is not None else None}
        if self.encoding != "base64":
            meta["encoding"] = self.encoding
        return meta


_TRUE_TEXT = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_TEXT = frozenset({"0", "off", "f", "false", "n", "no"})


def lax_bool(value: Any) -> bool | None:
    """`value` read as pydantic's lax mode reads a bool (vLLM's request models): True and
    False, 1 and 0, and the strings true/false, yes/no, on/off, t/f, y/n, 1/0 in any case
    (not padded); None for anything else (the server rejects it). Checked against the
    pydantic in the embedded target's venv."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.lower()
        return True if text in _TRUE_TEXT else False if text in _FALSE_TEXT else None
    return None


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request of a scenario: what to send, when, and how the client behaves.

    `offset_ms` is measured from scenario start. `disconnect_after_chunks` makes the
    client hang up after that many stream chunks (None: read to the end). `tags` name
    the features the request exercises, for coverage counts."""

    id: str
    body: Mapping[str, Any]
    offset_ms: float = 0.0
    path: str = CHAT_PATH
    method: str = "POST"
    disconnect_after_chunks: int | None = None
    tags: tuple[str, ...] = ()

    @property
    def stream(self) -> bool:
        """Whether vLLM will stream the answer: its request models read `stream` in lax
        mode, so `"yes"` and `1` stream too (a strict reading made a false alarm)."""
        return bool(isinstance(self.body, Mapping) and lax_bool(self.body.get("stream")))

    def media_refs(self) -> list[str]:
        """sha256 of every media placeholder in the body (fixture URLs included when
        their last segment is a sha256), in order, repeats kept."""
        refs = []
        for s in strings_in(self.body):
            if s.startswith(MEDIA_SCHEME):
                refs.append(s[len(MEDIA_SCHEME):])
            elif s.startswith(FIXTURE_SCHEME) and _is_sha256(s.rsplit("/", 1)[-1]):
                refs.append(s.rsplit("/", 1)[-1])
        return refs

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "offset_ms": self.offset_ms, "method": self.method,
                "path": self.path, "body": self.body,
                "disconnect_after_chunks": self.disconnect_after_chunks, "tags": list(self.tags)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RequestSpec:
        return cls(id=str(d["id"]), body=d["body"], offset_ms=float(d.get("offset_ms", 0.0)),
                   path=str(d.get("path", CHAT_PATH)), method=str(d.get("method", "POST")),
                   disconnect_after_chunks=d.get("disconnect_after_chunks"),
                   tags=tuple(d.get("tags", ())))


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, depth first: dict values (not keys), list
    and tuple items; other leaves are skipped."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


def resolve_media(value: Any, media: Mapping[str, Media],
                  fixture_base_url: str | None = None) -> Any:
    """A copy of `value` with every media placeholder replaced by its data URL and
    every fixture placeholder by `fixture_base_url` + its path (required if any)."""
    if isinstance(value, str):
        if value.startswith(MEDIA_SCHEME):
            return media[value[len(MEDIA_SCHEME):]].data_url()
        if value.startswith(FIXTURE_SCHEME):
            if fixture_base_url is None:
                raise ValueError(f"{value[:80]!r} needs resolve_media(fixture_base_url=...)")
            return fixture_base_url.rstrip("/") + value[len(FIXTURE_SCHEME):]
        return value
    if isinstance(value, Mapping):
        return {k: resolve_media(v, media, fixture_base_url) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_media(v, media, fixture_base_url) for v in value]
    return value


@dataclass(frozen=True)
class Scenario:
    """The unit that is generated, run, minimized, saved and replayed."""

    requests: tuple[RequestSpec, ...]
    media: Mapping[str, Media] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        ids = [r.id for r in self.requests]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate request ids: {ids}")
        missing = {h for r in self.requests for h in r.media_refs()} - set(self.media)
        if missing:
            raise ValueError(f"media referenced but not provided: {sorted(missing)}")

    def with_requests(self, requests: tuple[RequestSpec, ...]) -> Scenario:
        """A sub-scenario: the given requests, and only the media they use."""
        used = {h for r in requests for h in r.media_refs()}
        return replace(self, requests=requests,
                       media={h: m for h, m in self.media.items() if h in used})

    def request(self, request_id: str) -> RequestSpec:
        for r in self.requests:
            if r.id == request_id:
                return r
        raise KeyError(request_id)

    def to_json(self) -> dict[str, Any]:
        """The JSON form; media appear as metadata only (bytes go to files)."""
        return {"format_version": FORMAT_VERSION, "seed": self.seed,
                "requests": [r.to_json() for r in self.requests],
                "media": [self.media[h].meta() for h in sorted(self.media)]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], media_bytes: Mapping[str, bytes]) -> Scenario:
        """Rebuild from `to_json()` plus the media bytes keyed by sha256 (checked)."""
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported scenario format_version {d.get('format_version')!r}")
        media: dict[str, Media] = {}
        for m in d.get("media", []):
            data = media_bytes[m["sha256"]]
            if sha256_hex(data) != m["sha256"]:
                raise ValueError(f"media {m['sha256']} does not match its hash")
            media[m["sha256"]] = Media(data=data, mime=m["mime"], recipe=m.get("recipe"),
                                       encoding=m.get("encoding", "base64"))
        return cls(requests=tuple(RequestSpec.from_json(r) for r in d["requests"]),
                   media=media, seed=d.get("seed"))


@dataclass(frozen=True)
class Deadlines:
    """Client-side limits per request: no first byte within `first_byte_s`, a gap
    longer than `stall_s` between chunks, or more than `total_s` in all is a hang."""

    first_byte_s: float = 60.0
    stall_s: float = 30.0
    total_s: float = 180.0

    def to_json(self) -> dict[str, float]:
        return {"first_byte_s": self.first_byte_s, "stall_s": self.stall_s, "total_s": self.total_s}


@dataclass(frozen=True)
class RequestTrace:
    """What happened to one request. Times are seconds from scenario start.

    `body` is the raw response body (capped; `body_truncated` says so) for
    non-streaming responses and error statuses; `events` are the SSE `data:` payloads
    in order, for streams. `error` is a transport failure (`"ClassName: message"`);
    `deadline` names the deadline that cut the request ("first_byte", "stall",
    "total"). `disconnected` is true when the client hung up on purpose."""

    id: str
    sent_s: float
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    first_byte_s: float | None = None
    chunk_times_s: tuple[float, ...] = ()
    end_s: float | None = None
    body: str | None = None
    body_truncated: bool = False
    events: tuple[str, ...] = ()
    error: str | None = None
    deadline: str | None = None
    deadline_s: float | None = None
    disconnected: bool = False

    @property
    def latency_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.sent_s

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sent_s": self.sent_s, "status": self.status,
                "headers": dict(self.headers), "first_byte_s": self.first_byte_s,
                "chunk_times_s": list(self.chunk_times_s), "end_s": self.end_s,
                "body": self.body, "body_truncated": self.body_truncated,
                "events": list(self.events), "error": self.error, "deadline": self.deadline,
                "deadline_s": self.deadline_s, "disconnected": self.disconnected}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RequestTrace:
        return cls(id=d["id"], sent_s=d["sent_s"], status=d.get("status"),
                   headers=d.get("headers", {}), first_byte_s=d.get("first_byte_s"),
                   chunk_times_s=tuple(d.get("chunk_times_s", ())), end_s=d.get("end_s"),
                   body=d.get("body"), body_truncated=d.get("body_truncated", False),
                   events=tuple(d.get("events", ())), error=d.get("error"),
                   deadline=d.get("deadline"), deadline_s=d.get("deadline_s"),
                   disconnected=d.get("disconnected", False))


@dataclass(frozen=True)
class Probe:
    """The target's state after a scenario: `/health` and a small canary generation.

    `health_status` None means `/health` did not answer (see `health_error`);
    `canary_ok` False means the canary failed or timed out while health may be 200."""

    health_status: int | None
    health_error: str | None = None
    canary_ok: bool | None = None
    canary_error: str | None = None
    canary_latency_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"health_status": self.health_status, "health_error": self.health_error,
                "canary_ok": self.canary_ok, "canary_error": self.canary_error,
                "canary_latency_s": self.canary_latency_s}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Probe:
        return cls(**{k: d.get(k) for k in ("health_status", "health_error", "canary_ok",
                                             "canary_error", "canary_latency_s")})


@dataclass(frozen=True)
class Trace:
    """Everything observed while running one scenario.

    `metrics_before`/`metrics_after` are the target's `/metrics` gauges (`running`,
    `waiting`, `kv_cache_usage`) at idle before the scenario and after it settled (or
    `metrics_wait_s` ran out); None when `/metrics` was not read or not available."""

    requests: tuple[RequestTrace, ...]
    deadlines: Deadlines = field(default_factory=Deadlines)
    probe_after: Probe | None = None
    wall_s: float = 0.0
    metrics_before: Mapping[str, float] | None = None
    metrics_after: Mapping[str, float] | None = None
    metrics_wait_s: float | None = None
    server_log: tuple[str, ...] = ()  # the target's notable log lines during the scenario

    def request(self, request_id: str) -> RequestTrace:
        for r in self.requests:
            if r.id == request_id:
                return r
        raise KeyError(request_id)

    def to_json(self) -> dict[str, Any]:
        return {"requests": [r.to_json() for r in self.requests],
                "deadlines": self.deadlines.to_json(),
                "probe_after": self.probe_after.to_json() if self.probe_after else None,
                "wall_s": self.wall_s,
                "metrics_before": _opt_dict(self.metrics_before),
                "metrics_after": _opt_dict(self.metrics_after),
                "metrics_wait_s": self.metrics_wait_s,
                "server_log": list(self.server_log)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Trace:
        probe = d.get("probe_after")
        return cls(requests=tuple(RequestTrace.from_json(r) for r in d["requests"]),
                   deadlines=Deadlines(**d.get("deadlines", {})),
                   probe_after=Probe.from_json(probe) if probe else None,
                   wall_s=d.get("wall_s", 0.0),
                   metrics_before=_opt_dict(d.get("metrics_before")),
                   metrics_after=_opt_dict(d.get("metrics_after")),
                   metrics_wait_s=d.get("metrics_wait_s"),
                   server_log=tuple(d.get("server_log", ())))


def _opt_dict(m: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if m is None else dict(m)


@dataclass(frozen=True)
class Failure:
    """One thing that went wrong. `signature` is the dedup key: kind + status +
    normalised message + the oracle's own detail, stable across ids and numbers."""

    kind: str
    signature: str
    message: str
    request_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "signature": self.signature, "message": self.message,
                "request_id": self.request_id, "evidence": dict(self.evidence)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Failure:
        return cls(kind=d["kind"], signature=d["signature"], message=d["message"],
                   request_id=d.get("request_id"), evidence=d.get("evidence", {}))
