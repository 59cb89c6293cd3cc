"""A real pipeline behind the HTTP gateway for its tests: the example policies published
and enforced on an embedded log, an `Enforcer` deciding in a thread (with a trust root and
registered agents and approvers, or without identity), and helpers that sign HTTP bodies
as an agent in another language would."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordinance.identity.http_signing import APPROVAL_CONTEXT, INTENT_CONTEXT
from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.topics import DEFAULT_PREFIX, IDENTITY_REGISTRY, ensure_topics
from tests.identity.helpers import new_signer
from tests.processors.identity_helpers import BEFORE, SERDE, Registry
from tests.processors.running import enforcer_thread

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BILLING: dict[str, Any] = {"roles": ("billing",), "attributes": {"team": "finance"}}


@dataclass
class Pipeline:
    url: str
    bundle_id: str
    enforcer: Enforcer
    registry: Registry | None
    keys: dict[str, PrincipalSigner] = field(default_factory=dict)


@contextmanager
def pipeline(where: Path | str, *, identity: bool) -> Iterator[Pipeline]:
    """Publish the example policies, register the principals (with ``identity``), run an
    enforcer until the context ends; yields once it owns every partition. ``where``: a
    directory for an embedded log, or a log URL."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'log.db'}"
    files = read_bundle_dir(EXAMPLES / "policies")
    bundle_id = compile_bundle(files).bundle_id
    registry = Registry(url) if identity else None
    with open_log(url) as log:
        ensure_topics(log)
        # With identity, the controller signs policy.active: the enforcer believes no other.
        controller = registry.controller() if registry is not None else None
        publish_bundle(log, files, bundle_id, actor="test")
        run_controller(log, once=True, signer=controller)
    trust: TrustRoot | None = None
    keys: dict[str, PrincipalSigner] = {}
    if registry is not None:
        principals = {f"billing-bot{n}": BILLING for n in ("", "-2", "-3", "-4")}
        principals["mallory"] = {"roles": ("support",), "attributes": {}}
        for person in ("dana", "erin"):
            principals[person] = {
                "roles": ("approver:finance",),
                "attributes": {},
                "kind": "person",
            }
        keys = register(registry, principals)
        trust = registry.trust
    with enforcer_thread(url, trust=trust, max_clock_skew_s=300) as running:
        yield Pipeline(url, bundle_id, running.enforcer, registry, keys)


def register(
    registry: Registry, principals: dict[str, dict[str, Any]]
) -> dict[str, PrincipalSigner]:
    """Registry records for every principal, written in one produce (one log session:
    on Kafka each session costs about a second); their keys."""
    keys = {principal: new_signer(principal) for principal in principals}
    records = []
    for principal, spec in principals.items():
        datum = identity_datum(
            principal,
            kind=spec.get("kind", "agent"),
            version=1,
            at=BEFORE,
            keys=[key_entry(keys[principal].signer.key.public_key(), BEFORE, None)],
            roles=spec["roles"],
            attributes=spec["attributes"],
            status="active",
        )
        records.append(signed_identity_record(SERDE, datum, registry.root))
    with open_log(registry.url) as log:
        log.produce(DEFAULT_PREFIX + IDENTITY_REGISTRY, records)
    return keys


def now_iso(offset_s: float = 0.0) -> str:
    return dt.datetime.fromtimestamp(time.time() + offset_s, dt.UTC).isoformat()


def transfer(agent: str, amount: str, country: str = "DE", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "event_time": now_iso(),
        "agent": {"id": agent},
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": amount, "currency": "EUR", "country": country, "iban": "DE89"},
        },
        **extra,
    }


def sign(signer: PrincipalSigner, body: bytes, context: bytes = INTENT_CONTEXT) -> dict[str, str]:
    """The HTTP headers an agent sends with a signed body."""
    signature = signer.signer.sign(context + body)
    return {
        "content-type": "application/json",
        "ordinance-key-id": signer.key_id,
        "ordinance-signature": base64.b64encode(signature).decode(),
    }


def signed_post(signer: PrincipalSigner, data: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(data).encode()
    return body, sign(signer, body)


def approval_body(
    decision: dict[str, Any], approver: str, verdict: str = "approved"
) -> dict[str, Any]:
    return {
        "request_id": decision["request_id"],
        "agent_id": decision["agent_id"],
        "ticket": decision["approval_ticket"],
        "verdict": verdict,
        "approver": approver,
        "reason": "checked the invoice",
        "at": now_iso(),
        "expires_at": None,
    }


def signed_approval(signer: PrincipalSigner, data: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(data).encode()
    return body, sign(signer, body, APPROVAL_CONTEXT)
