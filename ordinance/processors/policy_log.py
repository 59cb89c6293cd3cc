"""Policy lifecycle on the log: publishing bundles and lifecycle events to
``policy.changes``, and reading the ``policy.active`` table the controller
(`controller_loop`) writes.

Only the ``Log`` protocol is used here (no broker client), so the same code runs on the
embedded log and on Kafka.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.identity.registry import Refusal, Registry
from ordinance.identity.signing import PrincipalSigner
from ordinance.processors.active_auth import authorise_active_record
from ordinance.processors.controller import (
    ControllerState,
    bundle_key,
    target_key,
)
from ordinance.streams import Log, Record
from ordinance.streams.log import ConsumedRecord
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    DEFAULT_PREFIX,
    POLICY_ACTIVE,
    POLICY_CHANGES,
    ensure_topics,
)

Clock = Callable[[], float]


class ChangeSignerError(OrdinanceError):
    """A change that would be signed by someone other than its actor."""


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
