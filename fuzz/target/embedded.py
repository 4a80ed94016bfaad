"""The embedded target as one thing: install if needed, build if needed, start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fuzz.target import install, server
from fuzz.target.checkpoint import ensure_checkpoint
from fuzz.target.paths import TargetPaths, default_cache_root
from fuzz.target.server import ServerConfig, ServerState

Log = Callable[[str], None]


def target_paths(cache: Path | None = None) -> TargetPaths:
    return TargetPaths(cache if cache is not None else default_cache_root())


def up(paths: TargetPaths, config: ServerConfig = ServerConfig(), log: Log = print) -> ServerState:
    """Bring the embedded target up; every step is skipped when already done."""
    install.install(paths, log=log)
    checkpoint = ensure_checkpoint(paths, log=log)
    return server.start(paths, checkpoint, config, log=log)


def down(paths: TargetPaths, log: Log = print) -> bool:
    return server.stop(paths, log=log)


def restart(paths: TargetPaths, config: ServerConfig = ServerConfig(), log: Log = print) -> ServerState:
    """Stop whatever is recorded (dead or wedged) and start afresh."""
    server.stop(paths, log=log)
    return up(paths, config, log=log)
