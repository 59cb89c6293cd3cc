"""A registry on the log, signed intents and signed approvals, for the enforcer's identity
tests (both backends)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.processors.active_auth import CONTROLLER_ROLE
from ordinance.processors.enforcer import Enforcer
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    AGENT_ACTIONS,
    AGENT_APPROVALS,
    AGENT_DECISIONS,
    IDENTITY_REGISTRY,
    ensure_topics,
)
from ordinance.wire import request_to_wire
from tests.identity.helpers import new_signer
from tests.processors.caught_up import run_caught_up
from tests.processors.shared_log import helper_log
from tests.processors.test_enforcer import SPECS, T0

SERDE = Serde()
CONTROLLER = "policy-controller"
BEFORE = dt.datetime.fromtimestamp(T0 - 3600, dt.UTC)  # when the registry was written


def at(minute: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + 60 * minute, dt.UTC)


@dataclass
class Registry:
    """Writes admin-signed registry records to ``identity.registry``."""

    url: str
    root: PrincipalSigner = field(default_factory=lambda: new_signer("root-admin"))
    versions: dict[str, int] = field(default_factory=dict)
    keys: dict[str, PrincipalSigner] = field(default_factory=dict)

    @property
    def trust(self) -> TrustRoot:
        from ordinance.identity.trust import TrustedKey

        public = self.root.signer.key.public_key()
        return TrustRoot((TrustedKey("root-admin", self.root.key_id, public),))

    def controller(self) -> PrincipalSigner:
        """The controller service (role ``policy-controller``), registered once: an enforcer
        with this trust root believes only what it signs on policy.active (`active_auth`)."""
        if CONTROLLER in self.keys:
            return self.keys[CONTROLLER]
        return self.put(CONTROLLER, kind="service", roles=(CONTROLLER_ROLE,))

    def put(
        self,
        principal_id: str,
        *,
        kind: str = "agent",
        roles: tuple[str, ...] = (),
        attributes: dict[str, Any] | None = None,
        status: str = "active",
        signers: list[PrincipalSigner] | None = None,
        windows: list[tuple[dt.datetime, dt.datetime | None]] | None = None,
        when: dt.datetime = BEFORE,
    ) -> PrincipalSigner:
        """Write the next version of a principal; returns its (first) signer."""
        if signers is None:
            signers = [self.keys.get(principal_id) or new_signer(principal_id)]
        self.keys.setdefault(principal_id, signers[0])
        windows = windows or [(BEFORE, None)] * len(signers)
        version = self.versions.get(principal_id, 0) + 1
        self.versions[principal_id] = version
        datum = identity_datum(
            principal_id,
            kind=kind,
            version=version,
            at=when,
            keys=[
                key_entry(s.signer.key.public_key(), nb, na)
                for s, (nb, na) in zip(signers, windows, strict=True)
            ],
            roles=roles,
            attributes=attributes,
            status=status,
        )
        with helper_log(self.url) as log:
            ensure_topics(log)
            log.produce(
                "ordinance." + IDENTITY_REGISTRY, [signed_identity_record(SERDE, datum, self.root)]
            )
        return signers[0]


def intent(
    request_id: str,
    agent: str,
    amount: str = "50",
    minute: float = 0,
    *,
    roles: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    country: str = "DE",
) -> dict[str, Any]:
    request = {
        "agent": {"id": agent, "roles": roles or [], **(attributes or {})},
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": amount, "currency": "EUR", "country": country, "iban": "X"},
        },
    }
    return request_to_wire(request, request_id=request_id, event_time=at(minute), client_id="t")


def signed(datum: dict[str, Any], signer: PrincipalSigner | None) -> Record:
    """An action record keyed by its agent id, signed by ``signer`` (None: unsigned)."""
    value = SERDE.encode("ActionRequest", datum)
    headers = signer.headers(value) if signer is not None else ()
    return Record(datum["agent"]["id"].encode(), value, headers, int(T0 * 1000))


def send_records(url: str, *records: Record) -> None:
    with helper_log(url) as log:
        ensure_topics(log)
        log.produce(SPECS[AGENT_ACTIONS].name, list(records))


def enforce(url: str, trust: TrustRoot | None, now: float = T0) -> Enforcer:
    with open_log(url) as log:  # the enforcer's own connection, as a restart has
        enforcer = Enforcer(log, clock=lambda: now, trust=trust, max_clock_skew_s=86_400)
        run_caught_up(enforcer)
    return enforcer


def decisions(url: str) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(partition, offset, schema name, datum) of every decisions record."""
    out = []
    with helper_log(url) as log:
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = SERDE.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.append((record.partition, record.offset, decoded.name, decoded.value))
    return sorted(out, key=lambda r: (r[0], r[1]))


def by_request(url: str) -> dict[str, dict[str, Any]]:
    """The last Decision of each request id."""
    return {d["request_id"]: d for _, _, name, d in decisions(url) if name == "Decision"}


def approval(
    url: str,
    request_id: str,
    signer: PrincipalSigner | None,
    *,
    approver: str | None = None,
    verdict: str = "approved",
    minute: float = 1,
    produce: bool = True,
    decided: dict[str, dict[str, Any]] | None = None,
) -> Record:
    """An Approval bound to the pending decision's ticket, signed by ``signer``, produced
    to ``agent.approvals`` (unless not ``produce``); returns the record. ``decided``: the
    caller's `by_request(url)` when no enforcer ran since (each read is a marker round on
    Kafka); None reads it now."""
    pending = (by_request(url) if decided is None else decided)[request_id]
    datum = {
        "request_id": request_id,
        "agent_id": pending["agent_id"],
        "verdict": verdict,
        "approver": approver or (signer.principal_id if signer else "nobody"),
        "reason": None,
        "at": at(minute),
        "expires_at": None,
        "ticket": pending["approval_ticket"],
    }
    value = SERDE.encode("Approval", datum)
    headers = signer.headers(value) if signer is not None else ()
    record = Record(pending["agent_id"].encode(), value, headers, int(T0 * 1000))
    if produce:
        with helper_log(url) as log:
            log.produce(SPECS[AGENT_APPROVALS].name, [record])
    return record
