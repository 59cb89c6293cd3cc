"""Canary and shadow rollouts (docs/lifecycle.md): the split is a function of the log,
every decision names its arm and bundle, a shadow verdict is recorded and never enforced,
a rollback ends the candidate at one offset, and replay verify reproduces all of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller import ControllerState, apply_change
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import append_change, publish_bundle
from ordinance.processors.rollout import canary_bucket, in_canary
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import Record, open_log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics
from ordinance.wire import request_to_wire
from tests.processors.caught_up import run_caught_up
from tests.processors.test_controller import BUNDLE_ID, FILES, change

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
T0 = 1_767_225_600.0
AT = dt.datetime.fromtimestamp(T0, dt.UTC)
CANDIDATE_FILES = {
    **read_bundle_dir(EXAMPLES),
    "canary-candidate.yaml": """policy: canary-candidate
owner: finance-risk
description: A candidate that stops transfers to NL.
target:
  agents: {roles: [billing]}
  actions: [payments.transfer]
rules:
  - id: no-nl
    effect: deny
    when: action.args.country == "NL"
    reason: no transfers to NL in the candidate
""",
}
CANDIDATE = compile_bundle(CANDIDATE_FILES).bundle_id
AGENTS = [f"billing-{n}" for n in range(24)]


# -- the split ---------------------------------------------------------------------------
@given(st.text(max_size=20), st.text(min_size=1, max_size=20), st.integers(0, 99))
def test_raising_the_percentage_only_adds_agents(seed: str, agent: str, percent: int) -> None:
    if in_canary(seed, agent, percent):
        assert in_canary(seed, agent, percent + 1)
    assert in_canary(seed, agent, percent) == in_canary(seed, agent, percent)


def test_the_split_is_close_to_the_percentage_and_depends_on_the_seed() -> None:
    agents = [f"agent-{n}" for n in range(20_000)]
    share = sum(in_canary("seed-a", a, 10) for a in agents) / len(agents)
    assert 0.09 < share < 0.11
    assert [canary_bucket("seed-a", a) for a in agents[:50]] != [
        canary_bucket("seed-b", a) for a in agents[:50]
    ]
    assert not any(in_canary("seed-a", a, 0) for a in agents[:1000])


# -- the controller's transitions --------------------------------------------------------
def _controller_with_stable() -> ControllerState:
    state = ControllerState()
    apply_change(state, change("published", files=FILES), 0, AT)
    apply_change(state, change("published", CANDIDATE, files=CANDIDATE_FILES), 1, AT)
    apply_change(state, change("enforced"), 2, AT)
    return state


def _refused(state: ControllerState, event: str, bundle_id: str, **extra: Any) -> str:
    before = dict(state.rollouts)
    [out] = apply_change(state, change(event, bundle_id, **extra), 9, AT)
    assert out.topic == "alerts" and state.rollouts == before
    return str(out.datum["message"])


def test_canary_and_shadow_need_a_stable_bundle_a_published_candidate_and_a_percentage() -> None:
    empty = ControllerState()
    apply_change(empty, change("published", CANDIDATE, files=CANDIDATE_FILES), 0, AT)
    assert "needs a bundle enforced" in _refused(empty, "canary", CANDIDATE, canary_percent=10)
    state = _controller_with_stable()
    assert "never published" in _refused(state, "shadow", "sha256:" + "0" * 64)
    assert "already the stable bundle" in _refused(state, "canary", BUNDLE_ID, canary_percent=5)
    for percent in (None, 0, 100, 250):
        assert "1..99" in _refused(state, "canary", CANDIDATE, canary_percent=percent)
    assert "needs previous_bundle_id" in _refused(state, "rolled_back", CANDIDATE)


def test_canary_then_promote_or_roll_back() -> None:
    state = _controller_with_stable()
    [out] = apply_change(state, change("canary", CANDIDATE, canary_percent=10), 3, AT)
    assert {k: out.datum[k] for k in ("stable_bundle_id", "candidate_bundle_id", "mode")} == {
        "stable_bundle_id": BUNDLE_ID,
        "candidate_bundle_id": CANDIDATE,
        "mode": "canary",
    }
    assert out.datum["canary_percent"] == 10
    assert "still in force" in _refused(state, "retired", CANDIDATE)
    [out] = apply_change(state, change("rolled_back", CANDIDATE), 4, AT)  # ends the canary
    assert (out.datum["stable_bundle_id"], out.datum["mode"]) == (BUNDLE_ID, "stable")
    assert out.datum["candidate_bundle_id"] is None
    apply_change(state, change("shadow", CANDIDATE), 5, AT)
    [out] = apply_change(state, change("enforced", CANDIDATE), 6, AT)  # promotes
    assert (out.datum["stable_bundle_id"], out.datum["mode"]) == (CANDIDATE, "stable")


# -- end to end --------------------------------------------------------------------------
def _send(url: str, tag: str, minute: int, prefix: str = "ordinance.") -> None:
    serde = Serde()
    with open_log(url) as log:
        spec = ensure_topics(log, prefix)[AGENT_ACTIONS]
        records = []
        for agent in AGENTS:
            request = {
                "agent": {"id": agent, "roles": ["billing"], "team": "finance"},
                "action": {
                    "tool": "payments.transfer",
                    "args": {"amount": "50", "currency": "EUR", "country": "NL", "iban": "X"},
                },
            }
            at = dt.datetime.fromtimestamp(T0 + 60 * minute, dt.UTC)
            datum = request_to_wire(
                request, request_id=f"{tag}-{agent}", event_time=at, client_id="test"
            )
            key = agent.encode()
            value = serde.encode("ActionRequest", datum)
            partition = partition_for(key, spec.partitions)
            records.append(Record(key, value, (), int(at.timestamp() * 1000), partition))
        log.produce(spec.name, records)


def _change(url: str, event: str, bundle_id: str, **extra: Any) -> None:
    with open_log(url) as log:
        append_change(log, event, bundle_id, actor="test", clock=lambda: T0, **extra)
        run_controller(log, once=True, clock=lambda: T0)


def _enforce(url: str) -> None:
    # Until it has read what was sent, not until idle: on Kafka the first fetch after a
    # group join can take seconds, and an idle wait would have to outlast it every time.
    with open_log(url) as log:
        run_caught_up(Enforcer(log, clock=lambda: T0 + 600))


def _decisions(url: str) -> tuple[dict[str, dict[str, Any]], list[tuple[int, int, str]]]:
    """Decisions by request id (with ``_at``: partition, offset), and (partition, offset,
    schema) of every record."""
    serde = Serde()
    by_id: dict[str, dict[str, Any]] = {}
    records: list[tuple[int, int, str]] = []
    with open_log(url) as log:
        for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            records.append((record.partition, record.offset, decoded.name))
            if decoded.name == "Decision":
                at = {"_at": (record.partition, record.offset)}
                by_id[decoded.value["request_id"]] = {**decoded.value, **at}
    return by_id, records


def test_canary_shadow_and_rollback_end_to_end(tmp_path: Path) -> None:
    # The embedded log only: on Kafka, canary arms and a rollback at one offset are shown
    # by test_the_monitor_rolls_back_a_regressing_canary_that_asked_for_it (CI time).
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        stable = publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="test", enforce=False, clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    assert stable.enforced_offset is not None

    _change(url, "canary", CANDIDATE, target="default", canary_percent=30)
    _send(url, "canary", 1)
    _enforce(url)
    decided, _ = _decisions(url)
    arms = {agent: decided[f"canary-{agent}"] for agent in AGENTS}
    canary = {a for a in AGENTS if in_canary(CANDIDATE, a, 30)}
    assert canary and canary != set(AGENTS)  # both arms are exercised
    for agent, d in arms.items():
        if agent in canary:  # the candidate decides, and says so
            assert (d["arm"], d["bundle_id"], d["effect"]) == ("canary", CANDIDATE, "deny")
            assert d["rule_ids"] == ["canary-candidate/no-nl"]
        else:
            assert (d["arm"], d["bundle_id"], d["effect"]) == ("control", BUNDLE_ID, "allow")
        assert d["shadow"] is None

    _change(url, "shadow", CANDIDATE, target="default")
    _send(url, "shadow", 2)
    _enforce(url)
    decided, _ = _decisions(url)
    for agent in AGENTS:  # enforced by the stable bundle; the candidate's verdict recorded
        d = decided[f"shadow-{agent}"]
        assert (d["arm"], d["bundle_id"], d["effect"]) == (None, BUNDLE_ID, "allow")
        assert d["shadow"] == {
            "bundle_id": CANDIDATE,
            "effect": "deny",
            "rule_ids": ["canary-candidate/no-nl"],
            "code": "matched",
            "detail": "",
        }

    _change(url, "rolled_back", CANDIDATE, target="default")  # ends the shadow
    _send(url, "after", 3)
    _enforce(url)
    decided, records = _decisions(url)
    for agent in AGENTS:
        d = decided[f"after-{agent}"]
        assert (d["arm"], d["shadow"], d["effect"]) == (None, None, "allow")
    # Each partition swapped once per rollout the enforcer saw (it first ran during the
    # canary): canary, shadow, rollback — each one record between two decisions.
    swaps: dict[int, int] = {}
    for partition, _offset, name in records:
        swaps[partition] = swaps.get(partition, 0) + (name == "RulesetSwap")
    assert set(swaps.values()) == {3}

    source, log = open_source(url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert report.ok, [f.to_json() for f in report.findings]
    assert report.decisions == 3 * len(AGENTS)


@pytest.mark.parametrize("tampered", ["arm", "shadow"])
def test_replay_notices_a_rewritten_arm_or_shadow_verdict(tmp_path: Path, tampered: str) -> None:
    from tests.replay.conftest import rewrite

    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="test", enforce=False, clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    event, extra = ("canary", {"canary_percent": 50}) if tampered == "arm" else ("shadow", {})
    _change(url, event, CANDIDATE, target="default", **extra)
    _send(url, "r", 1)
    _enforce(url)
    decided, _ = _decisions(url)
    victim = decided[f"r-{AGENTS[0]}"]

    def edit(datum: dict[str, Any]) -> dict[str, Any]:
        if tampered == "arm":
            datum["arm"] = "control" if datum["arm"] == "canary" else "canary"
        else:
            datum["shadow"] = {**datum["shadow"], "effect": "allow"}
        return datum

    rewrite(tmp_path / "log.db", "agent.decisions", *victim["_at"], edit)
    source, log = open_source(url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert [f.kind for f in report.findings] == ["decision_mismatch"]
    assert tampered in report.findings[0].to_json()["differences"]


def test_the_monitor_rolls_back_a_regressing_canary_that_asked_for_it(log_url: str) -> None:
    """Issue 14's must-show, on both backends: a canary that wrongly denies a legitimate
    transfer is rolled back by the monitor; on every partition, each decision before the
    swap back names the candidate for canary agents, and every one after it names the
    stable bundle."""
    import threading

    from ordinance.processors.monitor.config import MonitorConfig
    from ordinance.processors.monitor.runner import AutoRollback, Monitor
    from ordinance.streams.serde import Serde as _Serde
    from ordinance.streams.topics import POLICY_ACTIVE, POLICY_CHANGES

    url = log_url
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="test", enforce=False, clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    _change(url, "canary", CANDIDATE, target="default", canary_percent=50, auto_rollback=True)
    for round_ in range(4):  # the candidate denies every one of these; control allows them
        _send(url, f"r{round_}", round_)
    _enforce(url)

    config = MonitorConfig.from_mapping({"canary": {"min_samples": 5}})
    stop = threading.Event()
    timer = threading.Timer(60, stop.set)
    timer.start()
    try:
        with open_log(url) as log:
            monitor = Monitor(
                log,
                config=config,
                clock=lambda: T0 + 700,
                auto_rollback=AutoRollback("monitor-bot", None, "default"),
            )
            monitor.run(stop, until=lambda _state: bool(monitor.rollbacks))
            run_controller(log, once=True, clock=lambda: T0 + 700)
    finally:
        timer.cancel()
    [rollback] = monitor.rollbacks
    assert rollback["candidate"] == CANDIDATE

    serde = _Serde()
    with open_log(url) as log:
        topics = ensure_topics(log)
        changes = [serde.decode_record(r) for r in log.read_to_end(topics[POLICY_CHANGES].name)]
        active = [serde.decode_record(r) for r in log.read_to_end(topics[POLICY_ACTIVE].name)]
    last = changes[-1]
    assert isinstance(last, Decoded)
    assert (last.value["event"], last.value["actor"]) == ("rolled_back", "monitor-bot")
    assert str(last.value["reason"]).startswith(rollback["alert_id"])
    rollouts = [d.value for d in active if isinstance(d, Decoded) and d.name == "ActiveRollout"]
    assert (rollouts[-1]["mode"], rollouts[-1]["candidate_bundle_id"]) == ("stable", None)

    _send(url, "after", 5)  # every enforcer swapped back: the stable bundle decides all
    _enforce(url)
    decided, _ = _decisions(url)
    assert all(decided[f"after-{a}"]["arm"] is None for a in AGENTS)
    assert all(decided[f"after-{a}"]["effect"] == "allow" for a in AGENTS)
    # Per partition: the swap back is one record; canary agents' decisions name the
    # candidate before it and the stable bundle after it.
    canary = {a for a in AGENTS if in_canary(CANDIDATE, a, 50)}
    back: dict[int, int] = {}
    with open_log(url) as log:
        for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name):
            d = serde.decode_record(record)
            assert isinstance(d, Decoded)
            if d.name == "RulesetSwap" and d.value["mode"] == "stable":
                back[record.partition] = record.offset
    for d in decided.values():
        partition, offset = d["_at"]
        if d["agent_id"] in canary:
            before = offset < back[partition]
            assert d["bundle_id"] == (CANDIDATE if before else BUNDLE_ID), d["request_id"]
