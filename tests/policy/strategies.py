"""Hypothesis strategies for condition syntax trees and policy documents."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

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

KEYWORDS = {"true", "false", "in", "null", "and", "or", "not"}
names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
literals = st.one_of(
    st.booleans().map(Literal),
    st.integers(-(10**12), 10**12).map(Literal),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6
    )
    .filter(lambda d: d == d.quantize(Decimal("0.001")))
    .map(Literal),
    st.text(max_size=8).map(Literal),
)
leaves = st.one_of(literals, names.map(Ident))


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    ops = ["||", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"]
    return st.one_of(
        st.builds(Binary, st.sampled_from(ops), children, children),
        st.builds(Unary, st.sampled_from(["!", "-"]), children).filter(
            # `-<number literal>` parses as a negative literal, a different (equal-valued) tree
            lambda u: (
                not (
                    u.op == "-"
                    and isinstance(u.operand, Literal)
                    and not isinstance(u.operand.value, bool | str)
                )
            )
        ),
        st.builds(Conditional, children, children, children),
        st.builds(Select, children, names),
        st.builds(Call, st.none(), names, st.lists(children, max_size=2).map(tuple)),
        st.builds(
            Call,
            children,
            names.filter(lambda n: n not in ("exists", "all")),
            st.lists(children, max_size=2).map(tuple),
        ),
        st.builds(Comprehension, st.sampled_from(["exists", "all"]), children, names, children),
        st.lists(children, max_size=3).map(lambda xs: ListLit(tuple(xs))),
    )


expressions: st.SearchStrategy[Expr] = st.recursive(leaves, _extend, max_leaves=12)
