"""Fenced writes: records an enforcer wrote into a decisions partition it no longer owned
(docs/audit.md, "Fenced writes"; docs/guarantees.md, "Zombie writers").

A partition belongs to the enforcer of its latest ``EnforcerTakeover`` record. An
enforcer frozen past its group session, whose partition was taken over meanwhile, may
resume and write on before it learns it lost it. Its records name it (``enforcer_id``),
and it never saw the newer marker, so they link to a chain head the owner has moved past.
Such a record is *fenced*: the fold leaves it out (`PartitionState.fold`), the chain the
owner continues skips it, the client does not take it as an answer, and ``audit verify``
lists it instead of reporting the broken link as tampering.

The rule is on the decoded writer alone (`fenced_write`), so the fold and replay need no
chain hashes to apply it. Readers of raw bytes (the audit, the checkpointer) decode only
records without chain links (the markers) and records whose link breaks the chain: on a
log as enforcers write it a fenced write always breaks the link, because its writer's
head predates a marker it never read (`Ownership`).
"""

from __future__ import annotations

from typing import Any

from ordinance.streams.serde import Decoded, Serde

#: The records an owner writes into its partition's chain; each names its writer
#: (``enforcer_id``). The takeover marker is not among them: it is how ownership changes.
OWNED_WRITES = frozenset({"Decision", "RulesetSwap", "IdentityUpdate"})
TAKEOVER = "EnforcerTakeover"


def fenced_write(owner: str | None, name: str | None, datum: dict[str, Any]) -> bool:
    """Whether a record is a write by an enforcer other than the partition's ``owner``
    (the writer of the latest takeover marker before it). No owner (a log older than
    takeover markers, or one whose marker retention removed): nothing can be judged."""
    return owner is not None and name in OWNED_WRITES and datum.get("enforcer_id") != owner


class Ownership:
    """The owner of one decisions partition, followed over its raw records."""

    def __init__(self, serde: Serde) -> None:
        self.serde = serde
        self.owner: str | None = None

    def unlinked(self, value: bytes | None) -> None:
        """A record without chain links: a takeover marker makes its writer the owner."""
        decoded = self.serde.decode(value, expect={TAKEOVER})
        if isinstance(decoded, Decoded):
            self.owner = decoded.value.get("enforcer_id")

    def fenced_writer(self, value: bytes | None) -> str | None:
        """The writer of a record whose link breaks the chain, if the record is a fenced
        write; None when it is not (then the break is a finding)."""
        if self.owner is None:
            return None
        decoded = self.serde.decode(value, expect=OWNED_WRITES)
        if isinstance(decoded, Decoded) and fenced_write(self.owner, decoded.name, decoded.value):
            return str(decoded.value.get("enforcer_id"))
        return None
