"""Calls held for a human's approval, and the check-back that runs one once it is approved.

A framework adapter given a `HeldCalls` keeps each call whose decision was
require_approval — exactly the arguments that were judged — under its request id, and
offers the model a check-back tool (`CHECK_BACK_TOOL`). When the model calls it with the
request id, the enforcer's follow-up decision is awaited briefly through the same client:
approved, the held call runs once, on those arguments (their canonical forms when the
adapter was asked for them); rejected or expired, it is dropped and the model reads why;
unanswered, it stays held. Nothing is decided here: the follow-up is the enforcer's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.adapters.refusal import refusal_text
from ordinance.client import ActionDenied, ApprovalRequired, Client, ClientDecision, SyncClient
from ordinance.client.decision import CLIENT_INVALID_REQUEST, client_deny
from ordinance.policy.decision import ALLOW

#: The name of the check-back tool the adapters build.
CHECK_BACK_TOOL = "ordinance_approval_status"
CHECK_BACK_DESCRIPTION = (
    "Check on a tool call that needed a human's approval, by the request id its refusal"
    " gave; runs the held call (once) if it was approved."
)


@dataclass(frozen=True)
class Held:
    """A call waiting for a human: its decision, and what the adapter needs to run it."""

    tool: str
    policy_tool: str
    decision: ClientDecision
    call: Any  # the adapter's own: the judged call, ready to run


@dataclass(frozen=True)
class Settled:
    """The check-back's outcome: ``held`` to run (with the approving decision), or ``text``
    for the model (still pending, refused, or nothing held)."""

    held: Held | None = None
    approved: ClientDecision | None = None
    text: str = ""


class HeldCalls:
    """Held calls of one client, at most ``max_held`` (the oldest is forgotten first)."""

    def __init__(
        self, client: Client | SyncClient, *, check_wait_s: float = 0.5, max_held: int = 1000
    ) -> None:
        self.client = client if isinstance(client, Client) else client.client
        self.check_wait_s = check_wait_s
        self.max_held = max_held
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, held: Held) -> None:
        with self._lock:
            self._held[held.decision.request_id] = held
            while len(self._held) > self.max_held:
                self._held.popitem(last=False)

    def pending_text(self, held: Held) -> str:
        error = ApprovalRequired(held.policy_tool, held.decision, held.decision.request_id)
        return (
            f"{refusal_text(error, held.tool, held.policy_tool)} Once approved, call the tool"
            f' {CHECK_BACK_TOOL} with {{"request_id": "{held.decision.request_id}"}}: it runs'
            " the held call once."
        )

    def _find(self, request_id: Any) -> Held | Settled:
        held = self._held.get(request_id) if isinstance(request_id, str) else None
        if held is None:
            return Settled(
                text=f"No call is held for approval under request id {request_id!r} (never"
                " asked here, already answered, or forgotten)."
            )
        return held

    def _settle(self, held: Held, answered: ClientDecision) -> Settled:
        if answered.client_side:  # nobody answered yet: still held
            return Settled(text=f"Still waiting for a human. {self.pending_text(held)}")
        with self._lock:  # one approval, one execution: only the taker runs it
            if self._held.pop(held.decision.request_id, None) is not held:
                return Settled(text="The held call was already taken by another check-back.")
        if answered.effect != ALLOW:
            denied = ActionDenied(held.policy_tool, answered, answered.request_id or None)
            return Settled(text=refusal_text(denied, held.tool, held.policy_tool))
        return Settled(held=held, approved=answered)

    async def check(self, request_id: Any) -> Settled:
        found = self._find(request_id)
        if isinstance(found, Settled):
            return found
        answered = await self.client.wait_for_approval(found.decision, timeout=self.check_wait_s)
        return self._settle(found, answered)

    def check_sync(self, request_id: Any) -> Settled:
        found = self._find(request_id)
        if isinstance(found, Settled):
            return found
        answered = self.client.wait_for_approval_sync(found.decision, timeout=self.check_wait_s)
        return self._settle(found, answered)


def canonical(
    held: Held, judged: Mapping[str, Any], approved: ClientDecision
) -> dict[str, Any] | str:
    """The judged arguments replaced by the canonical forms the approving decision carries,
    or why not (an argument without one: refused rather than run raw)."""
    missing = sorted(name for name in judged if name not in approved.canonical_args)
    if missing:
        refused = client_deny(
            CLIENT_INVALID_REQUEST,
            f"the decision carries no canonical form of {', '.join(missing)}",
            request_id=approved.request_id,
        )
        denied = ActionDenied(held.policy_tool, refused, approved.request_id or None)
        return refusal_text(denied, held.tool, held.policy_tool)
    return {name: approved.canonical_args[name] for name in judged}
