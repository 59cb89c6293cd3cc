"""Canonical printing of conditions: minimal parentheses, one spelling for every construct.

``parse_condition(to_source(e)) == e`` for every tree the parser can produce; the
formatter, the bundle id and error messages all rely on it.
"""

from __future__ import annotations

from decimal import Decimal

from ordinance.policy.cel.ast import (
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

_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "in": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}
_CONDITIONAL = 0
_UNARY = 6
_MEMBER = 7


def _needs_escape(code: int) -> bool:
    # Control characters, surrogates and line separators: YAML (where conditions live)
    # refuses or rewrites them, so they are always spelled as escapes.
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF)
    )


def quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif _needs_escape(ord(ch)):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _literal(value: bool | int | Decimal | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text if "." in text else text + ".0"
    return str(value)


def _precedence(expr: Expr) -> int:
    if isinstance(expr, Conditional):
        return _CONDITIONAL
    if isinstance(expr, Binary):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, Unary):
        return _UNARY
    if isinstance(expr, Literal) and not isinstance(expr.value, bool | str) and expr.value < 0:
        return _UNARY  # prints with a leading minus
    return _MEMBER


def _wrap(expr: Expr, minimum: int) -> str:
    text = to_source(expr)
    return f"({text})" if _precedence(expr) < minimum else text


def to_source(expr: Expr) -> str:
    if isinstance(expr, Literal):
        return _literal(expr.value)
    if isinstance(expr, ListLit):
        return "[" + ", ".join(to_source(i) for i in expr.items) + "]"
    if isinstance(expr, Ident):
        return expr.name
    if isinstance(expr, Select):
        return f"{_wrap(expr.operand, _MEMBER)}.{expr.name}"
    if isinstance(expr, Unary):
        # `- -1` must not print as `--1`; a space keeps negative literals distinct.
        inner = _wrap(expr.operand, _UNARY)
        sep = " " if expr.op == "-" and inner.startswith("-") else ""
        return f"{expr.op}{sep}{inner}"
    if isinstance(expr, Binary):
        prec = _PRECEDENCE[expr.op]
        # Left-associative: the right operand needs parentheses at equal precedence.
        return f"{_wrap(expr.left, prec)} {expr.op} {_wrap(expr.right, prec + 1)}"
    if isinstance(expr, Conditional):
        return (
            f"{_wrap(expr.cond, _CONDITIONAL + 1)} ? {to_source(expr.then)} "
            f": {to_source(expr.otherwise)}"
        )
    if isinstance(expr, Call):
        args = ", ".join(to_source(a) for a in expr.args)
        if expr.target is None:
            return f"{expr.name}({args})"
        return f"{_wrap(expr.target, _MEMBER)}.{expr.name}({args})"
    if isinstance(expr, Comprehension):
        return f"{_wrap(expr.target, _MEMBER)}.{expr.kind}({expr.var}, {to_source(expr.body)})"
    raise TypeError(f"not a condition node: {expr!r}")
