"""`audit query` answers: every filter alone and combined, against an oracle that reads the
decisions log itself; the plans SQLite chooses (index searches, never a table scan, for
agent + time, time, effect + time, policy/rule + time); time parsing."""

from __future__ import annotations

import datetime as dt
import io
import random
import sqlite3
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from ordinance.processors.audit.index_follow import index_log
from ordinance.processors.audit.indexer import AuditIndex, DecisionRow
from ordinance.processors.audit.query import (
    COLUMNS,
    QueryError,
    QueryFilter,
    connect,
    explain,
    iso,
    parse_time,
    query,
    split_rule_id,
    write_csv,
)
from ordinance.streams import open_log

from .index_helpers import build_log, log_decisions, sqlite_url


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("audit-query")
    url = sqlite_url(directory)
    build_log(url, rounds=6)
    with open_log(url) as log:
        index_log(log, directory / "index.db")
    expected, _ = log_decisions(url)
    return directory / "index.db", expected


def oracle(decisions: list[dict[str, Any]], f: QueryFilter) -> list[str]:
    """The filter semantics, stated once more in plain Python over the log's decisions."""

    def rules_match(d: dict[str, Any]) -> bool:
        pairs = [split_rule_id(r) for r in d["rule_ids"]]
        if f.rule is not None:
            if "/" in f.rule:
                want = split_rule_id(f.rule)
            else:
                want = (f.policy, f.rule) if f.policy is not None else (None, f.rule)
            if not any(want[0] in (None, p) and want[1] == r for p, r in pairs):
                return False
            if f.policy is not None and "/" not in f.rule:
                return True
        return f.policy is None or any(p == f.policy for p, _ in pairs)

    out = [
        d["request_id"]
        for d in decisions
        if (f.agent is None or d["agent_id"] == f.agent)
        and (f.since is None or d["evaluated_at"] >= f.since)
        and (f.until is None or d["evaluated_at"] < f.until)
        and (f.effect is None or d["effect"] == f.effect)
        and (f.tool is None or fnmatchcase(d["tool"], f.tool.casefold()))
        and (f.request is None or d["request_id"] == f.request)
        and rules_match(d)
    ]
    return out[: f.limit] if f.limit is not None else out


def cases(decisions: list[dict[str, Any]]) -> list[QueryFilter]:
    times = [d["evaluated_at"] for d in decisions]
    t1, t2 = times[len(times) // 4], times[3 * len(times) // 4]
    return [
        QueryFilter(agent="billing-bot"),
        QueryFilter(agent="files-bot", since=t1, until=t2),
        QueryFilter(since=t1),
        QueryFilter(until=t2),
        QueryFilter(since=t1, until=t2, effect="deny"),
        QueryFilter(effect="require_approval"),
        QueryFilter(policy="web-fetch"),
        QueryFilter(policy="payments-guardrails", since=t1, until=t2),
        QueryFilter(rule="payments-guardrails/block-sanctioned"),
        QueryFilter(rule="metadata", policy="web-fetch"),
        QueryFilter(rule="small-ok"),
        QueryFilter(rule="payments-guardrails/small-ok", policy="web-fetch"),  # both: none
        QueryFilter(tool="fs.*"),
        QueryFilter(tool="PAYMENTS.TRANSFER"),  # canonical tool names are case-folded
        QueryFilter(tool="*.fetch", effect="deny", since=t1),
        QueryFilter(agent="billing-2", effect="allow", policy="payments-guardrails"),
        QueryFilter(agent="nobody"),
        QueryFilter(since=t1, limit=5),
        QueryFilter(request="q2-1"),
        QueryFilter(request="q3-4", agent="files-bot", since=t1),
        QueryFilter(request="q3-4", agent="billing-bot"),  # another agent's request: none
        QueryFilter(),
    ]


def test_every_filter_agrees_with_the_log(indexed: tuple[Path, list[dict[str, Any]]]) -> None:
    path, decisions = indexed
    conn = connect(str(path))
    narrowing = 0
    for f in cases(decisions):
        got = [row["request_id"] for row in query(conn, f)]
        assert got == oracle(decisions, f), f
        narrowing += 0 < len(got) < len(decisions)
    assert narrowing >= 16  # most cases cut the log to a proper, non-empty subset


def test_known_answers(indexed: tuple[Path, list[dict[str, Any]]]) -> None:
    """A few answers fixed by the example policies, so oracle and index cannot be wrong
    together."""
    path, decisions = indexed
    conn = connect(str(path))
    sanctioned = list(query(conn, QueryFilter(rule="payments-guardrails/block-sanctioned")))
    assert [r["request_id"] for r in sanctioned] == [f"q{i}-1" for i in range(6)]
    assert {(r["agent_id"], r["effect"], r["tool"]) for r in sanctioned} == {
        ("billing-bot", "deny", "payments.transfer")
    }
    metadata = list(query(conn, QueryFilter(policy="web-fetch", rule="metadata")))
    assert [r["rule_ids"] for r in metadata] == [["web-fetch/metadata", "web-fetch/plain-http"]] * 6
    approvals = list(query(conn, QueryFilter(effect="require_approval", agent="billing-2")))
    assert len(approvals) == 6
    assert len(list(query(conn, QueryFilter()))) == len(decisions) == 54


def test_rows_carry_every_field_and_iso_times(indexed: tuple[Path, list[dict[str, Any]]]) -> None:
    path, decisions = indexed
    conn = connect(str(path))
    rows = list(query(conn, QueryFilter()))
    for row, d in zip(rows, decisions, strict=True):
        assert row == {
            **d,
            "evaluated_at": iso(d["evaluated_at"]),
            "event_time": iso(d["event_time"]),
            "fenced_owner": None,  # no zombie writer on this log
        }
    assert rows[0]["evaluated_at"].endswith("Z")
    assert dt.datetime.fromisoformat(rows[0]["evaluated_at"]).tzinfo == dt.UTC


def test_query_never_creates_an_index(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="not an audit index"):
        connect(str(tmp_path / "typo.db"))
    assert not (tmp_path / "typo.db").exists()


# -- plans ------------------------------------------------------------------------------


SHADOWS = ("sha256:ab" + "0" * 62, "sha256:cd" + "0" * 62)


@pytest.fixture(scope="module")
def large_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20k synthetic decisions of 200 agents over ~5.5 hours: big enough that a scan would
    cost the planner something. A canary runs for the second and a shadow rollout for the
    fourth hour (one shadow bundle after another), as on a real log: most decisions have
    neither."""
    path = tmp_path_factory.mktemp("audit-plans") / "index.db"
    rng = random.Random(5)
    rows = []
    for i in range(20_000):
        effect = rng.choice(["allow"] * 8 + ["deny", "require_approval"])
        rules = () if rng.random() < 0.2 else (f"policy-{rng.randrange(10)}/rule-{i % 7}",)
        rollout: dict[str, Any] = {}
        if 3600 <= i < 7200:
            rollout["arm"] = rng.choice(["canary", "control", "control", "control"])
        elif 10800 <= i < 14400:
            disagrees = rng.random() < 0.1
            rollout.update(
                shadow_bundle_id=SHADOWS[i >= 12600],
                shadow_effect=("deny" if effect != "deny" else "allow") if disagrees else effect,
                shadow_code="matched",
                shadow_rule_ids=("candidate/r",) if disagrees else rules,
            )
        rows.append(
            DecisionRow(
                i % 4, i // 4, f"r{i}", f"agent-{rng.randrange(200)}", "payments.transfer",
                effect, "matched", rules, "b", 0, None, 1_000_000 * i, "e", **rollout,
            )
        )  # fmt: skip
    with AuditIndex(path, topic="t") as index:
        index.write_batch(rows, {p: 5000 for p in range(4)})
    return path


HOUR = 3_600_000_000
PLANS = [
    (QueryFilter(agent="agent-7", since=HOUR, until=2 * HOUR), "decisions_agent_time"),
    (QueryFilter(agent="agent-7"), "decisions_agent_time"),
    (QueryFilter(since=HOUR, until=2 * HOUR), "decisions_time"),
    (QueryFilter(since=HOUR), "decisions_time"),
    (QueryFilter(since=HOUR, until=2 * HOUR, effect="deny"), "decisions_effect_time"),
    (QueryFilter(since=HOUR, until=2 * HOUR, policy="policy-3"), "decision_rules"),
    (QueryFilter(since=HOUR, until=2 * HOUR, rule="rule-3"), "decision_rules_rule_time"),
    (QueryFilter(agent="agent-7", since=HOUR, until=2 * HOUR, tool="pay*", effect="deny"), ""),
    (QueryFilter(agent="agent-7", request="r77"), "decisions_agent_time"),
    (QueryFilter(arm="canary"), "decisions_arm_time"),
    (QueryFilter(arm="control", since=HOUR, until=2 * HOUR), "decisions_arm_time"),
    (QueryFilter(shadow_disagrees=True), "decisions_shadow_disagrees_time"),
    (QueryFilter(shadow_disagrees=True, since=3 * HOUR), "decisions_shadow_disagrees_time"),
    (QueryFilter(shadow_bundle="ab"), "decisions_shadow_time"),
    (QueryFilter(shadow_bundle="sha256:cd0", since=HOUR), "decisions_shadow_time"),
    # Either rollout index will do; neither may be a scan.
    (QueryFilter(shadow_bundle="cd", shadow_disagrees=True), "decisions_shadow_"),
    (QueryFilter(arm="canary", effect="deny", since=HOUR, until=2 * HOUR), ""),
    (QueryFilter(shadow_disagrees=True, agent="agent-7"), ""),
]


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_plans_search_indexes_and_never_scan(large_index: Path, analyzed: bool) -> None:
    conn = connect(str(large_index))
    if analyzed:
        conn.close()
        with sqlite3.connect(large_index) as rw:
            rw.execute("ANALYZE")  # statistics must not talk the planner into a scan
        conn = connect(str(large_index))
    for f, index_name in PLANS:
        plan = explain(conn, f)
        assert not [step for step in plan if step.startswith("SCAN")], (f, plan)
        assert index_name in " ".join(plan), (f, plan)
    # The test can fail: a filter on a column with no index is a scan, and is reported so.
    assert any(step.startswith("SCAN") for step in explain(conn, QueryFilter(tool="pay*")))


ROLLOUT_FILTERS = [
    QueryFilter(arm="canary"),
    QueryFilter(arm="control", since=HOUR + HOUR // 2),
    QueryFilter(shadow_disagrees=True),
    QueryFilter(shadow_disagrees=True, since=3 * HOUR + HOUR // 2, effect="allow"),
    QueryFilter(shadow_bundle="ab"),
    QueryFilter(shadow_bundle="sha256:cd", shadow_disagrees=True),
    QueryFilter(shadow_bundle=SHADOWS[1]),  # a whole id is a prefix of itself
    QueryFilter(shadow_bundle="ef"),  # no such shadow
]


@pytest.mark.parametrize("f", ROLLOUT_FILTERS, ids=str)
def test_rollout_filters_are_right_on_the_large_index(large_index: Path, f: QueryFilter) -> None:
    """Index searches answer what reading every row in Python answers."""
    conn = connect(str(large_index))
    got = [r["request_id"] for r in query(conn, f)]
    lo, hi = f.since or 0, f.until or 2**62
    want = [
        request_id
        for request_id, effect, at, arm, shadow_bundle, shadow_effect in conn.execute(
            "SELECT request_id, effect, evaluated_at, arm, shadow_bundle_id, shadow_effect"
            " FROM decisions NOT INDEXED ORDER BY evaluated_at, id"
        )
        if lo <= at < hi
        and (f.effect is None or effect == f.effect)
        and (f.arm is None or arm == f.arm)
        and (not f.shadow_disagrees or shadow_effect not in (None, effect))
        and (
            f.shadow_bundle is None
            or (shadow_bundle or "").startswith(f.shadow_bundle.removeprefix("sha256:"), 7)
        )
    ]
    assert got == want
    assert want or f.shadow_bundle == "ef"


def test_agent_and_time_results_are_right_on_the_large_index(large_index: Path) -> None:
    conn = connect(str(large_index))
    f = QueryFilter(agent="agent-7", since=HOUR, until=2 * HOUR)
    got = [r["request_id"] for r in query(conn, f)]
    want = [
        request_id
        for request_id, agent, at in conn.execute(
            "SELECT request_id, agent_id, evaluated_at FROM decisions NOT INDEXED"
            " ORDER BY evaluated_at, id"
        )
        if agent == "agent-7" and HOUR <= at < 2 * HOUR
    ]
    assert got == want and want


# -- times ------------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02", dt.datetime(2026, 1, 2, tzinfo=dt.UTC)),
        ("2026-01-02T03:04:05Z", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        ("2026-01-02T03:04:05.250000+02:00", dt.datetime(2026, 1, 2, 1, 4, 5, 250000, tzinfo=dt.UTC)),
        ("2026-01-02 03:04", dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)),  # naive: UTC
        ("now", NOW),
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h ago", NOW - dt.timedelta(hours=2)),
        ("-7d", NOW - dt.timedelta(days=7)),
        ("1.5h", NOW - dt.timedelta(minutes=90)),
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("2w", NOW - dt.timedelta(weeks=2)),
    ],
)  # fmt: skip
def test_parse_time(text: str, expected: dt.datetime) -> None:
    micros = parse_time(text, NOW)
    assert micros == (expected - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
        microseconds=1
    )
    assert iso(micros) == expected.isoformat(timespec="microseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("text", ["yesterday", "15 parsecs", "2026-13-01", ""])
def test_unreadable_times_are_refused(text: str) -> None:
    with pytest.raises(QueryError, match="cannot read time"):
        parse_time(text, NOW)


def test_bad_effect_and_limit_are_refused() -> None:
    with pytest.raises(QueryError, match="effect"):
        QueryFilter(effect="permit")
    with pytest.raises(QueryError, match="limit"):
        QueryFilter(limit=-1)


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped() -> None:
    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(agent_id="=HYPERLINK(1)", tool="@sum", rule_ids=["p/r"], args={"a": "1"}, offset=3)
    out = io.StringIO()
    assert write_csv([row], out) == 1
    line = out.getvalue().splitlines()[1]
    assert "'=HYPERLINK(1)" in line and "'@sum" in line and '"{""a"":""1""}"' in line
