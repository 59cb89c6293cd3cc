"""The OpenAI Agents SDK adapter, behaviourally: an agent run by the SDK's own `Runner`
with a scripted adversarial model (`agents.testing.ScriptedModel`) calls guarded function
tools against a real enforcer; the bodies record that no denied call ran and that allowed
calls ran on the very objects that were judged. Plus what the model reads, and the edges."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, FunctionTool, RunConfig, RunContextWrapper, Runner
from agents.items import ToolCallOutputItem
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from openai_agents_agent import scripted_model

from ordinance.adapters.approvals import CHECK_BACK_TOOL
from ordinance.adapters.openai_agents import (
    HeldCalls,
    approval_check_tool,
    guarded_function_tool,
)
from ordinance.client import Client

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


class SpyClient(Client):
    """The ordinary client, noting each request it is asked to decide."""

    def __init__(self, url: str, recorder: Recorder, **options: Any) -> None:
        super().__init__(url, **options)
        self.recorder = recorder

    async def decide(self, action_or_request: Any, **kwargs: Any) -> Any:
        self.recorder.decided(action_or_request)
        return await super().decide(action_or_request, **kwargs)

    def decide_sync(self, action_or_request: Any, **kwargs: Any) -> Any:
        self.recorder.decided(action_or_request)
        return super().decide_sync(action_or_request, **kwargs)


def tools(recorder: Recorder, client: Client) -> list[FunctionTool]:
    def guarded(name: str) -> Any:
        return guarded_function_tool(policy_tool=MAPPING[name], client=client, timeout=10)

    @guarded("read_file")
    def read_file(path: str) -> str:  # sync: the SDK runs it in a thread
        """Read a file."""
        return recorder.body("read_file", path=path)

    @guarded("transfer")
    async def transfer(amount: Decimal, currency: str, country: str, iban: str) -> str:
        """Transfer money."""
        return recorder.body(
            "transfer", amount=amount, currency=currency, country=country, iban=iban
        )

    @guarded("fetch")
    def fetch(ctx: RunContextWrapper[Any], url: str, method: str) -> str:
        """Fetch a URL (takes the run context, which is not a tool argument)."""
        assert isinstance(ctx, RunContextWrapper)
        return recorder.body("fetch", url=url, method=method)

    @guarded("send_email")
    async def send_email(to: list[str], subject: str, body: str, attachments: int = 0) -> str:
        """Send an email."""
        return recorder.body(
            "send_email", to=to, subject=subject, body=body, attachments=attachments
        )

    return [read_file, transfer, fetch, send_email]  # type: ignore[list-item]


def outcome(text: str) -> str:
    if "policy tool" not in text:
        return RAN if text.endswith(" done") else INVALID
    if text.startswith("Approval required"):
        return APPROVAL
    return UNSENDABLE if "client_invalid_request" in text else DENY


async def run_agent(
    url: str, recorder: Recorder, calls: list[tuple[str, dict[str, Any]]]
) -> list[str]:
    async with SpyClient(url, recorder, agent_id="oa-agent", **AGENT) as client:  # type: ignore[arg-type]
        agent = Agent(
            name="adversary",
            instructions="-",
            model=scripted_model(calls),
            tools=list(tools(recorder, client)),
        )
        result = await Runner.run(
            agent, "go", max_turns=len(calls) + 2, run_config=RunConfig(tracing_disabled=True)
        )
    return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]


def test_an_adversarial_agents_sdk_agent_runs_only_what_is_allowed(pipeline_url: str) -> None:
    recorder = Recorder()
    replies = asyncio.run(run_agent(pipeline_url, recorder, [(n, a) for n, a, _ in SCRIPT]))
    assert [outcome(r) for r in replies] == [expected for _, _, expected in SCRIPT]
    check_ran_exactly_what_was_judged(recorder)
    traversal = replies[1]
    assert "filesystem-safety/deny-system-paths" in traversal and "request id: " in traversal
    assert "was not called" in traversal
    assert "payments-guardrails/block-sanctioned" in replies[9]
    approval = replies[[e for _, _, e in SCRIPT].index(APPROVAL)]
    assert "ordinance approvals approve" in approval and "large-needs-approval" in approval


def test_the_run_context_is_not_judged_and_canonical_arguments_run(pipeline_url: str) -> None:
    ran: list[dict[str, Any]] = []

    async def go() -> list[str]:
        async with Client(pipeline_url, agent_id="oa-canonical", **AGENT) as client:  # type: ignore[arg-type]

            @guarded_function_tool(
                policy_tool="payments.transfer",
                client=client,
                use_canonical_args=True,
                name_override="pay",
            )
            def transfer(
                ctx: RunContextWrapper[Any], amount: Decimal, currency: str, country: str, iban: str
            ) -> str:
                """Transfer money."""
                ran.append(
                    {"amount": amount, "currency": currency, "country": country, "iban": iban}
                )
                return "paid"

            assert "ctx" not in transfer.params_json_schema["properties"]
            args = {"amount": "50", "currency": " eur ", "country": "ｄｅ", "iban": "DE89"}
            agent = Agent(name="a", model=scripted_model([("pay", args)]), tools=[transfer])
            result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
        return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]

    assert asyncio.run(go()) == ["paid"]
    assert ran == [{"amount": Decimal("50"), "currency": "eur", "country": "de", "iban": "DE89"}]


def test_no_answer_is_a_refusal_and_the_tools_own_errors_keep_their_handler(tmp_path: Any) -> None:
    from ordinance.streams import open_log
    from ordinance.streams.topics import ensure_topics

    url = f"sqlite:///{tmp_path / 'silent.db'}"  # topics, and no enforcer answering
    with open_log(url, create=True) as log:
        ensure_topics(log)
    ran: list[str] = []

    async def go() -> list[str]:
        async with Client(url, agent_id="oa-silent", **AGENT) as client:  # type: ignore[arg-type]

            @guarded_function_tool(policy_tool="fs.read", client=client, timeout=0.2)
            def read_file(path: str) -> str:
                """Read a file."""
                ran.append(path)
                return "contents"

            agent = Agent(
                name="a",
                model=scripted_model([("read_file", {"path": "/workspace/a"})]),
                tools=[read_file],
            )
            result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
        return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]

    (reply,) = asyncio.run(go())
    assert ran == []
    assert "failing closed" in reply and "client_timeout" in reply


@pytest.mark.parametrize("failure", [None, "custom"])
def test_the_tools_own_errors_are_formatted_as_function_tool_would(
    pipeline_url: str, failure: Any
) -> None:
    def formatter(ctx: Any, error: Exception) -> str:
        return f"tool failed: {error}"

    async def go() -> list[str]:
        async with Client(pipeline_url, agent_id="oa-errors", **AGENT) as client:  # type: ignore[arg-type]

            @guarded_function_tool(
                policy_tool="fs.read",
                client=client,
                failure_error_function=None if failure is None else formatter,
            )
            def read_file(path: str) -> str:
                """Read a file."""
                raise OSError("disk on fire")

            agent = Agent(
                name="a",
                model=scripted_model([("read_file", {"path": "/workspace/a"})]),
                tools=[read_file],
            )
            result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
        return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]

    if failure is None:
        with pytest.raises(Exception, match="disk on fire"):
            asyncio.run(go())
    else:
        assert asyncio.run(go()) == ["tool failed: disk on fire"]


def test_a_held_call_runs_once_after_approval_on_the_judged_arguments(pipeline_url: str) -> None:
    """The model asks for a large transfer, checks back before and after a human approves
    (the approval is published while the scripted model 'thinks'), then checks back again."""
    recorder = Recorder()
    big = {"amount": "25000", "country": "FR", "currency": "EUR", "iban": "DE89"}

    async def go() -> list[str]:
        async with SpyClient(pipeline_url, recorder, agent_id="oa-approval", **AGENT) as client:  # type: ignore[arg-type]
            held = HeldCalls(client)

            @guarded_function_tool(policy_tool="payments.transfer", client=client, approvals=held)
            def transfer(amount: Decimal, currency: str, country: str, iban: str) -> str:
                """Transfer money."""
                return recorder.body(
                    "transfer", amount=amount, currency=currency, country=country, iban=iban
                )

            asked_for: list[str] = []

            def check_back(*, approve_first: bool = False) -> ModelStep:
                def respond(call: Any) -> Any:
                    if not asked_for:
                        asked_for.extend(held._held)  # the request id the refusal named
                    if approve_first:
                        approve(pipeline_url, asked_for[0])  # a human answers meanwhile
                    arguments = {"request_id": asked_for[0]}
                    return [
                        function_call(CHECK_BACK_TOOL, arguments, call_id=f"c{len(call.input)}")
                    ]

                return ModelStep.respond(respond)

            model = ScriptedModel(
                [
                    [function_call("transfer", big, call_id="c0")],
                    check_back(),  # nobody answered yet
                    check_back(approve_first=True),  # approved: the held call runs
                    check_back(),  # it ran once: nothing is held any more
                    [assistant_message("done")],
                ]
            )
            agent = Agent(name="a", model=model, tools=[transfer, approval_check_tool(held)])
            result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
        return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]

    asked, waiting, ran, again = asyncio.run(go())
    assert asked.startswith("Approval required") and CHECK_BACK_TOOL in asked
    assert waiting.startswith("Still waiting")
    assert ran == "transfer done"
    assert again.startswith("No call is held")
    assert len(recorder.ran) == 1
    (_, body_args), (_, judged) = recorder.ran[0], recorder.judged[0]
    assert all(body_args[k] is judged[k] for k in judged)


def test_an_optional_argument_sent_as_null_is_absent(pipeline_url: str) -> None:
    """Strict mode makes the model send every parameter; a null memo is absent to the
    policy (its schema says ``memo?: string``) and None to the body."""
    recorder = Recorder()

    async def go() -> list[str]:
        async with SpyClient(pipeline_url, recorder, agent_id="oa-memo", **AGENT) as client:  # type: ignore[arg-type]

            @guarded_function_tool(policy_tool="payments.transfer", client=client)
            def transfer(
                amount: Decimal, currency: str, country: str, iban: str, memo: str | None = None
            ) -> str:
                """Transfer money."""
                return recorder.body("transfer", amount=amount, memo=memo)

            pay = {"amount": "50", "currency": "EUR", "country": "DE", "iban": "DE89"}
            calls = [("transfer", {**pay, "memo": None}), ("transfer", {**pay, "memo": "rent"})]
            agent = Agent(name="a", model=scripted_model(calls), tools=[transfer])
            result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
        return [str(i.output) for i in result.new_items if isinstance(i, ToolCallOutputItem)]

    assert asyncio.run(go()) == ["transfer done", "transfer done"]
    assert [args["memo"] for _, args in recorder.ran] == [None, "rent"]
    assert ["memo" in judged for _, judged in recorder.judged] == [False, True]
