"""Start, stop and watch the embedded vLLM server.

The server runs detached in its own process group so `vlfuzz target up` can return
and a later `vlfuzz target down` (or a fresh clone) can find it again through a small
state file. Its output goes to a log file whose tail is shown when it dies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fuzz.target.paths import TargetPaths

Log = Callable[[str], None]
MODEL_NAME = "vlfuzz-tiny-qwen3-vl"


class TargetError(RuntimeError):
    """The embedded target could not be installed, started or reached."""


@dataclass(frozen=True)
class ServerConfig:
    """How the embedded server is launched; `extra_args` go to vLLM verbatim."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: pick a free port
    max_model_len: int = 8192
    max_images: int = 8
    kv_cache_gib: int = 1
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 600.0

    def argv(self, checkpoint: Path, port: int) -> list[str]:
        return [
            "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
            "--served-model-name", MODEL_NAME, "--host", self.host, "--port", str(port),
            "--max-model-len", str(self.max_model_len), "--dtype", "bfloat16",
            "--limit-mm-per-prompt", json.dumps({"image": self.max_images, "video": 0}),
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
            *self.extra_args,
        ]


@dataclass(frozen=True)
class ServerState:
    """What the state file records about a running server."""

    pid: int
    base_url: str
    model: str
    log_file: str
    argv: list[str] = field(default_factory=list)
    started_at: float = 0.0
    ready_after_s: float | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def health_status(base_url: str, timeout_s: float = 5.0) -> int | None:
    """HTTP status of GET /health, or None when nothing answers."""
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def read_state(paths: TargetPaths) -> ServerState | None:
    try:
        return ServerState(**json.loads(paths.state_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(paths: TargetPaths, state: ServerState) -> None:
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    os.replace(tmp, paths.state_file)


def log_tail(path: Path | str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def running(paths: TargetPaths) -> ServerState | None:
    """The recorded server if its process is alive and /health answers 200."""
    state = read_state(paths)
    if state and pid_alive(state.pid) and health_status(state.base_url) == 200:
        return state
    return None


def launch_flags(argv: Sequence[str] | None) -> tuple[str, ...] | None:
    """The flags a recorded launch (`ServerState.argv`, a bundle's `server_argv`) added to
    the embedded target's own (`ServerConfig.extra_args`), or None when `argv` is not a
    launch of the embedded target (an external server, or nothing recorded)."""
    base = ServerConfig().argv(Path("checkpoint"), 0)
    if not argv or len(argv) < len(base):
        return None
    if any(ours.startswith("-") and ours != theirs for ours, theirs in zip(base, argv)):
        return None
    return tuple(argv[len(base):])


def same_launch(recorded: Sequence[str], wanted: Sequence[str], port_matters: bool) -> bool:
    """Whether a running server was launched as wanted; its port counts only if one was asked for."""
    def masked(argv: Sequence[str]) -> list[str]:
        out = list(argv)
        if not port_matters:
            for i, arg in enumerate(out[:-1]):
                if arg == "--port":
                    out[i + 1] = "*"
        return out
    return masked(recorded) == masked(wanted)


def start(paths: TargetPaths, checkpoint: Path, config: ServerConfig, log: Log = print) -> ServerState:
    """Start the server unless a healthy one with the same flags is recorded; wait for /health.

    A server running with other flags (say, a hunt's `--server-arg`) is restarted rather
    than silently fuzzed in the wrong configuration."""
    current = running(paths)
    if current is not None:
        wanted = config.argv(checkpoint, config.port or 0)
        if same_launch(current.argv, wanted, port_matters=config.port is not None):
            log(f"embedded target already up at {current.base_url} (pid {current.pid})")
            return current
        log(f"embedded target at {current.base_url} runs with other flags; restarting it")
    stop(paths, log=lambda _m: None)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    port = config.port or free_port(config.host)
    argv = config.argv(checkpoint, port)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(config.kv_cache_gib),
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    with open(paths.log_file, "ab") as logf:
        logf.write(f"\n==== vlfuzz starting vLLM at {time.ctime()} ====\n".encode())
        logf.flush()
        proc = subprocess.Popen([str(paths.venv_python), *argv], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                cwd=paths.run_dir)
    base_url = f"http://{config.host}:{port}"
    state = ServerState(pid=proc.pid, base_url=base_url, model=MODEL_NAME,
                        log_file=str(paths.log_file), argv=argv, started_at=time.time())
    _write_state(paths, state)
    log(f"starting vLLM (pid {proc.pid}) on {base_url}; log: {paths.log_file}")
    started = time.monotonic()
    last_report = 0.0
    while True:
        elapsed = time.monotonic() - started
        if proc.poll() is not None:
            raise TargetError(f"vLLM exited with code {proc.returncode} during start-up; "
                              f"last log lines:\n{log_tail(paths.log_file)}")
        if health_status(base_url, timeout_s=2.0) == 200:
            break
        if elapsed > config.startup_timeout_s:
            stop(paths, log=log)
            raise TargetError(f"vLLM not healthy after {config.startup_timeout_s:.0f}s; "
                              f"last log lines:\n{log_tail(paths.log_file)}")
        if elapsed - last_report >= 10:
            last_report = elapsed
            tail = log_tail(paths.log_file, 1).strip()[:120]
            log(f"  waiting for /health ({elapsed:.0f}s) {tail}")
        time.sleep(1.0)
    state = ServerState(**{**asdict(state), "ready_after_s": round(time.monotonic() - started, 1)})
    _write_state(paths, state)
    log(f"embedded target ready at {base_url} after {state.ready_after_s:.0f}s")
    return state


def stop(paths: TargetPaths, log: Log = print, timeout_s: float = 30.0) -> bool:
    """Stop the recorded server (its whole process group); True if one was running."""
    state = read_state(paths)
    if state is None:
        return False
    was_alive = pid_alive(state.pid)
    if was_alive:
        log(f"stopping vLLM (pid {state.pid})")
        _signal_group(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(state.pid):
            _signal_group(state.pid, signal.SIGKILL)
    _signal_group(state.pid, signal.SIGKILL)  # stragglers (engine core) of a dead leader
    try:
        os.waitpid(state.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    paths.state_file.unlink(missing_ok=True)
    return was_alive


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def status(paths: TargetPaths) -> dict[str, object]:
    """A plain report of the recorded server: up, dead (process gone) or wedged."""
    state = read_state(paths)
    if state is None:
        return {"state": "down"}
    alive = pid_alive(state.pid)
    health = health_status(state.base_url) if alive else None
    verdict = "up" if alive and health == 200 else ("unhealthy" if alive else "dead")
    return {"state": verdict, "pid": state.pid, "base_url": state.base_url, "model": state.model,
            "health": health, "log_file": state.log_file, "ready_after_s": state.ready_after_s}
