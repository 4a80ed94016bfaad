"""Hunt: one campaign per vLLM configuration against the embedded target, side by side.

Each configuration is a `vlfuzz run --server-arg ...` campaign with its own output
folder; at the end a table gives, per configuration, how long it ran, what it sent, and
each unique failure with the time it was first seen (a coverage curve in words).
Several lanes run configurations in parallel, each with its own embedded target: the
lane's cache folder links the installed venv and checkpoint of the main cache, so
nothing is installed twice.

    python3 bench/hunt.py --duration 6m --lanes 2 --out reports/hunt \\
        --exclude-feature sampling:seed
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
            "summary": _summary(out)}


def _summary(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def table(results: Sequence[dict]) -> str:
    lines = ["| configuration | wall | scenarios | requests | restarts | unique failures "
             "(first seen) |", "|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        fails = sorted(s.get("failures", []), key=lambda f: f.get("first_seen_s", 0))
        found = "; ".join(f"{f.get('signature', '?')[:90]} ({f.get('first_seen_s', 0):.0f}s, "
                          f"x{f.get('count', '?')})" for f in fails) or "none"
        lines.append(f"| {r['name']} | {r['wall_s'] / 60:.1f} min | {s.get('scenarios', '?')} | "
                     f"{s.get('requests', '?')} | {s.get('target', {}).get('restarts', s.get('restarts', '?'))} "
                     f"| {found} |")
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
    args = p.parse_args(argv)
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
