"""The registry fold: admin-signed changes only, versions only forward, revocation final,
keys speak for their principal only inside their window and while it is active."""

from __future__ import annotations

import datetime as dt

from ordinance.identity.registry import (
    BAD_SIGNATURE,
    INVALID_RECORD,
    KEY_NOT_VALID,
    NOT_AUTHORISED,
    PRINCIPAL_REVOKED,
    PRINCIPAL_SUSPENDED,
    STALE_VERSION,
    UNKNOWN_PRINCIPAL,
    UNSIGNED,
    Principal,
    Refusal,
)
from ordinance.identity.signing import signature_of

from .helpers import SERDE, T0, World, new_signer

LATER = T0 + dt.timedelta(hours=1)


def _code(result: object) -> str:
    assert isinstance(result, Refusal), result
    return result.code


def test_the_trust_root_registers_an_agent_whose_key_then_authenticates() -> None:
    world = World()
    registry = world.registry()
    agent = new_signer("billing-bot")
    installed = registry.apply(
        *world.sign(world.record("billing-bot", [agent], roles=["billing"])), at=T0
    )
    assert isinstance(installed, Principal) and installed.roles == ("billing",)
    value = b"an intent"
    who = registry.authenticate(signature_of(agent.headers(value)), value, LATER)
    assert isinstance(who, Principal) and who.id == "billing-bot"


def test_what_does_not_authenticate_says_why() -> None:
    world = World()
    registry = world.registry()
    agent, stranger = new_signer("a1"), new_signer("a1")
    registry.apply(*world.sign(world.record("a1", [agent], not_after=LATER)), at=T0)
    value = b"payload"
    signed = signature_of(agent.headers(value))
    assert _code(registry.authenticate(None, value, T0)) == UNSIGNED
    assert _code(registry.authenticate(signed, b"altered", T0)) == BAD_SIGNATURE
    assert _code(registry.authenticate(signature_of(stranger.headers(value)), value, T0)) == (
        KEY_NOT_VALID
    )
    assert _code(registry.authenticate(signed, value, LATER)) == KEY_NOT_VALID  # expired
    assert _code(registry.authenticate(signed, value, T0 - dt.timedelta(seconds=1))) == (
        KEY_NOT_VALID
    )
    ghost = new_signer("ghost")
    assert _code(registry.authenticate(signature_of(ghost.headers(value)), value, T0)) == (
        UNKNOWN_PRINCIPAL
    )


def test_suspension_and_revocation_take_effect_and_revocation_is_final() -> None:
    world = World()
    registry = world.registry()
    agent = new_signer("a1")
    registry.apply(*world.sign(world.record("a1", [agent])), at=T0)
    value = b"x"
    signed = signature_of(agent.headers(value))
    registry.apply(*world.sign(world.record("a1", [agent], status="suspended")), at=T0)
    assert _code(registry.authenticate(signed, value, T0)) == PRINCIPAL_SUSPENDED
    registry.apply(*world.sign(world.record("a1", [agent], status="revoked")), at=T0)
    assert _code(registry.authenticate(signed, value, T0)) == PRINCIPAL_REVOKED
    again = registry.apply(*world.sign(world.record("a1", [agent])), at=T0)
    assert _code(again) == INVALID_RECORD


def test_an_old_signed_record_replayed_later_is_refused() -> None:
    world = World()
    registry = world.registry()
    agent = new_signer("a1")
    old = world.sign(world.record("a1", [agent], roles=["billing"]))
    registry.apply(*old, at=T0)
    registry.apply(*world.sign(world.record("a1", [agent], roles=[])), at=T0)
    assert _code(registry.apply(*old, at=T0)) == STALE_VERSION
    principal = registry.get("a1")
    assert principal is not None and principal.roles == ()


def test_only_admins_change_the_registry() -> None:
    world = World()
    registry = world.registry()
    alice, mallory = new_signer("alice"), new_signer("mallory")
    registry.apply(
        *world.sign(world.record("alice", [alice], kind="person", roles=["admin"])), at=T0
    )
    registry.apply(*world.sign(world.record("mallory", [mallory], kind="person")), at=T0)
    # a registry admin may change the registry ...
    bob = new_signer("bob")
    by_alice = registry.apply(*world.sign(world.record("bob", [bob]), by=alice), at=T0)
    assert isinstance(by_alice, Principal)
    # ... a principal without the role may not, not even for itself
    promoted = world.record("mallory", [mallory], kind="person", roles=["admin"])
    assert _code(registry.apply(*world.sign(promoted, by=mallory), at=T0)) == NOT_AUTHORISED
    # and nobody may forge the root's signature
    value, _, datum = world.sign(promoted)
    forged = signature_of(mallory.headers(value))
    assert forged is not None
    as_root = type(forged)("root-admin", world.root.key_id, forged.signature)
    assert _code(registry.apply(value, as_root, datum, at=T0)) == BAD_SIGNATURE
    assert _code(registry.apply(value, None, datum, at=T0)) == UNSIGNED
    assert registry.get("mallory") is not None and registry.get("mallory").roles == ()  # type: ignore[union-attr]


def test_key_rotation_with_an_overlap_window() -> None:
    world = World()
    registry = world.registry()
    old, new = new_signer("a1"), new_signer("a1")
    registry.apply(*world.sign(world.record("a1", [old])), at=T0)
    overlap_end = T0 + dt.timedelta(minutes=10)
    rotated = world.record("a1", [new])
    rotated["keys"].insert(0, {**world.record("a1", [old], not_after=overlap_end)["keys"][0]})
    world.versions["a1"] = rotated["version"]
    registry.apply(*world.sign(rotated), at=T0)
    value = b"x"
    for signer, at, ok in (
        (old, T0 + dt.timedelta(minutes=5), True),
        (old, overlap_end, False),
        (new, overlap_end, True),
    ):
        result = registry.authenticate(signature_of(signer.headers(value)), value, at)
        assert isinstance(result, Principal) is ok, (signer.key_id, at, result)


def test_a_record_whose_key_id_is_not_its_key_is_refused() -> None:
    world = World()
    registry = world.registry()
    datum = world.record("a1", [new_signer("a1")])
    datum["keys"][0]["key_id"] = "0" * 16
    assert _code(registry.apply(*world.sign(datum), at=T0)) == INVALID_RECORD
    assert SERDE is not None
