"""The embedded real vLLM, started once per test session (installed on first use)."""

from __future__ import annotations

import pytest

from fuzz.runner import Endpoint
from fuzz.target import embedded, server


@pytest.fixture(scope="session")
def target_paths():
    return embedded.target_paths()


@pytest.fixture(scope="session")
def real_target(target_paths) -> Endpoint:
    """Reuses a running embedded target; stops it afterwards only if it started it."""
    started_here = server.running(target_paths) is None
    state = embedded.up(target_paths, log=print)
    yield Endpoint(base_url=state.base_url, model=state.model)
    if started_here:
        embedded.down(target_paths, log=print)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
