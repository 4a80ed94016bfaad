"""Replay saved bundles against a live target: FIXED, STILL FAILING or ERROR.

This is the CI gate (`vlfuzz replay`, the pytest plugin): a bundle is STILL FAILING
if its signature shows up in any of `runs` runs, FIXED if in none, and ERROR when the
verdict cannot be trusted (unloadable bundle, target down before the replay, a run
that could not be judged). A false FIXED is the worst outcome for a regression corpus,
so failures the ordinary oracles cannot see (isolation, interference, the server's
log) are judged with their own machinery (`fuzz.replay_judges`), and a bundle that
cannot be judged here is an ERROR, never FIXED. So is a run in which the target was
lost (it died or wedged, or the bundle's own request got no whole answer) or refused
the requests (401/403: not authorised), see `lost_run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fuzz.bundle import Bundle, BundleError, find_bundles, load_bundle, target_model
from fuzz.media import freshened
from fuzz.model import Deadlines, Failure, Scenario, Trace
from fuzz.signature import signatures_match

if TYPE_CHECKING:
    from fuzz.replay_judges import Tally

RunFn = Callable[[Any, Scenario, Deadlines], Awaitable[Trace]]
CheckFn = Callable[[Scenario, Trace], list[Failure]]
HealthFn = Callable[[Any], Awaitable[str | None]]
PrepareFn = Callable[[Bundle], Awaitable[Any]]  # readies the target for a bundle: its endpoint
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
    if callable(getattr(endpoint, "headers", None)):  # api key and extra headers
        headers = dict(endpoint.headers())
    else:
        key = getattr(endpoint, "api_key", None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            async with s.get(base + "/health", headers=headers) as resp:
                if resp.status in REFUSED:
                    return f"not authorised: GET /health answered {resp.status}"
                return None if resp.status == 200 else f"GET /health answered {resp.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        return f"GET /health failed: {type(e).__name__}" + (f": {e}" if str(e) else "")


def _bundle_runner(bundle: Bundle, use_recorded: bool) -> RunFn:
    """The runner, sending each request under the deadlines the failure was recorded
    with (`fuzzer.request_deadlines`) unless the caller chose deadlines."""
    from fuzz.replay_judges import recorded_deadlines
    from fuzz.runner import run_scenario

    own = recorded_deadlines(bundle) if use_recorded else {}
    return functools.partial(run_scenario, request_deadlines=own) if own else run_scenario


def _with_bundle_model(endpoint: Any, bundle: Bundle) -> Any:
    """An endpoint without a model replays with the model the bundle was found on."""
    model = target_model(bundle.target)
    if not getattr(endpoint, "model", None) and model and dataclasses.is_dataclass(endpoint):
        return dataclasses.replace(endpoint, model=model)
    return endpoint


LOST_KINDS = frozenset({"target_dead", "target_wedged"})  # the probe after a run failed
CUT_KINDS = frozenset({"transport", "hang"})  # a request got no whole answer
REFUSED = frozenset({401, 403})


def _refused(bundle: Bundle, trace: Trace) -> str | None:
    """Why a run was refused by the target's authentication (None: it was not): a
    request answered 401/403 that was not answered so when the failure was recorded."""
    recorded = {rt.id: rt.status for rt in bundle.trace.requests}
    rt = next((r for r in trace.requests
               if r.status in REFUSED and recorded.get(r.id) not in REFUSED), None)
    if rt is None:
        return None
    return (f"not authorised: request {rt.id} was answered HTTP {rt.status} "
            "(replay with the target's API key / headers)")


def lost_run(bundle: Bundle, trace: Trace, failures: Sequence[Failure]) -> str | None:
    """Why a run that did not show the bundle's signature says nothing about it (None:
    it does). The target died or wedged during the run (its state is checked before
    the replay only), or the bundle's own request got no whole answer (connection
    failed, a deadline cut it): the bug had no chance to show, so its absence is not a
    fix. So is a run the target refused to serve (401/403: not authorised). Read from
    the trace and from what the oracles reported, either being enough."""
    refused = _refused(bundle, trace)
    if refused:
        return refused
    probe = trace.probe_after
    lost = next((f for f in failures if f.kind in LOST_KINDS), None)
    if lost is not None:
        how = "died" if lost.kind == "target_dead" else "wedged"
        return f"the target {how} during the run ({lost.message})"
    if probe is not None and probe.health_status != 200:
        return (f"the target died during the run (/health: "
                f"{probe.health_status or probe.health_error})")
    if probe is not None and probe.canary_ok is False:
        return f"the target wedged during the run (canary failed: {probe.canary_error})"
    rid = bundle.failure.request_id
    if rid is None:
        return None
    rt = next((r for r in trace.requests if r.id == rid), None)
    if rt is not None and not rt.disconnected and (rt.error or rt.deadline):
        why = rt.error or f"cut by the {rt.deadline} deadline"
        return f"the bundle's request {rid} got no whole answer ({why})"
    cut = next((f for f in failures if f.kind in CUT_KINDS and f.request_id == rid), None)
    return f"the bundle's request {rid} got no whole answer ({cut.message})" if cut else None


async def _ordinary_runs(bundle: Bundle, endpoint: Any, *, runs: int, deadlines: Deadlines,
                         run: RunFn, check: CheckFn,
                         unjudged: Callable[[Trace], str | None] | None = None) -> Tally:
    """`runs` runs judged by the ordinary oracles (a run that raises ends them). The
    signature is matched with `signatures_match`: a run without server-log lines (an
    external target) cannot name the `|log:` cause a bundle may carry. A run
    without the signature tells nothing when the target was lost in it (`lost_run`)
    or, for `unjudged` (None: it does), when that says why."""
    from fuzz.replay_judges import Tally

    observed: list[str] = []
    skipped: list[str] = []
    done = failing = 0
    for i in range(runs):
        # each run meets the media for the first time, as the recorded run did
        scenario = dataclasses.replace(bundle.scenario, media=freshened(
            bundle.scenario.media, random.SystemRandom().randrange(1, 2**31)))
        try:
            trace = await run(endpoint, scenario, deadlines)
            failures = check(scenario, trace)
        except Exception as e:  # noqa: BLE001 - a broken run is a verdict, not a crash
            return Tally(done, failing, tuple(observed), tuple(skipped),
                         error=f"run {i + 1} raised {type(e).__name__}: {e}")
        sigs = [f.signature for f in failures]
        done += 1
        seen = any(signatures_match(bundle.signature, s, have_log=bool(trace.server_log))
                   for s in sigs)
        failing += seen
        observed += [s for s in sigs if s not in observed]
        why = None
        if not seen:
            why = lost_run(bundle, trace, failures) or (unjudged(trace) if unjudged else None)
        skipped += [f"run {i + 1}: {why}"] if why else []
    return Tally(done, failing, tuple(observed), tuple(skipped))


def verdict_of(tally: Tally, signature: str) -> tuple[Verdict, str]:
    """The verdict on what the runs showed, and its message. Seen in any run: STILL
    FAILING; else ERROR when the replay or any run could not be judged; else FIXED."""
    others = [s for s in tally.observed if not signatures_match(signature, s, have_log=True)]
    extra = f"; other failures seen: {'; '.join(others)}" if others else ""
    note = f"; {tally.note}" if tally.note else ""
    if tally.failing:
        return Verdict.STILL_FAILING, (f"reproduced in {tally.failing}/{tally.runs} runs{note}"
                                       f"{extra}" + (f"; {tally.error}" if tally.error else ""))
    if tally.error:
        return Verdict.ERROR, tally.error + note + extra
    if tally.unjudged:
        return Verdict.ERROR, (f"{len(tally.unjudged)} of {tally.runs} runs could not be "
                               f"judged: {'; '.join(tally.unjudged[:3])}{note}{extra}")
    if tally.runs == 0:
        return Verdict.ERROR, "no run could be made" + extra
    return Verdict.FIXED, f"not seen in {tally.runs} runs{note}{extra}"


async def replay_bundle(bundle: Bundle | Path, endpoint: Any, *, runs: int = 3,
                        deadlines: Deadlines | None = None, run: RunFn | None = None,
                        check: CheckFn | None = None, health: HealthFn | None = None,
                        server_log: Path | None = None,
                        log_settle_s: float | None = None) -> ReplayResult:
    """Replay `bundle` (or the bundle at a path) `runs` times and give the verdict.

    Deadlines default to the ones the failure was recorded with, so a hang replays
    against the same limit. `server_log` is the target's log file, followed around
    every run (a `server_log_error` bundle cannot be judged without it) until it has
    been quiet for `log_settle_s` (default `LogFollowingRun`'s). Isolation and
    interference bundles are judged by their own oracle (`fuzz.replay_judges`), which
    sends through the runner itself. `run`, `check` and `health` are injectable for
    tests."""
    from fuzz.replay_judges import (SERVER_LOG_KIND, LogFollowingRun, log_unjudged, own_judge,
                                    unjudgeable)

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
    why_not = unjudgeable(bundle.failure.kind, server_log)
    if why_not:
        return result(Verdict.ERROR, why_not, signature=sig)
    if run is None:
        run = _bundle_runner(bundle, use_recorded=deadlines is None)
    if check is None:
        from fuzz.oracles import check
    endpoint = _with_bundle_model(endpoint, bundle)
    problem = await (health or check_health)(endpoint)
    if problem:
        return result(Verdict.ERROR, f"target not healthy before replay: {problem}", signature=sig)
    chosen = deadlines is not None  # the caller's deadlines apply to every request
    deadlines = deadlines or bundle.trace.deadlines
    own = own_judge(bundle.failure.kind)
    if own is not None:
        tally = await own(bundle, endpoint, runs=runs, deadlines=deadlines, check=check,
                          request_deadlines={} if chosen else None)
    else:
        settle = {} if log_settle_s is None else {"settle_s": log_settle_s}
        followed = LogFollowingRun(run, server_log, **settle) if server_log is not None else None
        of_log = bundle.failure.kind == SERVER_LOG_KIND
        tally = await _ordinary_runs(bundle, endpoint, runs=runs, deadlines=deadlines,
                                     run=followed or run, check=check,
                                     unjudged=log_unjudged if of_log else None)
        if followed is not None and followed.lines == 0 and not tally.failing and of_log:
            tally = dataclasses.replace(tally, error=(
                f"the server log {server_log} did not grow while the requests were answered: "
                "is it the target's log file? (a FIXED could not be trusted)"))
    verdict, message = verdict_of(tally, sig)
    return result(verdict, message, tally.runs, tally.failing, tally.observed, sig)


def exit_code(results: Sequence[ReplayResult]) -> int:
    """0 all fixed, 1 some still failing (no errors), 2 any error."""
    if any(r.verdict is Verdict.ERROR for r in results):
        return 2
    return 1 if any(r.verdict is Verdict.STILL_FAILING for r in results) else 0


async def replay_all(paths: Iterable[Path | str], endpoint: Any, *, runs: int = 3,
                     out: Callable[[str], Any] = print, deadlines: Deadlines | None = None,
                     run: RunFn | None = None, check: CheckFn | None = None,
                     health: HealthFn | None = None, server_log: Path | None = None,
                     prepare: PrepareFn | None = None) -> list[ReplayResult]:
    """Replay every bundle under `paths` one after another (bundles are about
    concurrency, so they must not disturb each other); `server_log` as for
    `replay_bundle`. `prepare`, if given, readies the target for each bundle (say, the
    embedded one started afresh with the flags the bundle was recorded with) and
    returns the endpoint to replay it on; what it raises is that bundle's ERROR."""
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
            bundle: Bundle | Path = b
            target = endpoint
            if prepare is not None:
                try:
                    bundle = load_bundle(b)
                    target = await prepare(bundle)
                except BundleError:
                    pass  # replay_bundle reports it
                except Exception as e:  # e.g. the target would not start with those flags
                    results.append(ReplayResult(Path(b), Verdict.ERROR, 0, 0, (),
                                                f"target not ready for this bundle: {e}", 0.0))
                    out(results[-1].line())
                    continue
            results.append(await replay_bundle(bundle, target, runs=runs, deadlines=deadlines,
                                               run=run, check=check, health=health,
                                               server_log=server_log))
            out(results[-1].line())
    return results


def replay_paths(paths: Iterable[Path | str], endpoint: Any, *, runs: int = 3,
                 junit_path: Path | None = None, out: Callable[[str], Any] = print,
                 deadlines: Deadlines | None = None, run: RunFn | None = None,
                 check: CheckFn | None = None, health: HealthFn | None = None,
                 server_log: Path | None = None, prepare: PrepareFn | None = None) -> int:
    """Replay bundles, print one line each, optionally write JUnit XML; return the
    exit code (see `exit_code`). A bad bundle or path is an ERROR line, not a crash."""
    from fuzz.junit import write_junit

    results = asyncio.run(replay_all(paths, endpoint, runs=runs, out=out, deadlines=deadlines,
                                     run=run, check=check, health=health,
                                     server_log=server_log, prepare=prepare))
    if junit_path is not None:
        write_junit(results, junit_path)
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    out(f"{len(results)} bundle(s): {counts[Verdict.FIXED]} fixed, "
        f"{counts[Verdict.STILL_FAILING]} still failing, {counts[Verdict.ERROR]} error")
    return exit_code(results)
