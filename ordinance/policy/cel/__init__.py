"""The condition language: a CEL-compatible subset with an exact meaning for every construct."""

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
from ordinance.policy.cel.parser import ConditionSyntaxError, parse_condition
from ordinance.policy.cel.printer import to_source

__all__ = [
    "Binary",
    "Call",
    "Comprehension",
    "ConditionSyntaxError",
    "Conditional",
    "Expr",
    "Ident",
    "ListLit",
    "Literal",
    "Select",
    "Unary",
    "parse_condition",
    "to_source",
]
