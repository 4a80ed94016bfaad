"""The campaign's report files: `report.md`, `summary.json` and `report.html`.

All three are rendered from the same `Summary`, passed through the redactor, and
written atomically, so a reader (or a crash) never sees half a file. `summary.json`
is the stable, machine-readable one: `format_version` 1, described by
`schemas/summary.schema.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fuzz import __version__
from fuzz.journal import write_atomic
from fuzz.redact import Redactor
from fuzz.report import Summary, render_report
from fuzz.report_html import render_html

SUMMARY_FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "summary.schema.json"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def disk_usage(out_dir: Path) -> dict[str, int]:
    """Bytes used by the campaign folder, split by what uses them."""
    journal = _size(out_dir / "journal.jsonl") if (out_dir / "journal.jsonl").exists() else 0
    bundles = _size(out_dir / "bundles") if (out_dir / "bundles").exists() else 0
    return {"journal_bytes": journal, "bundles_bytes": bundles, "total_bytes": _size(out_dir)}


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)


def summary_json(s: Summary) -> dict[str, Any]:
    """The stable JSON form of a campaign summary (see schemas/summary.schema.json)."""
    lat = s.latency
    return {
        "format_version": SUMMARY_FORMAT_VERSION,
        "vlfuzz_version": __version__,
        "seed": s.seed,
        "endpoint": s.endpoint,
        "model": s.target.get("model"),
        "server_version": s.target.get("version"),
        "elapsed_s": round(s.elapsed_s, 3),
        "fuzz_s": round(s.fuzz_s, 3),
        "stopped_because": s.stopped_because,
        "sessions": s.sessions,
        "generator_errors": s.generator_errors,
        "scenarios": s.scenarios,
        "requests": s.requests,
        "requests_per_s": round(s.requests_per_s, 4),
        "latency_s": {"p50": _r(lat.percentile(50)), "p90": _r(lat.percentile(90)),
                      "p99": _r(lat.percentile(99)), "max": _r(lat.max_s) if lat.total else None,
                      "samples": lat.total},
        "statuses": dict(sorted(s.statuses.items())),
        "features": dict(sorted(s.features.items())),
        "failures": [{
            "kind": f.kind, "signature": f.signature, "message": f.message, "count": f.count,
            "first_seen_s": round(f.first_seen_s, 3), "bundle": f.bundle,
            "reproduced": f.reproduced, "requests_before": f.requests_before,
            "requests_after": f.requests_after, "minimize_note": f.minimize_note,
            "minimize_pending": f.signature in s.pending_minimizations,
        } for f in sorted(s.failures.values(), key=lambda f: (-f.count, f.signature))],
        "target": {"restarts": s.target_restarts, "waits": len(s.target_waits),
                   "waited_s": round(sum(s.target_waits), 3),
                   "longest_wait_s": round(max(s.target_waits, default=0.0), 3),
                   "state": s.target_state},
        "disk": dict(s.disk),
        "timeline": {"interval_s": s.timeline.width_s, "points": s.timeline.points()},
    }


def write_reports(out_dir: Path, summary: Summary, redact: Redactor | None = None) -> None:
    """(Re)write report.md, summary.json and report.html in `out_dir`."""
    redact = redact or Redactor()
    summary.disk = disk_usage(out_dir)
    doc = redact(summary_json(summary))
    write_atomic(out_dir / "summary.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    write_atomic(out_dir / "report.md", redact.text(render_report(summary)) if redact
                 else render_report(summary))
    write_atomic(out_dir / "report.html", render_html(doc, out_dir))


def validate_summary(doc: Any) -> None:
    """Raise jsonschema.ValidationError when `doc` does not match the schema."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
