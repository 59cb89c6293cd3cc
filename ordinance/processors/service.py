"""``ordinance serve`` as a process: the controller, the enforcer and (with a signing key)
the audit checkpointer, each supervised on its own log handle, plus ``--http``.

The command module parses options and prints; this module owns the wiring. Each
processor runs under a `Supervisor`: a transient storage failure (the log or the state
cache) makes it unhealthy and it restarts by itself with backoff, from its committed
position; any other failure stops the process (a configuration error, another target's
enforcer holding the partitions), as it did before. ``/healthz`` reports the
supervisors' problems beside the enforcer's own (a stuck loop), and ``/metrics`` and
``/readyz`` follow the enforcer running now.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.keys import Signer
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.controller import DEFAULT_TARGET
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer, EnforcerReport
from ordinance.processors.http_server import HttpServer
from ordinance.processors.masking import Masking
from ordinance.processors.serve_http import build_serve_app
from ordinance.processors.supervisor import Supervisor
from ordinance.streams import Log, open_log
from ordinance.streams.topics import DEFAULT_PREFIX


@dataclass(frozen=True)
class ServeOptions:
    log_url: str
    target: str = DEFAULT_TARGET
    prefix: str = DEFAULT_PREFIX
    enforcer_id: str | None = None  # None: a random name, kept across restarts
    state_dir: Path | None = None
    masking: Masking | None = None
    checkpoint_signer: Signer | None = None  # also run the audit checkpointer
    controller_signer: PrincipalSigner | None = None  # signs policy.active (`active_auth`)
    trust: TrustRoot | None = None
    max_clock_skew_s: float | None = None
    dedupe_horizon_s: float | None = None
    http: tuple[str, int] | None = None  # HOST, PORT of /metrics, /healthz, /readyz


@dataclass
class ServeOutcome:
    report: EnforcerReport  # summed over the enforcer's runs
    restarts: dict[str, int]  # per processor
    failed: str | None = None  # the processor whose failure stopped the process
    failure: BaseException | None = None


@dataclass
class _Running:
    """The enforcer of the current run (None while it restarts), and every run's report."""

    enforcer: Enforcer | None = None
    reports: list[EnforcerReport] = field(default_factory=list)

    def total(self) -> EnforcerReport:
        summed = EnforcerReport()
        for report in self.reports:
            for f in dataclasses.fields(EnforcerReport):
                setattr(summed, f.name, getattr(summed, f.name) + getattr(report, f.name))
        return summed


def stable_enforcer_id() -> str:
    """A random name for an enforcer, kept by this process across its restarts."""
    return f"enforcer-{uuid.uuid4().hex[:8]}"


def serve(
    options: ServeOptions,
    stop: threading.Event,
    progress: Callable[[str], None] = lambda _message: None,
    on_http: Callable[[int], None] = lambda _port: None,
) -> ServeOutcome:
    """Run until ``stop`` is set (or a processor fails for good, which sets it)."""
    enforcer_id = options.enforcer_id or stable_enforcer_id()
    running = _Running()

    def enforce(log: Log) -> None:
        enforcer = Enforcer(
            log,
            state_dir=options.state_dir,
            enforcer_id=enforcer_id,
            target=options.target,
            progress=progress,
            masking=options.masking,
            max_clock_skew_s=options.max_clock_skew_s,
            trust=options.trust,
            dedupe_horizon_s=options.dedupe_horizon_s,
            prefix=options.prefix,
            group=f"{options.prefix}enforcer",  # "ordinance.enforcer" for the default prefix
        )
        running.enforcer = enforcer
        running.reports.append(enforcer.report)
        try:
            enforcer.run(stop=stop)
        finally:
            running.enforcer = None

    def control(log: Log) -> None:
        run_controller(
            log,
            stop=stop,
            progress=progress,
            trust=options.trust,
            prefix=options.prefix,
            group=f"{options.prefix}controller",  # one group per environment
            signer=options.controller_signer,
        )

    def supervise(name: str, work: Callable[[Log], object]) -> Supervisor:
        return Supervisor(name, lambda: open_log(options.log_url), work, stop, progress)

    supervisors = [supervise("controller", control), supervise("enforcer", enforce)]
    signer = options.checkpoint_signer
    if signer is not None:
        supervisors.append(
            supervise(
                "checkpointer",
                lambda log: Checkpointer(log, signer, progress=progress, prefix=options.prefix).run(
                    stop=stop
                ),
            )
        )
    server = None
    if options.http is not None:
        app = build_serve_app(
            lambda: running.enforcer,
            stopping=stop,
            health=lambda: [p for s in supervisors for p in s.problems()],
        )
        server = HttpServer(app, *options.http)
        server.start()
        on_http(server.bound_port)
    threads = [
        threading.Thread(target=s.run, name=f"ordinance-{s.name}", daemon=True) for s in supervisors
    ]
    for thread in threads:
        thread.start()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if server is not None:
            server.stop()
    failed = next((s for s in supervisors if s.fatal is not None), None)
    return ServeOutcome(
        running.total(),
        {s.name: s.restarts for s in supervisors},
        failed.name if failed is not None else None,
        failed.fatal if failed is not None else None,
    )
