"""Ordinance's topic set is created with explicit, consistent configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.streams import open_log
from ordinance.streams.errors import TopicConfigError
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, main


def test_ensure_topics_is_idempotent_and_refuses_a_clash(tmp_path: Path) -> None:
    with open_log(f"sqlite:///{tmp_path}/log.db") as log:
        specs = ensure_topics(log, "acme.", agent_partitions=6)
        assert ensure_topics(log, "acme.", agent_partitions=6) == specs
        assert all(spec.name.startswith("acme.") for spec in specs.values())
        # One enforcer per actions partition writes the same decisions partition.
        assert specs[AGENT_ACTIONS].partitions == specs[AGENT_DECISIONS].partitions == 6
        assert specs[AGENT_DECISIONS].retention_ms is None
        assert log.partitions("acme.policy.changes") == [0]
        assert specs["policy.active"].cleanup == "compact"
        with pytest.raises(TopicConfigError):
            ensure_topics(log, "acme.", agent_partitions=3)


def test_topics_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"sqlite:///{tmp_path}/log.db", "--prefix", "x."]) == 0
    out = capsys.readouterr().out
    assert "x.agent.decisions: 4 partitions, delete, kept forever" in out
    assert "x.policy.active: 1 partitions, compact" in out
