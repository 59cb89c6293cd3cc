"""`ordinance serve --http HOST:PORT`: Prometheus ``/metrics``, ``/healthz`` and ``/readyz``
for the enforcer a `serve` process runs (the monitor serves its own; docs/monitor.md).

* ``/readyz`` — 200 once a verified bundle is in force and the process owns at least one
  partition (it is deciding); 503 before, and from SIGTERM on (``stopping``) while the
  enforcer finishes its record and the listener closes (docs/deploy.md).
* ``/healthz`` — 503 when the decide loop has not polled for ``STUCK_AFTER_S`` seconds,
  or a processor (enforcer, controller, checkpointer) failed or is restarting after a
  storage failure (`supervisor`); 200 otherwise.

Counters are the enforcer's own report (``ordinance_enforcer_*_total``), read at scrape
time; ``ordinance_enforcer_bundle_info{bundle,policy_offset}`` names what is in force.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ordinance.processors.enforcer import Enforcer

STUCK_AFTER_S = 30.0
_COUNTERS = (
    ("decided", "Actions decided"),
    ("duplicates", "Actions already decided (redelivered or re-sent), not decided again"),
    ("swaps", "Ruleset swaps written"),
    ("takeovers", "Partitions taken over"),
    ("approvals", "Approval records answered"),
    ("identity_updates", "Identity updates written"),
    ("replayed", "Decisions records folded during takeovers"),
    ("refused_policy", "policy.active records not believed: unsigned, forged or stale"),
    ("internal_errors", "Records the enforcer failed on, answered fail-closed (internal_error)"),
    ("retaken", "Partitions taken over again after another enforcer's stale takeover marker"),
)


#: The enforcer running now (None while it restarts: `supervisor`).
Current = Callable[[], Enforcer | None]


class EnforcerCollector(Collector):
    def __init__(self, current: Current) -> None:
        self.current = current

    def collect(self) -> Iterator[Metric]:
        enforcer = self.current()
        if enforcer is None:
            return  # restarting: no counters rather than counters going back to zero
        report = enforcer.report
        for name, help_text in _COUNTERS:
            counter = CounterMetricFamily(f"ordinance_enforcer_{name}", help_text)
            counter.add_metric([], getattr(report, name))
            yield counter
        owned = GaugeMetricFamily("ordinance_enforcer_partitions", "Partitions this process owns")
        owned.add_metric([], len(enforcer.states))
        yield owned
        # Noted by the enforcer's own loop (`Enforcer.state_size`): the states are not
        # walked from this thread while that one changes them.
        ids, events = enforcer.state_size
        remembered = GaugeMetricFamily(
            "ordinance_enforcer_state_request_ids",
            "Request ids the owned partitions remember (bounded by the dedupe horizon)",
        )
        remembered.add_metric([], ids)
        yield remembered
        windows = GaugeMetricFamily(
            "ordinance_enforcer_state_window_events",
            "Allowed actions the owned partitions keep for windows (the longest window's)",
        )
        windows.add_metric([], events)
        yield windows
        info = GaugeMetricFamily(
            "ordinance_enforcer_bundle_info",
            "The verified bundle in force (1), by id and policy.changes offset",
            labels=["bundle", "policy_offset"],
        )
        ruleset = enforcer.ruleset
        if ruleset is not None:
            info.add_metric([ruleset.bundle_id, str(enforcer.policy_offset)], 1)
        yield info


def problems(enforcer: Enforcer | None, failures: Sequence[BaseException]) -> list[str]:
    found = [f"{type(f).__name__}: {f}" for f in failures]
    if enforcer is None:
        return found
    since = time.monotonic() - enforcer.last_poll if enforcer.last_poll else None
    if since is not None and since > STUCK_AFTER_S:
        found.append(f"stuck: the decide loop has not polled for {since:.0f}s")
    return found


def build_serve_app(
    enforcer: Enforcer | Current,
    failures: Sequence[BaseException] = (),
    stopping: threading.Event | None = None,
    health: Callable[[], list[str]] = lambda: [],
) -> Starlette:
    """``enforcer``: the one to report on, or how to find the one running now;
    ``health``: further problems (the supervisors')."""
    current: Current = enforcer if not isinstance(enforcer, Enforcer) else lambda: enforcer
    registry = CollectorRegistry()
    registry.register(EnforcerCollector(current))

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        found = [*problems(current(), failures), *health()]
        return JSONResponse({"healthy": not found, "problems": found}, 503 if found else 200)

    async def readyz(_: Request) -> Response:
        running = current()
        ruleset = running.ruleset if running is not None else None
        bundle = ruleset.bundle_id if ruleset is not None else None
        closing = stopping is not None and stopping.is_set()
        owned = sorted(running.states) if running is not None else []
        ready = bundle is not None and bool(owned) and not closing
        body = {"ready": ready, "stopping": closing, "bundle_id": bundle, "partitions": owned}
        return JSONResponse(body, 200 if ready else 503)

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
    )
