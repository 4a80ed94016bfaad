"""A person's verdict on one bundle, kept in bundle.json's optional `triage` section.

A campaign cannot tell a vLLM bug from a limitation of the CPU build, an artefact of the
tiny random-weight model or a mistake of the fuzzer; someone who looked at the failure
can. Recording it in the bundle (with the versions it was seen on and the upstream
report) lets ISSUE.md, `vlfuzz bundle show` and CI say so. Not to be confused with
`fuzz.triage`, the campaign's handling of fresh failures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

VERDICTS: tuple[str, ...] = ("vllm-bug", "cpu-build-limitation", "model-artefact",
                             "fuzzer-artefact", "untriaged")
UNTRIAGED = "untriaged"
_MEANING = {
    "vllm-bug": "Believed to be a bug in vLLM.",
    "cpu-build-limitation": "Believed to be a limitation of vLLM's CPU build rather than a "
                            "bug of vLLM in general.",
    "model-artefact": "Believed to be an artefact of the tiny random-weight test model rather "
                      "than a vLLM bug.",
    "fuzzer-artefact": "Believed to be an artefact of vlfuzz itself, not a server bug: do not "
                       "report it upstream.",
    "untriaged": "Not triaged yet: whether this is a vLLM bug is still open.",
}
_URL = re.compile(r"^https?://\S+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class BundleTriage:
    """`verdict` is one of VERDICTS; `versions_seen` the server versions (`/version`) the
    failure was seen on; `upstream` the issue or PR that tracks it; `updated` the day
    (YYYY-MM-DD) the triage was last changed."""

    verdict: str = UNTRIAGED
    versions_seen: tuple[str, ...] = ()
    note: str = ""
    upstream: str | None = None
    updated: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"triage verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.upstream is not None and not _URL.match(self.upstream):
            raise ValueError(f"upstream must be an http(s) URL, got {self.upstream!r}")
        if self.updated is not None and not _DATE.match(self.updated):
            raise ValueError(f"updated must be a date (YYYY-MM-DD), got {self.updated!r}")
        versions = tuple(dict.fromkeys(str(v).strip() for v in self.versions_seen))
        if any(not v for v in versions):
            raise ValueError("versions_seen holds an empty version")
        object.__setattr__(self, "versions_seen", versions)

    @property
    def meaning(self) -> str:
        """The verdict in one plain sentence, for ISSUE.md and `bundle show`."""
        return _MEANING[self.verdict]

    def summary(self) -> str:
        """One plain paragraph: verdict, what it means, versions, upstream, note."""
        parts = [f"{self.verdict}: {self.meaning}"]
        if self.versions_seen:
            parts.append(f"Seen on vLLM {', '.join(self.versions_seen)}.")
        if self.upstream:
            parts.append(f"Upstream: {self.upstream}")
        return " ".join(parts + ([self.note] if self.note else []))

    def updated_with(self, *, verdict: str | None = None, note: str | None = None,
                     versions: Iterable[str] = (), upstream: str | None = None,
                     updated: str | None = None) -> BundleTriage:
        """A copy with the given fields changed; versions are added, never dropped."""
        return replace(self, verdict=verdict or self.verdict,
                       note=self.note if note is None else note,
                       versions_seen=(*self.versions_seen, *versions),
                       upstream=self.upstream if upstream is None else upstream or None,
                       updated=updated or self.updated)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"verdict": self.verdict, "versions_seen": list(self.versions_seen),
                               "note": self.note, "upstream": self.upstream}
        if self.updated is not None:
            doc["updated"] = self.updated
        return doc

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BundleTriage:
        return cls(verdict=d.get("verdict", UNTRIAGED),
                   versions_seen=tuple(d.get("versions_seen") or ()), note=d.get("note") or "",
                   upstream=d.get("upstream"), updated=d.get("updated"))
