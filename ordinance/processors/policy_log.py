"""Policy lifecycle on the log: publishing bundles to ``policy.changes`` and the
controller loop that turns them into the ``policy.active`` table.

Only the ``Log`` protocol is used here (no broker client), so the same code runs on the
embedded log and on Kafka.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.identity.registry import Refusal, Registry
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.processors.active_auth import CONTROLLER_ROLE, authorise_active_record
from ordinance.processors.change_auth import (
    DEFAULT_MAX_SKEW,
    RegistryFollower,
    judge_change,
)
from ordinance.processors.controller import (
    ControllerState,
    Output,
    apply_change,
    bundle_key,
    rejection,
    target_key,
)
from ordinance.streams import Log, Record, TopicPartition
from ordinance.streams.log import ConsumedRecord
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    DEFAULT_PREFIX,
    MONITOR_ALERTS,
    POLICY_ACTIVE,
    POLICY_CHANGES,
    ensure_topics,
)

Clock = Callable[[], float]


class ChangeSignerError(OrdinanceError):
    """A change that would be signed by someone other than its actor."""


class ControllerKeyError(OrdinanceError):
    """A controller with a trust root but no key of its own to sign ``policy.active``."""


def _at(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


@dataclass(frozen=True, slots=True)
class Published:
    bundle_id: str
    published_offset: int
    enforced_offset: int | None


def publish_bundle(
    log: Log,
    files: Mapping[str, str],
    bundle_id: str,
    *,
    actor: str,
    target: str = "default",
    reason: str | None = None,
    git_commit: str | None = None,
    enforce: bool = True,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = time.time,
    checks: Mapping[str, Any] | None = None,
    signer: PrincipalSigner | None = None,
    git: Mapping[str, Any] | None = None,
) -> Published:
    """Append ``published`` (with the files, the ``checks`` the publisher ran or
    bypassed: a ``PublishChecks`` datum, and ``git``: the ``GitSource`` datum of the
    directory, see ``ordinance.gitsource``) and, unless told not to, ``enforced`` events,
    each signed by ``signer`` (headers over its exact value bytes) when given — who must
    be the ``actor``: a controller with a trust root refuses a change whose signer is not
    its actor. ``git_commit`` defaults to ``git``'s commit."""
    _require_signer_is_actor(signer, actor)
    topic = ensure_topics(log, prefix)[POLICY_CHANGES].name
    at = _at(clock)
    if git_commit is None and git is not None:
        git_commit = git.get("commit")
    base = {
        "bundle_id": bundle_id,
        "actor": actor,
        "at": at,
        "reason": reason,
        "git_commit": git_commit,
        "canary_percent": None,
        "previous_bundle_id": None,
        "files": [],
    }
    events = [
        {
            **base,
            "event": "published",
            "target": None,
            "files": [{"path": p, "content": c} for p, c in sorted(files.items())],
            "checks": dict(checks) if checks is not None else None,
            "git": dict(git) if git is not None else None,
        }
    ]
    if enforce:
        events.append({**base, "event": "enforced", "target": target})
    delivered = log.produce(topic, _change_records(events, signer))
    return Published(bundle_id, delivered[0].offset, delivered[1].offset if enforce else None)


def append_change(
    log: Log,
    event: str,
    bundle_id: str,
    *,
    actor: str,
    signer: PrincipalSigner | None = None,
    target: str | None = None,
    previous_bundle_id: str | None = None,
    reason: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = time.time,
    canary_percent: int | None = None,
    auto_rollback: bool = False,
) -> int:
    """Append one lifecycle event without files (``enforced``, ``rolled_back``,
    ``approved``, ``retired``...), signed by ``signer`` (who must be ``actor``) when
    given; returns its offset on ``policy.changes``."""
    _require_signer_is_actor(signer, actor)
    at = _at(clock)
    datum = {
        "bundle_id": bundle_id,
        "event": event,
        "actor": actor,
        "at": at,
        "target": target,
        "reason": reason,
        "git_commit": None,
        "canary_percent": canary_percent,
        "auto_rollback": auto_rollback,
        "previous_bundle_id": previous_bundle_id,
        "files": [],
        "checks": None,
    }
    topic = ensure_topics(log, prefix)[POLICY_CHANGES].name
    return log.produce(topic, _change_records([datum], signer))[0].offset


def _require_signer_is_actor(signer: PrincipalSigner | None, actor: str) -> None:
    """A controller with a trust root refuses a change whose signer is not its actor:
    refuse to write one."""
    if signer is not None and signer.principal_id != actor:
        raise ChangeSignerError(
            f"the actor {actor!r} is not the signing principal {signer.principal_id!r}"
        )


def _change_records(events: list[dict[str, Any]], signer: PrincipalSigner | None) -> list[Record]:
    """PolicyChange records keyed by bundle id, each signed over its exact value bytes
    when a ``signer`` is given."""
    serde = Serde()
    records = []
    for event in events:
        value = serde.encode("PolicyChange", event)
        headers = () if signer is None else signer.headers(value)
        at: dt.datetime = event["at"]
        records.append(
            Record(event["bundle_id"].encode(), value, headers, int(at.timestamp() * 1000))
        )
    return records


@dataclass
class ControllerReport:
    applied: int = 0
    rejected: int = 0
    written: int = 0


def run_controller(
    log: Log,
    *,
    prefix: str = DEFAULT_PREFIX,
    group: str = "ordinance.controller",
    once: bool = False,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    progress: Callable[[str], None] = lambda _message: None,
    trust: TrustRoot | None = None,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
    signer: PrincipalSigner | None = None,
) -> ControllerReport:
    """Process ``policy.changes`` from the group's committed offset. The state is first
    rebuilt (its outputs are in ``policy.active`` already); each change's outputs are then
    written together with its offset commit. ``once`` stops when the changes present at
    start are processed.

    With a ``trust`` root every change must be signed by a registry principal allowed to
    sign it, and come in order (`ordinance.processors.change_auth`); any other is
    rejected with its code like an invalid change. The state is then rebuilt from
    ``policy.active`` — what was accepted — rather than by folding the changes again: a
    change accepted under the registry of its day stays accepted when a key has since
    expired. Without one, every well-formed change is believed (the legacy behaviour).

    ``signer`` signs every record the controller writes (`active_auth`): a registry
    principal with the ``policy-controller`` role, without which enforcers with a trust
    root believe nothing on ``policy.active``. It is required with a ``trust`` root —
    the rebuild from ``policy.active`` believes only signed records too."""
    if trust is not None and signer is None:
        raise ControllerKeyError(
            "a controller with a trust root signs what it writes to policy.active, and "
            "believes only signed records there: give it the key of a registry principal "
            f"with the {CONTROLLER_ROLE} role (serve --controller-key, controller --key)"
        )
    serde = Serde()
    specs = ensure_topics(log, prefix)
    changes, topics = (
        specs[POLICY_CHANGES].name,
        {"active": specs[POLICY_ACTIVE].name, "alerts": specs[MONITOR_ALERTS].name},
    )
    tp = TopicPartition(changes, 0)
    state = ControllerState()
    report = ControllerReport()
    follower = None if trust is None else RegistryFollower.start(trust, prefix)
    with log.consumer(group, relaxed=True) as consumer:
        committed = consumer.committed([tp]).get(tp) or 0
        last = -1
        for record in log.read_to_end(changes):
            last = record.offset
            if record.offset < committed and follower is None:
                decoded = serde.decode_record(record, expect={"PolicyChange"})
                if isinstance(decoded, Decoded):
                    apply_change(state, decoded.value, record.offset, _at(clock))
        if follower is not None:
            follower.refresh(log)
            state = state_from_active(log, topics["active"], serde, follower.registry)
            state.governed = True
            progress(
                f"controller: changes must be signed; identity.registry folded to offset "
                f"{follower.end_offset} ({len(follower.registry.principals)} principal(s))"
            )
        progress(
            f"controller: state rebuilt from {committed} change(s); {max(0, last + 1 - committed)} pending"
        )
        consumer.subscribe([changes])
        next_offset = committed
        while not (stop is not None and stop.is_set()):
            if once and next_offset > last:
                break
            batch = consumer.poll(max_records=100, timeout=0.5)
            if follower is not None and batch:
                # Whatever was on the registry before these changes were appended is known.
                follower.refresh(log)
            for record in batch:
                if record.offset < next_offset:
                    continue  # redelivered after a rebalance: already applied
                decoded = serde.decode_record(record, expect={"PolicyChange"})
                now = _at(clock)
                if isinstance(decoded, Decoded):
                    outputs = _judge_and_apply(
                        state, follower, record, decoded.value, now, max_skew, progress
                    )
                else:
                    outputs = [
                        rejection(
                            f"undecodable change: {decoded.problem.value}: {decoded.detail}",
                            None,
                            record.offset,
                            now,
                        )
                    ]
                outputs, encoded = _encode_outputs(
                    serde, topics, outputs, record.offset, now, signer
                )
                rejected = any(o.topic == "alerts" for o in outputs)
                report.rejected += rejected
                report.applied += not rejected
                log.produce_and_commit(encoded, consumer, {tp: record.offset + 1})
                report.written += len(encoded)
                next_offset = record.offset + 1
                for o in outputs:
                    progress(
                        f"controller: change {record.offset}: {o.schema} {o.key.decode()}"
                        + (f" — {o.datum['message']}" if o.topic == "alerts" else "")
                    )
    return report


def _judge_and_apply(
    state: ControllerState,
    follower: RegistryFollower | None,
    record: ConsumedRecord,
    change: dict[str, Any],
    now: dt.datetime,
    max_skew: dt.timedelta,
    progress: Callable[[str], None],
) -> list[Output]:
    if follower is None:
        return apply_change(state, change, record.offset, now)
    verdict = judge_change(
        follower.registry,
        state.rollouts,
        bytes(record.value or b""),
        record.headers,
        change,
        record.offset,
        now,
        max_skew,
    )
    if isinstance(verdict, Refusal):
        bundle_id = change.get("bundle_id")
        return [
            rejection(
                verdict.detail,
                bundle_id if isinstance(bundle_id, str) else None,
                record.offset,
                now,
                change.get("event"),
                change.get("actor"),
                code=verdict.code,
            )
        ]
    progress(
        f"controller: change {record.offset} signed by {verdict.principal.id} "
        f"(key {verdict.key_id})"
    )
    return apply_change(state, change, record.offset, now)


def state_from_active(
    log: Log, topic: str, serde: Serde, registry: Registry | None = None
) -> ControllerState:
    """The controller's state as ``policy.active`` holds it: every validated bundle and
    the rollout in force per target (records under a key that is not theirs ignored).

    With a ``registry`` (a trust root) only records signed by a controller principal are
    believed, read in log order, and a target keeps the rollout of its latest change —
    a genuine old rollout appended again does not bring its bundle back (`active_auth`).
    Without one, the last record of each key."""
    state = ControllerState()
    records: Iterable[ConsumedRecord]
    if registry is None:
        records = log.latest_by_key(topic).values()
    else:
        records = (
            r
            for r in log.read_to_end(topic)
            if not isinstance(authorise_active_record(registry, r), Refusal)
        )
    for record in records:
        decoded = serde.decode_record(record, expect={"PolicyBundle", "ActiveRollout"})
        if not isinstance(decoded, Decoded) or record.key is None:
            continue
        value, key = decoded.value, record.key
        if decoded.name == "PolicyBundle" and key == bundle_key(value["bundle_id"]):
            state.bundles[value["bundle_id"]] = [dict(f) for f in value["files"]]
            state.records[value["bundle_id"]] = dict(value)
        elif decoded.name == "ActiveRollout" and key == target_key(value["target"]):
            believed = state.rollouts.get(value["target"])
            if believed is None or value["change_offset"] >= believed["change_offset"]:
                state.rollouts[value["target"]] = dict(value)
    return state


def _encode_outputs(
    serde: Serde,
    topics: Mapping[str, str],
    outputs: list[Output],
    offset: int,
    now: dt.datetime,
    signer: PrincipalSigner | None = None,
) -> tuple[list[Output], list[tuple[str, Record]]]:
    """The outputs of one change and their records (signed by ``signer`` when given). If
    any output cannot be encoded, the change is rejected instead (one alert): an
    exception here would stop the controller at this record on every restart."""
    try:
        return outputs, [(topics[o.topic], _record(serde, o, now, signer)) for o in outputs]
    except Exception as exc:
        reason = f"the change's outputs could not be encoded for the log: {type(exc).__name__}"
        alert = rejection(reason, None, offset, now)
        return [alert], [(topics[alert.topic], _record(serde, alert, now, signer))]


def _record(
    serde: Serde, output: Output, now: dt.datetime, signer: PrincipalSigner | None
) -> Record:
    value = serde.encode(output.schema, output.datum)
    headers = () if signer is None else signer.headers(value)
    return Record(output.key, value, headers, int(now.timestamp() * 1000))


def bundles_in_force(
    log: Log, target: str, prefix: str = DEFAULT_PREFIX
) -> list[tuple[str, dict[str, str]]]:
    """The bundles deciding live traffic on ``target`` as ``policy.active`` holds them —
    the stable bundle, and a canary's candidate — with their files; empty when nothing is
    in force (or the topic does not exist yet). Reads only: no topic is created."""
    from ordinance.streams.errors import LogError

    topic = prefix + POLICY_ACTIVE
    try:
        state = state_from_active(log, topic, Serde())
    except LogError:
        return []  # no policy.active: nothing was ever put in force here
    rollout = state.rollouts.get(target)
    if rollout is None:
        return []
    ids = [rollout["stable_bundle_id"]]
    if rollout.get("mode") == "canary":
        ids.append(rollout["candidate_bundle_id"])
    return [
        (bundle_id, {f["path"]: f["content"] for f in state.bundles[bundle_id]})
        for bundle_id in ids
        if bundle_id is not None and bundle_id in state.bundles
    ]
