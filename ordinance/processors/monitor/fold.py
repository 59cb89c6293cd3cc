"""The monitor's state: a deterministic fold of ``agent.decisions``, record by record.

Counts (what Prometheus scrapes) are sums, so they do not depend on the order partitions
are read in. Alerts are judged per partition, at the record that makes a condition true
or false, with time taken from the decisions themselves (``evaluated_at``), never from a
clock: folding the same partition again yields the same alerts, with the same ids, at
the same offsets — a monitor restarted from its committed position, or a replay by an
auditor, agrees with the one that wrote them.

Two conditions are judged on a sliding window of each partition's decisions (the last
``window_s`` seconds of evaluation time) against the trailing baseline before it
(``baseline_s``):

* ``drift``: the window's deny rate differs from the baseline's by at least
  ``drift.threshold``, and a two-proportion z-test (pooled) says so with p < ``alpha``,
  on at least ``min_samples`` / ``min_baseline`` decisions. The evidence carries both
  rates, both sample sizes, z and p, so a reviewer can recompute it.
* ``fail_closed_spike``: at least ``fail_closed.min_count`` denies in the window that no
  policy decided (no bundle, undecodable, wrong partition, clock skew, stale, identity
  failures, invalid requests, evaluation errors), making at least ``fraction`` of it.

An alert opens once and stays open until its condition clears with hysteresis (half the
threshold), which writes a ``<kind>_resolved`` alert: one alert per episode, not per
record.

Two bounded views for the dashboard (`views`) are folded too, each the top N of its records under a
fixed key, so that they — like the counts — do not depend on how the partitions were
interleaved (a kept entry was never evicted, so every record of it was merged in):

* the **rollout timeline** (`Timeline`, the last ``TIMELINE_LIMIT`` entries): each
  ``RulesetSwap``, de-duplicated across partitions by the policy.changes offset that
  caused it and what it put in force (bundle, mode, candidate, percentage, auto-rollback;
  the partitions that swapped and the first and last time), and each
  ``canary_regression`` alert opening or resolving, ordered by the policy.changes offset
  in force, then swaps before alerts, then time;
* the **recent denials** (`RecentDenials`, the last ``DENIALS_LIMIT``): the deny decisions
  with the latest (evaluation time, partition, offset).

Fenced writes (`fence.py`: a Decision, RulesetSwap or IdentityUpdate by an enforcer other
than the one of the partition's latest ``EnforcerTakeover``) are not folded: a zombie
enforcer's decision was never acted on — the owner decides that request again — so
counting it would count the request twice and could open an alert on decisions nobody
enforced. They are counted apart per partition and writer (``fenced``). The owner is
followed through the markers as they are read; a restarted monitor folds each partition
from the start of retention again, so it knows the owner at every offset it judges.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ordinance.processors.audit.fence import TAKEOVER, fenced_write
from ordinance.processors.monitor.canary import (
    CANARY_REGRESSION,
    CanaryWatch,
    look_alpha,
    one_sided_z,
    watch_from_swap,
)
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.views import RecentDenials, Timeline

# Codes of decisions a policy (or a person) made; every other deny failed closed.
JUDGED_CODES = frozenset(
    {
        "matched",
        "default",
        "approved",
        "approval_rejected",
        "approval_expired",
        "approval_recorded",
        "approval_refused",
        "approval_conflict",
    }
)
# Records answering an approval (follow-ups and approvals short of the count) answer a
# decision already counted in its arm: not a second sample.
FOLLOW_UP_CODES = frozenset(
    {"approved", "approval_rejected", "approval_expired", "approval_recorded", "approval_refused"}
)
DRIFT = "drift"
FAIL_CLOSED_SPIKE = "fail_closed_spike"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def failed_closed(datum: dict[str, Any]) -> bool:
    return datum["effect"] == "deny" and datum.get("code") not in JUDGED_CODES


@dataclass
class _Counts:
    n: int = 0
    deny: int = 0
    fail_closed: int = 0

    def add(self, deny: bool, fail_closed: bool, sign: int) -> None:
        self.n += sign
        self.deny += sign * deny
        self.fail_closed += sign * fail_closed


@dataclass
class PartitionWindow:
    """One partition's decisions in the observed window and the baseline before it."""

    observed: deque[tuple[float, bool, bool]] = field(default_factory=deque)
    baseline: deque[tuple[float, bool, bool]] = field(default_factory=deque)
    obs: _Counts = field(default_factory=_Counts)
    base: _Counts = field(default_factory=_Counts)
    now: float = float("-inf")  # latest evaluation time seen
    # Drift opens only at a look: the first decision at or after this time, one per window
    # (`MonitorState._judge`).
    next_look: float = float("-inf")

    def add(self, at: float, deny: bool, fail_closed: bool, config: MonitorConfig) -> None:
        self.now = max(self.now, at)
        self.observed.append((at, deny, fail_closed))
        self.obs.add(deny, fail_closed, 1)
        window_start = self.now - config.window_s
        while self.observed and self.observed[0][0] <= window_start:
            item = self.observed.popleft()
            self.obs.add(item[1], item[2], -1)
            self.baseline.append(item)
            self.base.add(item[1], item[2], 1)
        baseline_start = window_start - config.baseline_s
        while self.baseline and self.baseline[0][0] <= baseline_start:
            item = self.baseline.popleft()
            self.base.add(item[1], item[2], -1)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of H0: the two rates are equal (pooled standard error)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = x1 / n1 - x2 / n2
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    z = diff / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _dec(x: float) -> Decimal:
    """A float as an exact decimal for an Alert's details (Value has no float)."""
    if math.isinf(x):
        return Decimal("1e9") if x > 0 else Decimal("-1e9")
    return Decimal(repr(round(x, 9)))


@dataclass
class MonitorState:
    config: MonitorConfig = field(default_factory=MonitorConfig)
    # (bundle, tool, effect, code) -> decisions
    decisions: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # (bundle, policy, rule, effect) -> decisions that rule decided
    rule_hits: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    windows: dict[int, PartitionWindow] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)  # next offset per partition
    decided_through: dict[int, int] = field(default_factory=dict)  # action offset + 1
    bundles: dict[int, str] = field(default_factory=dict)  # bundle in force per partition
    open_alerts: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    alerts_written: dict[str, int] = field(default_factory=dict)  # kind -> alerts
    # (bundle that decided, arm, effect) -> decisions of a canary rollout
    arm_decisions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (enforced bundle, shadow bundle, enforced effect, shadow effect) -> disagreements
    shadow_disagreements: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    canaries: dict[int, CanaryWatch] = field(default_factory=dict)  # canary per partition
    timeline: Timeline = field(default_factory=Timeline)  # swaps and canary alerts
    denials: RecentDenials = field(default_factory=RecentDenials)  # the latest denies
    owners: dict[int, str | None] = field(default_factory=dict)  # latest takeover's enforcer
    # (partition, writer) -> fenced writes: a zombie enforcer's records, not folded
    fenced: dict[tuple[int, str], int] = field(default_factory=dict)

    def fold(
        self, partition: int, offset: int, name: str, datum: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Apply one record of ``agent.decisions[partition]``; the Alerts it raises."""
        self.positions[partition] = offset + 1
        if name == TAKEOVER:
            self.owners[partition] = datum.get("enforcer_id")
            return []
        if fenced_write(self.owners.get(partition), name, datum):
            writer = (partition, str(datum.get("enforcer_id")))
            self.fenced[writer] = self.fenced.get(writer, 0) + 1
            return []
        if name == "RulesetSwap":
            self.bundles[partition] = datum["bundle_id"]
            self.timeline.swap(partition, datum)
            ended = self._swap(partition, offset, datum)
            for alert in ended:
                self.timeline.alert(int(datum["policy_offset"]), alert)
            return ended
        if name != "Decision":
            return []
        bundle = datum.get("bundle_id") or ""
        tool = datum.get("tool") or ""
        effect, code = datum["effect"], datum.get("code") or ""
        key = (bundle, tool, effect, code)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        for rule_id in datum.get("rule_ids") or ():
            policy, _, rule = rule_id.partition("/")
            hit = (bundle, policy, rule, effect)
            self.rule_hits[hit] = self.rule_hits.get(hit, 0) + 1
        evaluated_at: dt.datetime = datum["evaluated_at"]
        event_time = datum.get("event_time")
        if event_time is not None:
            self._observe_latency(max(0.0, (evaluated_at - event_time).total_seconds()))
        action_offset = datum.get("action_offset")
        if action_offset is not None:
            seen = self.decided_through.get(partition, 0)
            self.decided_through[partition] = max(seen, action_offset + 1)
        if effect == "deny":
            self.denials.add(partition, offset, datum)
        window = self.windows.setdefault(partition, PartitionWindow())
        fail_closed = failed_closed(datum)
        window.add(evaluated_at.timestamp(), effect == "deny", fail_closed, self.config)
        alerts = self._judge(partition, offset, evaluated_at, bundle, window)
        shadow = datum.get("shadow")
        if shadow is not None and shadow["effect"] != effect:
            disagreement = (bundle, shadow["bundle_id"], effect, shadow["effect"])
            self.shadow_disagreements[disagreement] = (
                self.shadow_disagreements.get(disagreement, 0) + 1
            )
        arm = datum.get("arm")
        if arm is not None:
            arm_key = (bundle, arm, effect)
            self.arm_decisions[arm_key] = self.arm_decisions.get(arm_key, 0) + 1
            watch = self.canaries.get(partition)
            if watch is not None and datum.get("code") not in FOLLOW_UP_CODES:
                watch.add(arm, effect == "deny")
                judged = self._judge_canary(partition, offset, evaluated_at, watch, arm)
                for alert in judged:
                    self.timeline.alert(watch.policy_offset, alert)
                alerts += judged
        return alerts

    def _swap(self, partition: int, offset: int, datum: dict[str, Any]) -> list[dict[str, Any]]:
        """A swap may start, keep or end the partition's canary; ending it resolves its
        open regression alert."""
        watch = watch_from_swap(datum, self.canaries.get(partition))
        ended = self.canaries.get(partition)
        if watch is not None:
            self.canaries[partition] = watch
            if watch is ended:
                return []
        else:
            self.canaries.pop(partition, None)
        if ended is None or (partition, CANARY_REGRESSION) not in self.open_alerts:
            return []
        message = f"partition {partition}: the canary of {ended.candidate[:19]}… ended"
        return self._transition(
            partition,
            CANARY_REGRESSION,
            offset,
            datum["at"],
            ended.candidate,
            False,
            True,
            message,
            {"ended": True},
        )

    def _judge_canary(
        self, partition: int, offset: int, at: dt.datetime, watch: CanaryWatch, arm: str
    ) -> list[dict[str, Any]]:
        config = self.config.canary
        canary, control = watch.arms["canary"], watch.arms["control"]
        if canary.n < config.min_samples or control.n < config.min_samples:
            return []
        excess = canary.rate - control.rate
        is_open = (partition, CANARY_REGRESSION) in self.open_alerts
        if not (excess < config.threshold / 2 if is_open else excess >= config.threshold):
            return []
        # Opening is judged only at the looks (`look_alpha`), each with its share of alpha:
        # a test after every decision would, over a long rollout, flag a good canary by
        # chance sooner or later. Clearing is judged at every decision.
        look = look_alpha(canary.n, config.min_samples, config.alpha)
        if not is_open and (arm != "canary" or look is None):
            return []
        k, alpha = look if look is not None else (-1, config.alpha)
        z, p = one_sided_z(canary.deny, canary.n, control.deny, control.n)
        evidence = {
            "stable_bundle_id": watch.stable,
            "candidate_bundle_id": watch.candidate,
            "canary_percent": watch.percent,
            "policy_offset": watch.policy_offset,
            "auto_rollback": watch.auto_rollback,
            "canary_sample": canary.n,
            "canary_deny_rate": _dec(canary.rate),
            "control_sample": control.n,
            "control_deny_rate": _dec(control.rate),
            "z": _dec(z),
            "p_value": _dec(p),
            "threshold": _dec(config.threshold),
            "alpha": _dec(config.alpha),
            "look": k,
            "look_alpha": _dec(alpha),
        }
        message = (
            f"partition {partition}: the canary {watch.candidate[:19]}… denies "
            f"{canary.rate:.1%} of {canary.n} decisions against control's {control.rate:.1%} "
            f"of {control.n} (z={z:.2f}, one-sided p={p:.2g})"
        )
        firing = excess >= config.threshold and p < alpha
        clear = excess < config.threshold / 2
        return self._transition(
            partition,
            CANARY_REGRESSION,
            offset,
            at,
            watch.candidate,
            firing,
            clear,
            message,
            evidence,
        )

    def _observe_latency(self, seconds: float) -> None:
        self.latency_count += 1
        self.latency_sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
                break

    def _judge(
        self, partition: int, offset: int, at: dt.datetime, bundle: str, w: PartitionWindow
    ) -> list[dict[str, Any]]:
        # Called for every decision: the test statistic, the evidence and the message are
        # built only when an alert would open (none open, condition met) or resolve (one
        # open, condition cleared) — what `episode` acts on; otherwise nothing changes.
        out: list[dict[str, Any]] = []
        drift = self.config.drift
        obs, base = w.obs, w.base
        is_open = (partition, DRIFT) in self.open_alerts
        looking = is_open or w.now >= w.next_look
        if obs.n >= drift.min_samples and base.n >= drift.min_baseline and looking:
            # A drift opens only at a look, once per window of evaluation time: a test
            # after every decision over overlapping windows flags noise many times a day
            # (a simulation of 40,000 decisions at 1/s with random 20 % denies raised 1-4
            # drift alerts per run); at one look per window, alpha is the chance per
            # window. Clearing is judged at every decision.
            if not is_open:
                w.next_look = w.now + self.config.window_s
            observed, baseline = obs.deny / obs.n, base.deny / base.n
            change = abs(observed - baseline)
            if change >= drift.threshold if not is_open else change < drift.threshold / 2:
                z, p = two_proportion_z(obs.deny, obs.n, base.deny, base.n)
                evidence = {
                    "observed_deny_rate": _dec(observed),
                    "baseline_deny_rate": _dec(baseline),
                    "sample": obs.n,
                    "baseline_sample": base.n,
                    "z": _dec(z),
                    "p_value": _dec(p),
                    "threshold": _dec(drift.threshold),
                    "alpha": _dec(drift.alpha),
                }
                firing = change >= drift.threshold and p < drift.alpha
                clear = change < drift.threshold / 2
                message = (
                    f"partition {partition}: deny rate {observed:.1%} over the last "
                    f"{self.config.window_s:g}s against {baseline:.1%} before it "
                    f"(n={obs.n} vs {base.n}, z={z:.2f}, p={p:.2g})"
                )
                out += self._transition(
                    partition, DRIFT, offset, at, bundle, firing, clear, message, evidence
                )
        spike = self.config.fail_closed
        if obs.n:
            fraction = obs.fail_closed / obs.n
            firing = obs.fail_closed >= spike.min_count and fraction >= spike.fraction
            clear = obs.fail_closed < spike.min_count / 2 or fraction < spike.fraction / 2
            if clear if (partition, FAIL_CLOSED_SPIKE) in self.open_alerts else firing:
                evidence = {
                    "fail_closed": obs.fail_closed,
                    "sample": obs.n,
                    "observed_fraction": _dec(fraction),
                    "baseline_fraction": _dec(base.fail_closed / base.n if base.n else 0.0),
                    "baseline_sample": base.n,
                    "min_count": spike.min_count,
                    "fraction": _dec(spike.fraction),
                }
                message = (
                    f"partition {partition}: {obs.fail_closed} of {obs.n} decisions in the "
                    f"last {self.config.window_s:g}s failed closed (no policy decided them)"
                )
                out += self._transition(
                    partition,
                    FAIL_CLOSED_SPIKE,
                    offset,
                    at,
                    bundle,
                    firing,
                    clear,
                    message,
                    evidence,
                )
        return out

    def _transition(
        self,
        partition: int,
        kind: str,
        offset: int,
        at: dt.datetime,
        bundle: str,
        firing: bool,
        clear: bool,
        message: str,
        evidence: dict[str, Any],
    ) -> list[dict[str, Any]]:
        def make(kind: str, severity: str, evidence: dict[str, Any]) -> dict[str, Any]:
            self.alerts_written[kind] = self.alerts_written.get(kind, 0) + 1
            details = {
                "partition": partition,
                "offset": offset,
                "window_s": _dec(self.config.window_s),
                "baseline_s": _dec(self.config.baseline_s),
                **evidence,
            }
            alert_id = f"{kind}:{partition}:{offset}"
            return alert_datum(alert_id, kind, severity, at, message, details, bundle or None)

        return episode(self.open_alerts, (partition, kind), kind, firing, clear, make, evidence)

    def open(self) -> list[dict[str, Any]]:
        return sorted(self.open_alerts.values(), key=lambda a: str(a["alert_id"]))

    def totals(self) -> dict[str, int]:
        """Decisions per effect, and fail-closed denies."""
        out: dict[str, int] = {}
        for (_, _, effect, code), n in self.decisions.items():
            out[effect] = out.get(effect, 0) + n
            if effect == "deny" and code not in JUDGED_CODES:
                out["fail_closed"] = out.get("fail_closed", 0) + n
        return out


def episode(
    open_alerts: dict[Any, dict[str, Any]],
    key: Any,
    kind: str,
    firing: bool,
    clear: bool,
    make: Callable[[str, str, dict[str, Any]], dict[str, Any]],
    evidence: dict[str, Any],
) -> list[dict[str, Any]]:
    """One alert per episode: it opens when ``firing`` and none is open under ``key``, and
    resolves (``<kind>_resolved``, naming the alert it closes) once ``clear``.
    ``make(kind, severity, evidence)`` builds the Alert datum."""
    opened = open_alerts.get(key)
    if opened is None and firing:
        alert = make(kind, "critical", evidence)
        open_alerts[key] = alert
        return [alert]
    if opened is not None and clear:
        del open_alerts[key]
        return [make(f"{kind}_resolved", "info", {**evidence, "opened_by": opened["alert_id"]})]
    return []


def alert_datum(
    alert_id: str,
    kind: str,
    severity: str,
    at: dt.datetime,
    message: str,
    details: dict[str, Any],
    bundle_id: str | None = None,
) -> dict[str, Any]:
    """An ``Alert`` record's datum (the monitor's alerts name no policy)."""
    return {
        "alert_id": alert_id,
        "kind": kind,
        "severity": severity,
        "policy_id": None,
        "bundle_id": bundle_id,
        "message": message,
        "at": at,
        "details": details,
    }


def fold_all(
    state: MonitorState, records: Iterable[tuple[int, int, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Fold (partition, offset, schema name, datum) records; every alert raised."""
    alerts: list[dict[str, Any]] = []
    for partition, offset, name, datum in records:
        alerts += state.fold(partition, offset, name, datum)
    return alerts
