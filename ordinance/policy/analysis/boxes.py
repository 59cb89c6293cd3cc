"""Which rules can apply to the same request: an interval box per rule.

A rule's ``applies`` term is mostly a conjunction, and its conjuncts often bound one
integer variable by a constant (``action.args.amount > 100``, or a string's class after
the abstraction: ``class(region) == 3``). The box of a rule keeps those bounds, one
interval per variable, and ignores every other conjunct, so it contains every request the
rule applies to (an over-approximation). Two rules whose boxes are disjoint never apply
together: their pair is never a conflict, and where one applies the other does not matter
to the decision. The checks use this to leave such rules out of a question instead of
asking Z3 about every rule of the bucket each time (Zelkova-style bucketing).
"""

from __future__ import annotations

from typing import Any

import z3

Interval = tuple[float, float]  # inclusive bounds, -inf/inf when open
Box = dict[int, Interval]  # variable AST id -> interval

_INF = float("inf")
_FLIP = {
    z3.Z3_OP_LT: z3.Z3_OP_GT,
    z3.Z3_OP_LE: z3.Z3_OP_GE,
    z3.Z3_OP_GT: z3.Z3_OP_LT,
    z3.Z3_OP_GE: z3.Z3_OP_LE,
    z3.Z3_OP_EQ: z3.Z3_OP_EQ,
}


# The walk reads raw ASTs through the C API (terms.py): z3py wrappers per node were most of
# the cost of boxing a 100-rule bucket.
def _int_var(ctx: Any, a: Any) -> bool:
    if z3.Z3_get_ast_kind(ctx, a) != z3.Z3_APP_AST:
        return False
    app = z3.Z3_to_app(ctx, a)
    return bool(
        z3.Z3_get_app_num_args(ctx, app) == 0
        and z3.Z3_get_decl_kind(ctx, z3.Z3_get_app_decl(ctx, app)) == z3.Z3_OP_UNINTERPRETED
        and z3.Z3_get_sort_kind(ctx, z3.Z3_get_sort(ctx, a)) == z3.Z3_INT_SORT
    )


def _int_value(ctx: Any, a: Any) -> int | None:
    if not z3.Z3_is_numeral_ast(ctx, a):
        return None
    if z3.Z3_get_sort_kind(ctx, z3.Z3_get_sort(ctx, a)) != z3.Z3_INT_SORT:
        return None
    return int(z3.Z3_get_numeral_string(ctx, a))


def _app(ctx: Any, a: Any) -> tuple[int, list[Any]] | None:
    """The application's operator kind and arguments (None: not an application)."""
    if z3.Z3_get_ast_kind(ctx, a) != z3.Z3_APP_AST:
        return None
    app = z3.Z3_to_app(ctx, a)
    kind = z3.Z3_get_decl_kind(ctx, z3.Z3_get_app_decl(ctx, app))
    return kind, [z3.Z3_get_app_arg(ctx, app, i) for i in range(z3.Z3_get_app_num_args(ctx, app))]


def _bound(ctx: Any, a: Any) -> tuple[int, Interval] | None:
    found = _app(ctx, a)
    return None if found is None else _bound_of(ctx, *found)


def _bound_of(ctx: Any, kind: int, args: list[Any]) -> tuple[int, Interval] | None:
    """``var op constant`` (either side) as the interval it allows, else None."""
    if kind not in _FLIP or len(args) != 2:
        return None
    left, right = args
    c = _int_value(ctx, right)
    var = left
    if c is None:
        c, var, kind = _int_value(ctx, left), right, _FLIP[kind]
    if c is None or not _int_var(ctx, var):
        return None
    interval = {
        z3.Z3_OP_LT: (-_INF, c - 1),
        z3.Z3_OP_LE: (-_INF, c),
        z3.Z3_OP_GT: (c + 1, _INF),
        z3.Z3_OP_GE: (c, _INF),
        z3.Z3_OP_EQ: (c, c),
    }[kind]
    return z3.Z3_get_ast_id(ctx, var), interval


def _hull(ctx: Any, disjuncts: list[Any]) -> tuple[int, Interval] | None:
    """``x == 1 || x == 3``: the hull [1, 3] (every disjunct bounds the same variable)."""
    bounds: list[tuple[int, Interval]] = []
    for d in disjuncts:
        found = _bound(ctx, d)
        if found is None or (bounds and found[0] != bounds[0][0]):
            return None
        bounds.append(found)
    if not bounds:
        return None
    return bounds[0][0], (min(b[1][0] for b in bounds), max(b[1][1] for b in bounds))


def box_of(term: z3.BoolRef) -> Box | None:
    """The box of ``term`` (None: ``term`` is false, no request is in it)."""
    ctx = term.ctx.ref()
    box: Box = {}
    todo = [term.as_ast()]
    while todo:
        found = _app(ctx, todo.pop())
        if found is None:
            continue
        kind, args = found
        if kind == z3.Z3_OP_AND:
            todo += args
            continue
        if kind == z3.Z3_OP_FALSE:
            return None
        bound = _hull(ctx, args) if kind == z3.Z3_OP_OR else _bound_of(ctx, kind, args)
        if bound is None:
            continue
        var, (lo, hi) = bound
        old = box.get(var, (-_INF, _INF))
        box[var] = (max(old[0], lo), min(old[1], hi))
        if box[var][0] > box[var][1]:
            return None
    return box


def overlap(a: Box | None, b: Box | None) -> bool:
    """Some request could be in both boxes."""
    if a is None or b is None:
        return False
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    for var, (lo, hi) in small.items():
        other = large.get(var)
        if other is not None and (hi < other[0] or other[1] < lo):
            return False
    return True


def neighbours(boxes: dict[str, Box | None]) -> dict[str, set[str]]:
    """For every rule, the rules whose boxes meet its box (itself included, unless its
    box is empty). Pairs are found by a sweep over the variable most boxes bound, so a
    bucket of sparse ranges costs about one comparison per overlapping pair rather than
    one per pair of rules."""
    live = [rid for rid, box in boxes.items() if box is not None]
    out: dict[str, set[str]] = {rid: set() for rid in boxes}
    counts: dict[int, int] = {}
    for rid in live:
        for var in boxes[rid] or {}:
            counts[var] = counts.get(var, 0) + 1
    if not counts:
        return {rid: set(live) if rid in live else set() for rid in boxes}
    var = max(counts, key=lambda v: (counts[v], -v))  # deterministic on ties
    spans = sorted(
        ((box[var], rid) for rid in live if var in (box := boxes[rid] or {})),
        key=lambda item: item[0][0],
    )
    loose = [rid for rid in live if var not in (boxes[rid] or {})]

    def meet(a: str, b: str) -> None:
        if overlap(boxes[a], boxes[b]):
            out[a].add(b)
            out[b].add(a)

    for i, ((_, hi), a) in enumerate(spans):
        for (lo, _), b in spans[i:]:
            if lo > hi:
                break  # sorted by lower bound: no later span meets this one
            meet(a, b)
    for a in loose:
        for b in live:
            meet(a, b)
    return out
