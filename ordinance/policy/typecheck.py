"""Type checking of conditions against the schema, for one tool at a time.

A rule is checked once for every tool its target can match, because ``action.args``
differs per tool. The result records each node's type, which the code generator uses to
pick exact decimal arithmetic and to put literals in the canonical form of what they are
compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ordinance.policy.cel import (
    Binary,
    Call,
    Comprehension,
    Conditional,
    Expr,
    Ident,
    ListLit,
    Literal,
    Select,
    Unary,
)
from ordinance.policy.cel.ast import attribute_path
from ordinance.policy.document import Condition
from ordinance.policy.errors import TypeProblem
from ordinance.policy.regex import RegexProblem, check_regex
from ordinance.policy.schema import Fields, Schema, Tool
from ordinance.policy.types import (
    BOOL,
    DECIMAL,
    EMPTY_LIST,
    INT,
    STRING,
    TOOL,
    Type,
    comparable,
    list_of,
)
from ordinance.policy.yamlsrc import closest

ROOTS = ("agent", "action", "resource", "context", "window")
STRING_METHODS = {"startsWith": BOOL, "endsWith": BOOL, "contains": BOOL, "matches": BOOL}
_DURATION = re.compile(r"([1-9][0-9]*)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 366 * 86400


def parse_duration(text: str) -> int | None:
    """``"24h"`` -> 86400; None if not a duration."""
    m = _DURATION.fullmatch(text)
    if not m:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@dataclass(slots=True)
class Typed:
    """What the checker learned about one condition under one tool."""

    types: dict[int, Type] = field(default_factory=dict)  # id(node) -> type
    uses_window: bool = False


class _Checker:
    def __init__(self, schema: Schema, tool: Tool, condition: Condition):
        self.schema = schema
        self.tool = tool
        self.condition = condition
        self.out = Typed()

    def fail(self, node: Expr, message: str, hint: str | None = None) -> TypeProblem:
        length = max(1, node.end - node.pos)
        return TypeProblem(message, self.condition.location(node.pos, length), hint)

    def record(self, node: Expr, t: Type) -> Type:
        self.out.types[id(node)] = t
        return t

    # -- attributes ----------------------------------------------------------------
    def fields_of(self, root: str) -> Fields:
        if root == "agent":
            return self.schema.agent
        if root == "resource":
            return self.schema.resource
        return self.schema.context

    def attribute(self, node: Select, env: dict[str, Type]) -> Type:
        path = attribute_path(node)
        if path is None:
            raise self.fail(
                node, "fields can only be selected from agent, action, resource or context"
            )
        root, *rest = path
        if root in env:
            raise self.fail(node, f"`{root}` is a {env[root]}, which has no fields")
        if root == "window":
            raise self.fail(
                node, "window is used as window.count(DURATION) or window.sum(VALUE, DURATION)"
            )
        if root not in ROOTS:
            raise self.unknown_root(node, root, env)
        if root == "action":
            return self.action_attribute(node, rest)
        fields = self.fields_of(root)
        name = rest[0]
        if name not in fields:
            raise self.unknown_field(node, f"{root}.{name}", [f"{root}.{f}" for f in fields])
        if len(rest) > 1:
            raise self.fail(node, f"`{root}.{name}` is a {fields[name].type}, which has no fields")
        return fields[name].type

    def action_attribute(self, node: Select, rest: list[str]) -> Type:
        if rest[0] == "tool" and len(rest) == 1:
            return TOOL
        if rest[0] != "args":
            raise self.unknown_field(node, f"action.{rest[0]}", ["action.tool", "action.args"])
        if len(rest) == 1:
            raise self.fail(
                node, "action.args is a record; select an argument such as action.args.amount"
            )
        name = rest[1]
        args = self.tool.args
        if name not in args:
            known = [f"action.args.{a}" for a in args]
            raise self.unknown_field(
                node, f"action.args.{name}", known, f" of tool `{self.tool.name}`"
            )
        if len(rest) > 2:
            raise self.fail(
                node, f"`action.args.{name}` is a {args[name].type}, which has no fields"
            )
        return args[name].type

    def unknown_root(self, node: Expr, name: str, env: dict[str, Type]) -> TypeProblem:
        guess = closest(name, [*ROOTS, *env])
        return self.fail(
            node,
            f"unknown name `{name}`",
            f"did you mean `{guess}`?"
            if guess
            else "conditions start from agent, action, resource or context",
        )

    def unknown_field(
        self, node: Expr, name: str, known: list[str], where: str = ""
    ) -> TypeProblem:
        guess = closest(name, known)
        hint = (
            f"did you mean `{guess}`?"
            if guess
            else (f"known: {', '.join(sorted(known))}" if known else "the schema declares none")
        )
        return self.fail(node, f"unknown attribute `{name}`{where}", hint)

    # -- expressions ---------------------------------------------------------------
    def check(self, node: Expr, env: dict[str, Type]) -> Type:
        return self.record(node, self.infer(node, env))

    def expect(self, node: Expr, env: dict[str, Type], want: Type, what: str) -> Type:
        got = self.check(node, env)
        if got != want:
            raise self.fail(node, f"{what} must be {want}, but this is {got}")
        return got

    def infer(self, node: Expr, env: dict[str, Type]) -> Type:
        if isinstance(node, Literal):
            v = node.value
            if isinstance(v, bool):
                return BOOL
            if isinstance(v, int):
                return INT
            if isinstance(v, str):
                return STRING
            return DECIMAL
        if isinstance(node, ListLit):
            return self.list_literal(node, env)
        if isinstance(node, Ident):
            if node.name in env:
                return env[node.name]
            if node.name in ("agent", "action", "resource", "context"):
                if node.name == "resource":
                    raise self.fail(
                        node, "`resource` alone is not a value", "test presence with has(resource)"
                    )
                raise self.fail(
                    node, f"`{node.name}` is a record; select a field such as `{node.name}.id`"
                )
            raise self.unknown_root(node, node.name, env)
        if isinstance(node, Select):
            return self.attribute(node, env)
        if isinstance(node, Unary):
            if node.op == "!":
                self.expect(node.operand, env, BOOL, "the operand of `!`")
                return BOOL
            t = self.check(node.operand, env)
            if not t.is_numeric:
                raise self.fail(node, f"`-` needs a number, but this is {t}")
            return t
        if isinstance(node, Binary):
            return self.binary(node, env)
        if isinstance(node, Conditional):
            self.expect(node.cond, env, BOOL, "the condition of `?:`")
            a = self.check(node.then, env)
            b = self.check(node.otherwise, env)
            if a.is_numeric and b.is_numeric:
                return DECIMAL if DECIMAL in (a, b) else INT
            if a.is_stringlike and b.is_stringlike:
                return a if a == b else STRING
            if a != b:
                raise self.fail(node, f"both branches of `?:` must have one type, not {a} and {b}")
            return a
        if isinstance(node, Call):
            return self.call(node, env)
        if isinstance(node, Comprehension):
            target = self.check(node.target, env)
            if not target.is_collection or target.elem is None:
                raise self.fail(
                    node.target, f"`{node.kind}` needs a list or set, but this is {target}"
                )
            if node.var in ROOTS or node.var in env:
                raise self.fail(node, f"`{node.var}` is already a name; choose another variable")
            self.expect(
                node.body, {**env, node.var: target.elem}, BOOL, f"the body of `{node.kind}`"
            )
            return BOOL
        raise TypeError(node)

    def list_literal(self, node: ListLit, env: dict[str, Type]) -> Type:
        if not node.items:
            return EMPTY_LIST
        types = [self.check(i, env) for i in node.items]
        first = types[0]
        for item, t in zip(node.items, types, strict=True):
            if not comparable(first, t):
                raise self.fail(item, f"list items must share a type: {first} and {t}")
        if all(t.is_numeric for t in types):
            return list_of(DECIMAL if DECIMAL in types else INT)
        if all(t.is_stringlike for t in types):
            return list_of(first if all(t == first for t in types) else STRING)
        return list_of(first)

    def binary(self, node: Binary, env: dict[str, Type]) -> Type:
        op = node.op
        if op in ("&&", "||"):
            self.expect(node.left, env, BOOL, f"the left side of `{op}`")
            self.expect(node.right, env, BOOL, f"the right side of `{op}`")
            return BOOL
        left = self.check(node.left, env)
        right = self.check(node.right, env)
        if op in ("==", "!="):
            if not comparable(left, right):
                raise self.fail(node, f"cannot compare {left} with {right}")
            return BOOL
        if op == "in":
            if not right.is_collection:
                raise self.fail(
                    node.right, f"`in` needs a list or set on the right, but this is {right}"
                )
            if right.elem is not None and not comparable(left, right.elem):
                raise self.fail(node, f"cannot look for a {left} in a {right}")
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if (left.is_numeric and right.is_numeric) or (
                left.is_stringlike and right.is_stringlike
            ):
                return BOOL
            raise self.fail(
                node, f"`{op}` compares two numbers or two strings, not {left} and {right}"
            )
        # arithmetic
        if op == "+" and left.is_stringlike and right.is_stringlike:
            return STRING
        if not (left.is_numeric and right.is_numeric):
            raise self.fail(node, f"`{op}` needs numbers, not {left} and {right}")
        if op in ("/", "%"):
            if DECIMAL in (left, right):
                raise self.fail(
                    node,
                    f"`{op}` is defined on integers only: decimal division is not exact",
                    "multiply the other side instead, e.g. `a > 3 * b` rather than `a / 3 > b`",
                )
            return INT
        return DECIMAL if DECIMAL in (left, right) else INT

    def call(self, node: Call, env: dict[str, Type]) -> Type:
        name = node.name
        if (
            node.target is not None
            and isinstance(node.target, Ident)
            and node.target.name == "window"
        ):
            return self.window(node, env)
        if node.target is None:
            if name == "has":
                path = attribute_path(node.args[0]) if len(node.args) == 1 else None
                if (
                    path is None
                    or path[0] not in ("agent", "action", "resource", "context")
                    or (len(path) < 2 and path != ("resource",))
                ):
                    raise self.fail(node, "has() takes one attribute, e.g. has(action.args.memo)")
                if path != ("resource",):
                    self.check(node.args[0], env)  # an unknown attribute is an error here too
                return BOOL
            if name == "size":
                if len(node.args) != 1:
                    raise self.fail(node, "size() takes one argument")
                return self.size(node.args[0], env)
            known = ["has", "size"]
            guess = closest(name, known)
            raise self.fail(
                node, f"unknown function `{name}`", f"did you mean `{guess}`?" if guess else None
            )
        target = self.check(node.target, env)
        if name == "size" and not node.args:
            return self.size(node.target, env)
        if name == "lower":
            if not target.is_stringlike or node.args:
                raise self.fail(node, "lower() is a method of strings and takes no arguments")
            return STRING
        if name in STRING_METHODS:
            if not target.is_stringlike:
                raise self.fail(node, f"{name}() is a method of strings, but this is {target}")
            if len(node.args) != 1:
                raise self.fail(node, f"{name}() takes one string argument")
            self.expect_string(node.args[0], env, name)
            if name == "matches":
                self.check_pattern(node.args[0])
            return BOOL
        known = [*STRING_METHODS, "lower", "size", "exists", "all"]
        guess = closest(name, known)
        raise self.fail(
            node, f"unknown method `{name}`", f"did you mean `{guess}`?" if guess else None
        )

    def expect_string(self, node: Expr, env: dict[str, Type], method: str) -> None:
        t = self.check(node, env)
        if not t.is_stringlike:
            raise self.fail(node, f"the argument of {method}() must be a string, but this is {t}")

    def check_pattern(self, node: Expr) -> None:
        if not isinstance(node, Literal) or not isinstance(node.value, str):
            raise self.fail(
                node,
                "the pattern of matches() must be a string literal",
                "patterns are checked when the policy compiles",
            )
        try:
            check_regex(node.value)
        except RegexProblem as exc:
            from ordinance.policy.regexlint import literal_location, span_of

            span = span_of(node.value, exc)  # the caret on the construct, in the literal
            where = literal_location(self.condition, node, *span) if span else None
            if where is not None:
                raise TypeProblem(f"unsupported pattern: {exc}", where, exc.hint) from None
            raise self.fail(node, f"unsupported pattern: {exc}", exc.hint) from None

    def size(self, arg: Expr, env: dict[str, Type]) -> Type:
        t = self.check(arg, env)
        if not (t.is_stringlike or t.is_collection):
            raise self.fail(arg, f"size() needs a string, list or set, but this is {t}")
        return INT

    def window(self, node: Call, env: dict[str, Type]) -> Type:
        self.out.uses_window = True
        if node.name == "count":
            if len(node.args) != 1:
                raise self.fail(node, 'window.count takes one duration, e.g. window.count("1h")')
            self.duration(node.args[0])
            return INT
        if node.name == "sum":
            if len(node.args) != 2:
                raise self.fail(
                    node,
                    'window.sum takes a value and a duration, e.g. window.sum(action.args.amount, "24h")',
                )
            value = node.args[0]
            path = attribute_path(value)
            if path is None or len(path) != 3 or path[:2] != ("action", "args"):
                raise self.fail(
                    value, "window.sum sums an argument of the action, e.g. action.args.amount"
                )
            t = self.check(value, env)
            if not t.is_numeric:
                raise self.fail(value, f"window.sum needs a numeric argument, but this is {t}")
            self.duration(node.args[1])
            return t
        raise self.fail(
            node, f"unknown window function `{node.name}`", "use window.count or window.sum"
        )

    def duration(self, node: Expr) -> int:
        if isinstance(node, Literal) and isinstance(node.value, str):
            seconds = parse_duration(node.value)
            if seconds is not None and seconds <= MAX_WINDOW_SECONDS:
                self.record(node, STRING)
                return seconds
        raise self.fail(
            node,
            'a window duration is a string literal such as "90s", "15m", "24h" or "7d" (at most 366d)',
        )


def check_condition(schema: Schema, tool: Tool, condition: Condition) -> Typed:
    """Type-check ``condition`` for requests to ``tool``; it must be boolean."""
    checker = _Checker(schema, tool, condition)
    t = checker.check(condition.expr, {})
    if t != BOOL:
        raise checker.fail(condition.expr, f"a condition must be true or false, but this is {t}")
    return checker.out


__all__ = ["Typed", "check_condition", "parse_duration"]
