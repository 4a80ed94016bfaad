"""Live progress: a consumer of campaign events that shows how the run is going.

On a terminal it keeps one status line updated in place (notable events - a new
failure, a bundle, the target going away - are printed above it); when output is
a pipe or a log file it writes a plain status line every `every_s` seconds instead,
so an overnight log stays readable and greppable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from fuzz.events import (BundleWritten, CampaignFinished, CampaignStarted, DiskCapReached, Event,
                         FailureFound, MinimizationStarted, Noted, ScenarioFinished,
                         ScenarioStarted, TargetStateChanged, Ticked)
from fuzz.redact import Redactor
from fuzz.report import Summary


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / 2**20:.0f}M"


def disk_text(s: Summary, cap_bytes: int | None = None) -> str:
    """'disk 12M' or 'disk 12M/2.0G' (the folder as last measured for the reports)."""
    used = s.disk.get("total_bytes")
    if used is None:
        return "disk -"
    return f"disk {_mib(used)}" + (f"/{_mib(cap_bytes)}" if cap_bytes else "")


def status_line(s: Summary, elapsed_s: float, left_s: float,
                disk_cap_bytes: int | None = None) -> str:
    """One line with everything an operator glances at."""
    p50, p99 = s.latency.percentile(50), s.latency.percentile(99)
    lat = "-" if p50 is None else f"p50 {p50:.2f}s p99 {p99:.2f}s"
    kinds: dict[str, int] = {}
    counted = s.confirmed_failures
    for f in counted.values():
        kinds[f.kind] = kinds.get(f.kind, 0) + f.count
    top = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
    apart = len(s.failures) - len(counted)
    fails = (f"failures {len(counted)} unique/{s.failures_seen} seen" + (f" ({top})" if top else "")
             + (f" +{apart} hang(s) not reproduced" if apart else ""))
    return (f"{_clock(elapsed_s)} elapsed, {_clock(left_s)} left | {s.requests} req "
            f"({s.requests_per_s:.1f}/s) | in flight {s.in_flight} | {lat} | {fails} | "
            f"minimizations pending {len(s.pending_minimizations)} | target {s.target_state} | "
            f"server states {len(s.server_states)} | {disk_text(s, disk_cap_bytes)}")


class Progress:
    """Callable event consumer; pass it as `run_campaign(..., on_event=Progress(sys.stdout))`."""

    def __init__(self, stream: TextIO = sys.stdout, *, tty: bool | None = None,
                 every_s: float = 5.0, redraw_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, redact: Redactor | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every_s = every_s if not self.tty else redraw_s
        self.clock = clock
        self.redact = redact or Redactor()
        self.summary: Summary | None = None
        self.duration_s = 0.0
        self.disk_cap_bytes: int | None = None
        self.offset_s = 0.0
        self.started = clock()
        self.last_status = float("-inf")
        self.drawn = False

    def elapsed(self) -> float:
        return self.offset_s + self.clock() - self.started

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignStarted):
            self.summary, self.duration_s = event.summary, event.duration_s
            self.disk_cap_bytes = event.disk_cap_bytes
            self.offset_s, self.started = event.summary.elapsed_s, self.clock()
            how = "resumed" if event.resumed else "started"
            self.line(f"campaign {how}: {event.summary.endpoint}, seed {event.summary.seed}, "
                      f"{_clock(max(self.duration_s - self.offset_s, 0))} to go")
        elif isinstance(event, FailureFound) and event.new:
            self.line(f"NEW {event.failure.kind}: {event.failure.signature[:140]}")
        elif isinstance(event, MinimizationStarted):
            again = " (left over from before the resume)" if event.resumed else ""
            self.line(f"minimizing {event.signature[:100]} ({event.requests} requests){again}")
        elif isinstance(event, BundleWritten):
            self.line(f"bundle {event.path} ({event.stats.reproduced or '1/1'} reproduced)")
        elif isinstance(event, TargetStateChanged):
            waited = f" after {event.waited_s:.1f}s" if event.waited_s is not None else ""
            self.line(f"target {event.state}{waited}" + (f": {event.detail[:200]}" if event.detail else ""))
        elif isinstance(event, Noted):
            self.line(event.message)
        elif isinstance(event, DiskCapReached):
            self.line(f"disk cap reached ({_mib(event.used_bytes)} of {_mib(event.cap_bytes)}): "
                      "known failures are no longer bundled again; the journal is kept")
        elif isinstance(event, CampaignFinished):
            self.status(force=True)
            if self.tty and self.drawn:
                self.stream.write("\n")
                self.drawn = False
            self.stream.flush()
            return
        if isinstance(event, (Ticked, ScenarioFinished, ScenarioStarted)):
            self.status()

    def status(self, force: bool = False) -> None:
        now = self.clock()
        if self.summary is None or (not force and now - self.last_status < self.every_s):
            return
        self.last_status = now
        elapsed = self.elapsed()
        text = self.redact.text(status_line(self.summary, elapsed, self.duration_s - elapsed,
                                            self.disk_cap_bytes))
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.drawn = True
        else:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A notable event: its own line (above the status line on a terminal)."""
        text = self.redact.text(text)
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[2K")
            self.drawn = False
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        if self.tty and self.summary is not None:
            self.last_status = float("-inf")
            self.status()
        self.stream.flush()
