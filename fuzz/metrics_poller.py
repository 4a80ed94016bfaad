"""Samples the target's `/metrics` while a scenario runs, for its peaks.

Counters only need a reading before and after, but gauges (requests waiting, KV cache
use) are back at idle once the scenario settled: their peak is only seen by sampling
during it. The poller is an async context manager wrapped around `run_scenario`:

    async with MetricsPoller(endpoint) as poller:
        trace = await run_scenario(endpoint, scenario, deadlines)
    signals = poller.signals  # ServerSignals | None

It reads `/metrics` on entry (the baseline, within the short `baseline_deadline_s`,
since that wait delays the scenario), every `every_s` in the background, and
once more on exit (after the runner's own settling), on one keep-alive connection.
A target without `/metrics`, or one that does not answer, gives `signals` None; a
sample that fails is skipped. Parsing is `fuzz.signals.read_series` (pure).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp

from fuzz.runner import Endpoint
from fuzz.signals import ServerSignals, fold_peaks, read_series

__all__ = ["MetricsPoller"]


class MetricsPoller:
    """`/metrics` before, during (every `every_s`) and after the body of an
    `async with`; see the module docstring."""

    def __init__(self, endpoint: Endpoint, *, every_s: float = 0.25,
                 deadline_s: float = 2.0, baseline_deadline_s: float = 0.5) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s!r}")
        if baseline_deadline_s <= 0:
            raise ValueError(f"baseline_deadline_s must be positive, got {baseline_deadline_s!r}")
        self.endpoint = endpoint
        self.every_s = every_s
        self.deadline_s = deadline_s
        # The baseline is read before the scenario starts, so its wait adds to every
        # scenario; a healthy target answers /metrics in milliseconds, and one that
        # takes longer is wedged (no baseline: signals None), not worth 2 s per scenario.
        self.baseline_deadline_s = baseline_deadline_s
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._before: dict[str, float] | None = None
        self._after: dict[str, float] | None = None
        self._peaks: dict[str, float] = {}
        self._samples = 0

    @property
    def signals(self) -> ServerSignals | None:
        """What was read, once the `async with` is over; None without a baseline."""
        if self._before is None or self._after is None:
            return None
        return ServerSignals(before=self._before, after=self._after, peaks=dict(self._peaks),
                             samples=self._samples)

    async def __aenter__(self) -> MetricsPoller:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=self.deadline_s))
        try:
            self._before = await self._read(
                aiohttp.ClientTimeout(total=min(self.baseline_deadline_s, self.deadline_s)))
            if self._before is not None:
                self._task = asyncio.ensure_future(self._poll())
        except BaseException:  # a ^C here means no __aexit__: close the session ourselves
            await self._session.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            if self._before is not None and exc_type is None:
                self._after = await self._read()
        finally:
            if self._session is not None:
                await self._session.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self._read()

    async def _read(self, timeout: aiohttp.ClientTimeout | None = None
                    ) -> dict[str, float] | None:
        assert self._session is not None
        try:
            async with self._session.get(self.endpoint.url("/metrics"),
                                         headers=self.endpoint.headers(),
                                         timeout=timeout or self._session.timeout) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text(errors="replace")
        except asyncio.CancelledError:
            raise
        except Exception:  # a slow or dying target: skip this sample
            return None
        reading = read_series(text)
        if not reading:
            return None
        self._samples += 1
        self._peaks = fold_peaks(self._peaks, reading)
        return reading
