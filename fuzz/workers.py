"""`--workers N`: several campaign processes sharing one campaign folder.

Worker i is an ordinary campaign (`run_campaign` with `worker=i`): its own seed stream
(seed + i), journal and bundle folder (`fuzz.layout`), sent to endpoint i mod the
number of endpoints, writing no report of its own. The coordinator, the process that
started the workers, folds every journal in the folder (`merged_summary`) every few
seconds, writes the reports and reports one status. It only reads journals, so hosts
sharing the folder over a network file system (each starting its own workers with its
own `first_worker` offset) each write a report covering all of them.

Stopping: ^C from the terminal reaches every worker (each finishes its scenario on the
first and cuts it on the second); SIGTERM to the coordinator is passed on to them.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from fuzz import ledger
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.disk import DiskCap, DiskWatch
from fuzz.journal import read_journal
from fuzz.layout import journal_paths, worker_of
from fuzz.outputs import write_reports
from fuzz.redact import Redactor
from fuzz.report import Summary

__all__ = ["WorkerSpec", "merged_summary", "run_workers", "worker_configs", "worker_main"]

EXIT_TARGET_UNAVAILABLE = 2


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable: it crosses a process boundary;
    the API key travels through the pipe, never through a file)."""

    config: CampaignConfig
    base_url: str
    model: str
    api_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_target_wait_s: float = 600.0
    log: bool = True  # notable events as `[w<i>]` lines on stdout


def worker_configs(config: CampaignConfig, workers: int, first_worker: int = 0
                   ) -> list[CampaignConfig]:
    """One config per worker: indices from `first_worker`, reports left to the coordinator."""
    if workers < 1 or first_worker < 0:
        raise ValueError("need workers >= 1 and first_worker >= 0")
    return [replace(config, worker=first_worker + i, workers=workers, reports=False)
            for i in range(workers)]


def _journals(out_dir: Path) -> dict[int, list[dict[str, Any]]]:
    return {worker_of(p) or 0: read_journal(p) for p in journal_paths(out_dir)}


def merged_summary(out_dir: Path, seed: int, endpoint: str) -> Summary:
    """Every worker's journal in `out_dir` folded into one summary."""
    return ledger.fold_journals(_journals(out_dir), Summary(seed=seed, endpoint=endpoint))


def _notes(out_dir: Path, journals: dict[int, list[dict[str, Any]]],
           cap_bytes: int | None) -> list[str]:
    """The report's campaign notes: each worker's latest learnt deadlines, and the
    disk cap if any worker reached it."""
    notes, capped = [], False
    for worker, records in sorted(journals.items()):
        capped = capped or any(r.get("type") == "disk" for r in records)
        learnt = [r for r in records if r.get("type") == "deadlines"]
        if learnt:
            d = learnt[-1]
            notes.append(f"Worker {worker}: deadlines learnt first byte {d['first_byte_s']:g}s, "
                         f"stall {d['stall_s']:g}s, total {d['total_s']:g}s.")
    watch = DiskWatch(out_dir, DiskCap(cap_bytes))
    watch.hit = capped
    return notes + watch.notes()


def _report(out_dir: Path, seed: int, endpoint: str, redact: Redactor,
            cap_bytes: int | None) -> Summary:
    """Read every journal once; write the merged reports; return the merged summary."""
    journals = _journals(out_dir)
    summary = ledger.fold_journals(journals, Summary(seed=seed, endpoint=endpoint))
    write_reports(out_dir, summary, redact, notes=_notes(out_dir, journals, cap_bytes))
    return summary


class _Prefixed:
    """A text stream that starts every line with `prefix` (workers share a terminal)."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream, self.prefix = stream, prefix

    def write(self, text: str) -> int:
        return self.stream.write("".join(self.prefix + line
                                         for line in text.splitlines(keepends=True)))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _stop_on_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish the scenario in flight; second: cut it."""
    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def worker_main(spec: WorkerSpec) -> None:
    """A worker process: one campaign against an external endpoint; exit status 2 when
    the endpoint stayed unavailable."""
    from fuzz.auth import AuthEndpoint, redactor_for
    from fuzz.progress import Progress
    from fuzz.supervisor import ExternalSupervisor

    endpoint = AuthEndpoint(base_url=spec.base_url, model=spec.model, api_key=spec.api_key,
                            extra_headers=spec.headers)
    stop = threading.Event()
    _stop_on_signals(stop)
    redact = redactor_for(endpoint)
    supervisor = ExternalSupervisor(endpoint, max_wait_s=spec.max_target_wait_s, stop=stop)
    on_event: Callable[[Any], None] = lambda e: None  # noqa: E731
    if spec.log:
        on_event = Progress(_Prefixed(sys.stdout, f"[w{spec.config.worker}] "), tty=False,  # type: ignore[arg-type]
                            every_s=math.inf, redact=redact)
    summary = run_campaign(spec.config, supervisor, on_event, stop=stop, redact=redact)
    sys.stdout.flush()
    if summary.stopped_because.startswith("target unavailable"):
        sys.exit(EXIT_TARGET_UNAVAILABLE)


def run_workers(specs: Sequence[WorkerSpec], *, out_dir: Path, seed: int, endpoint: str,
                redact: Redactor | None = None,
                on_status: Callable[[Summary], None] = lambda s: None,
                every_s: float = 5.0) -> tuple[Summary, list[int]]:
    """Start one process per spec, keep the merged reports current while they run,
    write them once more at the end; the merged summary and each worker's exit code."""
    out_dir.mkdir(parents=True, exist_ok=True)
    redact = redact or Redactor()
    cap = specs[0].config.max_disk_bytes if specs else None
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    procs = [ctx.Process(target=worker_main, args=(spec,), name=f"vlfuzz-w{spec.config.worker}")
             for spec in specs]
    for p in procs:
        p.start()
    restore = _forward_sigterm(procs)
    try:
        while any(p.exitcode is None for p in procs):
            multiprocessing.connection.wait([p.sentinel for p in procs if p.exitcode is None],
                                            timeout=every_s)
            try:
                on_status(_report(out_dir, seed, endpoint, redact, cap))
            except OSError as e:  # a shared folder hiccup must not orphan the workers
                print(f"vlfuzz: could not write the interim report ({e}); still running",
                      file=sys.stderr)
    finally:
        restore()
        for p in procs:
            p.join()
    summary = _report(out_dir, seed, endpoint, redact, cap)
    return summary, [p.exitcode if p.exitcode is not None else -1 for p in procs]


def _forward_sigterm(procs: Sequence[multiprocessing.process.BaseProcess]) -> Callable[[], None]:
    """Pass SIGTERM on to the workers and ignore the coordinator's own ^C (the terminal
    sends it to the workers directly); returns the function that undoes this."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    def interrupted(signum: int, frame: Any) -> None:
        try:
            os.write(2, b"\nvlfuzz: workers stop after their scenarios in flight "
                        b"(^C again to cut them)\n")
        except OSError:
            pass

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
                signal.SIGINT: signal.signal(signal.SIGINT, interrupted)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore
