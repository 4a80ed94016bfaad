"""Plain generation against steered generation: which server states each reaches.

    python3 bench/steering.py --endpoint URL --model NAME --budget 5m [--seed 0]
                              [--server-log PATH | --no-server-log] [--max-requests 32]
                              [--max-output-tokens 64] [--steer-max-requests N]
                              [--same-seed] [--wait-s 180] [--json-out FILE]

Two campaign-like loops share the target, taking turns scenario by scenario (the arm
that has used less of its budget goes next), so both see the same server over the
same period; each stops when its own time (scenario, probe and `/metrics` polling
included) reaches `--budget`, so the whole run takes about twice the budget.

- plain: fresh scenarios only, drawn as the campaign draws them (a Hypothesis
  `@given` run in rounds of 10 with generation-only settings and a per-round seed).
- steered: the same generator (seed + 1 by default, so that neither arm hits the
  prefix cache on the other's identical prompts), but once the corpus is non-empty
  every other scenario is `Steering.next(rng)`: a mutant of a scenario that reached
  a new server state.

Every scenario runs inside a `MetricsPoller` (counters before/after, gauge peaks every
250 ms) and, when the target's log file is known, a `LogFollower`; `server_features`
turns both into the states reached. The log is the embedded target's when the
endpoint is the one recorded in its state file, else `--server-log`. Oracles run too
(the server-log oracle included) and each arm's unique failures are listed.

Prints, per arm, scenarios, requests, unique failures and states reached, then a table
of every state with how many scenarios of each arm reached it, the states only one arm
reached, and per steering op how often it ran and how often it reached a new state.
The bench never starts, stops or restarts the target: if `/health` stays down for
`--wait-s`, it stops and prints what it has.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.metrics_poller import MetricsPoller  # noqa: E402
from fuzz.model import Deadlines, Scenario  # noqa: E402
from fuzz.oracles import check  # noqa: E402
from fuzz.oracles.server_log import server_log_clean  # noqa: E402  (registers the oracle)
from fuzz.runner import Endpoint, run_scenario  # noqa: E402
from fuzz.server_log import LogFollower, excerpt  # noqa: E402
from fuzz.signals import server_features, state_rows  # noqa: E402
from fuzz.steering import Steering  # noqa: E402
from fuzz.strategies import scenarios  # noqa: E402
from fuzz.target.paths import TargetPaths, default_cache_root  # noqa: E402
from fuzz.target.server import health_status, read_state  # noqa: E402

REGISTERED = (server_log_clean,)  # importing it registered it, so check() runs it
DEADLINES = Deadlines(first_byte_s=120.0, stall_s=60.0, total_s=300.0)  # the campaign's


def parse_budget(text: str) -> float:
    """"90", "90s", "5m", "1h" -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 300, 90s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def scenario_stream(seed: int, max_requests: int, max_output_tokens: int,
                    per_round: int = 10, exclude: tuple[str, ...] = ()) -> Iterator[Scenario]:
    """Fresh scenarios, generated the way the campaign's rounds generate them."""
    strategy = scenarios(max_requests=max_requests, max_output_tokens=max_output_tokens,
                         exclude_features=exclude or None)
    for round_no in itertools.count():
        batch: list[Scenario] = []

        @hypothesis_seed(seed * 1_000_003 + round_no)
        @settings(max_examples=per_round, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        @given(strategy)
        def collect(scenario: Scenario) -> None:
            batch.append(scenario)

        collect()
        yield from batch


@dataclass
class Arm:
    """One loop's accumulators."""

    name: str
    fresh: Iterator[Scenario]
    steering: Steering | None = None
    used_s: float = 0.0
    scenarios: int = 0
    steered: int = 0
    requests: int = 0
    counts: Counter = field(default_factory=Counter)
    first_seen_s: dict[str, float] = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)

    def pick(self, rng: random.Random) -> tuple[Scenario, str]:
        """Every other scenario is steered once the corpus has something."""
        if self.steering is not None and self.scenarios % 2 == 1:
            mutant = self.steering.propose(rng)
            if mutant is not None:
                return mutant.scenario, mutant.origin
        return next(self.fresh), "generated"

    def record(self, scenario: Scenario, origin: str, features: frozenset[str],
               signatures: list[str], took_s: float) -> frozenset[str]:
        self.used_s += took_s
        self.scenarios += 1
        self.steered += origin != "generated"
        self.requests += len(scenario.requests)
        for f in sorted(features):
            self.first_seen_s.setdefault(f, round(self.used_s, 1))
        new = frozenset(f for f in features if self.counts[f] == 0)
        self.counts.update(features)
        self.failures.update(set(signatures))
        if self.steering is not None:
            self.steering.observe(scenario, features, origin=origin)
        return new

    def summary(self) -> dict[str, Any]:
        out = {"scenarios": self.scenarios, "steered": self.steered, "requests": self.requests,
               "used_s": round(self.used_s, 1), "failures": dict(self.failures),
               "states": state_rows(self.counts, self.first_seen_s)}
        if self.steering is not None:
            out["steering"] = self.steering.stats()
        return out


async def run_observed(endpoint: Endpoint, scenario: Scenario,
                       follower: LogFollower | None) -> tuple[frozenset[str], list[str]]:
    """Run one scenario with `/metrics` sampled and the log followed: its states and
    failure signatures (what the campaign would do, minus bundling)."""
    if follower is not None:
        follower.skip_to_end()
    async with MetricsPoller(endpoint) as poller:
        trace = await run_scenario(endpoint, scenario, DEADLINES)
    kept = excerpt(follower.read_new()) if follower is not None else ()
    trace = replace(trace, server_log=kept)
    return server_features(poller.signals, kept), [f.signature for f in check(scenario, trace)]


async def wait_healthy(endpoint: Endpoint, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        if await asyncio.to_thread(health_status, endpoint.base_url) == 200:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(5.0)


async def bench(endpoint: Endpoint, arms: list[Arm], budget_s: float, rng: random.Random,
                follower: LogFollower | None, wait_s: float) -> str:
    """Alternate the arms until each used its budget; why it stopped."""
    while True:
        live = [a for a in arms if a.used_s < budget_s]
        if not live:
            return "budget used"
        arm = min(live, key=lambda a: a.used_s)
        if not await wait_healthy(endpoint, wait_s):
            return f"{endpoint.base_url}/health not 200 for {wait_s:.0f}s"
        scenario, origin = arm.pick(rng)
        t0 = time.monotonic()
        features, signatures = await run_observed(endpoint, scenario, follower)
        new = arm.record(scenario, origin, features, signatures, time.monotonic() - t0)
        print(f"[{arm.name:7}] #{arm.scenarios:<4} {len(scenario.requests):3} req  "
              f"{origin[:28]:28} {time.monotonic() - t0:6.1f}s  states {len(arm.counts):3}"
              + (f"  new: {', '.join(sorted(new))[:150]}" if new else ""), flush=True)


def embedded_log(endpoint: Endpoint) -> Path | None:
    """The embedded target's log file, if `endpoint` is the embedded target."""
    state = read_state(TargetPaths(default_cache_root()))
    if state is None or state.base_url.rstrip("/") != endpoint.base_url.rstrip("/"):
        return None
    return Path(state.log_file)


def render(arms: list[Arm], why: str, log: Path | None) -> str:
    plain, steered = arms
    lines = [f"stopped: {why}; server log: {log or 'not followed'}", "",
             f"{'arm':8} {'scenarios':>9} {'steered':>8} {'requests':>9} {'failures':>9} "
             f"{'states':>7} {'time':>7}"]
    for a in arms:
        lines.append(f"{a.name:8} {a.scenarios:9} {a.steered:8} {a.requests:9} "
                     f"{len(a.failures):9} {len(a.counts):7} {a.used_s:6.0f}s")
    every = Counter(plain.counts) + Counter(steered.counts)
    lines += ["", "Server states (scenarios that reached each; first seen at arm time):",
              f"{'state':90} {'plain':>12} {'steered':>12}"]
    for row in state_rows(every):
        f = row["feature"]

        def cell(a: Arm) -> str:
            return f"{a.counts[f]} @{a.first_seen_s[f]:.0f}s" if a.counts[f] else "-"

        lines.append(f"{f[:90]:90} {cell(plain):>12} {cell(steered):>12}")
    only_steered = sorted(set(steered.counts) - set(plain.counts))
    only_plain = sorted(set(plain.counts) - set(steered.counts))
    lines += ["", f"Only steered reached ({len(only_steered)}):", *(f"  {f}" for f in only_steered),
              "", f"Only plain reached ({len(only_plain)}):", *(f"  {f}" for f in only_plain)]
    if steered.steering is not None:
        stats = steered.steering.stats()
        lines += ["", f"Steering: corpus {stats['corpus']} entries; per op (tried / reached "
                      "a new state):"]
        lines += [f"  {op:14} {v['tried']:4} / {v['new_states']}" for op, v in stats["ops"].items()]
    for a in arms:
        if a.failures:
            lines += ["", f"Unique failures, {a.name}:"]
            lines += [f"  {n:3}x {sig[:150]}" for sig, n in a.failures.most_common()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--budget", type=parse_budget, default=parse_budget("5m"),
                        help="time per arm (300, 90s, 5m, 1h); the run takes about twice this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--same-seed", action="store_true",
                        help="both arms draw the same fresh scenarios (cache hits favour one)")
    parser.add_argument("--server-log", type=Path, default=None)
    parser.add_argument("--no-server-log", action="store_true")
    parser.add_argument("--max-requests", type=int, default=32)
    parser.add_argument("--max-output-tokens", type=int, default=64)
    parser.add_argument("--steer-max-requests", type=int, default=None,
                        help="cap on a steered scenario's requests (default: 2x --max-requests)")
    parser.add_argument("--wait-s", type=float, default=180.0,
                        help="how long to wait for /health before giving up")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--exclude-feature", action="append", default=[],
                        help="as `vlfuzz run --exclude-feature` (e.g. sampling:seed)")
    args = parser.parse_args()

    endpoint = Endpoint(base_url=args.endpoint, model=args.model)
    log = None if args.no_server_log else (args.server_log or embedded_log(endpoint))
    follower = LogFollower(log) if log is not None else None
    exclude = tuple(args.exclude_feature)
    arms = [Arm("plain", scenario_stream(args.seed, args.max_requests, args.max_output_tokens,
                                         exclude=exclude)),
            Arm("steered", scenario_stream(args.seed + (0 if args.same_seed else 1),
                                           args.max_requests, args.max_output_tokens,
                                           exclude=exclude),
                steering=Steering(max_requests=args.steer_max_requests or 2 * args.max_requests))]
    print(f"plain vs steered, {args.budget:.0f}s each, against {endpoint.base_url}; "
          f"server log: {log or 'not followed'}", flush=True)
    try:
        why = asyncio.run(bench(endpoint, arms, args.budget, random.Random(args.seed), follower,
                                args.wait_s))
    except KeyboardInterrupt:
        why = "interrupted"
    print()
    print(render(arms, why, log))
    if args.json_out is not None:
        doc = {"endpoint": endpoint.base_url, "budget_s": args.budget, "seed": args.seed,
               "server_log": str(log) if log else None, "stopped": why,
               "arms": {a.name: a.summary() for a in arms},
               "only_steered": sorted(set(arms[1].counts) - set(arms[0].counts)),
               "only_plain": sorted(set(arms[0].counts) - set(arms[1].counts))}
        args.json_out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
