"""`audit query` over a log with a canary and a shadow rollout, written by the real enforcer
the way tests/processors/test_rollout.py writes its own (with its helpers): every
decision's arm and shadow verdict as the log has them, the rollout filters (--arm,
--shadow-disagrees, --shadow-bundle) alone and with the others against an oracle that reads
the log, and the command's JSON, CSV and table forms. The plans are checked with the
others in test_query.py."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ordinance import cli
from ordinance.processors.audit.index_follow import index_log
from ordinance.processors.audit.query import (
    COLUMNS,
    QueryError,
    QueryFilter,
    connect,
    iso,
    query,
)
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from tests.processors.test_controller import BUNDLE_ID, FILES
from tests.processors.test_rollout import (
    AGENTS,
    CANDIDATE,
    CANDIDATE_FILES,
    T0,
    _change,
    _enforce,
    _send,
)

from .index_helpers import log_decisions, send_rounds, sqlite_url
from .test_query import oracle as base_oracle


def build_rollout_log(url: str) -> None:
    """The stable bundle, then a 30 % canary of the candidate, a shadow of it, and a
    rollback. The candidate denies the billing agents' transfers to NL (`_send`) and agrees
    with the stable bundle on everything else (`send_rounds`: other agents, countries and
    tools), so a shadow verdict sometimes differs from the enforced effect and sometimes
    not, and both arms decide some of each."""
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="test", enforce=False, clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    _change(url, "canary", CANDIDATE, target="default", canary_percent=30)
    _send(url, "canary", 1)
    send_rounds(url, range(0, 1))
    _enforce(url)
    _change(url, "shadow", CANDIDATE, target="default")
    _send(url, "shadow", 2)
    send_rounds(url, range(1, 2))
    _enforce(url)
    _change(url, "rolled_back", CANDIDATE, target="default")
    _send(url, "after", 3)
    send_rounds(url, range(2, 3))
    _enforce(url)


@pytest.fixture(scope="module")
def rollout_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[Any]]:
    directory = tmp_path_factory.mktemp("audit-rollouts")
    url = sqlite_url(directory)
    build_rollout_log(url)
    with open_log(url) as log:
        index_log(log, directory / "index.db")
    decisions, _ = log_decisions(url)
    return url, directory / "index.db", decisions


def _full_id(prefix: str) -> str:
    return prefix if prefix.startswith("sha256:") else "sha256:" + prefix


def oracle(decisions: list[dict[str, Any]], f: QueryFilter) -> list[str]:
    """test_query's oracle, on the decisions the rollout filters keep (stated once more in
    plain Python over the log's decisions)."""
    kept = [
        d
        for d in decisions
        if (f.arm is None or d["arm"] == f.arm)
        and (not f.shadow_disagrees or d["shadow_effect"] not in (None, d["effect"]))
        and (
            f.shadow_bundle is None
            or (d["shadow_bundle_id"] or "").startswith(_full_id(f.shadow_bundle))
        )
    ]
    return base_oracle(kept, replace(f, arm=None, shadow_disagrees=False, shadow_bundle=None))


def cases() -> list[QueryFilter]:
    some_agent = AGENTS[3]
    return [
        QueryFilter(arm="canary"),
        QueryFilter(arm="control"),
        QueryFilter(arm="canary", effect="deny"),
        QueryFilter(arm="control", tool="payments.*"),
        QueryFilter(arm="canary", policy="canary-candidate"),
        QueryFilter(arm="control", agent="files-bot"),
        QueryFilter(shadow_disagrees=True),
        QueryFilter(shadow_disagrees=True, agent=some_agent),
        QueryFilter(shadow_disagrees=True, effect="allow", tool="payments.transfer"),
        QueryFilter(shadow_disagrees=True, arm="canary"),  # no shadow in a canary: none
        QueryFilter(shadow_bundle=CANDIDATE[:12]),  # sha256:…
        QueryFilter(shadow_bundle=CANDIDATE[7:15]),  # bare hex
        QueryFilter(shadow_bundle=CANDIDATE),
        QueryFilter(shadow_bundle=BUNDLE_ID[:15]),  # the stable bundle is never a shadow
        QueryFilter(shadow_bundle=CANDIDATE[:10], shadow_disagrees=True, limit=5),
        QueryFilter(shadow_bundle=CANDIDATE[:10], effect="deny"),
        QueryFilter(rule="canary-candidate/no-nl"),  # the enforced rules only
    ]


def test_rows_carry_the_arm_and_shadow_verdict_the_log_has(
    rollout_index: tuple[str, Path, list[Any]],
) -> None:
    _, path, decisions = rollout_index
    rows = list(query(connect(str(path)), QueryFilter()))
    assert rows == [
        {
            **d,
            "evaluated_at": iso(d["evaluated_at"]),
            "event_time": iso(d["event_time"]),
            "fenced_owner": None,  # no zombie writer on this log
        }
        for d in decisions
    ]
    # The log has what the filters are meant to tell apart (else the test proves little):
    # both arms, no rollout at all, shadow verdicts that agree and that do not.
    assert {d["arm"] for d in decisions} == {"canary", "control", None}
    shadowed = [d for d in decisions if d["shadow_effect"] is not None]
    disagreeing = [d for d in shadowed if d["shadow_effect"] != d["effect"]]
    assert 0 < len(disagreeing) < len(shadowed) < len(decisions)
    assert all(d["shadow_rule_ids"] is None for d in decisions if d["shadow_effect"] is None)


def test_rollout_filters_agree_with_the_log(
    rollout_index: tuple[str, Path, list[Any]],
) -> None:
    _, path, decisions = rollout_index
    conn = connect(str(path))
    narrowing = 0
    for f in cases():
        got = [row["request_id"] for row in query(conn, f)]
        assert got == oracle(decisions, f), f
        narrowing += 0 < len(got) < len(decisions)
    assert narrowing >= 13  # most cases cut the log to a proper, non-empty subset


def test_disagreements_are_the_shadowed_decisions_with_another_effect(
    rollout_index: tuple[str, Path, list[Any]],
) -> None:
    """--shadow-disagrees, recomputed from the log's shadow verdicts: every row names the
    candidate, and its shadow effect is not the enforced one."""
    _, path, decisions = rollout_index
    rows = list(query(connect(str(path)), QueryFilter(shadow_disagrees=True)))
    want = {
        (d["partition"], d["offset"])
        for d in decisions
        if d["shadow_effect"] is not None and d["shadow_effect"] != d["effect"]
    }
    assert {(r["partition"], r["offset"]) for r in rows} == want
    assert all(r["shadow_bundle_id"] == CANDIDATE != r["bundle_id"] for r in rows)
    assert all(r["arm"] is None for r in rows)


def test_a_prefix_that_names_no_digit_is_refused() -> None:
    for prefix in ("", "sha256:"):
        with pytest.raises(QueryError, match="prefix"):
            QueryFilter(shadow_bundle=prefix)
    with pytest.raises(QueryError, match="arm"):
        QueryFilter(arm="stable")


# -- the command ------------------------------------------------------------------------


def _rows(path: Path, **filters: Any) -> list[dict[str, Any]]:
    return list(query(connect(str(path)), QueryFilter(**filters)))


def test_json(
    rollout_index: tuple[str, Path, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path, _ = rollout_index
    argv = ["audit", "query", "--index", str(path), "--shadow-disagrees", "--limit", "0"]
    assert cli.main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = _rows(path, shadow_disagrees=True)
    assert out == {"count": len(want), "truncated": False, "decisions": want}
    assert {"arm", "shadow_bundle_id", "shadow_effect", "shadow_rule_ids"} <= set(want[0])
    argv = ["audit", "query", "--index", str(path), "--arm", "canary", "--json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == _rows(path, arm="canary")
    bare = CANDIDATE[7:13]
    argv = ["audit", "query", "--index", str(path), "--shadow-bundle", bare, "--json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == _rows(path, shadow_bundle=bare)


def test_csv(
    rollout_index: tuple[str, Path, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path, _ = rollout_index
    argv = ["audit", "query", "--index", str(path), "--limit", "0", "--csv"]
    assert cli.main(argv) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    want = _rows(path)
    assert tuple(parsed[0]) == COLUMNS
    assert len(parsed) == len(want)
    for line, row in zip(parsed, want, strict=True):
        assert line["arm"] == (row["arm"] or "")
        assert line["shadow_bundle_id"] == (row["shadow_bundle_id"] or "")
        assert line["shadow_effect"] == (row["shadow_effect"] or "")
        assert line["shadow_code"] == (row["shadow_code"] or "")
        assert line["shadow_rule_ids"] == ";".join(row["shadow_rule_ids"] or ())


def test_table(
    rollout_index: tuple[str, Path, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The arm and shadow columns appear when a row has them, and a disagreement is marked."""
    _, path, _ = rollout_index
    want = _rows(path, shadow_disagrees=True, limit=3)
    argv = ["audit", "query", "--index", str(path), "--shadow-disagrees", "--limit", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "shadow" in out.splitlines()[0] and "arm" not in out.splitlines()[0]
    # The shadow cell wraps (its parts on lines of their own) when the table is wide.
    shadow = want[0]
    assert out.count(f"≠ {shadow['shadow_effect']} by") == 3
    assert f"{shadow['shadow_bundle_id'][:19]}…" in out
    assert f"({' '.join(shadow['shadow_rule_ids'])})" in out
    assert "3 decision(s)" in out
    argv = ["audit", "query", "--index", str(path), "--arm", "control", "--limit", "3"]
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "arm" in header and "shadow" not in header
    argv = ["audit", "query", "--index", str(path), "--request", f"after-{AGENTS[0]}"]
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "arm" not in header and "shadow" not in header  # no rollout: the usual table


def test_explain_and_usage(
    rollout_index: tuple[str, Path, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path, _ = rollout_index
    base = ["audit", "query", "--index", str(path)]
    assert cli.main([*base, "--shadow-disagrees", "--explain"]) == 0
    assert "USING INDEX decisions_shadow_disagrees_time" in capsys.readouterr().out
    assert cli.main([*base, "--arm", "canary", "--explain"]) == 0
    assert "USING INDEX decisions_arm_time" in capsys.readouterr().out
    assert cli.main([*base, "--shadow-bundle", "sha256:"]) == 2
    assert "prefix" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*base, "--arm", "stable"])
