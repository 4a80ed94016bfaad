"""Keeps the target reachable between scenarios.

The embedded target is restarted when it died or wedged; an external endpoint is
waited for with backoff (vlfuzz cannot restart someone else's server). Either way
the campaign never fires requests into a dead server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fuzz.runner import Endpoint
from fuzz.target import server
from fuzz.target.paths import TargetPaths
from fuzz.target.server import ServerConfig, TargetError

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Default log: the engine prints nothing unless its caller asks."""


class TargetUnavailable(RuntimeError):
    """The target stayed unreachable for longer than we are willing to wait."""


@dataclass
class EmbeddedSupervisor:
    """Owns the embedded vLLM: knows how to restart it and what flags it runs with."""

    paths: TargetPaths
    config: ServerConfig
    endpoint: Endpoint
    log: Log = _quiet
    restarts: int = 0

    def healthy(self) -> bool:
        return server.health_status(self.endpoint.base_url) == 200

    def recover(self) -> None:
        from fuzz.target import embedded

        self.log("embedded target is down or wedged: restarting it")
        self.restarts += 1
        try:
            state = embedded.restart(self.paths, self.config, log=self.log)
        except TargetError as e:
            raise TargetUnavailable(str(e)) from e
        self.endpoint = Endpoint(base_url=state.base_url, model=state.model)

    def evidence(self) -> dict[str, object]:
        """What the server said lately (its log tail), for a bundle's evidence."""
        return {"server_log_tail": server.log_tail(self.paths.log_file, lines=80)}

    def identity(self) -> dict[str, object]:
        state = server.read_state(self.paths)
        return {"embedded": True, "server_argv": state.argv if state else None,
                "log_file": str(self.paths.log_file)}


@dataclass
class ExternalSupervisor:
    """An endpoint we do not own: wait for it to come back, with backoff (doubling
    from `initial_delay_s` up to `max_delay_s`); `stop` cuts the wait short."""

    endpoint: Endpoint
    max_wait_s: float = 600.0
    log: Log = _quiet
    waits: list[float] = field(default_factory=list)
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stop: threading.Event = field(default_factory=threading.Event)

    def healthy(self) -> bool:
        return server.health_status(self.endpoint.base_url) == 200

    def recover(self) -> None:
        started = time.monotonic()
        delay = self.initial_delay_s
        self.log(f"{self.endpoint.base_url} is not healthy: waiting for it (up to {self.max_wait_s:.0f}s)")
        while not self.healthy():
            waited = time.monotonic() - started
            if waited > self.max_wait_s or self.stop.is_set():
                self.waits.append(waited)
                why = "stopped while waiting" if self.stop.is_set() else "not 200"
                raise TargetUnavailable(f"{self.endpoint.base_url}/health {why} after {waited:.0f}s")
            self.stop.wait(min(delay, max(self.max_wait_s - waited, 0.01)))
            delay = min(delay * 2, self.max_delay_s)
        self.waits.append(time.monotonic() - started)

    def evidence(self) -> dict[str, object]:
        return {}

    def identity(self) -> dict[str, object]:
        return {"embedded": False}


Supervisor = EmbeddedSupervisor | ExternalSupervisor
