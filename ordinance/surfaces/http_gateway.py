"""What ``ordinance gateway`` does behind its routes (`ordinance.surfaces.http_api`): one
agent `Client` for every decide, one log handle for approvals, lookups and readiness.

There is no second decision path. A decide is `Client.decide` with the agent's request
id, event time and signature headers (`ordinance.identity.http_signing`): the intent goes
to ``agent.actions`` and the answer is the enforcer's Decision, or the client's fail-closed
deny (timeout, log failure). The gateway verifies no signature itself — it has no
registry, and a check here would be a second judge; it only refuses what cannot be a
request (400) and carries the agent's signature to the enforcer, which verifies it.

What the gateway remembers: the last `MAX_KNOWN` requests it published (request id ->
decision, agent, body hash), so a retried body gets the same answer instead of a second
intent, and a poll of an approval it asked for waits on the client's follow-up. When the
answer it gave was the client's own deny (timeout, log failure), a retry or a poll first
asks the decisions log whether the enforcer answered after all. A request
it did not decide (another gateway instance, a restart) is looked up by reading the
decisions partition of the agent the poll names: correct on any instance, linear in the
partition's length.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ordinance.client import CLIENT_INVALID_REQUEST, Client, ClientDecision
from ordinance.client.decision import decision_from_wire
from ordinance.identity.http_signing import (
    BodyError,
    HttpIntent,
    approval_from_body,
    body_headers,
)
from ordinance.policy.decision import REQUIRE_APPROVAL
from ordinance.processors.approvals import publish_approval
from ordinance.streams import Log, open_log, partition_for, records
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, DEFAULT_PREFIX

DEFAULT_DECIDE_TIMEOUT_S = 5.0
DEFAULT_MAX_BODY = 1024 * 1024
MAX_KNOWN = 10_000  # decided requests remembered for retries and polls
READY_TIMEOUT_S = 2.0
MAX_LOOKUPS = 2  # partition scans for polls of requests this instance did not decide


class Conflict(Exception):
    """The request id is in flight, or was decided for another body (HTTP 409)."""


class NotFound(Exception):
    """No decision for this request id where the gateway can look (HTTP 404)."""


class LogUnavailable(Exception):
    """Reading the decisions log failed (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Known:
    decision: ClientDecision
    agent_id: str
    body_sha256: str


@dataclass(frozen=True, slots=True)
class Signed:
    """The agent's signature from the HTTP headers (syntax checked, not verified)."""

    key_id: str
    signature: bytes


def answer_json(decision: ClientDecision, agent_id: str) -> dict[str, Any]:
    """The Decision JSON every route answers with: `ClientDecision.to_json`, the agent,
    and ``status``: ``pending`` while an approval is awaited, else ``final``."""
    status = "pending" if decision.effect == REQUIRE_APPROVAL else "final"
    return {**decision.to_json(), "agent_id": agent_id, "status": status}


class Gateway:
    def __init__(
        self,
        log_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_DECIDE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.clock = clock
        # The agent client publishes only what the gateway hands it: every decide passes
        # explicit headers, so no key of this process ever signs an intent.
        self.client = Client(log_url, topic_prefix=prefix, clock=clock, open_timeout=open_timeout_s)
        self.log: Log = open_log(log_url, create=False, open_timeout_s=open_timeout_s)
        self.serde = Serde()
        self.known: OrderedDict[str, Known] = OrderedDict()
        self.in_flight: set[str] = set()
        self._lookups = asyncio.Semaphore(MAX_LOOKUPS)
        self.closed = False

    # -- deciding ------------------------------------------------------------------------

    async def decide(
        self, intent: HttpIntent, body: bytes, signed: Signed | None
    ) -> tuple[ClientDecision, str]:
        """The decision for one body, and the agent it was made for. Raises Conflict."""
        agent_id: str = intent.request["agent"]["id"]
        digest = hashlib.sha256(body).hexdigest()
        request_id = intent.request_id or str(uuid.uuid4())
        if request_id in self.in_flight:
            raise Conflict(f"request {request_id} is being decided")
        known = self.known.get(request_id)
        if known is not None and known.body_sha256 != digest:
            raise Conflict(f"request {request_id} was decided for another body")
        headers = (
            body_headers(agent_id, signed.key_id, signed.signature, body)
            if signed is not None
            else ()
        )
        self.in_flight.add(request_id)
        try:
            if known is not None:  # a retry of the same body
                found = await self.current(request_id, known)
                if not found.client_side:
                    return found, known.agent_id
                # The client gave up and the log has no answer: publish it again. If the
                # enforcer did decide the first copy it ignores this one, and the first's
                # answer, when it comes, is this request's.
            decision = await self.client.decide(
                intent.request,
                timeout=self.timeout_s,
                request_id=request_id,
                event_time=intent.event_time,
                headers=headers,
            )
        finally:
            self.in_flight.discard(request_id)
        if decision.code != CLIENT_INVALID_REQUEST:  # published (or maybe): remembered
            self.remember(request_id, Known(decision, agent_id, digest))
        return decision, agent_id

    async def current(self, request_id: str, known: Known, wait_s: float = 0.0) -> ClientDecision:
        """What is known of ``request_id`` now: after a client-side deny (the client gave
        up, not the enforcer), the decisions log is asked whether an answer came later."""
        if known.decision.client_side:
            try:
                found = await self.lookup(request_id, known.agent_id)
            except LogUnavailable:
                found = None  # still no answer that we know of: the client's deny stands
            if found is None:
                return known.decision
            known = replace(known, decision=found)
            self.remember(request_id, known)
        return await self.latest(request_id, known, wait_s)

    def remember(self, request_id: str, known: Known) -> None:
        self.known[request_id] = known
        self.known.move_to_end(request_id)
        while len(self.known) > MAX_KNOWN:
            self.known.popitem(last=False)

    # -- polling -------------------------------------------------------------------------

    async def latest(self, request_id: str, known: Known, wait_s: float) -> ClientDecision:
        """The decision as it stands, waiting up to ``wait_s`` for an approval's answer."""
        if known.decision.effect != REQUIRE_APPROVAL:
            return known.decision
        if not self.client.awaits_approval(request_id):  # forgotten by the client: the log has it
            return await self._read_back(request_id, known)
        # At least a moment: an answer already in hand reaches the loop through a callback.
        answer = await self.client.wait_for_approval(known.decision, timeout=max(wait_s, 0.05))
        if answer.client_side:  # not answered yet
            return known.decision
        self.remember(request_id, replace(known, decision=answer))
        return answer

    async def _read_back(self, request_id: str, known: Known) -> ClientDecision:
        try:
            found = await self.lookup(request_id, known.agent_id)
        except LogUnavailable:
            found = None
        return found if found is not None else known.decision

    async def poll(
        self, request_id: str, agent_id: str | None, wait_s: float
    ) -> tuple[ClientDecision, str]:
        known = self.known.get(request_id)
        if known is not None:
            return await self.current(request_id, known, wait_s), known.agent_id
        if agent_id is None:
            raise NotFound(
                f"this gateway did not decide {request_id}; name its agent (?agent_id=) to"
                " read that agent's decisions partition"
            )
        found = await self.lookup(request_id, agent_id)
        if found is None:
            raise NotFound(f"no decision for {request_id} on the partition of agent {agent_id}")
        return found, agent_id

    async def lookup(self, request_id: str, agent_id: str) -> ClientDecision | None:
        """The last Decision for ``request_id`` on the decisions partition of ``agent_id``
        (read from the start: linear in the partition's length)."""
        async with self._lookups:  # each reads a whole partition: a few at a time
            try:
                return await asyncio.to_thread(self._lookup, request_id, agent_id)
            except Exception as exc:
                raise LogUnavailable(f"reading the decisions log: {exc}") from exc

    def _lookup(self, request_id: str, agent_id: str) -> ClientDecision | None:
        topic = self.prefix + AGENT_DECISIONS
        partition = partition_for(agent_id.encode(), len(self.log.partitions(topic)))
        last: ClientDecision | None = None
        for record in self.log.read_to_end(topic, [partition]):
            decoded = self.serde.decode_record(record, expect={"Decision"})
            if not isinstance(decoded, Decoded):
                continue
            datum = records.decoded_record(decoded, records.Decision)
            if datum["request_id"] == request_id and datum["agent_id"] == agent_id:
                last = decision_from_wire(datum, partition)
        return last

    # -- approvals -----------------------------------------------------------------------

    async def approve(self, request_id: str, body: bytes, signed: Signed) -> dict[str, Any]:
        """Publish the signed approval ``body`` for ``request_id``; the Approval datum.
        Raises BodyError (400), Conflict (409: not pending here, or another ticket)."""
        datum = approval_from_body(body)
        if datum["request_id"] != request_id:
            raise BodyError(
                f"the body approves {datum['request_id']!r}, the path names {request_id!r}"
            )
        known = self.known.get(request_id)
        if known is not None:
            if known.agent_id != datum["agent_id"]:
                raise Conflict(f"request {request_id} was made by {known.agent_id!r}")
            if known.decision.approval_ticket != datum["ticket"]:
                raise Conflict(
                    f"request {request_id} awaits ticket {known.decision.approval_ticket}"
                )
        headers = body_headers(datum["approver"], signed.key_id, signed.signature, body)
        value = self.serde.encode("Approval", datum)
        await asyncio.to_thread(publish_approval, self.log, datum, value, headers, self.prefix)
        return datum

    # -- health --------------------------------------------------------------------------

    async def ready(self) -> tuple[bool, str]:
        if self.closed:
            return False, "the gateway is closing"
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.log.end_offsets, self.prefix + AGENT_ACTIONS),
                READY_TIMEOUT_S,
            )
        except Exception as exc:  # any failure to reach the log: not ready
            return False, f"the log is not reachable: {type(exc).__name__}: {exc}"
        return True, "ok"

    def close(self) -> None:
        self.closed = True
        self.client.close()
        self.log.close(timeout=5.0)
