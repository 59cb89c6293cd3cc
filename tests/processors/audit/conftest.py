"""A signed, checkpointed decisions log of 10k+ decisions written by the real enforcer,
built once per session and copied for each tampering."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from ordinance.keys import Signer, generate
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.enforcer import Enforcer
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_ACTIONS, ensure_topics
from tests.processors.caught_up import run_caught_up

from ..test_enforcer import EXAMPLES, T0, publish, transfer

DECISIONS = 10_240
AGENTS = [f"agent-{i}" for i in range(12)]  # keys spread over all four partitions
EVERY = 1000


@dataclass(frozen=True)
class AuditedLog:
    db: Path
    key: Path
    keyring: Path

    def copy(self, directory: Path) -> str:
        """A copy of the log database (with its WAL folded in) to tamper with."""
        target = directory / "tampered.db"
        with sqlite3.connect(self.db) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return f"sqlite:///{target}"


def write_actions(url: str, count: int, first: int = 0) -> None:
    serde = Serde()
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        batch = []
        for i in range(first, first + count):
            datum = transfer(f"r{i}", str(1 + i % 40), i // 500)
            datum["agent"]["id"] = AGENTS[i % len(AGENTS)]
            batch.append(
                Record(
                    datum["agent"]["id"].encode(),
                    serde.encode("ActionRequest", datum),
                    (),
                    int(T0 * 1000),
                )
            )
        log.produce(topic, batch)


@pytest.fixture(scope="session")
def audited_log(tmp_path_factory: pytest.TempPathFactory) -> AuditedLog:
    directory = tmp_path_factory.mktemp("audited")
    key, keyring = directory / "signing.pem", directory / "keyring.json"
    generate(key, keyring)
    url = f"sqlite:///{directory / 'log.db'}"
    publish(url, EXAMPLES)
    half = DECISIONS // 2
    with open_log(url) as log:
        # Two enforcer lifetimes: the chain must run on across the second one's takeovers.
        for first, name in [(0, "enforcer-1"), (half, "enforcer-2")]:
            write_actions(url, half, first)
            run_caught_up(Enforcer(log, enforcer_id=name, clock=lambda: T0))
        Checkpointer(log, Signer.from_file(key), every_records=EVERY, clock=lambda: T0).run(
            until_idle=True, idle_s=0.5
        )
    return AuditedLog(directory / "log.db", key, keyring)
