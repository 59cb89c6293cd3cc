"""Semantic diff, the analysis gate with acknowledgements, and the CLI entry points."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.policy.analysis import analyze
from ordinance.policy.analysis.diff import semantic_diff
from ordinance.policy.analysis.gate import ACK_FILE, Ack, gate, load_acks
from ordinance.policy.loader import load_ruleset

from .helpers import SCENARIOS

SCHEMA = (SCENARIOS / "schema.yaml").read_text(encoding="utf-8")


def bundle(root: Path, name: str, rules: str, assertions: str = "") -> Path:
    d = root / name
    d.mkdir()
    (d / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    text = f"policy: p\nowner: team-a\ndescription: d\n{assertions}rules:\n{rules}"
    (d / "p.yaml").write_text(text, encoding="utf-8")
    return d


RULES_OLD = "  - {id: ok, effect: allow, when: 'action.args.size <= 100'}\n"
RULES_NEW = "  - {id: ok, effect: allow, when: 'action.args.size <= 200'}\n"


def test_diff_finds_the_widened_allow_with_a_witness(tmp_path: Path) -> None:
    old = load_ruleset(bundle(tmp_path, "old", RULES_OLD))
    new = load_ruleset(bundle(tmp_path, "new", RULES_NEW))
    report = semantic_diff(old, new)
    assert [(c.tool, c.before, c.after) for c in report.changes] == [("doc.read", "deny", "allow")]
    w = report.changes[0].witness
    assert w is not None
    assert 100 < w.request["action"]["args"]["size"] <= 200
    assert old.evaluate(w.request).effect == "deny"
    assert new.evaluate(w.request).effect == "allow"
    assert report.new_allow() and report.new_access()
    back = semantic_diff(new, old)
    assert [(c.before, c.after) for c in back.changes] == [("allow", "deny")]
    assert not back.new_allow()


def test_diff_of_a_bundle_with_itself_is_empty(tmp_path: Path) -> None:
    rs = load_ruleset(bundle(tmp_path, "same", RULES_OLD))
    assert semantic_diff(rs, rs).to_json()["identical"] is True


def test_cli_diff_fail_on_new_allow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = bundle(tmp_path, "old", RULES_OLD), bundle(tmp_path, "new", RULES_NEW)
    assert main(["diff", str(old), str(new), "--fail-on", "new-allow", "--json"]) == 5
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True and out["changes"][0]["to"] == "allow"
    assert main(["diff", str(new), str(old), "--fail-on", "new-allow"]) == 0


@pytest.mark.parametrize("mode", ["new-allow", "new-access", "any"])
def test_cli_diff_fails_on_a_tool_it_could_not_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """The regression: a changed request shape made the tool "not compared" and the gate
    passed exactly when it knew least."""
    old = bundle(tmp_path, "old", RULES_OLD)
    new = bundle(tmp_path, "new", RULES_OLD)
    widened = SCHEMA.replace("tag?: string", "tag?: string, owner?: string")
    (new / "schema.yaml").write_text(widened, encoding="utf-8")
    assert main(["diff", str(old), str(new), "--fail-on", mode, "--json"]) == 5
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True and out["changes"] == []
    assert "schema" in out["failing_not_compared"]["doc.read"]
    assert main(["diff", str(old), str(new), "--fail-on", mode]) == 5
    assert "not compared" in capsys.readouterr().out
    assert main(["diff", str(old), str(new)]) == 0  # no gate asked for: a report only


ASSERTION = "assertions:\n  - {name: cap, never: allow, when: 'action.args.size > 150'}\n"


def test_gate_refuses_a_refuted_assertion_until_acknowledged(tmp_path: Path) -> None:
    d = bundle(tmp_path, "b", RULES_NEW, ASSERTION)
    report = analyze(load_ruleset(d))
    result = gate(report, [])
    assert not result.ok
    finding = result.failures[0]
    assert finding.kind == "assertion" and finding.subjects == ("p/cap",)
    ack = Ack(finding.id, "accepted for the pilot", "team-a")
    assert gate(report, [ack]).ok
    expired = Ack(finding.id, "old", expires=dt.date(2020, 1, 1))
    assert not gate(report, [expired]).ok
    assert gate(report, [ack, Ack("conflict:000000000000", "gone")]).stale_acks[0].id == (
        "conflict:000000000000"
    )


def test_gate_conflict_policy(tmp_path: Path) -> None:
    rules = (
        "  - {id: ok, effect: allow, when: 'true'}\n"
        "  - {id: big, effect: deny, when: 'action.args.size > 10'}\n"
    )
    report = analyze(load_ruleset(bundle(tmp_path, "c", rules)))
    assert gate(report, [], "cross-owner").ok  # same owner: not blocking by default
    assert not gate(report, [], "all").ok
    assert gate(report, [], "none").ok


def test_cli_check_analyze_refuses_an_unacknowledged_cross_owner_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = bundle(tmp_path, "b", "  - {id: ok, effect: allow, when: 'true'}\n")
    (d / "q.yaml").write_text(
        "policy: q\nowner: team-b\ndescription: d\nrules:\n"
        "  - {id: big, effect: deny, when: 'action.args.size > 10'}\n",
        encoding="utf-8",
    )
    assert main(["check", str(d), "--analyze", "--json"]) == 5
    out = json.loads(capsys.readouterr().out)
    [failure] = out["gate"]["failures"]
    assert failure["kind"] == "conflict" and failure["details"]["cross_owner"] is True
    (d / ACK_FILE).write_text(
        f"acknowledgements:\n  - id: {failure['id']}\n    justification: q's cap wins\n",
        encoding="utf-8",
    )
    assert main(["check", str(d), "--analyze"]) == 0
    other = "acknowledgements:\n  - id: conflict:000000000000\n    justification: another\n"
    (d / ACK_FILE).write_text(other, encoding="utf-8")
    assert main(["check", str(d), "--analyze"]) == 5


def test_cli_check_analyze_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = bundle(tmp_path, "b", RULES_NEW, ASSERTION)
    assert main(["check", str(d), "--analyze", "--json"]) == 5
    out = json.loads(capsys.readouterr().out)
    failing = out["gate"]["failures"][0]["id"]
    (d / ACK_FILE).write_text(
        f"acknowledgements:\n  - id: {failing}\n    justification: known\n    expires: 2999-01-01\n",
        encoding="utf-8",
    )
    assert load_acks(d / ACK_FILE)[0].expires == dt.date(2999, 1, 1)
    assert main(["check", str(d), "--analyze"]) == 0
    assert main(["check", str(d)]) == 0  # the acknowledgements file is not read as a policy


def test_cli_analyze_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = bundle(tmp_path, "b", RULES_NEW, ASSERTION)
    assert main(["analyze", str(d), "--json", "--timeout", "3000"]) == 0
    out = json.loads(capsys.readouterr().out)
    kinds = {f["kind"] for f in out["findings"]}
    assert "assertion" in kinds
    refuted = next(f for f in out["findings"] if f["kind"] == "assertion")
    request = refuted["witness"]["request"]
    assert load_ruleset(d).evaluate(request).effect == "allow"


def test_cli_diff_takes_bundle_ids_from_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ordinance.policy.bundle import compile_bundle, read_bundle_dir
    from ordinance.processors.controller_loop import run_controller
    from ordinance.processors.policy_log import publish_bundle
    from ordinance.streams import open_log

    old, new = bundle(tmp_path, "old", RULES_OLD), bundle(tmp_path, "new", RULES_NEW)
    url = f"sqlite:///{tmp_path}/log.db"
    ids = []
    with open_log(url) as log:
        for d in (old, new):
            files = read_bundle_dir(d)
            ids.append(compile_bundle(files).bundle_id)
            publish_bundle(log, files, ids[-1], actor="alice")
        run_controller(log, once=True)  # writes the bundle:<id> records of policy.active
    # a full id and a unique prefix
    assert (
        main(["diff", ids[0], ids[1][:19], "--log", url, "--fail-on", "new-allow", "--json"]) == 5
    )
    out = json.loads(capsys.readouterr().out)
    assert (out["old_bundle"], out["new_bundle"]) == (ids[0], ids[1])
    assert [(c["from"], c["to"]) for c in out["changes"]] == [("deny", "allow")]
    # a directory on one side, an id on the other
    assert main(["diff", str(new), ids[0], "--log", url, "--fail-on", "new-allow"]) == 0
    assert main(["diff", "sha256:ffff", str(new), "--log", url]) == 2
    assert main(["diff", ids[0], str(new)]) == 2  # an id needs --log
    assert main(["diff", ids[0], ids[1], "--log", f"sqlite:///{tmp_path}/none.db"]) == 2


def test_publish_runs_the_gate_and_nothing_refused_reaches_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = bundle(tmp_path, "b", "  - {id: ok, effect: allow, when: 'true'}\n")
    (d / "q.yaml").write_text(
        "policy: q\nowner: team-b\ndescription: d\nrules:\n"
        "  - {id: big, effect: deny, when: 'action.args.size > 10'}\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert main(["publish", str(d), "--log", url, "--json"]) == 5
    [refused] = json.loads(capsys.readouterr().out)["refused"]
    assert refused["kind"] == "conflict"
    assert not (tmp_path / "log.db").exists()
    assert main(["publish", str(d), "--log", url, "--skip-analysis", "--json"]) == 0
    capsys.readouterr()
    (d / ACK_FILE).write_text(
        f"acknowledgements:\n  - id: {refused['id']}\n    justification: q's cap wins\n",
        encoding="utf-8",
    )
    assert main(["publish", str(d), "--log", url, "--json"]) == 0
