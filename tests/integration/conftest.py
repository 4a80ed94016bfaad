"""The embedded real vLLM, started once per test session (installed on first use).

Tests may kill or crash the target (that is what a fuzzer finds); `real_target`
brings it back before each test that needs it, so one crash does not fail the rest.
"""

from __future__ import annotations

import pytest

from fuzz.runner import Endpoint
from fuzz.target import embedded, server


@pytest.fixture(scope="session")
def target_paths():
    return embedded.target_paths()


@pytest.fixture(scope="session")
def _session_target(target_paths):
    """Stops the target at the end only if this session started it."""
    started_here = server.running(target_paths) is None
    embedded.up(target_paths, log=print)
    yield
    if started_here:
        embedded.down(target_paths, log=print)


@pytest.fixture
def real_target(target_paths, _session_target) -> Endpoint:
    state = embedded.up(target_paths, log=print)  # no-op when healthy, restart when not
    return Endpoint(base_url=state.base_url, model=state.model)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
