"""OpenAI Agents SDK function tools that Ordinance decides before they run.

``guarded_function_tool(policy_tool="fs.read", client=client)`` is ``@function_tool`` with
`ordinance.client.guard` inside: the SDK parses the model's JSON and validates it against
the function's signature as usual, and the validated arguments — exactly what the function
would receive — are the intent's args (no second decision path). On allow the function
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
    **function_tool_options: Any,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """``@function_tool`` for ``func``, every call of which Ordinance decides first as
    ``policy_tool``.

    The Ordinance options are `guard`'s; the others (``name_override``, ``strict_mode``,
    ``timeout``-free options such as ``needs_approval``...) go to `function_tool`. A leading
    `RunContextWrapper`/``ToolContext`` parameter is not a tool argument and is not judged.
    ``failure_error_function`` formats the tool's *own* errors as `function_tool` does
    (``None``: raise them); Ordinance's refusals are always the model-visible result.
    With ``approvals`` a call needing approval is held there and the refusal tells the
    model to check back with `approval_check_tool` (give the agent that tool too).
    """

    def make(fn: Callable[..., Any]) -> FunctionTool:
        name = function_tool_options.get("name_override") or fn.__name__
        exclude: tuple[str, ...] = ("self", "cls")
        if function_schema(fn, use_docstring_info=False).takes_context:
            exclude += (next(iter(inspect.signature(fn).parameters)),)
        guarded = guard(
            tool=policy_tool,
            client=client,
            agent=agent,
            timeout=timeout,
            exclude=exclude,
            resource=resource,
            context=context,
            approval_timeout=approval_timeout,
            use_canonical_args=use_canonical_args,
        )(fn)
        signature = inspect.signature(fn)

        def held(error: ApprovalRequired, args: Any, kwargs: Any) -> GuardError:
            if approvals is None:
                return error
            call = (fn, signature.bind(*args, **kwargs), exclude, use_canonical_args)
            waiting = Held(name, policy_tool, error.decision, call)
            approvals.hold(waiting)
            return _Held(error, approvals.pending_text(waiting))

        tool_fn: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(guarded)
            async def tool_fn(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await guarded(*args, **kwargs)
                except ApprovalRequired as error:
                    raise held(error, args, kwargs) from error
        else:

            @functools.wraps(guarded)
            def tool_fn(*args: Any, **kwargs: Any) -> Any:
                try:
                    return guarded(*args, **kwargs)
                except ApprovalRequired as error:
                    raise held(error, args, kwargs) from error

        def failure(ctx: RunContextWrapper[Any], error: Exception) -> Any:
            if isinstance(error, _Held):
                return error.text
            if isinstance(error, GuardError):
                return refusal_text(error, name, policy_tool)
            if failure_error_function is None:
                raise error
            return failure_error_function(ctx, error)

        return function_tool(tool_fn, failure_error_function=failure, **function_tool_options)

    return make(func) if func is not None else make


def approval_check_tool(approvals: HeldCalls) -> FunctionTool:
    """The function tool a model calls, with the request id a refusal gave, to run a call
    held for approval once a human approved it (once; on the judged arguments)."""

    async def check(request_id: str) -> Any:
        settled = await approvals.check(request_id)
        if settled.held is None or settled.approved is None:
            return settled.text
        fn, bound, exclude, use_canonical = settled.held.call
        if use_canonical:
            judged = {k: v for k, v in bound.arguments.items() if k not in exclude}
            run_on = canonical(settled.held, judged, settled.approved)
            if isinstance(run_on, str):
                return run_on
            bound.arguments.update(run_on)
        if inspect.iscoroutinefunction(fn):
            return await fn(*bound.args, **bound.kwargs)
        return await asyncio.to_thread(fn, *bound.args, **bound.kwargs)

    return function_tool(
        check, name_override=CHECK_BACK_TOOL, description_override=CHECK_BACK_DESCRIPTION
    )
