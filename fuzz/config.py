"""What a campaign runs with (`CampaignConfig`), and reading it back from the journal
for `--resume`: the `started` record keeps `settings_json()`, so a resumed campaign
regenerates the same seed stream with the same sizes, deadlines, disk cap, steering
and isolation settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fuzz.deadlines import DeadlinePolicy
from fuzz.journal import read_journal
from fuzz.layout import journal_paths
from fuzz.minimize import Budget
from fuzz.model import Deadlines

__all__ = ["CampaignConfig", "journaled_settings", "resumed_config"]

REPORT_EVERY_S = 30.0


@dataclass(frozen=True)
class CampaignConfig:
    """`deadlines` is the ceiling of the learnt deadlines (and what applies until
    `deadline_min_samples` requests taught the policy); `deadline_overrides` (phase
    name -> seconds) fix a phase; `learn_deadlines=False` keeps the ceiling throughout.

    `steering` interleaves mutants of scenarios that reached new server states with
    fresh ones (`fuzz.steering`). `isolation` runs the isolation and interference
    oracles (`fuzz.isolation_watch`): off here, on by default for the embedded target
    (the CLI decides); `isolation_percent` of scenarios get a probe, canary or victim
    inserted; `noise_file` is a measured `NoiseModel` to use instead of measuring at
    start; a victim is slowed when `interference_factor` x its alone latency.
    `server_log` is a log file to follow for an external target (the embedded
    target's own is always followed)."""

    out_dir: Path
    duration_s: float
    seed: int = 0
    deadlines: Deadlines = Deadlines(first_byte_s=120.0, stall_s=60.0, total_s=300.0)
    deadline_overrides: Mapping[str, float] = field(default_factory=dict)
    deadline_floor: Deadlines = Deadlines(first_byte_s=5.0, stall_s=5.0, total_s=15.0)
    deadline_min_samples: int = 20
    learn_deadlines: bool = True
    url_image_percent: int = 0  # image URLs on the fixture server (the target must reach loopback)
    max_disk_bytes: int | None = None
    worker: int = 0  # this campaign's index among workers sharing out_dir
    workers: int = 1  # how many were started together (journaled, for --resume)
    reports: bool = True  # False: a coordinator writes the reports of all workers
    max_requests: int = 32
    max_output_tokens: int = 64
    examples_per_round: int = 10
    minimize: bool = True
    minimize_budget: Budget = Budget(max_replays=40, max_wall_s=240.0)
    resume: bool = False  # continue the campaign journaled in out_dir
    tick_s: float = 1.0
    report_every_s: float = REPORT_EVERY_S
    steering: bool = True
    isolation: bool = False
    isolation_percent: int = 25
    noise_file: Path | None = None
    interference_factor: float = 5.0
    server_log: Path | None = None
    exclude_features: tuple[str, ...] = ()  # generated features a hunt past a known bug skips

    def settings_json(self) -> dict[str, Any]:
        """What `--resume` needs to regenerate the same seed stream."""
        return {"seed": self.seed, "duration_s": self.duration_s,
                "max_requests": self.max_requests, "max_output_tokens": self.max_output_tokens,
                "examples_per_round": self.examples_per_round, "deadlines": self.deadlines.to_json(),
                "deadline_overrides": dict(self.deadline_overrides),
                "deadline_floor": self.deadline_floor.to_json(),
                "learn_deadlines": self.learn_deadlines, "url_image_percent": self.url_image_percent,
                "max_disk_bytes": self.max_disk_bytes, "worker": self.worker,
                "workers": self.workers, "steering": self.steering, "isolation": self.isolation,
                "isolation_percent": self.isolation_percent,
                "noise_file": None if self.noise_file is None else str(self.noise_file),
                "interference_factor": self.interference_factor,
                "server_log": None if self.server_log is None else str(self.server_log),
                "exclude_features": list(self.exclude_features)}

    @property
    def stream_seed(self) -> int:
        """The seed of this worker's stream of rounds."""
        return self.seed + self.worker

    def deadline_policy(self) -> DeadlinePolicy:
        return DeadlinePolicy(floor=self.deadline_floor, ceiling=self.deadlines,
                              min_samples=self.deadline_min_samples,
                              overrides=self.deadline_overrides, steps=True)


def journaled_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings the campaign in `out_dir` started with (for `--resume`; the first
    worker's when there were several), or None."""
    for path in journal_paths(out_dir):
        for r in read_journal(path):
            if r.get("type") == "started" and isinstance(r.get("settings"), dict):
                return r["settings"]
    return None


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def resumed_config(out_dir: Path, saved: Mapping[str, Any], **changes: Any) -> CampaignConfig:
    """The config `saved` (journaled settings) describes, marked as resumed, with
    `changes` applied (what the command line may change: duration, minimizing, disk
    cap, workers, steering, isolation). Deadline overrides given again add to the saved
    ones; a journal from before deadlines were learnt had all of them fixed, and keeps
    them so. A journal from before steering and isolation keeps steering on and
    isolation off."""
    base = CampaignConfig(out_dir=out_dir, duration_s=float(saved["duration_s"]))
    overrides = {**saved.get("deadline_overrides", saved["deadlines"]),
                 **changes.pop("deadline_overrides", {})}
    config = replace(
        base, seed=int(saved["seed"]), deadlines=Deadlines(**saved["deadlines"]),
        deadline_overrides=overrides,
        deadline_floor=Deadlines(**saved.get("deadline_floor", base.deadline_floor.to_json())),
        learn_deadlines=bool(saved.get("learn_deadlines", True)),
        url_image_percent=int(saved.get("url_image_percent", 0)),
        max_disk_bytes=saved.get("max_disk_bytes"), workers=int(saved.get("workers", 1)),
        max_requests=int(saved["max_requests"]), max_output_tokens=int(saved["max_output_tokens"]),
        examples_per_round=int(saved.get("examples_per_round", 10)),
        steering=bool(saved.get("steering", True)), isolation=bool(saved.get("isolation", False)),
        isolation_percent=int(saved.get("isolation_percent", base.isolation_percent)),
        noise_file=_path(saved.get("noise_file")),
        interference_factor=float(saved.get("interference_factor", base.interference_factor)),
        server_log=_path(saved.get("server_log")),
        exclude_features=tuple(saved.get("exclude_features", ())), resume=True)
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
