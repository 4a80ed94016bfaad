"""`vlfuzz bundle show | pack` on the committed regression bundles (no server)."""

from __future__ import annotations

import tarfile
from pathlib import Path

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
