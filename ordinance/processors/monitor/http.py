"""What the monitor serves: Prometheus ``/metrics``, ``/healthz``, ``/readyz`` and a JSON
report (``/v1/report``), on starlette, run by uvicorn in a thread beside the loop.

Metrics are read from the fold (`MonitorState`) at scrape time by a custom collector, so
every value is a count of records in the log — a test recomputes them from the log and
compares. Names follow Prometheus conventions (``_total`` counters, ``_seconds``
histograms, base units):

* ``ordinance_decisions_total{bundle,tool,effect,code}``
* ``ordinance_rule_decisions_total{bundle,policy,rule,effect}`` — per rule in rule_ids
* ``ordinance_fail_closed_total{code}`` — denies no policy decided
* ``ordinance_arm_decisions_total{bundle,arm,effect}`` — decisions of a canary, per arm
* ``ordinance_shadow_disagreements_total{bundle,shadow_bundle,effect,shadow_effect}`` —
  decisions a shadow bundle would have answered differently
* ``ordinance_decision_latency_seconds`` — intent event time to decision evaluation time
* ``ordinance_alerts_open{kind}``, ``ordinance_alerts_total{kind}``
* ``ordinance_consumer_lag_records{group}``, ``ordinance_monitor_records_total``,
  ``ordinance_monitor_position{partition}`` (next decisions offset)
* ``ordinance_monitor_fenced_records_total{partition,enforcer}`` — a zombie enforcer's
  writes after another's takeover, left out of every count above (`fold`)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ordinance.jsonutil import canonical_json
from ordinance.processors.monitor.dashboard import dashboard
from ordinance.processors.monitor.fold import JUDGED_CODES, LATENCY_BUCKETS, MonitorState
from ordinance.processors.monitor.runner import Monitor
from ordinance.processors.monitor.views import TIMELINE_LIMIT

#: Seconds without a successful poll after which the monitor reports itself unhealthy.
STUCK_AFTER_S = 30.0


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        m = self.monitor
        with m.lock:
            state, health = m.state, m.health
            decisions = CounterMetricFamily(
                "ordinance_decisions",
                "Decisions on the decisions log",
                labels=["bundle", "tool", "effect", "code"],
            )
            fail_closed: dict[str, int] = {}
            for (bundle, tool, effect, code), n in sorted(state.decisions.items()):
                decisions.add_metric([bundle, tool, effect, code], n)
                if effect == "deny" and code not in JUDGED_CODES:
                    fail_closed[code] = fail_closed.get(code, 0) + n
            rules = CounterMetricFamily(
                "ordinance_rule_decisions",
                "Decisions each rule took part in (one per rule id of a decision)",
                labels=["bundle", "policy", "rule", "effect"],
            )
            for (bundle, policy, rule, effect), n in sorted(state.rule_hits.items()):
                rules.add_metric([bundle, policy, rule, effect], n)
            arms = CounterMetricFamily(
                "ordinance_arm_decisions",
                "Decisions of a canary rollout, by the arm and bundle that decided",
                labels=["bundle", "arm", "effect"],
            )
            for (bundle, arm, effect), n in sorted(state.arm_decisions.items()):
                arms.add_metric([bundle, arm, effect], n)
            shadow = CounterMetricFamily(
                "ordinance_shadow_disagreements",
                "Decisions a shadow bundle would have answered differently (never enforced)",
                labels=["bundle", "shadow_bundle", "effect", "shadow_effect"],
            )
            for key, n in sorted(state.shadow_disagreements.items()):
                shadow.add_metric(list(key), n)
            closed = CounterMetricFamily(
                "ordinance_fail_closed", "Denies no policy decided", labels=["code"]
            )
            for code, n in sorted(fail_closed.items()):
                closed.add_metric([code], n)
            cumulative, buckets = 0, []
            for bound, n in zip(LATENCY_BUCKETS, state.latency_buckets, strict=True):
                cumulative += n
                buckets.append((repr(bound), float(cumulative)))
            buckets.append(("+Inf", float(state.latency_count)))
            latency = HistogramMetricFamily(
                "ordinance_decision_latency_seconds",
                "Intent event time to decision evaluation time",
                buckets=buckets,
                sum_value=state.latency_sum,
            )
            open_alerts = GaugeMetricFamily(
                "ordinance_alerts_open", "Alerts open now", labels=["kind"]
            )
            counts: dict[str, int] = {}
            for alert in m.open_alerts_unlocked():
                counts[alert["kind"]] = counts.get(alert["kind"], 0) + 1
            for kind, n in sorted(counts.items()):
                open_alerts.add_metric([kind], n)
            written = CounterMetricFamily(
                "ordinance_alerts", "Alerts the fold raised", labels=["kind"]
            )
            for kind, n in sorted(state.alerts_written.items()):
                written.add_metric([kind], n)
            lag = GaugeMetricFamily(
                "ordinance_consumer_lag_records",
                "Records a processor group has yet to commit",
                labels=["group"],
            )
            for group, behind in sorted(health.lag.items()):
                lag.add_metric([group], behind)
            folded = CounterMetricFamily(
                "ordinance_monitor_records", "Decisions-log records this monitor folded"
            )
            folded.add_metric([], health.records)
            position = GaugeMetricFamily(
                "ordinance_monitor_position",
                "Next decisions offset per partition",
                labels=["partition"],
            )
            for partition, offset in sorted(state.positions.items()):
                position.add_metric([str(partition)], offset)
            fenced = CounterMetricFamily(
                "ordinance_monitor_fenced_records",
                "Records an enforcer wrote after another's takeover of the partition (a "
                "zombie writer): never acted on, not counted as decisions",
                labels=["partition", "enforcer"],
            )
            for (partition, writer), n in sorted(state.fenced.items()):
                fenced.add_metric([str(partition), writer], n)
        yield from (decisions, rules, arms, shadow, closed, latency, open_alerts, written)
        yield from (lag, folded, position, fenced)


def health_problems(monitor: Monitor) -> list[str]:
    with monitor.lock:
        health = monitor.health
        problems = []
        if health.error:
            problems.append(f"failing: {health.error}")
        since = monitor.clock() - (health.last_poll or health.started)
        if since > STUCK_AFTER_S:
            problems.append(f"stuck: no successful poll for {since:.0f}s")
        return problems


def report(monitor: Monitor) -> dict[str, Any]:
    """The JSON report: totals, per bundle/tool/effect counts, the canary arms and shadow
    disagreements, the rollout timeline, the latest denials (newest first), open alerts,
    health (what the dashboard at ``/`` shows)."""
    problems = health_problems(monitor)
    with monitor.lock:
        state, health = monitor.state, monitor.health
        rows = [
            {"bundle_id": b, "tool": t, "effect": e, "code": c, "decisions": n}
            for (b, t, e, c), n in sorted(state.decisions.items())
        ]
        arms = [
            {"bundle_id": b, "arm": a, "effect": e, "decisions": n}
            for (b, a, e), n in sorted(state.arm_decisions.items())
        ]
        shadow = [
            {
                "bundle_id": b,
                "shadow_bundle_id": s,
                "effect": e,
                "shadow_effect": se,
                "decisions": n,
            }
            for (b, s, e, se), n in sorted(state.shadow_disagreements.items())
        ]
        canaries = [
            {
                "partition": partition,
                "stable_bundle_id": watch.stable,
                "candidate_bundle_id": watch.candidate,
                "canary_percent": watch.percent,
                "auto_rollback": watch.auto_rollback,
                "policy_offset": watch.policy_offset,
                # the samples the canary analysis compares (follow-ups not counted again)
                "arms": {
                    arm: {"decisions": counts.n, "denies": counts.deny}
                    for arm, counts in sorted(watch.arms.items())
                },
            }
            for partition, watch in sorted(state.canaries.items())
        ]
        out = {
            "totals": state.totals(),
            "timeline": timeline(state, monitor.rollbacks),
            "denials": state.denials.latest(),
            "decisions": rows,
            "arm_decisions": arms,
            "shadow_disagreements": shadow,
            "canaries": canaries,
            "rollbacks": list(monitor.rollbacks),
            "healthy": not problems,
            "problems": problems,
            "last_poll_at": (
                dt.datetime.fromtimestamp(health.last_poll, dt.UTC) if health.last_poll else None
            ),
            "generated_at": dt.datetime.fromtimestamp(monitor.clock(), dt.UTC),
            "positions": {str(p): o for p, o in sorted(state.positions.items())},
            "records": health.records,
            "undecodable": health.undecodable,
            "fenced": [
                {"partition": partition, "enforcer_id": writer, "records": n}
                for (partition, writer), n in sorted(state.fenced.items())
            ],
            "lag": dict(health.lag),
            "ready": health.ready,
            "config": monitor.config.to_json(),
            "open_alerts": monitor.open_alerts_unlocked(),
        }
    parsed: dict[str, Any] = orjson.loads(canonical_json(out))  # decimals, times as text
    return parsed


def timeline(state: MonitorState, rollbacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fold's rollout timeline with the rollbacks this monitor wrote, in order of the
    policy.changes offset (a rollback before the swaps its event caused), oldest first,
    the last ``TIMELINE_LIMIT``."""
    entries = state.timeline.items()
    for rollback in rollbacks:
        offset = int(rollback["change_offset"])
        key = (offset, 0, str(rollback["alert_id"]), 0, 0, 0)
        entry = {
            "event": "rolled_back",
            "policy_offset": offset,
            "at": rollback["at"],
            "candidate_bundle_id": rollback["candidate"],
            "rollout_policy_offset": rollback["policy_offset"],
            "alert_id": rollback["alert_id"],
            "message": rollback["reason"],
        }
        entries.append((key, entry))
    entries.sort(key=lambda item: item[0])
    return [entry for _, entry in entries[-TIMELINE_LIMIT:]]


def build_app(monitor: Monitor) -> Starlette:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        problems = health_problems(monitor)
        return JSONResponse(
            {"healthy": not problems, "problems": problems}, 503 if problems else 200
        )

    async def readyz(_: Request) -> Response:
        with monitor.lock:
            ready = monitor.health.ready
        return JSONResponse({"ready": ready}, 200 if ready else 503)

    async def report_json(_: Request) -> Response:
        return JSONResponse(report(monitor))

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/report", report_json),
            Route("/", dashboard),
            Route("/dashboard", dashboard),
        ]
    )
