"""``ordinance check`` answers "can this rule error?": a warning with the request that
makes the rule err (exit 0), an error under ``--strict`` (exit 3), both at the read's
file:line:column with a caret, and in the JSON form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
SCHEMA = "tools:\n  pay:\n    args: {amount: int, memo?: string}\n"
POLICY = """policy: pay
owner: fin
description: payments
target: {actions: [pay]}
rules:
  - id: memo
    effect: deny
    when: action.args.memo == "x"
  - id: guarded
    effect: deny
    when: 'has(action.args.memo) && action.args.memo == "y"'
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "pay.yaml").write_text(POLICY)
    return tmp_path


def test_warning_with_position_caret_and_witness(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(bundle)]) == 0
    out = capsys.readouterr()
    assert "1 warning(s)" in out.out
    lines = out.err.splitlines()
    head = next(n for n, line in enumerate(lines) if "rule-error warning" in line)
    assert lines[head].startswith(f"{bundle / 'pay.yaml'}:8:11: rule-error warning: rule pay/memo")
    assert "missing attribute 'action.args.memo'" in lines[head]
    assert '{"action":{"args":{"amount":' in lines[head]  # the witness request
    assert lines[head + 1].endswith('when: action.args.memo == "x"')
    caret = lines[head + 2]
    assert caret.index("^") == lines[head + 1].index("action.args.memo")
    assert caret.strip() == "^" + "~" * (len("action.args.memo") - 1)
    assert "pay/guarded" not in out.err


def test_strict_makes_it_an_error(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(bundle), "--strict"]) == 3
    err = capsys.readouterr().err
    assert ":8:11: rule-error error: rule pay/memo" in err
    assert "1 error(s) (--strict)" in err


def test_json_form(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(bundle), "--json"]) == 0
    warned = json.loads(capsys.readouterr().out)
    assert warned["ok"] is True
    [w] = warned["warnings"]
    assert (w["kind"], w["severity"], w["line"], w["column"]) == ("rule-error", "warning", 8, 11)
    [f] = warned["rule_errors"]["findings"]
    assert f["rule"] == "pay/memo" and f["cause"] == "missing-attribute"
    assert "memo" not in f["witness"]["request"]["action"]["args"]
    assert f["decision"]["code"] == "evaluation_error"
    assert main(["check", str(bundle), "--json", "--strict"]) == 3
    refused = json.loads(capsys.readouterr().out)
    assert refused["ok"] is False and refused["errors"][0]["severity"] == "error"


def test_the_examples_have_no_rule_that_can_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES), "--strict", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == [] and report["rule_errors"]["undecided"] == []
    assert report["rule_errors"]["findings"] == []
