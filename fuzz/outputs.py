"""The campaign's report files: `report.md`, `summary.json` and `report.html`.

All three are rendered from the same `Summary`, passed through the redactor, and
written atomically, so a reader (or a crash) never sees half a file. `summary.json`
is the stable, machine-readable one: `format_version` 1, described by
`schemas/summary.schema.json` (`server_states`, `steering` and `isolation` are optional
fields added within version 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fuzz import __version__
from fuzz.disk import disk_usage
from fuzz.journal import write_atomic
from fuzz.redact import Redactor
from fuzz.ledger import ISOLATION_COUNTERS
from fuzz.report import FailureStats, Summary, render_report, server_state_rows
from fuzz.report_html import render_html

SUMMARY_FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "summary.schema.json"


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)


def _isolation_json(s: Summary) -> dict[str, Any]:
    """The isolation and interference oracles' part: calibration and, over the scenarios
    judged, suspects raised and how many replay confirmed (the false-alarm rate)."""
    medians = (s.victim.get("alone") or {}).get("medians")
    noise = ({"source": str(s.noise.get("source", "?")), "image": bool(s.noise.get("image", True)),
              "model": dict(s.noise.get("model") or {})} if s.noise else None)
    return {"enabled": bool(s.noise) and not s.isolation_note, "note": s.isolation_note,
            "noise": noise, "victim_alone_medians_s": dict(medians) if medians else None,
            "scenarios_judged": s.isolation["checked"], "scenarios_skipped": s.isolation["skipped"],
            "judging_s": round(s.isolation_s, 3),
            **{k: s.isolation[k] for k in ISOLATION_COUNTERS}}


def _failure_rows(s: Summary, failures: Mapping[str, FailureStats]) -> list[dict[str, Any]]:
    return [{
        "kind": f.kind, "signature": f.signature, "message": f.message, "count": f.count,
        "first_seen_s": round(f.first_seen_s, 3), "bundle": f.bundle,
        "reproduced": f.reproduced, "requests_before": f.requests_before,
        "requests_after": f.requests_after, "minimize_note": f.minimize_note,
        "minimize_pending": f.signature in s.pending_minimizations,
    } for f in sorted(failures.values(), key=lambda f: (-f.count, f.signature))]


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
        "failures": _failure_rows(s, s.confirmed_failures),
        # hangs that did not come back on re-check: kept, but not counted as failures
        "unconfirmed": [{**row, "rechecks": s.failures[row["signature"]].rechecks,
                         "recheck": s.failures[row["signature"]].recheck}
                        for row in _failure_rows(s, s.unconfirmed_failures)],
        "target": {"restarts": s.target_restarts, "waits": len(s.target_waits),
                   "waited_s": round(sum(s.target_waits), 3),
                   "longest_wait_s": round(max(s.target_waits, default=0.0), 3),
                   "state": s.target_state},
        "disk": dict(s.disk),
        "timeline": {"interval_s": s.timeline.width_s, "points": s.timeline.points()},
        "server_states": [{"feature": r["feature"], "family": r["family"],
                           "scenarios": r["scenarios"], "first_seen_s": r["first_seen"],
                           "origin": r["origin"]} for r in server_state_rows(s)],
        "steering": {"steered": s.steered,
                     "origins": {op: {"scenarios": n, "new_states": s.origins_new[op]}
                                 for op, n in sorted(s.origins.items())}},
        "isolation": _isolation_json(s),
    }


def write_reports(out_dir: Path, summary: Summary, redact: Redactor | None = None, *,
                  notes: Sequence[str] = ()) -> None:
    """(Re)write report.md, summary.json and report.html in `out_dir`. `notes` are
    campaign-level remarks (e.g. the disk cap was reached) listed at the end of
    report.md."""
    redact = redact or Redactor()
    summary.disk = disk_usage(out_dir)
    doc = redact(summary_json(summary))
    write_atomic(out_dir / "summary.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    text = render_report(summary)
    if notes:
        text += "\n## Campaign notes\n\n" + "".join(f"- {n}\n" for n in notes)
    write_atomic(out_dir / "report.md", redact.text(text) if redact else text)
    write_atomic(out_dir / "report.html", render_html(doc, out_dir))


def validate_summary(doc: Any) -> None:
    """Raise jsonschema.ValidationError when `doc` does not match the schema."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
