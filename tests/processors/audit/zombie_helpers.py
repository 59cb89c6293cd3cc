"""A decisions log with a zombie writer on the embedded log, for the readers that must leave
its fenced writes out (the audit indexer, the monitor). Built as in
`tests/processors/test_fencing.py`: enforcer A decides, B takes the partition over while A
is frozen, A resumes and decides what it had not decided (after B's marker, with the
state it had), then B decides the same requests itself.

The two steps are apart so a reader can run in between and resume across the marker."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs

from ..test_enforcer import EXAMPLES, T0, send, transfer
from ..test_fencing import _zombie_writes

ZOMBIE, OWNER = "A", "B"


@dataclass
class Takeover:
    url: str
    log: Log
    ruleset: Ruleset
    zombie: Enforcer
    owner: Enforcer
    partition: int


def take_over(url: str, log: Log, tmp: Path) -> Takeover:
    """A decides q0..q2 (allows), then B writes its takeover marker: the log ends in it."""
    # The payments policy alone: the whole example set costs seconds to parse, three times.
    bundle = tmp / "policies"
    bundle.mkdir()
    for name in ("schema.yaml", "payments.yaml"):
        shutil.copy(EXAMPLES / name, bundle / name)
    files = read_bundle_dir(bundle)
    ruleset = compile_bundle(files)
    ensure_topics(log)
    publish_bundle(log, files, ruleset.bundle_id, actor="test", clock=lambda: T0)
    run_controller(log, once=True, clock=lambda: T0)
    send(url, *(transfer(f"q{i}", "9000", i) for i in range(3)))
    zombie = Enforcer(log, enforcer_id=ZOMBIE, clock=lambda: T0)
    zombie.run(until_idle=True, idle_s=0.5)
    owner = Enforcer(log, enforcer_id=OWNER, clock=lambda: T0)
    partition = partition_for(b"billing-bot", topic_specs()[AGENT_ACTIONS].partitions)
    owner.states[partition] = owner._take_over(partition)
    return Takeover(url, log, ruleset, zombie, owner, partition)


def zombie_then_owner(t: Takeover) -> None:
    """A resumes and decides q3 (an allow) and q4 (a deny: a sanctioned country) after B's
    marker; then B decides both itself."""
    send(t.url, transfer("q3", "9000", 3), transfer("q4", "10", 4, country="KP"))
    _zombie_writes(t.log, t.zombie, t.ruleset)
    t.owner.run(until_idle=True, idle_s=0.5)


def decisions(log: Log) -> list[tuple[int, int, dict[str, Any]]]:
    """(partition, offset, datum) of every Decision on the log, fenced or not."""
    serde = Serde()
    out = []
    for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name):
        decoded = serde.decode_record(record)
        if isinstance(decoded, Decoded) and decoded.name == "Decision":
            out.append((record.partition, record.offset, decoded.value))
    return out
