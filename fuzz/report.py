"""The campaign summary and its Markdown rendering (pure; the campaign writes it).

The summary is a fold over the journal (see `ledger`), so a resumed campaign
rebuilds exactly the counters it had. Latencies live in a bounded histogram and a
per-interval timeline, never as a list, so memory stays flat over long runs. Server
states (`fuzz.signals` features) are counted per state, with when and by what origin
("generated" or a steering mutant's ops) each was first reached."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fuzz.signals import state_markdown, state_rows
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
    # False while a hang did not show up again on its re-check (see `fuzz.triage`): likely
    # CPU queueing on a loaded target, so it is shown apart and does not fail the run.
    # Journals written before re-checks existed have no such field: confirmed.
    confirmed: bool = True
    rechecks: int = 0  # re-check replays run for this signature
    recheck: dict[str, Any] | None = None  # what the last re-check saw


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
    # server states reached (features of `fuzz.signals`): scenarios per state, and
    # when (campaign seconds) and by which origin each was first reached
    server_states: Counter = field(default_factory=Counter)
    state_first_s: dict[str, float] = field(default_factory=dict)
    state_first_origin: dict[str, str] = field(default_factory=dict)
    # scenarios per origin op ("generated", "duplicate", ...), and those that reached a new state
    origins: Counter = field(default_factory=Counter)
    origins_new: Counter = field(default_factory=Counter)
    steered: int = 0
    # isolation and interference: counters per scenario judged (see `ledger`), time
    # spent judging, the noise model and the victim's calibration, why it is off
    isolation: Counter = field(default_factory=Counter)
    isolation_s: float = 0.0
    noise: dict[str, Any] = field(default_factory=dict)
    victim: dict[str, Any] = field(default_factory=dict)
    isolation_note: str = ""
    # the last `tokens` record: the scale measured through /tokenize (its JSON), None
    # when the target had none; `token_scale_measured` False until a record was seen.
    # `--resume` reuses it so the same seed draws the same scenarios.
    token_scale: dict[str, Any] | None = None
    token_scale_measured: bool = False

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

    @property
    def confirmed_failures(self) -> dict[str, FailureStats]:
        """The failures that count: `vlfuzz run` exits 1 when there is any."""
        return {k: f for k, f in self.failures.items() if f.confirmed}

    @property
    def unconfirmed_failures(self) -> dict[str, FailureStats]:
        """Hangs that did not come back on re-check: reported apart, not counted."""
        return {k: f for k, f in self.failures.items() if not f.confirmed}


def server_state_rows(s: Summary) -> list[dict[str, Any]]:
    """The states reached (`fuzz.signals.state_rows`, first seen in campaign seconds),
    each with the origin that reached it first."""
    rows = state_rows(s.server_states, s.state_first_s)
    for row in rows:
        row["origin"] = s.state_first_origin.get(row["feature"])
    return rows


def _isolation_lines(s: Summary) -> list[str]:
    """The isolation and interference section: the bar, the victim, and how many
    suspects replay confirmed (on a healthy target every confirmed one is a false
    alarm, and unconfirmed suspects are the price of a noisy server)."""
    if not (s.noise or s.isolation or s.isolation_note):
        return []
    iso = s.isolation
    lines = ["", "## Isolation and interference", ""]
    if s.isolation_note:
        lines.append(f"- off: {s.isolation_note}")
    model = s.noise.get("model") or {}
    if model:
        batches = ", ".join(
            f"{'alone' if b['batch_size'] == 1 else 'batch ' + str(b['batch_size'])} "
            f"{b['diverged']}/{b['runs']} diverged" for b in model.get("batches", []))
        threshold = model.get("margin_threshold")
        bar = "none (never flags)" if threshold is None else f"{threshold:.4g} nats"
        lines.append(f"- natural variance ({s.noise.get('source', '?')}): {batches or 'no runs'}; "
                     f"largest logprob move {model.get('max_logprob_delta', 0):.4g}, largest "
                     f"flipped lead {model.get('max_flip_margin') or 0:.4g}; bar {bar}")
    medians = (s.victim.get("alone") or {}).get("medians") or {}
    if medians:
        lines.append("- victim alone (medians): " + ", ".join(
            f"{k[:-2]} {medians[k] * 1000:.1f} ms" for k in ("ttft_s", "tpot_s", "e2e_s")
            if medians.get(k) is not None))
    lines += [f"- scenarios judged: {iso['checked']} (skipped {iso['skipped']}); probes judged "
              f"{iso['probes']}, victims {iso['victims']}; {s.isolation_s:.0f}s spent judging "
              "and confirming",
              f"- isolation suspects {iso['suspects']}: confirmed {iso['confirmed']}, not "
              f"confirmed {iso['unconfirmed']} ({iso['replays']} replays)",
              f"- interference suspects {iso['slow_suspects']}: confirmed "
              f"{iso['slow_confirmed']}, not confirmed {iso['slow_unconfirmed']} "
              f"({iso['slow_replays']} replays)"]
    return lines


def _steering_lines(s: Summary) -> list[str]:
    """Which states steering mutants reached first, and what each origin op yielded."""
    if not s.origins:
        return []
    steered = sorted(f for f, origin in s.state_first_origin.items() if origin != "generated")
    ops = ", ".join(f"{op} {n} ({s.origins_new[op]} new)" for op, n in sorted(s.origins.items()))
    lines = [""]
    if steered:
        lines.append(f"Reached first by a steering mutant ({len(steered)}): " + ", ".join(
            f"`{f}` ({s.state_first_origin[f]})" for f in steered[:40])
            + (", ..." if len(steered) > 40 else "") + ".")
    lines.append(f"Scenarios by origin (how many reached a state no earlier one had): {ops}; "
                 f"{s.steered} of {s.scenarios} were steered mutants.")
    return lines


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


def _bundle_cell(f: FailureStats) -> str:
    return f"`{f.bundle}`" if f.bundle else "-"


def _sig_cell(f: FailureStats) -> str:
    return f.signature.replace("|", "\\|")[:160]


def recheck_text(recheck: dict[str, Any] | None) -> str:
    """What a hang's re-check saw, in a few words (or why it did not run)."""
    if not recheck:
        return "-"
    if "signatures" not in recheck:
        return str(recheck.get("skipped") or "not re-checked")
    sigs = [str(x) for x in recheck.get("signatures") or []]
    saw = ", ".join(f"`{x[:60]}`".replace("|", "\\|") for x in sigs[:3]) or "no failure"
    return f"{saw}{', ...' if len(sigs) > 3 else ''} in {float(recheck.get('wall_s', 0.0)):.1f}s"


UNCONFIRMED_TITLE = "Not reproduced on re-check (likely queueing on a loaded target)"


def _unconfirmed_lines(s: Summary) -> list[str]:
    """Hangs whose one re-check replay did not hang again: kept (bundled, 1 of 2) and
    shown, but apart from the failures and not counted among them."""
    apart = s.unconfirmed_failures
    if not apart:
        return []
    lines = ["", f"## {UNCONFIRMED_TITLE} ({len(apart)} unique, "
                 f"{sum(f.count for f in apart.values())} seen)", "",
             "| kind | seen | first at | re-checks | last re-check saw | bundle | signature |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted(apart.values(), key=lambda f: (-f.count, f.signature)):
        lines.append(f"| {f.kind} | {f.count} | {f.first_seen_s:.0f}s | {f.rechecks} "
                     f"| {recheck_text(f.recheck)} | {_bundle_cell(f)} | `{_sig_cell(f)}` |")
    return lines


def render_report(s: Summary) -> str:
    """A morning-readable Markdown report: load driven, failures, coverage."""
    confirmed = s.confirmed_failures
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
        f"## Failures ({len(confirmed)} unique, {sum(f.count for f in confirmed.values())} seen)", "",
    ]
    if not confirmed:
        lines.append("None found.")
    else:
        lines += ["| kind | seen | first at | reproduced | requests (orig → min) | bundle | signature |",
                  "|---|---|---|---|---|---|---|"]
        for f in sorted(confirmed.values(), key=lambda f: (-f.count, f.signature)):
            size = f"{f.requests_before} → {f.requests_after if f.requests_after is not None else '?'}"
            lines.append(f"| {f.kind} | {f.count} | {f.first_seen_s:.0f}s | {f.reproduced or '-'} "
                         f"| {size} | {_bundle_cell(f)} | `{_sig_cell(f)}` |")
        notes = [f"- `{f.signature[:80]}`: {f.minimize_note}" for f in confirmed.values() if f.minimize_note]
        if notes:
            lines += ["", "Notes:", *notes]
    lines += _unconfirmed_lines(s)
    lines += _isolation_lines(s)
    lines += ["", state_markdown(server_state_rows(s)).rstrip("\n")]
    lines += _steering_lines(s)
    lines += ["", "## Coverage (requests per feature)", ""]
    if s.features:
        lines += ["| feature | requests |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(s.features.items())]
    else:
        lines.append("No requests were sent.")
    return "\n".join(lines) + "\n"
