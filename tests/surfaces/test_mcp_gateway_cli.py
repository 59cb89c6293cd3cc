"""``ordinance mcp-gateway``: the mapping file's checks, refusing to start on a bad command
line, and failing closed when no decision comes (no enforcer answering)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.streams import open_log
from ordinance.streams.topics import ensure_topics
from ordinance.surfaces.mcp_mapping import MappingError, ToolMapping
from tests.surfaces.mcp_harness import (
    MAPPING,
    UPSTREAM,
    Agent,
    gateway_command,
    ordinance,
    received,
    text,
)


def test_the_mapping_maps_exact_names_and_refuses_or_prefixes_the_rest() -> None:
    mapping = ToolMapping.from_mapping({"tools": {"read_file": "fs.read"}})
    assert mapping.policy_tool("read_file") == "fs.read"
    assert mapping.policy_tool("Read_File") is None and not mapping.listed("run_shell")
    deciding = ToolMapping.from_mapping(
        {"tools": {}, "unmapped": "decide", "unmapped_prefix": "shell."}
    )
    assert deciding.policy_tool("run") == "shell.run" and deciding.listed("run")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping"),
        ({"tools": {"a": "fs.read"}, "unmaped": "deny"}, "unknown key(s) unmaped"),
        ({"version": 2, "tools": {"a": "fs.read"}}, "version 2"),
        ({"tools": ["a"]}, "'tools' must map"),
        ({"tools": {"a": ""}}, "tools.a: expected a policy tool name"),
        ({"tools": {"a": 3}}, "tools.a: expected a policy tool name"),
        ({"tools": {"a": "fs.read"}, "unmapped": "allow"}, "unmapped: expected"),
        ({"tools": {}}, "every call would be refused"),
    ],
)
def test_a_bad_mapping_names_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(MappingError, match="mapping: ") as error:
        ToolMapping.from_mapping(raw)
    assert message in str(error.value)


def test_refuses_to_start_on_a_bad_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    log = tmp_path / "log.db"
    with open_log(f"sqlite:///{log}", create=True) as opened:
        ensure_topics(opened)
    base = ["mcp-gateway", "--log", f"sqlite:///{log}", "--agent", "a1", "--map", str(mapping)]
    assert main(base) == 2  # no upstream
    assert main([*base, "--upstream", "http://127.0.0.1:9/mcp", "--", "srv"]) == 2  # two
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools: {read_file: fs.read}\nunmapped: allow\n")
    assert main([*base[:-1], str(bad), "--", "srv"]) == 2
    assert main([*base, "--attribute", "team", "--", "srv"]) == 2
    missing = ["--log", f"sqlite:///{tmp_path / 'typo.db'}"]
    assert main(["mcp-gateway", *missing, "--agent", "a1", "--map", str(mapping), "--", "srv"]) == 1
    assert not (tmp_path / "typo.db").exists()  # a mistyped log is never created
    err = capsys.readouterr().err
    assert "name one upstream" in err and "unmapped: expected" in err
    assert "KEY=VALUE" in err and "the log is not usable" in err


def test_no_decision_in_time_is_a_deny_and_nothing_reaches_the_upstream(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url, create=True) as log:
        ensure_topics(log)  # topics, but no enforcer answering
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    record = tmp_path / "upstream-calls.jsonl"
    upstream = [sys.executable, str(UPSTREAM), "--record", str(record)]
    options = ["--agent", "coder-9", "--attribute", "team=eng", "--timeout", "0.3"]
    with Agent(gateway_command(url, mapping, *options, upstream=upstream)) as agent:
        result = agent.call("read_file", {"path": "/workspace/ok.txt"})
    assert received(record) == []
    decision = ordinance(result)
    assert (decision["effect"], decision["code"], decision["client_side"]) == (
        "deny",
        "client_timeout",
        True,
    )
    assert "failing closed" in text(result)
