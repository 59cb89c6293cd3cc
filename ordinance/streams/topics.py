"""The topics Ordinance runs on, with their explicit configurations.

Names are ``<prefix><name>`` (prefix ``ordinance.`` by default) so several
deployments can share a cluster. ``agent.actions`` and ``agent.decisions`` must
have the same partition count: the enforcer owning actions partition p writes
the decisions of p, a single writer per hash chain. ``policy.changes`` has one
partition because a policy offset is a position in one total order.
"""

from __future__ import annotations

from dataclasses import replace

from ordinance.streams.log import Log, TopicSpec

DAY_MS = 24 * 60 * 60 * 1000
DEFAULT_PREFIX = "ordinance."

POLICY_CHANGES = "policy.changes"
POLICY_ACTIVE = "policy.active"
AGENT_ACTIONS = "agent.actions"
AGENT_DECISIONS = "agent.decisions"
AGENT_APPROVALS = "agent.approvals"
AUDIT_CHECKPOINTS = "audit.checkpoints"
MONITOR_ALERTS = "monitor.alerts"


def topic_specs(prefix: str = DEFAULT_PREFIX, agent_partitions: int = 4) -> dict[str, TopicSpec]:
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
    ]
    return {spec.name: replace(spec, name=prefix + spec.name) for spec in specs}


def ensure_topics(
    log: Log, prefix: str = DEFAULT_PREFIX, agent_partitions: int = 4
) -> dict[str, TopicSpec]:
    """Create every topic (idempotent); a topic that exists with another shape
    raises `TopicConfigError` rather than being silently used."""
    specs = topic_specs(prefix, agent_partitions)
    for spec in specs.values():
        log.create_topic(spec)
    return specs


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ordinance.streams.backends import open_log

    parser = argparse.ArgumentParser(
        prog="python -m ordinance.streams.topics", description="Create Ordinance's topics."
    )
    parser.add_argument("url", help="sqlite:///path.db or kafka://host:port")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--agent-partitions", type=int, default=4)
    args = parser.parse_args(argv)
    with open_log(args.url) as log:
        for spec in ensure_topics(log, args.prefix, args.agent_partitions).values():
            retention = "forever" if spec.retention_ms is None else f"{spec.retention_ms} ms"
            print(f"{spec.name}: {spec.partitions} partitions, {spec.cleanup}, kept {retention}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
