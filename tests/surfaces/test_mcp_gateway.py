"""The MCP gateway end to end: the SDK's own MCP client talks to ``ordinance mcp-gateway``
(a subprocess, over stdio), which starts a real upstream MCP server (``mcp_upstream.py``)
that records every call it receives, and decides every call with a real enforcer on the
embedded log enforcing the example policies.

What the upstream's record proves: allowed calls arrive with exactly the arguments that
were judged (the intent's args on the log); denied, unmapped, and approval-pending calls
never arrive — attacks through MCP arguments included."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import mcp_types as types
import pytest

from tests.surfaces.mcp_harness import (
    MAPPING,
    UPSTREAM,
    Agent,
    Stack,
    approve,
    enforcer,
    gateway_command,
    intents,
    new_log,
    ordinance,
    text,
)

AGENT = "coder-1"
META_KEY = "ordinance/decision"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("mcp-gateway")
    url = new_log(directory)
    mapping = directory / "mapping.yaml"
    mapping.write_text(MAPPING)
    record = directory / "upstream-calls.jsonl"
    upstream = [sys.executable, str(UPSTREAM), "--record", str(record)]
    options = ["--agent", AGENT, "--role", "billing", "--attribute", "team=eng", "--timeout", "20"]
    with (
        enforcer(url),
        Agent(gateway_command(url, mapping, *options, upstream=upstream)) as agent,
    ):
        yield Stack(url, record, agent)


def _wire(value: Any) -> Any:
    """A JSON value as the log carries it: a float is the exact decimal of its repr."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def test_lists_the_upstream_tools_it_governs(stack: Stack) -> None:
    # run_shell is upstream but unmapped: every call to it is refused, so it is not listed.
    assert stack.agent.tools() == [
        "read_file",
        "write_file",
        "delete_path",
        "transfer",
        "ordinance_approval_status",
    ]


ALLOWED = [
    ("read_file", "fs.read", {"path": "/workspace/src/main.py"}),
    ("write_file", "fs.write", {"path": "/workspace/notes.txt", "bytes": 9}),
    ("delete_path", "fs.delete", {"path": "/workspace/build/old.o"}),
    (
        "transfer",
        "payments.transfer",
        {"amount": 10.25, "currency": "EUR", "country": "DE", "iban": "DE89370400440532013000"},
    ),
]


def test_allowed_calls_reach_the_upstream_with_exactly_the_judged_arguments(stack: Stack) -> None:
    for name, policy_tool, args in ALLOWED:
        result, arrived = stack.call(name, args)
        assert not result.is_error, text(result)
        assert text(result) == f"done: {name}"  # the upstream's own result, passed through
        assert arrived == [{"tool": name, "arguments": args}]
        decision = (result.meta or {})[META_KEY]
        assert (decision["effect"], decision["policy_tool"]) == ("allow", policy_tool)
        # The intent the enforcer judged carried these very arguments.
        judged = intents(stack.url, AGENT)[decision["request_id"]]
        assert judged["action"]["tool"] == policy_tool
        assert judged["action"]["args"] == _wire(arrived[0]["arguments"])


# Each: the tool, the arguments, and the rule that must refuse it ([] where the value is
# refused as invalid before any rule matches). From the example policies' own bypass tests
# and the conformance corpus: traversal, encodings, ambiguous separators, spelling tricks.
ATTACKS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("read_file", {"path": "/workspace/.ssh/id_ed25519"}, ["filesystem-safety/deny-secrets"]),
    ("read_file", {"path": "/workspace/../etc/shadow"}, ["filesystem-safety/deny-system-paths"]),
    ("read_file", {"path": "/workspace/./.ssh/id_rsa"}, ["filesystem-safety/deny-secrets"]),
    ("read_file", {"path": "//workspace//.aws/credentials"}, ["filesystem-safety/deny-secrets"]),
    ("read_file", {"path": "\\workspace\\.ssh／id_ed25519"}, []),
    ("read_file", {"path": "/workspace/a\x00/../../etc/passwd"}, []),
    ("read_file", {"path": ["/workspace/ok.txt"]}, []),
    ("read_file", {}, []),
    # An argument the policy schema does not declare is refused, not passed through unjudged.
    ("write_file", {"path": "/workspace/x.sh", "bytes": 3, "content": "rm -rf /"}, []),
    (
        "write_file",
        {"path": "/workspace%2f..%2f..%2fetc%2fcron.d%2fx", "bytes": 10},
        ["filesystem-safety/no-changes-outside-workspace"],
    ),
    (
        "write_file",
        {"path": "/etc/profile.d/x%2f..%2f..%2f..%2fworkspace%2fevil.sh", "bytes": 10},
        ["filesystem-safety/deny-system-paths", "filesystem-safety/no-changes-outside-workspace"],
    ),
    (
        "write_file",
        {"path": "/tmp/payload.sh", "bytes": 120},
        ["filesystem-safety/no-changes-outside-workspace"],
    ),
    (
        "delete_path",
        {"path": "/workspace/.ssh/", "recursive": True},
        ["filesystem-safety/deny-secrets"],
    ),
    (
        "transfer",
        {"amount": 50, "currency": "usd", "country": "kp", "iban": "X"},
        ["payments-guardrails/block-sanctioned"],
    ),
    (
        "transfer",
        {"amount": 50, "currency": "USD", "country": "ＫＰ", "iban": "X"},
        ["payments-guardrails/block-sanctioned"],
    ),
    (
        "transfer",
        {"amount": 50, "currency": "USD", "country": " IR ", "iban": "X"},
        ["payments-guardrails/block-sanctioned"],
    ),
    (
        "transfer",
        {"amount": 50, "currency": "XBT", "country": "DE", "iban": "X"},
        ["payments-guardrails/currency-allowlist"],
    ),
    ("transfer", {"amount": "5e4", "currency": "EUR", "country": "FR", "iban": "X"}, []),
    ("transfer", {"amount": -5, "currency": "EUR", "country": "FR", "iban": "X"}, []),
    ("transfer", {"amount": True, "currency": "EUR", "country": "FR", "iban": "X"}, []),
]


@pytest.mark.parametrize(("name", "args", "rules"), ATTACKS, ids=[repr(a[1]) for a in ATTACKS])
def test_attacks_through_arguments_are_denied_and_never_reach_the_upstream(
    stack: Stack, name: str, args: dict[str, Any], rules: list[str]
) -> None:
    result, arrived = stack.call(name, args)
    assert arrived == []
    decision = ordinance(result)
    assert decision["effect"] == "deny" and not decision["client_side"], decision
    assert sorted(decision["rule_ids"]) == sorted(rules), decision
    assert decision["request_id"] in text(result)
    assert result.meta is not None and result.meta[META_KEY] == decision


def test_oversized_amounts_wait_for_a_human_and_never_reach_the_upstream(stack: Stack) -> None:
    args = {"amount": 25000, "currency": "EUR", "country": "FR", "iban": "X"}
    result, arrived = stack.call("transfer", args)
    assert arrived == []
    decision = ordinance(result)
    assert decision["effect"] == "require_approval", decision
    assert decision["rule_ids"] == ["payments-guardrails/large-needs-approval"]
    # Bigger still, in every JSON spelling: over the daily budget as well, so denied.
    for amount in (10.0**6, 10**30, "99999999999999999999.99"):
        result, arrived = stack.call("transfer", {**args, "amount": amount})
        assert arrived == []
        decision = ordinance(result)
        assert decision["effect"] == "deny", decision
        assert "payments-guardrails/daily-budget" in decision["rule_ids"]


@pytest.mark.parametrize("name", ["run_shell", "READ_FILE", "fs.read", "read_file "])
def test_unmapped_tools_are_refused_without_being_judged_or_forwarded(
    stack: Stack, name: str
) -> None:
    published = len(intents(stack.url, AGENT))
    result, arrived = stack.call(name, {"path": "/workspace/ok.txt", "cmd": "id"})
    assert arrived == []
    decision = ordinance(result)
    assert (decision["effect"], decision["code"]) == ("deny", "unmapped_tool")
    assert "not in the gateway's mapping" in text(result)
    assert len(intents(stack.url, AGENT)) == published  # nothing was put to the enforcer


def _check_back(stack: Stack, request_id: str) -> tuple[types.CallToolResult, list[Any]]:
    return stack.call("ordinance_approval_status", {"request_id": request_id})


def test_approval_then_check_back_runs_the_held_call_once(stack: Stack) -> None:
    args = {"path": "/workspace/build", "recursive": True}
    result, arrived = stack.call("delete_path", args)
    assert arrived == []
    asked = ordinance(result)
    assert asked["effect"] == "require_approval"
    assert asked["rule_ids"] == ["filesystem-safety/recursive-delete"]
    request_id = asked["request_id"]
    assert f"ordinance approvals approve {request_id}" in text(result)
    assert asked["check_back"] == {
        "tool": "ordinance_approval_status",
        "arguments": {"request_id": request_id},
    }

    result, arrived = _check_back(stack, request_id)  # nobody answered yet
    assert arrived == [] and ordinance(result)["effect"] == "require_approval"

    approve(stack.url, request_id)
    result, arrived = _check_back(stack, request_id)
    assert not result.is_error, text(result)
    assert arrived == [{"tool": "delete_path", "arguments": args}]
    decision = (result.meta or {})[META_KEY]
    assert (decision["effect"], decision["code"], decision["request_id"]) == (
        "allow",
        "approved",
        request_id,
    )

    result, arrived = _check_back(stack, request_id)  # one approval, one execution
    assert arrived == [] and result.is_error and "No call is held" in text(result)


def test_a_rejected_approval_never_reaches_the_upstream(stack: Stack) -> None:
    result, arrived = stack.call("delete_path", {"path": "/workspace/cache", "recursive": True})
    request_id = ordinance(result)["request_id"]
    approve(stack.url, request_id, yes=False)
    result, more = _check_back(stack, request_id)
    assert arrived == more == []
    decision = ordinance(result)
    assert (decision["effect"], decision["code"]) == ("deny", "approval_rejected")


def test_check_back_on_an_unknown_request_is_an_error(stack: Stack) -> None:
    for args in ({"request_id": "nope"}, {"request_id": 7}, {}):
        result = stack.agent.call("ordinance_approval_status", args)
        assert result.is_error and "No call is held" in text(result)
