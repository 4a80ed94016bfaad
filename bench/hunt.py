"""Hunt: one campaign per vLLM configuration against the embedded target, side by side.

Each configuration is a `vlfuzz run --server-arg ...` campaign with its own output
folder; at the end a table gives, per configuration, how long it ran, what it sent, and
each unique failure with the time it was first seen, and the coverage curve: unique
signatures found by 5/10/20/30/45 minutes and when the last new one appeared.
Several lanes run configurations in parallel, each with its own embedded target: the
lane's cache folder links the installed venv and checkpoint of the main cache, so
nothing is installed twice.

    python3 bench/hunt.py --duration 6m --lanes 2 --out reports/hunt \\
        --exclude-feature sampling:seed
    python3 bench/hunt.py --tabulate reports/hunt     # the table again, from the folders
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuzz.target.paths import default_cache_root  # noqa: E402

# The configurations users run (issue 9); the flags are vLLM 0.32's.
CONFIGS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "no-prefix-caching": ("--no-enable-prefix-caching",),
    "no-chunked-prefill": ("--no-enable-chunked-prefill",),
    "small-batch": ("--max-num-seqs", "4", "--max-num-batched-tokens", "1024"),
    "xgrammar": ("--structured-outputs-config", '{"backend": "xgrammar"}'),
    "guidance": ("--structured-outputs-config", '{"backend": "guidance"}'),
    "outlines": ("--structured-outputs-config", '{"backend": "outlines"}'),
    "async-scheduling": ("--async-scheduling",),
    "max-model-len-2048": ("--max-model-len", "2048"),
}


def lane_cache(main: Path, lane: int, out: Path) -> Path:
    """Lane 0 uses the main cache; others link its venv and checkpoints, own `run/`."""
    if lane == 0:
        return main
    cache = out / f"cache-lane{lane}"
    cache.mkdir(parents=True, exist_ok=True)
    for entry in main.iterdir():
        if entry.name != "run" and not (cache / entry.name).exists():
            (cache / entry.name).symlink_to(entry)
    return cache


def campaign(name: str, flags: Sequence[str], cache: Path, args: argparse.Namespace) -> dict:
    out = args.out / name
    cmd = [sys.executable, "-m", "fuzz.cli", "--cache", str(cache), "run",
           "--duration", args.duration, "--seed", str(args.seed), "--out", str(out),
           "--minimize-replays", str(args.minimize_replays), "--minimize-time", args.minimize_time,
           *[f"--server-arg={f}" for f in flags],
           *[f"--exclude-feature={f}" for f in args.exclude_feature]]
    started = time.monotonic()
    with open(args.out / f"{name}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return {"name": name, "flags": list(flags), "rc": rc, "wall_s": time.monotonic() - started,
            "summary": _summary(out), "curve": curve(out / "journal.jsonl")}


def _summary(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def curve(journal: Path) -> list[tuple[float, int, str]]:
    """When each unique signature was first seen: (campaign seconds, requests sent up to
    and including that scenario, signature), in order (a scenario's record precedes the
    records of its failures). Unconfirmed hangs (re-checked,
    did not come back) are left out, as the report leaves them out of the failures."""
    sent, seen, out = 0, set(), []
    unconfirmed = set()
    try:
        records = [json.loads(line) for line in journal.read_text().splitlines() if line]
    except (OSError, ValueError):
        return []
    for r in records:
        if r.get("type") == "failure" and r.get("confirmed") is False:
            unconfirmed.add(r.get("signature"))
        elif r.get("type") == "failure" and r.get("confirmed") is True:
            unconfirmed.discard(r.get("signature"))
    for r in records:
        if r.get("type") == "scenario":
            sent += int(r.get("requests", 0))
        elif r.get("type") == "failure" and r.get("new") and r.get("signature") not in seen:
            seen.add(r["signature"])
            out.append((float(r.get("t", 0.0)), sent, r["signature"]))  # its scenario counted
    return [c for c in out if c[2] not in unconfirmed]


def curve_line(points: Sequence[tuple[float, int, str]],
               marks_min: Sequence[int] = (5, 10, 20, 30, 45)) -> str:
    """Unique signatures found by each mark (a coverage curve) and when the last was new."""
    counts = "/".join(str(sum(t <= m * 60 for t, _, _ in points)) for m in marks_min)
    last = (f"last new at {points[-1][0]:.0f}s (~{points[-1][1]} requests)" if points
            else "none found")
    return f"by {'/'.join(map(str, marks_min))} min: {counts}; {last}"


def tabulate(out: Path) -> str:
    """The table for the campaigns already in `out` (one folder per configuration)."""
    results = []
    for folder in sorted(p for p in out.iterdir() if (p / "summary.json").exists()):
        s = _summary(folder)
        results.append({"name": folder.name, "flags": [], "rc": None,
                        "wall_s": float(s.get("elapsed_s", 0.0)), "summary": s,
                        "curve": curve(folder / "journal.jsonl")})
    return table(results)


def table(results: Sequence[dict]) -> str:
    lines = ["| configuration | wall | scenarios | requests | restarts | curve | unique failures "
             "(first seen) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        fails = sorted(s.get("failures", []), key=lambda f: f.get("first_seen_s", 0))
        found = "; ".join(f"{f.get('signature', '?')[:90]} ({f.get('first_seen_s', 0):.0f}s, "
                          f"x{f.get('count', '?')})" for f in fails) or "none"
        apart = len(s.get("unconfirmed", []))
        found += f"; {apart} hang(s) not reproduced on re-check" if apart else ""
        lines.append(f"| {r['name']} | {r['wall_s'] / 60:.1f} min | {s.get('scenarios', '?')} | "
                     f"{s.get('requests', '?')} | {s.get('target', {}).get('restarts', s.get('restarts', '?'))} "
                     f"| {curve_line(r.get('curve', []))} | {found} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", default="6m", help="per configuration (default 6m)")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--lanes", type=int, default=1, help="configurations run in parallel")
    p.add_argument("--only", action="append", choices=sorted(CONFIGS), default=[])
    p.add_argument("--exclude-feature", action="append", default=[],
                   help="stop generating a known trigger (repeatable)")
    p.add_argument("--minimize-replays", type=int, default=40)
    p.add_argument("--minimize-time", default="3m")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=REPO / "reports" / "hunt")
    p.add_argument("--tabulate", type=Path, metavar="DIR",
                   help="print the table of the campaigns already in DIR, run nothing")
    args = p.parse_args(argv)
    if args.tabulate:
        print(tabulate(args.tabulate))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    main_cache = args.cache or default_cache_root()
    names = args.only or list(CONFIGS)
    lanes = [names[i::args.lanes] for i in range(args.lanes)]

    def run_lane(lane: int) -> list[dict]:
        cache = lane_cache(main_cache, lane, args.out)
        done = []
        for name in lanes[lane]:
            print(f"[lane {lane}] {name}: {' '.join(CONFIGS[name]) or '(defaults)'}", flush=True)
            done.append(campaign(name, CONFIGS[name], cache, args))
            print(f"[lane {lane}] {name} done in {done[-1]['wall_s'] / 60:.1f} min", flush=True)
        subprocess.call([sys.executable, "-m", "fuzz.cli", "--cache", str(cache), "target", "down"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        return done

    with ThreadPoolExecutor(args.lanes) as pool:
        results = [r for lane in pool.map(run_lane, range(args.lanes)) for r in lane]
    results.sort(key=lambda r: names.index(r["name"]))
    text = table(results)
    (args.out / "hunt.md").write_text(text + "\n")
    (args.out / "hunt.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
