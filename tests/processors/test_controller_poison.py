"""No record on policy.changes can stop the controller (issue 11): a log seeded with every
poison policy, an undecodable record and a change that makes the compiler fail in a way
nobody foresaw is folded record by record — each a rejected change with its reason — and
the good change after them is applied, on this run and after a restart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors import controller
from ordinance.processors.controller import ControllerState, apply_change, bundle_key, target_key
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Record, open_log
from ordinance.streams.errors import ProduceError
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    MONITOR_ALERTS,
    POLICY_ACTIVE,
    POLICY_CHANGES,
    ensure_topics,
    topic_specs,
)
from tests.policy.poison_corpus import CORPUS, bundle_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
GOOD = read_bundle_dir(EXAMPLES)
GOOD_ID = compile_bundle(GOOD).bundle_id
REFUSED = [p for p in CORPUS if p.refusal is not None]
[REDOS] = [p for p in CORPUS if p.refusal is None]
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXPLODING = "sha256:" + "e" * 64  # the compiler raises something nobody foresaw for it


def _poison_id(n: int) -> str:
    return f"sha256:{n:064x}"


def _explode_on_one_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compile_bundle

    def compile_or_explode(files: Any) -> Any:
        if files.get("boom.yaml"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(files)

    monkeypatch.setattr(controller, "compile_bundle", compile_or_explode)


def _alerts_and_active(url: str) -> tuple[list[dict[str, Any]], dict[bytes, dict[str, Any]]]:
    serde, specs = Serde(), topic_specs()
    with open_log(url) as log:
        alerts = []
        for record in log.read_to_end(specs[MONITOR_ALERTS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            alerts.append(decoded.value)
        active = {}
        for key, record in log.latest_by_key(specs[POLICY_ACTIVE].name).items():
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            active[key] = decoded.value
    return alerts, active


def test_the_controller_survives_every_poison_change_and_applies_the_good_one(
    log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _explode_on_one_bundle(monkeypatch)
    redos_id = compile_bundle(bundle_files(REDOS)).bundle_id
    with open_log(log_url) as log:
        at_the_door = set()
        for n, poison in enumerate(REFUSED):
            try:
                publish_bundle(log, bundle_files(poison), _poison_id(n), actor="mallory")
            except ProduceError:  # Kafka's own record cap refuses the 2 MiB file
                at_the_door.add(poison.name)
        publish_bundle(log, {**GOOD, "boom.yaml": "x"}, EXPLODING, actor="mallory")
        changes = ensure_topics(log)[POLICY_CHANGES].name
        log.produce(changes, [Record(b"junk", b"\x00not avro", (), 0)])
        publish_bundle(log, bundle_files(REDOS), redos_id, actor="alice", enforce=False)
        good = publish_bundle(log, GOOD, GOOD_ID, actor="alice")
        report = run_controller(log, once=True)

    # Each poison bundle: its published event and the enforce that names it are rejected.
    poisoned = len(REFUSED) + 1 - len(at_the_door)
    assert report.rejected == 2 * poisoned + 1  # + the undecodable record
    assert report.applied == 3  # the ReDoS bundle (published), the good one and its enforce
    alerts, active = _alerts_and_active(log_url)
    by_bundle: dict[str | None, list[str]] = {}
    for alert in alerts:
        by_bundle.setdefault(alert["bundle_id"], []).append(alert["message"])
    for n, poison in enumerate(REFUSED):
        if poison.name in at_the_door:
            assert _poison_id(n) not in by_bundle
            continue
        *published, enforced = by_bundle[_poison_id(n)]
        assert "never published" in enforced, poison.name
        if poison.name == "2 MiB file":  # over the log's record cap: refused by the decoder
            assert published == []
            continue
        [reason] = published
        assert "does not compile" in reason and str(poison.refusal) in reason, poison.name
    assert "RecursionError" in by_bundle[EXPLODING][0]
    undecodable = sorted(by_bundle[None])
    assert all("undecodable" in m for m in undecodable)
    assert len(undecodable) == 2 - len(at_the_door)  # the junk record (+ the oversize one)
    assert active[target_key("default")]["stable_bundle_id"] == GOOD_ID
    assert active[target_key("default")]["change_offset"] == good.enforced_offset
    assert bundle_key(redos_id) in active and bundle_key(GOOD_ID) in active

    # A restart folds the same records again (nothing escapes) and applies what is new.
    with open_log(log_url) as log:
        again = publish_bundle(log, GOOD, GOOD_ID, actor="alice", target="prod")
        report = run_controller(log, once=True)
    assert (report.applied, report.rejected) == (2, 0)
    _, active = _alerts_and_active(log_url)
    assert active[target_key("prod")]["change_offset"] == again.enforced_offset


def test_apply_change_never_raises_and_leaves_state_untouched_on_failure() -> None:
    state = ControllerState()
    apply_change(state, {"event": "published", "bundle_id": GOOD_ID, "at": AT,
                         "files": [{"path": p, "content": c} for p, c in GOOD.items()]}, 0, AT)  # fmt: skip
    before = (dict(state.bundles), dict(state.rollouts))
    changes: list[dict[str, Any]] = [
        {},
        {"event": "enforced"},
        {"event": "published", "bundle_id": 5, "at": AT},
    ]
    for change in changes:
        [out] = apply_change(state, change, 1, AT)
        assert out.topic == "alerts" and out.datum["details"]["change_offset"] == 1
    assert (state.bundles, state.rollouts) == before


def test_a_rejection_quoting_a_surrogate_or_a_huge_reason_still_encodes() -> None:
    alert = controller.rejection("bad \ud83d " + "x" * 100_000, "sha256:\udcff", 3, AT)
    Serde().encode(alert.schema, alert.datum)  # UTF-8-safe and bounded
    assert len(alert.datum["message"]) <= controller.MAX_REASON_CHARS
    alert.key.decode("utf-8")
