"""A law of identity at the enforcer (issue 12): for random registries and requests, the
decision never depends on the roles and attributes a request claims. A signed request that
claims nothing, or exactly what the registry says, gets the decision the pre-identity
enforcer gave a request carrying the registry's roles and attributes; any other claim is
``identity_mismatch``. Pure: `decide` over a folded partition state, no log."""

from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.identity.records import identity_datum, key_entry
from ordinance.identity.registry import IDENTITY_MISMATCH
from ordinance.identity.signing import PrincipalSigner, signature_of, signature_valid
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.ruleset import Ruleset
from ordinance.processors import pre_verifier
from ordinance.processors.enforcer_state import PartitionState, decide
from ordinance.processors.pre_verifier import PreVerifier
from ordinance.streams.serde import Decoded, Serde
from ordinance.wire import request_to_wire
from tests.identity.helpers import World, new_signer
from tests.processors.test_enforcer import EXAMPLES, T0

SERDE = Serde()
AGENT = "a1"
EVENT = dt.datetime.fromtimestamp(T0, dt.UTC)
ROLES = ["billing", "support", "admin"]
ATTRIBUTES = {"team": st.sampled_from(["finance", "cx"]), "clearance": st.integers(0, 3)}


@functools.cache
def ruleset() -> Ruleset:
    return compile_bundle(read_bundle_dir(EXAMPLES))


@functools.cache
def world() -> tuple[World, PrincipalSigner]:
    return World(), new_signer(AGENT)


def attributes() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"team": ATTRIBUTES["team"]}, optional={"clearance": ATTRIBUTES["clearance"]}
    )


def state_with(roles: list[str], attrs: dict[str, Any], identity: bool) -> PartitionState:
    """A partition whose registry holds agent a1 with these roles and attributes."""
    w, key = world()
    state = PartitionState(0)
    state.fold("RulesetSwap", {"bundle_id": ruleset().bundle_id, "policy_offset": 0}, 0)
    takeover = {"trust_root": w.trust.to_wire() if identity else None}
    state.fold("EnforcerTakeover", takeover, 1)
    if identity:
        record = identity_datum(
            AGENT,
            kind="agent",
            version=1,
            at=EVENT - dt.timedelta(hours=1),
            keys=[key_entry(key.signer.key.public_key(), EVENT - dt.timedelta(hours=1))],
            roles=roles,
            attributes=attrs,
        )
        value, signature, _ = w.sign(record)
        update = {
            "principal_id": AGENT,
            "registry_offset": 0,
            "record": value,
            "signer_id": signature.signer_id,
            "key_id": signature.key_id,
            "signature": signature.signature,
            "at": EVENT,
        }
        state.fold("IdentityUpdate", update, 2)
        assert state.identity is not None and state.identity.registry.get(AGENT) is not None
    return state


def decision(state: PartitionState, request: dict[str, Any], *, sign: bool) -> dict[str, Any]:
    datum = request_to_wire(request, request_id="r", event_time=EVENT, client_id="t")
    value = SERDE.encode("ActionRequest", datum)
    headers = world()[1].headers(value) if sign else ()
    decoded = SERDE.decode(value)
    assert (isinstance(decoded, Decoded) and signature_of(headers) is not None) or not sign
    out = decide(
        state,
        ruleset(),
        decoded,
        action_offset=0,
        agent_key=AGENT.encode(),
        enforcer_id="e",
        evaluated_at=EVENT,
        value=value,
        headers=headers,
    )
    assert out is not None
    return out


def outcome(d: dict[str, Any]) -> tuple[Any, ...]:
    return d["effect"], d["code"], d["rule_ids"], d["reasons"], d["tool"], d["args"]


ACTIONS = st.fixed_dictionaries(
    {
        "tool": st.just("payments.transfer"),
        "args": st.fixed_dictionaries(
            {
                "amount": st.sampled_from(["50", "9000", "25000", "-1"]),
                "currency": st.sampled_from(["EUR", "JPY"]),
                "country": st.sampled_from(["DE", "KP"]),
                "iban": st.just("X"),
            }
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    registry_roles=st.lists(st.sampled_from(ROLES), unique=True),
    registry_attrs=attributes(),
    claim=st.one_of(
        st.just("none"),
        st.just("registry"),
        st.tuples(st.lists(st.sampled_from(ROLES), unique=True), attributes()),
    ),
    action=ACTIONS,
)
def test_the_decision_never_depends_on_claimed_roles_or_attributes(
    registry_roles: list[str],
    registry_attrs: dict[str, Any],
    claim: str | tuple[list[str], dict[str, Any]],
    action: dict[str, Any],
) -> None:
    if claim == "none":
        roles, attrs = [], {}
    elif claim == "registry":
        roles, attrs = list(reversed(registry_roles)), dict(registry_attrs)
    else:
        assert isinstance(claim, tuple)
        roles, attrs = claim
    claimed = {"agent": {"id": AGENT, "roles": roles, **attrs}, "action": action}
    got = decision(state_with(registry_roles, registry_attrs, True), claimed, sign=True)
    # What the enforcer without identity decides for a request carrying the registry's.
    truth = {"agent": {"id": AGENT, "roles": registry_roles, **registry_attrs}, "action": action}
    legacy = decision(state_with(registry_roles, registry_attrs, False), truth, sign=False)
    differs = (roles and set(roles) != set(registry_roles)) or (attrs and attrs != registry_attrs)
    if differs:
        assert (got["effect"], got["code"]) == ("deny", IDENTITY_MISMATCH)
    else:
        assert outcome(got) == outcome(legacy)
        assert got["key_id"] == world()[1].key_id and legacy["key_id"] is None


def test_the_pre_verifier_answers_only_for_the_same_key_object_value_and_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The enforcer's parallel pre-verification is an optimisation: an answer is reused
    only for the very key object, value bytes and signature it was computed for."""
    state = state_with(["billing"], {"team": "finance"}, True)
    assert state.identity is not None
    signer = world()[1]
    value = b"an intent"
    headers = signer.headers(value)
    signature = dict(headers)["ordinance-sig"]
    principal = state.identity.registry.get(AGENT)
    assert principal is not None
    public = principal.keys[0].public
    calls: list[bytes] = []

    def counted(key: Any, signed: bytes, sig: bytes) -> bool:
        calls.append(signed)
        return signature_valid(key, signed, sig)

    monkeypatch.setattr(pre_verifier, "signature_valid", counted)
    verifier = PreVerifier(2)
    try:
        # Three copies in one batch: verified once, by a worker or taken back.
        verifier.prepare([(state.identity, value, headers)] * 3)
        assert verifier.verify(public, value, signature) is True
        assert verifier.verify(public, value, signature) is True
        assert calls == [value]
        # The same signature over other bytes is verified on the spot (and fails), as is
        # the same key under another object.
        assert verifier.verify(public, b"other", signature) is False
        twin = Ed25519PublicKey.from_public_bytes(public.public_bytes_raw())
        assert verifier.verify(twin, value, signature) is True
        assert calls == [value, b"other", value]
        # A new batch forgets the last one's answers.
        verifier.prepare([])
        assert verifier.verify(public, value, signature) is True
        assert calls == [value, b"other", value, value]
    finally:
        verifier.close()


def test_the_fold_judges_an_identity_update_again_never_trusting_it() -> None:
    """An IdentityUpdate installs its record only if the registry's own rules accept the
    signed record it carries: a forged signature, a record signed by a non-admin, or a
    principal id other than the record's installs nothing."""
    w, key = world()
    state = state_with(["billing"], {"team": "finance"}, True)
    assert state.identity is not None
    record = identity_datum(
        "intruder",
        kind="agent",
        version=1,
        at=EVENT,
        keys=[key_entry(key.signer.key.public_key(), EVENT)],
        roles=["admin"],
    )
    value, signature, _ = w.sign(record)
    genuine = {
        "principal_id": "intruder",
        "registry_offset": 7,
        "record": value,
        "signer_id": signature.signer_id,
        "key_id": signature.key_id,
        "signature": signature.signature,
        "at": EVENT,
    }
    not_admin = PrincipalSigner("a1", key.signer).headers(value)
    forged = [
        {**genuine, "signature": bytes(64)},
        {
            **genuine,
            "signer_id": "a1",
            "key_id": key.key_id,
            "signature": dict(not_admin)["ordinance-sig"],
        },
        {**genuine, "principal_id": "a1"},
        {**genuine, "record": b"\xc3\x01garbage"},
    ]
    for offset, update in enumerate(forged, start=3):
        state.fold("IdentityUpdate", update, offset)
        assert state.identity.registry.get("intruder") is None
    state.fold("IdentityUpdate", genuine, 10)
    assert state.identity.registry.get("intruder") is not None
    assert state.identity.registry_offset == 7


def test_a_large_batch_is_verified_by_the_worker_process_with_the_same_verdicts() -> None:
    """From `PARALLEL_FROM` signatures a batch goes to a worker process (raw key bytes
    across the boundary): each verdict is the one verifying here gives, a forged
    signature included."""
    state = state_with(["billing"], {"team": "finance"}, True)
    assert state.identity is not None
    signer = world()[1]
    principal = state.identity.registry.get(AGENT)
    assert principal is not None
    public = principal.keys[0].public
    values = [f"intent {n}".encode() for n in range(pre_verifier.PARALLEL_FROM + 16)]
    headers = [signer.headers(v) for v in values]
    forged = len(values) // 2
    values[forged] = b"altered after signing"
    batch = [(state.identity, v, h) for v, h in zip(values, headers, strict=True)]
    verifier = PreVerifier(2)
    try:
        # The first batch starts the worker and is verified here: batches go to the
        # worker once it has said it is ready.
        verifier.prepare(batch)
        assert verifier.worker is not None and not verifier.sent
        deadline = time.monotonic() + 60
        while not verifier.sent and time.monotonic() < deadline:
            time.sleep(0.05)
            verifier.prepare(batch)
        assert verifier.sent  # the worker process took the batch
        got = [
            verifier.verify(public, v, dict(h)["ordinance-sig"])
            for v, h in zip(values, headers, strict=True)
        ]
    finally:
        verifier.close()
    assert got == [n != forged for n in range(len(values))]
