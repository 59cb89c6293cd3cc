"""Zombie writers (issue 18): an enforcer that lost its partition without knowing it writes
on after the new owner's takeover marker. Built here on the embedded log by writing what
the zombie would write (its own state, its decide, its chain links) after another
enforcer's marker; then every reader of the log must leave those writes out."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from ordinance.client import SyncClient
from ordinance.client.decision import ClientDecision
from ordinance.keys import Keyring, Signer, generate
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.audit.verify import verify_log
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import PartitionState, decide
from ordinance.processors.policy_log import publish_bundle
from ordinance.replay.source import LogSource
from ordinance.replay.verify import verify as replay_verify
from ordinance.streams import Log, Record, open_log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs

from .test_enforcer import BILLING, EXAMPLES, T0, send, transfer

SPECS = topic_specs()
AGENT = b"billing-bot"
C1 = {
    "tool": "payments.transfer",
    "args": {"amount": "10", "currency": "EUR", "country": "DE", "iban": "X"},
}


def _zombie_writes(log: Log, zombie: Enforcer, ruleset: Ruleset) -> None:
    """Decide what ``zombie`` has not decided, as it would on resuming: with the state it
    had when it stopped, linked to the chain head it knew."""
    serde = Serde()
    partition = partition_for(AGENT, SPECS[AGENT_ACTIONS].partitions)
    state = zombie.states[partition]
    for record in log.read_to_end(SPECS[AGENT_ACTIONS].name, [partition]):
        decoded = serde.decode_record(record, expect={"ActionRequest"})
        datum = decide(
            state,
            ruleset,
            decoded,
            action_offset=record.offset,
            agent_key=record.key,
            enforcer_id=zombie.enforcer_id,
            evaluated_at=dt.datetime.fromtimestamp(T0, dt.UTC),
        )
        if datum is None:
            continue  # decided before it stopped
        state.fold("Decision", datum, state.offset)
        value = serde.encode("Decision", datum)
        log.produce(
            SPECS[AGENT_DECISIONS].name,
            [Record(record.key, value, state.link(record.key, value), int(T0 * 1000), partition)],
        )


def _decisions(log: Log) -> list[tuple[int, dict[str, Any]]]:
    serde = Serde()
    out = []
    for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
        decoded = serde.decode_record(record)
        if isinstance(decoded, Decoded) and decoded.name == "Decision":
            out.append((record.offset, decoded.value))
    return out


def test_a_zombie_writers_decisions_are_fenced_for_every_reader(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    files = read_bundle_dir(EXAMPLES)
    ruleset = compile_bundle(files)
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, ruleset.bundle_id, actor="test")
        run_controller(log, once=True)
    # Daily budget 50,000: three allows of 9,000 now; q3 and q4 fit, q5 does not.
    send(url, *(transfer(f"q{i}", "9000", i) for i in range(3)))
    with open_log(url) as log:
        zombie = Enforcer(log, enforcer_id="A", clock=lambda: T0)
        zombie.run(until_idle=True, idle_s=1.0)
        # A client waiting on the partition since before the new owner took over.
        answer: list[ClientDecision] = []
        with SyncClient(url, clock=lambda: T0 + 150) as client:
            asking = threading.Thread(
                target=lambda: answer.append(
                    client.decide(
                        {"agent": BILLING, "action": C1},
                        timeout=30.0,
                    )
                )
            )
            asking.start()
            send(url, transfer("q3", "9000", 3))
            while (
                sum(1 for _ in log.read_to_end(SPECS[AGENT_ACTIONS].name)) < 5 and asking.is_alive()
            ):
                time.sleep(0.05)
            # B takes the partition over while A is frozen: B's marker, then A resumes and
            # decides q3 and the client's c1 with what it knew, after B's marker.
            owner = Enforcer(log, enforcer_id="B", clock=lambda: T0)
            partition = next(iter(zombie.states))
            owner.states[partition] = owner._take_over(partition)
            _zombie_writes(log, zombie, ruleset)
            owner.run(until_idle=True, idle_s=1.0)  # B decides q3 and c1 itself
            asking.join()
        # A third enforcer refolds the partition, both copies of q3 on it, and decides on.
        send(url, transfer("q4", "9000", 4), transfer("q5", "9000", 5))
        third = Enforcer(log, enforcer_id="C", clock=lambda: T0)
        third.run(until_idle=True, idle_s=1.0)

        decisions = _decisions(log)
        by_writer = {(d["request_id"], d["enforcer_id"]): d for _, d in decisions}
        [decision] = answer
        c1 = decision.request_id
        assert {("q3", "A"), ("q3", "B"), (c1, "A"), (c1, "B")} <= by_writer.keys()
        # The client took the owner's answer, not the zombie's (which came first).
        assert decision.enforcer_id == "B", decision
        # The refold counted q3 once: q4 still fits the budget, q5 does not.
        effects = {d["request_id"]: d["effect"] for _, d in decisions if d["enforcer_id"] == "C"}
        assert effects == {"q4": "allow", "q5": "deny"}
        assert third.states[partition].fenced == 2

        fenced_offsets = [o for o, d in decisions if d["enforcer_id"] == "A" and o > 0][-2:]
        # The checkpointer signs on past the fenced writes; the audit lists them, clean.
        key, keyring = tmp_path / "k.pem", tmp_path / "ring.json"
        generate(key, keyring)
        signer = Checkpointer(log, Signer.from_file(key), every_records=2, clock=lambda: T0)
        assert signer.run(until_idle=True, idle_s=0.3).alerts == []
        report = verify_log(log, Keyring.from_file(keyring))
        assert report.findings == []
        listed = [(p, f.offset, f.writer, f.owner) for p, f in report.fenced]
        assert listed == [(partition, o, "A", "B") for o in fenced_offsets]
        [part] = [p for p in report.partitions if p.partition == partition]
        assert part.covered == part.records  # every record signed, fenced ones included
        # Replay walks the same fold: the owner's decisions agree, the zombie's are counted.
        replayed = replay_verify(LogSource(log))
        assert replayed.ok, replayed.findings
        assert replayed.partitions[partition].fenced == 2


def test_a_fold_without_a_takeover_marker_fences_nothing() -> None:
    """Logs written before takeover markers existed have no owner to judge by."""
    state = PartitionState(0)
    datum = {"request_id": "r", "enforcer_id": "anyone"}
    assert not state.fences("Decision", datum)
    state.fold("EnforcerTakeover", {"enforcer_id": "B"}, 0)
    assert state.fences("Decision", datum) and not state.fences("EnforcerTakeover", datum)
    assert not state.fences("Decision", {**datum, "enforcer_id": "B"})
