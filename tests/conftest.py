"""Shared fixtures. The fault server runs in its own thread so that sync tests can drive
the async runner with `asyncio.run` (no pytest-asyncio needed)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `from faults import ...`

from faults import FaultServer  # noqa: E402


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fresh fault-injecting server; hanging handlers give up after 5 s or at teardown."""
    with FaultServer(hang_s=5.0) as server:
        yield server
