"""`write_atomic` stays whole when several writers (hosts sharing a campaign folder)
write the same report at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fuzz.journal import write_atomic


def test_concurrent_writers_of_one_report_never_raise_and_leave_one_whole_version(
        tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    versions = {w: f"writer {w}\n" + ("x" * 20_000 + "\n") * (w + 1) for w in range(4)}
    errors: list[BaseException] = []
    start = threading.Barrier(len(versions))

    def write(w: int) -> None:
        start.wait()
        try:
            for _ in range(150):
                write_atomic(path, versions[w])
        except BaseException as e:  # noqa: BLE001 - the test reports any of them
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_text(encoding="utf-8") in versions.values()
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"], "no temp file left behind"


def test_a_failed_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.mkdir()  # a folder in the way: os.replace fails after the temp file exists
    with pytest.raises(OSError):
        write_atomic(target, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
