"""Keep a processor running through transient storage failures.

A processor (the enforcer, the controller, the checkpointer) is correct to stop when its
log fails under it: every write it had not committed is either on the log, where the next
run's fold finds it, or not, and is redone — effectively-once never depended on the
process surviving. What a long-running service adds is patience: a log made read-only, a
full disk or a lock held by another process (a backup, an operator's ``sqlite3`` shell)
heals, and the process should resume by itself rather than exit and wait for a human.

`Supervisor.run` starts the processor's work over a fresh log handle and, when it fails
with a `LogError` or a `StateCacheError` (the storage, not the input: a bad record
never raises past a processor loop), marks itself unhealthy with the reason, waits with
exponential backoff (`BACKOFF_S`, doubling up to `MAX_BACKOFF_S`, cut short by ``stop``),
and starts it again — from its committed position, like any restart. Any other failure
(a configuration error, another target holding the partitions) is not transient: it is
recorded in ``fatal`` and sets ``stop``, as before. Health is read by ``serve --http``'s
``/healthz``: a processor waiting to restart is a problem with its reason and attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ordinance.processors.state_cache import StateCacheError
from ordinance.streams import Log
from ordinance.streams.errors import LogError

BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: A restarted processor counts as healthy again once it has run this long.
HEALTHY_AFTER_S = 5.0
#: What a failing log or state cache raises: the storage, which may heal.
TRANSIENT: tuple[type[BaseException], ...] = (LogError, StateCacheError)


@dataclass
class Supervisor:
    """Runs ``work`` on a log from ``open_log()`` until ``stop``, restarting it after
    transient failures (module docstring)."""

    name: str
    open_log: Callable[[], Log]
    work: Callable[[Log], object]
    stop: threading.Event
    progress: Callable[[str], None] = lambda _message: None
    monotonic: Callable[[], float] = time.monotonic
    restarts: int = 0
    failing: str | None = None  # the last transient failure
    fatal: BaseException | None = None
    _running_since: float | None = None  # monotonic start of the current run
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self) -> list[str]:
        """For ``/healthz``: empty while the processor runs (and, after a failure, once
        it has run `HEALTHY_AFTER_S` without failing again)."""
        with self._lock:
            if self.fatal is not None:
                return [f"{self.name} stopped: {type(self.fatal).__name__}: {self.fatal}"]
            since = self._running_since
            recovering = since is None or self.monotonic() - since < HEALTHY_AFTER_S
            if self.failing is not None and recovering:
                return [f"{self.name} restarting (attempt {self.restarts}): {self.failing}"]
        return []

    def run(self) -> None:
        backoff = BACKOFF_S
        while not self.stop.is_set():
            started = self.monotonic()
            try:
                with self.open_log() as log:
                    with self._lock:
                        self._running_since = self.monotonic()
                    self.work(log)
                return  # the work ends only when asked to stop
            except TRANSIENT as exc:
                if self.stop.is_set():
                    return
                if self.monotonic() - started > MAX_BACKOFF_S:
                    backoff = BACKOFF_S  # it ran a while: a new failure, not the same one
                with self._lock:
                    self.restarts += 1
                    self.failing = f"{type(exc).__name__}: {exc}"
                    self._running_since = None
                self.progress(
                    f"{self.name}: {type(exc).__name__}: {exc} — restarting in {backoff:.1f}s "
                    f"(attempt {self.restarts})"
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except BaseException as exc:
                with self._lock:
                    self.fatal = exc
                self.stop.set()
                return
