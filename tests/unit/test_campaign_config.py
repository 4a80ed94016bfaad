"""A campaign's settings survive the journal: `--resume` rebuilds the config it started
with, the command line changes only what it may, and old journals keep fixed deadlines."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from fuzz.config import CampaignConfig, journaled_settings, resumed_config
from fuzz.journal import Journal
from fuzz.layout import journal_path
from fuzz.minimize import Budget
from fuzz.model import Deadlines


def test_settings_round_trip_through_the_journal(tmp_path: Path) -> None:
    config = CampaignConfig(out_dir=tmp_path, duration_s=600.0, seed=9,
                            deadline_overrides={"stall_s": 7.0}, url_image_percent=3,
                            max_disk_bytes=2**30, workers=2, max_requests=5,
                            max_output_tokens=16, examples_per_round=4, steering=False,
                            isolation=True, isolation_percent=40,
                            noise_file=tmp_path / "noise.json", interference_factor=7.0,
                            server_log=tmp_path / "vllm.log")
    with Journal(journal_path(tmp_path, 1)) as j:  # only worker 1 ran here so far
        j.append({"type": "started", "settings": json.loads(json.dumps(config.settings_json()))})
    saved = journaled_settings(tmp_path)
    assert saved is not None
    assert resumed_config(tmp_path, saved) == replace(config, resume=True)
    changed = resumed_config(tmp_path, saved, duration_s=900.0, max_disk_bytes=None,
                             deadline_overrides={"total_s": 9.0}, workers=None,
                             minimize_budget=Budget(max_replays=2))
    assert changed.duration_s == 900.0 and changed.max_disk_bytes == 2**30 and changed.workers == 2
    assert changed.deadline_overrides == {"stall_s": 7.0, "total_s": 9.0}
    assert changed.minimize_budget.max_replays == 2
    assert journaled_settings(tmp_path / "none") is None


def test_a_journal_from_before_learnt_deadlines_keeps_them_fixed(tmp_path: Path) -> None:
    old = {"seed": 1, "duration_s": 60.0, "max_requests": 3, "max_output_tokens": 8,
           "examples_per_round": 10, "deadlines": {"first_byte_s": 2.0, "stall_s": 2.0,
                                                   "total_s": 4.0}}
    config = resumed_config(tmp_path, old)
    assert config.deadline_overrides == old["deadlines"] and config.resume
    assert config.deadline_policy().overall() is None
    assert config.deadline_policy().ceiling == Deadlines(2.0, 2.0, 4.0)
    assert (config.url_image_percent, config.workers, config.max_disk_bytes) == (0, 1, None)
    assert config.steering and not config.isolation and config.noise_file is None


def test_each_worker_has_its_own_seed_stream(tmp_path: Path) -> None:
    config = CampaignConfig(out_dir=tmp_path, duration_s=1.0, seed=40)
    assert [replace(config, worker=w).stream_seed for w in (0, 1, 7)] == [40, 41, 47]
