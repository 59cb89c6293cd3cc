"""The what-if replay publish runs (issue 13 item 1): recent recorded decisions decided
again under the new bundle, summarised on the published event and in `policy history`;
skipped with a recorded reason when there is no traffic, and --skip-whatif a bypass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from tests.processors.test_enforcer import T0, enforce, publish, send, transfer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def tighter(root: Path) -> Path:
    """The example set with Italy among the sanctioned destinations."""
    d = root / "tighter"
    shutil.copytree(EXAMPLES, d)
    payments = d / "payments.yaml"
    text = payments.read_text()
    assert '["KP", "IR", "SY", "CU"]' in text
    payments.write_text(text.replace('["KP", "IR", "SY", "CU"]', '["KP", "IR", "SY", "CU", "IT"]'))
    return d


def published(url: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["policy", "history", "--log", url, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    return [e for e in events if e["event"] == "published"]


def test_publish_records_what_the_bundle_would_change_in_recent_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    publish(url, examples)
    send(url, transfer("to-italy", "50", 0, "IT"), transfer("to-germany", "50", 1))
    enforce(url)
    since = str(int(T0) - 60)
    new = tighter(tmp_path)
    command = ["publish", str(new), "--log", url, "--skip-analysis", "--no-enforce"]
    assert main([*command, "--whatif-since", since, "--json"]) == 0
    whatif = json.loads(capsys.readouterr().out)["checks"]["whatif"]
    assert whatif["outcome"] == "ran" and whatif["reason"] is None
    assert (whatif["evaluated"], whatif["changed"]) == (2, 1)
    assert whatif["transitions"] == [{"old_effect": "allow", "new_effect": "deny", "count": 1}]
    [_, recorded] = published(url, capsys)
    assert recorded["checks"]["whatif"] == whatif
    assert main(["policy", "history", "--log", url]) == 0
    assert "what-if:" in capsys.readouterr().out  # the checks column (words wrap)

    # a window without traffic: skipped, with the reason
    assert main([*command, "--whatif-since", "now", "--json"]) == 0
    whatif = json.loads(capsys.readouterr().out)["checks"]["whatif"]
    assert whatif["outcome"] == "skipped" and whatif["reason"] == "no decisions in the window"
    # --skip-whatif: a recorded bypass
    assert main([*command, "--skip-whatif", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["whatif"]["outcome"] == "skipped"
    assert checks["bypasses"] == ["--skip-analysis", "--skip-whatif"]
    assert main([*command, "--whatif-since", "yesterday-ish"]) == 2
