"""The policy controller: validates lifecycle events from ``policy.changes`` and maintains
the compacted ``policy.active`` table the enforcers read.

``apply_change`` is a deterministic function of (state, change): the state is a fold of
``policy.changes``, so a restarted controller rebuilds it by reading the topic, and what it
writes to ``policy.active`` is idempotent (last value per key). A change that fails
validation never reaches ``policy.active``; it is reported on ``monitor.alerts`` with the
reason.

No change can stop the controller: a change that fails in any way — a compile error, or a
hostile file that reaches some limit the compiler did not foresee (RecursionError,
MemoryError, anything) — is a rejected change with the reason, and the fold goes on. A
change that crashed the controller would crash it again on every restart (the record is
still there), so "reject and go on" is the only safe answer.

Keys in ``policy.active``: ``bundle:<id>`` -> PolicyBundle (contents of every validated
bundle), ``target:<name>`` -> ActiveRollout (what a deployment target runs now).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy.bundle import compile_bundle
from ordinance.policy.document import IMPACTS
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.testing import run_tests

DEFAULT_TARGET = "default"
#: The lifecycle events that change what a target runs (`next_rollout`).
ROLLOUT_EVENTS = frozenset({"enforced", "rolled_back", "canary", "shadow"})


def bundle_key(bundle_id: str) -> bytes:
    return f"bundle:{bundle_id}".encode()


def target_key(target: str) -> bytes:
    return f"target:{target}".encode()


@dataclass(frozen=True, slots=True)
class Output:
    """A record the controller wants written: ``topic`` is ``active`` or ``alerts``."""

    topic: str
    key: bytes
    schema: str
    datum: dict[str, Any]


@dataclass
class ControllerState:
    bundles: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # id -> files
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> ActiveRollout
    # id -> its PolicyBundle datum (publisher, impact, approvals): what policy.active holds
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Identities are verified (a trust root): the two-person rule applies (`_require_approvals`).
    governed: bool = False
    schemas: dict[str, Any] = field(default_factory=dict)  # bundle id -> compiled schema (cache)


class Rejected(Exception):
    """A lifecycle event that must not take effect; the message says why, ``code`` (when
    set) is the machine-readable reason on the alert (``self_approval``,
    ``needs_approval``)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


SELF_APPROVAL = "self_approval"
NEEDS_APPROVAL = "needs_approval"
SCHEMA_BREAK = "schema_break"
#: enforced/canary/shadow of a bundle published before the target's stable one.
REVISION_ROLLBACK = "revision_rollback"


def validate_bundle(bundle_id: str, files: list[dict[str, str]]) -> Ruleset:
    """The bundle compiles, its tests pass against the combined set, and its id is its
    content; returns it compiled."""
    if not files:
        raise Rejected("a published event must carry the bundle's files")
    try:
        ruleset = compile_bundle({f["path"]: f["content"] for f in files})
    except PolicyErrors as exc:
        first = exc.errors[0]
        raise Rejected(
            f"the bundle does not compile ({len(exc.errors)} error(s)); first: {first.location}: {first.message}"
        ) from None
    if ruleset.bundle_id != bundle_id:
        raise Rejected(f"the bundle id does not match its content (content is {ruleset.bundle_id})")
    failed = [r for r in run_tests(ruleset) if not r.passed]
    if failed:
        names = ", ".join(f"{r.policy}/{r.name}" for r in failed[:3])
        raise Rejected(f"{len(failed)} policy test(s) fail against the combined set: {names}")
    return ruleset


def _impact(ruleset: Ruleset) -> str:
    """The highest impact of a bundle's policies."""
    return max((p.impact for p in ruleset.policies), key=IMPACTS.index, default="medium")


def _rollout(
    target: str,
    bundle_id: str,
    offset: int,
    at: dt.datetime,
    *,
    mode: str = "stable",
    candidate: str | None = None,
    percent: int = 0,
    auto_rollback: bool = False,
) -> dict[str, Any]:
    return {
        "target": target,
        "stable_bundle_id": bundle_id,
        "candidate_bundle_id": candidate,
        "mode": mode,
        "canary_percent": percent,
        "auto_rollback": auto_rollback,
        "change_offset": offset,
        "updated_at": at,
    }


def _apply(state: ControllerState, change: dict[str, Any], offset: int) -> list[Output]:
    event = change["event"]
    bundle_id = change["bundle_id"]
    at = change["at"]
    target = change.get("target") or DEFAULT_TARGET
    if event == "published":
        if bundle_id in state.bundles:
            return []  # re-publishing the same content changes nothing
        ruleset = validate_bundle(bundle_id, list(change.get("files") or []))
        state.bundles[bundle_id] = list(change["files"])
        state.schemas[bundle_id] = ruleset.schema  # compiled already: a later enforce compares
        datum = {
            "bundle_id": bundle_id,
            "created_at": at,
            "git_commit": change.get("git_commit"),
            "files": list(change["files"]),
            "published_by": change.get("actor"),
            "impact": _impact(ruleset),
            "approvals": [],
            "schema_break_acks": _schema_break_acks(change),
            # The order of publication: a target only moves forward but by a rollback.
            "revision": 1
            + max((r.get("revision") or 0 for r in state.records.values()), default=0),
        }
        state.records[bundle_id] = datum
        return [Output("active", bundle_key(bundle_id), "PolicyBundle", datum)]
    if event == "approved":
        return _approve(state, bundle_id, str(change.get("actor")))
    if event == "reviewed":
        _require_published(state, bundle_id)
        return []  # the comments are the event's reason, on policy.changes
    if event in ROLLOUT_EVENTS:
        if event in ("enforced", "canary"):
            _require_approvals(state, bundle_id, event)
            _refuse_schema_breaks(state, bundle_id, target, event)
        if event != "rolled_back":
            _refuse_revision_rollback(state, bundle_id, target, event)
        rollout = next_rollout(state, change, target, offset)
        state.rollouts[target] = rollout
        return [Output("active", target_key(target), "ActiveRollout", rollout)]
    if event == "retired":
        in_use = [
            t
            for t, r in state.rollouts.items()
            if bundle_id in (r["stable_bundle_id"], r["candidate_bundle_id"])
        ]
        if in_use:
            raise Rejected(f"bundle is still in force on {', '.join(sorted(in_use))}")
        return []
    if event == "staged":
        _require_published(state, bundle_id)
        _require_approvals(state, bundle_id, event)
        return []  # recorded in policy.changes; a staging target runs it by `enforced`
    raise Rejected(f"unknown lifecycle event {event!r}")


#: Distinct approvers, other than its publisher, a high-impact bundle needs where
#: identities are verified.
HIGH_IMPACT_APPROVALS = 2


def _approve(state: ControllerState, bundle_id: str, actor: str) -> list[Output]:
    """Record an approval on the bundle's PolicyBundle (so a restarted controller has it);
    a publisher approving its own bundle is refused."""
    _require_published(state, bundle_id)
    record = state.records.get(bundle_id)
    if record is None:  # published before approvals were recorded: nothing to add to
        return []
    if actor == record.get("published_by"):
        raise Rejected(f"{actor!r} published this bundle and cannot approve it", SELF_APPROVAL)
    if actor in record["approvals"]:
        return []  # approving twice counts once
    updated = {**record, "approvals": [*record["approvals"], actor]}
    state.records[bundle_id] = updated
    return [Output("active", bundle_key(bundle_id), "PolicyBundle", updated)]


def _schema_break_acks(change: dict[str, Any]) -> list[str]:
    """The schema-break finding ids the publisher acknowledged (its event's checks)."""
    checks = change.get("checks") or {}
    return sorted(
        {
            str(a.get("finding"))
            for a in checks.get("acknowledgements") or []
            if a.get("kind") == "schema-break"
        }
    )


def _refuse_schema_breaks(state: ControllerState, bundle_id: str, target: str, event: str) -> None:
    """A bundle put in force (or canaried) on a target must not break requests valid under
    the stable bundle there, unless its publisher acknowledged each break: the CLI checks
    before publishing (docs/lifecycle.md, "Schema compatibility"); this catches a change
    that bypassed it. Rollbacks restore and are not checked."""
    current = state.rollouts.get(target)
    stable = current["stable_bundle_id"] if current is not None else None
    if stable is None or stable == bundle_id or stable not in state.bundles:
        return
    from ordinance.policy.schema_compat import unacknowledged_breaks

    acks = (state.records.get(bundle_id) or {}).get("schema_break_acks") or []
    breaks = unacknowledged_breaks(_schema(state, stable), _schema(state, bundle_id), acks)
    if breaks:
        listed = "; ".join(f"{b.field}: {b.message}" for b in breaks[:3])
        more = f" (and {len(breaks) - 3} more)" if len(breaks) > 3 else ""
        raise Rejected(
            f"the bundle breaks requests valid under {stable[:19]}… on {target!r} and its "
            f"publisher acknowledged none of these: {listed}{more}",
            SCHEMA_BREAK,
        )


def _refuse_revision_rollback(
    state: ControllerState, bundle_id: str, target: str, event: str
) -> None:
    """Anti-rollback: a target's stable bundle gives way only to a bundle published after
    it. Going back is allowed, but only as what it is — a ``rolled_back`` event, which
    history shows as one — never by enforcing (or canarying) an old bundle again."""
    current = state.rollouts.get(target)
    stable = current["stable_bundle_id"] if current is not None else None
    if stable is None or stable == bundle_id:
        return
    in_force = (state.records.get(stable) or {}).get("revision")
    wanted = (state.records.get(bundle_id) or {}).get("revision")
    if in_force is not None and wanted is not None and wanted < in_force:
        raise Rejected(
            f"the bundle is revision {wanted}, published before revision {in_force} in force "
            f"on {target!r}: {event} never goes back; to return to it, roll back "
            f"(ordinance lifecycle rollback {stable} --to {bundle_id} --target {target})",
            REVISION_ROLLBACK,
        )


def _schema(state: ControllerState, bundle_id: str) -> Any:
    """A validated bundle's schema: kept when it was validated, compiled from its files
    for one rebuilt from policy.active (content-addressed: the id names it forever)."""
    if bundle_id not in state.schemas:
        files = state.bundles[bundle_id]
        state.schemas[bundle_id] = compile_bundle({f["path"]: f["content"] for f in files}).schema
    return state.schemas[bundle_id]


def _require_approvals(state: ControllerState, bundle_id: str, event: str) -> None:
    """Where identities are verified, a high-impact bundle is staged, canaried or enforced
    only after two distinct approvers other than its publisher approved it. (Rollbacks
    are not gated: restoring a bundle must not wait for people.)"""
    record = state.records.get(bundle_id)
    if not state.governed or record is None or record.get("impact") != "high":
        return
    approvals = record.get("approvals") or []
    if len(approvals) < HIGH_IMPACT_APPROVALS:
        have = ", ".join(approvals) or "none"
        raise Rejected(
            f"a high-impact bundle needs {HIGH_IMPACT_APPROVALS} approvals by distinct "
            f"approvers other than its publisher before it is {event} (has: {have})",
            NEEDS_APPROVAL,
        )


def next_rollout(
    state: ControllerState, change: dict[str, Any], target: str, offset: int
) -> dict[str, Any]:
    """The target's rollout after an ``enforced``, ``rolled_back``, ``canary`` or
    ``shadow`` event (docs/lifecycle.md); `Rejected` for a transition that cannot be."""
    event, bundle_id, at = change["event"], change["bundle_id"], change["at"]
    current = state.rollouts.get(target)
    if event == "enforced":  # also promotes a canary or shadow candidate
        _require_published(state, bundle_id)
        return _rollout(target, bundle_id, offset, at)
    if event == "rolled_back":
        chosen = change.get("previous_bundle_id")
        if chosen:
            _require_published(state, chosen)
            return _rollout(target, chosen, offset, at)
        if current is not None and current["candidate_bundle_id"] is not None:
            # Ends the canary or shadow: the stable bundle alone, at this one offset.
            return _rollout(target, current["stable_bundle_id"], offset, at)
        raise Rejected(
            "rolled_back needs previous_bundle_id (the bundle to restore) unless a canary "
            "or shadow rollout is in force to end"
        )
    # canary, shadow: a candidate beside the stable bundle in force
    if current is None or current["stable_bundle_id"] is None:
        raise Rejected(f"{event} needs a bundle enforced on {target!r} first (the control)")
    _require_published(state, bundle_id)
    if bundle_id == current["stable_bundle_id"]:
        raise Rejected(f"bundle is already the stable bundle on {target!r}")
    percent = change.get("canary_percent") if event == "canary" else 0
    if event == "canary" and not (isinstance(percent, int) and 1 <= percent <= 99):
        raise Rejected(f"canary_percent must be 1..99, not {percent!r} (100: enforce the bundle)")
    return _rollout(
        target,
        current["stable_bundle_id"],
        offset,
        at,
        mode=event,
        candidate=bundle_id,
        percent=percent or 0,
        auto_rollback=event == "canary" and bool(change.get("auto_rollback")),
    )


def _require_published(state: ControllerState, bundle_id: str) -> None:
    if bundle_id not in state.bundles:
        raise Rejected(f"bundle {bundle_id} was never published and validated")


def apply_change(
    state: ControllerState, change: dict[str, Any], offset: int, now: dt.datetime
) -> list[Output]:
    """Outputs for one change; a rejected change leaves ``state`` as it was and yields an
    alert. Never raises (but for KeyboardInterrupt and SystemExit, which stop the process on
    purpose): any failure is a rejection, so one poison record cannot stop the fold."""
    bundles, rollouts, records = dict(state.bundles), dict(state.rollouts), dict(state.records)
    try:
        return _apply(state, change, offset)
    except Exception as exc:
        # _apply changes state only once a change is valid; restoring the snapshot keeps
        # "a rejected change leaves state as it was" true for failures it did not foresee.
        state.bundles, state.rollouts, state.records = bundles, rollouts, records
        reason = str(exc) if isinstance(exc, Rejected) else _unexpected(exc)
        bundle_id = change.get("bundle_id") if isinstance(change, dict) else None
        event = change.get("event") if isinstance(change, dict) else None
        actor = change.get("actor") if isinstance(change, dict) else None
        code = exc.code if isinstance(exc, Rejected) else None
        return [
            rejection(
                reason,
                bundle_id if isinstance(bundle_id, str) else None,
                offset,
                now,
                event,
                actor,
                code=code,
            )
        ]


def _unexpected(exc: BaseException) -> str:
    if isinstance(exc, RecursionError | MemoryError):
        return (
            f"the change could not be applied: it exhausted the controller ({type(exc).__name__})"
        )
    return f"the change could not be applied: {type(exc).__name__}: {exc}"


MAX_REASON_CHARS = 2000  # an alert carries the reason, not a copy of a hostile file


def _printable(text: str) -> str:
    """The reason as valid UTF-8 text of bounded size: it is written to monitor.alerts,
    and a reason quoting a lone surrogate from a policy would fail to encode — on every
    restart, since the change that caused it is replayed."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def rejection(
    reason: str,
    bundle_id: str | None,
    offset: int,
    now: dt.datetime,
    event: object = None,
    actor: object = None,
    code: str | None = None,
) -> Output:
    """The alert recording a rejected change. ``code`` is the machine-readable refusal
    (an identity code such as ``not_authorised``, docs/identity.md); it leads the message
    and is in ``details`` as ``code``."""
    key = "unknown" if bundle_id is None else _printable(bundle_id)
    if code is not None:
        reason = f"{code}: {reason}"
    datum = {
        "alert_id": f"policy-change-rejected:{offset}",
        "kind": "policy_change_rejected",
        "severity": "warning",
        "policy_id": None,
        "bundle_id": None if bundle_id is None else key,
        "message": _printable(reason),
        "at": now,
        "details": {
            "change_offset": offset,
            "event": _printable(str(event)),
            "actor": _printable(str(actor)),
            **({} if code is None else {"code": code}),
        },
    }
    return Output("alerts", key.encode(), "Alert", datum)
