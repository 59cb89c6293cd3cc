"""Acknowledgements that scale: one entry per policy pair or rule pattern (globs over
rule ids, optionally a kind and a tool glob) covers every matching finding; the gate says
which acknowledgement covered which finding and which acknowledgements covered nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.policy.analysis.checks import Finding
from ordinance.policy.analysis.gate import ACK_FILE, Ack, AckProblem, gate, load_acks
from ordinance.policy.analysis.run import Report

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _conflict(a: str, d: str, tool: str) -> Finding:
    return Finding("conflict", tool, (a, d), f"{a} vs {d}", details={"cross_owner": True})


def _report(*findings: Finding) -> Report:
    return Report("sha256:x", findings=list(findings))


def _acks(tmp_path: Path, text: str) -> list[Ack]:
    (tmp_path / ACK_FILE).write_text("acknowledgements:\n" + text, encoding="utf-8")
    return load_acks(tmp_path / ACK_FILE)


PAY = _conflict("pay/small-ok", "pii/clearance", "payments.transfer")
REFUND = _conflict("pay/large", "pii/clearance", "payments.refund")
FS = _conflict("fs/workspace", "pii/clearance", "fs.read")
SECRETS = _conflict("prod/manifests", "fs/deny-secrets", "fs.write")


def test_a_policy_pair_covers_every_conflict_between_them(tmp_path: Path) -> None:
    acks = _acks(tmp_path, "  - policies: [pii, pay]\n    justification: clearance wins\n")
    result = gate(_report(PAY, REFUND, FS), acks)
    assert [f.id for f in result.failures] == [FS.id]
    assert [(f.id, a.name) for f, a in result.acknowledged] == [
        (PAY.id, "policies: [pii, pay]"),
        (REFUND.id, "policies: [pii, pay]"),
    ]
    assert result.stale_acks == []
    [(ack, covered)] = result.by_acknowledgement()
    assert covered == [PAY, REFUND] and ack.justification == "clearance wins"


def test_rule_globs_in_either_order_and_a_tool_glob(tmp_path: Path) -> None:
    acks = _acks(
        tmp_path,
        "  - rules: [pii/clearance, '*']\n    tool: 'payments.*'\n    justification: j\n",
    )
    result = gate(_report(PAY, REFUND, FS, SECRETS), acks)
    assert {f.id for f, _ in result.acknowledged} == {PAY.id, REFUND.id}
    assert {f.id for f in result.failures} == {FS.id, SECRETS.id}


def test_an_id_entry_wins_over_a_pattern_and_unused_entries_are_named(tmp_path: Path) -> None:
    acks = _acks(
        tmp_path,
        f"  - id: {PAY.id}\n    justification: exact\n"
        "  - rules: ['*', pii/clearance]\n    justification: pattern\n"
        "  - policies: [nobody, nowhere]\n    justification: unused\n"
        "  - id: conflict:000000000000\n    justification: gone\n",
    )
    result = gate(_report(PAY, FS), acks)
    assert result.ok
    assert {f.id: a.justification for f, a in result.acknowledged} == {
        PAY.id: "exact",
        FS.id: "pattern",
    }
    assert [a.name for a in result.stale_acks] == [
        "policies: [nobody, nowhere]",
        "conflict:000000000000",
    ]
    out = result.to_json()
    assert {a["acknowledgement"] for a in out["acknowledged"]} == {
        PAY.id,
        "rules: [*, pii/clearance]",
    }
    assert out["stale_acknowledgements"] == ["policies: [nobody, nowhere]", "conflict:000000000000"]


def test_kind_patterns_and_expiry(tmp_path: Path) -> None:
    undecided = Finding(
        "unknown", "fs.read", ("fs/workspace",), "gave up", details={"check": "dead-rule"}
    )
    refuted = Finding("assertion", "fs.read", ("fs/never-etc",), "refuted")
    acks = _acks(
        tmp_path,
        "  - rules: ['fs/*']\n    kind: unknown\n    justification: budget\n"
        "  - rules: ['fs/*']\n    kind: assertion\n    justification: old\n"
        "    expires: 2000-01-01\n",
    )
    result = gate(_report(undecided, refuted), acks, today=dt.date(2026, 1, 1))
    assert [f.id for f, _ in result.acknowledged] == [undecided.id]
    assert [f.id for f in result.failures] == [refuted.id]  # the assertion entry lapsed


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("  - rules: [a/*]\n    justification: j\n", "two"),
        ("  - rules: [a/*, b/*]\n    kind: assertion\n    justification: j\n", "one subject"),
        ("  - policies: [a, b]\n", "justification"),
        ("  - policies: [a, b]\n    id: conflict:1\n    justification: j\n", "one of"),
        ("  - policies: a\n    justification: j\n", "must be a list"),
        ("  - rules: [a/*, b/*]\n    kind: gap\n    justification: j\n", "`kind` must be"),
        ("  - id: conflict:1\n    tool: x\n    justification: j\n", "go with a pattern"),
        ("  - rules: [a/*, b/*]\n    justification: j\n    owner: x\n", "unknown key"),
    ],
)
def test_malformed_entries_are_refused(tmp_path: Path, entry: str, words: str) -> None:
    with pytest.raises(AckProblem, match=words):
        _acks(tmp_path, entry)


def test_examples_gate_passes_with_two_acknowledgements(capsys: pytest.CaptureFixture[str]) -> None:
    """The examples' 20 intended cross-owner conflicts on 10 tools: two entries."""
    assert main(["check", str(EXAMPLES), "--analyze", "--json", "--jobs", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    gate_json = out["gate"]
    assert gate_json["ok"] and gate_json["stale_acknowledgements"] == []
    used = {a["acknowledgement"] for a in gate_json["acknowledged"]}
    assert len(used) == 2 < len(gate_json["acknowledged"])
    assert len(load_acks(EXAMPLES / ACK_FILE)) == 2


def test_publish_records_each_finding_a_pattern_let_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The published event lists every finding the gate let pass with the justification
    and author of the acknowledgement (here a pattern) that covered it."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    publish = ["publish", str(EXAMPLES), "--log", url, "--actor", "alice", "--jobs", "2"]
    assert main([*publish, "--json"]) == 0
    capsys.readouterr()
    assert main(["policy", "history", "--log", url, "--json"]) == 0
    [event] = [
        e for e in json.loads(capsys.readouterr().out)["events"] if e["event"] == "published"
    ]
    used = event["checks"]["acknowledgements"]
    acks = load_acks(EXAMPLES / ACK_FILE)
    assert {a["kind"] for a in used} == {"conflict"}
    assert {(a["justification"], a["by"]) for a in used} == {(a.justification, a.by) for a in acks}
    assert main(["check", str(EXAMPLES), "--analyze", "--json", "--jobs", "2"]) == 0
    gated = json.loads(capsys.readouterr().out)["gate"]["acknowledged"]
    assert sorted(a["finding"] for a in used) == sorted(a["id"] for a in gated)
