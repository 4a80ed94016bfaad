"""Request bodies as bytes on the wire: media resolved, `model` filled in, JSON-encoded.

The runner encodes every body of a scenario before its clock starts, but the CPU still
counts against the load it can drive. An image is most of its request's bytes, and
encoding it the plain way costs a base64 pass and a JSON escaping pass over the data
URL in every request that uses it (about 250 µs for a 256x256 JPEG, a third of such a
request's client CPU). A `BodyEncoder` does that once per image per scenario, and skips
the escaping pass for well-formed base64: bodies are encoded with a short stand-in data
URL, and the stand-in's JSON literal is then replaced by the real data URL's.

That is byte for byte what `json.dumps(resolve_media(...))` gives, because a stand-in
names a random 128-bit nonce drawn per encoder, so its literal (quotes included) cannot
occur in the JSON text except as the encoding of a stand-in itself.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from fuzz.model import Media, RequestSpec, Scenario, resolve_media


def _json(body: Any, spec: RequestSpec, model: str) -> str | None:
    """JSON text with `model` filled in for POSTs; None for an empty GET/HEAD body."""
    if isinstance(body, dict):
        if spec.method.upper() in ("GET", "HEAD") and not body:
            return None
        if spec.method.upper() == "POST" and "model" not in body:
            body = {"model": model, **body}
    return json.dumps(body)


class BodyEncoder:
    """Encodes the bodies of one scenario, each image's data URL built and escaped once."""

    def __init__(self, scenario: Scenario, model: str, *,
                 fixture_base_url: str | None = None) -> None:
        self._scenario, self._model, self._fixture_base_url = scenario, model, fixture_base_url
        nonce = secrets.token_hex(16)
        self._stand_ins = {sha: Media(data=b"", mime=f"vlfuzz-splice-{nonce}-{sha}")
                           for sha in scenario.media}
        self._literals: dict[str, tuple[str, str]] = {}  # sha: (stand-in, real) literals

    def encode(self, spec: RequestSpec) -> bytes | None:
        """The wire body of `spec`: media resolved (data URLs, and fixture-server URLs
        under `fixture_base_url`), `model` filled in when absent. Raises what cannot be
        encoded (a fixture URL without a base, a value json refuses)."""
        if isinstance(spec.body, str):  # deliberately raw, e.g. a body that is not JSON
            raw = resolve_media(spec.body, self._scenario.media, self._fixture_base_url)
            return raw.encode("utf-8")
        text = _json(resolve_media(spec.body, self._stand_ins, self._fixture_base_url),
                     spec, self._model)
        if text is None:
            return None
        for sha in set(spec.media_refs()):
            stand_in, real = self._literal(sha)
            text = text.replace(stand_in, real)
        return text.encode("utf-8")

    def _literal(self, sha: str) -> tuple[str, str]:
        found = self._literals.get(sha)
        if found is None:
            found = self._literals[sha] = (json.dumps(self._stand_ins[sha].data_url()),
                                           _data_url_literal(self._scenario.media[sha]))
        return found


def _data_url_literal(media: Media) -> str:
    """`json.dumps(media.data_url())`, without scanning a well-formed base64 payload:
    its characters ([A-Za-z0-9+/=]) never need escaping, so only the prefix is escaped."""
    url = media.data_url()
    prefix = f"data:{media.mime};base64,"
    if media.encoding == "base64" and url.startswith(prefix):
        return json.dumps(prefix)[:-1] + url[len(prefix):] + '"'
    return json.dumps(url)
