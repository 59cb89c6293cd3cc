"""Retention must not undo the registry. Were ``identity.registry`` compacted, compaction
would keep each key's *last* record, not its last *installed* one: anyone who can append
to the topic could re-append an old admin-signed record (refused as stale while the newer
one is there) and, once compaction had run, that stale record would be the only one left
and be installed — a revoked agent back active. So the topic keeps every change forever."""

from __future__ import annotations

from pathlib import Path

from ordinance.identity.records import signed_identity_record
from ordinance.identity.registry_log import load_registry
from ordinance.streams import open_log
from ordinance.streams.sqlite_log import SqliteLog
from ordinance.streams.topics import IDENTITY_REGISTRY, ensure_topics

from .helpers import SERDE, World, new_signer


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
