"""Compaction must not undo the registry. ``identity.registry`` is a compacted topic keyed
by principal id, and compaction keeps each key's *last* record, not its last *installed*
one: anyone who can append to the topic can re-append an old admin-signed record (refused
as stale while the newer one is there) and, once compaction has run, that stale record is
the only one left and is installed. A revoked agent comes back active.

Strict xfail until the topic stops being compacted (or compaction stops deciding which
record survives); docs/identity.md lists it under what an attacker with write access can
do until then, and Kafka ACLs on the topic are the mitigation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.identity.records import signed_identity_record
from ordinance.identity.registry_log import load_registry
from ordinance.streams import open_log
from ordinance.streams.sqlite_log import SqliteLog
from ordinance.streams.topics import IDENTITY_REGISTRY, ensure_topics

from .helpers import SERDE, World, new_signer


@pytest.mark.xfail(
    strict=True, reason="identity.registry is compacted: a replayed stale record survives it"
)
def test_compaction_does_not_bring_a_revoked_agent_back(tmp_path: Path) -> None:
    world, agent = World(), new_signer("a1")
    with open_log(f"sqlite:///{tmp_path}/log.db") as log:
        topic = ensure_topics(log)[IDENTITY_REGISTRY].name
        active = signed_identity_record(SERDE, world.record("a1", [agent]), world.root)
        revoked = signed_identity_record(
            SERDE, world.record("a1", [agent], status="revoked"), world.root
        )
        log.produce(topic, [active, revoked, active])  # the last one: an attacker's replay
        before = load_registry(log, world.trust)
        assert [r.code for r in before.refusals] == ["stale_version"]
        assert isinstance(log, SqliteLog)
        log.enforce_retention()
        after = load_registry(log, world.trust).get("a1")
        assert after is not None and after.status == "revoked"
