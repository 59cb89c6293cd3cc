"""The consumer-group decisions of the single-host logs, made in one place.

The embedded log (`sqlite_consumer`) keeps a group in tables, changed within one write
transaction by members that may live in different processes; the in-memory log
(`memory_consumer`) keeps it in dictionaries under the log's lock. How each reads and
writes its group stays with it. What each *decides* from that state must not differ: who
is presumed dead, which partitions a member should own, what it must release and claim,
where it reads a partition it has just been given, and whether it may commit. A rule
changed on one backend only would pass the contract tests there and let the processors
behave differently on the other, so each backend reads its state, asks here, and writes
back what it was told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ordinance.streams.errors import FencedError, LogError
from ordinance.streams.log import TopicPartition


def range_assign(
    members: Sequence[tuple[str, Sequence[str]]], partitions: Mapping[str, int]
) -> dict[str, set[TopicPartition]]:
    """Kafka's range assignor: per topic, consecutive partition ranges to the
    sorted subscribed members, the first ones getting one extra."""
    out: dict[str, set[TopicPartition]] = {member: set() for member, _ in members}
    for topic, count in partitions.items():
        subscribed = sorted(m for m, topics in members if topic in topics)
        if not subscribed:
            continue
        share, extra = divmod(count, len(subscribed))
        start = 0
        for i, member in enumerate(subscribed):
            size = share + (1 if i < extra else 0)
            out[member].update(TopicPartition(topic, p) for p in range(start, start + size))
            start += size
    return out


def session_cutoff(now_ms: int, session_timeout_ms: int) -> int:
    """A member whose last heartbeat is older than this (strictly) is presumed dead: it
    leaves the group and its partitions become free to claim."""
    return now_ms - session_timeout_ms


@dataclass(frozen=True, slots=True)
class Rebalance:
    """What one member does to the group's ownership at a heartbeat.

    The member releases ``release`` and claims ``claim``; it then reads exactly
    ``owned``. A partition it should own but another member still holds is in neither:
    the holder releases it at its own next heartbeat (or dies), and a later heartbeat of
    this member claims it. So a partition never has two owners.
    """

    release: frozenset[TopicPartition]
    claim: frozenset[TopicPartition]
    owned: frozenset[TopicPartition]

    @property
    def changes_owners(self) -> bool:
        return bool(self.release or self.claim)


def plan_rebalance(
    me: str,
    members: Sequence[tuple[str, Sequence[str]]],
    partitions: Mapping[str, int],
    owners: Mapping[TopicPartition, str],
) -> Rebalance:
    """The `Rebalance` of member ``me`` among the live ``members`` (each with its
    subscribed topics, ``me`` included), given the partition count of each topic ``me``
    subscribes to and the current owner of every owned partition the backend reads."""
    desired = range_assign(members, partitions)[me]
    release = frozenset(tp for tp, owner in owners.items() if owner == me and tp not in desired)
    claim = frozenset(desired - owners.keys())
    owned = frozenset(tp for tp in desired if owners.get(tp, me) == me)
    return Rebalance(release, claim, owned)


def follow_ownership(
    positions: dict[TopicPartition, int],
    owned: frozenset[TopicPartition],
    committed: Callable[[TopicPartition], int],
) -> None:
    """Make a member's read ``positions`` cover exactly the partitions it ``owned``: it
    forgets a partition it lost and reads one it gained from ``committed`` (the group's
    committed offset, or the reset position), so it resumes where the last owner
    committed, not where it may itself have been long ago."""
    for tp in set(positions) - owned:
        del positions[tp]
    for tp in owned - set(positions):
        positions[tp] = committed(tp)


def fence_commit(
    group: str | None,
    member: str,
    offsets: Mapping[TopicPartition, int],
    owner_of: Callable[[TopicPartition], str | None] | None,
) -> str | None:
    """The group to commit ``offsets`` under, None when there is nothing to commit, or
    the error committing them must raise.

    ``owner_of`` gives the current owner of a partition, for a member of a group (that
    `subscribe`d); it is None for a consumer that was assigned its partitions by hand,
    which nothing fences. A member may commit only for partitions it still owns: one
    that lost a partition to another member gets `FencedError`, since committing would
    overwrite the new owner's progress. Every partition is checked before the caller
    writes any offset, so a fenced commit moves none.
    """
    if not offsets:
        return None
    if group is None:
        raise LogError("committing offsets needs a consumer group")
    if owner_of is not None:
        for tp in offsets:
            if owner_of(tp) != member:
                raise FencedError(f"{tp} is no longer owned by member {member}")
    return group
