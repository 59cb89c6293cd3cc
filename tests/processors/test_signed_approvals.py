"""Signed approvals at the enforcer (issue 12 item 3), on both backends: with identity
enforced an Approval counts only when signed by an active registry principal other than
the agent, holding an approver role the rule names; N distinct approvers are needed; every
refusal is a recorded ``approval_refused`` with its code, and replay agrees."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from ordinance.identity.registry import (
    BAD_SIGNATURE,
    IDENTITY_MISMATCH,
    NOT_AUTHORISED,
    PRINCIPAL_SUSPENDED,
    UNKNOWN_PRINCIPAL,
    UNSIGNED,
)
from ordinance.processors.approvals import answer, pending_approvals
from ordinance.processors.enforcer_state import APPROVAL_REJECTED, APPROVED
from ordinance.processors.identity_gate import APPROVAL_RECORDED, APPROVAL_REFUSED
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams.topics import AGENT_APPROVALS
from tests.identity.helpers import new_signer

from .identity_helpers import (
    SERDE,
    Registry,
    approval,
    decisions,
    enforce,
    intent,
    send_records,
    signed,
)
from .shared_log import helper_log
from .test_enforcer import EXAMPLES, SPECS, T0, publish

ON_MEMORY_LOG = True  # also on memory:// (tests/processors/conftest.py)

BILLING = {"roles": ("billing",), "attributes": {"team": "finance"}}


def bundle(tmp_path: Path, requirement: str = "") -> Path:
    """The examples, with large transfers needing exactly ``requirement`` (rule lines;
    empty: one approval by anyone but the agent), whatever the examples say today."""
    out = tmp_path / "policies"
    shutil.copytree(EXAMPLES, out)
    payments = out / "payments.yaml"
    lines = [
        line
        for line in payments.read_text().splitlines(keepends=True)
        if not line.startswith(("    approvers:", "    approvals:"))
    ]
    text = "".join(lines)
    marker = "    reason: transfers above 10k need a human\n"
    assert marker in text
    payments.write_text(text.replace(marker, marker + requirement))
    return out


def two_approver_bundle(tmp_path: Path) -> Path:
    """Large transfers need two distinct approver:finance approvals."""
    return bundle(tmp_path, "    approvers: {roles: [approver:finance]}\n    approvals: 2\n")


def history(
    url: str, request_id: str, rows: list[tuple[int, int, str, dict[str, Any]]] | None = None
) -> list[tuple[str, str | None, str, list[str]]]:
    """(effect, code, detail, approvers) of every decision of one request, in order.
    ``rows``: `decisions(url)` as the caller read it after the last enforcer run (each
    read is a marker round on Kafka); None reads it now."""
    return [
        (d["effect"], d["code"], d["detail"], list(d["approvers"]))
        for _, _, n, d in (decisions(url) if rows is None else rows)
        if n == "Decision" and d["request_id"] == request_id
    ]


def last_by_request(rows: list[tuple[int, int, str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """`by_request` of rows already read."""
    return {d["request_id"]: d for _, _, n, d in rows if n == "Decision"}


def test_two_distinct_authorised_approvers_and_every_refusal_recorded(
    log_url: str, tmp_path: Path
) -> None:
    url = log_url
    registry = Registry(url)
    publish(url, two_approver_bundle(tmp_path), registry.controller())
    bot = registry.put("billing-bot", **BILLING)  # type: ignore[arg-type]
    alice = registry.put("alice", kind="person", roles=("approver:finance",))
    bob = registry.put("bob", kind="person", roles=("approver:finance",))
    carol = registry.put("carol", kind="person", roles=("approver:hr",))
    dave = registry.put("dave", kind="person", roles=("approver:finance",), status="suspended")
    send_records(
        url,
        signed(intent("big", "billing-bot", "25000"), bot),
        signed(intent("big2", "billing-bot", "26000"), bot),
    )
    enforce(url, registry.trust)
    seen = decisions(url)
    [(effect, _, _, approvers)] = history(url, "big", seen)
    assert (effect, approvers) == ("require_approval", [])
    decided = last_by_request(seen)  # no enforcer runs until the approvals are all in
    with helper_log(url) as log:
        [pending] = [d for d in pending_approvals(log) if d["request_id"] == "big"]
    assert (pending["approval_roles"], pending["approvals_required"]) == (["approver:finance"], 2)
    approve = functools.partial(approval, url, decided=decided)
    approve("big", bot)  # self-approval
    approve("big", carol)  # no approver:finance role
    approve("big", None, approver="alice")  # unsigned
    approve("big", new_signer("alice"), approver="alice")  # a key alice does not have
    approve("big", new_signer("eve"))  # not in the registry
    approve("big", dave)  # suspended
    approve("big", bob, approver="alice")  # bob signs an approval naming alice
    approve("big", alice)
    approve("big", alice)  # the same approver twice counts once (and records nothing)
    enforce(url, registry.trust, now=T0 + 120)
    seen = decisions(url)
    steps = history(url, "big", seen)
    assert [(e, c) for e, c, _, _ in steps] == [
        ("require_approval", "matched"),
        *[("require_approval", APPROVAL_REFUSED)] * 7,
        ("require_approval", APPROVAL_RECORDED),
    ]
    assert [d.split(":")[0] for _, _, d, _ in steps[1:8]] == [
        NOT_AUTHORISED,
        NOT_AUTHORISED,
        UNSIGNED,
        "key_not_valid",
        UNKNOWN_PRINCIPAL,
        PRINCIPAL_SUSPENDED,
        IDENTITY_MISMATCH,
    ]
    assert steps[-1][3] == ["alice"]
    with helper_log(url) as log:  # the second distinct approver, by the library call: allowed
        answer(log, "big", approve=True, approver="bob", signer=bob, clock=lambda: T0 + 180)
    approval(url, "big2", alice, decided=last_by_request(seen))
    approval(url, "big2", bob, verdict="rejected", decided=last_by_request(seen))  # ends it
    enforce(url, registry.trust, now=T0 + 240)
    seen = decisions(url)
    final = history(url, "big", seen)[-1]
    assert (final[0], final[1], final[3]) == ("allow", APPROVED, ["alice", "bob"])
    assert [(e, c, a) for e, c, _, a in history(url, "big2", seen)][1:] == [
        ("require_approval", APPROVAL_RECORDED, ["alice"]),
        ("deny", APPROVAL_REJECTED, ["alice", "bob"]),
    ]
    with helper_log(url) as log:
        assert pending_approvals(log) == []
    source, log = open_source(url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert report.ok, [f.to_json() for f in report.findings]
    assert sum(c.agreed for c in report.partitions.values()) == 13  # every record above


def test_a_forged_signature_on_an_approval_is_refused(log_url: str, tmp_path: Path) -> None:
    url = log_url
    registry = Registry(url)
    # one approval needed, by anyone but the agent
    publish(url, bundle(tmp_path), registry.controller())
    bot = registry.put("billing-bot", **BILLING)  # type: ignore[arg-type]
    alice = registry.put("alice", kind="person", roles=("approver",))
    send_records(url, signed(intent("big", "billing-bot", "25000"), bot))
    enforce(url, registry.trust)
    genuine = approval(url, "big", alice, verdict="rejected", produce=False)
    assert genuine.value is not None
    datum = SERDE.decode(genuine.value).value  # type: ignore[union-attr]
    # Alice's signature over her rejection, replayed over the same approval flipped to
    # approved: refused, recorded; her genuine rejection then ends the request.
    flipped = SERDE.encode("Approval", {**datum, "verdict": "approved"})
    with helper_log(url) as log:
        log.produce(SPECS[AGENT_APPROVALS].name, [genuine._replace(value=flipped), genuine])
    enforce(url, registry.trust, now=T0 + 120)
    steps = history(url, "big")
    assert [(e, c) for e, c, _, _ in steps] == [
        ("require_approval", "matched"),
        ("require_approval", APPROVAL_REFUSED),
        ("deny", APPROVAL_REJECTED),
    ]
    assert steps[1][2].startswith(BAD_SIGNATURE + ":")
    assert (steps[1][3], steps[2][3]) == ([], ["alice"])
