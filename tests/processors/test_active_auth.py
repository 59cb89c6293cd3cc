"""Who may write policy.active (`active_auth`), and anti-rollback: with a trust root the
enforcer and a rebuilding controller believe only records the controller signed, never
an older rollout appended again; and the controller never moves a target back to an
earlier-published bundle except by an explicit rollback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.identity.registry import BAD_SIGNATURE, NOT_AUTHORISED, UNSIGNED, Refusal
from ordinance.identity.trust import TrustRoot
from ordinance.policy.bundle import compile_bundle
from ordinance.processors.active_auth import (
    CONTROLLER_ROLE,
    authorise_active_record,
)
from ordinance.processors.change_auth import RegistryFollower
from ordinance.processors.controller import (
    REVISION_ROLLBACK,
    ControllerState,
    apply_change,
    bundle_key,
    target_key,
)
from ordinance.processors.controller_loop import ControllerKeyError, run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import NO_RULESET
from ordinance.processors.policy_log import publish_bundle, state_from_active
from ordinance.streams import ConsumedRecord, Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import POLICY_ACTIVE, ensure_topics, topic_specs
from tests.identity.helpers import new_signer
from tests.processors.caught_up import run_caught_up
from tests.processors.identity_helpers import (
    Registry,
    by_request,
    intent,
    send_records,
    signed,
)
from tests.processors.test_controller import BUNDLE_ID, FILES, change
from tests.processors.test_enforcer import EXAMPLES, T0, publish_at
from tests.processors.test_rollout import CANDIDATE, CANDIDATE_FILES

SERDE = Serde()
BILLING_ATTRS = {"team": "finance"}
AT = dt.datetime.fromtimestamp(T0, dt.UTC)
ACTIVE = topic_specs()[POLICY_ACTIVE].name
# A bundle that allows every transfer: what a forger would like the enforcers to run.
LAX_FILES = {
    "schema.yaml": (EXAMPLES / "schema.yaml").read_text(),
    "lax.yaml": """policy: lax
owner: mallory
description: Everything goes.
target:
  agents: {roles: [billing]}
  actions: [payments.transfer]
rules:
  - id: anything
    effect: allow
    when: "true"
    reason: anything goes
""",
}
LAX = compile_bundle(LAX_FILES).bundle_id


def _active(url: str) -> list[ConsumedRecord]:
    with open_log(url) as log:
        return list(log.read_to_end(ACTIVE))


def _rollout_record(
    bundle_id: str, change_offset: int, headers: tuple[tuple[str, bytes], ...] = ()
) -> Record:
    datum = {
        "target": "default",
        "stable_bundle_id": bundle_id,
        "candidate_bundle_id": None,
        "mode": "stable",
        "canary_percent": 0,
        "auto_rollback": False,
        "change_offset": change_offset,
        "updated_at": AT,
    }
    return Record(
        target_key("default"), SERDE.encode("ActiveRollout", datum), headers, int(T0 * 1000)
    )


def _bundle_record(bundle_id: str, files: dict[str, str], **extra: Any) -> Record:
    datum = {
        "bundle_id": bundle_id,
        "created_at": AT,
        "files": [{"path": p, "content": c} for p, c in sorted(files.items())],
        **extra,
    }
    return Record(bundle_key(bundle_id), SERDE.encode("PolicyBundle", datum), (), int(T0 * 1000))


def _append(url: str, *records: Record) -> None:
    with open_log(url) as log:
        log.produce(ACTIVE, list(records))


# -- who signed a record ------------------------------------------------------------------
def test_only_a_registry_principal_with_the_controller_role_may_write_policy_active(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    controller = registry.controller()
    author = registry.put("alice", kind="person", roles=("policy-author", "policy-approver"))
    follower = RegistryFollower.start(registry.trust)
    with open_log(url) as log:
        ensure_topics(log)
        follower.refresh(log)

    def judged(record: Record) -> str:
        consumed = ConsumedRecord(
            ACTIVE, 0, 0, record.key, record.value, record.headers, record.event_time_ms or 0
        )
        verdict = authorise_active_record(follower.registry, consumed)
        return verdict.code if isinstance(verdict, Refusal) else verdict.id

    value = _rollout_record(LAX, 9).value
    assert value is not None
    assert judged(_rollout_record(LAX, 9)) == UNSIGNED
    assert judged(_rollout_record(LAX, 9, author.headers(value))) == NOT_AUTHORISED
    assert judged(_rollout_record(LAX, 9, controller.headers(value))) == "policy-controller"
    # the controller's signature over another rollout does not carry over
    other = _rollout_record(LAX, 10).value
    assert other is not None
    forged = Record(target_key("default"), other, controller.headers(value), int(T0 * 1000))
    assert judged(forged) == BAD_SIGNATURE
    assert CONTROLLER_ROLE in follower.registry.principals["policy-controller"].roles


# -- the enforcer ---------------------------------------------------------------------------
def _decide(url: str, trust: TrustRoot, *request_ids: str) -> tuple[Enforcer, dict[str, str]]:
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0, trust=trust, max_clock_skew_s=86_400)
        run_caught_up(enforcer)
    decided = by_request(url)
    return enforcer, {rid: decided[rid]["bundle_id"] for rid in request_ids}


def test_the_enforcer_believes_only_the_controllers_records_and_never_an_older_rollout(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    controller = registry.controller()
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    first, _ = publish_at(url, EXAMPLES, controller)
    genuine = {r.offset: r for r in _active(url)}
    # A forger with write access to the log: the lax bundle and a rollout naming it,
    # unsigned, then signed by someone who is not the controller.
    mallory = registry.put("mallory", kind="person", roles=("policy-approver",))
    by_mallory = _rollout_record(LAX, 100)
    assert by_mallory.value is not None
    _append(
        url,
        _bundle_record(LAX, LAX_FILES),
        _rollout_record(LAX, 99),
        by_mallory._replace(headers=mallory.headers(by_mallory.value)),
    )
    send_records(url, signed(intent("r1", "billing-bot"), bot))
    enforcer, bundles = _decide(url, registry.trust, "r1")
    assert bundles == {"r1": first}
    assert enforcer.report.refused_policy == 3

    # The controller enforces the candidate; then the forger appends the genuine, signed
    # record of the first rollout again: enforcers stay on the candidate.
    with open_log(url) as log:
        publish_bundle(log, CANDIDATE_FILES, CANDIDATE, actor="test", clock=lambda: T0)
        run_controller(log, once=True, clock=lambda: T0, signer=controller)
    [old] = [r for r in genuine.values() if r.key == target_key("default")]
    _append(url, Record(old.key, old.value, old.headers, old.timestamp_ms))
    send_records(url, signed(intent("r2", "billing-bot", minute=1), bot))
    enforcer, bundles = _decide(url, registry.trust, "r2")
    assert bundles == {"r2": CANDIDATE}
    assert enforcer.report.refused_policy == 4  # the three forgeries, and the replay


def test_a_controller_registered_after_its_first_records_is_believed_then(tmp_path: Path) -> None:
    """The enforcer keeps a refused record and judges it again when the registry grows."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    # The controller's key exists, but nobody registered it yet.
    controller = new_signer("policy-controller")
    bundle_id, _ = publish_at(url, EXAMPLES, controller)
    send_records(url, signed(intent("early", "billing-bot"), bot))
    _decide(url, registry.trust)
    assert by_request(url)["early"]["code"] == NO_RULESET  # fail-closed meanwhile
    registry.put(
        "policy-controller", kind="service", roles=(CONTROLLER_ROLE,), signers=[controller]
    )
    send_records(url, signed(intent("later", "billing-bot", minute=1), bot))
    _, bundles = _decide(url, registry.trust, "later")
    assert bundles == {"later": bundle_id}


# -- the controller -------------------------------------------------------------------------
def test_a_rebuilding_controller_believes_only_signed_records(tmp_path: Path) -> None:
    """A forged PolicyBundle claiming two approvals, and a forged rollout, do not enter
    the state a controller with a trust root rebuilds from policy.active."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    controller = registry.controller()
    first, _ = publish_at(url, EXAMPLES, controller)
    _append(
        url,
        _bundle_record(LAX, LAX_FILES, approvals=["bob", "carol"], impact="high"),
        _rollout_record(LAX, 99),
    )
    follower = RegistryFollower.start(registry.trust)
    with open_log(url) as log:
        follower.refresh(log)
        believed = state_from_active(log, ACTIVE, SERDE, follower.registry)
        naive = state_from_active(log, ACTIVE, SERDE)
    assert LAX not in believed.records and believed.rollouts["default"]["stable_bundle_id"] == first
    assert naive.rollouts["default"]["stable_bundle_id"] == LAX  # what trusting it would do


def test_a_controller_with_a_trust_root_needs_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    with open_log(url, create=True) as log, pytest.raises(ControllerKeyError):
        run_controller(log, once=True, trust=registry.trust)
    monkeypatch.delenv("ORDINANCE_CONTROLLER_KEY", raising=False)
    trust, key = tmp_path / "trust.json", tmp_path / "root.pem"
    assert main(["keys", "generate", "--key", str(key)]) == 0
    assert main(["identity", "trust-init", "--trust", str(trust), "--principal", "root",
                 "--key", str(key)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["serve", "--log", url, "--trust", str(trust)]) == 2
    assert "--controller-key" in capsys.readouterr().err


def test_enforcing_an_earlier_bundle_is_refused_but_rolling_back_to_it_is_not() -> None:
    state = ControllerState()
    [published] = apply_change(state, change("published", files=FILES), 0, AT)
    assert published.datum["revision"] == 1
    [candidate] = apply_change(state, change("published", CANDIDATE, files=CANDIDATE_FILES), 1, AT)
    assert candidate.datum["revision"] == 2
    apply_change(state, change("enforced", CANDIDATE), 2, AT)
    for event, extra in (("enforced", {}), ("canary", {"canary_percent": 10}), ("shadow", {})):
        [alert] = apply_change(state, change(event, BUNDLE_ID, **extra), 3, AT)
        assert alert.topic == "alerts" and alert.datum["details"]["code"] == REVISION_ROLLBACK
        assert "rollback" in alert.datum["message"]
    assert state.rollouts["default"]["stable_bundle_id"] == CANDIDATE
    [rolled] = apply_change(
        state, change("rolled_back", CANDIDATE, previous_bundle_id=BUNDLE_ID), 4, AT
    )
    assert rolled.topic == "active" and rolled.datum["stable_bundle_id"] == BUNDLE_ID
    # back on revision 1, the candidate (revision 2) may go forward again
    [forward] = apply_change(state, change("enforced", CANDIDATE), 5, AT)
    assert forward.datum["stable_bundle_id"] == CANDIDATE
