"""Server-side signals turned into features: which server states a scenario reached.

A response can look the same whether or not the scheduler preempted a request, the
prefix cache served half the prompt or a tool parser threw behind a 200. vLLM says
so in `/metrics` (counters read before and after the scenario, gauges sampled for
their peaks while it ran) and in its log. This module reads those into named,
bucketed features ("preemptions:2-3", "prefix_cache:hit_rate:50-75%",
"log:traceback:hermes_tool_parser.py:json.decoder.JSONDecodeError") that steering
(`fuzz.steering`) hunts for and the report lists. Counts are bucketed by powers of
two, so "more of the same" is a new feature only when it is a lot more.

Pure: the poller (`fuzz.metrics_poller`) and the log follower (`fuzz.server_log`)
do the I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fuzz.server_log import LogEvent, classify, notable

__all__ = ["ServerSignals", "fold_peaks", "log2_bucket", "log_features", "metric_features",
           "read_series", "server_features", "state_markdown", "state_rows"]

# Counters: Prometheus family (without `_total`) -> series key.
_COUNTERS = {
    "vllm:num_preemptions": "preemptions",
    "vllm:prefix_cache_queries": "prefix_cache_queries",
    "vllm:prefix_cache_hits": "prefix_cache_hits",
    "vllm:mm_cache_queries": "mm_cache_queries",
    "vllm:mm_cache_hits": "mm_cache_hits",
    "vllm:corrupted_requests": "corrupted_requests",
}
# Counters whose labels matter: family -> (key prefix, label names kept).
_LABELLED = {
    "vllm:request_success": ("finished", ("finished_reason",)),
    "vllm:admission_rejections": ("admission_rejected", ("reason",)),
    "vllm:tool_call_parser_invocations": ("tool_parser", ("mode", "outcome")),
}
# Gauges: family -> (series key, how engines combine).
_GAUGES = {
    "vllm:num_requests_running": ("running", "sum"),
    "vllm:num_requests_waiting": ("waiting", "sum"),
    "vllm:kv_cache_usage_perc": ("kv_cache_usage", "max"),
    "vllm:gpu_cache_usage_perc": ("kv_cache_usage", "max"),
    "vllm:cpu_cache_usage_perc": ("kv_cache_usage", "max"),
}
_GAUGES_BY_LABEL = {"vllm:num_requests_waiting_by_reason": ("waiting", "reason")}
# Histograms whose largest observation is a state: family -> key.
_HISTOGRAMS = {
    "vllm:iteration_tokens_total": "iteration_tokens",
    "vllm:request_queue_time_seconds": "queue_time_s",
}
GAUGE_PREFIXES = ("running", "waiting", "kv_cache_usage")

_SAMPLE_RE = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_KV_EDGES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90)
_RATE_EDGES = (0.25, 0.50, 0.75)


def read_series(text: str) -> dict[str, float]:
    """The series steering cares about from Prometheus text, summed over engines:
    counters (`preemptions`, `finished:abort`, `tool_parser:streaming:tool_call`, ...),
    gauges (`running`, `waiting`, `waiting:capacity`, `kv_cache_usage`) and the
    cumulative buckets of a few histograms (`hist:iteration_tokens:256`)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        match = _SAMPLE_RE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        name, labels = match.group(1), dict(_LABEL_RE.findall(match.group(2) or ""))
        keyed = _series_key(name, labels)
        if keyed is None:
            continue
        key, combine = keyed
        if key in out:
            value = max(out[key], value) if combine == "max" else out[key] + value
        out[key] = value
    return out


def _series_key(name: str, labels: Mapping[str, str]) -> tuple[str, str] | None:
    family = name[:-len("_total")] if name.endswith("_total") else name
    if family in _COUNTERS:
        return _COUNTERS[family], "sum"
    if family in _LABELLED:
        prefix, names = _LABELLED[family]
        return ":".join([prefix, *(labels.get(n, "?") for n in names)]), "sum"
    if name in _GAUGES:
        return _GAUGES[name]
    if name in _GAUGES_BY_LABEL:
        prefix, label = _GAUGES_BY_LABEL[name]
        return f"{prefix}:{labels.get(label, '?')}", "sum"
    if name.endswith("_bucket") and name[:-len("_bucket")] in _HISTOGRAMS:
        return f"hist:{_HISTOGRAMS[name[:-len('_bucket')]]}:{labels.get('le', '?')}", "sum"
    return None


def _is_gauge(key: str) -> bool:
    return key.split(":")[0] in GAUGE_PREFIXES


def fold_peaks(peaks: Mapping[str, float], reading: Mapping[str, float]) -> dict[str, float]:
    """`peaks` raised by the gauges of one more reading (pure)."""
    out = dict(peaks)
    for key, value in reading.items():
        if _is_gauge(key):
            out[key] = max(out.get(key, value), value)
    return out


@dataclass(frozen=True)
class ServerSignals:
    """`/metrics` series at idle before a scenario, after it (and its settling), and
    the peak of each gauge over the samples taken while it ran."""

    before: Mapping[str, float]
    after: Mapping[str, float]
    peaks: Mapping[str, float] = field(default_factory=dict)
    samples: int = 0

    def delta(self, key: str) -> float:
        """How much a counter grew (0 when absent or reset by a restart)."""
        return max(0.0, self.after.get(key, 0.0) - self.before.get(key, 0.0))

    def to_json(self) -> dict[str, Any]:
        return {"before": dict(self.before), "after": dict(self.after),
                "peaks": dict(self.peaks), "samples": self.samples}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ServerSignals:
        return cls(before=dict(d["before"]), after=dict(d["after"]),
                   peaks=dict(d.get("peaks", {})), samples=int(d.get("samples", 0)))


def log2_bucket(n: float) -> str | None:
    """"1", "2-3", "4-7", "8-15", ...; None below 1 (nothing happened)."""
    k = int(n)
    if k < 1:
        return None
    lo = 1 << (k.bit_length() - 1)
    return "1" if lo == 1 else f"{lo}-{2 * lo - 1}"


def _edges_bucket(x: float, edges: Sequence[float]) -> str:
    """A fraction's band between `edges`, as percentages ("<1%", "25-50%", ">=90%")."""
    pct = [f"{round(e * 100)}" for e in edges]
    if x < edges[0]:
        return f"<{pct[0]}%"
    for i in range(1, len(edges)):
        if x < edges[i]:
            return f"{pct[i - 1]}-{pct[i]}%"
    return f">={pct[-1]}%"


def _hit_rate_bucket(rate: float) -> str:
    return "0%" if rate <= 0 else _edges_bucket(rate, _RATE_EDGES).replace("<25%", "0-25%")


def _largest_observation(s: ServerSignals, name: str) -> str | None:
    """The upper bound of the bucket holding the largest observation made during the
    scenario: the smallest `le` whose delta equals the `+Inf` delta."""
    prefix = f"hist:{name}:"
    edges = []
    for key in s.after:
        if key.startswith(prefix):
            le = key[len(prefix):]
            try:
                edges.append((float(le), le))
            except ValueError:
                continue
    edges.sort()
    total = s.delta(prefix + "+Inf")
    if total <= 0:
        return None
    for value, le in edges:
        if s.delta(prefix + le) >= total:
            return "+Inf" if math.isinf(value) else f"{value:g}"
    return None


def metric_features(s: ServerSignals) -> frozenset[str]:
    """Features from counter deltas, gauge peaks and histogram maxima (pure)."""
    out: set[str] = set()

    def add(name: str, bucket: str | None) -> None:
        if bucket is not None:
            out.add(f"{name}:{bucket}")

    add("preemptions", log2_bucket(s.delta("preemptions")))
    add("corrupted_requests", log2_bucket(s.delta("corrupted_requests")))
    for cache in ("prefix_cache", "mm_cache"):
        queries, hits = s.delta(f"{cache}_queries"), s.delta(f"{cache}_hits")
        if queries > 0:
            out.add(f"{cache}:hit_rate:{_hit_rate_bucket(hits / queries)}")
        add(f"{cache}:hits", log2_bucket(hits))
    for key in sorted(set(s.after) | set(s.before)):
        if key.split(":")[0] in ("finished", "admission_rejected", "tool_parser"):
            add(key, log2_bucket(s.delta(key)))
    for key, value in sorted(s.peaks.items()):
        if key == "kv_cache_usage":
            if value > s.before.get(key, 0.0):  # KV use rose during the scenario
                out.add(f"peak:kv_cache_usage:{_edges_bucket(value, _KV_EDGES)}")
        else:
            add(f"peak:{key}", log2_bucket(value))
    for name in _HISTOGRAMS.values():
        add(f"max:{name}", _largest_observation(s, name))
    return frozenset(out)


_DIGITS_RE = re.compile(r"\d+")
TEMPLATE_CHARS = 100


def _template(text: str) -> str:
    """A log message as a feature name: signature-normalised, then every digit run
    folded too (tool names like gen_tool_3 would otherwise split one state in many)."""
    return _DIGITS_RE.sub("<n>", text)[:TEMPLATE_CHARS]


def log_features(events: Iterable[LogEvent]) -> frozenset[str]:
    """`log:warning:<origin>:<template>`, `log:error:<origin>:<template>` and
    `log:traceback:<origin>:<exception type>` for the notable events (pure)."""
    out: set[str] = set()
    for event in events:
        if not notable(event):
            continue
        if event.kind == "traceback":
            exc_type = (event.exception or "").split(":", 1)[0].strip() or "?"
            out.add(f"log:traceback:{event.origin}:{exc_type}")
        else:
            out.add(f"log:{event.kind}:{event.origin}:{_template(event.template)}")
    return frozenset(out)


def server_features(signals: ServerSignals | None,
                    log_lines: Sequence[str] = ()) -> frozenset[str]:
    """Everything one scenario reached on the server: `/metrics` features (when read)
    and log features (when the target's log is followed)."""
    found = metric_features(signals) if signals is not None else frozenset()
    return found | log_features(classify(log_lines))


# What each feature family means, for the report.
FAMILIES: dict[str, str] = {
    "preemptions": "requests preempted (KV cache or scheduler pressure) during one scenario",
    "prefix_cache": "prefix cache: hit rate over the scenario's queries, and hit tokens",
    "mm_cache": "multimodal (processor) cache: hit rate over the scenario's items, and hits",
    "finished": "requests finished by the engine, by finish reason",
    "admission_rejected": "requests refused by a queue limit, by reason",
    "tool_parser": "tool-call parser invocations, by mode and outcome",
    "corrupted_requests": "requests with NaNs in their logits",
    "peak": "peak of a gauge while the scenario ran (running, waiting, KV cache use)",
    "max": "largest observation of a histogram (tokens in one engine step, queue time)",
    "log": "server log events: warnings, errors and tracebacks, by template",
}
_FAMILY_ORDER = {name: i for i, name in enumerate(FAMILIES)}


def _family(feature: str) -> str:
    return feature.split(":", 1)[0]


def state_rows(counts: Mapping[str, int],
               first_seen: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per server state reached, for summary.json (and `state_markdown`):
    feature, family, how many scenarios reached it, when it was first reached (in
    whatever unit `first_seen` uses: a scenario index or campaign seconds)."""
    rows = []
    for feature, n in counts.items():
        if n <= 0:
            continue
        family = _family(feature)
        rows.append({"feature": feature, "family": family, "scenarios": int(n),
                     "first_seen": None if first_seen is None else first_seen.get(feature)})
    rows.sort(key=lambda r: (_FAMILY_ORDER.get(r["family"], len(FAMILIES)), r["feature"]))
    return rows


def state_markdown(rows: Sequence[Mapping[str, Any]], *, first_seen_unit: str = "s") -> str:
    """A "Server states reached" section for report.md, grouped by family."""
    lines = [f"## Server states reached ({len(rows)})", ""]
    if not rows:
        return "\n".join(lines + ["None observed (no `/metrics` and no server log).", ""])
    lines += ["| state | scenarios | first seen |", "|---|---|---|"]
    family = None
    for r in rows:
        if r["family"] != family:
            family = r["family"]
            lines.append(f"| **{family}**: {FAMILIES.get(family, '')} | | |")
        first = r.get("first_seen")
        first_text = "-" if first is None else f"{first:g}{first_seen_unit}"
        name = str(r["feature"]).replace("|", "\\|")
        lines.append(f"| `{name}` | {r['scenarios']} | {first_text} |")
    return "\n".join(lines) + "\n"
