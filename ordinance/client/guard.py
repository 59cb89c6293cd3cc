"""``@guard(tool=...)``: a Python tool function that runs only when Ordinance allows it.

The intent is built from the call itself: the function's signature binds the arguments,
so the policy sees exactly what the body would receive (defaults included). The body runs
on allow only; deny raises `ActionDenied`, require_approval raises `ApprovalRequired`, both
carrying the decision. Failing to get an answer (timeout, broker down) is a client-side
deny, so it raises `ActionDenied` too: an unanswered guard never runs the tool.

With ``use_canonical_args=True`` the body runs on the arguments the decision was made on
(`ClientDecision.canonical_args`: paths resolved, case folded where the schema says so,
decimals exact) instead of the raw call's — "enforce what you evaluated".
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from ordinance.client.client import DEFAULT_TIMEOUT_S, Client, SyncClient
from ordinance.client.decision import CLIENT_INVALID_REQUEST, ClientDecision, client_deny
from ordinance.client.errors import ActionDenied, ApprovalRequired
from ordinance.policy.decision import ALLOW, REQUIRE_APPROVAL
from ordinance.streams.values import to_wire

P = ParamSpec("P")
R = TypeVar("R")

Args = Mapping[str, Any]
ToolName = str | Callable[[Args], str]
Part = Mapping[str, Any] | Callable[[Args], Mapping[str, Any] | None] | None


def _outcome(tool: str, decision: ClientDecision) -> None:
    """Return on allow; raise for anything else (an unknown effect is a deny)."""
    if decision.effect == ALLOW:
        return
    if decision.effect == REQUIRE_APPROVAL:
        raise ApprovalRequired(tool, decision, decision.request_id or None)
    raise ActionDenied(tool, decision, decision.request_id or None)


def _after_approval(asked: ClientDecision, answered: ClientDecision) -> ClientDecision:
    # No answer in time: the request is still awaiting a human, so the caller gets the
    # require_approval (ApprovalRequired, with its ticket), not a plain deny.
    return asked if answered.client_side else answered


def _part(part: Part, args: Args) -> Mapping[str, Any] | None:
    return part(args) if callable(part) else part


def guard(
    tool: ToolName,
    *,
    client: Client | SyncClient,
    agent: str | Mapping[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    exclude: Collection[str] = ("self", "cls"),
    resource: Part = None,
    context: Part = None,
    approval_timeout: float | None = None,
    use_canonical_args: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async tool function.

    ``tool`` is the tool name sent (or a function of the bound arguments, for a generic
    dispatcher that forwards the name the model asked for). ``agent`` is an agent id or a
    full agent mapping; default: the client's agent. ``exclude`` names parameters that are
    not tool arguments. ``resource``/``context`` are mappings, or functions of the
    arguments, added to the request. ``approval_timeout``: on require_approval, wait that
    long for a human's answer and run the body if approved (default: raise at once).
    ``use_canonical_args``: run the body on the decision's canonical arguments (each tool
    argument replaced by its canonical form; excluded parameters untouched); an allow that
    carries no canonical arguments for them is refused (`ActionDenied`), never run raw.

    Argument mapping: every bound parameter by name, defaults applied — except a parameter
    left at a default of ``None``, which is absent (``has()`` is false), not null;
    ``**kwargs`` are merged in, ``*args`` becomes a list. A value that cannot travel on the
    wire (no JSON/Avro form: objects, bytes, sets, NaN) is denied before anything is
    published, naming the argument.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)  # a wrong call raises TypeError, as unguarded
            explicit = set(bound.arguments)
            bound.apply_defaults()
            out: dict[str, Any] = {}
            for name, value in bound.arguments.items():
                if name in exclude:
                    continue
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    out.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    if value:
                        out[name] = list(value)
                elif value is not None or name in explicit:
                    out[name] = value
            return out

        def request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
            """(tool name, request) or (tool name, the deny for an unsendable call)."""
            tool_args = arguments(args, kwargs)
            name = tool(tool_args) if callable(tool) else tool
            for arg, value in tool_args.items():
                try:
                    to_wire(value)
                except Exception as exc:  # no wire form: refuse before publishing
                    return name, client_deny(
                        CLIENT_INVALID_REQUEST,
                        f"argument {arg!r} of {name} cannot be sent to the policy engine: {exc}",
                        client_id=_client(client).client_id,
                    )
            built: dict[str, Any] = {"action": {"tool": name, "args": tool_args}}
            if agent is not None:
                built["agent"] = {"id": agent} if isinstance(agent, str) else dict(agent)
            for key, part in (("resource", resource), ("context", context)):
                value = _part(part, tool_args)
                if value is not None:
                    built[key] = value
            return name, built

        def call_args(
            args: tuple[Any, ...], kwargs: dict[str, Any], decision: ClientDecision
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            """The call's arguments, with every tool argument the enforcer judged replaced by
            its canonical form (the raw ones unless ``use_canonical_args``)."""
            if not use_canonical_args:
                return args, kwargs
            canonical = decision.canonical_args
            sent = arguments(args, kwargs)
            missing = [name for name in sent if name not in canonical]
            if missing:  # nothing judged to run on: fail closed rather than run raw values
                refused = client_deny(
                    CLIENT_INVALID_REQUEST,
                    f"the decision carries no canonical form of {', '.join(sorted(missing))}",
                    request_id=decision.request_id,
                    client_id=_client(client).client_id,
                )
                raise ActionDenied(decision.canonical_tool, refused, decision.request_id or None)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                if name in exclude:
                    continue
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    bound.arguments[name] = {k: canonical.get(k, v) for k, v in value.items()}
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    if name in canonical:
                        bound.arguments[name] = tuple(canonical[name])
                elif name in canonical:
                    bound.arguments[name] = canonical[name]
            return bound.args, bound.kwargs

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                name, built = request(args, kwargs)
                if isinstance(built, ClientDecision):
                    decision = built
                elif isinstance(client, Client):
                    decision = await client.decide(built, timeout=timeout)
                else:
                    decision = await asyncio.to_thread(client.decide, built, timeout=timeout)
                if decision.effect == REQUIRE_APPROVAL and approval_timeout is not None:
                    answered = await _client(client).wait_for_approval(
                        decision, timeout=approval_timeout
                    )
                    decision = _after_approval(decision, answered)
                _outcome(name, decision)
                run_args, run_kwargs = call_args(args, kwargs, decision)
                return await cast(Callable[..., Awaitable[Any]], fn)(*run_args, **run_kwargs)

            wrapped: Callable[..., Any] = guarded_async
        else:

            @functools.wraps(fn)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
                name, built = request(args, kwargs)
                if isinstance(built, ClientDecision):
                    decision = built
                elif isinstance(client, Client):
                    decision = client.decide_sync(built, timeout=timeout)
                else:
                    decision = client.decide(built, timeout=timeout)
                if decision.effect == REQUIRE_APPROVAL and approval_timeout is not None:
                    answered = _client(client).wait_for_approval_sync(
                        decision, timeout=approval_timeout
                    )
                    decision = _after_approval(decision, answered)
                _outcome(name, decision)
                run_args, run_kwargs = call_args(args, kwargs, decision)
                return cast(Callable[..., R], fn)(*run_args, **run_kwargs)

            wrapped = guarded
        wrapped.__ordinance_tool__ = tool  # type: ignore[attr-defined]
        return cast(Callable[P, R], wrapped)

    return decorate


def _client(client: Client | SyncClient) -> Client:
    return client if isinstance(client, Client) else client.client
