"""Who may change policy (`ordinance.processors.change_auth`), as pure functions of the
registry, the change's exact bytes and headers, the controller's state and its clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ordinance.identity.registry import (
    BAD_SIGNATURE,
    IDENTITY_MISMATCH,
    KEY_NOT_VALID,
    NOT_AUTHORISED,
    PRINCIPAL_REVOKED,
    PRINCIPAL_SUSPENDED,
    UNKNOWN_PRINCIPAL,
    UNSIGNED,
    Refusal,
    Registry,
)
from ordinance.identity.signing import SIGNATURE_HEADER, PrincipalSigner
from ordinance.processors.change_auth import (
    FUTURE_CHANGE,
    ROLES_FOR_EVENT,
    STALE_CHANGE,
    UNDECODABLE,
    Authorised,
    authorise_change,
    check_order,
    judge_change,
)
from ordinance.streams.serde import Serde
from tests.identity.helpers import T0, World, new_signer

SERDE = Serde()
NOW = T0 + dt.timedelta(hours=1)
BUNDLE = "sha256:" + "a" * 64


def change(event: str, actor: str, *, at: dt.datetime = NOW, target: str | None = None) -> bytes:
    return SERDE.encode(
        "PolicyChange",
        {
            "bundle_id": BUNDLE,
            "event": event,
            "actor": actor,
            "at": at,
            "reason": None,
            "git_commit": None,
            "target": target,
            "canary_percent": None,
            "previous_bundle_id": None,
            "files": [],
            "checks": None,
        },
    )


class People:
    """A registry with an author, an approver, an admin, a person without roles, and a
    suspended and a revoked approver."""

    def __init__(self) -> None:
        self.world = World()
        self.registry: Registry = self.world.registry()
        self.signers: dict[str, PrincipalSigner] = {}
        for pid, roles, status in (
            ("alice", ["policy-author"], "active"),
            ("bob", ["policy-approver"], "active"),
            ("root", ["admin"], "active"),
            ("nobody", [], "active"),
            ("sus", ["policy-approver"], "suspended"),
            ("rev", ["policy-approver"], "revoked"),
        ):
            signer = self.signers[pid] = new_signer(pid)
            datum = self.world.record(pid, [signer], kind="person", roles=roles, status=status)
            installed = self.registry.apply(*self.world.sign(datum), at=T0)
            assert not isinstance(installed, Refusal), installed

    def judge(self, value: bytes, by: str | None, now: dt.datetime = NOW) -> Authorised | Refusal:
        headers = () if by is None else self.signers[by].headers(value)
        return authorise_change(self.registry, value, headers, now)


@pytest.fixture
def people() -> People:
    return People()


def code_of(result: Authorised | Refusal | None) -> str:
    return result.code if isinstance(result, Refusal) else "ok"


def test_an_author_may_publish_and_only_approvers_or_admins_may_put_in_force(
    people: People,
) -> None:
    ok = people.judge(change("published", "alice"), "alice")
    assert isinstance(ok, Authorised)
    assert ok.principal.id == "alice" and ok.key_id == people.signers["alice"].key_id
    for event in ("approved", "staged", "canary", "shadow", "enforced", "rolled_back", "retired"):
        assert code_of(people.judge(change(event, "alice"), "alice")) == NOT_AUTHORISED
        assert code_of(people.judge(change(event, "bob"), "bob")) == "ok"
        assert code_of(people.judge(change(event, "root"), "root")) == "ok"
    # separation of duties: an approver or an admin does not author
    assert code_of(people.judge(change("published", "bob"), "bob")) == NOT_AUTHORISED
    assert code_of(people.judge(change("published", "root"), "root")) == NOT_AUTHORISED
    assert code_of(people.judge(change("enforced", "nobody"), "nobody")) == NOT_AUTHORISED
    assert set(ROLES_FOR_EVENT) == {
        "published", "reviewed", "approved", "staged", "canary", "shadow", "enforced",
        "rolled_back", "retired",
    }  # fmt: skip


def test_unsigned_unknown_suspended_revoked_and_mismatched_signers_are_refused(
    people: People,
) -> None:
    assert code_of(people.judge(change("enforced", "bob"), None)) == UNSIGNED
    mallory = new_signer("mallory")
    value = change("enforced", "mallory")
    assert code_of(authorise_change(people.registry, value, mallory.headers(value), NOW)) == (
        UNKNOWN_PRINCIPAL
    )
    assert code_of(people.judge(change("enforced", "sus"), "sus")) == PRINCIPAL_SUSPENDED
    assert code_of(people.judge(change("enforced", "rev"), "rev")) == PRINCIPAL_REVOKED
    # bob signs a change that names alice as its actor
    refused = people.judge(change("published", "alice"), "bob")
    assert isinstance(refused, Refusal) and refused.code == IDENTITY_MISMATCH
    assert "'alice'" in refused.detail and "'bob'" in refused.detail


def test_the_signature_covers_the_exact_bytes_and_the_key_must_be_the_signers(
    people: People,
) -> None:
    value = change("enforced", "bob")
    headers = people.signers["bob"].headers(value)
    altered = change("enforced", "bob", target="prod")
    assert code_of(authorise_change(people.registry, altered, headers, NOW)) == BAD_SIGNATURE
    # bob's name, someone else's key
    forged = PrincipalSigner("bob", people.signers["alice"].signer).headers(value)
    assert code_of(authorise_change(people.registry, value, forged, NOW)) == KEY_NOT_VALID
    broken = tuple((n, v[:10] if n == SIGNATURE_HEADER else v) for n, v in headers)
    assert code_of(authorise_change(people.registry, value, broken, NOW)) == BAD_SIGNATURE
    twice = (*headers, headers[0])
    assert code_of(authorise_change(people.registry, value, twice, NOW)) == BAD_SIGNATURE


def test_the_key_is_judged_at_the_controllers_clock_not_the_changes_at(
    people: People,
) -> None:
    world, signer = people.world, new_signer("temp")
    ends = T0 + dt.timedelta(hours=2)
    datum = world.record("temp", [signer], kind="person", roles=["policy-approver"],
                         not_after=ends)  # fmt: skip
    assert not isinstance(people.registry.apply(*world.sign(datum), at=T0), Refusal)
    people.signers["temp"] = signer
    # dated inside the key's window, judged after it: refused
    back_dated = change("enforced", "temp", at=T0 + dt.timedelta(hours=1))
    assert code_of(people.judge(back_dated, "temp", now=ends)) == KEY_NOT_VALID
    assert code_of(people.judge(back_dated, "temp", now=ends - dt.timedelta(seconds=1))) == "ok"


def test_what_is_not_a_policy_change_is_refused_never_raised(people: People) -> None:
    for value in (b"", b"\x00garbage", SERDE.encode("Alert", _alert())):
        headers = people.signers["bob"].headers(value)
        assert code_of(authorise_change(people.registry, value, headers, NOW)) == UNDECODABLE


def _alert() -> dict[str, Any]:
    return {"alert_id": "a", "kind": "k", "severity": "warning", "policy_id": None,
            "bundle_id": None, "message": "m", "at": NOW, "details": {}}  # fmt: skip


def _rollout(offset: int, at: dt.datetime) -> dict[str, Any]:
    return {"target": "default", "stable_bundle_id": BUNDLE, "change_offset": offset,
            "updated_at": at}  # fmt: skip


def test_a_rollout_must_be_signed_after_the_one_in_force() -> None:
    rollouts = {"default": _rollout(7, NOW)}
    enforce = {"event": "enforced", "target": None, "at": NOW}
    refused = check_order(rollouts, enforce, 9, NOW)
    assert isinstance(refused, Refusal) and refused.code == STALE_CHANGE
    earlier = {**enforce, "at": NOW - dt.timedelta(seconds=1)}
    assert code_of(check_order(rollouts, earlier, 9, NOW)) == STALE_CHANGE
    later = {**enforce, "event": "rolled_back", "at": NOW + dt.timedelta(microseconds=1)}
    assert check_order(rollouts, later, 9, NOW) is None
    # the change that is in force, read again after a restart before its commit
    assert check_order(rollouts, enforce, 7, NOW) is None
    # another target, and events that change no rollout, are not ordered against it
    assert check_order(rollouts, {**earlier, "target": "prod"}, 9, NOW) is None
    for event in ("published", "approved", "staged", "retired"):
        assert check_order(rollouts, {**earlier, "event": event}, 9, NOW) is None


def test_a_change_dated_too_far_ahead_is_refused() -> None:
    ahead = {"event": "published", "at": NOW + dt.timedelta(minutes=6)}
    assert code_of(check_order({}, ahead, 0, NOW)) == FUTURE_CHANGE
    near = {**ahead, "at": NOW + dt.timedelta(minutes=5)}
    assert check_order({}, near, 0, NOW) is None
    assert check_order({}, ahead, 0, NOW, max_skew=dt.timedelta(hours=1)) is None


def test_judge_change_checks_the_signer_first_then_the_order(people: People) -> None:
    value = change("enforced", "bob")
    decoded = SERDE.decode(value).value  # type: ignore[union-attr]
    stale = {"default": _rollout(3, NOW + dt.timedelta(seconds=1))}
    assert code_of(judge_change(people.registry, stale, value, (), decoded, 5, NOW)) == UNSIGNED
    headers = people.signers["bob"].headers(value)
    assert code_of(judge_change(people.registry, stale, value, headers, decoded, 5, NOW)) == (
        STALE_CHANGE
    )
    assert code_of(judge_change(people.registry, {}, value, headers, decoded, 5, NOW)) == "ok"
