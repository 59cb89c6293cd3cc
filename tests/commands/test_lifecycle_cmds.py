from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ordinance.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def test_publish_then_controller(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    # --skip-analysis: the example set passes the gate in tests/policy/analysis/test_golden.py
    assert (
        main(
            [
                "publish",
                str(EXAMPLES),
                "--log",
                url,
                "--actor",
                "alice",
                "--json",
                "--skip-analysis",
            ]
        )
        == 0
    )
    published = json.loads(capsys.readouterr().out)
    assert published["bundle_id"].startswith("sha256:") and published["enforced_offset"] == 1
    assert main(["controller", "--log", url, "--once", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"applied": 2, "rejected": 0, "written": 2}


def test_publish_refuses_a_bundle_whose_tests_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "p"
    shutil.copytree(EXAMPLES, policies)
    path = policies / "payments.yaml"
    path.write_text(path.read_text().replace("expect: allow", "expect: deny", 1))
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert main(["publish", str(policies), "--log", url]) == 4
    assert "FAIL" in capsys.readouterr().err
    assert not (tmp_path / "log.db").exists()  # nothing reached the log


def test_approvals_list_and_approve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.processors.test_enforcer import enforce, publish, send, transfer

    url = f"sqlite:///{tmp_path / 'log.db'}"
    publish(url, EXAMPLES)
    send(url, transfer("big", "25000", 0))
    enforce(url)
    capsys.readouterr()
    assert main(["approvals", "list", "--log", url, "--json"]) == 0
    [pending] = json.loads(capsys.readouterr().out)
    assert pending["request_id"] == "big" and pending["approval_ticket"].startswith("sha256:")
    assert main(["approvals", "approve", "big", "--log", url, "--approver", "bob", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ticket"] == pending["approval_ticket"]
    assert main(["approvals", "reject", "nothing-here", "--log", url]) == 1
