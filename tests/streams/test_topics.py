"""Ordinance's topic set is created with explicit, consistent configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.streams import Log, open_log
from ordinance.streams.errors import TopicConfigError
from ordinance.streams.topics import (
    AGENT_ACTIONS,
    AGENT_DECISIONS,
    DEFAULT_AGENT_PARTITIONS,
    ensure_topics,
    existing_agent_partitions,
)


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


def test_processes_adopt_the_partition_count_the_topics_were_created_with(
    log: Log, topic: str
) -> None:
    # An operator creates the topics with 12 partitions; every other process
    # (enforcer, controller, publisher) calls ensure_topics without a count.
    prefix = topic + "."
    assert existing_agent_partitions(log, prefix) is None
    ensure_topics(log, prefix, agent_partitions=12)
    assert existing_agent_partitions(log, prefix) == 12
    specs = ensure_topics(log, prefix)
    assert specs[AGENT_ACTIONS].partitions == specs[AGENT_DECISIONS].partitions == 12
    assert log.partitions(prefix + AGENT_DECISIONS) == list(range(12))


def test_a_fresh_log_gets_the_default_partition_count(log: Log, topic: str) -> None:
    specs = ensure_topics(log, topic + ".")
    assert specs[AGENT_ACTIONS].partitions == DEFAULT_AGENT_PARTITIONS
