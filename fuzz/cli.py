"""`vlfuzz` command line: a thin layer over campaign, target, replay and bundles.

Exit codes: `run` 0 = no failures, 1 = failures found, 2 = could not run;
`replay` 0 = all fixed, 1 = any still failing, 2 = error; `target up|down` 0 / 2,
`target status` 0 = up, 3 = not up; `bundle` 0 / 2 (unreadable bundle).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from fuzz import __version__

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_DURATION = "5m"


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '8h', '1d' -> seconds."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 90s, 10m, 8h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _header(text: str) -> tuple[str, str]:
    from fuzz.redact import parse_header

    try:
        return parse_header(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+", text):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vlfuzz", description="Multimodal concurrency fuzzer for vLLM's OpenAI-compatible server.")
    p.add_argument("--version", action="version", version=f"vlfuzz {__version__}")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache folder for the embedded target (default: $VLFUZZ_CACHE or ~/.cache/vlfuzz)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a fuzz campaign and write a report",
                         description="Generate concurrent multimodal traffic, catch failures, "
                                     "minimize and bundle them, and write DIR/report.md.")
    run.add_argument("--endpoint", type=_url, help="vLLM base URL (default: start the embedded target)")
    run.add_argument("--model", help="served model name (default: the first one /v1/models lists)")
    run.add_argument("--api-key", default=os.environ.get("VLFUZZ_API_KEY") or None,
                     help="bearer token for the endpoint (default: $VLFUZZ_API_KEY); never written out")
    run.add_argument("--header", type=_header, action="append", default=[], metavar="NAME:VALUE",
                     help="extra header sent with every request (repeatable); values are never written out")
    run.add_argument("--duration", type=parse_duration, default=None,
                     help="how long to fuzz, e.g. 90s, 10m, 8h (default: 5m; with --resume: "
                          "the campaign's own duration; counted over all sessions)")
    run.add_argument("--resume", type=Path, default=None, metavar="DIR",
                     help="continue the campaign in DIR after a crash, kill or ^C (same seed stream, "
                          "counters, known failures; pending minimizations are finished first)")
    run.add_argument("--max-target-wait", type=parse_duration, default=parse_duration("10m"),
                     help="how long to wait for an external endpoint that went away (default: 10m)")
    run.add_argument("--seed", type=int, default=None, help="generation seed (default: from the clock)")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (default: reports/run-YYYYmmdd-HHMMSS)")
    run.add_argument("--max-requests", type=_positive_int, default=32, help="largest burst (default 32)")
    run.add_argument("--max-output-tokens", type=_positive_int, default=64,
                     help="largest max_tokens drawn (default 64)")
    run.add_argument("--first-byte-timeout", type=float, default=120.0, metavar="S")
    run.add_argument("--stall-timeout", type=float, default=60.0, metavar="S")
    run.add_argument("--total-timeout", type=float, default=300.0, metavar="S")
    run.add_argument("--no-minimize", action="store_true", help="bundle failures as seen, unminimized")
    run.add_argument("--minimize-replays", type=_positive_int, default=40,
                     help="replay budget per minimization (default 40)")
    run.add_argument("--minimize-time", type=parse_duration, default=parse_duration("4m"),
                     help="wall-time budget per minimization (default 4m)")
    run.add_argument("--keep-target", action="store_true",
                     help="leave the embedded target running afterwards")
    run.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the embedded vLLM, e.g. --server-arg=--async-scheduling "
                          "(repeatable; a target running with other flags is restarted)")

    target = sub.add_parser("target", help="manage the embedded vLLM target",
                            description="Install (once), start, stop or inspect the embedded vLLM "
                                        "serving a tiny random-weight Qwen3-VL.")
    target.add_argument("action", choices=["up", "down", "status"])
    target.add_argument("--port", type=int, default=None, help="port for `up` (default: a free one)")
    target.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra argument passed to vLLM (repeatable)")

    replay = sub.add_parser("replay", help="replay saved bundles: FIXED / STILL FAILING / ERROR",
                            description="Replay failure bundles; exit 0 if all fixed, 1 if any "
                                        "still fails, 2 on error.")
    replay.add_argument("paths", nargs="+", type=Path, help="bundle folders, .tar.gz files or folders of them")
    replay.add_argument("--endpoint", type=_url, help="vLLM base URL (default: the embedded target)")
    replay.add_argument("--model", help="served model name (default: the bundle's or the server's)")
    replay.add_argument("--runs", "--repeat", type=_positive_int, default=3, dest="runs",
                        help="replays per bundle; it counts as fixed only if none fails (default 3)")
    replay.add_argument("--junit", type=Path, help="write JUnit XML here")

    bundle = sub.add_parser("bundle", help="inspect or pack a failure bundle",
                            description="`show` prints a bundle's summary; `pack` writes a single "
                                        ".tar.gz to attach to an upstream issue.")
    bundle.add_argument("action", choices=["show", "pack"])
    bundle.add_argument("path", type=Path, help="a bundle folder or .tar.gz")
    bundle.add_argument("--out", type=Path, default=None,
                        help="pack: folder for the archive (default: beside the bundle)")
    return p


def cmd_bundle(args) -> int:
    """Loading validates everything (schema, hashes, archive safety); nothing in the
    bundle is executed."""
    from fuzz.bundle import BundleError, load_bundle, write_bundle
    from fuzz.issue import issue_title, needs

    try:
        b = load_bundle(args.path)
    except BundleError as e:
        print(f"vlfuzz: {e}", file=sys.stderr)
        return 2
    if args.action == "show":
        k, n = b.reproduced
        target = b.target
        print(issue_title(b.failure.kind, b.failure.message))
        print(f"  signature:  {b.signature}")
        print(f"  reproduced: {k}/{n}")
        print(f"  target:     vLLM {target.get('version', '?')}, model "
              f"{target.get('model_id') or target.get('model', '?')}")
        for line in needs(b):
            print(f"  - {line}")
        return 0
    out = args.out or (args.path.parent if args.path.is_dir() else Path("."))
    folder = write_bundle(b, out)
    archive = folder.with_name(folder.name + ".tar.gz")
    print(f"{archive} ({archive.stat().st_size / 1024:.1f} KiB)")
    return 0


def _log(msg: str) -> None:
    print(msg, flush=True)


def _external_endpoint(url: str, model: str | None, api_key: str | None,
                       headers: tuple[tuple[str, str], ...] = ()):
    from fuzz.auth import AuthEndpoint
    from fuzz.runner import fetch_target_info

    endpoint = AuthEndpoint(base_url=url, model=model or "", api_key=api_key, extra_headers=headers)
    if model is None:
        info = asyncio.run(fetch_target_info(endpoint))
        model = info.get("model_id")
        if not model:
            errors = endpoint.redactor()(info.get("errors"))
            raise SystemExit(f"vlfuzz: cannot reach {url} or it lists no model "
                             f"({errors}); is the server up? (use --model to skip the lookup)")
    return dataclasses.replace(endpoint, model=model)


def _target_paths(args):
    from fuzz.target.embedded import target_paths

    return target_paths(args.cache)


def cmd_target(args) -> int:
    from fuzz.target import embedded, server
    from fuzz.target.server import ServerConfig, TargetError

    paths = _target_paths(args)
    if args.action == "up":
        try:
            state = embedded.up(paths, ServerConfig(port=args.port, extra_args=tuple(args.server_arg)),
                                log=_log)
        except (TargetError, OSError) as e:
            print(f"vlfuzz: embedded target failed: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"base_url": state.base_url, "model": state.model, "pid": state.pid}))
        return 0
    if args.action == "down":
        print("stopped" if embedded.down(paths, log=_log) else "not running")
        return 0
    st = server.status(paths)
    print(json.dumps(st, indent=2))
    return 0 if st["state"] == "up" else 3


def _run_config(args, out: Path, seed: int):
    """The campaign settings: from the flags, or from the journal when resuming
    (so the seed stream, burst sizes and deadlines are the ones it started with)."""
    from fuzz.campaign import CampaignConfig, journaled_settings
    from fuzz.minimize import Budget
    from fuzz.model import Deadlines

    minimize_budget = Budget(max_replays=args.minimize_replays, max_wall_s=args.minimize_time)
    if args.resume is None:
        return CampaignConfig(
            out_dir=out, duration_s=args.duration or parse_duration(DEFAULT_DURATION), seed=seed,
            deadlines=Deadlines(args.first_byte_timeout, args.stall_timeout, args.total_timeout),
            max_requests=args.max_requests, max_output_tokens=args.max_output_tokens,
            minimize=not args.no_minimize, minimize_budget=minimize_budget)
    saved = journaled_settings(out)
    if saved is None:
        raise SystemExit(f"vlfuzz: nothing to resume in {out} (no journal.jsonl with a started record)")
    return CampaignConfig(
        out_dir=out, duration_s=args.duration or float(saved["duration_s"]), seed=int(saved["seed"]),
        deadlines=Deadlines(**saved["deadlines"]), max_requests=int(saved["max_requests"]),
        max_output_tokens=int(saved["max_output_tokens"]),
        examples_per_round=int(saved.get("examples_per_round", 10)),
        minimize=not args.no_minimize, minimize_budget=minimize_budget, resume=True)


def _graceful_stop(stop: threading.Event) -> dict[int, object]:
    """First ^C (or SIGTERM): finish the scenario in flight, write the report.
    Second ^C: cut it now (KeyboardInterrupt; the report is still written)."""
    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        try:
            os.write(2, b"\nvlfuzz: stopping after the scenario in flight (^C again to cut it)\n")
        except OSError:
            pass
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def cmd_run(args) -> int:
    from fuzz.auth import AuthEndpoint, redactor_for
    from fuzz.campaign import run_campaign
    from fuzz.progress import Progress
    from fuzz.supervisor import EmbeddedSupervisor, ExternalSupervisor
    from fuzz.target import embedded, server
    from fuzz.target.server import ServerConfig, TargetError

    out = args.resume or args.out or Path("reports") / time.strftime("run-%Y%m%d-%H%M%S")
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    cfg = _run_config(args, out, seed)
    started_here = False
    stop = threading.Event()
    if args.endpoint:
        if args.server_arg:
            print("vlfuzz: --server-arg only applies to the embedded target; ignored", file=sys.stderr)
        endpoint = _external_endpoint(args.endpoint, args.model, args.api_key, tuple(args.header))
        supervisor = ExternalSupervisor(endpoint, log=_log, max_wait_s=args.max_target_wait, stop=stop)
    else:
        if args.api_key or args.header:
            print("vlfuzz: --api-key/--header only apply with --endpoint; ignored", file=sys.stderr)
        paths = _target_paths(args)
        config = ServerConfig(extra_args=tuple(args.server_arg))
        started_here = server.running(paths) is None
        try:
            state = embedded.up(paths, config, log=_log)
        except (TargetError, OSError) as e:
            print(f"vlfuzz: embedded target failed: {e}", file=sys.stderr)
            return 2
        supervisor = EmbeddedSupervisor(paths, config, AuthEndpoint(state.base_url, state.model), log=_log)
    redact = redactor_for(supervisor.endpoint)
    if args.resume is not None and args.seed is not None and args.seed != cfg.seed:
        _log(f"vlfuzz: --seed {args.seed} ignored: resuming the campaign's own seed {cfg.seed}")
    _log(f"vlfuzz {__version__}: {'resuming' if cfg.resume else 'fuzzing'} "
         f"{supervisor.endpoint.base_url} for {cfg.duration_s:.0f}s in all, "
         f"seed {cfg.seed}, output in {out}")
    previous = _graceful_stop(stop)
    try:
        summary = run_campaign(cfg, supervisor, Progress(sys.stdout, redact=redact),
                               stop=stop, redact=redact)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started_here and not args.keep_target:
            embedded.down(_target_paths(args), log=_log)
    report = (out / "report.md").read_text()
    print("\n" + report)
    _log(f"report: {out / 'report.md'} (also {out / 'report.html'}, {out / 'summary.json'})")
    if summary.stopped_because.startswith("target unavailable"):
        return 2
    return 1 if summary.failures else 0


def cmd_replay(args) -> int:
    from fuzz.replay import replay_paths
    from fuzz.target import embedded
    from fuzz.target.server import ServerConfig, TargetError

    if args.endpoint:
        endpoint = _external_endpoint(args.endpoint, args.model, None)
    else:
        from fuzz.runner import Endpoint

        try:
            state = embedded.up(_target_paths(args), ServerConfig(), log=_log)
        except (TargetError, OSError) as e:
            print(f"vlfuzz: embedded target failed: {e}", file=sys.stderr)
            return 2
        endpoint = Endpoint(state.base_url, args.model or state.model)
    return replay_paths(args.paths, endpoint, runs=args.runs, junit_path=args.junit)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "target": cmd_target, "replay": cmd_replay,
               "bundle": cmd_bundle}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("vlfuzz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vlfuzz target status | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
