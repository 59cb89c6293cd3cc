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

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.function_schema import function_schema
from agents.tool import ToolErrorFunction, default_tool_error_function

from ordinance.adapters.refusal import refusal_text
from ordinance.client import DEFAULT_TIMEOUT_S, Client, GuardError, SyncClient, guard
from ordinance.client.guard import Part

__all__ = ["guarded_function_tool"]


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
    **function_tool_options: Any,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """``@function_tool`` for ``func``, every call of which Ordinance decides first as
    ``policy_tool``.

    The Ordinance options are `guard`'s; the others (``name_override``, ``strict_mode``,
    ``timeout``-free options such as ``needs_approval``...) go to `function_tool`. A leading
    `RunContextWrapper`/``ToolContext`` parameter is not a tool argument and is not judged.
    ``failure_error_function`` formats the tool's *own* errors as `function_tool` does
    (``None``: raise them); Ordinance's refusals are always the model-visible result.
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

        def failure(ctx: RunContextWrapper[Any], error: Exception) -> Any:
            if isinstance(error, GuardError):
                return refusal_text(error, name, policy_tool)
            if failure_error_function is None:
                raise error
            return failure_error_function(ctx, error)

        return function_tool(guarded, failure_error_function=failure, **function_tool_options)

    return make(func) if func is not None else make
