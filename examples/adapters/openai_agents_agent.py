"""An OpenAI Agents SDK agent whose function tools Ordinance decides before they run.

The model is scripted (the SDK's own `agents.testing.ScriptedModel`, a `Model` that
returns the tool calls it is given; no network, no API key): it asks for a workspace file,
then tries a percent-encoded traversal, a transfer to a sanctioned country in another
case, a small transfer and a large one. Each tool is
`ordinance.adapters.openai_agents.guarded_function_tool`, deciding through the ordinary
client against a real enforcer (examples/policies on an embedded log, `local_pipeline`);
the tool bodies run only for what is allowed.

    python examples/adapters/openai_agents_agent.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, RunConfig, Runner
from agents.items import ToolCallOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_pipeline import local_pipeline

from ordinance.adapters.openai_agents import (
    HeldCalls,
    approval_check_tool,
    guarded_function_tool,
)
from ordinance.client import Client

AGENT = {"agent_id": "assistant-2", "roles": ["billing"], "attributes": {"team": "eng"}}
PAY = {"currency": "EUR", "iban": "DE89370400440532013000"}

# What the scripted model asks for, one tool call per turn.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "/workspace/README.md"}),
    ("read_file", {"path": "/workspace%2f..%2fetc%2fpasswd"}),
    ("transfer", {"amount": "10", "country": "Ir", **PAY}),
    ("transfer", {"amount": "50", "country": "DE", **PAY}),
    ("transfer", {"amount": "25000", "country": "FR", **PAY}),
]


def scripted_model(calls: Sequence[tuple[str, dict[str, Any]]]) -> ScriptedModel:
    turns: list[Any] = [
        [function_call(name, args, call_id=f"call-{i}")] for i, (name, args) in enumerate(calls)
    ]
    return ScriptedModel([*turns, [assistant_message("Done.")]])


class Workspace:
    """The real tool bodies; each records the exact arguments it ran with."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def tools(self, client: Client) -> list[FunctionTool]:
        # Calls that need a human are held; the model can check back on them by request id.
        held = HeldCalls(client)

        @guarded_function_tool(policy_tool="fs.read", client=client, timeout=10)
        def read_file(path: str) -> str:
            """Read a file from the agent's workspace."""
            self.ran.append(("read_file", {"path": path}))
            return f"<contents of {path}>"

        @guarded_function_tool(
            policy_tool="payments.transfer", client=client, timeout=10, approvals=held
        )
        async def transfer(amount: Decimal, currency: str, country: str, iban: str) -> str:
            """Transfer money to a bank account."""
            self.ran.append(
                (
                    "transfer",
                    {"amount": amount, "currency": currency, "country": country, "iban": iban},
                )
            )
            return "transfer accepted: tx-1"

        return [read_file, transfer, approval_check_tool(held)]  # type: ignore[list-item]


async def run(
    url: str, calls: Sequence[tuple[str, dict[str, Any]]], workspace: Workspace
) -> list[str]:
    """Drive the scripted agent; the tool results the model read, in order."""
    async with Client(url, **AGENT) as client:  # type: ignore[arg-type]
        agent = Agent(
            name="bookkeeper",
            instructions="Keep the books.",
            model=scripted_model(calls),
            tools=list(workspace.tools(client)),
        )
        result = await Runner.run(
            agent,
            "Tidy up the books.",
            max_turns=len(calls) + 2,
            run_config=RunConfig(tracing_disabled=True),
        )
    return [str(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def main() -> None:
    workspace = Workspace()
    with local_pipeline() as url:
        replies = asyncio.run(run(url, SCRIPT, workspace))
    for (name, args), reply in zip(SCRIPT, replies, strict=True):
        print(f"agent tried {name}({json.dumps(args, ensure_ascii=False)})")
        print(f"  the model reads: {reply}")
    print(f"tool bodies ran {len(workspace.ran)} times: {workspace.ran}")


if __name__ == "__main__":
    main()
