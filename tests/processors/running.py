"""A real `Enforcer` in a background thread for tests that need answers on the log: the
client's fixtures, the HTTP gateway's and the MCP gateway's pipelines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ordinance.processors.enforcer import Enforcer
from ordinance.streams import open_log


@dataclass
class RunningEnforcer:
    enforcer: Enforcer
    failures: list[BaseException]

    def check(self) -> None:
        """Raise what killed the enforcer thread, if anything did."""
        if self.failures:
            raise self.failures[0]


@contextmanager
def enforcer_thread(
    url: str, *, ready_timeout: float = 60.0, **options: Any
) -> Iterator[RunningEnforcer]:
    """An `Enforcer` (``options`` are its keyword arguments: prefix, group, trust, ...) on
    its own log connection in a background thread, stopped with an Event.

    Yields once it has taken over every actions partition, so no answer waits for a group
    join or a takeover; on exit stops it and re-raises what killed it.
    """
    stop = threading.Event()
    with open_log(url) as log:
        running = RunningEnforcer(Enforcer(log, **options), [])
        partitions = len(log.partitions(running.enforcer.actions))

        def main() -> None:
            try:
                running.enforcer.run(stop=stop)
            except BaseException as exc:  # handed to the owner; a thread cannot raise
                running.failures.append(exc)

        thread = threading.Thread(target=main, name="enforcer", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + ready_timeout
            while len(running.enforcer.states) < partitions:
                running.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the enforcer took over no partitions in {ready_timeout}s")
                time.sleep(0.01)
            yield running
        finally:
            stop.set()
            thread.join()
        running.check()
