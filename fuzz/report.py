"""The campaign summary and its Markdown rendering (pure; the campaign writes it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FailureStats:
    """What the campaign knows about one unique signature."""

    kind: str
    signature: str
    message: str
    count: int = 0
    first_seen_s: float = 0.0
    bundle: str | None = None
    reproduced: str | None = None  # "k/n"
    requests_before: int = 0
    requests_after: int | None = None
    minimize_note: str = ""


@dataclass
class Summary:
    """Counters the campaign keeps while running; everything the report shows."""

    seed: int
    endpoint: str
    target: dict[str, Any] = field(default_factory=dict)
    scenarios: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    fuzz_s: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    features: Counter = field(default_factory=Counter)
    failures: dict[str, FailureStats] = field(default_factory=dict)
    target_restarts: int = 0
    stopped_because: str = "duration reached"

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.fuzz_s if self.fuzz_s > 0 else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def render_report(s: Summary) -> str:
    """A morning-readable Markdown report: load driven, failures, coverage."""
    lines = [
        "# vlfuzz campaign report", "",
        f"- endpoint: `{s.endpoint}` (model `{s.target.get('model', '?')}`, "
        f"vLLM {s.target.get('version', '?')}, max_model_len {s.target.get('max_model_len', '?')})",
        f"- seed: {s.seed}; ran {s.elapsed_s:.0f}s ({s.stopped_because})",
        f"- scenarios: {s.scenarios}; requests: {s.requests}; "
        f"{s.requests_per_s:.2f} requests/s while fuzzing ({s.fuzz_s:.0f}s)",
        f"- latency p50 {_fmt_s(percentile(s.latencies_s, 50))}, "
        f"p90 {_fmt_s(percentile(s.latencies_s, 90))}, p99 {_fmt_s(percentile(s.latencies_s, 99))}, "
        f"max {_fmt_s(max(s.latencies_s) if s.latencies_s else None)}",
        f"- statuses: " + (", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items(), key=str)) or "none"),
        f"- target restarts: {s.target_restarts}", "",
        f"## Failures ({len(s.failures)} unique, {sum(f.count for f in s.failures.values())} seen)", "",
    ]
    if not s.failures:
        lines.append("None found.")
    else:
        lines += ["| kind | seen | first at | reproduced | requests (orig → min) | bundle | signature |",
                  "|---|---|---|---|---|---|---|"]
        for f in sorted(s.failures.values(), key=lambda f: (-f.count, f.signature)):
            size = f"{f.requests_before} → {f.requests_after if f.requests_after is not None else '?'}"
            sig = f.signature.replace("|", "\\|")[:160]
            lines.append(f"| {f.kind} | {f.count} | {f.first_seen_s:.0f}s | {f.reproduced or '-'} "
                         f"| {size} | {('`' + f.bundle + '`') if f.bundle else '-'} | `{sig}` |")
        notes = [f"- `{f.signature[:80]}`: {f.minimize_note}" for f in s.failures.values() if f.minimize_note]
        if notes:
            lines += ["", "Notes:", *notes]
    lines += ["", "## Coverage (requests per feature)", ""]
    if s.features:
        lines += ["| feature | requests |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(s.features.items())]
    else:
        lines.append("No requests were sent.")
    return "\n".join(lines) + "\n"
