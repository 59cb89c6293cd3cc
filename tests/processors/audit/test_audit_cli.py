"""The audit commands end to end: sign, verify (clean and tampered, text and JSON),
prove and check a proof offline."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.keys import Keyring, generate
from ordinance.processors.audit.verify import verify_log
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics

from ..test_enforcer import EXAMPLES, publish, send, transfer
from .conftest import AuditedLog


def test_keys_checkpoint_verify_prove_check(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    key, ring = tmp_path / "k.pem", tmp_path / "ring.json"
    assert main(["keys", "generate", "--key", str(key), "--keyring", str(ring)]) == 0
    assert "public key added to" in capsys.readouterr().out
    # nothing new to sign: the log is already checkpointed up to its end
    assert main(["audit", "checkpoint", "--log", url, "--key", str(key), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == 0
    assert main(["audit", "verify", "--log", url, "--keyring", str(audited_log.keyring)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(": clean")
    # the fresh key is not the one that signed: every checkpoint is untrusted
    assert main(["audit", "verify", "--log", url, "--keyring", str(ring), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and {f["kind"] for f in report["findings"]} == {"forged_checkpoint"}

    proof = tmp_path / "proof.json"
    assert main(["audit", "prove", "r10", "--log", url, "--out", str(proof)]) == 0
    capsys.readouterr()
    assert main(["audit", "check-proof", str(proof), "--keyring", str(audited_log.keyring)]) == 0
    out = capsys.readouterr().out
    assert "valid: decision r10: " in out and " at partition " in out
    altered = json.loads(proof.read_text())
    altered["tree_size"] += 1
    proof.write_text(json.dumps(altered))
    assert (
        main(["audit", "check-proof", str(proof), "--keyring", str(audited_log.keyring), "--json"])
        == 1
    )
    assert json.loads(capsys.readouterr().out)["problems"]


def test_verify_names_the_tampered_record(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE records SET value = CAST(value || x'00' AS BLOB) WHERE partition = 2 AND offset = 1234 "
            "AND topic_id = (SELECT id FROM topics WHERE name = 'ordinance.agent.decisions')"
        )
    verify = ["audit", "verify", "--log", url, "--keyring", str(audited_log.keyring)]
    assert main([*verify, "--partition", "2"]) == 1
    out = capsys.readouterr().out
    assert "partition 2 offset 1234" in out and "FINDING" in out
    assert main([*verify, "--partition", "2", "--to", "1000"]) == 0


def test_unknown_request_and_missing_keyring_are_clear_errors(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    assert main(["audit", "prove", "nope", "--log", url]) == 2
    assert "no decision for request 'nope'" in capsys.readouterr().err
    assert main(["audit", "verify", "--log", url, "--keyring", str(tmp_path / "none.json")]) == 2


def test_a_missing_embedded_log_is_an_error_not_a_clean_verify(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    assert main(["audit", "verify", "--log", url, "--keyring", str(audited_log.keyring)]) == 2
    assert "no embedded log at" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


SERVE = [sys.executable, "-m", "ordinance.cli", "serve"]


def _decided(url: str) -> int:
    serde = Serde()
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_DECISIONS].name
        decoded = (serde.decode_record(r) for r in log.read_to_end(topic))
        return sum(isinstance(d, Decoded) and d.name == "Decision" for d in decoded)


def test_serve_with_a_signing_key_checkpoints_what_it_decides(tmp_path: Path) -> None:
    """`serve --signing-key` runs the checkpointer beside the enforcer; on SIGTERM both
    stop and the whole decision log is under signature."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    generate(tmp_path / "k.pem", tmp_path / "ring.json")
    publish(url, EXAMPLES)
    send(url, *(transfer(f"s{i}", "20", i) for i in range(30)))
    child = subprocess.Popen(
        [*SERVE, "--log", url, "--signing-key", str(tmp_path / "k.pem")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (decided := _decided(url)) < 30:
            time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr.decode()
    assert decided == 30
    with open_log(url) as log:
        report = verify_log(log, Keyring.from_file(tmp_path / "ring.json"))
    assert report.findings == []
    assert all(p.covered == p.records for p in report.partitions if p.records)
    assert sum(p.checkpoints for p in report.partitions) >= 1


def test_check_proof_refuses_an_edited_readable_decision(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: `audit prove`, flip `decision.effect` in the JSON, `audit check-proof`
    printed `valid` and exited 0. It must name the edit and exit 1."""
    url = audited_log.copy(tmp_path)
    proof = tmp_path / "proof.json"
    assert main(["audit", "prove", "r10", "--log", url, "--out", str(proof)]) == 0
    original = json.loads(proof.read_text())
    check = ["audit", "check-proof", str(proof), "--keyring", str(audited_log.keyring)]
    for field, forged in (("effect", "EFFECT"), ("rule_ids", ["made/up"])):
        edited = json.loads(json.dumps(original))
        edited["decision"][field] = (
            ("deny" if edited["decision"]["effect"] == "allow" else "allow")
            if forged == "EFFECT"
            else forged
        )
        proof.write_text(json.dumps(edited))
        capsys.readouterr()
        assert main(check) == 1
        out = capsys.readouterr().out
        assert out.startswith("INVALID: the readable decision is not what the proven bytes say")
        assert f"differs in {field})" in out
        assert main([*check, "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is False and report["proven"] is None
    proof.write_text(json.dumps(original))
    assert main([*check, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["proven"] == original["decision"]
