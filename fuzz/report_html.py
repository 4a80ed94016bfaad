"""One self-contained HTML report: inline CSS and SVG, no scripts, no network.

Rendered from the `summary.json` document (already redacted), so the HTML can
never show more than the stable summary does. Charts are where people would rather
look than read: request rate and latency over time with failures marked, the
request mix, the outcomes; the failures table links to the bundle folders. A table
lists the server states reached and what reached each first (fresh generation or a
steering mutant), and the overview says how the isolation oracles fared.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

_W, _H, _PAD = 760, 180, 40
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}code{font-size:12px;word-break:break-all}
.kv td:first-child{font-weight:600;width:220px}.fail{color:#b00020}.ok{color:#1b7f3b}
svg{background:#fafafa;border:1px solid #eee}.legend{font-size:12px;color:#555}
"""


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.3g}{unit}" if isinstance(v, float) else f"{v}{unit}"


def _series_chart(title: str, points: list[dict[str, Any]], series: list[tuple[str, str, str]],
                  unit: str) -> str:
    """A line chart of `series` (key, colour, label) over the timeline, with a red
    tick at every interval where a new failure was first seen."""
    if not points:
        return f'<p class="legend">{escape(title)}: no data yet.</p>'
    n = len(points)
    xs = [_PAD + (i + 0.5) * (_W - 2 * _PAD) / n for i in range(n)]
    top = max((p[k] or 0.0) for p in points for k, _c, _l in series) or 1.0
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{_W}" height="{_H}" '
             f'viewBox="0 0 {_W} {_H}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{_PAD}" y="14" font-size="12">{escape(title)}</text>',
             f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/>',
             f'<text x="4" y="{_PAD}" font-size="11">{top:.3g}{unit}</text>',
             f'<text x="4" y="{_H - _PAD}" font-size="11">0</text>',
             f'<text x="{_W - _PAD}" y="{_H - 8}" font-size="11" text-anchor="end">'
             f'{points[-1]["t_s"]:.0f}s</text>']
    for i, p in enumerate(points):
        if p.get("new_failures"):
            parts.append(f'<line class="failure-mark" x1="{xs[i]:.1f}" y1="{_PAD / 2}" x2="{xs[i]:.1f}" '
                         f'y2="{_H - _PAD}" stroke="#d00" stroke-dasharray="3,2">'
                         f'<title>{p["new_failures"]} new failure(s) at {p["t_s"]:.0f}s</title></line>')
    for key, colour, _label in series:
        ys = [_H - _PAD - ((p[key] or 0.0) / top) * (_H - 1.5 * _PAD) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, p in zip(xs, ys, points) if p[key] is not None)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    legend = " ".join(f'<tspan fill="{c}">&#9632; {escape(label)}</tspan>' for _k, c, label in series)
    parts.append(f'<text x="{_PAD}" y="{_H - 8}" font-size="11">{legend} '
                 f'<tspan fill="#d00">| new failure</tspan></text></svg>')
    return "".join(parts)


def _bar_chart(title: str, counts: dict[str, int], limit: int = 40) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not items:
        return f'<p class="legend">{escape(title)}: nothing yet.</p>'
    row, label_w = 16, 260
    h = row * len(items) + 24
    top = max(v for _k, v in items) or 1
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{_W}" height="{h}" '
             f'viewBox="0 0 {_W} {h}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="4" y="14" font-size="12">{escape(title)}</text>']
    for i, (k, v) in enumerate(items):
        y = 22 + i * row
        w = (v / top) * (_W - label_w - 70)
        parts.append(f'<text x="{label_w - 6}" y="{y + 11}" font-size="11" text-anchor="end">'
                     f'{escape(k[:40])}</text><rect x="{label_w}" y="{y + 2}" width="{w:.1f}" '
                     f'height="{row - 4}" fill="#4a7bd0"/><text x="{label_w + w + 4:.1f}" '
                     f'y="{y + 11}" font-size="11">{v}</text>')
    parts.append("</svg>")
    more = len(counts) - len(items)
    return "".join(parts) + (f'<p class="legend">and {more} more</p>' if more > 0 else "")


def _bundle_link(bundle: str | None, out_dir: Path) -> str:
    if not bundle:
        return "-"
    try:
        rel = os.path.relpath(Path(bundle).resolve(), out_dir.resolve())
    except ValueError:
        rel = bundle
    href = escape(Path(rel).as_posix())
    return (f'<a class="bundle" href="{href}/">{escape(Path(rel).name)}</a> '
            f'(<a href="{href}/ISSUE.md">ISSUE.md</a>)')


def _failures_table(doc: dict[str, Any], out_dir: Path) -> str:
    fails = doc["failures"]
    if not fails:
        return '<p class="ok" id="no-failures">No failures found.</p>'
    rows = ["<table id=\"failures\"><tr><th>kind</th><th>seen</th><th>first at</th>"
            "<th>reproduced</th><th>requests (orig &rarr; min)</th><th>bundle</th>"
            "<th>signature</th></tr>"]
    for f in fails:
        after = "pending" if f["minimize_pending"] else _fmt(f["requests_after"], "")
        rows.append(
            f'<tr class="failure"><td class="fail">{escape(f["kind"])}</td><td>{f["count"]}</td>'
            f'<td>{f["first_seen_s"]:.0f}s</td><td>{escape(f["reproduced"] or "-")}</td>'
            f'<td>{f["requests_before"]} &rarr; {escape(after)}</td>'
            f'<td>{_bundle_link(f["bundle"], out_dir)}</td>'
            f'<td><code class="signature">{escape(f["signature"])}</code>'
            + (f'<br><span class="legend">{escape(f["minimize_note"])}</span>'
               if f["minimize_note"] else "") + "</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _states_table(doc: dict[str, Any], limit: int = 200) -> str:
    """Server states reached: family, state, scenarios, first seen, and by what."""
    rows = doc.get("server_states") or []
    if not rows:
        return ('<p class="legend" id="no-server-states">None observed (no <code>/metrics</code> '
                'and no server log).</p>')
    out = ['<table id="server-states"><tr><th>family</th><th>state</th><th>scenarios</th>'
           '<th>first seen</th><th>first reached by</th></tr>']
    for r in rows[:limit]:
        first = "-" if r["first_seen_s"] is None else f'{r["first_seen_s"]:.0f}s'
        out.append(f'<tr class="server-state"><td>{escape(r["family"])}</td>'
                   f'<td><code>{escape(r["feature"])}</code></td><td>{r["scenarios"]}</td>'
                   f'<td>{first}</td><td>{escape(r["origin"] or "-")}</td></tr>')
    out.append("</table>")
    if len(rows) > limit:
        out.append(f'<p class="legend">and {len(rows) - limit} more (see summary.json)</p>')
    steering = doc.get("steering") or {}
    origins = steering.get("origins") or {}
    if origins:
        text = ", ".join(f'{op} {v["scenarios"]} ({v["new_states"]} new)'
                         for op, v in origins.items())
        out.append(f'<p class="legend">scenarios by origin (how many reached a new state): '
                   f'{escape(text)}; {steering.get("steered", 0)} steered</p>')
    return "".join(out)


def _isolation_row(doc: dict[str, Any]) -> list[tuple[str, str]]:
    iso = doc.get("isolation")
    if not iso or not (iso["noise"] or iso["note"] or iso["scenarios_judged"]):
        return []
    bar = ((iso["noise"] or {}).get("model") or {}).get("margin_threshold")
    text = (f'{iso["scenarios_judged"]} scenarios judged; isolation suspects {iso["suspects"]} '
            f'({iso["confirmed"]} confirmed), interference suspects {iso["slow_suspects"]} '
            f'({iso["slow_confirmed"]} confirmed); noise bar '
            f'{"-" if bar is None else format(bar, ".3g")} nats')
    return [("isolation", f'off: {iso["note"]}' if iso["note"] else text)]


def _kv(rows: list[tuple[str, str]]) -> str:
    return ('<table class="kv">' + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                                           for k, v in rows) + "</table>")


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.2f} MiB"


def render_html(doc: dict[str, Any], out_dir: Path) -> str:
    """The whole report page from a `summary.json` document."""
    lat, tgt, disk = doc["latency_s"], doc["target"], doc.get("disk") or {}
    pts, nfail = doc["timeline"]["points"], len(doc["failures"])
    overview = _kv([
        ("endpoint", f'{doc["endpoint"]} (model {doc["model"] or "?"}, server {doc["server_version"] or "?"})'),
        ("seed", str(doc["seed"])),
        ("ran", f'{doc["elapsed_s"]:.0f}s ({doc["stopped_because"]}), {doc["sessions"]} session(s)'),
        ("load", f'{doc["scenarios"]} scenarios, {doc["requests"]} requests, '
                 f'{doc["requests_per_s"]:.2f} requests/s while fuzzing'),
        ("latency", f'p50 {_fmt(lat["p50"], "s")}, p90 {_fmt(lat["p90"], "s")}, '
                    f'p99 {_fmt(lat["p99"], "s")}, max {_fmt(lat["max"], "s")}'),
        ("failures", f'{nfail} unique, {sum(f["count"] for f in doc["failures"])} seen'
                     + (f'; {len(doc["unconfirmed"])} hang(s) not reproduced on re-check'
                        if doc.get("unconfirmed") else "")),
        ("target", f'{tgt["restarts"]} restart(s), {tgt["waits"]} wait(s) '
                   f'({tgt["waited_s"]:.0f}s, longest {tgt["longest_wait_s"]:.0f}s), now {tgt["state"]}'),
        ("disk", f'{_mib(disk.get("total_bytes"))} (journal {_mib(disk.get("journal_bytes"))}, '
                 f'bundles {_mib(disk.get("bundles_bytes"))})'),
        *_isolation_row(doc),
    ])
    width = doc["timeline"]["interval_s"]
    status = "fail" if nfail else "ok"
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>vlfuzz report: {nfail} unique failure(s)</title><style>{_CSS}</style></head><body>",
        f'<h1>vlfuzz campaign report &mdash; <span class="{status}">{nfail} unique failure(s)</span></h1>',
        overview,
        f"<h2>Failures</h2>{_failures_table(doc, out_dir)}",
        f"<h2>Load over time</h2><p class=\"legend\">one point per {width:g}s interval</p>",
        _series_chart("requests per second", pts, [("requests_per_s", "#4a7bd0", "requests/s")], "/s"),
        _series_chart("latency", pts, [("p50_s", "#1b7f3b", "p50"), ("p99_s", "#e08a00", "p99")], "s"),
        f'<h2>Server states reached ({len(doc.get("server_states") or [])})</h2>',
        _states_table(doc),
        "<h2>Request mix (features covered)</h2>",
        _bar_chart("requests per feature", doc["features"]),
        "<h2>Outcomes</h2>", _bar_chart("requests per status / deadline", doc["statuses"]),
        "</body></html>\n"])
