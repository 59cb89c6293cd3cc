"""The topics Ordinance runs on, with their explicit configurations.

Names are ``<prefix><name>`` (prefix ``ordinance.`` by default) so several
deployments can share a cluster. ``agent.actions`` and ``agent.decisions`` must
have the same partition count: the enforcer owning actions partition p writes
the decisions of p, a single writer per hash chain. ``policy.changes`` has one
partition because a policy offset is a position in one total order.
"""

from __future__ import annotations

from dataclasses import replace

from ordinance.streams.errors import TopicConfigError
from ordinance.streams.log import Log, TopicSpec

DAY_MS = 24 * 60 * 60 * 1000
DEFAULT_PREFIX = "ordinance."
#: Agent topics' partition count when nobody chose one: the most enforcer
#: processes one deployment can spread over.
DEFAULT_AGENT_PARTITIONS = 4

POLICY_CHANGES = "policy.changes"
POLICY_ACTIVE = "policy.active"
AGENT_ACTIONS = "agent.actions"
AGENT_DECISIONS = "agent.decisions"
AGENT_APPROVALS = "agent.approvals"
AUDIT_CHECKPOINTS = "audit.checkpoints"
MONITOR_ALERTS = "monitor.alerts"
IDENTITY_REGISTRY = "identity.registry"


def topic_specs(
    prefix: str = DEFAULT_PREFIX, agent_partitions: int = DEFAULT_AGENT_PARTITIONS
) -> dict[str, TopicSpec]:
    """Short name -> spec. Decisions and checkpoints are the audit trail: kept
    forever; actions and approvals only as long as replay needs them."""
    specs = [
        TopicSpec(POLICY_CHANGES, 1, "delete", None),
        TopicSpec(POLICY_ACTIVE, 1, "compact"),
        TopicSpec(AGENT_ACTIONS, agent_partitions, "delete", 30 * DAY_MS),
        TopicSpec(AGENT_DECISIONS, agent_partitions, "delete", None),
        TopicSpec(AGENT_APPROVALS, agent_partitions, "delete", 30 * DAY_MS),
        TopicSpec(AUDIT_CHECKPOINTS, 1, "delete", None),
        TopicSpec(MONITOR_ALERTS, 1, "delete", 90 * DAY_MS),
        # Every registry change, kept forever and never compacted: compaction keeps a key's
        # last record, not its last accepted one, so a re-appended stale record (refused
        # while the newer one is there) would survive it and bring a revoked principal back.
        TopicSpec(IDENTITY_REGISTRY, 1, "delete", None),
    ]
    return {spec.name: replace(spec, name=prefix + spec.name) for spec in specs}


def ensure_topics(
    log: Log, prefix: str = DEFAULT_PREFIX, agent_partitions: int | None = None
) -> dict[str, TopicSpec]:
    """Create every topic (idempotent); a topic that exists with another shape
    raises `TopicConfigError` rather than being silently used.

    Without ``agent_partitions`` the count is whatever ``agent.actions`` already
    has (so every process of a deployment adopts the count it was created with),
    or `DEFAULT_AGENT_PARTITIONS` on a log that has no topics yet."""
    if agent_partitions is None:
        agent_partitions = existing_agent_partitions(log, prefix) or DEFAULT_AGENT_PARTITIONS
    specs = topic_specs(prefix, agent_partitions)
    for spec in specs.values():
        log.create_topic(spec)
    return specs


def existing_agent_partitions(log: Log, prefix: str = DEFAULT_PREFIX) -> int | None:
    """Partition count of an existing ``agent.actions``, or None if there is none yet."""
    try:
        return len(log.partitions(prefix + AGENT_ACTIONS))
    except TopicConfigError:
        return None
