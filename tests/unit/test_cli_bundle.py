"""`vlfuzz bundle show | pack` on the committed regression bundles (no server)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from fuzz.bundle import load_bundle
from fuzz.cli import main

BUNDLES = Path(__file__).resolve().parents[2] / "corpora" / "bundles"
TOOL = next(BUNDLES.glob("tool-call-invalid-*"))


def test_show_prints_signature_rate_and_needs(capsys):
    assert main(["bundle", "show", str(TOOL)]) == 0
    out = capsys.readouterr().out
    b = load_bundle(TOOL)
    assert b.signature in out
    assert f"reproduced: {b.reproduced.k}/{b.reproduced.n}" in out
    assert "tool_choice" in out


def test_pack_writes_one_loadable_archive_and_reports_its_size(tmp_path, capsys):
    assert main(["bundle", "pack", str(TOOL), "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    archive = Path(line.split(" (")[0])
    assert archive.parent == tmp_path and archive.name.endswith(".tar.gz")
    assert list(tmp_path.iterdir()) == [archive]  # the archive, nothing else
    assert line.endswith("KiB)")
    with tarfile.open(archive) as tf:
        assert any(m.name.endswith("/ISSUE.md") for m in tf.getmembers())
    assert load_bundle(archive).signature == load_bundle(TOOL).signature


def test_a_broken_bundle_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bundle.json").write_text("{")
    assert main(["bundle", "show", str(tmp_path)]) == 2
    assert "vlfuzz:" in capsys.readouterr().err


def test_repeat_is_an_alias_of_runs():
    from fuzz.cli import build_parser

    args = build_parser().parse_args(["replay", "x", "--repeat", "5"])
    assert args.runs == 5


def test_replay_on_the_embedded_target_uses_each_bundles_recorded_flags(monkeypatch, tmp_path):
    """Without --endpoint, a bundle recorded with extra vLLM flags (here: the outlines
    backend) is replayed on the embedded target launched with them; --fresh-target
    restarts it before every bundle instead of reusing it."""
    import asyncio

    from fuzz.cli import _embedded_preparer
    from fuzz.target import embedded
    from fuzz.target.paths import TargetPaths
    from fuzz.target.server import ServerState

    started: list[tuple[str, tuple[str, ...]]] = []

    def fake(how):
        def start(paths, config, log):
            started.append((how, config.extra_args))
            return ServerState(pid=1, base_url="http://127.0.0.1:9", model="m", log_file="")
        return start

    monkeypatch.setattr(embedded, "up", fake("up"))
    monkeypatch.setattr(embedded, "restart", fake("restart"))
    outlines = load_bundle(next(p for p in BUNDLES.iterdir() if p.name.endswith("2050f435")))
    tool = load_bundle(TOOL)  # recorded before bundles kept the launch: the default flags
    paths = TargetPaths(tmp_path)
    for fresh in (False, True):
        prepare = _embedded_preparer(paths, None, fresh)
        endpoints = [asyncio.run(prepare(b)) for b in (outlines, tool)]
        assert endpoints[0].base_url == "http://127.0.0.1:9" and endpoints[1].model == "m"
    how = ["up", "restart"]
    assert started == [(h, flags) for h in how for flags in (
        ("--structured-outputs-config", '{"backend": "outlines"}'), ())]
    assert main(["replay", str(TOOL), "--endpoint", "http://127.0.0.1:9", "--fresh-target"]) == 2


@pytest.fixture
def tool_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TOOL, tmp_path / TOOL.name))


def test_triage_sets_the_verdict_and_show_prints_it(tool_copy: Path, capsys) -> None:
    before = json.loads((tool_copy / "bundle.json").read_text())
    assert main(["bundle", "triage", str(tool_copy), "--verdict", "model-artefact",
                 "--note", "the tiny model answers null", "--seen", "0.32.0"]) == 0
    after = json.loads((tool_copy / "bundle.json").read_text())
    triage = after.pop("triage")
    before.pop("triage", None)
    assert after == before  # nothing else in bundle.json changed
    assert triage["verdict"] == "model-artefact" and "0.32.0" in triage["versions_seen"]
    assert triage["note"] == "the tiny model answers null" and len(triage["updated"]) == 10
    out = capsys.readouterr().out
    assert "model-artefact" in out and "the tiny model answers null" in out
    assert "the tiny model answers null" in (tool_copy / "ISSUE.md").read_text()
    assert main(["bundle", "triage", str(tool_copy), "--seen", "0.33.0"]) == 0
    kept = load_bundle(tool_copy).triage
    assert kept.verdict == "model-artefact" and kept.note == "the tiny model answers null"
    assert kept.versions_seen[-1] == "0.33.0"
    assert main(["bundle", "show", str(tool_copy)]) == 0
    assert "Seen on vLLM" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--upstream", "not a url"], "http(s) URL"),
])
def test_triage_refuses_bad_values(tool_copy: Path, capsys, args, message) -> None:
    original = (tool_copy / "bundle.json").read_bytes()
    assert main(["bundle", "triage", str(tool_copy), *args]) == 2
    assert message in capsys.readouterr().err
    assert (tool_copy / "bundle.json").read_bytes() == original


def test_triage_refuses_an_unknown_verdict_and_archives(tool_copy: Path, tmp_path: Path,
                                                        capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bundle", "triage", str(tool_copy), "--verdict", "meh"])
    assert main(["bundle", "pack", str(tool_copy), "--out", str(tmp_path / "a")]) == 0
    archive = next((tmp_path / "a").iterdir())
    capsys.readouterr()
    assert main(["bundle", "triage", str(archive), "--verdict", "vllm-bug"]) == 2
    assert "unpack it first" in capsys.readouterr().err


def test_refresh_rerenders_issue_and_repro(tool_copy: Path) -> None:
    (tool_copy / "ISSUE.md").write_text("stale")
    (tool_copy / "repro.py").write_text("stale")
    assert main(["bundle", "refresh", str(tool_copy)]) == 0
    assert (tool_copy / "ISSUE.md").read_text().startswith("# [Bug]: ")
    assert "CHECK = check_tool_calls" in (tool_copy / "repro.py").read_text()
