from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given

from ordinance.policy.cel import (
    Binary,
    ConditionSyntaxError,
    Literal,
    parse_condition,
    to_source,
)
from ordinance.policy.cel.ast import Expr, attribute_path

from .strategies import expressions


@given(expressions)
def test_print_then_parse_is_identity(expr: Expr) -> None:
    assert parse_condition(to_source(expr)) == expr


@given(expressions)
def test_printing_is_a_fixed_point(expr: Expr) -> None:
    text = to_source(expr)
    assert to_source(parse_condition(text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", "1 + 2 * 3"),
        ("(1 + 2) * 3", "(1 + 2) * 3"),
        ("a || b && c", "a || b && c"),
        ("(a || b) && c", "(a || b) && c"),
        ("1 - (2 - 3)", "1 - (2 - 3)"),
        ("(1 - 2) - 3", "1 - 2 - 3"),
        ("!(a && b)", "!(a && b)"),
        ("a ? b : c ? d : e", "a ? b : c ? d : e"),
        ("x in ['a', \"b\"]", 'x in ["a", "b"]'),
        ("1.50 > 1", "1.50 > 1"),
        ("r'\\d+'", '"\\\\d+"'),
    ],
)
def test_canonical_spelling(text: str, expected: str) -> None:
    assert to_source(parse_condition(text)) == expected


def test_literal_kinds_are_distinct() -> None:
    assert parse_condition("1") != parse_condition("1.0")
    assert parse_condition("1") != parse_condition("true")
    assert parse_condition("1.0") == Literal(Decimal("1.0"))


def test_precedence_shapes_the_tree() -> None:
    tree = parse_condition("a && b || c")
    assert isinstance(tree, Binary) and tree.op == "||"


def test_attribute_path() -> None:
    assert attribute_path(parse_condition("action.args.amount")) == ("action", "args", "amount")
    assert attribute_path(parse_condition("f(x).y")) is None


@pytest.mark.parametrize(
    ("text", "offset", "hint_part"),
    [
        ("a = 1", 2, "=="),
        ("a and b", 2, "&&"),
        ("a & b", 2, "&&"),
        ("a > ", 3, None),  # just past the last visible character
        ('"unterminated', 0, None),
        ("x[0]", 1, "in"),
        ("null == a", 0, "has("),
        ('"\\q"', 1, "raw string"),
        ("f(a,", 4, None),
        ("", 0, "true"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, offset: int, hint_part: str | None) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    assert info.value.offset == offset
    if hint_part:
        assert info.value.hint and hint_part in info.value.hint


def test_nesting_is_bounded() -> None:
    with pytest.raises(ConditionSyntaxError, match="nests deeper"):
        parse_condition("(" * 200 + "1" + ")" * 200)
