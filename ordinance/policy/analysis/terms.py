"""Walks over raw Z3 ASTs through the C API.

z3py wraps every node it hands out (an object, a reference count, sort checks), which
made Python-level walks over a bucket's rule terms a large share of its analysis. These
walks read kinds, ids and arguments directly; the arguments stay alive with their root,
which the caller holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import z3


def _children(ctx: Any, a: Any) -> list[Any]:
    kind = z3.Z3_get_ast_kind(ctx, a)
    if kind == z3.Z3_APP_AST:
        app = z3.Z3_to_app(ctx, a)
        return [z3.Z3_get_app_arg(ctx, app, i) for i in range(z3.Z3_get_app_num_args(ctx, app))]
    if kind == z3.Z3_QUANTIFIER_AST:
        return [z3.Z3_get_quantifier_body(ctx, a)]
    return []


def quantifier_free(exprs: Sequence[z3.ExprRef]) -> bool:
    """No quantifier anywhere in ``exprs``."""
    if not exprs:
        return True
    ctx = exprs[0].ctx.ref()
    seen: set[int] = set()
    todo = [e.as_ast() for e in exprs]
    while todo:
        a = todo.pop()
        node = z3.Z3_get_ast_id(ctx, a)
        if node in seen:
            continue
        seen.add(node)
        if z3.Z3_get_ast_kind(ctx, a) == z3.Z3_QUANTIFIER_AST:
            return False
        todo += _children(ctx, a)
    return True


def mentions(root: z3.ExprRef, targets: set[int], memo: dict[int, bool]) -> bool:
    """Whether ``root``'s term contains a node whose id is in ``targets``; ``memo`` gets
    the answer for every node below it (by AST id — valid while ``root`` lives)."""
    ctx = root.ctx.ref()
    start = root.as_ast()
    stack: list[tuple[Any, bool]] = [(start, False)]
    while stack:
        a, expanded = stack.pop()
        node = z3.Z3_get_ast_id(ctx, a)
        if node in memo and not expanded:
            continue
        if node in targets:
            memo[node] = True
            continue
        children = _children(ctx, a)
        if not expanded:
            stack.append((a, True))
            stack += [(c, False) for c in children]
        else:
            memo[node] = any(memo.get(z3.Z3_get_ast_id(ctx, c), True) for c in children)
    return memo[z3.Z3_get_ast_id(ctx, start)]
