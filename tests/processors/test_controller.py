"""The controller: only validated bundles reach policy.active; everything else is an alert."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller import ControllerState, apply_change, bundle_key, target_key
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import MONITOR_ALERTS, POLICY_ACTIVE, topic_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FILES = read_bundle_dir(EXAMPLES)
BUNDLE_ID = compile_bundle(FILES).bundle_id


def change(
    event: str,
    bundle_id: str = BUNDLE_ID,
    files: dict[str, str] | None = None,
    actor: str = "alice",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "bundle_id": bundle_id,
        "event": event,
        "actor": actor,
        "at": AT,
        "files": [{"path": p, "content": c} for p, c in (files or {}).items()],
        **extra,
    }


def test_valid_bundle_is_published_then_enforced() -> None:
    state = ControllerState()
    [out] = apply_change(state, change("published", files=FILES), 0, AT)
    assert (out.topic, out.key, out.schema) == ("active", bundle_key(BUNDLE_ID), "PolicyBundle")
    [out] = apply_change(state, change("enforced", target="prod"), 1, AT)
    assert (out.topic, out.key) == ("active", target_key("prod"))
    assert out.datum["stable_bundle_id"] == BUNDLE_ID and out.datum["change_offset"] == 1
    assert apply_change(state, change("published", files=FILES), 2, AT) == []  # idempotent


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda f: {
                **f,
                "payments.yaml": f["payments.yaml"].replace("amount > 10000", "amout > 10000"),
            },
            "does not compile",
        ),
        (
            lambda f: {
                **f,
                "payments.yaml": f["payments.yaml"].replace("expect: allow", "expect: deny", 1),
            },
            "policy test(s) fail",
        ),
        (lambda f: {k: v for k, v in f.items() if k != "schema.yaml"}, "no schema.yaml"),
        (lambda f: {**f, "../escape.yaml": "x"}, "not a plain relative path"),
    ],
)
def test_invalid_bundles_are_rejected_with_the_reason(mutate: Any, reason: str) -> None:
    state = ControllerState()
    files = mutate(dict(FILES))
    try:  # the id of what was actually published, so only `reason` can reject it
        bundle_id = compile_bundle(files).bundle_id
    except Exception:
        bundle_id = BUNDLE_ID
    [out] = apply_change(state, change("published", bundle_id, files=files), 7, AT)
    assert out.topic == "alerts" and reason in out.datum["message"]
    assert out.datum["details"]["change_offset"] == 7
    assert state.bundles == {}


def test_bundle_id_must_match_content() -> None:
    [out] = apply_change(
        ControllerState(), change("published", "sha256:" + "0" * 64, files=FILES), 0, AT
    )
    assert out.topic == "alerts" and "does not match its content" in out.datum["message"]


def test_enforcing_requires_a_validated_bundle_and_rollback_restores() -> None:
    state = ControllerState()
    [out] = apply_change(state, change("enforced"), 0, AT)
    assert out.topic == "alerts" and "never published" in out.datum["message"]
    apply_change(state, change("published", files=FILES), 1, AT)
    apply_change(state, change("enforced"), 2, AT)
    [out] = apply_change(
        state, change("rolled_back", "sha256:new", previous_bundle_id=BUNDLE_ID), 3, AT
    )
    assert out.datum["stable_bundle_id"] == BUNDLE_ID
    [out] = apply_change(state, change("retired"), 4, AT)
    assert out.topic == "alerts" and "still in force on default" in out.datum["message"]
    [out] = apply_change(state, change("canary", canary_percent=10), 5, AT)
    assert out.topic == "alerts" and "already the stable bundle" in out.datum["message"]


def _table(url: str) -> tuple[dict[bytes, dict[str, Any]], list[dict[str, Any]]]:
    serde, specs = Serde(), topic_specs()
    with open_log(url) as log:
        active = {}
        for key, record in log.latest_by_key(specs[POLICY_ACTIVE].name).items():
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            active[key] = decoded.value
        alerts = []
        for record in log.read_to_end(specs[MONITOR_ALERTS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            alerts.append(decoded.value)
    return active, alerts


def test_controller_on_the_embedded_log_is_idempotent_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        published = publish_bundle(log, FILES, BUNDLE_ID, actor="alice")
        broken = {**FILES, "payments.yaml": "policy: [broken"}
        publish_bundle(log, broken, "sha256:" + "1" * 64, actor="mallory")
        report = run_controller(log, once=True)
    assert (report.applied, report.rejected) == (
        2,
        2,
    )  # published + enforced; broken published + its enforce
    active, alerts = _table(url)
    assert set(active) == {bundle_key(BUNDLE_ID), target_key("default")}
    assert active[target_key("default")]["stable_bundle_id"] == BUNDLE_ID
    assert active[target_key("default")]["change_offset"] == published.enforced_offset
    assert [a["bundle_id"] for a in alerts] == ["sha256:" + "1" * 64] * 2
    with open_log(url) as log:  # a restart processes nothing twice
        report = run_controller(log, once=True)
    assert (report.applied, report.rejected, report.written) == (0, 0, 0)
    assert _table(url)[1] == alerts


@pytest.mark.kafka
def test_controller_on_kafka(tmp_path: Path) -> None:
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker, open_log(broker.url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="alice", target="prod")
        report = run_controller(log, once=True)
        assert (report.applied, report.rejected) == (2, 0)
        active, alerts = _table(broker.url)
    assert active[target_key("prod")]["stable_bundle_id"] == BUNDLE_ID and alerts == []


def test_two_person_rule_for_high_impact_bundles_where_identities_are_verified() -> None:
    """The examples hold impact: high policies. Governed (a trust root), they need two
    approvers other than the publisher (alice) before staging or enforcing; rollbacks and
    shadows are not gated. Ungoverned, approvals are recorded but not required."""
    state = ControllerState(governed=True)
    [out] = apply_change(state, change("reviewed"), 0, AT)
    assert out.topic == "alerts" and "never published" in out.datum["message"]
    [out] = apply_change(state, change("published", files=FILES), 1, AT)
    assert (out.datum["published_by"], out.datum["impact"], out.datum["approvals"]) == (
        "alice",
        "high",
        [],
    )
    assert apply_change(state, change("reviewed", reason="looks right"), 2, AT) == []
    [out] = apply_change(state, change("approved"), 3, AT)  # alice approving her own
    assert out.datum["details"]["code"] == "self_approval"
    [out] = apply_change(state, change("approved", actor="bob"), 4, AT)
    assert (out.schema, out.datum["approvals"]) == ("PolicyBundle", ["bob"])
    assert apply_change(state, change("approved", actor="bob"), 5, AT) == []  # counts once
    for event in ("staged", "enforced"):
        [out] = apply_change(state, change(event, target="prod"), 6, AT)
        assert out.datum["details"]["code"] == "needs_approval", event
    apply_change(state, change("approved", actor="carol"), 7, AT)
    assert apply_change(state, change("staged", target="staging"), 8, AT) == []
    [out] = apply_change(state, change("enforced", target="prod"), 9, AT)
    assert out.schema == "ActiveRollout" and out.datum["stable_bundle_id"] == BUNDLE_ID

    ungoverned = ControllerState()
    apply_change(ungoverned, change("published", files=FILES), 0, AT)
    [out] = apply_change(ungoverned, change("enforced"), 1, AT)
    assert out.schema == "ActiveRollout"


def test_a_breaking_schema_change_is_refused_on_enforce_unless_acknowledged() -> None:
    """The CLI refuses breaking changes before publishing; the controller refuses one that
    bypassed it (schema_break), and lets through the breaks the publisher acknowledged on
    its published event. Rollbacks are not checked."""
    from ordinance.policy.schema_compat import schema_breaks

    narrower = {**FILES, "schema.yaml": FILES["schema.yaml"].replace("      memo?: string\n", "")}
    assert narrower != FILES
    narrower_id = compile_bundle(narrower).bundle_id
    [brk] = schema_breaks(compile_bundle(FILES).schema, compile_bundle(narrower).schema)
    state = ControllerState()
    apply_change(state, change("published", files=FILES), 0, AT)
    apply_change(state, change("enforced"), 1, AT)
    apply_change(state, change("published", narrower_id, files=narrower), 2, AT)
    [out] = apply_change(state, change("enforced", narrower_id), 3, AT)
    assert out.datum["details"]["code"] == "schema_break"
    assert "memo" in out.datum["message"]
    [out] = apply_change(state, change("canary", narrower_id, canary_percent=5), 4, AT)
    assert out.datum["details"]["code"] == "schema_break"

    acked = ControllerState()
    ack = {"finding": brk.finding().id, "kind": "schema-break", "justification": "unused"}
    apply_change(acked, change("published", files=FILES), 0, AT)
    apply_change(acked, change("enforced"), 1, AT)
    [out] = apply_change(
        acked,
        change("published", narrower_id, files=narrower, checks={"acknowledgements": [ack]}),
        2,
        AT,
    )
    assert out.datum["schema_break_acks"] == [brk.finding().id]
    [out] = apply_change(acked, change("enforced", narrower_id), 3, AT)
    assert out.schema == "ActiveRollout"
    [out] = apply_change(acked, change("rolled_back", previous_bundle_id=BUNDLE_ID), 4, AT)
    assert out.schema == "ActiveRollout"  # back to the wider schema: not a break
