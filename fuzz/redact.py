"""Keeping secrets (API keys, auth header values) out of everything vlfuzz writes.

The runner never records request headers, but a server may echo them back in an
error body, and aiohttp may quote them in an exception; so every record, report and
bundle passes through a `Redactor` before it reaches disk or the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "<redacted>"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary text and hide nothing


class Redactor:
    """Replaces every known secret value with `MASK`, deep inside JSON-like data."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS},
                              key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, MASK)
        return value

    def __call__(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' -> ('Name', 'value'); raises ValueError when there is no name."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        raise ValueError(f"expected NAME:VALUE, got {text.split(':')[0][:40]!r}...")
    return name.strip(), value.strip()
