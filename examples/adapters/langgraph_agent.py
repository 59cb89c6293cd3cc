"""A LangGraph agent whose LangChain tools Ordinance decides before they run.

The model is scripted (LangChain's GenericFakeChatModel, no network): it asks for a
workspace file, then tries a path traversal, a transfer to a sanctioned country spelled in
full-width letters, a small transfer and a large one. Every call goes through
`ordinance.adapters.langchain.guard_tool` to a real enforcer (examples/policies on an
embedded log, `local_pipeline`); the tool bodies run only for what is allowed.

    python examples/adapters/langgraph_agent.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_pipeline import local_pipeline

from ordinance.adapters.langchain import HeldCalls, approval_check_tool, guard_tools
from ordinance.client import SyncClient

AGENT = {"agent_id": "assistant-1", "roles": ["billing"], "attributes": {"team": "eng"}}
MAPPING = {"read_file": "fs.read", "transfer": "payments.transfer"}
PAY = {"currency": "EUR", "iban": "DE89370400440532013000"}

# What the scripted model asks for, one tool call per turn.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "/workspace/README.md"}),
    ("read_file", {"path": "/workspace/../etc/shadow"}),
    ("transfer", {"amount": "10", "country": "ｋｐ", **PAY}),
    ("transfer", {"amount": "50", "country": "DE", **PAY}),
    ("transfer", {"amount": "25000", "country": "FR", **PAY}),
]


class ScriptedChatModel(GenericFakeChatModel):
    """GenericFakeChatModel answers from its iterator; binding tools changes nothing."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


def scripted_model(calls: Sequence[tuple[str, dict[str, Any]]]) -> ScriptedChatModel:
    def turns() -> Iterator[AIMessage]:
        for i, (name, args) in enumerate(calls):
            yield AIMessage(
                content="", tool_calls=[{"name": name, "args": args, "id": f"call-{i}"}]
            )
        yield AIMessage(content="Done.")

    return ScriptedChatModel(messages=turns())


class Workspace:
    """The real tool bodies; each records the exact arguments it ran with."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def tools(self) -> list[BaseTool]:
        @tool
        def read_file(path: str) -> str:
            """Read a file from the agent's workspace."""
            self.ran.append(("read_file", {"path": path}))
            return f"<contents of {path}>"

        @tool
        def transfer(amount: Decimal, currency: str, country: str, iban: str) -> str:
            """Transfer money to a bank account."""
            self.ran.append(
                (
                    "transfer",
                    {"amount": amount, "currency": currency, "country": country, "iban": iban},
                )
            )
            return "transfer accepted: tx-1"

        return [read_file, transfer]


def build_graph(model: Any, tools: Sequence[BaseTool]) -> Any:
    """model -> (tool calls?) -> tools -> model ... : the usual LangGraph tool loop."""

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile()


def run(
    url: str, calls: Sequence[tuple[str, dict[str, Any]]], workspace: Workspace
) -> list[ToolMessage]:
    """Drive the scripted agent; the tool messages the model read, in order."""
    with SyncClient(url, **AGENT) as client:  # type: ignore[arg-type]
        # Calls that need a human are held; the model can check back on them by request id.
        held = HeldCalls(client)
        tools = guard_tools(
            workspace.tools(), mapping=MAPPING, client=client, timeout=10, approvals=held
        )
        graph = build_graph(scripted_model(calls), [*tools, approval_check_tool(held)])
        state = graph.invoke(
            {"messages": [("user", "Tidy up the books.")]}, {"recursion_limit": 100}
        )
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def main() -> None:
    workspace = Workspace()
    with local_pipeline() as url:
        replies = run(url, SCRIPT, workspace)
    for (name, args), reply in zip(SCRIPT, replies, strict=True):
        print(f"agent tried {name}({json.dumps(args, ensure_ascii=False)})")
        if reply.status == "error":
            print(f"  Ordinance refused; the model reads: {reply.content}")
        else:
            print(f"  Ordinance allowed; the tool returned: {reply.content}")
    print(f"tool bodies ran {len(workspace.ran)} times: {workspace.ran}")


if __name__ == "__main__":
    main()
