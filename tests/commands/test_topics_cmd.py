"""``ordinance topics``: the operator chooses the agent partition count once; every
other command then runs on that count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def _topics(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["topics", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_chosen_count_holds_for_every_later_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    code, report = _topics(capsys, "--log", url, "--agent-partitions", "6")
    assert code == 0 and report["ok"] is True
    by_role = {t["role"]: t for t in report["topics"]}
    assert by_role["agent.actions"]["partitions"] == 6
    assert by_role["agent.decisions"]["partitions"] == 6
    assert by_role["policy.changes"]["partitions"] == 1
    assert by_role["agent.decisions"]["retention_ms"] is None
    # publish (and the controller) call ensure_topics without a count: they adopt 6.
    assert main(["publish", str(EXAMPLES), "--log", url, "--json", "--skip-analysis"]) == 0
    capsys.readouterr()
    code, report = _topics(capsys, "--log", url)
    by_role = {t["role"]: t for t in report["topics"]}
    assert by_role["agent.actions"]["partitions"] == 6
    assert sum(by_role["policy.changes"]["end_offsets"].values()) == 2  # published, enforced


def test_a_different_count_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert _topics(capsys, "--log", url)[0] == 0
    code, report = _topics(capsys, "--log", url, "--agent-partitions", "8")
    assert code == 1 and report["ok"] is False
    assert "exists with 4 partitions" in str(report["error"])


def test_nonsense_counts_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _topics(
        capsys, "--log", f"sqlite:///{tmp_path / 'log.db'}", "--agent-partitions", "0"
    )
    assert code == 1 and "at least 1" in str(report["error"])
    assert not (tmp_path / "log.db").exists()


def test_the_table_names_every_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "--log", f"sqlite:///{tmp_path / 'log.db'}", "--prefix", "acme."]) == 0
    out = capsys.readouterr().out
    for name in ("acme.agent.actions", "acme.agent.decisions", "acme.audit.checkpoints"):
        assert name in out
    assert "forever" in out and "30 days" in out
