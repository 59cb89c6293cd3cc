"""`ordinance audit anchor` and `audit verify --witness / --max-unsigned-tail` end to
end: human and JSON reports, refusals, exit codes, progress on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.keys import generate

from .conftest import AuditedLog
from .test_verify import PARTITION, _db
from .test_witness import _forge_tail


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def test_anchor_then_verify_with_the_witness(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    ring = str(audited_log.keyring)
    witness = f"file:{tmp_path / 'witness.jsonl'}"
    anchor = ["audit", "anchor", "--log", url, "--keyring", ring, "--witness", witness]
    assert main(anchor) == 0
    captured = capsys.readouterr()
    assert "pinned in file:" in captured.out
    assert f"partition {PARTITION}: witnessed through " in captured.out
    assert "anchored " in captured.out and " checkpoints to file:" in captured.out
    assert "records hashed" in captured.err or "records," in captured.err  # progress
    assert main(anchor) == 0
    assert "nothing new to anchor" in _out(capsys)
    assert main([*anchor, "--json"]) == 0
    again = json.loads(_out(capsys))
    assert again["ok"] and again["anchored"] == [] and not again["pinned"]
    assert again["witnessed_before"] >= 8 and len(again["keyring_fingerprint"]) == 64

    verify = ["audit", "verify", "--log", url, "--keyring", ring, "--witness", witness]
    assert main([*verify, "--max-unsigned-tail", "0"]) == 0
    out = _out(capsys)
    assert " witnessed" in out and out.rstrip().endswith(": clean")
    assert main([*verify, "--json"]) == 0
    report = json.loads(_out(capsys))
    assert report["witness"]["pinned_fingerprint"] == report["witness"]["keyring_fingerprint"]
    assert all(p["witnessed"] == p["covered"] for p in report["partitions"])


def test_rollback_and_unsigned_tail_fail_verify_and_anchor(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    ring = str(audited_log.keyring)
    witness = str(tmp_path / "witness-repo")
    (tmp_path / "witness-repo").mkdir()  # an empty directory: a new Git witness
    anchor = ["audit", "anchor", "--log", url, "--keyring", ring, "--witness", witness]
    assert main(anchor) == 0
    capsys.readouterr()
    verify = ["audit", "verify", "--log", url, "--keyring", ring]

    offsets = _forge_tail(url, PARTITION, 3)
    assert main(verify) == 0  # the limit: nothing signed covers the forged tail
    capsys.readouterr()
    assert main([*verify, "--max-unsigned-tail", "1h"]) == 1  # written in January
    out = _out(capsys)
    assert f"FINDING unsigned_tail: partition {PARTITION} offset {offsets[0]}: 3 records" in out
    assert main([*verify, "--max-unsigned-tail", "2", "--json"]) == 1
    report = json.loads(_out(capsys))
    assert report["max_unsigned_tail"] == "2"
    assert [f["kind"] for f in report["findings"]] == ["unsigned_tail"]

    with _db(url) as (conn, topic_id):
        conn.execute(
            "DELETE FROM records WHERE topic_id=? AND partition=? AND offset>?",
            (topic_id, PARTITION, 500),
        )
    assert main(verify) == 1  # a truncation past a checkpoint verify always saw ...
    capsys.readouterr()
    assert main([*verify, "--witness", witness]) == 1  # ... and the witness names it
    assert f"FINDING rollback: partition {PARTITION} offset 500: " in _out(capsys)
    assert main(anchor) == 1
    out = _out(capsys)
    assert "FINDING rollback" in out and "refused: " in out and "nothing anchored" in out
    assert main([*anchor, "--json"]) == 1
    refused = json.loads(_out(capsys))
    assert refused["ok"] is False and refused["anchored"] == []


def test_another_keyring_and_bad_arguments(
    audited_log: AuditedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = audited_log.copy(tmp_path)
    witness = str(tmp_path / "w.jsonl")
    base = ["--log", url, "--witness", witness]
    assert main(["audit", "verify", *base, "--keyring", str(audited_log.keyring)]) == 2
    # (the shared error printer wraps long lines)
    err = " ".join(capsys.readouterr().err.split())
    assert "holds no checkpoints: run audit anchor first" in err
    assert main(["audit", "anchor", *base, "--keyring", str(audited_log.keyring)]) == 0
    other = tmp_path / "other.json"
    generate(tmp_path / "other.pem", other)
    capsys.readouterr()
    assert main(["audit", "verify", *base, "--keyring", str(other)]) == 1
    out = _out(capsys)
    assert "FINDING keyring_mismatch: log: the keyring's fingerprint" in out
    assert main(["audit", "anchor", *base, "--keyring", str(other)]) == 1
    assert "refused" in _out(capsys)
    with pytest.raises(SystemExit) as exited:
        main(["audit", "verify", "--log", url, "--keyring", str(other), "--max-unsigned-tail", "x"])
    assert exited.value.code == 2
    assert "neither a number of records" in capsys.readouterr().err
