"""The embedded target's pure parts: cache layout, launch flags, pip isolation,
state handling when nothing runs. (Starting the real server is an integration test.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.target import install, server
from fuzz.target.checkpoint import checkpoint_dir
from fuzz.target.paths import TargetPaths, default_cache_root
from fuzz.target.server import ServerConfig, ServerState


def test_cache_root_honours_override_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("VLFUZZ_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.delenv("VLFUZZ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "vlfuzz"


def test_everything_lives_under_the_cache_root(tmp_path):
    paths = TargetPaths(tmp_path)
    for p in (paths.venv, paths.checkpoints, paths.state_file, paths.log_file, checkpoint_dir(paths)):
        assert tmp_path in p.parents


def test_launch_flags_match_the_verified_recipe():
    argv = ServerConfig(extra_args=("--max-num-seqs", "4")).argv(Path("/ckpt"), 8123)
    joined = " ".join(argv)
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enable-auto-tool-choice", "--tool-call-parser hermes", "--host 127.0.0.1",
                 "--port 8123", "--max-model-len 8192", "--model /ckpt"):
        assert flag in joined
    assert json.loads(argv[argv.index("--limit-mm-per-prompt") + 1]) == {"image": 8, "video": 0}
    assert argv[-2:] == ["--max-num-seqs", "4"]


def test_a_running_server_is_reused_only_when_launched_with_the_same_flags():
    ckpt = Path("/ckpt")
    running = ServerConfig().argv(ckpt, 40001)
    assert server.same_launch(running, ServerConfig().argv(ckpt, 0), port_matters=False)
    hunt = ServerConfig(extra_args=("--no-enable-prefix-caching",)).argv(ckpt, 0)
    assert not server.same_launch(running, hunt, port_matters=False)
    assert not server.same_launch(running, ServerConfig(max_model_len=2048).argv(ckpt, 0),
                                  port_matters=False)
    assert not server.same_launch(running, ServerConfig(port=40002).argv(ckpt, 40002),
                                  port_matters=True)


def test_a_recorded_launch_gives_back_the_flags_it_added():
    """What `vlfuzz replay` restarts the embedded target with for a bundle."""
    flags = ("--structured-outputs-config", '{"backend": "outlines"}', "--max-model-len", "2048")
    recorded = ServerConfig(extra_args=flags).argv(Path("/elsewhere/ckpt"), 45193)
    assert server.launch_flags(recorded) == flags
    assert server.launch_flags(ServerConfig().argv(Path("/c"), 1)) == ()
    assert server.launch_flags(None) is None and server.launch_flags([]) is None
    external = ["vllm", "serve", "Qwen/Qwen3-VL-2B", "--port", "8000"] + ["--x"] * 20
    assert server.launch_flags(external) is None


def test_pypi_only_install_hides_the_local_wheel_folder(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    env = install._pypi_only_env()
    assert "PIP_FIND_LINKS" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull


def test_an_unfinished_venv_is_not_taken_as_installed(tmp_path):
    paths = TargetPaths(tmp_path)
    paths.venv_python.parent.mkdir(parents=True)
    paths.venv_python.write_text("")
    assert not install.is_installed(paths)
    paths.venv_marker.write_text("done")
    assert install.is_installed(paths)


def test_status_and_stop_with_nothing_recorded(tmp_path):
    paths = TargetPaths(tmp_path)
    assert server.status(paths) == {"state": "down"}
    assert server.stop(paths, log=lambda m: None) is False


def test_a_recorded_server_whose_process_is_gone_is_dead(tmp_path):
    paths = TargetPaths(tmp_path)
    paths.run_dir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    paths.state_file.write_text(json.dumps(ServerState(
        pid=proc.pid, base_url="http://127.0.0.1:9", model="m", log_file=str(paths.log_file)).__dict__))
    assert server.status(paths)["state"] == "dead"
    assert server.running(paths) is None
    assert server.stop(paths, log=lambda m: None) is False
    assert not paths.state_file.exists()


def test_a_corrupt_state_file_reads_as_nothing_running(tmp_path):
    paths = TargetPaths(tmp_path)
    paths.run_dir.mkdir(parents=True)
    paths.state_file.write_text("{not json")
    assert server.read_state(paths) is None
    assert server.status(paths) == {"state": "down"}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("10m", 600), ("8h", 28800), ("1.5h", 5400)])
def test_durations_parse(text, seconds):
    from fuzz.cli import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1m", "soon", "5x", ""])
def test_bad_durations_are_rejected(text):
    import argparse

    from fuzz.cli import parse_duration

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
