"""`replay` and `calibrate` without --endpoint use the embedded target, and say why not
(exit 2) when it cannot be started."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fuzz import cli
from fuzz.target import embedded
from fuzz.target.server import ServerState, TargetError


def args(tmp_path: Path, model: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(cache=tmp_path, model=model)


def test_the_embedded_target_becomes_an_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = ServerState(pid=1, base_url="http://127.0.0.1:9", model="tiny", log_file="/x.log")
    monkeypatch.setattr(embedded, "up", lambda paths, config, log: state)
    endpoint, got = cli._embedded_endpoint(args(tmp_path))
    assert (endpoint.base_url, endpoint.model, got) == ("http://127.0.0.1:9", "tiny", state)
    assert cli._embedded_endpoint(args(tmp_path, model="other"))[0].model == "other"


def test_a_target_that_cannot_start_is_reported_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def fail(paths, config, log):  # type: ignore[no-untyped-def]
        raise TargetError("no venv")
    monkeypatch.setattr(embedded, "up", fail)
    assert cli._embedded_endpoint(args(tmp_path)) is None
    assert "embedded target failed: no venv" in capsys.readouterr().err
    assert cli.main(["--cache", str(tmp_path), "calibrate"]) == 2
