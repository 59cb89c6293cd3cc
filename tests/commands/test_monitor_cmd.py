"""`ordinance monitor --report`: the fold of the log as it stands, as a table and as
JSON, writing nothing; usage mistakes are errors with their exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.streams import open_log
from ordinance.streams.topics import MONITOR_ALERTS, ensure_topics
from tests.processors.monitor.helpers import traffic, write_decisions


def test_the_report_folds_the_log_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        write_decisions(log, traffic(3000, fail_closed_from=2000))
    assert main(["monitor", "--log", url, "--report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"] == {"allow": 2000, "deny": 1000, "fail_closed": 1000}
    assert {a["kind"] for a in report["open_alerts"]} == {"fail_closed_spike", "drift"}
    assert main(["monitor", "--log", url, "--report"]) == 0
    human = capsys.readouterr().out
    assert "fail_closed 1000" in human and "open fail_closed_spike" in human
    with open_log(url) as log:
        assert list(log.read_to_end(ensure_topics(log)[MONITOR_ALERTS].name)) == []


def test_usage_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    bad = tmp_path / "monitor.yaml"
    bad.write_text("windw_s: 3\n")
    assert main(["monitor", "--log", url, "--config", str(bad), "--report"]) == 2
    assert "windw_s" in capsys.readouterr().err
    assert main(["monitor", "--log", url, "--http", "nowhere", "--report"]) == 2
    assert main(["monitor", "--log", f"sqlite:///{tmp_path / 'none.db'}", "--report"]) == 1
    assert not (tmp_path / "none.db").exists()
