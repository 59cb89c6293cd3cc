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


SCENARIO_SCHEMA = (
    Path(__file__).resolve().parents[1] / "policy" / "analysis" / "scenarios" / "schema.yaml"
)
WIDE = "  - {id: ok, effect: allow, when: 'action.args.size <= 200'}\n"
NARROW = "  - {id: ok, effect: allow, when: 'action.args.size <= 100'}\n"
CAP = "assertions:\n  - {name: cap, never: allow, when: 'action.args.size > 150'}\n"


def _bundle(root: Path, name: str, rules: str, assertions: str = "") -> Path:
    directory = root / name
    directory.mkdir()
    shutil.copy(SCENARIO_SCHEMA, directory / "schema.yaml")
    text = f"policy: p\nowner: team-a\ndescription: d\n{assertions}rules:\n{rules}"
    (directory / "p.yaml").write_text(text, encoding="utf-8")
    return directory


def _history(url: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["policy", "history", "--log", url, "--json"]) == 0
    events: list[dict[str, object]] = json.loads(capsys.readouterr().out)["events"]
    return events


def test_the_publish_trail_records_bypasses_acknowledgements_and_the_replaced_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The regression: --skip-analysis was not recorded, the acknowledgements the gate
    used were not published, and history showed no previous bundle for `enforced`."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    first = _bundle(tmp_path, "first", NARROW)
    assert main(["publish", str(first), "--log", url, "--actor", "alice", "--skip-analysis"]) == 0
    assert "bypassed with --skip-analysis" in capsys.readouterr().out
    assert main(["controller", "--log", url, "--once"]) == 0
    capsys.readouterr()

    second = _bundle(tmp_path, "second", WIDE, CAP)
    assert main(["check", str(second), "--analyze", "--json"]) != 0  # the cap is refuted
    refused = [f["id"] for f in json.loads(capsys.readouterr().out)["gate"]["failures"]]
    assert refused
    acks = "".join(f"  - {{id: '{i}', justification: pilot, by: bob}}\n" for i in refused)
    (second / "acknowledgements.ack").write_text("acknowledgements:\n" + acks)
    assert main(["publish", str(second), "--log", url, "--actor", "carol", "--json"]) == 0
    second_id = json.loads(capsys.readouterr().out)["bundle_id"]
    assert main(["controller", "--log", url, "--once"]) == 0
    capsys.readouterr()

    events = _history(url, capsys)
    published = [e for e in events if e["event"] == "published"]
    enforced = [e for e in events if e["event"] == "enforced"]
    whatif = published[0]["checks"].pop("whatif")
    assert whatif["outcome"] == "skipped" and whatif["reason"].startswith("the log does not exist")
    assert published[0]["checks"] == {
        "tests": 0,
        "analysis": "skipped",
        "bypasses": ["--skip-analysis"],
        "acknowledgements": [],
        "schema_compatibility": {
            "outcome": "not_checked",
            "target": "default",
            "against": [],
            "breaking": 0,
            "detail": "the log does not exist yet: no bundle is in force",
        },
    }
    checks = published[1]["checks"]
    assert isinstance(checks, dict)
    assert checks["analysis"] == "passed" and checks["bypasses"] == []
    assert checks["schema_compatibility"]["outcome"] == "compatible"
    assert [a["finding"] for a in checks["acknowledgements"]] == refused
    assert {a["by"] for a in checks["acknowledgements"]} == {"bob"}
    assert enforced[0]["previous_bundle_id"] is None
    assert enforced[1]["bundle_id"] == second_id
    assert enforced[1]["previous_bundle_id"] == published[0]["bundle_id"]
    assert main(["policy", "history", "--log", url]) == 0
    table = capsys.readouterr().out
    assert "bypassed" in table and "acknowledged" in table
