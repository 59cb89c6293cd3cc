"""What a guarded tool call raises when the answer is not allow."""

from __future__ import annotations

from ordinance.client.decision import ClientDecision
from ordinance.errors import OrdinanceError


class GuardError(OrdinanceError):
    """A guarded tool did not run; ``decision`` says why (it may be client-side)."""

    def __init__(self, tool: str, decision: ClientDecision, request_id: str | None) -> None:
        self.tool = tool
        self.decision = decision
        self.request_id = request_id
        why = ", ".join(decision.rule_ids) or decision.detail or "; ".join(decision.reasons)
        super().__init__(f"{tool}: {decision.effect} ({decision.code}){': ' + why if why else ''}")


class ActionDenied(GuardError):
    """The decision was deny: by a policy, by the enforcer failing closed, or by the client
    itself (timeout, transport failure, arguments that cannot be sent)."""


class ApprovalRequired(GuardError):
    """The decision was require_approval: the tool may run only after a human approves.

    ``ticket`` is the decision's approval ticket (the content hash an Approval on
    ``agent.approvals``, keyed by ``request_id``, must name); the enforcer then emits a
    follow-up decision for the request, which `Client.wait_for_approval` awaits.
    """

    def __init__(self, tool: str, decision: ClientDecision, request_id: str | None) -> None:
        super().__init__(tool, decision, request_id)
        self.ticket = decision.approval_ticket
