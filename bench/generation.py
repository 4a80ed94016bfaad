"""Generation speed and feature coverage of `fuzz.strategies.scenarios()`.

    python3 bench/generation.py [-n 200] [--seed 1] [--images 300] [--max-requests 32]

Runs Hypothesis the way the campaign does (a @given function, generation phase
only, fixed seed) and prints: scenarios/s and requests/s; image renders/s over a
separate sample of the default recipe mix; the per-request generation overhead
with image encoding subtracted (median and p90, wall clock and this thread's CPU
time, which a loaded machine does not inflate); and a table of how many requests
carry each feature tag, with the expected features that never appeared."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import importlib  # noqa: E402

from fuzz.media import render  # noqa: E402
from fuzz.strategies import feature_counts, image_recipes, scenarios  # noqa: E402

# By module path: the package re-exports a *function* named `scenarios`.
requests_mod = importlib.import_module("fuzz.strategies.requests")
pool_mod = importlib.import_module("fuzz.strategies.pool")

EXPECTED_PREFIXES: tuple[str, ...] = (
    "image:mode:", "image:format:", "image:broken:", "image:animated", "image:bound:",
    "image:repeat", "image:variant", "images:at_limit", "images:over_limit", "context:",
    "history:tool_calls", "history:broken:", "text:unicode_edge", "text:special_tokens",
    "structured:json_schema", "structured:json_object", "structured_outputs:json",
    "structured_outputs:regex", "structured_outputs:choice", "structured_outputs:grammar",
    "structured_outputs:invalid", "schema:feature:recursion", "schema:feature:bigint",
    "schema:feature:tupleItems07", "tools:required", "tools:named", "tools:none",
    "tools:generated", "tools:parallel:", "max_tokens:0", "max_tokens:large", "sampling:n",
    "sampling:logit_bias", "sampling:priority", "sampling:seed:bound", "stream:include_usage",
    "extra:unknown_field", "extra:mistyped:", "traffic:gamma", "traffic:ramp_up",
    "traffic:burst", "disconnect", "request:repeat", "pair:second", "image:seed:",
    "image:seed:stamped")


class Timer:
    """Wraps a function and totals its wall and CPU (this thread's) time."""

    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.fn, self.wall, self.cpu = fn, 0.0, 0.0

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.thread_time() - cpu


def generate(n: int, seed: int, max_requests: int, cpu: list[float] | None = None
             ) -> tuple[list, float, list[float]]:
    """Scenarios, wall time, and per-request wall overheads (CPU ones into `cpu`)."""
    render_timer = Timer(pool_mod.render)
    request_timer = Timer(requests_mod.draw_chat_request)
    overheads: list[float] = []
    cpu_overheads = cpu if cpu is not None else []

    def timed_request(*args, **kwargs):  # type: ignore[no-untyped-def]
        wall_before, cpu_before = render_timer.wall, render_timer.cpu
        start, start_cpu = time.perf_counter(), time.thread_time()
        result = request_timer.fn(*args, **kwargs)
        overheads.append(time.perf_counter() - start - (render_timer.wall - wall_before))
        cpu_overheads.append(time.thread_time() - start_cpu - (render_timer.cpu - cpu_before))
        return result

    pool_mod.RENDER_CACHE = pool_mod.RenderCache()  # cold cache: honest figures
    pool_mod.render = render_timer  # type: ignore[assignment]
    requests_mod.draw_chat_request = timed_request  # type: ignore[assignment]
    drawn: list = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(scenarios(max_requests=max_requests, max_output_tokens=64))
    def one(scenario) -> None:  # type: ignore[no-untyped-def]
        drawn.append(scenario)

    start = time.perf_counter()
    one()
    wall = time.perf_counter() - start
    pool_mod.render = render  # type: ignore[assignment]
    requests_mod.draw_chat_request = request_timer.fn  # type: ignore[assignment]
    return drawn, wall, overheads


def image_rate(count: int, seed: int) -> tuple[float, int]:
    recipes: list = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(image_recipes())
    def collect(recipe) -> None:  # type: ignore[no-untyped-def]
        recipes.append(recipe)

    collect()
    distinct = list(dict.fromkeys(recipes))
    start = time.perf_counter()
    for recipe in distinct:
        render(recipe)
    return len(distinct) / (time.perf_counter() - start), len(distinct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="scenarios to generate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images", type=int, default=300, help="recipes for the image rate")
    parser.add_argument("--max-requests", type=int, default=32)
    args = parser.parse_args(argv)

    cpu: list[float] = []
    drawn, wall, overheads = generate(args.n, args.seed, args.max_requests, cpu)
    n_requests = sum(len(s.requests) for s in drawn)
    n_media = sum(len(s.media) for s in drawn)
    rate, distinct = image_rate(args.images, args.seed)
    overheads.sort()
    print(f"scenarios: {len(drawn)} in {wall:.1f} s = {len(drawn) / wall:.2f}/s; "
          f"requests {n_requests} = {n_requests / wall:.1f}/s; media {n_media}")
    print(f"images: {distinct} distinct default-mix recipes rendered at {rate:.1f}/s (one core)")
    if overheads:
        p90 = overheads[int(0.9 * (len(overheads) - 1))]
        cpu.sort()
        print(f"per-request generation overhead excluding image encoding: median "
              f"{statistics.median(overheads) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms "
              f"({len(overheads)} drawn requests); CPU time median "
              f"{statistics.median(cpu) * 1e3:.2f} ms, p90 "
              f"{cpu[int(0.9 * (len(cpu) - 1))] * 1e3:.2f} ms")
    counts: Counter[str] = feature_counts(drawn)
    print(f"\n{'feature':48} {'requests':>9} {'share':>7}")
    for tag, count in sorted(counts.items()):
        print(f"{tag:48} {count:9d} {100 * count / max(n_requests, 1):6.1f}%")
    missing = [p for p in EXPECTED_PREFIXES if not any(t.startswith(p) for t in counts)]
    print(f"\n{len(counts)} distinct features; expected but never seen: {missing or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
