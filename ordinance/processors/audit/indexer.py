"""The audit indexer: ``agent.decisions`` folded into a SQLite index for ``audit query``.

One row per Decision (control records are skipped, their offsets still consumed), plus one
row per rule id in ``decision_rules`` so a policy or rule filter is an index search. The
log offsets indexed so far are written in the same transaction as the rows: after a crash
the indexer resumes exactly where the last committed batch ended, and a record can never
be indexed twice: a batch skips what lies below the stored positions (so two indexers on
one file are harmless), and a row's primary key is derived from its partition and offset.
The index holds nothing the log does not: delete the file and index again to rebuild it.

A decision of a rollout (docs/lifecycle.md) also records its canary ``arm`` and the shadow
bundle's verdict (``shadow_*``: bundle, effect, code, rule ids; null when there was none).
Their indexes are partial — only rows with an arm or a shadow verdict are in them — so a
log without rollouts costs the indexer nothing more than the columns.

A fenced write (`fence.py`: a Decision by an enforcer other than the owner named by the
partition's latest takeover marker) is indexed, since it is in the log and an auditor
investigating a zombie enforcer asks for it, but it was never acted on (the owner decided
that request again), so its row names the owner that fenced it (``fenced_owner``) and
queries leave it out unless asked. Each partition's owner is stored with its position, in
the same transaction: a resumed indexer judges the next record as a fresh one would.

Times are integer microseconds since the epoch, UTC. Queries filter on ``evaluated_at`` —
the enforcer's clock, which is what an auditor asks about ("what was decided between T1
and T2"); ``event_time`` is the agent's clock and is only stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ordinance.closing import Closing
from ordinance.errors import OrdinanceError
from ordinance.processors.audit.chain import GENESIS, record_hash
from ordinance.processors.audit.index_rows import DecisionRow, IndexReport, row_id
from ordinance.processors.audit.query import (  # the schema version lives with the queries,
    SCHEMA_VERSION,  # which check it too (`audit query` opens no log, loads no Avro)
    SHADOW_DISAGREES_EXPR,
    schema_mismatch,
    split_rule_id,
)
from ordinance.streams import ConsumedRecord
from ordinance.streams.sqlite_store import write_txn

# DecisionRow and IndexReport live in index_rows; callers import them from here.
__all__ = [
    "AuditIndex",
    "DecisionRow",
    "Head",
    "IndexFileError",
    "IndexReport",
    "record_digest",
    "remove_index",
    "row_id",
]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    last_offset INTEGER,
    last_digest BLOB,
    owner TEXT  -- the partition's owner at next_offset (`fence.py`); NULL: no marker yet
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    effect TEXT NOT NULL,
    code TEXT NOT NULL,
    rule_ids TEXT NOT NULL,
    bundle_id TEXT,
    policy_offset INTEGER,
    event_time INTEGER,
    evaluated_at INTEGER NOT NULL,
    enforcer_id TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{{}}',
    arm TEXT,
    shadow_bundle_id TEXT,
    shadow_effect TEXT,
    shadow_code TEXT,
    shadow_rule_ids TEXT,
    fenced_owner TEXT  -- a fenced write: the partition's owner when it landed
);
CREATE INDEX IF NOT EXISTS decisions_agent_time ON decisions (agent_id, evaluated_at);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (evaluated_at);
CREATE INDEX IF NOT EXISTS decisions_effect_time ON decisions (effect, evaluated_at);
CREATE INDEX IF NOT EXISTS decisions_arm_time ON decisions (arm, evaluated_at)
    WHERE arm IS NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_shadow_time ON decisions (shadow_bundle_id, evaluated_at)
    WHERE shadow_bundle_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_shadow_disagrees_time
    ON decisions ({SHADOW_DISAGREES_EXPR}, evaluated_at) WHERE shadow_effect IS NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_fenced_time ON decisions (evaluated_at)
    WHERE fenced_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS decision_rules (
    policy TEXT NOT NULL,
    rule TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    decision INTEGER NOT NULL,
    PRIMARY KEY (policy, evaluated_at, rule, decision)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decision_rules_rule_time ON decision_rules (rule, evaluated_at);
"""

# rule_ids is kept as text (ids joined by newlines, which an id cannot contain) so output
# needs no join; decision_rules exists only for filtering.
_INSERT_DECISION = f"INSERT INTO decisions VALUES ({', '.join('?' * 21)})"
_INSERT_RULE = "INSERT INTO decision_rules VALUES (?, ?, ?, ?)"


class IndexFileError(OrdinanceError):
    """The index file cannot be used with this log (other topic, newer schema)."""


class Head(NamedTuple):
    offset: int
    digest: bytes


def record_digest(record: ConsumedRecord) -> bytes:
    """What the index remembers of the last record it read, to know on resuming that the
    log is still the same one: the record's chain hash from a zero head (its bytes only)."""
    return record_hash(GENESIS, record.key, record.value)


class AuditIndex(Closing):
    """The index file. Writes go through `write_batch`, one transaction per call."""

    def __init__(self, path: Path | str, *, topic: str) -> None:
        self.path = Path(path)
        self.topic = topic
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so
        # rows and positions can never be committed apart.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL: `audit query` reads while a following indexer writes. synchronous=NORMAL
        # may lose the last batch on power loss, never consistency: rows and positions
        # go together, and the log still has the records.
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA cache_size=-65536")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self._refuse_foreign_database()
        # Before the schema: on an older index, creating an index on a column it does not
        # have would fail with "no such column" instead of naming the version.
        self._refuse_other_version()
        self.conn.executescript(_SCHEMA)
        self._check_meta()

    def _refuse_foreign_database(self) -> None:
        """``--index`` naming the log's own database (or any other) must not add tables
        to it: a file with tables is an index only if it has ours."""
        if not _is_index_or_empty(self.conn):
            self.conn.close()
            raise IndexFileError(f"{self.path} is a database but not an audit index")

    def _refuse_other_version(self) -> None:
        tables = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchall()
        if tables:
            self._check_meta()

    def _check_meta(self) -> None:
        with self.transaction():
            found = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if not found:
                self.conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("topic", self.topic)],
                )
                return
        if found.get("schema_version") != str(SCHEMA_VERSION):
            self.conn.close()
            raise IndexFileError(schema_mismatch(self.path, found.get("schema_version")))
        if found.get("topic") != self.topic:
            self.conn.close()
            raise IndexFileError(
                f"{self.path} indexes topic {found.get('topic')!r}, not {self.topic!r}"
            )

    def transaction(self) -> write_txn:
        return write_txn(self.conn)

    def positions(self) -> dict[int, int]:
        """Next offset to index per partition (absent: from the beginning)."""
        return {p: o for p, o in self.conn.execute("SELECT partition, next_offset FROM positions")}

    def heads(self) -> dict[int, Head]:
        """The last record read per partition: offset and `record_digest`."""
        rows = self.conn.execute(
            "SELECT partition, last_offset, last_digest FROM positions"
            " WHERE last_offset IS NOT NULL"
        )
        return {p: Head(o, bytes(d)) for p, o, d in rows}

    def owners(self) -> dict[int, str]:
        """Each partition's owner at its position (absent: no takeover marker read)."""
        rows = self.conn.execute("SELECT partition, owner FROM positions WHERE owner IS NOT NULL")
        return {p: str(o) for p, o in rows}

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def write_batch(
        self,
        rows: Iterable[DecisionRow],
        positions: Mapping[int, int],
        heads: Mapping[int, Head] | None = None,
        owners: Mapping[int, str | None] | None = None,
    ) -> int:
        """Insert ``rows`` and move ``positions`` (and the ``heads`` read up to them, and
        the partitions' ``owners`` there) in one transaction; returns rows written.

        Idempotent, so two indexers on one file (a following one, and a query that
        refreshes first) cannot double-index: rows below the index's position for their
        partition are already there and are skipped, and a position only moves forward."""
        batch = list(rows)
        with self.transaction():
            current = self.positions()
            decisions: list[tuple[Any, ...]] = []
            rules: list[tuple[str, str, int, int]] = []
            for r in batch:
                if r.offset < current.get(r.partition, 0):
                    continue
                rid = row_id(r.partition, r.offset)
                decisions.append(
                    (
                        rid,
                        r.partition,
                        r.offset,
                        r.request_id,
                        r.agent_id,
                        r.tool,
                        r.effect,
                        r.code,
                        "\n".join(r.rule_ids),
                        r.bundle_id,
                        r.policy_offset,
                        r.event_time,
                        r.evaluated_at,
                        r.enforcer_id,
                        r.args,
                        r.arm,
                        r.shadow_bundle_id,
                        r.shadow_effect,
                        r.shadow_code,
                        None if r.shadow_rule_ids is None else "\n".join(r.shadow_rule_ids),
                        r.fenced_owner,
                    )
                )
                # A rule named twice in one decision is one lookup row (the key refuses two).
                rules.extend(
                    (*split_rule_id(rule), r.evaluated_at, rid)
                    for rule in dict.fromkeys(r.rule_ids)
                )
            moved = sorted((p, o) for p, o in positions.items() if o > current.get(p, 0))
            self.conn.executemany(_INSERT_DECISION, decisions)
            self.conn.executemany(_INSERT_RULE, rules)
            self.conn.executemany(
                "INSERT INTO positions (partition, next_offset) VALUES (?, ?)"
                " ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
                moved,
            )
            self.conn.executemany(
                "UPDATE positions SET last_offset = ?, last_digest = ?"
                " WHERE partition = ? AND coalesce(last_offset, -1) < ?",
                [(h.offset, h.digest, p, h.offset) for p, h in (heads or {}).items()],
            )
            # The owner is the one at the position just written: only where this batch
            # moved it (an indexer behind another must not put back an older owner).
            self.conn.executemany(
                "UPDATE positions SET owner = ? WHERE partition = ?",
                [(owners[p], p) for p, _ in moved if owners is not None and p in owners],
            )
        return len(decisions)

    def close(self) -> None:
        # Statistics let the planner choose between the agent, time and rule indexes;
        # analysis_limit bounds what that costs on a large index.
        try:
            self.conn.execute("PRAGMA analysis_limit=1000")
            self.conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # another connection holds the write lock; statistics can wait
        self.conn.close()


def _is_index_or_empty(conn: sqlite3.Connection) -> bool:
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return not tables or {"meta", "positions", "decisions"} <= tables


def remove_index(path: Path | str) -> bool:
    """Delete an index file with its WAL and shared-memory files (a WAL left beside a new
    file of the same name would be replayed into it). Refuses a file that is not an index,
    so a mistyped path never deletes the log. True if there was something to delete."""
    path = Path(path)
    if path.exists():
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                is_index = _is_index_or_empty(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            is_index = False
        if not is_index:
            raise IndexFileError(f"{path} is not an audit index; not deleting it")
    found = False
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{path}{suffix}")
        found |= target.exists()
        target.unlink(missing_ok=True)
    return found
