"""The adapter examples run as a user runs them (a fresh interpreter, from any directory)
and print what the agent tried and what Ordinance decided."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import EXAMPLES


@pytest.mark.parametrize("script", ["langgraph_agent.py", "openai_agents_agent.py"])
def test_example_runs_offline_and_runs_only_allowed_tools(script: str, tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("agent tried ") == 5
    assert "Denied by policy" in out and "rules: " in out and "request id: " in out
    assert "Approval required" in out and "ordinance approvals approve" in out
    assert "tool bodies ran 2 times" in out  # the workspace read and the small transfer
    assert "ordinance_approval_status" in out  # how the model checks back


def test_ordinance_imports_no_framework() -> None:
    """The frameworks are optional extras: only the adapter modules import them."""
    code = (
        "import sys, ordinance, ordinance.cli, ordinance.client, ordinance.adapters,"
        " ordinance.adapters.refusal, ordinance.adapters.approvals\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in"
        " ('langchain_core', 'langgraph', 'agents', 'openai')]\n"
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
