"""Intents and approvals signed over an HTTP body (``ordinance gateway``,
ordinance/identity/http_signing.py): the enforcer verifies the agent's own signature over
the body the record carries, and judges the record only when it is exactly what that body
says — a gateway that alters the request, or a signature replayed under another request
id, is denied ``body_mismatch``; a body altered after signing is ``bad_signature``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ordinance.identity.http_signing import (
    APPROVAL_CONTEXT,
    BODY_HEADER,
    BODY_MISMATCH,
    INTENT_CONTEXT,
    approval_from_body,
    body_headers,
    intent_from_body,
)
from ordinance.identity.registry import BAD_SIGNATURE, UNSIGNED
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.processors.enforcer import Enforcer
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import Record, open_log
from ordinance.wire import request_to_wire
from tests.processors.caught_up import run_caught_up

from .identity_helpers import SERDE, Registry, at, by_request, decisions, send_records
from .test_enforcer import EXAMPLES, SPECS, T0, publish

BILLING_ATTRS = {"team": "finance"}


def enforce(url: str, trust: TrustRoot, now: float = T0) -> None:
    """Decide what is on the log (all of it written before)."""
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: now, trust=trust, max_clock_skew_s=86_400)
        run_caught_up(enforcer)


def body(
    request_id: str, amount: str = "50", minute: float = 0, agent: str = "billing-bot"
) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "event_time": at(minute).isoformat(),
            "agent": {"id": agent},
            "action": {
                "tool": "payments.transfer",
                "args": {"amount": amount, "currency": "EUR", "country": "DE", "iban": "X"},
            },
        }
    ).encode()


def record_of(
    raw: bytes, signer: PrincipalSigner | None, *, sign: bytes | None = None, **change: Any
) -> Record:
    """What the gateway publishes for ``raw``: the request it parses to (with ``change``
    applied to the datum: a dishonest gateway), carrying the body and the agent's signature
    over ``sign`` (default ``raw``)."""
    intent = intent_from_body(raw, signed=True)
    assert intent.request_id is not None and intent.event_time is not None
    datum = request_to_wire(
        intent.request,
        request_id=intent.request_id,
        event_time=intent.event_time,
        client_id="gateway",
    )
    datum.update(change)
    value = SERDE.encode("ActionRequest", datum)
    headers: tuple[tuple[str, bytes], ...] = ()
    if signer is not None:
        signature = signer.signer.sign(INTENT_CONTEXT + (sign if sign is not None else raw))
        headers = body_headers(signer.principal_id, signer.key_id, signature, raw)
    return Record(datum["agent"]["id"].encode(), value, headers, int(T0 * 1000))


def test_a_body_signed_intent_is_judged_only_as_the_body_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    mallory = registry.put("mallory", roles=("support",), attributes={"team": "cx"})
    good = body("good")
    original = body("original")
    tampered = body("tampered", amount="9000")
    altered = record_of(body("altered"), bot)
    send_records(
        url,
        record_of(good, bot),
        # the body altered after signing (the signature is over another body)
        record_of(tampered, bot, sign=body("tampered")),
        # a gateway that changes the amount in the record it writes
        record_of(
            body("gateway-lies"),
            bot,
            action={
                "tool": "payments.transfer",
                "args": {"amount": "9000", "currency": "EUR", "country": "DE", "iban": "X"},
            },
        ),
        # the signed body of "original" replayed under another request id
        record_of(original, bot, request_id="replayed"),
        # the agent named in the body signs, but the record speaks for another agent
        record_of(
            body("other-agent", agent="mallory"),
            mallory,
            agent={
                "id": "billing-bot",
                "roles": [],
                "attributes": {},
            },
        ),
        record_of(body("no-sig"), None),
        # the body header twice is malformed, never a choice of which to believe
        Record(altered.key, altered.value, (*altered.headers, (BODY_HEADER, good)), int(T0 * 1000)),
    )
    enforce(url, registry.trust)
    got = {rid: (d["effect"], d["code"]) for rid, d in by_request(url).items()}
    assert got == {
        "good": ("allow", "matched"),
        "tampered": ("deny", BAD_SIGNATURE),
        "gateway-lies": ("deny", BODY_MISMATCH),
        "replayed": ("deny", BODY_MISMATCH),
        "other-agent": ("deny", "identity_mismatch"),
        "no-sig": ("deny", UNSIGNED),
        "altered": ("deny", BAD_SIGNATURE),
    }
    assert "request_id" in by_request(url)["replayed"]["detail"]
    assert by_request(url)["good"]["key_id"] == bot.key_id
    # replay judges the carried bodies again and finds the same decisions
    source, log = open_source(url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert report.ok, [f.to_json() for f in report.findings]
    assert sum(c.agreed for c in report.partitions.values()) == len(got)


def approval_body(request_id: str, pending: dict[str, Any], approver: str, **change: Any) -> bytes:
    data = {
        "request_id": request_id,
        "agent_id": pending["agent_id"],
        "ticket": pending["approval_ticket"],
        "verdict": "approved",
        "approver": approver,
        "reason": "looks fine",
        "at": at(1).isoformat(),
        "expires_at": None,
        **change,
    }
    return json.dumps(data).encode()


def approval_record(raw: bytes, signer: PrincipalSigner, **change: Any) -> Record:
    datum = {**approval_from_body(raw), **change}
    value = SERDE.encode("Approval", datum)
    signature = signer.signer.sign(APPROVAL_CONTEXT + raw)
    headers = body_headers(signer.principal_id, signer.key_id, signature, raw)
    return Record(datum["agent_id"].encode(), value, headers, int(T0 * 1000))


def test_a_body_signed_approval_counts_only_as_the_body_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    dana = registry.put("dana", kind="person", roles=("approver:finance",))
    erin = registry.put("erin", kind="person", roles=("approver:finance",))
    send_records(url, record_of(body("big", amount="25000"), bot))
    enforce(url, registry.trust)
    pending = by_request(url)["big"]
    assert (pending["effect"], pending["approvals_required"]) == ("require_approval", 2)

    # dana approves over HTTP; a gateway that turns erin's rejection into an approval is
    # caught; an approval body signed with the intent context is not an approval signature
    wrong_context = approval_body("big", pending, "erin")
    forged = approval_record(wrong_context, erin)
    forged_sig = erin.signer.sign(INTENT_CONTEXT + wrong_context)
    forged = forged._replace(headers=body_headers("erin", erin.key_id, forged_sig, wrong_context))
    records = [
        approval_record(approval_body("big", pending, "dana"), dana),
        approval_record(
            approval_body("big", pending, "erin", verdict="rejected"), erin, verdict="approved"
        ),
        forged,
    ]
    with open_log(url) as log:
        log.produce(SPECS["agent.approvals"].name, records)
    enforce(url, registry.trust, now=T0 + 120)
    follow_ups = [
        (d["code"], d["detail"].split(":")[0], d["approvers"])
        for _, _, name, d in decisions(url)
        if name == "Decision" and d["request_id"] == "big"
    ]
    assert follow_ups == [
        ("matched", follow_ups[0][1], []),
        ("approval_recorded", follow_ups[1][1], ["dana"]),
        ("approval_refused", BODY_MISMATCH, ["dana"]),
        ("approval_refused", BAD_SIGNATURE, ["dana"]),
    ]
    # a third, honest approval by erin completes it
    with open_log(url) as log:
        log.produce(
            SPECS["agent.approvals"].name,
            [approval_record(approval_body("big", pending, "erin", at=at(2).isoformat()), erin)],
        )
    enforce(url, registry.trust, now=T0 + 180)
    final = by_request(url)["big"]
    assert (final["effect"], final["approvers"]) == ("allow", ["dana", "erin"])
