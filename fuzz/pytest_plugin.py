"""pytest plugin: each failure bundle becomes a test item, so a project's own pytest
can gate on vlfuzz bundles (`pytest --vlfuzz-bundles corpora/bundles --vlfuzz-endpoint URL`).

FIXED passes, STILL FAILING fails, ERROR errors (a bundle that cannot be judged, e.g.
a server-log bundle without `--vlfuzz-server-log FILE`, is an error, never a pass).
The plugin loads in every pytest run
of every project that installs vlfuzz, so it is inert without `--vlfuzz-bundles` and
imports nothing heavy (aiohttp, the runner) at module level.

Seam for tests: items call the module attribute `replay_one` at run time, so a
conftest can replace it to avoid a live server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fuzz.replay import ReplayResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlfuzz", "replay vlfuzz failure bundles as tests")
    group.addoption("--vlfuzz-bundles", action="append", default=[], metavar="PATH",
                    help="bundle folder, .tar.gz, or directory of bundles (repeatable)")
    group.addoption("--vlfuzz-endpoint", metavar="URL",
                    help="base URL of the OpenAI-compatible server to replay against")
    group.addoption("--vlfuzz-model", metavar="ID",
                    help="model id (default: the one recorded in each bundle)")
    group.addoption("--vlfuzz-runs", type=int, default=3, metavar="N",
                    help="replays per bundle; still failing if any run fails (default 3)")
    group.addoption("--vlfuzz-server-log", type=Path, default=None, metavar="FILE",
                    help="the target's log file, followed during each replay (server-log "
                         "bundles cannot be judged without it)")
    group.addoption("--vlfuzz-api-key", default=None, metavar="KEY",
                    help="bearer token for the endpoint (default: $VLFUZZ_API_KEY); "
                         "never written out")
    group.addoption("--vlfuzz-header", action="append", default=[], metavar="NAME:VALUE",
                    help="extra header sent with every request (repeatable); values are "
                         "never written out")


def _headers(config: pytest.Config) -> tuple[tuple[str, str], ...]:
    from fuzz.redact import parse_header

    try:
        return tuple(parse_header(h) for h in config.getoption("vlfuzz_header"))
    except ValueError as e:
        raise pytest.UsageError(f"--vlfuzz-header: {e}") from None


def _api_key(config: pytest.Config) -> str | None:
    import os

    return config.getoption("vlfuzz_api_key") or os.environ.get("VLFUZZ_API_KEY") or None


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("vlfuzz_bundles") and not config.getoption("vlfuzz_endpoint"):
        raise pytest.UsageError("--vlfuzz-bundles needs --vlfuzz-endpoint URL "
                                "(the server to replay the bundles against)")
    if config.getoption("vlfuzz_runs") < 1:
        raise pytest.UsageError("--vlfuzz-runs must be >= 1")
    _headers(config)  # a malformed header is a usage error before anything runs


def replay_one(bundle_path: Path, *, endpoint_url: str, model: str | None,
               runs: int, server_log: Path | None = None, api_key: str | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> ReplayResult:
    """Replay one bundle against the live endpoint (replaceable in tests), sending
    `api_key` as a bearer token and `headers` with every request."""
    import asyncio

    from fuzz.auth import AuthEndpoint
    from fuzz.replay import replay_bundle

    endpoint = AuthEndpoint(endpoint_url, model or "", api_key=api_key, extra_headers=headers)
    return asyncio.run(replay_bundle(bundle_path, endpoint, runs=runs, server_log=server_log))


class BundleItem(pytest.Item):
    """One bundle. Replays in setup so that ERROR is a setup error and STILL FAILING
    a test failure, matching JUnit's error/failure split."""

    def __init__(self, *, bundle_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bundle_path = bundle_path
        self.result: ReplayResult | None = None

    def setup(self) -> None:
        opt = self.config.getoption
        # Passed only when given, so a conftest's replacement written before the
        # option existed keeps working.
        extra: dict[str, Any] = {}
        if opt("vlfuzz_server_log"):
            extra["server_log"] = opt("vlfuzz_server_log")
        if _api_key(self.config):
            extra["api_key"] = _api_key(self.config)
        if _headers(self.config):
            extra["headers"] = _headers(self.config)
        self.result = replay_one(self.bundle_path, endpoint_url=opt("vlfuzz_endpoint"),
                                 model=opt("vlfuzz_model"), runs=opt("vlfuzz_runs"), **extra)
        if self.result.verdict.value == "ERROR":
            pytest.fail(self.result.line(), pytrace=False)  # in setup: reported as error

    def runtest(self) -> None:
        if self.result is not None and self.result.verdict.value == "STILL_FAILING":
            pytest.fail(self.result.line(), pytrace=False)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.bundle_path, None, f"vlfuzz bundle {self.name}"


class BundleGroup(pytest.Collector):
    """The bundles named by --vlfuzz-bundles; a path that is not a bundle becomes an
    item that errors, so a typo cannot turn the gate green."""

    def collect(self) -> list[BundleItem]:
        from fuzz.bundle import BundleError, find_bundles

        items: list[BundleItem] = []
        for raw in self.config.getoption("vlfuzz_bundles"):
            try:
                found = find_bundles(Path(raw))
            except BundleError:
                found = [Path(raw)]
            items += [BundleItem.from_parent(self, name=p.name, bundle_path=p) for p in found]
        return items


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Append bundle items before -k/-m deselection runs, so they filter like tests."""
    if not config.getoption("vlfuzz_bundles"):
        return
    group = BundleGroup.from_parent(session, name="vlfuzz-bundles", nodeid="vlfuzz-bundles")
    found = group.collect()
    # Report them like any collected node, so "collected N items" counts bundles too.
    config.hook.pytest_collectreport(report=pytest.CollectReport(
        group.nodeid, "passed", None, found))
    items.extend(found)
