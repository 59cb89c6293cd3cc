"""OpenAI Agents SDK function tools that Ordinance decides before they run.

``guarded_function_tool(policy_tool="fs.read", client=client)`` is ``@function_tool`` with
`ordinance.client.guard` inside: the SDK parses the model's JSON and validates it against
the function's signature as usual, and the validated arguments — exactly what the function
would receive, less the run context and None values (absent, not null) — are the intent's
args (no second decision path). On allow the function
runs on those very objects (or, with ``use_canonical_args``, on the canonical forms the
enforcer judged). A denied, unanswered or approval-needing call never runs it: the model
gets the refusal as the tool's result (reason, code, rule ids, request id), through the
SDK's ``failure_error_function`` hook.

Why not ``tool_input_guardrail``: an input guardrail sees the raw JSON string
(``ToolContext.tool_arguments``) and the SDK parses and validates it again afterwards, so
what would be judged is not the object that runs, and canonical arguments could not be
handed to the function. The wrapper judges the function's own arguments.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.function_schema import function_schema
from agents.tool import ToolErrorFunction, default_tool_error_function

from ordinance.adapters.approvals import (
    CHECK_BACK_DESCRIPTION,
    CHECK_BACK_TOOL,
    Held,
    HeldCalls,
    canonical,
)
from ordinance.adapters.refusal import refusal_text
from ordinance.client import (
    DEFAULT_TIMEOUT_S,
    ApprovalRequired,
    Client,
    GuardError,
    SyncClient,
    guard,
)
from ordinance.client.guard import Part

__all__ = ["HeldCalls", "approval_check_tool", "guarded_function_tool"]


class _Held(ApprovalRequired):
    """An approval-needing call that was held: the model is told how to check back."""

    def __init__(self, error: ApprovalRequired, text: str) -> None:
        super().__init__(error.tool, error.decision, error.request_id)
        self.text = text


class _Call:
    """How a call of ``fn`` maps to the intent's args and back.

    The SDK passes every parameter, defaults included; the args are those values by
    parameter name, less the run context (not a tool argument) and less ``None`` (absent,
    not null: ``has()`` is false), ``**kwargs`` merged in and ``*args`` as a list, as
    `guard` builds them. `rebuild` puts what the guard hands the body back in place.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.signature = inspect.signature(fn)
        takes_context = function_schema(fn, use_docstring_info=False).takes_context
        self.context = next(iter(self.signature.parameters)) if takes_context else None

    def split(self, args: Any, kwargs: Any) -> tuple[inspect.BoundArguments, dict[str, Any]]:
        bound = self.signature.bind(*args, **kwargs)
        judged: dict[str, Any] = {}
        for pname, value in bound.arguments.items():
            kind = self.signature.parameters[pname].kind
            if pname == self.context:
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                judged.update({k: v for k, v in value.items() if v is not None})
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    judged[pname] = list(value)
            elif value is not None:
                judged[pname] = value
        return bound, judged

    def rebuild(
        self, bound: inspect.BoundArguments, checked: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        for pname, value in list(bound.arguments.items()):
            kind = self.signature.parameters[pname].kind
            if pname == self.context:
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[pname] = {k: checked.get(k, v) for k, v in value.items()}
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if pname in checked:
                    bound.arguments[pname] = tuple(checked[pname])
            elif pname in checked:
                bound.arguments[pname] = checked[pname]
        return bound.args, bound.kwargs


def guarded_function_tool(
    func: Callable[..., Any] | None = None,
    *,
    policy_tool: str,
    client: Client | SyncClient,
    timeout: float = DEFAULT_TIMEOUT_S,
    agent: str | Mapping[str, Any] | None = None,
    resource: Part = None,
    context: Part = None,
    approval_timeout: float | None = None,
    use_canonical_args: bool = False,
    failure_error_function: ToolErrorFunction | None = default_tool_error_function,
    approvals: HeldCalls | None = None,
    tool_timeout: float | None = None,
    **function_tool_options: Any,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """``@function_tool`` for ``func``, every call of which Ordinance decides first as
    ``policy_tool``.

    The Ordinance options are `guard`'s (``timeout`` bounds the decision); the others
    (``name_override``, ``strict_mode``, ``needs_approval``...) go to `function_tool`, whose
    own ``timeout`` is ``tool_timeout`` here. A leading `RunContextWrapper`/``ToolContext``
    parameter is not a tool argument and is not judged; nor is a None value (absent).
    ``failure_error_function`` formats the tool's *own* errors as `function_tool` does
    (``None``: raise them); Ordinance's refusals are always the model-visible result.
    With ``approvals`` a call needing approval is held there and the refusal tells the
    model to check back with `approval_check_tool` (give the agent that tool too).
    """

    decide = guard(
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

    def make(fn: Callable[..., Any]) -> FunctionTool:
        name = function_tool_options.get("name_override") or fn.__name__
        call = _Call(fn)

        def held(error: ApprovalRequired, bound: Any, judged: dict[str, Any]) -> GuardError:
            if approvals is None:
                return error
            waiting = Held(
                name, policy_tool, error.decision, (call, bound, judged, use_canonical_args)
            )
            approvals.hold(waiting)
            return _Held(error, approvals.pending_text(waiting))

        tool_fn: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def tool_fn(*args: Any, **kwargs: Any) -> Any:
                bound, judged = call.split(args, kwargs)

                async def body(**checked: Any) -> Any:
                    run_args, run_kwargs = call.rebuild(bound, checked)
                    return await fn(*run_args, **run_kwargs)

                try:
                    return await decide(body)(**judged)
                except ApprovalRequired as error:
                    raise held(error, bound, judged) from error
        else:

            @functools.wraps(fn)
            def tool_fn(*args: Any, **kwargs: Any) -> Any:
                bound, judged = call.split(args, kwargs)

                def body(**checked: Any) -> Any:
                    run_args, run_kwargs = call.rebuild(bound, checked)
                    return fn(*run_args, **run_kwargs)

                try:
                    return decide(body)(**judged)
                except ApprovalRequired as error:
                    raise held(error, bound, judged) from error

        def failure(ctx: RunContextWrapper[Any], error: Exception) -> Any:
            if isinstance(error, _Held):
                return error.text
            if isinstance(error, GuardError):
                return refusal_text(error, name, policy_tool)
            if failure_error_function is None:
                raise error
            return failure_error_function(ctx, error)

        return function_tool(
            tool_fn,
            failure_error_function=failure,
            timeout=tool_timeout,
            **function_tool_options,
        )

    return make(func) if func is not None else make


def approval_check_tool(approvals: HeldCalls) -> FunctionTool:
    """The function tool a model calls, with the request id a refusal gave, to run a call
    held for approval once a human approved it (once; on the judged arguments)."""

    async def check(request_id: str) -> Any:
        settled = await approvals.check(request_id)
        if settled.held is None or settled.approved is None:
            return settled.text
        call, bound, judged, use_canonical = settled.held.call
        run_on = canonical(settled.held, judged, settled.approved) if use_canonical else judged
        if isinstance(run_on, str):
            return run_on
        run_args, run_kwargs = call.rebuild(bound, run_on)
        fn = call.fn
        if inspect.iscoroutinefunction(fn):
            return await fn(*run_args, **run_kwargs)
        return await asyncio.to_thread(fn, *run_args, **run_kwargs)

    return function_tool(
        check, name_override=CHECK_BACK_TOOL, description_override=CHECK_BACK_DESCRIPTION
    )
