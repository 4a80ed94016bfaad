"""An Endpoint that also sends extra headers (`--header NAME:VALUE`) to every request.

The runner builds every request's headers from `Endpoint.headers()`, so a subclass
is enough to reach endpoints behind gateways that want more than a bearer token.
Secrets are kept out of `repr`, so an endpoint in a log line leaks nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from fuzz.redact import Redactor
from fuzz.runner import Endpoint


@dataclass(frozen=True)
class AuthEndpoint(Endpoint):
    """`Endpoint` plus `extra_headers` (name, value) pairs, sent after Authorization."""

    api_key: str | None = field(default=None, repr=False)
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def headers(self) -> dict[str, str]:
        out = super().headers()
        out.update(dict(self.extra_headers))
        return out

    def redactor(self) -> Redactor:
        return redactor_for(self)


def redactor_for(endpoint: Endpoint) -> Redactor:
    """A redactor for every secret the endpoint sends (api key, header values)."""
    extra = getattr(endpoint, "extra_headers", ())
    values = [endpoint.api_key, *(v for _n, v in extra)]
    if endpoint.api_key:
        values.append(f"Bearer {endpoint.api_key}")
    return Redactor(values)
