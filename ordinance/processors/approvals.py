"""Human approval of require_approval decisions: what is pending (a fold of the decisions
log) and answering it with an Approval record the enforcer turns into a follow-up decision."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.identity.signing import PrincipalSigner
from ordinance.processors.enforcer_state import PartitionState
from ordinance.streams import Log, Record
from ordinance.streams.log import Headers
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_APPROVALS, AGENT_DECISIONS, DEFAULT_PREFIX, ensure_topics


class NotPending(OrdinanceError):
    """The request has no require_approval decision waiting for an answer."""


def pending_approvals(log: Log, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Require_approval decisions with no follow-up yet, oldest first."""
    serde = Serde()
    states: dict[int, PartitionState] = {}
    for record in log.read_to_end(ensure_topics(log, prefix)[AGENT_DECISIONS].name):
        decoded = serde.decode_record(record, expect={"Decision"})
        if isinstance(decoded, Decoded):
            states.setdefault(record.partition, PartitionState(record.partition)).fold(
                "Decision", decoded.value, record.offset
            )
    pending = [d for s in states.values() for d in s.pending.values()]
    return sorted(pending, key=lambda d: d["evaluated_at"])


def answer(
    log: Log,
    request_id: str,
    *,
    approve: bool,
    approver: str,
    reason: str | None = None,
    expires_in_s: float | None = None,
    prefix: str = DEFAULT_PREFIX,
    clock: Callable[[], float] = time.time,
    signer: PrincipalSigner | None = None,
) -> dict[str, Any]:
    """Publish an Approval bound to the pending decision's ticket; returns its datum.
    ``signer``: the approver's key, signing the record's exact value bytes (an enforcer
    that enforces identity counts only signed approvals, by ``approver``'s own key)."""
    waiting = {d["request_id"]: d for d in pending_approvals(log, prefix)}
    decision = waiting.get(request_id)
    if decision is None:
        raise NotPending(
            f"request {request_id!r} has no require_approval decision waiting for an answer"
        )
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    datum = {
        "request_id": request_id,
        "agent_id": decision["agent_id"],
        "verdict": "approved" if approve else "rejected",
        "approver": approver,
        "reason": reason,
        "at": now,
        "expires_at": None if expires_in_s is None else now + dt.timedelta(seconds=expires_in_s),
        "ticket": decision["approval_ticket"],
    }
    value = Serde().encode("Approval", datum)
    publish_approval(log, datum, value, signer.headers(value) if signer else (), prefix)
    return datum


def publish_approval(
    log: Log, datum: dict[str, Any], value: bytes, headers: Headers, prefix: str = DEFAULT_PREFIX
) -> None:
    """Write one encoded Approval to ``agent.approvals``, keyed by its agent id (the
    agent's partition: its enforcer answers). `answer` and the HTTP gateway's
    ``POST /v1/approvals`` both publish through here."""
    key = datum["agent_id"].encode()
    topic = ensure_topics(log, prefix)[AGENT_APPROVALS].name
    log.produce(topic, [Record(key, value, headers, int(datum["at"].timestamp() * 1000))])
