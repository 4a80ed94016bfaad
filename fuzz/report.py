"""The campaign summary and its Markdown rendering (pure; the campaign writes it).

The summary is a fold over the journal (see `ledger`), so a resumed campaign
rebuilds exactly the counters it had. Latencies live in a bounded histogram and a
per-interval timeline, never as a list, so memory stays flat over long runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fuzz.timeline import Histogram, Timeline


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
    latency: Histogram = field(default_factory=Histogram)
    timeline: Timeline = field(default_factory=Timeline)
    features: Counter = field(default_factory=Counter)
    failures: dict[str, FailureStats] = field(default_factory=dict)
    target_restarts: int = 0
    target_waits: list[float] = field(default_factory=list)
    target_state: str = "unknown"
    pending_minimizations: set[str] = field(default_factory=set)
    sessions: int = 0
    next_round: int = 0
    in_flight: int = 0
    disk: dict[str, int] = field(default_factory=dict)
    generator_errors: int = 0
    stopped_because: str = "duration reached"

    @property
    def requests_per_s(self) -> float:
        """While scenarios were being sent (excludes minimizing and restarts)."""
        return self.requests / self.fuzz_s if self.fuzz_s > 0 else 0.0

    @property
    def overall_requests_per_s(self) -> float:
        """Over the whole run, restarts and minimizing included."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failures_seen(self) -> int:
        return sum(f.count for f in self.failures.values())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def render_report(s: Summary) -> str:
    """A morning-readable Markdown report: load driven, failures, coverage."""
    lines = [
        "# vlfuzz campaign report", "",
        f"- endpoint: `{s.endpoint}` (model `{s.target.get('model', '?')}`, "
        f"vLLM {s.target.get('version', '?')}, max_model_len {s.target.get('max_model_len', '?')})",
        f"- seed: {s.seed}; ran {s.elapsed_s:.0f}s ({s.stopped_because})",
        f"- scenarios: {s.scenarios}; requests: {s.requests}; "
        f"{s.overall_requests_per_s:.2f} requests/s over the run, "
        f"{s.requests_per_s:.2f} while sending ({s.fuzz_s:.0f}s)",
        f"- latency p50 {_fmt_s(s.latency.percentile(50))}, "
        f"p90 {_fmt_s(s.latency.percentile(90))}, p99 {_fmt_s(s.latency.percentile(99))}, "
        f"max {_fmt_s(s.latency.max_s if s.latency.total else None)}",
        "- statuses: " + (", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items(), key=str)) or "none"),
        f"- target restarts: {s.target_restarts}; waits for the target: {len(s.target_waits)} "
        f"({sum(s.target_waits):.0f}s in all, longest {max(s.target_waits, default=0.0):.0f}s)",
        f"- sessions: {s.sessions} (more than one: the campaign was resumed); "
        f"minimizations pending: {len(s.pending_minimizations)}; "
        f"rounds lost to generator errors: {s.generator_errors} (see the journal)",
        f"- disk: {_fmt_bytes(s.disk.get('total_bytes'))} (journal "
        f"{_fmt_bytes(s.disk.get('journal_bytes'))}, bundles {_fmt_bytes(s.disk.get('bundles_bytes'))})",
        "",
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
