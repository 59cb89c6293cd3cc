"""``policy at T --agent ID``: who an agent was at T, as its partition's enforcer knew it
(docs/replay.md)."""

from __future__ import annotations

from typing import Any

from ordinance.commands.output import console


def agent_at(source: Any, agent_id: str, at: Any) -> dict[str, Any]:
    """The agent as its partition's enforcer knew it at ``at``: the decisions partition
    folded (takeover trust roots and IdentityUpdate records, re-verified by the same fold
    the enforcer uses) up to T, and the agent's last decision up to T with its key id."""
    from ordinance.processors.enforcer_state import PartitionState
    from ordinance.replay.times import iso
    from ordinance.streams.partitioner import partition_for
    from ordinance.streams.serde import Decoded, Serde

    partitions = sorted(source.partitions("agent.decisions"))
    partition = partition_for(agent_id.encode(), len(partitions)) if partitions else 0
    state, serde = PartitionState(partition), Serde()
    last: dict[str, Any] | None = None
    for record in source.read("agent.decisions", partition):
        decoded = serde.decode_record(record)
        if not isinstance(decoded, Decoded):
            continue
        datum = decoded.value
        when = datum.get("evaluated_at", datum.get("at"))
        if when is not None and when > at:
            break
        state.fold(decoded.name, datum, record.offset)
        if decoded.name == "Decision" and datum["agent_id"] == agent_id:
            last = datum
    principal = state.identity.registry.get(agent_id) if state.identity is not None else None
    return {
        "id": agent_id,
        "partition": partition,
        "identity_enforced": state.identity is not None,
        "principal": principal.to_json() if principal is not None else None,
        "last_decision": None
        if last is None
        else {
            "request_id": last["request_id"],
            "evaluated_at": iso(last["evaluated_at"]),
            "effect": last["effect"],
            "code": last["code"],
            "key_id": last.get("key_id"),
        },
    }


def print_agent(agent: dict[str, Any]) -> None:
    out = console()
    name = f"agent {agent['id']} (decisions partition {agent['partition']})"
    if not agent["identity_enforced"]:
        out.print(f"{name}: identity was not enforced there: roles were what requests claimed")
    elif agent["principal"] is None:
        out.print(f"{name}: not in the registry its enforcer knew: intents were unknown_agent")
    else:
        p = agent["principal"]
        keys = ", ".join(
            f"{k['key_id']} ({k['not_before']} – {k['not_after'] or 'open'})" for k in p["keys"]
        )
        out.print(
            f"{name}: {p['status']}, roles {', '.join(p['roles']) or '-'}, attributes "
            f"{p['attributes'] or '-'}, version {p['version']}; keys {keys}",
            markup=False,
        )
    last = agent["last_decision"]
    if last is not None:
        out.print(
            f"last decision up to then: {last['request_id']} at {last['evaluated_at']}: "
            f"{last['effect']} ({last['code']}), signed with key {last['key_id'] or '-'}",
            markup=False,
        )
