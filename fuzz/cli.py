"""`vlfuzz` command line: a thin layer over campaign, target, replay and bundles.

Exit codes: `run` 0 = no failures, 1 = failures found (not hangs that did not come back on
re-check), 2 = could not run (or a worker crashed);
`replay` 0 = all fixed, 1 = any still failing, 2 = error; `target up|down` 0 / 2,
`target status` 0 = up, 3 = not up; `bundle` 0 / 2 (unreadable bundle);
`calibrate` 0 = measured, 2 = could not measure.
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
from typing import TYPE_CHECKING

from fuzz import __version__

if TYPE_CHECKING:
    from fuzz.auth import AuthEndpoint
    from fuzz.bundle import Bundle
    from fuzz.config import CampaignConfig
    from fuzz.replay import PrepareFn
    from fuzz.report import Summary
    from fuzz.runner import Endpoint
    from fuzz.target.paths import TargetPaths
    from fuzz.target.server import ServerState

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_DURATION = "5m"
DEFAULT_URL_IMAGE_PERCENT = 3
DEFAULT_MAX_DISK = "2G"


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


def _percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be within 0..100: {value}")
    return value


def _url_image_percent(args: argparse.Namespace) -> int:
    """Image URLs point at this machine's loopback: only a local target can fetch them."""
    if args.url_images is not None:
        return args.url_images
    from urllib.parse import urlsplit

    hosts = {urlsplit(url).hostname for url in args.endpoint or ["http://127.0.0.1"]}
    return DEFAULT_URL_IMAGE_PERCENT if hosts <= {"127.0.0.1", "localhost", "::1"} else 0


def _size(text: str) -> int:
    from fuzz.disk import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _header(text: str) -> tuple[str, str]:
    from fuzz.redact import parse_header

    try:
        return parse_header(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 1.0:
        raise argparse.ArgumentTypeError(f"must be more than 1: {value}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or any(b < 2 for b in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 2: {text!r}")
    return sizes


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
    run.add_argument("--endpoint", type=_url, action="append", default=None,
                     help="vLLM base URL (default: start the embedded target); repeatable with "
                          "--workers: worker i is sent to the i-th endpoint, round robin")
    run.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                     help="N campaign processes sharing the output folder, each with its own seed "
                          "stream and journal (default 1; with --resume: as many as it had)")
    run.add_argument("--first-worker", type=int, default=0, metavar="K",
                     help="index of this host's first worker, when several hosts share one "
                          "output folder (default 0)")
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
    for flag, ceiling in (("first-byte", 120), ("stall", 60), ("total", 300)):
        run.add_argument(f"--{flag}-timeout", type=float, default=None, metavar="S",
                         help=f"fix the {flag} deadline (default: learnt per request size from "
                              f"observed latency, at most {ceiling}s, {ceiling}s until learnt)")
    run.add_argument("--url-images", type=_percent, default=None, metavar="PERCENT",
                     help="share of images sent as http:// URLs on a loopback fixture server "
                          f"(default: {DEFAULT_URL_IMAGE_PERCENT} when the target runs on this "
                          "machine, else 0: a remote server cannot reach loopback)")
    run.add_argument("--max-disk", type=_size, default=None, metavar="SIZE",
                     help=f"disk cap for the output folder, e.g. 500M, 2G (default: {DEFAULT_MAX_DISK}); "
                          "past it known failures are not bundled again, the journal is kept")
    run.add_argument("--no-minimize", action="store_true", help="bundle failures as seen, unminimized")
    run.add_argument("--minimize-replays", type=_positive_int, default=40,
                     help="replay budget per minimization (default 40)")
    run.add_argument("--minimize-time", type=parse_duration, default=parse_duration("4m"),
                     help="wall-time budget per minimization (default 4m)")
    run.add_argument("--keep-target", action="store_true",
                     help="leave the embedded target running afterwards")
    run.add_argument("--exclude-feature", action="append", default=[], metavar="TAG",
                     help="stop generating a feature, e.g. sampling:seed to hunt past a known "
                          "seed bug (repeatable; a tag covers the tags below it)")
    run.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the embedded vLLM, e.g. --server-arg=--async-scheduling "
                          "(repeatable; a target running with other flags is restarted)")
    run.add_argument("--no-steering", action="store_true",
                     help="fresh scenarios only: no mutants of scenarios that reached new server "
                          "states (/metrics and log features)")
    run.add_argument("--server-log", type=Path, default=None, metavar="FILE",
                     help="the external target's log file, followed for log features and the "
                          "server-log oracle (the embedded target's is always followed)")
    run.add_argument("--isolation", action=argparse.BooleanOptionalAction, default=None,
                     help="isolation (differential) and interference oracles: calibrate the quiet "
                          "target at start, plant probes and a victim, confirm suspects by replay "
                          "(default: on for the embedded target or with --noise, else off)")
    run.add_argument("--noise", type=Path, default=None, metavar="FILE",
                     help="noise model from `vlfuzz calibrate --out` instead of measuring at start")
    run.add_argument("--slowdown-factor", type=_factor, default=None, metavar="K",
                     help="a victim is starved when its median latency exceeds K x its alone "
                          "median (default 5)")

    target = sub.add_parser("target", help="manage the embedded vLLM target",
                            description="Install (once), start, stop or inspect the embedded vLLM "
                                        "serving a tiny random-weight Qwen3-VL.")
    target.add_argument("action", choices=["up", "down", "status"])
    target.add_argument("--port", type=int, default=None, help="port for `up` (default: a free one)")
    target.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra argument passed to vLLM (repeatable)")

    cal = sub.add_parser("calibrate", help="measure a target's natural variance (noise model)",
                         description="Send greedy probes alone and in benign batches, print how "
                                     "often and how far answers diverge, and the bar the isolation "
                                     "oracle derives from it; --out writes it for `run --noise`.")
    cal.add_argument("--endpoint", type=_url, help="vLLM base URL (default: the embedded target)")
    cal.add_argument("--model", help="served model name (default: the first one /v1/models lists)")
    cal.add_argument("--api-key", default=os.environ.get("VLFUZZ_API_KEY") or None,
                     help="bearer token for the endpoint (default: $VLFUZZ_API_KEY)")
    cal.add_argument("--repeats", type=_positive_int, default=5, help="alone runs per probe (default 5)")
    cal.add_argument("--batch-sizes", type=_sizes, default=(2, 4, 8), metavar="B,B,...",
                     help="benign batch sizes (default 2,4,8)")
    cal.add_argument("--batch-runs", type=_positive_int, default=3,
                     help="runs per batch size (default 3)")
    cal.add_argument("--max-tokens", type=_positive_int, default=32,
                     help="tokens per probe answer (default 32)")
    cal.add_argument("--no-image", action="store_true", help="text probes only")
    cal.add_argument("--latency-runs", type=int, default=5,
                     help="alone latency runs of a streamed probe (default 5; 0 to skip)")
    cal.add_argument("--out", type=Path, default=None, help="write the noise model JSON here")

    replay = sub.add_parser("replay", help="replay saved bundles: FIXED / STILL FAILING / ERROR",
                            description="Replay failure bundles; exit 0 if all fixed, 1 if any "
                                        "still fails, 2 on error.")
    replay.add_argument("paths", nargs="+", type=Path, help="bundle folders, .tar.gz files or folders of them")
    replay.add_argument("--endpoint", type=_url, help="vLLM base URL (default: the embedded target)")
    replay.add_argument("--model", help="served model name (default: the bundle's or the server's)")
    replay.add_argument("--runs", "--repeat", type=_positive_int, default=3, dest="runs",
                        help="replays per bundle; it counts as fixed only if none fails (default 3)")
    replay.add_argument("--junit", type=Path, help="write JUnit XML here")
    replay.add_argument("--api-key", default=os.environ.get("VLFUZZ_API_KEY") or None,
                        help="bearer token for --endpoint (default: $VLFUZZ_API_KEY); never written out")
    replay.add_argument("--header", type=_header, action="append", default=[], metavar="NAME:VALUE",
                        help="extra header sent with every request (repeatable); values are never written out")
    replay.add_argument("--server-log", type=Path, default=None, metavar="FILE",
                        help="the target's log file, followed during each replay: server-log "
                             "bundles cannot be judged without it (the embedded target's is "
                             "followed automatically)")
    replay.add_argument("--fresh-target", action="store_true",
                        help="restart the embedded target before each bundle, for failures "
                             "that depend on what the server saw first (without --endpoint; "
                             "the embedded target always runs with the vLLM flags each bundle "
                             "was recorded with)")

    bundle = sub.add_parser("bundle", help="inspect, pack, triage or refresh a failure bundle",
                            description="`show` prints a bundle's summary; `pack` writes a single "
                                        ".tar.gz to attach to an upstream issue; `triage` records "
                                        "a verdict in the bundle folder (bundle.json rewritten "
                                        "atomically, ISSUE.md and repro.py re-rendered); "
                                        "`refresh` re-renders ISSUE.md and repro.py.")
    bundle.add_argument("action", choices=["show", "pack", "triage", "refresh"])
    bundle.add_argument("path", type=Path, help="a bundle folder (or .tar.gz for show and pack)")
    bundle.add_argument("--out", type=Path, default=None,
                        help="pack: folder for the archive (default: beside the bundle)")
    from fuzz.bundle_triage import VERDICTS

    bundle.add_argument("--verdict", choices=VERDICTS, help="triage: what the failure is")
    bundle.add_argument("--note", help="triage: why, what is known (replaces the old note)")
    bundle.add_argument("--seen", action="append", default=[], metavar="VERSION",
                        help="triage: a vLLM version the failure was seen on (repeatable; added)")
    bundle.add_argument("--upstream", metavar="URL",
                        help="triage: the upstream issue or PR ('' to clear)")
    return p


def cmd_bundle(args: argparse.Namespace) -> int:
    """Loading validates everything (schema, hashes, archive safety); nothing in the
    bundle is executed."""
    import datetime
    import textwrap

    from fuzz.bundle import BundleError, load_bundle, pack_bundle, refresh_bundle, set_triage
    from fuzz.bundle_triage import BundleTriage
    from fuzz.issue import report_title
    from fuzz.scenario_summary import needs

    try:
        b = load_bundle(args.path)
        if args.action == "triage":
            today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
            triage = (b.triage or BundleTriage()).updated_with(
                verdict=args.verdict, note=args.note, versions=args.seen,
                upstream=args.upstream, updated=today)
            b = set_triage(args.path, triage)
        elif args.action == "refresh":
            b = refresh_bundle(args.path)
    except (BundleError, ValueError) as e:
        print(f"vlfuzz: {e}", file=sys.stderr)
        return 2
    if args.action == "pack":
        out = args.out or args.path.parent
        archive = pack_bundle(b, out)
        print(f"{archive} ({archive.stat().st_size / 1024:.1f} KiB)")
        return 0
    k, n = b.reproduced
    target = b.target
    print(report_title(b))
    print(f"  signature:  {b.signature}")
    print(f"  reproduced: {k}/{n}")
    print(f"  target:     vLLM {target.get('version', '?')}, model "
          f"{target.get('model_id') or target.get('model', '?')}")
    for line in needs(b):
        print(f"  - {line}")
    about = b.triage.summary() if b.triage else "untriaged (no verdict recorded)"
    print(textwrap.fill(about, 100, initial_indent="  triage:     ",
                        subsequent_indent=" " * 14))
    return 0


def _log(msg: str) -> None:
    print(msg, flush=True)


def _external_endpoint(url: str, model: str | None, api_key: str | None,
                       headers: tuple[tuple[str, str], ...] = ()) -> AuthEndpoint:
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


def _embedded_endpoint(args: argparse.Namespace) -> tuple[Endpoint, ServerState] | None:
    """The embedded target, brought up with the default flags, as an endpoint (and its
    state); None, with the reason on stderr, when it cannot be started."""
    from fuzz.runner import Endpoint
    from fuzz.target import embedded
    from fuzz.target.server import ServerConfig, TargetError

    try:
        state = embedded.up(_target_paths(args), ServerConfig(), log=_log)
    except (TargetError, OSError) as e:
        print(f"vlfuzz: embedded target failed: {e}", file=sys.stderr)
        return None
    return Endpoint(state.base_url, args.model or state.model), state


def _target_paths(args: argparse.Namespace) -> TargetPaths:
    from fuzz.target.embedded import target_paths

    return target_paths(args.cache)


def cmd_target(args: argparse.Namespace) -> int:
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


def _run_config(args: argparse.Namespace, out: Path, seed: int) -> CampaignConfig:
    """The campaign settings: from the flags, or from the journal when resuming
    (so the seed stream, burst sizes and deadlines are the ones it started with)."""
    from fuzz.config import CampaignConfig, journaled_settings, resumed_config
    from fuzz.minimize import Budget

    minimize_budget = Budget(max_replays=args.minimize_replays, max_wall_s=args.minimize_time)
    if args.noise is not None:
        _check_noise(args.noise)
    overrides = {phase: value for phase, value in (("first_byte_s", args.first_byte_timeout),
                                                   ("stall_s", args.stall_timeout),
                                                   ("total_s", args.total_timeout))
                 if value is not None}
    if args.exclude_feature:
        from fuzz.strategies import StrategyArgumentError, scenarios
        try:
            scenarios(exclude_features=tuple(args.exclude_feature))
        except StrategyArgumentError as e:
            raise SystemExit(f"vlfuzz: --exclude-feature: {e}") from None
    if args.resume is None:
        return CampaignConfig(
            out_dir=out, duration_s=args.duration or parse_duration(DEFAULT_DURATION), seed=seed,
            deadline_overrides=overrides, url_image_percent=_url_image_percent(args),
            max_disk_bytes=args.max_disk if args.max_disk is not None else _size(DEFAULT_MAX_DISK),
            workers=args.workers or 1,
            max_requests=args.max_requests, max_output_tokens=args.max_output_tokens,
            minimize=not args.no_minimize, minimize_budget=minimize_budget,
            steering=not args.no_steering, server_log=args.server_log,
            isolation=(args.isolation if args.isolation is not None
                       else not args.endpoint or args.noise is not None),
            noise_file=args.noise, interference_factor=args.slowdown_factor or 5.0,
            exclude_features=tuple(args.exclude_feature))
    saved = journaled_settings(out)
    if saved is None:
        raise SystemExit(f"vlfuzz: nothing to resume in {out} (no journal with a started record)")
    return resumed_config(out, saved, duration_s=args.duration, deadline_overrides=overrides,
                          max_disk_bytes=args.max_disk, workers=args.workers,
                          minimize=not args.no_minimize, minimize_budget=minimize_budget,
                          steering=False if args.no_steering else None, isolation=args.isolation,
                          noise_file=args.noise, interference_factor=args.slowdown_factor,
                          server_log=args.server_log)


def _check_noise(path: Path) -> None:
    """A `--noise` file must be a noise model before anything starts."""
    from fuzz.isolation import NoiseModel

    try:
        NoiseModel.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"vlfuzz: --noise {path}: not a noise model ({e})") from None


def _graceful_stop(stop: threading.Event) -> dict[int, object]:
    """First ^C (or SIGTERM): finish the scenario in flight, write the report.
    Second ^C: cut it now (KeyboardInterrupt; the report is still written)."""
    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        try:
            os.write(2, b"\nvlfuzz: stopping after the scenario in flight (^C again to cut it)\n")
        except OSError:
            pass
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _warn_resume_overrides(args: argparse.Namespace, cfg: CampaignConfig) -> None:
    """`--resume` keeps the campaign's seed and feature exclusions (the same scenarios
    must come out); say so when the command line asked for others."""
    if args.resume is None:
        return
    if args.seed is not None and args.seed != cfg.seed:
        _log(f"vlfuzz: --seed {args.seed} ignored: resuming the campaign's own seed {cfg.seed}")
    asked = tuple(args.exclude_feature or ())
    if asked and asked != tuple(cfg.exclude_features):
        kept = ", ".join(cfg.exclude_features) or "none"
        _log(f"vlfuzz: --exclude-feature {' '.join(asked)} ignored: resuming with the "
             f"campaign's own exclusions ({kept})")


def cmd_run(args: argparse.Namespace) -> int:
    from fuzz.auth import AuthEndpoint, redactor_for
    from fuzz.campaign import run_campaign
    from fuzz.progress import Progress
    from fuzz.supervisor import EmbeddedSupervisor, ExternalSupervisor
    from fuzz.target import embedded, server
    from fuzz.target.server import ServerConfig, TargetError

    out = args.resume or args.out or Path("reports") / time.strftime("run-%Y%m%d-%H%M%S")
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    cfg = _run_config(args, out, seed)
    _warn_resume_overrides(args, cfg)
    if cfg.workers > 1 or args.first_worker:
        return _run_workers(args, cfg, out)
    if args.endpoint and len(args.endpoint) > 1:
        print("vlfuzz: several --endpoint need --workers (one worker per endpoint at least)",
              file=sys.stderr)
        return 2
    started_here = False
    stop = threading.Event()
    if args.endpoint:
        if args.server_arg:
            print("vlfuzz: --server-arg only applies to the embedded target; ignored", file=sys.stderr)
        endpoint = _external_endpoint(args.endpoint[0], args.model, args.api_key, tuple(args.header))
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
    return 1 if summary.confirmed_failures else 0


def _run_workers(args: argparse.Namespace, cfg: CampaignConfig, out: Path) -> int:
    """`--workers N`: N campaign processes against the endpoints, round robin; this
    process keeps the merged reports and a status line current (see `fuzz.workers`)."""
    from fuzz.auth import redactor_for
    from fuzz.progress import status_line
    from fuzz.workers import EXIT_TARGET_UNAVAILABLE, WorkerSpec, run_workers, worker_configs

    if not args.endpoint:
        print("vlfuzz: --workers needs --endpoint (one or more): the embedded target serves "
              "one campaign", file=sys.stderr)
        return 2
    if args.first_worker < 0:
        print(f"vlfuzz: --first-worker must be at least 0: {args.first_worker}", file=sys.stderr)
        return 2
    if cfg.isolation:  # "alone" runs are not alone while other workers send traffic
        print("vlfuzz: --isolation needs the target to itself: not with --workers",
              file=sys.stderr)
        return 2
    endpoints = [_external_endpoint(url, args.model, args.api_key, tuple(args.header))
                 for url in args.endpoint]
    specs = [WorkerSpec(config=c, base_url=endpoints[i % len(endpoints)].base_url,
                        model=endpoints[i % len(endpoints)].model, api_key=args.api_key,
                        headers=tuple(args.header), max_target_wait_s=args.max_target_wait)
             for i, c in enumerate(worker_configs(cfg, cfg.workers, args.first_worker))]
    redact = redactor_for(endpoints[0])
    label = ", ".join(e.base_url for e in endpoints)
    _log(f"vlfuzz {__version__}: {'resuming' if cfg.resume else 'fuzzing'} {label} with "
         f"{len(specs)} workers (#{specs[0].config.worker}-#{specs[-1].config.worker}) for "
         f"{cfg.duration_s:.0f}s each, seed {cfg.seed}, output in {out}")

    def status(summary: Summary) -> None:
        left = cfg.duration_s - summary.elapsed_s
        _log(redact.text(status_line(summary, summary.elapsed_s, left, cfg.max_disk_bytes)))

    summary, codes = run_workers(specs, out_dir=out, seed=cfg.seed, endpoint=label, redact=redact,
                                 on_status=status)
    print("\n" + (out / "report.md").read_text())
    _log(f"report: {out / 'report.md'} (also {out / 'report.html'}, {out / 'summary.json'})")
    if all(code == EXIT_TARGET_UNAVAILABLE for code in codes):
        return 2
    # A worker exits 0 (failures or not: the coordinator counts them) or 2 (target
    # unavailable); anything else is a crash (1: an exception, negative: a signal).
    crashed = [(spec.config.worker, code) for spec, code in zip(specs, codes)
               if code not in (0, EXIT_TARGET_UNAVAILABLE)]
    if crashed:
        print("vlfuzz: worker(s) crashed: " + ", ".join(
            f"#{w} exit code {c}" + (f" (signal {-c})" if c < 0 else "") for w, c in crashed)
            + f"; the report covers what their journals recorded", file=sys.stderr)
        return 2
    return 1 if summary.confirmed_failures else 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """`vlfuzz calibrate`: `fuzz.calibration` against an endpoint or the embedded target."""
    from fuzz.calibration import measure_variance, render_variance, write_json
    from fuzz.isolation import CalibrationError

    if args.endpoint:
        endpoint = _external_endpoint(args.endpoint, args.model, args.api_key)
    else:
        embedded_target = _embedded_endpoint(args)
        if embedded_target is None:
            return 2
        endpoint, _state = embedded_target
    try:
        variance = asyncio.run(measure_variance(
            endpoint, repeats=args.repeats, batch_sizes=args.batch_sizes,
            batch_runs=args.batch_runs, max_tokens=args.max_tokens, image=not args.no_image,
            latency_runs=args.latency_runs))
    except (CalibrationError, ValueError) as e:
        print(f"vlfuzz: cannot calibrate {endpoint.base_url}: {e}", file=sys.stderr)
        return 2
    print(render_variance(variance, f"{endpoint.base_url} (model {endpoint.model})"))
    if args.out:
        write_json(args.out, variance.noise.to_json())
        print(f"\nnoise model written to {args.out} (use it with `vlfuzz run --noise {args.out}`)")
    return 0


def cmd_replay(args) -> int:
    from fuzz.replay import replay_paths

    server_log = args.server_log
    if args.endpoint:
        if args.fresh_target:
            print("vlfuzz: --fresh-target restarts the embedded target; with --endpoint, "
                  "restart the server yourself", file=sys.stderr)
            return 2
        endpoint = _external_endpoint(args.endpoint, args.model, args.api_key, tuple(args.header))
        return replay_paths(args.paths, endpoint, runs=args.runs, junit_path=args.junit,
                            server_log=server_log)
    if args.api_key or args.header:
        print("vlfuzz: --api-key/--header only apply with --endpoint; ignored", file=sys.stderr)
    paths = _target_paths(args)
    return replay_paths(args.paths, None, runs=args.runs, junit_path=args.junit,
                        server_log=server_log or paths.log_file,
                        prepare=_embedded_preparer(paths, args.model, args.fresh_target))


def _embedded_preparer(paths: TargetPaths, model: str | None, fresh: bool) -> PrepareFn:
    """Readies the embedded target for each bundle: up with the vLLM flags the bundle
    was recorded with (restarted when it runs with others, or always when `fresh`)."""
    from fuzz.runner import Endpoint
    from fuzz.target import embedded
    from fuzz.target.server import ServerConfig, launch_flags

    async def prepare(bundle: Bundle) -> Endpoint:
        config = ServerConfig(extra_args=launch_flags(bundle.target.get("server_argv")) or ())
        start = embedded.restart if fresh else embedded.up
        state = await asyncio.to_thread(start, paths, config, _log)
        return Endpoint(state.base_url, model or state.model)

    return prepare


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "target": cmd_target, "replay": cmd_replay,
               "bundle": cmd_bundle, "calibrate": cmd_calibrate}[args.command]
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
