"""Measuring an endpoint's natural variance for a person to read: the body of
`vlfuzz calibrate` and of `bench/variance.py`, so the two cannot drift apart.

Each probe (three text prompts and, unless `image=False`, one with a 64x64 PNG) is a
greedy request sent alone `repeats` times, then with `b - 1` neutral text requests for
every batch size b, `batch_runs` times each, one scenario at a time; `derive_noise`
turns the answers into the differential oracle's bar, `variance_table` into text.
Then the first probe, streamed, is timed alone `latency_runs` times: the interference
oracle's calibration, for scale. The JSON `--out` writes is the `NoiseModel` that
`vlfuzz run --noise FILE` reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.isolation import (AloneLatency, NoiseModel, NoiseSample, calibrate_latency,
                            default_probes, derive_noise, measure_noise, probe_request,
                            variance_table)
from fuzz.isolation.noise import DEFAULT_MIN_MARGIN, DEFAULT_SAFETY
from fuzz.isolation.scenarios import PROBE_PROMPTS
from fuzz.journal import write_atomic
from fuzz.model import Deadlines, Scenario
from fuzz.runner import Endpoint

__all__ = ["DEADLINES", "Variance", "measure_variance", "render_variance", "write_json"]

DEADLINES = Deadlines(first_byte_s=120.0, stall_s=60.0, total_s=300.0)  # the campaign's ceiling
METRICS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class Variance:
    """One measurement: the noise model, every answer it came from, the probes'
    shape, how long it took, and the streamed probe's alone latency (if timed)."""

    noise: NoiseModel
    samples: tuple[NoiseSample, ...]
    probes: int
    max_tokens: int
    elapsed_s: float
    latency: AloneLatency | None = None
    latency_runs: int = 0


async def measure_variance(endpoint: Endpoint, *, repeats: int = 5,
                           batch_sizes: Sequence[int] = (2, 4, 8), batch_runs: int = 3,
                           max_tokens: int = 32, image: bool = True,
                           safety: float = DEFAULT_SAFETY, min_margin: float = DEFAULT_MIN_MARGIN,
                           latency_runs: int = 5,
                           deadlines: Deadlines = DEADLINES) -> Variance:
    """Measure (see the module docstring). Raises CalibrationError when a probe gets
    no greedy answer with logprobs alone, ValueError on settings that measure nothing."""
    if repeats < 1 or any(b < 2 for b in batch_sizes) or batch_runs < 1 or latency_runs < 0:
        raise ValueError("need repeats >= 1, batch sizes >= 2, batch runs >= 1, "
                         "latency runs >= 0")
    probes = default_probes(max_tokens=max_tokens, image=image)
    started = time.monotonic()
    samples = await measure_noise(endpoint, probes, alone_runs=repeats, batch_sizes=batch_sizes,
                                  batch_runs=batch_runs, deadlines=deadlines)
    noise = derive_noise(samples, safety=safety, min_margin=min_margin)
    elapsed = time.monotonic() - started
    latency = None
    if latency_runs:
        streamed = Scenario(requests=(probe_request("victim", PROBE_PROMPTS[0], stream=True,
                                                    max_tokens=max_tokens),))
        latency = await calibrate_latency(endpoint, streamed, "victim", runs=latency_runs,
                                          deadlines=deadlines)
    return Variance(noise, tuple(samples), len(probes.requests), max_tokens, elapsed, latency,
                    latency_runs)


def render_variance(v: Variance, where: str) -> str:
    """What a person reads: the table, the bar's derivation, and the latency line."""
    lines = [f"natural variance of {where}: {v.probes} greedy probes, {v.max_tokens} tokens, "
             f"{len(v.samples)} answers in {v.elapsed_s:.0f}s", "",
             variance_table(v.noise, v.samples)]
    if v.latency is not None:
        medians = {m: v.latency.median(m) for m in METRICS}
        lines += ["", f"alone latency of the first probe streamed ({v.latency_runs} runs, "
                      "medians): " + ", ".join(f"{m[:-2]} {x * 1000:.1f} ms"
                                               for m, x in medians.items() if x is not None)]
    return "\n".join(lines)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write `doc` atomically (a reader never sees half a noise model)."""
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
