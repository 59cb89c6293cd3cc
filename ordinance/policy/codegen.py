"""Compile type-checked conditions to Python source, one function per tool.

Why generate code: an interpreted tree walk costs tens of microseconds per request in
CPython; a generated function costs about as much as hand-written Python. Safety rule:
no text from a policy ever reaches the generated source except through ``repr`` of a
``str``/``int``/``bool`` (which Python guarantees reads back as the same value); every
other constant (decimals, sets, compiled patterns) is passed in the namespace by name,
and every identifier in the source is one this module invents.

Inside a generated function ``t`` is the canonical tool, ``w`` the window state (may be
None), ``aid``/``roles`` the agent's id and roles, ``rk`` the resource kind (None without a
resource); every other request field is a local chosen by :class:`~ordinance.policy.program.Layout`,
holding ``_M`` when an optional field is absent.
"""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ordinance.policy import canon
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
from ordinance.policy.regex import compile_regex
from ordinance.policy.typecheck import Typed, parse_duration

if TYPE_CHECKING:
    from ordinance.policy.program import Layout
from ordinance.policy.types import (
    DECIMAL,
    STRING,
    Type,
    ValueProblem,
    canonical_literal,
    converter,
)

# Exact decimal arithmetic: a result that would need rounding raises (-> evaluation error
# -> deny) instead of silently losing digits.
EXACT = decimal.Context(
    prec=200,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)


def int_div(a: int, b: int) -> int:
    """CEL integer division: truncates toward zero; division by zero is an error."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def int_mod(a: int, b: int) -> int:
    """CEL remainder: the sign follows the dividend, so ``a == b * (a / b) + a % b``."""
    return a - b * int_div(a, b)


_LOWER_TABLE: dict[int, int] | None = None


def lower_table() -> dict[int, int]:
    """Code point -> its simple lower case, for every code point that changes (built on
    first use: it scans all of Unicode). The analysis encodes ``lower()`` from it."""
    global _LOWER_TABLE
    if _LOWER_TABLE is None:
        table = {}
        for code in range(0x110000):
            ch = chr(code)
            low = ch.lower()
            if low != ch and len(low) == 1:
                table[code] = ord(low)
        _LOWER_TABLE = table
    return _LOWER_TABLE


def simple_lower(text: str) -> str:
    """Per-code-point simple lower-case mapping (a code point whose lower case is more
    than one code point is left as is), so that the length never changes."""
    if text.isascii():
        return text.lower()
    return text.translate(lower_table())


def canon_list(convert: Callable[[Any], Any], values: Any) -> tuple[Any, ...]:
    return tuple(convert(v) for v in values)


def nfkc_fragment(text: str, _method: str) -> str:
    return canon.nfkc(text)


def _as_written(text: str, _method: str) -> str:
    return text


def canonicalising(t: Type) -> bool:
    """Whether a plain-string operand compared with ``t`` must be put in ``t``'s form first:
    the canonical types, and strings that fold case or are limited to an enum."""
    return t.is_stringlike and (t.name != "string" or not t.is_plain_string)


def _folded_fragment(text: str, _method: str) -> str:
    return canon.nfkc(text).casefold()


FRAGMENT: dict[str, Callable[[str, str], str]] = {
    "path": canon.path_fragment,
    "domain": canon.domain_fragment,
    "email": canon.email_fragment,
    "url": canon.url_fragment,
    "tool": lambda text, _method: canon.nfkc(text).casefold(),
}

RUNTIME: dict[str, Any] = {
    "_canon_list": canon_list,
    "_ctx": EXACT,
    "_idiv": int_div,
    "_imod": int_mod,
    "_lower": simple_lower,
    "_sorted": sorted,
    "_any": any,
    "_all": all,
    "_len": len,
    "Exception": Exception,
}


@dataclass
class Constants:
    """Values handed to generated code by name rather than spelled in its source."""

    values: dict[str, Any] = field(default_factory=dict)
    _by_key: dict[tuple[type, Any], str] = field(default_factory=dict)

    def add(self, value: Any) -> str:
        """The name under which ``value`` is visible to generated code."""
        key = (type(value), value)
        try:
            existing = self._by_key.get(key)
        except TypeError:  # unhashable: never shared
            existing = None
        if existing is not None:
            return existing
        name = f"_k{len(self.values)}"
        self.values[name] = value
        with contextlib.suppress(TypeError):
            self._by_key[key] = name
        return name


def _py_literal(value: Any, consts: Constants) -> str:
    if isinstance(value, bool | int | str):
        return repr(value)
    return consts.add(value)


class ExprCompiler:
    def __init__(self, typed: Typed, condition: Condition, consts: Constants, layout: Layout):
        self.layout = layout
        self.types = typed.types
        self.condition = condition
        self.consts = consts
        self.fresh = 0

    def type_of(self, node: Expr) -> Type:
        return self.types[id(node)]

    def fail(self, node: Expr, message: str) -> TypeProblem:
        return TypeProblem(message, self.condition.location(node.pos, max(1, node.end - node.pos)))

    # -- canonical operands ------------------------------------------------------------
    def as_type(self, node: Expr, target: Type, env: dict[str, str]) -> str:
        """Source for ``node`` as a value of ``target``'s canonical form.

        Compared with a ``path`` (``url``, ``domain``, ``email``, ``tool``), a plain string
        operand is put in that canonical form: literals when the policy compiles (an invalid
        one is a compile error), anything else at run time (no canonical form -> the rule
        errs -> deny). Lists and ``?:`` branches are converted element by element."""
        own = self.type_of(node)
        if target.name == "list":
            elem = target.elem
            if elem is None or not canonicalising(elem) or own == target:
                return self.compile(node, env)
            if isinstance(node, ListLit):
                return "(" + "".join(self.as_type(i, elem, env) + ", " for i in node.items) + ")"
            if isinstance(node, Conditional):
                return self.conditional_as(node, target, env)
            return f"_canon_list({self.consts.add(converter(elem))}, {self.compile(node, env)})"
        if not canonicalising(target) or own == target:
            return self.compile(node, env)
        if isinstance(node, Literal) and isinstance(node.value, str):
            try:
                return repr(canonical_literal(node.value, target))
            except ValueProblem as exc:
                raise self.fail(node, f"this literal is not a valid {target}: {exc}") from None
        if isinstance(node, Conditional):
            return self.conditional_as(node, target, env)
        return f"{self.consts.add(converter(target))}({self.compile(node, env)})"

    def conditional_as(self, node: Conditional, target: Type, env: dict[str, str]) -> str:
        cond = self.compile(node.cond, env)
        then = self.as_type(node.then, target, env)
        otherwise = self.as_type(node.otherwise, target, env)
        return f"({then} if {cond} else {otherwise})"

    def method_argument(self, node: Expr, receiver: Type, method: str, env: dict[str, str]) -> str:
        """A string-method argument gets only the *local* parts of the receiver's canonical
        form (see :mod:`ordinance.policy.canon` fragments)."""
        if not (isinstance(node, Literal) and isinstance(node.value, str)):
            return self.compile(node, env)
        fragment = FRAGMENT.get(receiver.name, nfkc_fragment)
        if receiver.name == "string" and receiver.norm == canon.NORMALIZE_FOLD:
            fragment = _folded_fragment
        elif receiver.name == "string" and receiver.norm == canon.NORMALIZE_NONE:
            fragment = _as_written
        try:
            return repr(fragment(node.value, method))
        except canon.CanonError as exc:
            raise self.fail(
                node, f"this literal can never match a canonical {receiver}: {exc}"
            ) from None

    # -- expressions -----------------------------------------------------------------
    def compile(self, node: Expr, env: dict[str, str]) -> str:
        if isinstance(node, Literal):
            value = canon.nfkc(node.value) if isinstance(node.value, str) else node.value
            return _py_literal(value, self.consts)
        if isinstance(node, ListLit):
            return self.list_value(node, env)
        if isinstance(node, Ident):
            return env[node.name]
        if isinstance(node, Select):
            return self.attribute(node)
        if isinstance(node, Unary):
            operand = self.compile(node.operand, env)
            if node.op == "!":
                return f"(not {operand})"
            if self.type_of(node) == DECIMAL:
                return f"_ctx.minus({operand})"
            return f"(-{operand})"
        if isinstance(node, Binary):
            return self.binary(node, env)
        if isinstance(node, Conditional):
            cond = self.compile(node.cond, env)
            return f"({self.compile(node.then, env)} if {cond} else {self.compile(node.otherwise, env)})"
        if isinstance(node, Call):
            return self.call(node, env)
        if isinstance(node, Comprehension):
            return self.comprehension(node, env)
        raise TypeError(node)

    def attribute(self, node: Select) -> str:
        path = attribute_path(node)
        assert path is not None
        root, *rest = path
        if root == "action" and rest == ["tool"]:
            return "t"
        name = rest[1] if root == "action" else rest[0]
        var = self.layout.locals[(root, name)]
        if root == "resource" and name == "kind":
            return "(rk if rk is not None else _missing('resource'))"
        if self.layout.may_be_missing(root, name):
            label = ".".join(path)
            return f"({var} if {var} is not _M else _missing({label!r}))"
        return var

    def has(self, arg: Expr) -> str:
        path = attribute_path(arg)
        assert path is not None
        if path in (("resource",), ("resource", "kind")):
            return "(rk is not None)"
        if path[0] == "action" and len(path) == 2:
            return "True"  # action.tool, action.args: always present
        root, name = path[0], (path[2] if path[0] == "action" else path[1])
        if not self.layout.may_be_missing(root, name):
            return "True"
        return f"({self.layout.locals[(root, name)]} is not _M)"

    def list_value(self, node: ListLit, env: dict[str, str]) -> str:
        items = [self.compile(i, env) for i in node.items]
        return "(" + "".join(i + ", " for i in items) + ")"

    def binary(self, node: Binary, env: dict[str, str]) -> str:
        op = node.op
        if op in ("&&", "||"):
            word = "and" if op == "&&" else "or"
            return f"({self.compile(node.left, env)} {word} {self.compile(node.right, env)})"
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            left = self.as_type(node.left, rt, env)
            right = self.as_type(node.right, lt, env)
            return f"({left} {op} {right})"
        if op == "in":
            return self.membership(node, env)
        left, right = self.compile(node.left, env), self.compile(node.right, env)
        if op == "/":
            return f"_idiv({left}, {right})"
        if op == "%":
            return f"_imod({left}, {right})"
        if self.type_of(node) == DECIMAL:
            method = {"+": "add", "-": "subtract", "*": "multiply"}[op]
            return f"_ctx.{method}({left}, {right})"
        return f"({left} {op} {right})"

    def membership(self, node: Binary, env: dict[str, str]) -> str:
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        elem = rt.elem or STRING
        right_node = node.right
        if isinstance(right_node, ListLit) and all(
            isinstance(i, Literal) for i in right_node.items
        ):
            # A list of constants becomes one frozenset: membership costs one hash lookup.
            values = set()
            for item in right_node.items:
                assert isinstance(item, Literal)
                value = item.value
                if isinstance(value, str):
                    try:
                        value = canonical_literal(value, lt if canonicalising(lt) else STRING)
                    except ValueProblem as exc:
                        raise self.fail(item, f"this literal is not a valid {lt}: {exc}") from None
                values.add(value)
            left = self.as_type(node.left, elem, env)
            return f"({left} in {self.consts.add(frozenset(values))})"
        left = self.as_type(node.left, elem, env)
        right = (
            self.as_type(right_node, Type("list", lt), env)
            if canonicalising(lt)
            else self.compile(right_node, env)
        )
        return f"({left} in {right})"

    def call(self, node: Call, env: dict[str, str]) -> str:
        name = node.name
        if isinstance(node.target, Ident) and node.target.name == "window" and "window" not in env:
            duration = node.args[-1]
            assert isinstance(duration, Literal) and isinstance(duration.value, str)
            seconds = parse_duration(duration.value)
            if name == "count":
                return f"w.count(aid, t, {seconds!r})"
            path = attribute_path(node.args[0])
            assert path is not None
            return f"w.sum(aid, t, {path[2]!r}, {seconds!r})"
        if node.target is None:
            if name == "has":
                return self.has(node.args[0])
            return f"_len({self.compile(node.args[0], env)})"
        receiver_type = self.type_of(node.target)
        receiver = self.compile(node.target, env)
        if name == "size":
            return f"_len({receiver})"
        if name == "lower":
            return f"_lower({receiver})"
        if name == "matches":
            pattern = node.args[0]
            assert isinstance(pattern, Literal) and isinstance(pattern.value, str)
            compiled = self.consts.add(compile_regex(canon.nfkc(pattern.value)))
            return f"({compiled}.search({receiver}) is not None)"
        arg = self.method_argument(node.args[0], receiver_type, name, env)
        if name == "startsWith":
            return f"{receiver}.startswith({arg})"
        if name == "endsWith":
            return f"{receiver}.endswith({arg})"
        return f"({arg} in {receiver})"  # contains

    def comprehension(self, node: Comprehension, env: dict[str, str]) -> str:
        var = f"_v{self.fresh}"
        self.fresh += 1
        target = self.compile(node.target, env)
        if self.type_of(node.target).name == "set":
            # Iterate sets in a fixed order so that which element errs first is deterministic.
            target = f"_sorted({target})"
        body = self.compile(node.body, {**env, node.var: var})
        fn = "_any" if node.kind == "exists" else "_all"
        return f"{fn}({body} for {var} in {target})"


def compile_condition(typed: Typed, condition: Condition, consts: Constants, layout: Layout) -> str:
    return ExprCompiler(typed, condition, consts, layout).compile(condition.expr, {})
