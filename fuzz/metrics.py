"""vLLM's `/metrics` (Prometheus text) read as the few gauges the leak oracle needs.

Pure: the runner fetches the page, this module reads it, the oracle judges it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

KV_TOLERANCE = 0.02  # KV cache usage (a fraction) above the idle baseline that is noise
_GAUGES = {"vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
           "vllm:kv_cache_usage_perc": "kv_cache_usage",
           "vllm:gpu_cache_usage_perc": "kv_cache_usage",
           "vllm:cpu_cache_usage_perc": "kv_cache_usage"}
_SAMPLE_RE = re.compile(r'^([A-Za-z_:][\w:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')


def parse_metrics(text: str) -> dict[str, float]:
    """`running`, `waiting` (summed over label sets, e.g. engines) and `kv_cache_usage`
    (the largest) from Prometheus text; gauges the server does not export are absent."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE_RE.match(line.strip())
        key = _GAUGES.get(match.group(1)) if match else None
        if key is None:
            continue
        try:
            value = float(match.group(3))  # type: ignore[union-attr]
        except ValueError:
            continue
        if math.isnan(value):
            continue
        combine = max if key == "kv_cache_usage" else (lambda a, b: a + b)
        out[key] = combine(out[key], value) if key in out else value
    return out


def metrics_idle(m: Mapping[str, float], before: Mapping[str, float],
                 kv_tolerance: float = KV_TOLERANCE) -> bool:
    """Nothing running or waiting, and KV cache use back within tolerance of `before`."""
    busy = m.get("running", 0.0) > 0 or m.get("waiting", 0.0) > 0
    kv = m.get("kv_cache_usage", 0.0) - before.get("kv_cache_usage", 0.0)
    return not busy and kv <= kv_tolerance
