"""`vlfuzz run` flags become the campaign's config: deadline flags are overrides of
learnt deadlines, image URLs only for a target on this machine, the disk cap, workers,
steering, the isolation oracles (on for the embedded target) and their noise model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.cli import _run_config, build_parser


def config(tmp_path: Path, *flags: str):
    args = build_parser().parse_args(["run", *flags])
    return _run_config(args, tmp_path, seed=1)


def test_defaults_learn_deadlines_cap_disk_and_serve_urls_to_a_local_target(tmp_path: Path) -> None:
    c = config(tmp_path)
    assert c.learn_deadlines and c.deadline_overrides == {}
    assert c.max_disk_bytes == 2 * 2**30 and c.workers == 1 and c.url_image_percent > 0
    assert config(tmp_path, "--endpoint", "http://127.0.0.1:8000").url_image_percent > 0
    assert config(tmp_path, "--endpoint", "http://gpu7:8000").url_image_percent == 0
    assert config(tmp_path, "--endpoint", "http://gpu7:8000", "--url-images", "10"
                  ).url_image_percent == 10


def test_flags_override_deadlines_disk_and_workers(tmp_path: Path) -> None:
    c = config(tmp_path, "--first-byte-timeout", "3", "--total-timeout", "9", "--max-disk", "500M",
               "--endpoint", "http://a:1", "--endpoint", "http://b:2", "--workers", "4")
    assert c.deadline_overrides == {"first_byte_s": 3.0, "total_s": 9.0}
    assert c.max_disk_bytes == 500 * 2**20 and c.workers == 4


@pytest.mark.parametrize("flags", [("--max-disk", "lots"), ("--url-images", "101"),
                                   ("--workers", "0"), ("--slowdown-factor", "1")])
def test_bad_values_are_refused(flags: tuple[str, str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", *flags])
    assert flags[0] in capsys.readouterr().err


def test_several_endpoints_without_workers_are_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from fuzz.cli import main

    assert main(["run", "--endpoint", "http://127.0.0.1:9", "--endpoint", "http://127.0.0.1:10",
                 "--out", str(tmp_path / "x")]) == 2
    assert "several --endpoint need --workers" in capsys.readouterr().err


def test_steering_is_on_and_isolation_is_on_for_the_embedded_target(tmp_path: Path) -> None:
    c = config(tmp_path)
    assert c.steering and c.isolation and c.noise_file is None and c.server_log is None
    assert c.interference_factor == 5.0
    external = config(tmp_path, "--endpoint", "http://gpu7:8000")
    assert not external.isolation and external.steering
    assert config(tmp_path, "--endpoint", "http://gpu7:8000", "--isolation").isolation
    assert not config(tmp_path, "--no-isolation").isolation
    assert not config(tmp_path, "--no-steering").steering
    c = config(tmp_path, "--endpoint", "http://gpu7:8000", "--server-log", "/var/log/vllm.log",
               "--slowdown-factor", "8")
    assert c.server_log == Path("/var/log/vllm.log") and c.interference_factor == 8.0


def test_a_noise_file_turns_isolation_on_and_must_be_a_noise_model(tmp_path: Path) -> None:
    from fuzz.isolation import NoiseModel

    good = tmp_path / "noise.json"
    good.write_text(json.dumps(NoiseModel(margin_threshold=0.1).to_json()))
    c = config(tmp_path, "--endpoint", "http://gpu7:8000", "--noise", str(good))
    assert c.isolation and c.noise_file == good
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 99}')
    with pytest.raises(SystemExit, match="not a noise model"):
        config(tmp_path, "--noise", str(bad))


def test_resume_keeps_the_campaigns_steering_and_isolation_unless_told(tmp_path: Path) -> None:
    from fuzz.journal import Journal
    from fuzz.layout import journal_path

    first = config(tmp_path, "--no-steering", "--slowdown-factor", "7")
    with Journal(journal_path(tmp_path)) as j:
        j.append({"type": "started", "settings": json.loads(json.dumps(first.settings_json()))})
    resumed = config(tmp_path, "--resume", str(tmp_path))
    assert (resumed.steering, resumed.isolation, resumed.interference_factor) == (False, True, 7.0)
    changed = config(tmp_path, "--resume", str(tmp_path), "--no-isolation")
    assert not changed.isolation and not changed.steering


def test_isolation_is_refused_with_workers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fuzz.cli import main

    assert main(["run", "--endpoint", "http://127.0.0.1:9", "--workers", "2", "--isolation",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--isolation needs the target to itself" in capsys.readouterr().err


def test_excluded_features_are_checked_up_front_and_survive_resume(tmp_path: Path) -> None:
    from fuzz.journal import Journal
    from fuzz.layout import journal_path

    with pytest.raises(SystemExit, match="names no generated feature"):
        config(tmp_path, "--exclude-feature", "seed")  # the tag is sampling:seed
    first = config(tmp_path, "--exclude-feature", "sampling:seed", "--exclude-feature", "image:seed")
    assert first.exclude_features == ("sampling:seed", "image:seed")
    with Journal(journal_path(tmp_path)) as j:
        j.append({"type": "started", "settings": json.loads(json.dumps(first.settings_json()))})
    assert config(tmp_path, "--resume", str(tmp_path)).exclude_features == first.exclude_features


def test_resume_warns_that_its_own_seed_and_exclusions_win(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fuzz.cli import _warn_resume_overrides
    from fuzz.journal import Journal
    from fuzz.layout import journal_path

    first = config(tmp_path, "--exclude-feature", "sampling:seed")
    with Journal(journal_path(tmp_path)) as j:
        j.append({"type": "started", "settings": json.loads(json.dumps(first.settings_json()))})

    def warnings(*flags: str) -> str:
        args = build_parser().parse_args(["run", "--resume", str(tmp_path), *flags])
        _warn_resume_overrides(args, _run_config(args, tmp_path, seed=1))
        return capsys.readouterr().out

    out = warnings("--exclude-feature", "image:seed")
    assert "--exclude-feature image:seed ignored" in out and "(sampling:seed)" in out
    assert warnings("--exclude-feature", "sampling:seed") == "", "the same exclusions: no warning"
    assert warnings() == ""
    assert "--seed 99 ignored" in warnings("--seed", "99")
