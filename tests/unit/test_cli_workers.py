"""`vlfuzz run --workers`: the command's exit status tells a crashed worker apart from
failures found and from an unavailable target."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from fuzz import workers
from fuzz.cli import main
from fuzz.report import FailureStats, Summary


def _raises() -> None:
    raise RuntimeError("worker bug")


def test_a_worker_that_raises_exits_1_not_0() -> None:
    """Why exit code 1 counts as a crash: a worker never exits 1 for failures found,
    but an uncaught exception in a multiprocessing worker does."""
    p = multiprocessing.get_context("spawn").Process(target=_raises)
    p.start()
    p.join()
    assert p.exitcode == 1


def _fake_run_workers(codes: list[int], failures: bool):
    def run_workers(specs, *, out_dir: Path, seed: int, endpoint: str, redact=None,
                    on_status=lambda s: None, every_s: float = 5.0):
        assert len(specs) == len(codes)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.md").write_text("# report\n")
        summary = Summary(seed=seed, endpoint=endpoint)
        if failures:
            summary.failures["server_error|500|x"] = FailureStats(
                kind="server_error", signature="server_error|500|x", message="x", count=1)
        return summary, codes
    return run_workers


@pytest.mark.parametrize("codes, failures, status", [
    ([0, 0], False, 0),
    ([0, 0], True, 1),
    ([0, 1], False, 2),    # an exception in worker #1
    ([0, 3], True, 2),     # an unknown exit code, even with failures found
    ([-9, 0], True, 2),    # killed by a signal
    ([2, 2], False, 2),    # every endpoint unavailable
    ([0, 2], True, 1),     # one endpoint unavailable: not a crash
])
def test_exit_status_is_2_when_any_worker_crashed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        codes: list[int], failures: bool, status: int) -> None:
    monkeypatch.setattr(workers, "run_workers", _fake_run_workers(codes, failures))
    assert main(["run", "--endpoint", "http://127.0.0.1:9", "--model", "m", "--workers", "2",
                 "--duration", "1", "--seed", "1", "--out", str(tmp_path / "c")]) == status
    crashed = any(c not in (0, 2) for c in codes)
    assert ("crashed" in capsys.readouterr().err) == crashed
