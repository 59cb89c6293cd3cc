"""``ordinance submit``: one intent through the log; the exit code is the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main

from .conftest import Pipeline

BILLING = {"id": "billing-bot", "roles": ["billing"], "team": "finance"}


def request_file(tmp_path: Path, amount: str, country: str = "DE") -> str:
    # The amount is written as a JSON number: submit reads it as an exact decimal.
    args = {"amount": "AMOUNT", "currency": "EUR", "country": country, "iban": "DE00"}
    request = {"agent": BILLING, "action": {"tool": "payments.transfer", "args": args}}
    text = json.dumps(request).replace('"AMOUNT"', amount)
    path = tmp_path / f"request-{amount}-{country}.json"
    path.write_text(text)
    return str(path)


def submit_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["submit", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_exit_code_is_the_effect(
    tmp_path: Path, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    log_url = pipeline.url
    code, report = submit_json(capsys, [request_file(tmp_path, "50"), "--log", log_url])
    assert code == 0 and report["decision"]["effect"] == "allow"
    assert report["decision"]["rule_ids"] == ["payments-guardrails/small-ok"]
    code, report = submit_json(capsys, [request_file(tmp_path, "50", "KP"), "--log", log_url])
    assert (code, report["decision"]["effect"]) == (6, "deny")
    code, report = submit_json(capsys, [request_file(tmp_path, "10000.01"), "--log", log_url])
    assert (code, report["decision"]["effect"]) == (7, "require_approval")
    assert report["exit_code"] == 7
    # The human form names the effect and the rule.
    assert main(["submit", request_file(tmp_path, "50", "KP"), "--log", log_url]) == 6
    out = capsys.readouterr().out
    assert "deny" in out and "payments-guardrails/block-sanctioned" in out


def test_no_decision_and_usage_errors(
    tmp_path: Path, log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [request_file(tmp_path, "50"), "--log", log_url, "--timeout", "0.2"]
    code, report = submit_json(capsys, args)
    assert code == 8
    assert report["decision"]["code"] == "client_timeout" and report["decision"]["client_side"]
    assert main(["submit", str(tmp_path / "missing.json"), "--log", log_url]) == 2
    (tmp_path / "bad.json").write_text('{"action": {"tool": "fs.read"}}')  # no agent
    assert main(["submit", str(tmp_path / "bad.json"), "--log", log_url]) == 2
    assert main(["submit", request_file(tmp_path, "50"), "--log", "nosuch://x"]) == 2
