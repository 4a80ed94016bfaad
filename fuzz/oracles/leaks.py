"""The oracle on leaks: once a scenario is over and the target had a quiet period to settle,
`/metrics` must show nothing running, nothing waiting, and KV cache use back at the idle
baseline measured before the scenario. Requests that are never released (an aborted
stream whose engine request lives on, blocks never freed) show up here and nowhere else."""

from __future__ import annotations

from fuzz.metrics import KV_TOLERANCE
from fuzz.model import Failure, Scenario, Trace
from fuzz.oracles.reading import failure
from fuzz.oracles.registry import oracle


@oracle
def no_leak(scenario: Scenario, trace: Trace) -> list[Failure]:
    """Flags running or waiting requests, or KV use above baseline + tolerance, after the
    quiet period. Silent when `/metrics` was not read (absent, disabled, target gone)."""
    before, after = trace.metrics_before, trace.metrics_after
    if before is None or after is None:
        return []
    evidence = {"before": dict(before), "after": dict(after), "waited_s": trace.metrics_wait_s}
    out = []
    for key, phrase in (("running", "requests still running"),
                        ("waiting", "requests still waiting")):
        if after.get(key, 0.0) > 0:
            out.append(failure("leak", None, f"{phrase} after the scenario settled",
                               detail=key, evidence=evidence,
                               summary=f"{phrase} after a quiet period: {after[key]:g} "
                                       f"({trace.metrics_wait_s or 0:.1f}s waited)"))
    kv_before, kv_after = before.get("kv_cache_usage"), after.get("kv_cache_usage")
    if kv_before is not None and kv_after is not None and kv_after > kv_before + KV_TOLERANCE:
        out.append(failure("leak", None, "KV cache use above the idle baseline",
                           detail="kv_cache", evidence=evidence,
                           summary=f"KV cache use {kv_after:.1%} after the scenario settled, "
                                   f"idle baseline {kv_before:.1%}"))
    return out
