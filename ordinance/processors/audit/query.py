"""Questions to the audit index: which decisions, for whom, when, under which rules.

Every filter is a condition on an indexed column or an ``IN`` over ``decision_rules``
restricted to the same time range, so an agent + time or a time-range question is an index
search (the tests check the plans). Rollouts (docs/lifecycle.md) have their own partial
indexes, which hold only the decisions of a canary (``arm``) or with a shadow verdict
(``shadow_*``): a log without rollouts pays nothing for them. Results come in
decision-time order (``evaluated_at``, then log position), times in ISO-8601 UTC.

Fenced writes (a zombie enforcer's decisions after another's takeover marker, `fence.py`)
are indexed with the owner that fenced them (``fenced_owner``) but were never acted on, so
every question leaves them out unless it asks (``fenced``: ``include`` or ``only``); the
partial index ``decisions_fenced_time`` holds only them.

This module needs only SQLite (the indexer imports its time and rule-id helpers from
here, not the other way round), so ``audit query`` starts without loading the log or Avro.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ordinance import timeargs
from ordinance.errors import OrdinanceError

# The index file's layout; an index of another version is refused with "delete the file
# and index again" (it is derived data). Here, not in the indexer, so `audit query` can
# check it without loading the log.
# 2: the decision's (possibly masked) arguments; 3: arm and shadow verdict; 4: fenced writes
# flagged, and each partition's owner kept with its position (an index of 3 counts them).
SCHEMA_VERSION = 4
EFFECTS = ("allow", "deny", "require_approval")
ARMS = ("canary", "control")
#: Which decisions a query takes by whether they were fenced: the default leaves them out.
FENCED = ("exclude", "include", "only")
BUNDLE_ID_SCHEME = "sha256:"
COLUMNS = (
    "evaluated_at",
    "agent_id",
    "tool",
    "effect",
    "code",
    "rule_ids",
    "request_id",
    "partition",
    "offset",
    "bundle_id",
    "policy_offset",
    "arm",
    "shadow_bundle_id",
    "shadow_effect",
    "shadow_code",
    "shadow_rule_ids",
    "event_time",
    "enforcer_id",
    "args",
    "fenced_owner",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM decisions"
# The shadow verdict differs from the enforced effect. Written exactly as the expression of
# the index decisions_shadow_disagrees_time, with that index's condition beside it: SQLite
# uses an expression index (and a partial one) only for the very same terms.
SHADOW_DISAGREES_EXPR = "(shadow_effect <> effect)"
SHADOW_DISAGREES = f"shadow_effect IS NOT NULL AND {SHADOW_DISAGREES_EXPR} = 1"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def micros(value: dt.datetime) -> int:
    """Exact microseconds since the epoch (float seconds would round); naive = UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _MICRO


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


def split_rule_id(rule_id: str) -> tuple[str, str]:
    """``"policy-id/rule-id"`` (ruleset.py) -> (policy, rule). Ids are ``[a-z0-9._-]``, so
    the first slash separates them; an id without one (written by something other than a
    compiled ruleset) is a rule of no policy."""
    policy, slash, rule = rule_id.partition("/")
    return (policy, rule) if slash else ("", rule_id)


class QueryError(OrdinanceError):
    """A query that cannot be asked (bad time, unknown effect)."""


def parse_time(text: str, now: dt.datetime | None = None) -> int:
    """`ordinance.timeargs.parse_time` (every command reads times the same way), as
    microseconds UTC."""
    try:
        return micros(timeargs.parse_time(text, now=now))
    except timeargs.TimeArgumentError as exc:
        raise QueryError(str(exc)) from None


def iso(value: int | None) -> str | None:
    if value is None:
        return None
    return from_micros(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class QueryFilter:
    """All conditions hold together. ``since`` inclusive, ``until`` exclusive (µs UTC).

    ``rule`` is ``policy/rule`` or a bare rule id; a bare one with ``policy`` names the
    rule ``policy/rule``. ``tool`` is a glob (``payments.*``), matched against the
    canonical (case-folded) tool name, so it is case-folded too. ``request`` is not
    indexed (an index on random request ids nearly halved the indexer's insert rate): on
    its own it reads the whole table, with an agent or a time range only their rows."""

    agent: str | None = None
    since: int | None = None
    until: int | None = None
    policy: str | None = None
    rule: str | None = None
    effect: str | None = None
    tool: str | None = None
    request: str | None = None
    # (argument name, values any of which it may have): a masked argument is asked for by
    # its clear value and its mask. Not indexed: it narrows the rows the others select.
    args: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Rollouts: the canary arm that decided; decisions whose shadow verdict differs from
    # the enforced effect; the shadow bundle, by id prefix (``sha256:8d38`` or ``8d38``).
    arm: str | None = None
    shadow_disagrees: bool = False
    shadow_bundle: str | None = None
    # Fenced writes (never acted on) are left out unless asked for: "include" or "only".
    fenced: str = "exclude"
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.effect is not None and self.effect not in EFFECTS:
            raise QueryError(f"effect must be one of {', '.join(EFFECTS)}, not {self.effect!r}")
        if self.arm is not None and self.arm not in ARMS:
            raise QueryError(f"arm must be one of {', '.join(ARMS)}, not {self.arm!r}")
        if self.fenced not in FENCED:
            raise QueryError(f"fenced must be one of {', '.join(FENCED)}, not {self.fenced!r}")
        if self.shadow_bundle is not None and self.shadow_bundle in ("", BUNDLE_ID_SCHEME):
            raise QueryError("a shadow bundle prefix needs at least one digit of the id")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise QueryError(f"--since {iso(self.since)} is not before --until {iso(self.until)}")
        if self.limit is not None and self.limit < 0:
            raise QueryError("limit must be >= 0")


def _time_range(column: str, f: QueryFilter, params: list[Any]) -> list[str]:
    out = []
    if f.since is not None:
        out.append(f"{column} >= ?")
        params.append(f.since)
    if f.until is not None:
        out.append(f"{column} < ?")
        params.append(f.until)
    return out


def bundle_prefix_range(prefix: str) -> tuple[str, str | None]:
    """The ids starting with ``prefix`` (``sha256:`` added when missing) are those in
    [low, high): a range an index can search, where ``LIKE``/``GLOB`` could not be trusted
    to be one. ``high`` is None when no string bounds it (a prefix ending in U+10FFFF)."""
    low = prefix if prefix.startswith(BUNDLE_ID_SCHEME) else BUNDLE_ID_SCHEME + prefix
    last = ord(low[-1])
    # UTF-8 bytes sort like code points, so the successor of the last character bounds
    # every extension of the prefix (surrogates cannot occur in ids read from Avro).
    if last >= 0x10FFFF:
        return low, None
    return low, low[:-1] + chr(last + 1 + (0x800 if last + 1 == 0xD800 else 0))


def _rule_conditions(f: QueryFilter) -> list[dict[str, str]]:
    """Each dict is one ``decision_rules`` lookup that must find the decision."""
    conditions: list[dict[str, str]] = []
    policy_used = False
    if f.rule is not None:
        if "/" in f.rule:
            policy, rule = split_rule_id(f.rule)
            conditions.append({"policy": policy, "rule": rule})
        elif f.policy is not None:
            conditions.append({"policy": f.policy, "rule": f.rule})
            policy_used = True
        else:
            conditions.append({"rule": f.rule})
    if f.policy is not None and not policy_used:
        conditions.append({"policy": f.policy})
    return conditions


def build_sql(f: QueryFilter) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.agent is not None:
        where.append("agent_id = ?")
        params.append(f.agent)
    if f.effect is not None:
        where.append("effect = ?")
        params.append(f.effect)
    if f.request is not None:
        where.append("request_id = ?")
        params.append(f.request)
    if f.tool is not None:
        where.append("tool GLOB ?")
        params.append(f.tool.casefold())
    if f.arm is not None:
        where.append("arm = ?")
        params.append(f.arm)
    if f.shadow_disagrees:
        where.append(SHADOW_DISAGREES)
    if f.fenced == "exclude":
        where.append("fenced_owner IS NULL")
    elif f.fenced == "only":
        where.append("fenced_owner IS NOT NULL")  # the condition of decisions_fenced_time
    if f.shadow_bundle is not None:
        low, high = bundle_prefix_range(f.shadow_bundle)
        where.append("shadow_bundle_id >= ?")
        params.append(low)
        if high is not None:
            where.append("shadow_bundle_id < ?")
            params.append(high)
    for name, values in f.args:
        marks = ", ".join("?" * len(values))
        where.append(f"CAST(json_extract(args, ?) AS TEXT) IN ({marks})")
        params.append(f'$."{name}"')
        params.extend(values)
    where.extend(_time_range("evaluated_at", f, params))
    for condition in _rule_conditions(f):
        # The time range is repeated inside: the lookup then reads one policy's (or
        # rule's) rows in that range, not all of them since the beginning.
        inner = [f"{column} = ?" for column in condition]
        params.extend(condition.values())
        inner.extend(_time_range("evaluated_at", f, params))
        where.append(f"id IN (SELECT decision FROM decision_rules WHERE {' AND '.join(inner)})")
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY evaluated_at, id"
    if f.limit is not None:
        sql += " LIMIT ?"
        params.append(f.limit)
    return sql, params


def connect(path: str) -> sqlite3.Connection:
    """Read-only: a query never creates or changes an index (a typo in the path is an
    error, not a new empty index that answers every question with nothing)."""
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM decisions LIMIT 1")
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        raise QueryError(
            f"{path}: not an audit index ({exc}); build it with `audit index`"
        ) from exc
    if found is None:
        conn.close()
        raise QueryError(
            f"{path}: not an audit index (no schema version); build it with `audit index`"
        )
    # Before any question: an older layout would answer with "no such column".
    if found[0] != str(SCHEMA_VERSION):
        conn.close()
        raise QueryError(schema_mismatch(path, found[0]))
    return conn


def schema_mismatch(path: Path | str, found: str | None) -> str:
    return (
        f"{path}: index schema {found}, this Ordinance reads {SCHEMA_VERSION}; "
        "delete the file and index again (`audit index --rebuild`)"
    )


def query(conn: sqlite3.Connection, f: QueryFilter) -> Iterator[dict[str, Any]]:
    sql, params = build_sql(f)
    for row in conn.execute(sql, params):
        yield _as_dict(row)


def _as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    out["rule_ids"] = _split_rules(out["rule_ids"])
    shadow_rules = out["shadow_rule_ids"]  # None: no shadow verdict; []: one naming no rule
    out["shadow_rule_ids"] = None if shadow_rules is None else _split_rules(shadow_rules)
    out["evaluated_at"] = iso(out["evaluated_at"])
    out["event_time"] = iso(out["event_time"])
    out["args"] = json.loads(out["args"])
    return out


def _split_rules(text: str) -> list[str]:
    return text.split("\n") if text else []


def explain(conn: sqlite3.Connection, f: QueryFilter) -> list[str]:
    """SQLite's plan for the query, one line per step (``SEARCH ... USING INDEX``)."""
    sql, params = build_sql(f)
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A header, then one line per decision; several rule ids are joined by ``;``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([_csv_cell(c, row[c]) for c in COLUMNS])
        count += 1
    return count


def _csv_cell(column: str, value: Any) -> Any:
    if column in ("rule_ids", "shadow_rule_ids") and value is not None:
        value = ";".join(value)
    elif column == "args":
        value = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        # An agent id like "=HYPERLINK(...)" must stay text when a reviewer opens the CSV
        # in a spreadsheet (CSV injection); the quote is the OWASP-recommended escape.
        return "'" + value
    return value


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
