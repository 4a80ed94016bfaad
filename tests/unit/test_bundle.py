"""Bundles: round trip, schema, ISSUE.md, repro.py, and refusing hostile archives."""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import jsonschema
import pytest

from fuzz.bundle import (SCHEMA_PATH, Bundle, BundleError, find_bundles, fuzzer_info,
                         load_bundle, write_bundle)
from fuzz.model import (Deadlines, Failure, Media, RequestSpec, RequestTrace, Scenario, Trace,
                        media_url)
from fuzz.safetar import ArchiveLimits

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
SIG = "server_error|500|EngineCore encountered an issue"


def sample_bundle(signature: str = SIG, big_image: bool = False) -> Bundle:
    img = Media(PNG + (bytes(9000) if big_image else b""), "image/png", {"w": 32, "h": 32})
    r0 = RequestSpec("r0", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(img.sha256)}},
        {"type": "text", "text": "what's this?"}]}], "stream": True}, 0.0,
        disconnect_after_chunks=2, tags=("image", "stream"))
    r1 = RequestSpec("r1", {"messages": [{"role": "user", "content": "hi"}],
                            "response_format": {"type": "json_object"},
                            "tools": [{"type": "function", "function": {"name": "f"}}],
                            "tool_choice": "required"}, 12.5)
    trace = Trace((RequestTrace("r0", 0.0, 200, end_s=1.0, events=("{}", "[DONE]")),
                   RequestTrace("r1", 0.0125, 500, end_s=0.4, body='{"error": "EngineCore"}')),
                  Deadlines(5.0, 4.0, 10.0), wall_s=1.0)
    failure = Failure("server_error", signature, "EngineCore encountered an issue id=1234",
                      "r1", {"status": 500, "body_head": "EngineCore"})
    return Bundle(Scenario((r0, r1), {img.sha256: img}, seed=7), failure, trace, (2, 3),
                  {"model_id": "tiny-qwen3-vl", "version": "0.11.0", "max_model_len": 4096},
                  fuzzer_info(7), original_request_count=40)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    return write_bundle(sample_bundle(), tmp_path / "out")


def test_round_trip_folder_and_archive(written: Path) -> None:
    original = sample_bundle()
    assert load_bundle(written) == original
    archive = written.with_name(written.name + ".tar.gz")
    loaded = load_bundle(archive)
    assert loaded == original and loaded.path == archive
    assert sorted(p.name for p in written.iterdir()) == ["ISSUE.md", "bundle.json", "media",
                                                          "repro.py"]
    assert [p.suffix for p in (written / "media").iterdir()] == [".png"]


def test_rewrite_replaces_and_leaves_no_temp_files(written: Path) -> None:
    (written / "stale.txt").write_text("from an older run")
    again = write_bundle(sample_bundle(), written.parent)
    assert again == written and not (written / "stale.txt").exists()
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name,
                                                                 written.name + ".tar.gz"]


def test_written_bundle_matches_schema(written: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = json.loads((written / "bundle.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["format_version"] == 1 and "data" not in json.dumps(doc["scenario"]["media"])


def test_issue_md_is_ready_to_paste(written: Path) -> None:
    issue = (written / "ISSUE.md").read_text()
    title = issue.splitlines()[0]
    assert title == "# [Bug]: HTTP 500: EngineCore encountered an issue after 2 concurrent chat requests"
    assert "<!-- Use the line above as the title" in issue  # invisible once pasted
    for section in ("### Your current environment", "### 🐛 Describe the bug",
                    "**Expected:**", "**Actual:**", "**Reproduction rate:** 2 of 3 runs of this scenario",
                    "### What the scenario needs", "### Steps to reproduce",
                    "### Recorded answers", "### How it was found", "### What we know so far"):
        assert section in issue, section
    assert SIG in issue and "python repro.py --endpoint http://127.0.0.1:8000" in issue
    assert "- `r1`: HTTP 500: EngineCore" in issue  # actual, from repro.py's own check
    assert "replays 3 times by default" in issue
    curls = [line for line in issue.splitlines() if line.lstrip("(").startswith(("curl", "sleep"))]
    assert len(curls) == 2 and all("--data-binary" in c for c in curls)
    assert '"model":"tiny-qwen3-vl"' in curls[0] and "data:image/png;base64," in curls[0]
    assert "sleep 0.013" in curls[1] and "wait" in issue
    for need in ("2 requests (minimized from 40)", "concurrently", "images: 1",
                 "streaming: 1 of 2", "structured output: response_format",
                 'tool_choice "required"', "vLLM: 0.11.0", "vlfuzz 0.1.0 (seed 7)",
                 "Minimized from 40 requests to 2"):
        assert need in issue, need


def test_a_server_log_issue_tells_the_reader_to_give_repro_the_log(tmp_path: Path) -> None:
    from dataclasses import replace

    plain = (write_bundle(sample_bundle(), tmp_path / "a") / "ISSUE.md").read_text()
    assert "--server-log" not in plain
    b = sample_bundle("server_log_error|-|serving.py: boom|ValueError: x")
    b = replace(b, failure=replace(b.failure, kind="server_log_error"))
    issue = (write_bundle(b, tmp_path / "b") / "ISSUE.md").read_text()
    assert "python repro.py --endpoint http://127.0.0.1:8000 --server-log server.log" in issue
    assert "tee server.log" in issue


def test_issue_sends_big_bodies_from_files(tmp_path: Path) -> None:
    issue = (write_bundle(sample_bundle(big_image=True), tmp_path) / "ISSUE.md").read_text()
    assert "python repro.py --dump-bodies .  # writes r0.json" in issue
    assert "--data-binary @r0.json" in issue and "data:image/png" not in issue.split(
        "### Recorded answers")[0]


def test_issue_describes_the_embedded_target_and_server_command(tmp_path: Path) -> None:
    import dataclasses

    target = {"model_id": "vlfuzz-tiny-qwen3-vl", "version": "0.32.0", "embedded": True,
              "server_argv": ["-m", "vllm.entrypoints.openai.api_server", "--model",
                              "/root/.cache/vlfuzz/checkpoints/tiny", "--host", "127.0.0.1",
                              "--port", "40797", "--limit-mm-per-prompt", '{"image": 8}'],
              "server_log_tail": "(EngineCore pid=1) ERROR 11-27 05:31:51 [core.py:1] x\n"
                                 "(EngineCore pid=1) ERROR 11-27 05:31:51 [core.py:1] "
                                 "RuntimeError: CPU Generator does not use offset\n"}
    issue = (write_bundle(dataclasses.replace(sample_bundle(), target=target), tmp_path)
             / "ISSUE.md").read_text()
    assert ("python -m vllm.entrypoints.openai.api_server --model ~/.cache/vlfuzz/checkpoints/"
            "tiny --limit-mm-per-prompt '{\"image\": 8}'") in issue
    assert "40797" not in issue and "the CPU build" in issue and "randomly initialised" in issue
    assert "RuntimeError: CPU Generator does not use offset\n```" in issue


def test_repro_py_compiles(written: Path) -> None:
    compile((written / "repro.py").read_text(), "repro.py", "exec")


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - /health and /v1/models, as repro.py asks first
        doc = {"data": [{"id": "tiny-qwen3-vl"}]} if self.path == "/v1/models" else {}
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps(doc).encode())

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append(body)  # type: ignore[attr-defined]
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"data: {}\n\ndata: {}\n\ndata: [DONE]\n\n" if body.get("stream")
                         else b'{"ok": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status,code", [(200, 0), (500, 1)])
def test_repro_py_runs_against_loopback(written: Path, status: int, code: int) -> None:
    handler = type("H", (_Handler,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run([sys.executable, str(written / "repro.py"), "--endpoint",
                               f"http://127.0.0.1:{server.server_port}", "--timeout", "10",
                               "--runs", "1"],
                              capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "[r0 +0ms]" in proc.stdout and "[r1 +12.5ms]" in proc.stdout
    assert ("STILL FAILING" if code else "NOT REPRODUCED") in proc.stdout
    seen = server.seen  # type: ignore[attr-defined]
    assert len(seen) == 2 and all(b["model"] == "tiny-qwen3-vl" for b in seen)
    assert "data:image/png;base64," in json.dumps(seen)


def test_find_bundles(tmp_path: Path) -> None:
    a = write_bundle(sample_bundle("a|500|x"), tmp_path / "set")
    b = write_bundle(sample_bundle("b|500|y"), tmp_path / "set" / "nested")
    lone = tmp_path / "set" / "nested" / "lone.tar.gz"
    a.with_name(a.name + ".tar.gz").rename(lone)
    assert find_bundles(tmp_path / "set") == sorted([a, b, lone])
    assert find_bundles(a) == [a] and find_bundles(lone) == [lone]
    with pytest.raises(BundleError):
        find_bundles(tmp_path / "missing")


# --- hostile and broken input -------------------------------------------------------


def _tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temp dirs go under tmp_path/tmp, so the test can see nothing leaked anywhere."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _json_member(written: Path) -> tuple[tarfile.TarInfo, bytes]:
    return _file("b/bundle.json", (written / "bundle.json").read_bytes())


@pytest.mark.parametrize("member,why", [
    (_file("b/../../../escaped.txt", b"x"), "escapes"),
    (_file("/tmp/escaped-abs.txt", b"x"), "absolute"),
    (_special("b/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
    (_special("b/hard", tarfile.LNKTYPE, "b/bundle.json"), "hardlink"),
    (_special("b/dev", tarfile.CHRTYPE), "device"),
    (_file("b/big.bin", bytes(5000)), "bytes"),
])
def test_hostile_archives_are_rejected(sandbox: Path, written: Path, member, why: str) -> None:
    archive = _tar_gz(sandbox / "evil.tar.gz", [_json_member(written), member])
    before = sorted(sandbox.rglob("*"))
    assert archive in before and any(p.name == "bundle.json" for p in before)
    with pytest.raises(BundleError, match=why):
        load_bundle(archive, limits=ArchiveLimits(max_member_bytes=4000))
    assert sorted(sandbox.rglob("*")) == before  # extraction dir under tmp/ is gone too
    assert not (sandbox.parent / "escaped.txt").exists()
    assert not Path("/tmp/escaped-abs.txt").exists()


def test_totals_and_member_count_are_capped(sandbox: Path, written: Path) -> None:
    many = [_json_member(written)] + [_file(f"b/f{i}", b"x" * 100) for i in range(30)]
    archive = _tar_gz(sandbox / "many.tar.gz", many)
    with pytest.raises(BundleError, match="more than 10 members"):
        load_bundle(archive, limits=ArchiveLimits(max_members=10))
    with pytest.raises(BundleError, match="total"):
        load_bundle(archive, limits=ArchiveLimits(max_total_bytes=len(many[0][1]) + 1000))


def test_gzip_bomb_stops_at_the_stream_cap(sandbox: Path) -> None:
    archive = _tar_gz(sandbox / "bomb.tar.gz", [_file("b/zeros", bytes(3_000_000))])
    assert archive.stat().st_size < 20_000
    with pytest.raises(BundleError, match="exceeds|bytes"):
        load_bundle(archive, limits=ArchiveLimits(max_member_bytes=10**9, max_total_bytes=100_000))


@pytest.mark.parametrize("data", [b"not gzip at all", b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_gzip(sandbox: Path, data: bytes) -> None:
    (sandbox / "bad.tar.gz").write_bytes(data)
    with pytest.raises(BundleError, match="tar.gz"):
        load_bundle(sandbox / "bad.tar.gz")


def test_truncated_archive(sandbox: Path, written: Path) -> None:
    good = written.with_name(written.name + ".tar.gz").read_bytes()
    (sandbox / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(BundleError):
        load_bundle(sandbox / "cut.tar.gz")


def _edit_json(written: Path, edit) -> Path:
    doc = json.loads((written / "bundle.json").read_text())
    edit(doc)
    (written / "bundle.json").write_text(json.dumps(doc))
    return written


@pytest.mark.parametrize("edit,why", [
    (lambda d: d.update(format_version=2), "format_version 2 is not supported"),
    (lambda d: d.pop("failure"), "schema"),
    (lambda d: d["reproduced"].update(k="two"), "schema at reproduced/k"),
    (lambda d: d["media_files"].update({"0" * 64: "media/../../x.png"}), "schema"),
    (lambda d: d["reproduced"].update(k=5), "k <= n"),
])
def test_bad_bundle_json(written: Path, edit, why: str) -> None:
    with pytest.raises(BundleError, match=why):
        load_bundle(_edit_json(written, edit))


def test_invalid_json_and_huge_json(written: Path) -> None:
    with pytest.raises(BundleError, match="larger than"):
        load_bundle(written, max_json_bytes=100)
    (written / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(written)


def test_media_hash_mismatch_and_missing_media(sandbox: Path, written: Path) -> None:
    media = next((written / "media").iterdir())
    media.write_bytes(b"tampered")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(written)
    with tarfile.open(sandbox / "tampered.tar.gz", "w:gz") as tf:
        tf.add(written, arcname=written.name)
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(sandbox / "tampered.tar.gz")
    media.unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(written)


def test_minimizer_statistics_and_schedule_reach_bundle_and_issue(tmp_path: Path) -> None:
    import dataclasses

    stats = {"summary": "2 requests, reproduced 3/3", "schedule_note": "r1 and r4 must overlap",
             "candidates": 9, "replays": 21, "passes": {"drop_requests": {"accepted": 3}}}
    bundle = dataclasses.replace(sample_bundle(), fuzzer={**fuzzer_info(seed=7), "minimizer": stats})
    path = write_bundle(bundle, tmp_path)
    loaded = load_bundle(path)
    assert loaded.fuzzer["minimizer"] == stats
    assert "schedule: r1 and r4 must overlap" in (path / "ISSUE.md").read_text()


# --- triage ------------------------------------------------------------------------------


def test_triage_round_trips_and_matches_schema(tmp_path: Path) -> None:
    import dataclasses

    from fuzz.bundle_triage import BundleTriage

    triage = BundleTriage("vllm-bug", ("0.32.0", "0.32.0", "0.33.0"), "seeded sampling on CPU",
                          "https://github.com/vllm-project/vllm/issues/1", "2026-11-27")
    assert triage.versions_seen == ("0.32.0", "0.33.0")
    path = write_bundle(dataclasses.replace(sample_bundle(), triage=triage), tmp_path)
    doc = json.loads((path / "bundle.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(doc)
    assert load_bundle(path).triage == triage
    issue = (path / "ISSUE.md").read_text()
    assert "Believed to be a bug in vLLM. (vlfuzz triage: `vllm-bug`)" in issue
    assert "Seen on vLLM 0.32.0, 0.33.0." in issue and "seeded sampling on CPU" in issue
    assert "Tracked in https://github.com/vllm-project/vllm/issues/1" in issue


@pytest.mark.parametrize("kwargs,why", [
    ({"verdict": "probably-fine"}, "not one of"),
    ({"upstream": "javascript:alert(1)"}, "http"),
    ({"updated": "yesterday"}, "YYYY-MM-DD"),
    ({"versions_seen": ("",)}, "empty version"),
])
def test_triage_values_are_checked(kwargs: dict, why: str) -> None:
    from fuzz.bundle_triage import BundleTriage

    with pytest.raises(ValueError, match=why):
        BundleTriage(**kwargs)


@pytest.mark.parametrize("edit,why", [
    (lambda d: d.update(triage={"verdict": "wontfix"}), "schema at triage/verdict"),
    (lambda d: d.update(triage={"verdict": "vllm-bug", "extra": 1}), "schema at triage"),
    (lambda d: d.update(triage={"note": "no verdict"}), "schema at triage"),
    (lambda d: d.update(triage={"verdict": "untriaged", "upstream": "file:///etc/passwd"}),
     "schema at triage/upstream"),
])
def test_hostile_triage_is_rejected(written: Path, edit, why: str) -> None:
    with pytest.raises(BundleError, match=why):
        load_bundle(_edit_json(written, edit))


def test_set_triage_changes_only_triage_and_refreshes_the_rest(written: Path) -> None:
    from fuzz.bundle import set_triage
    from fuzz.bundle_triage import BundleTriage

    before = json.loads((written / "bundle.json").read_text())
    twin = written.with_name(written.name + ".tar.gz")
    bundle = set_triage(written, BundleTriage("model-artefact", note="tiny model says null"))
    after = json.loads((written / "bundle.json").read_text())
    assert after.pop("triage") == bundle.triage.to_json() and after == before
    assert "tiny model says null" in (written / "ISSUE.md").read_text()
    assert load_bundle(twin).triage == bundle.triage  # the .tar.gz twin follows
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name, twin.name]


def test_set_triage_is_atomic(written: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from fuzz import bundle as bundle_module
    from fuzz.bundle_triage import BundleTriage

    original = (written / "bundle.json").read_bytes()

    def broken_replace(src, dst):  # the disk fills up at the last moment
        raise OSError("no space left on device")

    monkeypatch.setattr(bundle_module.os, "replace", broken_replace)
    with pytest.raises(OSError):
        bundle_module.set_triage(written, BundleTriage("vllm-bug"))
    monkeypatch.setattr(bundle_module.os, "replace", os.replace)
    assert (written / "bundle.json").read_bytes() == original
    assert not [p for p in written.rglob("*") if p.name.endswith(".tmp")]


def test_set_triage_refuses_archives_and_broken_bundles(written: Path, tmp_path: Path) -> None:
    from fuzz.bundle import set_triage
    from fuzz.bundle_triage import BundleTriage

    with pytest.raises(BundleError, match="archive; unpack it first"):
        set_triage(written.with_name(written.name + ".tar.gz"), BundleTriage())
    next((written / "media").iterdir()).write_bytes(b"tampered")
    with pytest.raises(BundleError, match="corrupt"):
        set_triage(written, BundleTriage())


def test_pack_writes_only_the_archive(written: Path, tmp_path: Path) -> None:
    from fuzz.bundle import pack_bundle

    out = tmp_path / "attach"
    archive = pack_bundle(load_bundle(written), out)
    assert [p.name for p in out.iterdir()] == [archive.name]
    assert load_bundle(archive) == sample_bundle()


@pytest.mark.parametrize("bad_id", ["../../x", "r0\nrm -rf ~", "", "r0;touch pwned", "-r"])
def test_request_ids_that_could_escape_files_or_shell_lines_are_rejected(written: Path,
                                                                         bad_id: str) -> None:
    def edit(d):
        d["scenario"]["requests"][0]["id"] = bad_id
    with pytest.raises(BundleError, match="schema at scenario/requests/0/id"):
        load_bundle(_edit_json(written, edit))


def test_curl_lines_quote_what_they_take_from_the_bundle() -> None:
    from fuzz.curl import curl_script

    spec = RequestSpec("r0", {"messages": []}, path="/v1/x$(touch pwned)", method="POST")
    lines, _ = curl_script(Scenario((spec,)), "m")
    assert "'/v1/x$(touch pwned)'" in lines[1] and '"$ENDPOINT"' in lines[1]


def test_server_text_cannot_break_out_of_the_issue_code_blocks(tmp_path: Path) -> None:
    import dataclasses

    evil = "```\n# Injected heading\n````"
    b = sample_bundle()
    trace = Trace(tuple(dataclasses.replace(r, body=evil) if r.id == "r1" else r
                        for r in b.trace.requests), b.trace.deadlines)
    issue = (write_bundle(dataclasses.replace(b, trace=trace), tmp_path) / "ISSUE.md").read_text()
    assert "  `````\n  ```\n  # Injected heading\n  ````\n  `````" in issue
