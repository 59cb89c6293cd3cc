"""What a model reads when Ordinance refuses a tool call, for every framework adapter.

The text names the effect, the reasons, the code, the rule ids and the request id, so a
model can change course (or tell its human whom to ask), and says that the tool did not
run. `summary` is the same as data, for frameworks that carry structured error detail.
"""

from __future__ import annotations

from typing import Any

from ordinance.client import ApprovalRequired, GuardError


def summary(error: GuardError, policy_tool: str) -> dict[str, Any]:
    return {**error.decision.brief(), "policy_tool": policy_tool}


def refusal_text(error: GuardError, tool: str, policy_tool: str) -> str:
    """The message a model gets instead of the tool's result."""
    decision = error.decision
    why = "; ".join(r for r in decision.reasons if r) or decision.detail
    rules = ", ".join(decision.rule_ids) or "none"
    request_id = decision.request_id or "-"
    if isinstance(error, ApprovalRequired):
        return (
            f"Approval required: {why or 'the policy requires a human approval'}. The tool"
            f" {tool} (policy tool {policy_tool}) has not run. request id: {request_id};"
            f" rules: {rules}. A human must approve request {request_id} (`ordinance"
            f" approvals approve {request_id} --log LOG`, or `reject`) for this call to be"
            " allowed: tell your user, and do not retry it with other arguments to get around"
            " the rule."
        )
    source = (
        "Ordinance (no decision from the policy engine: failing closed)"
        if decision.client_side
        else "policy"
    )
    return (
        f"Denied by {source}: {why or 'denied'}. The tool {tool} (policy tool {policy_tool})"
        f" was not called. code: {decision.code or '-'}; rules: {rules}; request id: {request_id}"
    )
