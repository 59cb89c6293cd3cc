"""Fuse Boolean combinations of regular constraints on one string into one membership.

Z3's regex procedure (symbolic derivatives) decides ``x ∈ R1 ∩ (R2 ∪ R3)`` in
milliseconds, yet gives up on ``x ∈ R1 ∧ (x ∈ R2 ∨ x ∈ R3)`` within seconds: the
disjunction makes the core case-split on memberships. Equality with a literal,
``startsWith``/``endsWith``/``contains`` with a literal and ``matches`` are all
memberships, so a rule like ``url.startsWith(A) || url.startsWith(B)`` becomes one
``InRe``. The rewrite is an equivalence (sound both ways).
"""

from __future__ import annotations

import z3

from ordinance.policy.analysis.encode import connective
from ordinance.policy.analysis.zctx import per_context

_RE = per_context(lambda: z3.ReSort(z3.StringSort()))  # of the current context (zctx.py)
_FULL = per_context(lambda: z3.Full(_RE()))

Pure = tuple[int, z3.ExprRef, z3.ReRef]  # (subject id, subject, language)


def _subject(e: z3.ExprRef) -> bool:
    return e.sort() == z3.StringSort() and not z3.is_string_value(e)


def _atom(e: z3.ExprRef) -> Pure | None:
    if not z3.is_app(e):
        return None
    kind = e.decl().kind()
    if kind == z3.Z3_OP_SEQ_IN_RE and _subject(e.arg(0)) and not z3.is_var(e.arg(0)):
        return e.arg(0).get_id(), e.arg(0), e.arg(1)
    if kind == z3.Z3_OP_SEQ_PREFIX and z3.is_string_value(e.arg(0)) and _subject(e.arg(1)):
        return e.arg(1).get_id(), e.arg(1), z3.Concat(z3.Re(e.arg(0)), _FULL())
    if kind == z3.Z3_OP_SEQ_SUFFIX and z3.is_string_value(e.arg(0)) and _subject(e.arg(1)):
        return e.arg(1).get_id(), e.arg(1), z3.Concat(_FULL(), z3.Re(e.arg(0)))
    if kind == z3.Z3_OP_SEQ_CONTAINS and _subject(e.arg(0)) and z3.is_string_value(e.arg(1)):
        return e.arg(0).get_id(), e.arg(0), z3.Concat(_FULL(), z3.Re(e.arg(1)), _FULL())
    if kind == z3.Z3_OP_EQ and e.arg(0).sort() == z3.StringSort():
        a, b = e.arg(0), e.arg(1)
        if _subject(a) and z3.is_string_value(b):
            return a.get_id(), a, z3.Re(b)
        if _subject(b) and z3.is_string_value(a):
            return b.get_id(), b, z3.Re(a)
    return None


class Fuser:
    def __init__(self) -> None:
        # keyed by AST id; the key expression is kept alive so that its id is not reused
        self._memo: dict[int, tuple[z3.ExprRef, z3.ExprRef, Pure | None]] = {}

    def __call__(self, e: z3.ExprRef) -> z3.ExprRef:
        return self._walk(e)[0]

    def _walk(self, e: z3.ExprRef) -> tuple[z3.ExprRef, Pure | None]:
        key = e.get_id()
        found = self._memo.get(key)
        if found is None:
            result = self._compute(e)
            self._memo[key] = (e, *result)
            return result
        return found[1], found[2]

    def _compute(self, e: z3.ExprRef) -> tuple[z3.ExprRef, Pure | None]:
        if not z3.is_app(e) or e.num_args() == 0:
            return e, None
        atom = _atom(e)
        if atom is not None:
            return e, atom
        kind = e.decl().kind()
        children = [self._walk(c) for c in e.children()]
        if kind == z3.Z3_OP_NOT:
            inner, pure = children[0]
            if pure is not None:
                lang = z3.Complement(pure[2])
                return z3.InRe(pure[1], lang), (pure[0], pure[1], lang)
            return z3.Not(inner), None
        if kind in (z3.Z3_OP_AND, z3.Z3_OP_OR):
            groups: dict[int, list[Pure]] = {}
            rest: list[z3.ExprRef] = []
            for expr, pure in children:
                if pure is None:
                    rest.append(expr)
                else:
                    groups.setdefault(pure[0], []).append(pure)
            combine = z3.Intersect if kind == z3.Z3_OP_AND else z3.Union
            fused: list[z3.ExprRef] = []
            last: Pure | None = None
            for items in groups.values():
                lang = items[0][2] if len(items) == 1 else combine(*[p[2] for p in items])
                fused.append(z3.InRe(items[0][1], lang))
                last = (items[0][0], items[0][1], lang)
            parts = fused + rest
            make = z3.Z3_mk_and if kind == z3.Z3_OP_AND else z3.Z3_mk_or
            result = parts[0] if len(parts) == 1 else connective(make, parts)
            return result, (last if len(parts) == 1 else None)
        try:
            return e.decl()(*[c for c, _ in children]), None
        except z3.Z3Exception:
            return e, None
