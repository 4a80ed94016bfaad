"""Build the tiny Qwen3-VL checkpoint into the cache, once per builder version.

The folder is keyed by a hash of the builder script, so changing how the checkpoint
is built makes a new one while an unchanged clone reuses the old.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from fuzz.target.paths import TargetPaths

BUILDER = Path(__file__).with_name("build_checkpoint.py")
DONE_MARKER = "vlfuzz-checkpoint.json"


def checkpoint_dir(paths: TargetPaths) -> Path:
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]
    return paths.checkpoints / f"tiny-qwen3-vl-{digest}"


def ensure_checkpoint(paths: TargetPaths, log: Callable[[str], None] = print) -> Path:
    """The checkpoint folder, built (atomically, in seconds) if it is not there yet."""
    out = checkpoint_dir(paths)
    if (out / DONE_MARKER).is_file():
        return out
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    log(f"building tiny Qwen3-VL checkpoint into {out}")
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=paths.checkpoints))
    try:
        proc = subprocess.run([str(paths.venv_python), str(BUILDER), str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            from fuzz.target.server import TargetError

            raise TargetError(f"checkpoint build failed:\n{proc.stderr[-4000:]}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
