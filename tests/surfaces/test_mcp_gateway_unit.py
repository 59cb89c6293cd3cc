"""The gateway's handlers in process, with a scripted client and upstream: the races and
faults that the end-to-end tests cannot stage on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mcp_types as types

from ordinance.client import ClientDecision
from ordinance.client.decision import CLIENT_TIMEOUT, client_deny
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.surfaces.mcp_gateway import APPROVAL_TOOL, Gateway
from ordinance.surfaces.mcp_listing import allowable_tools, never_allowed
from ordinance.surfaces.mcp_mapping import ToolMapping

MAPPING = ToolMapping.from_mapping({"tools": {"delete_path": "fs.delete", "read_file": "fs.read"}})


def _decision(effect: str, code: str = "matched", request_id: str = "r1") -> ClientDecision:
    return ClientDecision(
        effect, ("p/r",), ("why",), (), "sha256:b", code, "", request_id=request_id,
        approval_ticket="t1" if effect == "require_approval" else None,
    )  # fmt: skip


class ScriptedClient:
    client_id = "scripted"

    def __init__(self, effect: str, answer: ClientDecision | None = None, mutate: bool = False):
        self.effect, self.answer, self.mutate = effect, answer, mutate
        self.asked: list[dict[str, Any]] = []

    async def decide(self, request: dict[str, Any], *, timeout: float) -> ClientDecision:
        self.asked.append(request)
        if self.mutate:  # a bug somewhere between judging and forwarding
            request["args"]["path"] = "/etc/shadow"
        return _decision(self.effect)

    async def wait_for_approval(
        self, decision: ClientDecision, *, timeout: float
    ) -> ClientDecision:
        await asyncio.sleep(0.01)
        return self.answer or client_deny(CLIENT_TIMEOUT, "nobody answered")


class RecordingUpstream:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(
        self, name: str, arguments: dict[str, Any], **_: Any
    ) -> types.CallToolResult:
        self.calls.append((name, arguments))
        return types.CallToolResult(content=[types.TextContent(text="done")])


def _call(gateway: Gateway, name: str, args: dict[str, Any]) -> types.CallToolResult:
    params = types.CallToolRequestParams(name=name, arguments=args)
    return asyncio.run(gateway.call_tool(None, params))  # type: ignore[arg-type]


def test_the_forwarded_object_is_the_judged_object() -> None:
    client, upstream = ScriptedClient("allow"), RecordingUpstream()
    gateway = Gateway(client, upstream, MAPPING, timeout_s=1)  # type: ignore[arg-type]
    result = _call(gateway, "read_file", {"path": "/workspace/a"})
    assert not result.is_error
    [(name, forwarded)] = upstream.calls
    assert name == "read_file" and forwarded is client.asked[0]["args"]


def test_arguments_changed_after_judging_are_refused() -> None:
    client, upstream = ScriptedClient("allow", mutate=True), RecordingUpstream()
    gateway = Gateway(client, upstream, MAPPING, timeout_s=1)  # type: ignore[arg-type]
    result = _call(gateway, "read_file", {"path": "/workspace/a"})
    assert result.is_error and upstream.calls == []
    assert result.structured_content["ordinance"]["code"] == "gateway_args_changed"


def test_two_check_backs_on_one_approval_run_the_call_once() -> None:
    approved = _decision("allow", "approved")
    client, upstream = ScriptedClient("require_approval", approved), RecordingUpstream()
    gateway = Gateway(client, upstream, MAPPING, timeout_s=1)  # type: ignore[arg-type]
    asked = _call(gateway, "delete_path", {"path": "/workspace/b", "recursive": True})
    assert asked.is_error and upstream.calls == []

    async def both() -> list[types.CallToolResult]:
        params = types.CallToolRequestParams(name=APPROVAL_TOOL, arguments={"request_id": "r1"})
        return list(
            await asyncio.gather(gateway.call_tool(None, params), gateway.call_tool(None, params))  # type: ignore[arg-type]
        )

    results = asyncio.run(both())
    assert sorted(r.is_error for r in results) == [False, True]
    assert upstream.calls == [("delete_path", {"path": "/workspace/b", "recursive": True})]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def test_only_tools_no_rule_in_force_can_allow_are_hidden() -> None:
    files = read_bundle_dir(EXAMPLES)
    allowable = allowable_tools(compile_bundle(files))
    assert allowable is not None and "payments.transfer" in allowable
    assert not never_allowed("Payments.TRANSFER", allowable)  # judged canonically
    assert never_allowed("mcp.run_shell", allowable)  # outside the schema: always denied
    assert not never_allowed("mcp.run_shell", None)  # unsure: shown
    permissive = dict(files)
    permissive["schema.yaml"] = files["schema.yaml"].replace(
        "default_effect: deny", "default_effect: allow"
    )
    assert permissive != files
    assert allowable_tools(compile_bundle(permissive)) is None
