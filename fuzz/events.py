"""What the campaign engine tells its consumers (progress display, CLI log lines).

The engine prints nothing: it emits these small frozen events, past tense, and the
consumers decide what to show. Events that carry `summary` share the live object;
consumers read it, never change it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fuzz.model import Failure
from fuzz.report import FailureStats, Summary


@dataclass(frozen=True)
class CampaignStarted:
    summary: Summary
    duration_s: float
    resumed: bool
    disk_cap_bytes: int | None = None


@dataclass(frozen=True)
class ScenarioStarted:
    index: int
    requests: int


@dataclass(frozen=True)
class ScenarioFinished:
    """`origin` is "generated" (fresh from Hypothesis) or the steering ops that made it."""

    index: int
    requests: int
    failures: tuple[Failure, ...]
    wall_s: float
    summary: Summary
    origin: str = "generated"


@dataclass(frozen=True)
class FailureFound:
    failure: Failure
    new: bool


@dataclass(frozen=True)
class MinimizationStarted:
    signature: str
    requests: int
    resumed: bool = False


@dataclass(frozen=True)
class BundleWritten:
    path: Path
    stats: FailureStats


@dataclass(frozen=True)
class TargetStateChanged:
    """`state` is up, down, restarting, waiting or unavailable; `waited_s` is set
    when the target came back (or did not) after a wait or restart."""

    state: str
    detail: str = ""
    waited_s: float | None = None


@dataclass(frozen=True)
class Ticked:
    """Emitted about once a second while a scenario or minimization is running."""

    summary: Summary
    time_left_s: float


@dataclass(frozen=True)
class DiskCapReached:
    """The campaign folder reached its cap: known failures' bundles are no longer
    rewritten (the journal is kept)."""

    used_bytes: int
    cap_bytes: int


@dataclass(frozen=True)
class Noted:
    message: str


@dataclass(frozen=True)
class CampaignFinished:
    summary: Summary


Event = (CampaignStarted | ScenarioStarted | ScenarioFinished | FailureFound
         | MinimizationStarted | BundleWritten | TargetStateChanged | Ticked | Noted
         | DiskCapReached | CampaignFinished)
