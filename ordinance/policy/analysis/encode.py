"""Conditions as Z3 terms: for every sub-expression, its value *and* whether evaluating it
raises (an evaluation error makes the rule a deny), mirroring
:class:`ordinance.policy.codegen.ExprCompiler` construct by construct.

Short-circuiting matters for errors: ``a && b`` raises when ``a`` raises, or when ``a`` is
true and ``b`` raises; ``exists``/``all`` stop at the first deciding element, so an element
that raises after that point does not. Where a construct has no exact encoding, the term is
built from uninterpreted functions (a sound over-approximation: every real behaviour is
still a possible one) and the rule carries a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from ordinance.policy import canon
from ordinance.policy.analysis.space import ListQuantifier, ToolSpace, is_attribute, sort_of
from ordinance.policy.analysis.zctx import per_context
from ordinance.policy.analysis.zregex import (
    NotEncodable,
    lower_preimage,
    lowered_literal,
    search_regex,
)
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
from ordinance.policy.codegen import FRAGMENT, canonicalising, nfkc_fragment
from ordinance.policy.typecheck import Typed, parse_duration
from ordinance.policy.types import DECIMAL, STRING, Type, canonical_literal


@per_context
def false() -> z3.BoolRef:
    return z3.BoolVal(False)


@per_context
def true() -> z3.BoolRef:
    return z3.BoolVal(True)


@dataclass(frozen=True)
class Term:
    val: z3.ExprRef
    err: z3.BoolRef = field(default_factory=false)


# These helpers build the combining formulas, O(rules^2) nodes per tool: comparing with the
# (hash-consed) constants is one Z3 call where z3.is_true/is_false take several, and the
# connective is made by the C API directly (z3.Or/And re-check and coerce every argument
# in Python, which dominated the analysis of large buckets).
def connective(make: Any, parts: list[z3.BoolRef]) -> z3.BoolRef:
    ctx = parts[0].ctx
    args = (z3.Ast * len(parts))(*[p.as_ast() for p in parts])
    return z3.BoolRef(make(ctx.ref(), len(parts), args), ctx)


# Terms are hash-consed, so a term is the constant exactly when it is the same AST
# pointer: comparing addresses avoids a Z3 call (and its wrappers) per part.
def any_of(*parts: z3.BoolRef) -> z3.BoolRef:
    no = false().as_ast().value
    live = [p for p in parts if p.as_ast().value != no]
    if not live:
        return false()
    return live[0] if len(live) == 1 else connective(z3.Z3_mk_or, live)


def all_of(*parts: z3.BoolRef) -> z3.BoolRef:
    yes, no = true().as_ast().value, false().as_ast().value
    live = [p for p in parts if p.as_ast().value != yes]
    if not live:
        return true()
    if any(p.as_ast().value == no for p in live):
        return false()
    return live[0] if len(live) == 1 else connective(z3.Z3_mk_and, live)


def _is_int(e: z3.ExprRef) -> bool:
    return bool(e.sort() == z3.IntSort())


def coerce(a: z3.ExprRef, b: z3.ExprRef) -> tuple[z3.ExprRef, z3.ExprRef]:
    """Python mixes int and Decimal freely; Z3 needs both sides in one sort."""
    if a.sort() == b.sort():
        return a, b
    if _is_int(a) and b.sort() == z3.RealSort():
        return z3.ToReal(a), b
    if _is_int(b) and a.sort() == z3.RealSort():
        return a, z3.ToReal(b)
    raise NotEncodable(f"comparison between {a.sort()} and {b.sort()} values")


def to_sort(e: z3.ExprRef, sort: z3.SortRef) -> z3.ExprRef:
    if e.sort() == sort:
        return e
    if _is_int(e) and sort == z3.RealSort():
        return z3.ToReal(e)
    raise NotEncodable(f"a {e.sort()} value where {sort} is expected")


def _lower_map() -> z3.ExprRef:
    """``simple_lower`` per character: exact on ASCII; other characters go through an
    uninterpreted character function (the Unicode table is not encoded)."""
    c = z3.Const("c", z3.CharSort())
    other = z3.Function("lower_non_ascii", z3.CharSort(), z3.CharSort())
    code = c.to_int()
    upper = z3.And(code >= 65, code <= 90)
    return z3.Lambda(
        [c],
        z3.If(upper, z3.CharFromBv(z3.CharToBv(c) + 32), z3.If(code < 128, c, other(c))),
    )


_LOWER = per_context(_lower_map)


@dataclass
class Encoded:
    term: Term
    notes: list[str] = field(default_factory=list)


class Encoder:
    def __init__(self, space: ToolSpace, typed: Typed, tag: str):
        self.space = space
        self.types = typed.types
        self.notes: list[str] = []
        self.tag = tag  # makes bound variables unique per rule
        self.fresh = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def type_of(self, node: Expr) -> Type:
        return self.types[id(node)]

    def bound(self, sort: z3.SortRef) -> z3.ExprRef:
        self.fresh += 1
        return z3.Const(f"{self.tag}#{self.fresh}", sort)

    # -- canonical operands (codegen.ExprCompiler.as_type) ---------------------------
    def as_type(self, node: Expr, target: Type, env: dict[str, Term]) -> Term:
        own = self.type_of(node)
        if target.name == "list":
            elem = target.elem
            if elem is None or not canonicalising(elem) or own == target:
                return self.compile(node, env, target)
            if isinstance(node, ListLit):
                items = [self.as_type(i, elem, env) for i in node.items]
                return self.seq_of(items, sort_of(target))
            if isinstance(node, Conditional):
                return self.conditional(node, env, target)
            inner = self.compile(node, env)
            fn = z3.Function(f"canon_list_{elem}", inner.val.sort(), sort_of(target))
            fails = z3.Function(f"canon_list_{elem}_fails", inner.val.sort(), z3.BoolSort())
            self.note(f"run-time conversion of a list to list<{elem}> is not encoded exactly")
            return Term(fn(inner.val), any_of(inner.err, fails(inner.val)))
        if not canonicalising(target) or own == target:
            return self.compile(node, env, target)
        if isinstance(node, Literal) and isinstance(node.value, str):
            return Term(z3.StringVal(canonical_literal(node.value, target)))
        if isinstance(node, Conditional):
            return self.conditional(node, env, target)
        inner = self.compile(node, env)
        fn = z3.Function(f"canon_{target}", z3.StringSort(), z3.StringSort())
        fails = z3.Function(f"canon_{target}_fails", z3.StringSort(), z3.BoolSort())
        self.note(f"run-time canonicalisation of a plain string as {target} is not encoded exactly")
        return Term(fn(inner.val), any_of(inner.err, fails(inner.val)))

    def seq_of(self, items: list[Term], sort: z3.SortRef) -> Term:
        if not items:
            return Term(z3.Empty(sort))
        elem_sort = sort.basis() if hasattr(sort, "basis") else items[0].val.sort()
        units = [z3.Unit(to_sort(i.val, elem_sort)) for i in items]
        val = units[0] if len(units) == 1 else z3.Concat(*units)
        return Term(val, any_of(*[i.err for i in items]))

    # -- expressions -------------------------------------------------------------------
    def compile(self, node: Expr, env: dict[str, Term], hint: Type | None = None) -> Term:
        if isinstance(node, Literal):
            return Term(literal(node.value))
        if isinstance(node, ListLit):
            t = self.type_of(node)
            if t.elem is None:
                t = hint if hint is not None and hint.name == "list" else Type("list", STRING)
            items = [self.compile(i, env) for i in node.items]
            return self.seq_of(items, sort_of(t))
        if isinstance(node, Ident):
            return env[node.name]
        if isinstance(node, Select):
            return self.attribute(node)
        if isinstance(node, Unary):
            operand = self.compile(node.operand, env)
            if node.op == "!":
                return Term(z3.Not(operand.val), operand.err)
            return Term(-operand.val, operand.err)
        if isinstance(node, Binary):
            return self.binary(node, env)
        if isinstance(node, Conditional):
            return self.conditional(node, env, None)
        if isinstance(node, Call):
            return self.call(node, env)
        if isinstance(node, Comprehension):
            return self.comprehension(node, env)
        raise NotEncodable(f"expression {type(node).__name__}")

    def conditional(self, node: Conditional, env: dict[str, Term], target: Type | None) -> Term:
        c = self.compile(node.cond, env)
        if target is not None:
            then, other = (
                self.as_type(node.then, target, env),
                self.as_type(node.otherwise, target, env),
            )
        else:
            then, other = self.compile(node.then, env), self.compile(node.otherwise, env)
        sort = sort_of(self.type_of(node))
        if then.val.sort() != other.val.sort() and self.type_of(node).name != "list":
            tv, ov = to_sort(then.val, sort), to_sort(other.val, sort)
        else:
            tv, ov = coerce(then.val, other.val)
        err = any_of(c.err, all_of(c.val, then.err), all_of(z3.Not(c.val), other.err))
        return Term(z3.If(c.val, tv, ov), err)

    def attribute(self, node: Select) -> Term:
        path = attribute_path(node)
        if path is None:
            raise NotEncodable("attribute of a computed value")
        root, *rest = path
        if root == "action" and rest == ["tool"]:
            return Term(z3.StringVal(self.space.tool.name))
        name = rest[1] if root == "action" else rest[0]
        a = self.space.attr(root, name)
        if root == "resource" and name == "kind":
            return Term(a.var, z3.Not(self.space.resource_present))
        return Term(a.var, z3.Not(a.present) if not z3.is_true(a.present) else false())

    def has(self, arg: Expr) -> Term:
        path = attribute_path(arg)
        assert path is not None
        if path in (("resource",), ("resource", "kind")):
            return Term(self.space.resource_present)
        if path[0] == "action" and len(path) == 2:
            return Term(true())
        root, name = path[0], (path[2] if path[0] == "action" else path[1])
        return Term(self.space.attr(root, name).present)

    def binary(self, node: Binary, env: dict[str, Term]) -> Term:
        op = node.op
        if op in ("&&", "||"):
            a, b = self.compile(node.left, env), self.compile(node.right, env)
            if op == "&&":
                return Term(z3.And(a.val, b.val), any_of(a.err, all_of(a.val, b.err)))
            return Term(z3.Or(a.val, b.val), any_of(a.err, all_of(z3.Not(a.val), b.err)))
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        if op in ("==", "!=") and (exact := self.lower_equals(node, env)) is not None:
            return exact
        if op in ("==", "!=", "<", "<=", ">", ">="):
            a = self.as_type(node.left, rt, env)
            b = self.as_type(node.right, lt, env)
            if lt.name == "set" or rt.name == "set":
                self.sorted_set(node.left)
                self.sorted_set(node.right)
            x, y = coerce(a.val, b.val)
            val = {
                "==": lambda: x == y,
                "!=": lambda: x != y,
                "<": lambda: x < y,
                "<=": lambda: x <= y,
                ">": lambda: x > y,
                ">=": lambda: x >= y,
            }[op]()
            return Term(val, any_of(a.err, b.err))
        if op == "in":
            return self.membership(node, env)
        a, b = self.compile(node.left, env), self.compile(node.right, env)
        err = any_of(a.err, b.err)
        if op == "+" and lt.is_stringlike:
            return Term(z3.Concat(a.val, b.val), err)
        x, y = coerce(a.val, b.val)
        if op in ("/", "%"):
            # CEL semantics (codegen.int_div): truncate toward zero; x % y keeps x's sign.
            q_abs = z3.Abs(x) / z3.Abs(y)
            q = z3.If((x >= 0) == (y >= 0), q_abs, -q_abs)
            val = q if op == "/" else x - y * q
            return Term(val, any_of(err, y == 0))
        if op == "+":
            return Term(x + y, err)
        if op == "-":
            return Term(x - y, err)
        if op == "*":
            return Term(x * y, err)
        raise NotEncodable(f"operator {op}")

    # -- lower() next to a literal: exact, through the preimage of simple_lower ---------
    def lowered(self, node: Expr, env: dict[str, Term]) -> Term | None:
        """``x.lower()`` as a term whose value is the *original* ``x``, or None."""
        if isinstance(node, Call) and node.name == "lower" and node.target is not None:
            return self.compile(node.target, env)
        return None

    def lower_equals(self, node: Binary, env: dict[str, Term]) -> Term | None:
        for side, other in ((node.left, node.right), (node.right, node.left)):
            src = self.lowered(side, env)
            if src is not None and isinstance(other, Literal) and isinstance(other.value, str):
                val = z3.InRe(src.val, lowered_literal(canon.nfkc(other.value)))
                return Term(val if node.op == "==" else z3.Not(val), src.err)
        return None

    def sorted_set(self, node: Expr) -> None:
        if self.type_of(node).name != "set":
            return
        path = attribute_path(node)
        if path is None or path[0] == "window":
            raise NotEncodable("a computed set whose size or order matters")
        root, name = path[0], (path[2] if path[0] == "action" else path[1])
        self.space.require_sorted(root, name)

    def membership(self, node: Binary, env: dict[str, Term]) -> Term:
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        elem = rt.elem or STRING
        right_node = node.right
        if isinstance(right_node, ListLit) and all(
            isinstance(i, Literal) for i in right_node.items
        ):
            values = []
            for item in right_node.items:
                assert isinstance(item, Literal)
                value = item.value
                if isinstance(value, str):
                    value = canonical_literal(value, lt if canonicalising(lt) else STRING)
                values.append(literal(value))
            src = self.lowered(node.left, env)
            if src is not None and all(z3.is_string_value(v) for v in values):
                tests = [z3.InRe(src.val, lowered_literal(v.as_string())) for v in values]
                return Term(any_of(*tests), src.err)
            left = self.as_type(node.left, elem, env)
            tests = []
            for v in values:
                try:
                    x, y = coerce(left.val, v)
                except NotEncodable:
                    continue  # a value of another kind is never equal (1 != "1")
                tests.append(x == y)
            return Term(any_of(*tests), left.err)
        left = self.as_type(node.left, elem, env)
        if canonicalising(lt):
            right = self.as_type(right_node, Type("list", lt), env)
        else:
            right = self.compile(right_node, env, Type("list", lt))
        basis = right.val.sort().basis()
        return Term(
            z3.Contains(right.val, z3.Unit(to_sort(left.val, basis))), any_of(left.err, right.err)
        )

    def call(self, node: Call, env: dict[str, Term]) -> Term:
        name = node.name
        if isinstance(node.target, Ident) and node.target.name == "window" and "window" not in env:
            duration = node.args[-1]
            assert isinstance(duration, Literal) and isinstance(duration.value, str)
            seconds = parse_duration(duration.value)
            assert seconds is not None
            if name == "count":
                return Term(self.space.window("", seconds))
            path = attribute_path(node.args[0])
            assert path is not None
            return Term(self.space.window(path[2], seconds))
        if node.target is None:
            if name == "has":
                return self.has(node.args[0])
            return self.size(node.args[0], env)
        if name == "size":
            return self.size(node.target, env)
        receiver_type = self.type_of(node.target)
        src = self.lowered(node.target, env)
        if src is not None and (exact := self.lowered_method(node, src)) is not None:
            return exact
        receiver = self.compile(node.target, env)
        if name == "lower":
            self.note("lower() is exact on ASCII; other characters are over-approximated")
            return Term(z3.SeqMap(_LOWER(), receiver.val), receiver.err)
        if name == "matches":
            pattern = node.args[0]
            assert isinstance(pattern, Literal) and isinstance(pattern.value, str)
            text = canon.nfkc(pattern.value)
            try:
                return Term(z3.InRe(receiver.val, search_regex(text)), receiver.err)
            except NotEncodable as exc:
                self.note(f"pattern {text!r}: {exc} is over-approximated")
                fn = z3.Function(f"matches:{text}", z3.StringSort(), z3.BoolSort())
                return Term(fn(receiver.val), receiver.err)
        arg = self.method_argument(node.args[0], receiver_type, name, env)
        err = any_of(receiver.err, arg.err)
        if name == "startsWith":
            return Term(z3.PrefixOf(arg.val, receiver.val), err)
        if name == "endsWith":
            return Term(z3.SuffixOf(arg.val, receiver.val), err)
        return Term(z3.Contains(receiver.val, arg.val), err)

    def lowered_method(self, node: Call, src: Term) -> Term | None:
        """``x.lower().m(literal)`` as a regex over ``x`` itself."""
        arg = node.args[0] if node.args else None
        if not (isinstance(arg, Literal) and isinstance(arg.value, str)):
            return None
        text = canon.nfkc(arg.value)
        if node.name == "matches":
            return Term(z3.InRe(src.val, search_regex(text, lower_preimage)), src.err)
        full = z3.Full(z3.ReSort(z3.StringSort()))
        lit = lowered_literal(nfkc_fragment(text, node.name))
        shape = {
            "startsWith": lambda: z3.Concat(lit, full),
            "endsWith": lambda: z3.Concat(full, lit),
            "contains": lambda: z3.Concat(full, lit, full),
        }[node.name]()
        return Term(z3.InRe(src.val, shape), src.err)

    def method_argument(
        self, node: Expr, receiver: Type, method: str, env: dict[str, Term]
    ) -> Term:
        if not (isinstance(node, Literal) and isinstance(node.value, str)):
            return self.compile(node, env)
        fragment = FRAGMENT.get(receiver.name, nfkc_fragment)
        return Term(z3.StringVal(fragment(node.value, method)))

    def size(self, node: Expr, env: dict[str, Term]) -> Term:
        self.sorted_set(node)
        inner = self.compile(node, env)
        return Term(z3.Length(inner.val), inner.err)

    def comprehension(self, node: Comprehension, env: dict[str, Term]) -> Term:
        target = self.compile(node.target, env)
        exists = node.kind == "exists"
        if isinstance(node.target, ListLit):
            # A literal list unrolls into the `or` / `and` chain that any()/all() evaluate.
            result = Term(false() if exists else true())
            items = [self.compile(i, env) for i in node.target.items]
            for item in items:
                body = self.compile(node.body, {**env, node.var: item})
                if exists:
                    result = Term(
                        z3.Or(result.val, body.val),
                        any_of(result.err, all_of(z3.Not(result.val), body.err)),
                    )
                else:
                    result = Term(
                        z3.And(result.val, body.val),
                        any_of(result.err, all_of(result.val, body.err)),
                    )
            return Term(result.val, any_of(target.err, result.err))
        seq = target.val
        i = self.bound(z3.IntSort())
        # The body is written over an element constant first: the string abstraction
        # (abstract.py) reads it as "some/every element's class satisfies the body" and
        # needs no quantifier; the exact term substitutes the indexed element back.
        elem = z3.Const(f"{self.tag}#elem{self.fresh}", seq.sort().basis())
        over_elem = self.compile(node.body, {**env, node.var: Term(elem)})
        body = Term(
            z3.substitute(over_elem.val, (elem, seq[i])),
            z3.substitute(over_elem.err, (elem, seq[i])),
        )
        in_range = z3.And(i >= 0, i < z3.Length(seq))
        if z3.is_false(z3.simplify(body.err)):
            if exists:
                term = z3.Exists([i], z3.And(in_range, body.val))
            else:
                term = z3.ForAll([i], z3.Implies(in_range, body.val))
            if is_attribute(seq):
                self.space.comprehensions[term.get_id()] = ListQuantifier(
                    term, seq, elem, over_elem.val, exists
                )
            return Term(term, target.err)
        # The body can raise: which element is reached first decides. Sets iterate sorted.
        self.sorted_set(node.target)
        j = self.bound(z3.IntSort())
        at_j = [(i, j)]
        bv_j, be_j = z3.substitute(body.val, *at_j), z3.substitute(body.err, *at_j)
        keep_going = z3.And(z3.Not(be_j), z3.Not(bv_j) if exists else bv_j)
        before = z3.ForAll([j], z3.Implies(z3.And(j >= 0, j < i), keep_going))
        err = z3.Exists([i], z3.And(in_range, body.err, before))
        if exists:
            val = z3.Exists([i], z3.And(in_range, z3.Not(body.err), body.val, before))
        else:
            val = z3.ForAll([i], z3.Implies(in_range, z3.And(z3.Not(body.err), body.val)))
        return Term(val, any_of(target.err, err))


def literal(value: Any) -> z3.ExprRef:
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if isinstance(value, int):
        return z3.IntVal(value)
    if isinstance(value, Decimal):
        exact = Fraction(value)  # exact: every finite Decimal is a rational
        return z3.RealVal(f"{exact.numerator}/{exact.denominator}")
    if isinstance(value, str):
        return z3.StringVal(canon.nfkc(value))
    raise NotEncodable(f"literal {value!r}")


def encode_condition(space: ToolSpace, typed: Typed, expr: Expr, tag: str) -> Encoded:
    """The condition's value and error terms; a construct with no encoding at all makes
    the whole condition opaque (free value and error), which is still sound."""
    enc = Encoder(space, typed, tag)
    try:
        term = enc.compile(expr, {})
    except NotEncodable as exc:
        enc.note(f"condition not encoded ({exc}); treated as unknown")
        term = Term(z3.Bool(f"{tag}:opaque"), z3.Bool(f"{tag}:opaque-err"))
    return Encoded(term, enc.notes)


__all__ = ["DECIMAL", "Encoded", "Term", "encode_condition"]
