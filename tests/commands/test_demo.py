"""`ordinance demo` runs the real pipeline: attacks denied before and after a hot swap, every
decision names the bundle in force, the swap is one record per decisions partition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.commands.demo_pipeline import IMPERSONATIONS, SWAP_COUNTRY
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import topic_specs

DECISIONS = topic_specs()["agent.decisions"].name


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["demo", "--json", *args]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _check(report: dict[str, Any]) -> None:
    before, after = report["phases"]["before"], report["phases"]["after"]
    assert before["bundles"] == [report["old_bundle"]] and after["bundles"] == [
        report["new_bundle"]
    ]
    assert before["attacks"] == before["attacks_denied"] > 0
    assert after["attacks"] == after["attacks_denied"] > 0
    assert set(after[f"transfers_to_{SWAP_COUNTRY}"]) == {"deny"}  # the stricter bundle applies
    assert "allow" in before[f"transfers_to_{SWAP_COUNTRY}"]
    assert report["swap_offsets"] and report["client_side_denies"] == 0
    assert set(before["effects"]) == {"allow", "deny", "require_approval"}
    audit = report["audit"]  # the demo signed its decision log and verified it
    decisions = sum(p["decisions"] for p in report["phases"].values())
    assert audit["records"] > decisions and audit["checkpoints"] >= 4
    assert audit["findings"] == [] and audit["proof_problems"] == []
    assert audit["proved_request"]
    # Identity is enforced: agents and the publisher sign; impersonation is denied.
    impersonations = report["identity"]["impersonations"]
    assert len(impersonations) == 2 * len(IMPERSONATIONS)
    assert {(i["effect"], i["code"]) for i in impersonations} == {("deny", "identity_mismatch")}


def test_demo_on_the_embedded_log(capsys: pytest.CaptureFixture[str]) -> None:
    _check(_run(capsys))


@pytest.mark.kafka
def test_demo_on_a_local_kafka_broker(capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(capsys, "--kafka")
    assert report["log"].startswith("kafka://127.0.0.1:")
    _check(report)


def test_a_demo_log_left_behind_verifies_with_the_keyring_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The regression: the demo's signing keyring lived in a deleted temporary directory,
    so nobody could `audit verify` the log it left; and `replay verify` flagged every
    decision with a list argument (the demo now sends mail to lists of recipients)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    report = _run(capsys, "--log", url)
    _check(report)
    keyring = Path(report["keyring"])
    assert keyring == tmp_path / "x.db.keys" / "keyring.json" and keyring.is_file()
    assert main(["audit", "verify", "--log", url, "--keyring", str(keyring)]) == 0
    capsys.readouterr()
    assert main(["replay", "verify", "--log", url, "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["ok"] and replayed["decisions"] > 0
    mail = [d for d in _decisions(url) if d["tool"] == "email.send"]
    assert mail and all(isinstance(d["args"]["to"], list) for d in mail)
    decided = _decisions(url)
    assert all(d["key_id"] for d in decided if d["code"] != "identity_mismatch")
    # A rerun on the same log reuses the identities the first run registered.
    trust = Path(report["identity"]["trust_file"])
    assert trust == tmp_path / "x.db.keys" / "identity" / "trust.json"
    again = _run(capsys, "--log", url)
    assert all(p["attacks"] == p["attacks_denied"] > 0 for p in again["phases"].values())
    assert {(i["effect"], i["code"]) for i in again["identity"]["impersonations"]} == {
        ("deny", "identity_mismatch")
    }
    assert main(["replay", "verify", "--log", url]) == 0


def _decisions(url: str) -> list[dict[str, Any]]:
    with open_log(url) as log:
        decoded = [Serde().decode_record(r) for r in log.read_to_end(DECISIONS)]
    return [d.value for d in decoded if isinstance(d, Decoded) and d.name == "Decision"]
