"""Record wire samples once, so every later schema change is checked against them.

    python tests/streams/samples/record_samples.py

Writes ``<Schema>.<n>.bin`` (the exact bytes) and ``<Schema>.<n>.json`` (what
they must decode to) for any sample below not yet recorded. Existing files are
never rewritten: they stand for records already sitting in users' logs. When a
schema changes, keep the old ``.avsc`` in ``ordinance/streams/schemas/history/`` and add a new
sample here (next number) written with the new schema.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from ordinance.streams.serde import Serde

HERE = Path(__file__).parent
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

SAMPLES: list[tuple[str, int, dict[str, Any]]] = [
    (
        "ActionRequest",
        1,
        {
            "request_id": "req-0001",
            "agent": {
                "id": "billing-bot-7",
                "roles": ["billing", "reader"],
                "attributes": {"tier": 2, "region": "eu", "trusted": True},
            },
            "action": {
                "tool": "payments.transfer",
                "args": {
                    "amount": Decimal("12500.50"),
                    "currency": "EUR",
                    "country": "DE",
                    "memo": None,
                    "tags": ["invoice", 42, {"nested": [True, Decimal("-0.001")]}],
                    "huge": 2**80,
                },
            },
            "resource": {"kind": "account", "id": "acc-9", "attributes": {"owner": "ops"}},
            "context": {"session": "s-1", "channel": "slack"},
            "event_time": T0,
            "reply_to": "agent.replies.billing-bot-7",
            "client_id": "sdk-python-1",
        },
    ),
    (
        "Decision",
        1,
        {
            "request_id": "req-0001",
            "agent_id": "billing-bot-7",
            "effect": "require_approval",
            "rule_ids": ["payments-guardrails/large-needs-approval"],
            "reasons": ["amount over 10000"],
            "obligations": [{"kind": "notify", "params": {"channel": "#finance"}}],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-0",
            "action_offset": 4242,
            "prev_hash": bytes(range(32)),
            "hash": bytes(range(32, 64)),
        },
    ),
    (
        # Decision 2 adds the machine-readable code and its detail.
        "Decision",
        2,
        {
            "request_id": "req-0002",
            "agent_id": "ops-bot",
            "effect": "deny",
            "rule_ids": [],
            "reasons": ["action.args.path: NUL byte in path"],
            "code": "invalid_request",
            "detail": "action.args.path: NUL byte in path",
            "obligations": [],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-0",
            "action_offset": 4243,
            "prev_hash": bytes(range(32, 64)),
            "hash": bytes(range(64, 96)),
        },
    ),
    (
        # Decision 3 carries the canonical action, so window state is a fold of decisions.
        "Decision",
        3,
        {
            "request_id": "req-0003",
            "agent_id": "billing-bot-7",
            "effect": "allow",
            "rule_ids": ["payments-guardrails/small-ok"],
            "reasons": ["rule payments-guardrails/small-ok matched"],
            "code": "matched",
            "detail": "",
            "obligations": [],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-0",
            "action_offset": 4244,
            "prev_hash": None,
            "hash": None,
            "tool": "payments.transfer",
            "args": {"amount": Decimal("50.00"), "currency": "EUR", "country": "DE"},
            "event_time": T0,
        },
    ),
    (
        "RulesetSwap",
        1,
        {
            "enforcer_id": "enforcer-0",
            "partition": 3,
            "bundle_id": "sha256:" + "cd" * 32,
            "previous_bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 18,
            "at": T0,
            "prev_hash": None,
            "hash": None,
        },
    ),
    (
        "EnforcerTakeover",
        1,
        {
            "enforcer_id": "enforcer-1",
            "partition": 3,
            "previous_enforcer_id": "enforcer-0",
            "nonce": "6f1c0d6e",
            "at": T0,
        },
    ),
    (
        "EnforcerTakeover",
        2,
        {
            "enforcer_id": "enforcer-2",
            "partition": 1,
            "previous_enforcer_id": None,
            "nonce": "9a0b7c3e",
            "at": T0,
            "agent_partitions": 4,
            "max_clock_skew_ms": 300_000,
        },
    ),
    (
        "PolicyChange",
        1,
        {
            "bundle_id": "sha256:" + "cd" * 32,
            "event": "canary",
            "actor": "alice@example.com",
            "at": T0,
            "reason": "new transfer limits",
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "target": "prod",
            "canary_percent": 10,
            "previous_bundle_id": None,
        },
    ),
    (
        # PolicyChange 2 carries the bundle's files on published events.
        "PolicyChange",
        2,
        {
            "bundle_id": "sha256:" + "cd" * 32,
            "event": "published",
            "actor": "alice@example.com",
            "at": T0,
            "reason": "new transfer limits",
            "git_commit": None,
            "target": None,
            "canary_percent": None,
            "previous_bundle_id": None,
            "files": [
                {"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"},
                {
                    "path": "p.yaml",
                    "content": "policy: p\nowner: o\nrules: [{id: r, effect: allow}]\n",
                },
            ],
        },
    ),
    (
        "ActiveRollout",
        1,
        {
            "target": "prod",
            "stable_bundle_id": "sha256:" + "ab" * 32,
            "candidate_bundle_id": "sha256:" + "cd" * 32,
            "mode": "canary",
            "canary_percent": 10,
            "change_offset": 18,
            "updated_at": T0,
        },
    ),
    (
        "PolicyBundle",
        1,
        {
            "bundle_id": "sha256:" + "cd" * 32,
            "created_at": T0,
            "git_commit": None,
            "files": [{"path": "payments.yaml", "content": "policy: payments-guardrails\n"}],
        },
    ),
    (
        "Approval",
        1,
        {
            "request_id": "req-0001",
            "agent_id": "billing-bot-7",
            "verdict": "approved",
            "approver": "bob@example.com",
            "reason": "known supplier",
            "at": T0,
            "expires_at": T0 + dt.timedelta(hours=1),
        },
    ),
    (
        # Approval 2 is bound to the decision's content hash.
        "Approval",
        2,
        {
            "request_id": "req-0001",
            "agent_id": "billing-bot-7",
            "verdict": "approved",
            "approver": "bob@example.com",
            "reason": "known supplier",
            "at": T0,
            "expires_at": None,
            "ticket": "sha256:" + "ef" * 32,
        },
    ),
    (
        # Decision 4 carries the approval ticket of a require_approval decision.
        "Decision",
        4,
        {
            "request_id": "req-0004",
            "agent_id": "billing-bot-7",
            "effect": "require_approval",
            "rule_ids": ["payments-guardrails/large-needs-approval"],
            "reasons": ["transfers above 10k need a human"],
            "code": "matched",
            "detail": "",
            "obligations": [],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-0",
            "action_offset": 4245,
            "prev_hash": None,
            "hash": None,
            "tool": "payments.transfer",
            "args": {"amount": Decimal("25000"), "currency": "EUR", "country": "FR"},
            "event_time": T0,
            "approval_ticket": "sha256:" + "ef" * 32,
        },
    ),
    (
        "AuditCheckpoint",
        1,
        {
            "partition": 3,
            "first_offset": 0,
            "last_offset": 4242,
            "record_count": 4243,
            "merkle_root": b"\x01" * 32,
            "chain_head": b"\x02" * 32,
            "prev_checkpoint_hash": None,
            "algorithm": "ed25519",
            "key_id": "audit-2026",
            "signature": b"\x03" * 64,
            "at": T0,
        },
    ),
    (
        "Alert",
        1,
        {
            "alert_id": "al-1",
            "kind": "canary_regression",
            "severity": "critical",
            "policy_id": "payments-guardrails",
            "bundle_id": "sha256:" + "cd" * 32,
            "message": "deny rate rose from 2% to 31% in the canary",
            "at": T0,
            "details": {"baseline": Decimal("0.02"), "canary": Decimal("0.31")},
        },
    ),
    (
        "PolicyChange",
        3,  # v3: the checks the publisher ran and bypassed
        {
            "bundle_id": "sha256:" + "ef" * 32,
            "event": "published",
            "actor": "alice",
            "at": T0,
            "reason": "tighten payments",
            "git_commit": None,
            "target": None,
            "canary_percent": None,
            "previous_bundle_id": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "checks": {
                "tests": 12,
                "analysis": "passed",
                "bypasses": [],
                "acknowledgements": [
                    {
                        "finding": "conflict:43f70042d8a9",
                        "kind": "conflict",
                        "justification": "privacy-office's deny wins",
                        "by": "privacy-office",
                        "expires": "2026-12-31",
                    }
                ],
            },
        },
    ),
    (
        "IdentityRecord",
        1,
        {
            "principal_id": "billing-bot-7",
            "kind": "agent",
            "roles": ["billing"],
            "attributes": {"team": "finance", "clearance": 2},
            "owner": "finance-risk",
            "status": "active",
            "keys": [
                {
                    "key_id": "0123456789abcdef",
                    "public_key": b"\x07" * 32,
                    "not_before": T0,
                    "not_after": None,
                }
            ],
            "version": 3,
            "at": T0,
            "reason": "onboarding",
        },
    ),
    (
        "IdentityUpdate",
        1,
        {
            "enforcer_id": "enf-1",
            "partition": 2,
            "principal_id": "billing-bot-7",
            "registry_partition": 0,
            "registry_offset": 41,
            "record": b"\xc3\x01" + b"\x00" * 20,
            "signer_id": "root-admin",
            "key_id": "fedcba9876543210",
            "signature": b"\x05" * 64,
            "at": T0,
            "prev_hash": None,
            "hash": None,
        },
    ),
    (
        # EnforcerTakeover 3 carries the trust root: identity is enforced on the partition.
        "EnforcerTakeover",
        3,
        {
            "enforcer_id": "enforcer-3",
            "partition": 2,
            "previous_enforcer_id": None,
            "nonce": "c0ffee11",
            "at": T0,
            "agent_partitions": 4,
            "max_clock_skew_ms": 300_000,
            "trust_root": [
                {
                    "principal_id": "root-admin",
                    "key_id": "fedcba9876543210",
                    "public_key": b"\x09" * 32,
                }
            ],
        },
    ),
    (
        # EnforcerTakeover 4 bounds the partition's memory: the dedupe horizon.
        "EnforcerTakeover",
        4,
        {
            "enforcer_id": "enforcer-4",
            "partition": 1,
            "previous_enforcer_id": "enforcer-3",
            "nonce": "c0ffee12",
            "at": T0,
            "agent_partitions": 4,
            "max_clock_skew_ms": 300_000,
            "trust_root": None,
            "dedupe_horizon_ms": 7 * 86_400_000,
        },
    ),
    (
        # RulesetSwap 2 says how much window history the bundle can ask for.
        "RulesetSwap",
        2,
        {
            "enforcer_id": "enforcer-4",
            "partition": 1,
            "bundle_id": "sha256:" + "ef" * 32,
            "previous_bundle_id": None,
            "policy_offset": 19,
            "longest_window_ms": 86_400_000,
            "at": T0,
            "prev_hash": None,
            "hash": None,
        },
    ),
    (
        # Decision 5 names the agent key that signed the intent, who may approve and how many
        # must, and (on a follow-up) the verified approvers.
        "Decision",
        5,
        {
            "request_id": "req-0005",
            "agent_id": "billing-bot-7",
            "effect": "allow",
            "rule_ids": ["payments-guardrails/small-ok"],
            "reasons": ["within limits"],
            "code": "matched",
            "detail": "",
            "obligations": [],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-3",
            "action_offset": 4246,
            "prev_hash": None,
            "hash": None,
            "tool": "payments.transfer",
            "args": {"amount": Decimal("50"), "currency": "eur", "country": "de"},
            "event_time": T0,
            "approval_ticket": "sha256:" + "cd" * 32,
            "key_id": "0123456789abcdef",
            "approval_roles": ["approver:finance"],
            "approvals_required": 2,
            "approvers": ["alice", "bob"],
        },
    ),
    (
        # Decision 6 names the canary arm and carries a shadow bundle's verdict.
        "Decision",
        6,
        {
            "request_id": "req-0006",
            "agent_id": "billing-bot-7",
            "effect": "allow",
            "rule_ids": ["payments-guardrails/small-ok"],
            "reasons": ["within limits"],
            "code": "matched",
            "detail": "",
            "obligations": [],
            "bundle_id": "sha256:" + "ab" * 32,
            "policy_offset": 17,
            "evaluated_at": T0,
            "enforcer_id": "enforcer-3",
            "action_offset": 4247,
            "prev_hash": None,
            "hash": None,
            "tool": "payments.transfer",
            "args": {"amount": Decimal("50")},
            "event_time": T0,
            "approval_ticket": None,
            "key_id": None,
            "approval_roles": [],
            "approvals_required": None,
            "approvers": [],
            "arm": "control",
            "shadow": {
                "bundle_id": "sha256:" + "ef" * 32,
                "effect": "deny",
                "rule_ids": ["payments-guardrails/no-weekend"],
                "code": "matched",
                "detail": "",
            },
        },
    ),
    (
        # RulesetSwap 3 carries the rollout: candidate, mode, percentage, seed.
        "RulesetSwap",
        3,
        {
            "enforcer_id": "enforcer-4",
            "partition": 1,
            "bundle_id": "sha256:" + "ef" * 32,
            "previous_bundle_id": None,
            "policy_offset": 21,
            "longest_window_ms": 86_400_000,
            "candidate_bundle_id": "sha256:" + "ab" * 32,
            "mode": "canary",
            "canary_percent": 10,
            "canary_seed": "sha256:" + "ab" * 32,
            "auto_rollback": True,
            "at": T0,
            "prev_hash": None,
            "hash": None,
        },
    ),
    (
        # PolicyChange 4 knows the shadow event, and a canary's auto_rollback.
        "PolicyChange",
        4,
        {
            "bundle_id": "sha256:" + "ab" * 32,
            "event": "shadow",
            "actor": "carol",
            "at": T0,
            "reason": "see what the new limits would do",
            "git_commit": None,
            "target": "prod",
            "canary_percent": None,
            "auto_rollback": False,
            "previous_bundle_id": None,
            "files": [],
            "checks": None,
        },
    ),
    (
        # PolicyChange 6: the Git commit a bundle was published from, and the schema
        # compatibility check against the bundle in force.
        "PolicyChange",
        6,
        {
            "bundle_id": "sha256:" + "ef" * 32,
            "event": "published",
            "actor": "alice",
            "at": T0,
            "reason": "add a memo argument",
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "target": None,
            "canary_percent": None,
            "auto_rollback": False,
            "previous_bundle_id": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "checks": {
                "tests": 3,
                "analysis": "passed",
                "bypasses": ["--allow-dirty"],
                "acknowledgements": [
                    {
                        "finding": "schema:5e1f0c2a9b7d",
                        "kind": "schema-break",
                        "justification": "every caller sends a memo since v2.3",
                        "by": "finance-risk",
                        "expires": None,
                    }
                ],
                "schema_compatibility": {
                    "outcome": "acknowledged",
                    "target": "prod",
                    "against": ["sha256:" + "ab" * 32],
                    "breaking": 1,
                    "detail": None,
                },
            },
            "git": {
                "state": "dirty",
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "branch": "main",
                "path": "policies",
                "author": "Alice <alice@example.com>",
                "authored_at": "2026-12-01T10:00:00+00:00",
                "committer": "Bob <bob@example.com>",
                "committed_at": "2026-12-01T10:05:00+00:00",
                "subject": "payments: require a memo",
                "message": "payments: require a memo\n\nAuditors asked for one.\n",
                "message_truncated": False,
                "remote": "https://git.example.com/finance/policies.git",
                "remote_name": "origin",
                "dirty_paths": ["policies/payments.yaml"],
                "detail": None,
            },
        },
    ),
    (
        # PolicyChange 7: the what-if replay of recent traffic under the published bundle.
        "PolicyChange",
        7,
        {
            "bundle_id": "sha256:" + "ef" * 32,
            "event": "published",
            "actor": "alice",
            "at": T0,
            "reason": "tighten refunds",
            "git_commit": None,
            "target": None,
            "canary_percent": None,
            "auto_rollback": False,
            "previous_bundle_id": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "checks": {
                "tests": 3,
                "analysis": "passed",
                "bypasses": [],
                "acknowledgements": [],
                "schema_compatibility": None,
                "whatif": {
                    "outcome": "ran",
                    "reason": None,
                    "window_from": "2026-12-06T10:00:00+00:00",
                    "window_to": "2026-12-07T10:00:00+00:00",
                    "evaluated": 1200,
                    "changed": 3,
                    "transitions": [
                        {"old_effect": "allow", "new_effect": "require_approval", "count": 3}
                    ],
                },
            },
            "git": None,
        },
    ),
    (
        # ActiveRollout 2: a canary that asked for automatic rollback.
        "ActiveRollout",
        2,
        {
            "target": "prod",
            "stable_bundle_id": "sha256:" + "ef" * 32,
            "candidate_bundle_id": "sha256:" + "ab" * 32,
            "mode": "canary",
            "canary_percent": 10,
            "auto_rollback": True,
            "change_offset": 22,
            "updated_at": T0,
        },
    ),
    (
        # PolicyBundle 2: who published it, its impact, who approved it.
        "PolicyBundle",
        2,
        {
            "bundle_id": "sha256:" + "ab" * 32,
            "created_at": T0,
            "git_commit": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "published_by": "alice",
            "impact": "high",
            "approvals": ["bob", "carol"],
        },
    ),
    (
        # PolicyChange 5 knows the reviewed event.
        "PolicyChange",
        5,
        {
            "bundle_id": "sha256:" + "ab" * 32,
            "event": "reviewed",
            "actor": "dave",
            "at": T0,
            "reason": "the budget window looks right; see line 40",
            "git_commit": None,
            "target": None,
            "canary_percent": None,
            "auto_rollback": False,
            "previous_bundle_id": None,
            "files": [],
            "checks": None,
        },
    ),
    (
        # EnforcerTakeover 5 names the target its enforcer decides for.
        "EnforcerTakeover",
        5,
        {
            "enforcer_id": "enforcer-5",
            "partition": 2,
            "previous_enforcer_id": None,
            "nonce": "c0ffee13",
            "at": T0,
            "agent_partitions": 4,
            "max_clock_skew_ms": 300_000,
            "trust_root": None,
            "dedupe_horizon_ms": 7 * 86_400_000,
            "target": "staging",
        },
    ),
    (
        # PolicyBundle 3: the schema breaks its publisher acknowledged.
        "PolicyBundle",
        3,
        {
            "bundle_id": "sha256:" + "ab" * 32,
            "created_at": T0,
            "git_commit": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "published_by": "alice",
            "impact": "medium",
            "approvals": [],
            "schema_break_acks": ["schema-break:0123456789ab"],
        },
    ),
    (
        # PolicyBundle 4: its revision, the order of publication (anti-rollback).
        "PolicyBundle",
        4,
        {
            "bundle_id": "sha256:" + "ab" * 32,
            "created_at": T0,
            "git_commit": None,
            "files": [{"path": "schema.yaml", "content": "tools:\n  a.b: {}\n"}],
            "published_by": "alice",
            "impact": "medium",
            "approvals": [],
            "schema_break_acks": [],
            "revision": 7,
        },
    ),
]


def to_json(value: Any) -> Any:
    """Tagged JSON for the types plain JSON cannot tell apart."""
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$decimal"}:
            return Decimal(value["$decimal"])
        if set(value) == {"$datetime"}:
            return dt.datetime.fromisoformat(value["$datetime"])
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def main() -> int:
    serde = Serde()
    for name, number, datum in SAMPLES:
        bin_path = HERE / f"{name}.{number}.bin"
        json_path = HERE / f"{name}.{number}.json"
        if bin_path.exists():
            continue
        raw = serde.encode(name, datum)
        decoded = serde.decode(raw)
        expected = getattr(decoded, "value", None)
        if expected is None:
            print(f"{name}: does not decode: {decoded}", file=sys.stderr)
            return 1
        bin_path.write_bytes(raw)
        json_path.write_text(json.dumps(to_json(expected), indent=2) + "\n")
        print(f"recorded {bin_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
