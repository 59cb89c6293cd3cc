"""The string abstraction: a string the policies only test against literals is one of
finitely many classes.

A policy set observes a string attribute ``x`` only through *atoms*: equality with a
literal, ``startsWith``/``endsWith``/``contains`` a literal, ``matches`` a pattern, and
the necessary conditions of its type — each a regular language. The nonempty Boolean
combinations of those languages (the *cells*) partition the strings the request can
carry, and every rule, assertion and combining formula depends only on which cell ``x``
is in. So ``x`` becomes an integer class ``0 <= c < K`` and each atom the set of cells
inside it: the solver answers integer/Boolean questions instead of string-theory ones
(Zelkova's abstraction of strings to the finitely many values the policies mention).
The abstraction is exact, not an approximation: a cell is kept only when Z3 shows it
nonempty (with a representative string, preferring realisable ASCII), and cut only when
Z3 proves it empty.

Lists of strings observed only through ``size()``, ``"lit" in L`` and ``exists``/``all``
bodies that cannot raise become a length ``n`` and one Boolean per element cell ("some
element is in cell k"): ``exists`` is a disjunction over cells, ``all`` a conjunction —
no quantifier. A witness list holds one representative per present cell, padded to ``n``.

Where the abstraction cannot decide — a string compared with another attribute, its
length, ``lower()`` of a non-literal, concatenation, a comprehension whose body can
raise, too many cells, or a cell Z3 could not decide within the budget — that attribute
keeps the exact string theory, and the report lists it with the reason.
"""

from __future__ import annotations

from typing import Any

import z3

from ordinance.policy.analysis.encode import all_of, any_of, connective
from ordinance.policy.analysis.fuse import Fuser, _atom
from ordinance.policy.analysis.partition import MAX_CELLS, Partitioner, Subject
from ordinance.policy.analysis.space import (
    ListQuantifier,
    ToolSpace,
    _necessary,
    _nice,
)
from ordinance.policy.analysis.terms import mentions
from ordinance.policy.analysis.zctx import per_context
from ordinance.policy.types import Type

_STR = z3.StringSort  # sorts and terms of the current Z3 context (see zctx.py)
_RE = per_context(lambda: z3.ReSort(z3.StringSort()))
_FULL = per_context(lambda: z3.Full(_RE()))
_STRING_SEQ = per_context(lambda: z3.SeqSort(z3.StringSort()))


def _regex_of(t: Type, probe: z3.ExprRef, make: Any) -> z3.ReRef | None:
    """The language of a type's necessary (or nice) condition, when it is one membership."""
    cond = make(t, probe)
    if cond is None:
        return None
    pure = _atom(Fuser()(cond))
    return pure[2] if pure is not None and pure[1].eq(probe) else None


class Abstraction(Partitioner):
    """Built from every formula a tool's checks will see (rules, assertions, base)."""

    def __init__(self, space: ToolSpace, formulas: list[z3.BoolRef], rlimit: int):
        self.space = space
        self.rlimit = rlimit
        self.exact: dict[str, str] = {}  # attribute label -> why it keeps string theory
        self.scalars: dict[int, Subject] = {}  # by the attribute variable's AST id
        self.lists: dict[int, Subject] = {}  # by the list variable's AST id
        self._vars: dict[int, z3.ExprRef] = {}
        self._elem_of: dict[int, int] = {}  # element constant id -> list variable id
        self._bad: set[int] = set()
        self._why: dict[int, str] = {}
        self._solver: z3.Solver | None = None
        # (text, language id) -> (language, member?): the language is kept so its id stays
        self._members: dict[tuple[str, int], tuple[z3.ReRef, bool]] = {}
        for a in space.attrs.values():
            v = a.var
            label = f"{a.root}.{a.name}"
            if v.sort() == _STR():
                base = _regex_of(a.type, v, _necessary)
                nice = _regex_of(a.type, v, _nice)
                self.scalars[v.get_id()] = Subject(
                    label, base if base is not None else _FULL(), nice
                )
                self._vars[v.get_id()] = v
            elif v.sort() == _STRING_SEQ() and a.type.elem is not None:
                e = z3.Const(f"elem:{label}", _STR())
                base = _regex_of(a.type.elem, e, _necessary)
                nice = _regex_of(a.type.elem, e, _nice)
                self.lists[v.get_id()] = Subject(label, base if base is not None else _FULL(), nice)
                self._vars[v.get_id()] = v
        for q in space.comprehensions.values():
            if q.seq.get_id() in self.lists:
                self._elem_of[q.elem.get_id()] = q.seq.get_id()
        # the candidates' variables: a subterm mentioning none of them has nothing for the
        # scan or the rewrite to do (terms.mentions, memoised by AST id; roots kept alive)
        self._targets = {*self.scalars, *self.lists, *self._elem_of}
        self._relevance: dict[int, bool] = {}
        self._roots: list[z3.ExprRef] = []
        self._scan(formulas)
        self._base_done: set[int] = set()
        for vid in list(self.scalars) + list(self.lists):
            subject = self.scalars.get(vid) or self.lists[vid]
            if vid in self._bad:
                self.exact[subject.label] = self._why.get(vid, "used other than against literals")
            elif not self._partition(subject):
                self._bad.add(vid)
                self.exact[subject.label] = (
                    f"more than {MAX_CELLS} classes, or a class undecided within the budget"
                )
        for vid in self._bad:
            self.scalars.pop(vid, None)
            self.lists.pop(vid, None)
        self.constraints: list[z3.BoolRef] = []
        self._has: dict[int, list[z3.BoolRef]] = {}
        self._len: dict[int, z3.ArithRef] = {}
        for subject in self.scalars.values():
            subject.cls = z3.Int(f"class({subject.label})")
            self.constraints.append(z3.And(subject.cls >= 0, subject.cls < len(subject.cells)))
        for vid, subject in self.lists.items():
            has = [z3.Bool(f"has({subject.label}:{k})") for k in range(len(subject.cells))]
            n = z3.Int(f"size({subject.label})")
            self._has[vid], self._len[vid] = has, n
            present = [z3.If(h, 1, 0) for h in has]
            self.constraints += [
                n >= (z3.Sum(present) if present else 0),
                (n == 0) == z3.Not(any_of(*has)),
            ]
            if self._is_set(vid):  # distinct elements: singleton cells hold one each
                big = [h for h, c in zip(has, subject.cells, strict=True) if not c.singleton]
                small = [
                    z3.If(h, 1, 0) for h, c in zip(has, subject.cells, strict=True) if c.singleton
                ]
                self.constraints.append(z3.Or(any_of(*big), n <= (z3.Sum(small) if small else 0)))
        self._memo: dict[int, tuple[z3.ExprRef, z3.ExprRef]] = {}

    # -- which strings can be abstracted -------------------------------------------------
    def _is_set(self, vid: int) -> bool:
        for a in self.space.attrs.values():
            if a.var.get_id() == vid:
                return a.type.name == "set"
        return False

    def _subject_key(self, e: z3.ExprRef) -> tuple[str, int] | None:
        vid = e.get_id()
        if vid in self.scalars:
            return "scalar", vid
        if vid in self._elem_of:
            return "elem", self._elem_of[vid]
        if vid in self.lists:
            return "list", vid
        return None

    def _disqualify(self, vid: int, why: str) -> None:
        if vid not in self._bad:
            self._bad.add(vid)
            self._why[vid] = why

    def _scan(self, formulas: list[z3.BoolRef]) -> None:
        seen: set[int] = set()
        todo: list[tuple[z3.ExprRef, bool]] = [(f, False) for f in formulas]
        while todo:
            e, quantified = todo.pop()
            if e.get_id() in seen:
                continue
            seen.add(e.get_id())
            if not self._relevant(e):
                continue
            q = self.space.comprehensions.get(e.get_id())
            if q is not None and q.seq.get_id() in self.lists:
                todo.append((q.body, quantified))
                continue
            if z3.is_quantifier(e):
                todo.append((e.body(), True))
                continue
            if not z3.is_app(e):
                continue
            key = self._subject_key(e)
            if key is not None:  # a bare occurrence: not inside a recognised atom
                vid = key[1]
                self._disqualify(vid, "compared with or computed from non-literals")
                continue
            atom = _atom(e)
            if atom is not None:
                key = self._subject_key(atom[1])
                if key is not None and key[0] != "list":
                    if quantified:
                        self._disqualify(key[1], "read inside a quantifier it cannot replace")
                    else:
                        subject = self.scalars.get(key[1]) or self.lists[key[1]]
                        subject.atoms.setdefault(atom[2].get_id(), atom[2])
                    continue
            kind = e.decl().kind()
            if kind == z3.Z3_OP_SEQ_LENGTH and e.arg(0).get_id() in self.lists:
                if quantified:
                    self._disqualify(e.arg(0).get_id(), "read inside a quantifier")
                continue
            if (
                kind == z3.Z3_OP_SEQ_CONTAINS
                and e.arg(0).get_id() in self.lists
                and z3.is_app_of(e.arg(1), z3.Z3_OP_SEQ_UNIT)
                and z3.is_string_value(e.arg(1).arg(0))
            ):
                subject = self.lists[e.arg(0).get_id()]
                lang = z3.Re(e.arg(1).arg(0))
                subject.atoms.setdefault(lang.get_id(), lang)
                if quantified:
                    self._disqualify(e.arg(0).get_id(), "read inside a quantifier")
                continue
            todo.extend((c, quantified) for c in e.children())
        # a list left exact keeps its quantifiers, whose bodies then read the other
        # strings in it exactly: those stay exact too (until nothing changes)
        changed = True
        while changed:
            changed = False
            for q in self.space.comprehensions.values():
                if q.seq.get_id() in self._bad or q.seq.get_id() not in self.lists:
                    for vid in self._vars_in(q.body):
                        if vid not in self._bad:
                            self._disqualify(vid, "read inside a list quantifier left exact")
                            changed = True

    def _vars_in(self, e: z3.ExprRef) -> set[int]:
        out: set[int] = set()
        seen: set[int] = set()
        todo = [e]
        while todo:
            x = todo.pop()
            if x.get_id() in seen:
                continue
            seen.add(x.get_id())
            key = self._subject_key(x)
            if key is not None:
                out.add(key[1])
            elif x.get_id() in self._vars:
                out.add(x.get_id())
            if z3.is_quantifier(x):
                todo.append(x.body())
            elif z3.is_app(x):
                todo.extend(x.children())
        return out

    # -- rewriting formulas --------------------------------------------------------------
    def rewrite(self, e: z3.ExprRef) -> z3.ExprRef:
        if not self.scalars and not self.lists:
            return e
        return self._rewrite(e, {})

    def _cells_in(self, subject: Subject, lang: z3.ReRef) -> list[int]:
        """The cells inside an atom's language. Cells refine every atom that was scanned
        (each is inside it or disjoint from it), so the representative tells which."""
        if lang.get_id() not in subject.atoms and not lang.eq(subject.base):
            raise RuntimeError(f"{subject.label}: an atom the abstraction was not built from")
        return [k for k, c in enumerate(subject.cells) if self._member(c.rep, lang)]

    def _rewrite(self, e: z3.ExprRef, env: dict[int, z3.ExprRef]) -> z3.ExprRef:
        key = e.get_id()
        if not env:
            hit = self._memo.get(key)
            if hit is not None:
                return hit[1]
        out = self._compute(e, env)
        if not env:
            self._memo[key] = (e, out)
        return out

    def _relevant(self, e: z3.ExprRef) -> bool:
        found = self._relevance.get(e.get_id())
        if found is None:
            self._roots.append(e)
            found = mentions(e, self._targets, self._relevance)
        return found

    def _compute(self, e: z3.ExprRef, env: dict[int, z3.ExprRef]) -> z3.ExprRef:
        if not self._relevant(e):
            return e
        q = self.space.comprehensions.get(e.get_id())
        if q is not None and q.seq.get_id() in self.lists:
            return self._quantifier(q, env)
        if not z3.is_app(e) or e.num_args() == 0:
            return e
        atom = _atom(e)
        if atom is not None:
            sid = atom[1].get_id()
            if sid in self.scalars:
                subject = self.scalars[sid]
                assert subject.cls is not None
                cls: z3.ExprRef = subject.cls
                return any_of(*[cls == k for k in self._cells_in(subject, atom[2])])
            if sid in env:  # an element of an abstracted list: its class is fixed
                vid, k = self._elem_of[sid], env[sid].as_long()
                inside = k in self._cells_in(self.lists[vid], atom[2])
                return z3.BoolVal(inside)
        kind = e.decl().kind()
        if kind == z3.Z3_OP_SEQ_LENGTH and e.arg(0).get_id() in self.lists:
            return self._len[e.arg(0).get_id()]
        if kind == z3.Z3_OP_SEQ_CONTAINS and e.arg(0).get_id() in self.lists:
            vid = e.arg(0).get_id()
            lang = z3.Re(e.arg(1).arg(0))
            has = self._has[vid]
            return any_of(*[has[k] for k in self._cells_in(self.lists[vid], lang)])
        children = [self._rewrite(c, env) for c in e.children()]
        if all(c.eq(o) for c, o in zip(children, e.children(), strict=True)):
            return e
        if kind == z3.Z3_OP_AND:
            return all_of(*children)
        if kind == z3.Z3_OP_OR:
            return any_of(*children)
        try:
            return e.decl()(*children)
        except z3.Z3Exception:
            return e

    def _quantifier(self, q: ListQuantifier, env: dict[int, z3.ExprRef]) -> z3.BoolRef:
        vid = q.seq.get_id()
        has = self._has[vid]
        parts: list[z3.BoolRef] = []
        for k in range(len(self.lists[vid].cells)):
            body = self._rewrite(q.body, {**env, q.elem.get_id(): z3.IntVal(k)})
            body = z3.simplify(body)
            if q.exists:
                parts.append(all_of(has[k], body))
            else:
                parts.append(z3.Implies(has[k], body))
        if q.exists:
            return any_of(*parts)
        return all_of(*parts) if parts else z3.BoolVal(True)

    def preferences(self) -> list[z3.BoolRef]:
        """Realisable witnesses: classes whose representative is a "nice" value (the
        bucket asks for them first, as it does for exact strings)."""
        out: list[z3.BoolRef] = []
        for s in self.scalars.values():
            assert s.cls is not None
            cls: z3.ExprRef = s.cls
            bad = [k for k, c in enumerate(s.cells) if not c.nice]
            out += [cls != k for k in bad]
        for vid, s in self.lists.items():
            out += [z3.Not(self._has[vid][k]) for k, c in enumerate(s.cells) if not c.nice]
        return out

    # -- back to concrete requests -------------------------------------------------------
    def consts(self) -> list[z3.ExprRef]:
        """The abstract variables a request is pinned by (with the exact ones)."""
        out: list[z3.ExprRef] = [s.cls for s in self.scalars.values() if s.cls is not None]
        for vid in self.lists:
            out += [*self._has[vid], self._len[vid]]
        return out

    def mentions(self, f: z3.ExprRef) -> bool:
        """``f`` reads an abstracted string or list."""
        return any(v in self.scalars or v in self.lists for v in self._vars_in(f))

    def abstracted(self, v: z3.ExprRef) -> bool:
        return v.get_id() in self.scalars or v.get_id() in self.lists

    def view(self, model: z3.ModelRef) -> ModelView:
        return ModelView(self, model)

    def summary(self) -> dict[str, Any]:
        return {
            "classes": {
                s.label: len(s.cells) for s in [*self.scalars.values(), *self.lists.values()]
            },
            "exact": dict(sorted(self.exact.items())),
        }


class ModelView:
    """A model of the abstract formulas, read as concrete request values."""

    def __init__(self, abstraction: Abstraction, model: z3.ModelRef):
        self.a = abstraction
        self.model = model

    def eval(self, e: z3.ExprRef, model_completion: bool = False) -> z3.ExprRef:
        a = self.a
        vid = e.get_id()
        if vid in a.scalars:
            subject = a.scalars[vid]
            assert subject.cls is not None
            k = self.model.eval(subject.cls, model_completion=True).as_long()
            return z3.StringVal(subject.cells[k].rep)
        if vid in a.lists:
            subject = a.lists[vid]
            n = self.model.eval(a._len[vid], model_completion=True).as_long()
            present = [
                k
                for k, h in enumerate(a._has[vid])
                if z3.is_true(self.model.eval(h, model_completion=True))
            ]
            items = [subject.cells[k].rep for k in present]
            if a._is_set(vid):
                for k in present:
                    if len(items) >= n:
                        break
                    if not subject.cells[k].singleton:
                        more = a.members(subject, k, n - len(items) + 1)[1:]
                        items += more[: n - len(items)]
            while items and len(items) < n:
                items.append(items[0])
            if not items:
                return z3.Empty(_STRING_SEQ())
            units = [z3.Unit(z3.StringVal(s)) for s in items]
            return units[0] if len(units) == 1 else z3.Concat(*units)
        return self.model.eval(e, model_completion=model_completion)


__all__ = ["Abstraction", "ModelView", "connective"]
