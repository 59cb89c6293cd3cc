"""The MCP gateway: an MCP server in front of an upstream MCP server, deciding every call.

To the agent the gateway is an MCP server (stdio) listing the upstream's tools. Each
``tools/call`` becomes an intent through the ordinary agent client (`ordinance.client`):
the upstream tool name mapped to a policy tool by the mapping file (`mcp_mapping`), the
call's arguments as the action's args, signed with the agent's key when one is given.
There is no second decision path: what the enforcer answers is what happens.

* allow: the call goes to the upstream and its result comes back unchanged.
* deny (by a policy, or the client failing closed: timeout, log down, unsendable
  arguments): an MCP tool error (``isError``) carrying the reasons, code, rule ids and
  request id; the upstream never sees the call.
* require_approval: with ``approval_wait_s`` the gateway waits that long for a human's
  answer and forwards the call if approved. Otherwise (or when nobody answered in time)
  the agent gets a tool error saying approval is needed, with the request id, how a human
  answers (``ordinance approvals approve ID``) and how to check back: the gateway's own
  tool `APPROVAL_TOOL` runs the held call once an approval arrives — once, on exactly
  the arguments that were judged.

What is judged is what is executed: the arguments are copied once when the call arrives;
that copy is the intent's args and the very object forwarded to the upstream (its
fingerprint is checked again before forwarding). Nothing is re-parsed or re-derived
between the decision and the call. The agent's ``_meta`` is not forwarded.

Only tools are proxied: upstream resources and prompts are not exposed (they would be an
ungoverned channel), and nothing the upstream sends back is judged.
"""

from __future__ import annotations

import copy
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import mcp_types as types
from mcp.client.client import Client as UpstreamClient
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from ordinance import __version__
from ordinance.client import Client, ClientDecision
from ordinance.client.decision import client_deny
from ordinance.policy.decision import ALLOW, REQUIRE_APPROVAL
from ordinance.surfaces.mcp_listing import PolicyView, never_allowed
from ordinance.surfaces.mcp_mapping import ToolMapping

#: The gateway's own tool: run a call held for approval once a human approved it.
APPROVAL_TOOL = "ordinance_approval_status"
#: Where a call's decision travels in the result's ``_meta`` (refused and forwarded alike).
META_KEY = "ordinance/decision"
#: Code of a call the gateway refuses without asking: the tool is not in the mapping.
UNMAPPED = "unmapped_tool"
#: Code of an allowed call whose arguments changed between decision and forwarding.
ARGS_CHANGED = "gateway_args_changed"
#: Code of a call the upstream could not complete (the policy allowed it).
UPSTREAM_FAILED = "upstream_failed"
_GATEWAY_CODES = frozenset({UNMAPPED, ARGS_CHANGED})
_MAX_HELD = 1000  # calls held for approval; the oldest is forgotten past this
_CHECK_S = 0.5  # how long a check-back waits for an answer already on its way
_PAGES = 100  # most tools/list pages read from the upstream


def _say(message: str) -> None:
    # stdout is the MCP channel: everything for the operator goes to stderr.
    print(f"mcp-gateway: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Held:
    """A call waiting for a human: the decision and exactly what was judged."""

    name: str
    policy_tool: str
    args: dict[str, Any]
    fingerprint: str
    decision: ClientDecision


def _summary(decision: ClientDecision, name: str, policy_tool: str) -> dict[str, Any]:
    return {**decision.brief(), "tool": name, "policy_tool": policy_tool}


def _refusal(text: str, summary: Mapping[str, Any]) -> types.CallToolResult:
    # A tool error: the tool did not run. (Not a protocol error: the agent's model reads
    # tool errors and can change course; and an isError result is never checked against
    # the tool's output schema, which a refusal cannot satisfy.)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"ordinance": dict(summary)},
        is_error=True,
        _meta={META_KEY: dict(summary)},
    )


def denied_result(decision: ClientDecision, name: str, policy_tool: str) -> types.CallToolResult:
    summary = _summary(decision, name, policy_tool)
    why = "; ".join(r for r in decision.reasons if r) or decision.detail or "denied"
    rules = ", ".join(decision.rule_ids) or "none"
    if decision.code in _GATEWAY_CODES:
        source = "the gateway"
    elif decision.client_side:
        source = "the gateway (no decision from the enforcer: failing closed)"
    else:
        source = "policy"
    judged_as = f" (policy tool {policy_tool})" if policy_tool else ""
    text = (
        f"Denied by {source}: {why}. The tool {name}{judged_as} was not called."
        f" code: {decision.code or '-'}; rules: {rules}; request id: {decision.request_id or '-'}"
    )
    return _refusal(text, summary)


def approval_result(decision: ClientDecision, name: str, policy_tool: str) -> types.CallToolResult:
    summary = _summary(decision, name, policy_tool)
    summary["check_back"] = {
        "tool": APPROVAL_TOOL,
        "arguments": {"request_id": decision.request_id},
    }
    why = "; ".join(r for r in decision.reasons if r) or "the policy requires a human's approval"
    rules = ", ".join(decision.rule_ids) or "none"
    text = (
        f"Approval required: {why}. The tool {name} (policy tool {policy_tool}) has not run;"
        f" the call is held. request id: {decision.request_id}; rules: {rules}. A human"
        f" answers with `ordinance approvals approve {decision.request_id} --log LOG` (or"
        f" `reject`; `ordinance approvals list --log LOG` shows what waits). Then call the"
        f' tool {APPROVAL_TOOL} with {{"request_id": "{decision.request_id}"}}: it runs'
        " the held call once, if approved."
    )
    return _refusal(text, summary)


def _not_held(request_id: Any) -> types.CallToolResult:
    return types.CallToolResult(
        content=[
            types.TextContent(
                text=f"No call is held for approval under request id {request_id!r}"
                " (never asked here, already answered, or forgotten)."
            )
        ],
        is_error=True,
    )


def _fingerprint(args: Any) -> str:
    return repr(args)


class Gateway:
    """The handlers of the gateway's MCP server, over an ordinance client and an upstream
    MCP client session (both opened by the caller)."""

    def __init__(
        self,
        client: Client,
        upstream: UpstreamClient,
        mapping: ToolMapping,
        *,
        timeout_s: float,
        approval_wait_s: float = 0.0,
        policy_view: PolicyView | None = None,
    ) -> None:
        """``policy_view``: hide from ``tools/list`` the tools no rule in force can allow
        (`mcp_listing`); None lists every mapped tool."""
        self.client = client
        self.upstream = upstream
        self.mapping = mapping
        self.timeout_s = timeout_s
        self.approval_wait_s = approval_wait_s
        self.policy_view = policy_view
        self._held: OrderedDict[str, _Held] = OrderedDict()

    def server(self) -> Server[Any]:
        return Server(
            "ordinance-mcp-gateway",
            version=__version__,
            instructions=(
                "Every tool call is decided by Ordinance policy before it reaches the tool."
                f" Refused calls come back as tool errors; calls that need a human's approval"
                f" can be checked back on with {APPROVAL_TOOL}."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    # -- tools/list ----------------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        allowable = await self._allowable()
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_PAGES):
            page = await self.upstream.list_tools(cursor=cursor)
            for tool in page.tools:
                if tool.name == APPROVAL_TOOL:
                    _say(f"upstream tool {tool.name!r} is hidden: the name is the gateway's")
                elif self._shown(tool.name, allowable):
                    tools.append(tool)
            cursor = page.next_cursor
            if cursor is None:
                break
        tools.append(
            types.Tool(
                name=APPROVAL_TOOL,
                description=(
                    "Check on a tool call that needed a human's approval, by the request id"
                    " the refusal gave; runs the held call (once) if it was approved."
                ),
                input_schema={
                    "type": "object",
                    "properties": {"request_id": {"type": "string"}},
                    "required": ["request_id"],
                },
            )
        )
        return types.ListToolsResult(tools=tools)

    def _shown(self, name: str, allowable: frozenset[str] | None) -> bool:
        policy_tool = self.mapping.policy_tool(name)
        return policy_tool is not None and not never_allowed(policy_tool, allowable)

    async def _allowable(self) -> frozenset[str] | None:
        view = self.policy_view
        if view is None:
            return None
        try:
            return await anyio.to_thread.run_sync(view.allowable)
        except Exception as exc:  # a listing is a hint: when unsure, show
            _say(f"tools/list: cannot read the policy in force, hiding nothing: {exc}")
            return None

    # -- tools/call ----------------------------------------------------------------------

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name == APPROVAL_TOOL:
            return await self._check_back(params.arguments or {})
        return await self.decide_and_call(params.name, params.arguments)

    async def decide_and_call(
        self, name: str, arguments: Mapping[str, Any] | None
    ) -> types.CallToolResult:
        policy_tool = self.mapping.policy_tool(name)
        if policy_tool is None:
            refused = client_deny(
                UNMAPPED,
                f"the tool {name!r} is not in the gateway's mapping (unmapped tools are denied)",
                client_id=self.client.client_id,
            )
            _say(f"{name}: refused, not in the mapping")
            return denied_result(refused, name, "")
        # One copy, made now: it is both what is judged and what is forwarded.
        judged: dict[str, Any] = copy.deepcopy(dict(arguments or {}))
        fingerprint = _fingerprint(judged)
        decision = await self.client.decide(
            {"tool": policy_tool, "args": judged}, timeout=self.timeout_s
        )
        _say(
            f"{name} -> {policy_tool}: {decision.effect} ({decision.code or '-'})"
            f" request {decision.request_id}"
        )
        if decision.effect == REQUIRE_APPROVAL and self.approval_wait_s > 0:
            answered = await self.client.wait_for_approval(decision, timeout=self.approval_wait_s)
            if not answered.client_side:  # a human answered; else it stays pending
                _say(f"request {decision.request_id}: {answered.effect} ({answered.code})")
                decision = answered
        if decision.effect == REQUIRE_APPROVAL:
            self._hold(_Held(name, policy_tool, judged, fingerprint, decision))
            return approval_result(decision, name, policy_tool)
        if decision.effect != ALLOW:
            return denied_result(decision, name, policy_tool)
        return await self._forward(name, policy_tool, judged, fingerprint, decision)

    async def _forward(
        self,
        name: str,
        policy_tool: str,
        judged: dict[str, Any],
        fingerprint: str,
        decision: ClientDecision,
    ) -> types.CallToolResult:
        if _fingerprint(judged) != fingerprint:  # never expected; refuse rather than run it
            changed = client_deny(
                ARGS_CHANGED,
                "the arguments changed after they were judged",
                request_id=decision.request_id,
                client_id=self.client.client_id,
            )
            return denied_result(changed, name, policy_tool)
        try:
            result = await self.upstream.call_tool(name, judged, read_timeout_seconds=None)
        except Exception as exc:  # the policy allowed it; the upstream failed
            _say(f"{name}: upstream failed: {type(exc).__name__}: {exc}")
            summary = _summary(decision, name, policy_tool)
            summary["code"] = UPSTREAM_FAILED
            return _refusal(
                f"The policy allowed {name}, but the upstream server failed:"
                f" {type(exc).__name__}: {exc}. request id: {decision.request_id}",
                summary,
            )
        # The upstream's result as it came, plus which decision let the call through (the
        # request id finds it in the audit log).
        meta = {**(result.meta or {}), META_KEY: _summary(decision, name, policy_tool)}
        return result.model_copy(update={"meta": meta})

    # -- approvals -----------------------------------------------------------------------

    def _hold(self, held: _Held) -> None:
        self._held[held.decision.request_id] = held
        while len(self._held) > _MAX_HELD:
            self._held.popitem(last=False)

    async def _check_back(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        request_id = arguments.get("request_id")
        held = self._held.get(request_id) if isinstance(request_id, str) else None
        if held is None:
            return _not_held(request_id)
        wait = max(self.approval_wait_s, _CHECK_S)
        answered = await self.client.wait_for_approval(held.decision, timeout=wait)
        if answered.client_side:  # nobody answered yet: still held
            return approval_result(held.decision, held.name, held.policy_tool)
        # One answer, one execution at most: of two check-backs that both saw the answer,
        # only the one that takes the held call out runs it.
        if self._held.pop(held.decision.request_id, None) is not held:
            return _not_held(request_id)
        _say(f"request {request_id}: {answered.effect} ({answered.code})")
        if answered.effect != ALLOW:
            return denied_result(answered, held.name, held.policy_tool)
        return await self._forward(
            held.name, held.policy_tool, held.args, held.fingerprint, answered
        )


async def serve_stdio(
    client: Client,
    upstream_target: Any,
    mapping: ToolMapping,
    *,
    timeout_s: float,
    approval_wait_s: float = 0.0,
    policy_view: PolicyView | None = None,
) -> None:
    """Connect to the upstream (a `StdioServerParameters` or a streamable-HTTP URL), then
    serve MCP on this process's stdin/stdout until the agent closes it."""
    from mcp.server.stdio import stdio_server

    async with UpstreamClient(
        upstream_target,
        client_info=types.Implementation(name="ordinance-mcp-gateway", version=__version__),
    ) as upstream:
        gateway = Gateway(
            client,
            upstream,
            mapping,
            timeout_s=timeout_s,
            approval_wait_s=approval_wait_s,
            policy_view=policy_view,
        )
        server = gateway.server()
        _say(
            f"serving on stdio; upstream {upstream.server_info.name if upstream.server_info else '?'}"
        )
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
