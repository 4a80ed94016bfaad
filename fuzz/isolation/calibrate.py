"""Measuring the quiet target: alone answers, natural variance, alone latency.

Everything the isolation and interference oracles compare against is measured here
with the project's runner, one scenario at a time, so nothing else the fuzzer sends
overlaps a measurement. Async because it talks to the target; the judging is in the
pure modules.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

from fuzz.isolation.interference import AloneLatency, LatencySample, latency_sample
from fuzz.isolation.noise import NoiseSample
from fuzz.isolation.scenarios import alone_scenario, batch_scenario, request_key
from fuzz.isolation.tokens import TokenAnswer, token_answer
from fuzz.model import Deadlines, RequestSpec, RequestTrace, Scenario
from fuzz.oracles.reading import head
from fuzz.runner import Endpoint, run_scenario

AloneCache = MutableMapping[str, tuple[TokenAnswer, ...]]  # request key -> alone answers


class CalibrationError(RuntimeError):
    """The target did not give what a measurement needs (e.g. no logprobs)."""


def _why(rt: RequestTrace) -> str:
    return (f"status {rt.status}, error {rt.error}, deadline {rt.deadline}, "
            f"body {head(rt.body, 300)!r}")


async def run_alone(endpoint: Endpoint, scenario: Scenario, request_id: str,
                    deadlines: Deadlines) -> tuple[RequestSpec, RequestTrace]:
    """Request `request_id` of `scenario` on its own; its spec and trace."""
    alone = alone_scenario(scenario, request_id)
    trace = await run_scenario(endpoint, alone, deadlines, probe=False, metrics=False)
    return alone.requests[0], trace.requests[0]


async def alone_answers(endpoint: Endpoint, scenario: Scenario, request_id: str, *,
                        runs: int = 2, deadlines: Deadlines = Deadlines(),
                        cache: AloneCache | None = None) -> tuple[TokenAnswer, ...]:
    """The greedy answers of one request run alone `runs` times (those that came back
    complete with logprobs). With `cache`, a request already measured (by request
    key) is not sent again; pass no cache to measure afresh."""
    key = request_key(scenario.request(request_id))
    if cache is not None and key in cache:
        return cache[key]
    answers = []
    for _ in range(runs):
        spec, rt = await run_alone(endpoint, scenario, request_id, deadlines)
        answer = token_answer(spec, rt)
        if answer is not None:
            answers.append(answer)
    if cache is not None and answers:
        cache[key] = tuple(answers)
    return tuple(answers)


async def measure_noise(endpoint: Endpoint, probes: Scenario, *, alone_runs: int = 5,
                        batch_sizes: Sequence[int] = (2, 4, 8), batch_runs: int = 3,
                        deadlines: Deadlines = Deadlines(),
                        fillers: Sequence[RequestSpec] | None = None) -> list[NoiseSample]:
    """Each probe of `probes` alone `alone_runs` times, then inside benign batches of
    each size `batch_runs` times (see `noise.derive_noise`). Raises CalibrationError
    when a probe's first alone run gives no comparable answer."""
    if alone_runs < 2 and not batch_sizes:
        raise ValueError("nothing to compare: need alone_runs >= 2 or batch sizes")
    samples: list[NoiseSample] = []
    for probe in probes.requests:
        for i in range(alone_runs):
            spec, rt = await run_alone(endpoint, probes, probe.id, deadlines)
            answer = token_answer(spec, rt)
            if answer is None and i == 0:
                raise CalibrationError(f"probe {probe.id} gave no greedy answer with "
                                       f"logprobs alone: {_why(rt)}")
            if answer is not None:
                samples.append(NoiseSample(probe.id, 1, answer))
        for size in batch_sizes:
            batch = batch_scenario(probe, probes.media, size, fillers=fillers)
            for _ in range(batch_runs):
                trace = await run_scenario(endpoint, batch, deadlines, probe=False,
                                           metrics=False)
                answer = token_answer(batch.requests[0], trace.request(probe.id))
                if answer is not None:
                    samples.append(NoiseSample(probe.id, size, answer))
    return samples


async def calibrate_latency(endpoint: Endpoint, scenario: Scenario, victim_id: str, *,
                            runs: int = 5, warmup: int = 1,
                            deadlines: Deadlines = Deadlines()) -> AloneLatency:
    """The victim's alone latency: `runs` timed repeats after `warmup` untimed ones
    (a first request may pay for compilation or caches). A streamed victim gives
    TTFT and time per output token as well as end-to-end latency."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    samples: list[LatencySample] = []
    for i in range(warmup + runs):
        spec, rt = await run_alone(endpoint, scenario, victim_id, deadlines)
        sample = latency_sample(spec, rt)
        if sample is None:
            raise CalibrationError(f"victim {victim_id} failed alone: {_why(rt)}")
        if i >= warmup:
            samples.append(sample)
    return AloneLatency(key=request_key(scenario.request(victim_id)), samples=tuple(samples))
