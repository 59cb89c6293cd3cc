"""Syntax tree of conditions.

Nodes compare by structure only: ``pos``/``end`` (offsets into the condition text, used
for error carets) are excluded from equality so that ``parse(print(parse(s))) == parse(s)``
is a meaningful law.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

LiteralValue = bool | int | Decimal | str


@dataclass(frozen=True, slots=True)
class Literal:
    value: LiteralValue
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)

    def __eq__(self, other: object) -> bool:
        # bool is an int subclass and Decimal("1") == 1: compare the kind too.
        if not isinstance(other, Literal):
            return NotImplemented
        return type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Select:
    """``operand.name``."""

    operand: Expr
    name: str
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "!" or "-"
    operand: Expr
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # || && == != < <= > >= in + - * / %
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Conditional:
    """``cond ? then : otherwise``."""

    cond: Expr
    then: Expr
    otherwise: Expr
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A global call ``f(args)`` (``target`` is None) or a method call ``target.f(args)``."""

    target: Expr | None
    name: str
    args: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Comprehension:
    """``target.exists(var, body)`` or ``target.all(var, body)``."""

    kind: str  # "exists" | "all"
    target: Expr
    var: str
    body: Expr
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


Expr = Literal | ListLit | Ident | Select | Unary | Binary | Conditional | Call | Comprehension


def attribute_path(expr: Expr) -> tuple[str, ...] | None:
    """``action.args.amount`` -> ("action", "args", "amount"); None if not a plain path."""
    parts: list[str] = []
    node: Expr = expr
    while isinstance(node, Select):
        parts.append(node.name)
        node = node.operand
    if not isinstance(node, Ident):
        return None
    parts.append(node.name)
    return tuple(reversed(parts))


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of ``node``, left to right."""
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary | Select):
        return (node.operand,)
    if isinstance(node, Conditional):
        return (node.cond, node.then, node.otherwise)
    if isinstance(node, Call):
        return node.args if node.target is None else (node.target, *node.args)
    if isinstance(node, Comprehension):
        return (node.target, node.body)
    if isinstance(node, ListLit):
        return node.items
    return ()
