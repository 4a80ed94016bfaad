"""The CLI's output piped into a reader that leaves early (`| head`) is not an error."""
import os
import subprocess
import sys
from pathlib import Path

BUNDLE = next(Path(__file__).parents[2].joinpath("corpora", "bundles").glob("tool-call-invalid-*"))


def test_closed_stdout_exits_cleanly_without_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "fuzz.cli", "bundle", "show", str(BUNDLE)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
