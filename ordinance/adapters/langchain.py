"""LangChain / LangGraph tools that Ordinance decides before they run.

``guard_tool(tool, policy_tool="fs.read", client=client)`` wraps any LangChain tool
(`BaseTool` subclass, ``@tool``, `StructuredTool`) in a `GuardedTool` with the same name,
description and argument schema. LangChain parses and validates the model's input exactly
as the wrapped tool would (its own ``_parse_input``); those validated arguments, less the
injected ones (run manager, `ToolRuntime`, ``InjectedToolArg``) and those that are None
(absent, not null), go through
`ordinance.client.guard` — no second decision path — and on allow the wrapped tool's
``_run``/``_arun`` receives those very objects (or, with ``use_canonical_args``, the
canonical forms the enforcer judged). Denied, unanswered or approval-needing calls never
reach it: they raise `OrdinanceRefusal` (a `ToolException`), which the wrapper's
``handle_tool_error`` turns into the error `ToolMessage` the model reads (reason, code,
rule ids, request id) — or lets propagate with ``raise_refusals=True``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException
from langchain_core.tools.base import _get_runnable_config_param, _handle_tool_error
from pydantic import BaseModel, PrivateAttr

from ordinance.adapters.approvals import (
    CHECK_BACK_DESCRIPTION,
    CHECK_BACK_TOOL,
    Held,
    HeldCalls,
    Settled,
    canonical,
)
from ordinance.adapters.refusal import refusal_text, summary
from ordinance.client import (
    DEFAULT_TIMEOUT_S,
    ApprovalRequired,
    Client,
    GuardError,
    SyncClient,
    guard,
)
from ordinance.client.guard import Part
from ordinance.surfaces.mcp_mapping import ToolMapping

__all__ = [
    "GuardedTool",
    "HeldCalls",
    "OrdinanceRefusal",
    "approval_check_tool",
    "guard_tool",
    "guard_tools",
]


class OrdinanceRefusal(ToolException):
    """The tool did not run: Ordinance denied the call, asked for approval or got no answer.
    ``decision`` is the `ClientDecision`, ``summary`` the same as plain data."""

    def __init__(
        self, error: GuardError, tool: str, policy_tool: str, text: str | None = None
    ) -> None:
        super().__init__(text or refusal_text(error, tool, policy_tool))
        self.error = error
        self.decision = error.decision
        self.summary = summary(error, policy_tool)


class GuardedTool(BaseTool):
    """``inner`` behind an Ordinance decision; build it with `guard_tool`."""

    inner: BaseTool
    policy_tool: str
    _guard: Callable[[Callable[..., Any]], Callable[..., Any]] = PrivateAttr()
    _approvals: HeldCalls | None = PrivateAttr(default=None)
    _canonical: bool = PrivateAttr(default=False)

    # Input is parsed, validated and split into injected and model-given arguments exactly
    # as the wrapped tool does it.
    @functools.cached_property
    def _injected_args_keys(self) -> frozenset[str]:
        return self.inner._injected_args_keys

    def _to_args_and_kwargs(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.inner._to_args_and_kwargs(tool_input, tool_call_id)

    @property
    def args(self) -> dict[str, Any]:
        return self.inner.args

    @property
    def tool_call_schema(self) -> Any:
        return self.inner.tool_call_schema

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.inner.get_input_schema(config)

    def _split(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]]:
        """(the arguments judged, how to rebuild the call from what guard hands the body)."""
        if args:  # a plain string input, passed positionally: judged under its one name
            name = next(iter(self.inner.args), "tool_input")
            return {name: args[0]}, lambda judged: ((judged[name],), {})
        model_given = self.inner._filter_injected_args(kwargs)
        # None is absent, not null (``has()`` is false), as `guard` sends a None default:
        # LangChain fills in defaults, and the body still gets its None.
        judged = {k: v for k, v in model_given.items() if v is not None}
        rest = {k: v for k, v in kwargs.items() if k not in judged}
        return judged, lambda checked: ((), {**rest, **checked})

    def _refused(self, error: GuardError, judged: dict[str, Any], rebuild: Any) -> OrdinanceRefusal:
        if isinstance(error, ApprovalRequired) and self._approvals is not None:
            held = Held(self.name, self.policy_tool, error.decision, (self, judged, rebuild))
            self._approvals.hold(held)
            text = self._approvals.pending_text(held)
            return OrdinanceRefusal(error, self.name, self.policy_tool, text)
        return OrdinanceRefusal(error, self.name, self.policy_tool)

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        judged, rebuild = self._split(args, kwargs)
        plumbing = _plumbing(self.inner._run, config, run_manager)

        def body(**checked: Any) -> Any:
            call_args, call_kwargs = rebuild(checked)
            return self.inner._run(*call_args, **plumbing, **call_kwargs)

        try:
            return self._guard(body)(**judged)
        except GuardError as error:
            raise self._refused(error, judged, rebuild) from error

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        judged, rebuild = self._split(args, kwargs)
        # As BaseTool.arun decides what the wrapped tool's coroutine is offered.
        own_arun = type(self.inner)._arun is not BaseTool._arun
        plumbing = _plumbing(self.inner._arun if own_arun else self.inner._run, config, run_manager)

        async def body(**checked: Any) -> Any:
            call_args, call_kwargs = rebuild(checked)
            return await self.inner._arun(*call_args, **plumbing, **call_kwargs)

        try:
            return await self._guard(body)(**judged)
        except GuardError as error:
            raise self._refused(error, judged, rebuild) from error


def _plumbing(
    method: Callable[..., Any], config: RunnableConfig, run_manager: Any
) -> dict[str, Any]:
    """The run manager and config, offered to ``method`` as `BaseTool.run` offers them."""
    extra: dict[str, Any] = {}
    if run_manager is not None and "run_manager" in inspect.signature(method).parameters:
        extra["run_manager"] = run_manager
    if config_param := _get_runnable_config_param(method):
        extra[config_param] = config
    return extra


def guard_tool(
    tool: BaseTool,
    *,
    policy_tool: str,
    client: Client | SyncClient,
    timeout: float = DEFAULT_TIMEOUT_S,
    agent: str | Mapping[str, Any] | None = None,
    resource: Part = None,
    context: Part = None,
    approval_timeout: float | None = None,
    use_canonical_args: bool = False,
    raise_refusals: bool = False,
    approvals: HeldCalls | None = None,
) -> GuardedTool:
    """``tool``, every call of which is first decided by Ordinance as ``policy_tool``.

    The options are `guard`'s (agent, resource, context, timeout, approval wait, canonical
    arguments). A refusal is an error `ToolMessage` for the model (``status="error"``);
    with ``raise_refusals`` it is raised as `OrdinanceRefusal` instead. The wrapped tool's
    own `ToolException`\\ s are still handled as its ``handle_tool_error`` says.
    With ``approvals`` a call needing approval is held there and the refusal tells the
    model to check back with `approval_check_tool` (give the model that tool too).
    """
    inner_flag = tool.handle_tool_error

    def handle(error: ToolException) -> Any:
        if isinstance(error, OrdinanceRefusal) and not raise_refusals:
            return str(error)
        if isinstance(error, OrdinanceRefusal) or not inner_flag:
            raise error
        return _handle_tool_error(error, flag=inner_flag)

    guarded = GuardedTool(
        inner=tool,
        policy_tool=policy_tool,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        verbose=tool.verbose,
        callbacks=tool.callbacks,
        tags=tool.tags,
        metadata=tool.metadata,
        extras=tool.extras,
        handle_validation_error=tool.handle_validation_error,
        handle_tool_error=handle,
    )
    guarded._approvals = approvals
    guarded._canonical = use_canonical_args
    guarded._guard = guard(
        tool=policy_tool,
        client=client,
        agent=agent,
        timeout=timeout,
        exclude=(),
        resource=resource,
        context=context,
        approval_timeout=approval_timeout,
        use_canonical_args=use_canonical_args,
    )
    return guarded


def guard_tools(
    tools: Iterable[BaseTool],
    *,
    mapping: Mapping[str, str] | ToolMapping,
    client: Client | SyncClient,
    **options: Any,
) -> list[GuardedTool]:
    """Each tool guarded as the policy tool ``mapping`` names for it: a dict, or the MCP
    gateway's mapping file (`ToolMapping.from_file`), so both surfaces can share one. A
    tool the mapping does not name is an error here (never silently left unguarded)."""
    tools = list(tools)
    lookup = mapping.policy_tool if isinstance(mapping, ToolMapping) else mapping.get
    names = {t.name: lookup(t.name) for t in tools}
    missing = [name for name, policy_tool in names.items() if policy_tool is None]
    if missing:
        raise ValueError(f"no policy tool mapped for {', '.join(missing)}")
    return [guard_tool(t, policy_tool=str(names[t.name]), client=client, **options) for t in tools]


class _CheckArgs(BaseModel):
    request_id: str


class ApprovalCheckTool(BaseTool):
    """The check-back: runs a held call once a human approved it (`approval_check_tool`)."""

    name: str = CHECK_BACK_TOOL
    description: str = CHECK_BACK_DESCRIPTION
    args_schema: type[BaseModel] = _CheckArgs
    approvals: Any = None

    def _ready(self, settled: Settled) -> tuple[GuardedTool, tuple[Any, ...], dict[str, Any]]:
        """The held call to run, or the model's answer raised as a ToolException."""
        if settled.held is None or settled.approved is None:
            raise ToolException(settled.text)
        tool, judged, rebuild = settled.held.call
        run_on = canonical(settled.held, judged, settled.approved) if tool._canonical else judged
        if isinstance(run_on, str):
            raise ToolException(run_on)
        call_args, call_kwargs = rebuild(run_on)
        return tool, call_args, call_kwargs

    def _run(
        self,
        request_id: str,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> Any:
        tool, call_args, call_kwargs = self._ready(self.approvals.check_sync(request_id))
        plumbing = _plumbing(tool.inner._run, config, run_manager)
        return tool.inner._run(*call_args, **plumbing, **call_kwargs)

    async def _arun(
        self,
        request_id: str,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> Any:
        tool, call_args, call_kwargs = self._ready(await self.approvals.check(request_id))
        own_arun = type(tool.inner)._arun is not BaseTool._arun
        method = tool.inner._arun if own_arun else tool.inner._run
        plumbing = _plumbing(method, config, run_manager)
        return await tool.inner._arun(*call_args, **plumbing, **call_kwargs)


def approval_check_tool(approvals: HeldCalls) -> BaseTool:
    """The tool a model calls, with the request id a refusal gave, to run a call held for
    approval once a human approved it (once; on the judged arguments)."""
    return ApprovalCheckTool(approvals=approvals, handle_tool_error=True)
