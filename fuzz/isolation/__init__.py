"""Silent corruption and noisy neighbours: the isolation (differential) and
interference (performance) oracles.

- `tokens`: greedy answers with logprobs, read from a trace, and where two part.
- `noise`: the target's natural variance and the bar it sets (`NoiseModel`).
- `differential`: an answer in the scenario against the same request alone.
- `leaks`: content that can only have come from another request.
- `interference`: a victim's slowdown against its calibrated alone latency.
- `scenarios`: probes, fillers, batches, canaries, request identity.
- `suspects`: one trace judged (pure); `calibrate`, `confirm`: the async edges
  (measuring the quiet target; controlled replay); `replays`: minimizer callbacks.
- `report`: the natural-variance table (`bench/variance.py`, a `calibrate` command).
"""

from fuzz.isolation.calibrate import (AloneCache, CalibrationError, alone_answers,
                                      calibrate_latency, measure_noise)
from fuzz.isolation.confirm import (ConfirmPolicy, Verdict, confirm_interference,
                                    confirm_isolation, interference_failures, isolation_failures)
from fuzz.isolation.differential import Divergence, divergence_failure, first_divergence
from fuzz.isolation.interference import (AloneLatency, LatencySample, Slowdown, SlowdownRule,
                                         judge_slowdown, latency_sample, slowdown_failure)
from fuzz.isolation.leaks import answer_leaks, canary, no_foreign_canary
from fuzz.isolation.noise import NoiseModel, NoiseSample, derive_noise
from fuzz.isolation.replays import interference_replay, isolation_replay
from fuzz.isolation.report import variance_table
from fuzz.isolation.scenarios import (default_probes, insert_request, is_probe, keeps_request,
                                      plant_canary, probe_ids, probe_request, request_key)
from fuzz.isolation.suspects import interference_suspects, isolation_suspects, subject_ids
from fuzz.isolation.tokens import TokenAnswer, TokenStep, token_answer

__all__ = [
    "AloneCache", "AloneLatency", "CalibrationError", "ConfirmPolicy", "Divergence",
    "LatencySample", "NoiseModel", "NoiseSample", "Slowdown", "SlowdownRule", "TokenAnswer",
    "TokenStep", "Verdict", "alone_answers", "answer_leaks", "calibrate_latency", "canary",
    "confirm_interference", "confirm_isolation", "default_probes", "derive_noise",
    "divergence_failure", "first_divergence", "insert_request", "interference_failures",
    "interference_replay", "interference_suspects", "is_probe", "isolation_failures",
    "isolation_replay", "isolation_suspects", "judge_slowdown", "keeps_request",
    "latency_sample", "measure_noise", "no_foreign_canary", "plant_canary", "probe_ids",
    "probe_request", "request_key", "slowdown_failure", "subject_ids", "token_answer",
    "variance_table",
]
