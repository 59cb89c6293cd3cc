"""The LangChain adapter, behaviourally: a LangGraph agent with a scripted adversarial
model calls guarded tools (``@tool`` functions and a `BaseTool` subclass) against a real
enforcer; the bodies record that no denied call ran and that allowed calls ran on the very
objects that were judged. Plus what the model reads, and the adapter's edges."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated, Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool, ToolException, tool
from langgraph.prebuilt import InjectedState
from langgraph_agent import build_graph, scripted_model
from pydantic import BaseModel, ConfigDict

from ordinance.adapters.approvals import CHECK_BACK_TOOL
from ordinance.adapters.langchain import (
    HeldCalls,
    OrdinanceRefusal,
    approval_check_tool,
    guard_tool,
    guard_tools,
)
from ordinance.client import CLIENT_TIMEOUT, SyncClient

from .attacks import (
    AGENT,
    APPROVAL,
    DENY,
    INVALID,
    MAPPING,
    RAN,
    SCRIPT,
    UNSENDABLE,
    Recorder,
    approve,
    check_ran_exactly_what_was_judged,
)


class SpyClient(SyncClient):
    """The ordinary client, noting each request it is asked to decide."""

    def __init__(self, url: str, recorder: Recorder, **options: Any) -> None:
        super().__init__(url, **options)
        self.recorder = recorder

    def decide(self, action_or_request: Any, **kwargs: Any) -> Any:
        self.recorder.decided(action_or_request)
        return super().decide(action_or_request, **kwargs)


def tools(recorder: Recorder) -> list[BaseTool]:
    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        return recorder.body("read_file", path=path)

    @tool
    def transfer(amount: Decimal, currency: str, country: str, iban: str) -> str:
        """Transfer money."""
        return recorder.body(
            "transfer", amount=amount, currency=currency, country=country, iban=iban
        )

    @tool
    def fetch(url: str, method: str) -> str:
        """Fetch a URL."""
        return recorder.body("fetch", url=url, method=method)

    def send(to: list[str], subject: str, body: str, attachments: int = 0) -> str:
        """Send an email."""
        return recorder.body(
            "send_email", to=to, subject=subject, body=body, attachments=attachments
        )

    async def send_async(to: list[str], subject: str, body: str, attachments: int = 0) -> str:
        """Send an email."""
        return send(to, subject, body, attachments)

    # Sync and async bodies: a graph run with invoke calls one, with ainvoke the other.
    send_email = StructuredTool.from_function(func=send, coroutine=send_async, name="send_email")

    return [read_file, transfer, fetch, send_email]


def outcome(reply: ToolMessage) -> str:
    if reply.status != "error":
        return RAN
    text = str(reply.content)
    if "policy tool" not in text:  # not an Ordinance refusal: the framework's own error
        return INVALID
    if text.startswith("Approval required"):
        return APPROVAL
    return UNSENDABLE if "client_invalid_request" in text else DENY


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_adversarial_langgraph_agent_runs_only_what_is_allowed(
    pipeline_url: str, mode: str
) -> None:
    recorder = Recorder()
    calls = [(name, args) for name, args, _ in SCRIPT]
    with SpyClient(pipeline_url, recorder, agent_id=f"lc-{mode}", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tools(tools(recorder), mapping=MAPPING, client=client, timeout=10)
        graph = build_graph(scripted_model(calls), guarded)
        user = {"messages": [("user", "go")]}
        config = {"recursion_limit": 200}
        state = (
            graph.invoke(user, config)
            if mode == "sync"
            else asyncio.run(graph.ainvoke(user, config))
        )
    replies = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [outcome(r) for r in replies] == [expected for _, _, expected in SCRIPT]
    check_ran_exactly_what_was_judged(recorder)
    # What the model reads names the rule and the request, so it can change course.
    traversal = str(replies[1].content)
    assert "filesystem-safety/deny-system-paths" in traversal and "request id: " in traversal
    assert "was not called" in traversal
    fullwidth_country = str(replies[9].content)
    assert "payments-guardrails/block-sanctioned" in fullwidth_country
    approval = str(replies[[e for _, _, e in SCRIPT].index(APPROVAL)].content)
    assert "ordinance approvals approve" in approval and "large-needs-approval" in approval


class RefundArgs(BaseModel):
    model_config = ConfigDict(extra="allow")  # a lenient schema: undeclared keys get through

    amount: Decimal
    currency: str
    charge_id: str


class RefundTool(BaseTool):
    """A BaseTool subclass (not @tool) whose schema lets undeclared arguments through."""

    name: str = "refund"
    description: str = "Refund a charge."
    args_schema: type[BaseModel] = RefundArgs
    recorder: Any = None

    def _run(self, amount: Decimal, currency: str, charge_id: str, **extra: Any) -> str:
        return str(
            self.recorder.body(
                "refund", amount=amount, currency=currency, charge_id=charge_id, **extra
            )
        )


def test_base_tool_subclass_undeclared_arguments_and_unknown_names(pipeline_url: str) -> None:
    recorder = Recorder()
    refund = RefundTool(recorder=recorder)
    ok = {"amount": "5", "currency": "eur", "charge_id": "ch_1"}
    calls = [
        ("refund", ok),
        ("refund", {**ok, "override": True}),  # undeclared: the policy schema refuses it
        ("REFUND", ok),  # no such tool: LangGraph answers with an error, nothing runs
    ]
    with SpyClient(pipeline_url, recorder, agent_id="lc-refund", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tool(refund, policy_tool="payments.refund", client=client, timeout=10)
        assert guarded.name == "refund" and guarded.tool_call_schema is refund.tool_call_schema
        state = build_graph(scripted_model(calls), [guarded]).invoke({"messages": [("user", "go")]})
    replies = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [r.status for r in replies] == ["success", "error", "error"]
    assert "override" in str(replies[1].content) or "invalid" in str(replies[1].content)
    assert [name for name, _ in recorder.ran] == ["refund"]
    (_, ran), (_, judged) = recorder.ran[0], recorder.judged[0]
    assert ran.keys() == judged.keys() and all(ran[k] is judged[k] for k in ran)


def test_canonical_arguments_run_what_the_enforcer_judged(pipeline_url: str) -> None:
    recorder = Recorder()
    with SyncClient(pipeline_url, agent_id="lc-canonical", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tool(
            tools(recorder)[1],
            policy_tool="payments.transfer",
            client=client,
            use_canonical_args=True,
        )
        guarded.invoke({"amount": "50", "currency": " eur ", "country": "ｄｅ", "iban": "DE89"})
    assert recorder.ran == [
        ("transfer", {"amount": Decimal("50"), "currency": "eur", "country": "de", "iban": "DE89"})
    ]


def test_refusals_raise_when_asked_and_no_answer_is_a_deny(tmp_path: Any) -> None:
    from ordinance.streams import open_log
    from ordinance.streams.topics import ensure_topics

    url = f"sqlite:///{tmp_path / 'silent.db'}"  # topics, and no enforcer answering
    with open_log(url, create=True) as log:
        ensure_topics(log)
    recorder = Recorder()
    with SyncClient(url, agent_id="lc-silent", **AGENT) as client:  # type: ignore[arg-type]
        raising = guard_tool(
            tools(recorder)[0],
            policy_tool="fs.read",
            client=client,
            timeout=0.2,
            raise_refusals=True,
        )
        with pytest.raises(OrdinanceRefusal) as refused:
            raising.invoke({"path": "/workspace/a"})
        assert refused.value.decision.code == CLIENT_TIMEOUT
        assert refused.value.summary["client_side"] is True
        assert isinstance(refused.value, ToolException)
        quiet = guard_tool(tools(recorder)[0], policy_tool="fs.read", client=client, timeout=0.2)
        reply = quiet.invoke(
            {"name": "read_file", "args": {"path": "/workspace/a"}, "id": "1", "type": "tool_call"}
        )
        assert reply.status == "error" and "failing closed" in reply.content
    assert recorder.ran == []


def test_unmapped_tools_are_refused_at_wrapping() -> None:
    with pytest.raises(ValueError, match="read_file"):
        guard_tools(tools(Recorder())[:1], mapping={}, client=None)  # type: ignore[arg-type]


def test_a_held_call_runs_once_after_approval_on_the_judged_arguments(pipeline_url: str) -> None:
    recorder = Recorder()
    with SpyClient(pipeline_url, recorder, agent_id="lc-approval", **AGENT) as client:  # type: ignore[arg-type]
        held = HeldCalls(client)
        transfer = guard_tool(
            tools(recorder)[1], policy_tool="payments.transfer", client=client, approvals=held
        )
        check = approval_check_tool(held)

        def call(t: BaseTool, args: dict[str, Any]) -> ToolMessage:
            reply = t.invoke({"name": t.name, "args": args, "id": "c", "type": "tool_call"})
            assert isinstance(reply, ToolMessage)
            return reply

        big = {"amount": "25000", "country": "FR", "currency": "EUR", "iban": "DE89"}
        asked = call(transfer, big)
        assert asked.status == "error" and CHECK_BACK_TOOL in str(asked.content)
        (request_id,) = held._held
        assert request_id in str(asked.content)
        waiting = call(check, {"request_id": request_id})
        assert waiting.status == "error" and "Still waiting" in str(waiting.content)
        assert recorder.ran == []
        approve(pipeline_url, request_id)
        ran = call(check, {"request_id": request_id})
        assert ran.status == "success" and ran.content == "transfer done"
        again = call(check, {"request_id": request_id})
        assert again.status == "error" and "No call is held" in str(again.content)
        # The held call ran once, on the objects judged when it was first asked.
        assert len(recorder.ran) == 1
        (_, body_args), (_, judged) = recorder.ran[0], recorder.judged[0]
        assert all(body_args[k] is judged[k] for k in judged)
        # A rejection drops the held call; the model reads who rejected it.
        asked = call(transfer, {**big, "amount": "12000"})  # within the daily budget
        (request_id,) = held._held
        approve(pipeline_url, request_id, yes=False)
        refused = asyncio.run(
            check.ainvoke(
                {
                    "name": check.name,
                    "args": {"request_id": request_id},
                    "id": "c",
                    "type": "tool_call",
                }
            )
        )
        assert refused.status == "error" and "rejected by dana" in str(refused.content)
    assert len(recorder.ran) == 1


def test_injected_arguments_reach_the_body_but_are_not_judged(pipeline_url: str) -> None:
    """LangGraph injects the graph state and the tool call id; they are not the model's
    arguments, so the policy (whose schema is strict) never sees them, and the body does."""
    recorder = Recorder()
    seen: list[tuple[int, str]] = []

    @tool
    def read_file(
        path: str,
        state: Annotated[dict[str, Any], InjectedState],
        tool_call_id: Annotated[str, InjectedToolCallId],
    ) -> str:
        """Read a file."""
        seen.append((len(state["messages"]), tool_call_id))
        return recorder.body("read_file", path=path)

    with SpyClient(pipeline_url, recorder, agent_id="lc-injected", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tool(read_file, policy_tool="fs.read", client=client)
        assert set(guarded.tool_call_schema.model_json_schema()["properties"]) == {"path"}
        calls = [
            ("read_file", {"path": "/workspace/a.txt"}),
            ("read_file", {"path": "/etc/passwd"}),
        ]
        state = build_graph(scripted_model(calls), [guarded]).invoke({"messages": [("user", "go")]})
    replies = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [r.status for r in replies] == ["success", "error"]
    assert recorder.judged == [
        ("fs.read", {"path": "/workspace/a.txt"}),
        ("fs.read", {"path": "/etc/passwd"}),
    ]
    assert recorder.ran == [("read_file", {"path": "/workspace/a.txt"})]
    assert seen == [(2, "call-0")]


def test_an_optional_argument_left_out_or_null_is_absent(pipeline_url: str) -> None:
    """LangChain fills in a None default; the policy sees the argument absent (its schema
    says ``memo?: string``: null would be invalid) and the body still gets its None."""
    recorder = Recorder()

    @tool
    def transfer(
        amount: Decimal, currency: str, country: str, iban: str, memo: str | None = None
    ) -> str:
        """Transfer money."""
        return recorder.body("transfer", amount=amount, memo=memo)

    with SpyClient(pipeline_url, recorder, agent_id="lc-memo", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tool(transfer, policy_tool="payments.transfer", client=client)
        pay = {"amount": "50", "currency": "EUR", "country": "DE", "iban": "DE89"}
        assert guarded.invoke(pay) == "transfer done"
        assert guarded.invoke({**pay, "memo": None}) == "transfer done"
        assert guarded.invoke({**pay, "memo": "rent"}) == "transfer done"
    assert [args["memo"] for _, args in recorder.ran] == [None, None, "rent"]
    assert ["memo" in judged for _, judged in recorder.judged] == [False, False, True]


def test_the_mcp_gateways_mapping_file_maps_tools_too(tmp_path: Any) -> None:
    from ordinance.surfaces.mcp_mapping import ToolMapping

    path = tmp_path / "map.yaml"
    path.write_text(
        "version: 1\ntools: {read_file: fs.read}\nunmapped: decide\nunmapped_prefix: lc.\n"
    )
    guarded = guard_tools(tools(Recorder())[:2], mapping=ToolMapping.from_file(path), client=None)  # type: ignore[arg-type]
    assert [g.policy_tool for g in guarded] == ["fs.read", "lc.transfer"]
    path.write_text("version: 1\ntools: {read_file: fs.read}\n")
    with pytest.raises(ValueError, match="transfer"):
        guard_tools(tools(Recorder())[:2], mapping=ToolMapping.from_file(path), client=None)  # type: ignore[arg-type]


def test_approval_timeout_waits_for_the_human_and_then_runs(pipeline_url: str) -> None:
    """With approval_timeout the call waits inside the tool (guard's own wait): a human
    approves meanwhile, and the body runs once, on the judged objects."""
    import threading
    import time

    from ordinance.processors.approvals import pending_approvals
    from ordinance.streams import open_log

    recorder = Recorder()
    stop = threading.Event()

    def human() -> None:
        with open_log(pipeline_url) as log:
            while not stop.is_set():
                mine = [d for d in pending_approvals(log) if d["agent_id"] == "lc-waits"]
                if mine:
                    approve(pipeline_url, mine[0]["request_id"])
                    return
                time.sleep(0.05)

    approver = threading.Thread(target=human, daemon=True)
    approver.start()
    try:
        with SpyClient(pipeline_url, recorder, agent_id="lc-waits", **AGENT) as client:  # type: ignore[arg-type]
            transfer = guard_tool(
                tools(recorder)[1],
                policy_tool="payments.transfer",
                client=client,
                approval_timeout=20,
            )
            big = {"amount": "25000", "country": "FR", "currency": "EUR", "iban": "DE89"}
            assert transfer.invoke(big) == "transfer done"
    finally:
        stop.set()
        approver.join()
    (_, body_args), (_, judged) = recorder.ran[0], recorder.judged[0]
    assert len(recorder.ran) == 1 and all(body_args[k] is judged[k] for k in judged)


def test_a_single_string_tool_is_judged_under_its_one_argument(pipeline_url: str) -> None:
    """A classic `Tool` takes one string; it is sent under the tool's one argument name
    (here ``tool_input``; fs.read wants ``path``: the strict schema denies it)."""
    from langchain_core.tools import Tool

    recorder = Recorder()
    search = Tool(name="search", description="Search.", func=lambda q: recorder.body("search", q=q))
    with SpyClient(pipeline_url, recorder, agent_id="lc-string", **AGENT) as client:  # type: ignore[arg-type]
        guarded = guard_tool(search, policy_tool="fs.read", client=client)
        reply = guarded.invoke(
            {"name": "search", "args": {"__arg1": "x"}, "id": "1", "type": "tool_call"}
        )
    assert recorder.judged == [("fs.read", {"tool_input": "x"})]
    assert reply.status == "error" and "invalid_request" in reply.content
    assert recorder.ran == []
