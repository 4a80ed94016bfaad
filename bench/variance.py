"""Measure the natural variance of greedy answers on an endpoint (the isolation
oracle's noise model), and a streamed victim's alone latency.

    python3 bench/variance.py --endpoint URL --model NAME [--repeats 5]
                              [--batch-sizes 2,4,8] [--batch-runs 3] [--max-tokens 32]
                              [--no-image] [--latency-runs 5] [--out noise.json]
                              [--samples-out samples.json]

Each probe (three text prompts and, unless `--no-image`, one with a 64x64 PNG) is a
greedy request (temperature 0, seed 0, `logprobs: true, top_logprobs: 5`) sent alone
`--repeats` times, then with `b - 1` neutral text requests for every batch size b,
`--batch-runs` times each, one scenario at a time. Every answer is compared with the
probe's first alone answer: where it first differs, and by how much the logprob of
the same token at the same position moved before that. The table shows, per batch
size, how often answers diverged, where, the largest logprob move and the largest
lead that was overturned (the alone top token's over the token chosen instead); then
the bar the differential oracle will use and how many reference positions lead by
more than it (where any flip, or a flip to a token outside the listed top 5, would be
flagged: the oracle's sensitivity). `--out` writes the NoiseModel JSON
(`fuzz.isolation.NoiseModel`); the table is `fuzz.isolation.variance_table`.

Then the first probe, streamed, is timed alone `--latency-runs` times (TTFT, time per
output token, end to end): the interference oracle's calibration, for scale.

The measuring and the text are `fuzz.calibration`'s, shared with `vlfuzz calibrate`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.calibration import measure_variance, render_variance, write_json  # noqa: E402
from fuzz.isolation.noise import DEFAULT_MIN_MARGIN, DEFAULT_SAFETY  # noqa: E402
from fuzz.runner import Endpoint  # noqa: E402


async def measure(args: argparse.Namespace) -> int:
    endpoint = Endpoint(args.endpoint, args.model, api_key=os.environ.get(args.api_key_env))
    variance = await measure_variance(
        endpoint, repeats=args.repeats, batch_sizes=args.batch_sizes, batch_runs=args.batch_runs,
        max_tokens=args.max_tokens, image=not args.no_image, safety=args.safety,
        min_margin=args.min_margin, latency_runs=args.latency_runs)
    print(render_variance(variance, f"{args.endpoint} (model {args.model})"))
    if args.out:
        write_json(args.out, variance.noise.to_json())
        print(f"\nnoise model written to {args.out}")
    if args.samples_out:
        write_json(args.samples_out, {"samples": [s.to_json() for s in variance.samples]})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key-env", default="VLFUZZ_API_KEY",
                        help="environment variable holding the API key, if any")
    parser.add_argument("--repeats", type=int, default=5, help="alone runs per probe")
    parser.add_argument("--batch-sizes", default="2,4,8",
                        type=lambda s: tuple(int(x) for x in s.split(",") if x.strip()))
    parser.add_argument("--batch-runs", type=int, default=3, help="runs per batch size")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--no-image", action="store_true", help="text probes only")
    parser.add_argument("--safety", type=float, default=DEFAULT_SAFETY)
    parser.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN)
    parser.add_argument("--latency-runs", type=int, default=5, help="0 to skip")
    parser.add_argument("--out", type=Path, help="write the NoiseModel JSON here")
    parser.add_argument("--samples-out", type=Path, help="write every measured answer here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(b < 2 for b in args.batch_sizes):
        parser.error("--repeats must be >= 1 and batch sizes >= 2")
    return asyncio.run(measure(args))


if __name__ == "__main__":
    sys.exit(main())
