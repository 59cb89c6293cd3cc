"""The CLI contract: exit codes (0 ok, 1 fmt --check changes, 3 compile, 4 tests), --json on
every command, located errors with a caret."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target


def run_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, Any]:
    capsys.readouterr()  # drop earlier output so stdout holds exactly one JSON document
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_check_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    assert "bundle sha256:" in capsys.readouterr().out
    code, report = run_json(capsys, ["check", str(EXAMPLES)])
    assert code == 0
    assert report["ok"] is True and str(report["bundle_id"]).startswith("sha256:")


def test_test_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(EXAMPLES)]) == 0
    code, report = run_json(capsys, ["test", str(EXAMPLES)])
    assert code == 0
    assert report["failed"] == 0 and int(report["passed"]) > 0


@pytest.mark.parametrize(
    ("old", "new", "kind", "where"),
    [
        ("action.args.amount > 10000", "action.args.amout > 10000", "type", ":23:11:"),
        ("action.args.amount > 10000", 'action.args.amount > "10000"', "type", ":23:11:"),
        ("action.args.amount > 10000", "action.args.amount >> 10000", "syntax", ":23:31:"),
    ],
)
def test_broken_policies_fail_with_location_and_caret(
    policies: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, kind: str, where: str
) -> None:
    path = policies / "payments.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    assert main(["check", str(policies)]) == 3
    err = capsys.readouterr().err
    assert f"payments.yaml{where} {kind} error" in err
    assert "^" in err and new in err
    assert main(["test", str(policies)]) == 3  # compile failures are not test failures
    capsys.readouterr()
    code, report = run_json(capsys, ["check", str(policies)])
    assert code == 3
    first = report["errors"][0]
    assert first["kind"] == kind and first["file"].endswith("payments.yaml")


def test_failing_policy_test_exits_4(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = policies / "payments.yaml"
    path.write_text(path.read_text().replace("expect: allow", "expect: deny", 1))
    assert main(["test", str(policies)]) == 4
    assert "FAIL" in capsys.readouterr().out
    code, report = run_json(capsys, ["test", str(policies)])
    assert code == 4
    assert report["failed"] == 1


def test_eval_explains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "req.json"
    req.write_text(
        json.dumps(
            {
                "agent": {"id": "b1", "roles": ["billing"], "team": "finance"},
                "action": {
                    "tool": "Payments.Transfer",
                    "args": {"amount": 5, "currency": "USD", "country": "KP", "iban": "X"},
                },
            }
        )
    )
    assert main(["eval", str(EXAMPLES), "--request", str(req)]) == 0
    out = capsys.readouterr().out
    assert (
        "deny" in out
        and "payments-guardrails/block-sanctioned" in out
        and "payments.transfer" in out
    )
    code, report = run_json(capsys, ["eval", str(EXAMPLES), "--request", str(req)])
    assert code == 0
    assert report["decision"]["effect"] == "deny"
    assert report["canonical_tool"] == "payments.transfer"


def test_eval_judges_the_exact_amount_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval` read JSON numbers as binary floats: 10000.0000000000000001 became 10000.0 and
    was allowed, while the pipeline (exact decimals) asks for approval."""
    req = tmp_path / "req.json"
    req.write_text(
        '{"agent": {"id": "b1", "roles": ["billing"], "team": "finance"}, "action": '
        '{"tool": "payments.transfer", "args": {"amount": 10000.0000000000000001, '
        '"currency": "EUR", "country": "DE", "iban": "X"}}}'
    )
    code, report = run_json(capsys, ["eval", str(EXAMPLES), "--request", str(req)])
    assert code == 0
    assert report["decision"]["effect"] == "require_approval"


def test_eval_unreadable_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "req.json"
    req.write_text("{not json")
    assert main(["eval", str(EXAMPLES), "--request", str(req)]) == 2


def test_fmt_check_and_write(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", "--check", str(policies)]) == 0
    path = policies / "payments.yaml"
    path.write_text(
        path.read_text().replace(
            "when: action.args.amount > 10000", "when: (action.args.amount>10000)", 1
        )
    )
    code, report = run_json(capsys, ["fmt", "--check", str(policies)])
    assert (code, report["changed"]) == (1, [str(path)])
    assert main(["fmt", str(policies)]) == 0
    assert main(["fmt", "--check", str(policies)]) == 0


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"test: \d+ passed", out) and "failed" not in out
    assert "every attack was denied" in out and "hot swap to sha256:" in out
    assert "impersonation denied" in out and "identity_mismatch" in out
