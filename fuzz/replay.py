"""Replay saved bundles against a live target: FIXED, STILL FAILING or ERROR.

This is the CI gate (`vlfuzz replay`, the pytest plugin): a bundle is STILL FAILING
if its signature shows up in any of `runs` runs, FIXED if in none, and ERROR when the
verdict cannot be trusted (unloadable bundle, target down before the replay).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from fuzz.bundle import Bundle, BundleError, find_bundles, load_bundle, target_model
from fuzz.model import Deadlines, Failure, Scenario, Trace

RunFn = Callable[[Any, Scenario, Deadlines], Awaitable[Trace]]
CheckFn = Callable[[Scenario, Trace], list[Failure]]
HealthFn = Callable[[Any], Awaitable[str | None]]
HEALTH_TIMEOUT_S = 5.0


class Verdict(str, Enum):
    FIXED = "FIXED"
    STILL_FAILING = "STILL_FAILING"
    ERROR = "ERROR"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one bundle. `failing_runs` of `runs` showed the
    bundle's signature; `observed_signatures` lists every signature seen, in order."""

    bundle_path: Path | None
    verdict: Verdict
    runs: int
    failing_runs: int
    observed_signatures: tuple[str, ...]
    message: str
    elapsed_s: float
    signature: str | None = None
    triage: str | None = None

    def line(self) -> str:
        """One line for humans and CI logs; a bundle's triage verdict, when it has one,
        says whether a STILL FAILING is a known vLLM bug or e.g. a model artefact."""
        what = self.signature or "(bundle not loaded)"
        text = (f"{self.verdict.label:<13} {self.failing_runs}/{self.runs}  {what}"
                f"  [{self.bundle_path}]")
        text += f"  {self.message}" if self.verdict is not Verdict.FIXED else ""
        return text + (f"  (triage: {self.triage})" if self.triage else "")


async def check_health(endpoint: Any, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
    """None if GET /health answers 200 quickly, else what went wrong."""
    import aiohttp  # lazy: keeps the pytest plugin and bundle tools light

    base = endpoint.base_url.rstrip("/").removesuffix("/v1")
    key = getattr(endpoint, "api_key", None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            async with s.get(base + "/health", headers=headers) as resp:
                return None if resp.status == 200 else f"GET /health answered {resp.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        return f"GET /health failed: {type(e).__name__}" + (f": {e}" if str(e) else "")


def _bundle_runner(bundle: Bundle, use_recorded: bool) -> RunFn:
    """The runner, sending each request under the deadlines the failure was recorded
    with (`fuzzer.request_deadlines`) unless the caller chose deadlines."""
    from fuzz.runner import run_scenario

    stored = bundle.fuzzer.get("request_deadlines")
    own: dict[str, Deadlines] = {}
    if use_recorded and isinstance(stored, dict):
        try:
            own = {str(k): Deadlines(**v) for k, v in stored.items()}
        except TypeError:
            own = {}
    return functools.partial(run_scenario, request_deadlines=own) if own else run_scenario


def _with_bundle_model(endpoint: Any, bundle: Bundle) -> Any:
    """An endpoint without a model replays with the model the bundle was found on."""
    model = target_model(bundle.target)
    if not getattr(endpoint, "model", None) and model and dataclasses.is_dataclass(endpoint):
        return dataclasses.replace(endpoint, model=model)
    return endpoint


async def replay_bundle(bundle: Bundle | Path, endpoint: Any, *, runs: int = 3,
                        deadlines: Deadlines | None = None, run: RunFn | None = None,
                        check: CheckFn | None = None,
                        health: HealthFn | None = None) -> ReplayResult:
    """Replay `bundle` (or the bundle at a path) `runs` times and give the verdict.

    Deadlines default to the ones the failure was recorded with, so a hang replays
    against the same limit. `run`, `check` and `health` are injectable for tests."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    t0 = time.monotonic()
    path = Path(bundle) if isinstance(bundle, (str, Path)) else bundle.path

    def result(verdict: Verdict, message: str, done: int = 0, failing: int = 0,
               observed: Iterable[str] = (), signature: str | None = None) -> ReplayResult:
        triage = bundle.triage.verdict if isinstance(bundle, Bundle) and bundle.triage else None
        return ReplayResult(path, verdict, done, failing, tuple(observed), message,
                            time.monotonic() - t0, signature, triage)

    if not isinstance(bundle, Bundle):
        try:
            bundle = load_bundle(path)
        except BundleError as e:
            return result(Verdict.ERROR, str(e))
    sig = bundle.signature
    if run is None:
        run = _bundle_runner(bundle, use_recorded=deadlines is None)
    if check is None:
        from fuzz.oracles import check
    endpoint = _with_bundle_model(endpoint, bundle)
    problem = await (health or check_health)(endpoint)
    if problem:
        return result(Verdict.ERROR, f"target not healthy before replay: {problem}", signature=sig)
    deadlines = deadlines or bundle.trace.deadlines
    observed: list[str] = []
    done = failing = 0
    crash = ""
    for i in range(runs):
        try:
            trace = await run(endpoint, bundle.scenario, deadlines)
            sigs = [f.signature for f in check(bundle.scenario, trace)]
        except Exception as e:  # noqa: BLE001 - a broken run is a verdict, not a crash
            crash = f"run {i + 1} raised {type(e).__name__}: {e}"
            break
        done += 1
        failing += sig in sigs
        observed += [s for s in sigs if s not in observed]
    others = [s for s in observed if s != sig]
    extra = f"; other failures seen: {'; '.join(others)}" if others else ""
    if failing:
        return result(Verdict.STILL_FAILING, f"reproduced in {failing}/{done} runs{extra}"
                      + (f"; {crash}" if crash else ""), done, failing, observed, sig)
    if crash:
        return result(Verdict.ERROR, crash + extra, done, failing, observed, sig)
    return result(Verdict.FIXED, f"not seen in {done} runs{extra}", done, 0, observed, sig)


def exit_code(results: Sequence[ReplayResult]) -> int:
    """0 all fixed, 1 some still failing (no errors), 2 any error."""
    if any(r.verdict is Verdict.ERROR for r in results):
        return 2
    return 1 if any(r.verdict is Verdict.STILL_FAILING for r in results) else 0


async def replay_all(paths: Iterable[Path | str], endpoint: Any, *, runs: int = 3,
                     out: Callable[[str], Any] = print, deadlines: Deadlines | None = None,
                     run: RunFn | None = None, check: CheckFn | None = None,
                     health: HealthFn | None = None) -> list[ReplayResult]:
    """Replay every bundle under `paths` one after another (bundles are about
    concurrency, so they must not disturb each other)."""
    results: list[ReplayResult] = []
    for p in paths:
        try:
            found = find_bundles(Path(p))
        except BundleError as e:
            results.append(ReplayResult(Path(p), Verdict.ERROR, 0, 0, (), str(e), 0.0))
            out(results[-1].line())
            continue
        if not found:
            out(f"no bundles under {p}")
        for b in found:
            results.append(await replay_bundle(b, endpoint, runs=runs, deadlines=deadlines,
                                               run=run, check=check, health=health))
            out(results[-1].line())
    return results


def replay_paths(paths: Iterable[Path | str], endpoint: Any, *, runs: int = 3,
                 junit_path: Path | None = None, out: Callable[[str], Any] = print,
                 deadlines: Deadlines | None = None, run: RunFn | None = None,
                 check: CheckFn | None = None, health: HealthFn | None = None) -> int:
    """Replay bundles, print one line each, optionally write JUnit XML; return the
    exit code (see `exit_code`). A bad bundle or path is an ERROR line, not a crash."""
    from fuzz.junit import write_junit

    results = asyncio.run(replay_all(paths, endpoint, runs=runs, out=out, deadlines=deadlines,
                                     run=run, check=check, health=health))
    if junit_path is not None:
        write_junit(results, junit_path)
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    out(f"{len(results)} bundle(s): {counts[Verdict.FIXED]} fixed, "
        f"{counts[Verdict.STILL_FAILING]} still failing, {counts[Verdict.ERROR]} error")
    return exit_code(results)
