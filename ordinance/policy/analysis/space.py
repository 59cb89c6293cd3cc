"""The request space of one tool: Z3 variables for every request attribute, the
constraints every valid canonical request satisfies, and the way back from a model to a
concrete request (the witness) and a window history that realises it.

Soundness stance (see docs/analysis.md): ``base`` constraints are *necessary* conditions
of valid canonical requests, so the modelled space is a superset of the real one and an
``unsat`` answer is a proof. ``nice`` constraints pick, among models, ones whose values
are plain ASCII and already canonical, so that witnesses are realisable; every witness is
then replayed through the real evaluator before it is reported.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from ordinance.policy.analysis.zctx import per_context
from ordinance.policy.analysis.zregex import char_class
from ordinance.policy.schema import Field, Fields, Schema, Tool
from ordinance.policy.testing import TEST_NOW
from ordinance.policy.types import Type
from ordinance.policy.window import InMemoryWindows

ROOTS = ("agent", "action", "resource", "context")
_STRING = z3.StringSort  # a sort or term of the current Z3 context (see zctx.py)
_RE = per_context(lambda: z3.ReSort(z3.StringSort()))


def sort_of(t: Type) -> z3.SortRef:
    if t.is_stringlike:
        return _STRING()
    if t.name == "int":
        return z3.IntSort()
    if t.name == "decimal":
        return z3.RealSort()
    if t.name == "bool":
        return z3.BoolSort()
    if t.name == "set":
        return z3.SeqSort(_STRING())
    if t.name == "list" and t.elem is not None:
        return z3.SeqSort(sort_of(t.elem))
    raise TypeError(f"no sort for {t}")


def _lit(text: str) -> z3.ReRef:
    return z3.Re(z3.StringVal(text))


def _plus(r: z3.ReRef) -> z3.ReRef:
    return z3.Plus(r)


_LOWER = per_context(lambda: char_class([(0x61, 0x7A)]))
_DIGIT = per_context(lambda: char_class([(0x30, 0x39)]))
_LABEL = per_context(lambda: _plus(z3.Union(_LOWER(), _DIGIT(), _lit("_"), _lit("-"))))
# Exactly the image of canonical_domain (an ASCII-only regex, see canon._DOMAIN_RE).
DOMAIN_RE = per_context(lambda: z3.Concat(_LABEL(), z3.Star(z3.Concat(_lit("."), _LABEL()))))
_NICE_CHAR = per_context(
    lambda: char_class([(0x61, 0x7A), (0x30, 0x39), (0x5F, 0x5F), (0x2D, 0x2D)])
)
_NICE_WORD = per_context(lambda: _plus(_NICE_CHAR()))
_NICE_PATH = per_context(lambda: z3.Union(_lit("/"), _plus(z3.Concat(_lit("/"), _NICE_WORD()))))
_PRINTABLE = per_context(lambda: z3.Star(char_class([(0x20, 0x7E)])))
_ASCII_UPPER = per_context(lambda: char_class([(0x41, 0x5A)]))
_ANY = per_context(lambda: z3.Full(_RE()))
_ASCII_WS = per_context(lambda: char_class([(0x09, 0x0D), (0x1C, 0x20)]))


def _no(sub: z3.ReRef) -> z3.ReRef:
    return z3.Complement(z3.Concat(_ANY(), sub, _ANY()))


# Necessary conditions of each canonical form (supersets of the image of canon.*).
def _necessary(t: Type, v: z3.ExprRef) -> z3.BoolRef | None:
    if t.name == "domain":
        return z3.InRe(v, DOMAIN_RE())  # exact
    if t.name == "email":
        # canon.emails: the local part is printable ASCII (dot-atom), case-folded
        ascii_word = z3.Plus(char_class([(0x21, 0x7E)]))
        local = z3.Intersect(ascii_word, _no(_ASCII_UPPER()), _no(_lit("@")))
        return z3.InRe(v, z3.Concat(local, _lit("@"), DOMAIN_RE()))
    if t.name == "string" and t.enum is not None:  # exact: only the enum's values
        return z3.Or([v == z3.StringVal(e) for e in sorted(t.enum)])
    if t.name == "string" and t.norm == "nfkc_casefold_trim":
        return z3.InRe(v, _no(_ASCII_UPPER()))
    if t.name == "path":
        # resolved segments never leave "//", "/./", "\\", NUL or a trailing "/"; never
        # empty (a regex, not a length test: the string abstraction reads memberships only)
        bad = z3.Union(_lit("//"), _lit("\\"), _lit("\x00"), _lit("/./"))
        shape = z3.Intersect(_no(bad), z3.Complement(z3.Concat(z3.Plus(_ANY()), _lit("/"))))
        return z3.InRe(v, z3.Intersect(shape, z3.Concat(z3.AllChar(_RE()), _ANY())))
    if t.name == "url":
        scheme = z3.Concat(
            _LOWER(), z3.Star(z3.Union(_LOWER(), _DIGIT(), char_class([(0x2B, 0x2E)])))
        )
        return z3.InRe(v, z3.Concat(scheme, _lit("://"), _ANY()))
    return None


def _nice(t: Type, v: z3.ExprRef) -> z3.BoolRef | None:
    if t.name in ("string", "tool"):
        return z3.InRe(v, _PRINTABLE())
    if t.name == "domain":
        return z3.InRe(v, DOMAIN_RE())
    if t.name == "email":
        return z3.InRe(v, z3.Concat(_NICE_WORD(), _lit("@"), DOMAIN_RE()))
    if t.name == "path":
        return z3.InRe(v, _NICE_PATH())
    if t.name == "url":
        scheme = z3.Union(_lit("https"), _lit("http"))
        path = z3.Option(z3.Concat(_NICE_WORD(), z3.Star(z3.Concat(_lit("/"), _NICE_WORD()))))
        return z3.InRe(v, z3.Concat(scheme, _lit("://"), DOMAIN_RE(), _lit("/"), path))
    if t.name == "decimal":  # a finite decimal with two places: representable in a request
        cents = z3.Int(f"cents({v})")
        return z3.ToReal(cents) == v * 100
    return None


def is_attribute(e: z3.ExprRef) -> bool:
    """An uninterpreted constant: a request attribute's variable (not a computed value)."""
    return bool(z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED)


@dataclass(frozen=True)
class ListQuantifier:
    """``L.exists(e, body)`` / ``L.all(e, body)`` with a body that cannot raise: the exact
    quantified ``term`` and the same body over an element constant ``elem``."""

    term: z3.BoolRef  # kept alive: its AST id keys ToolSpace.comprehensions
    seq: z3.ExprRef
    elem: z3.ExprRef
    body: z3.BoolRef
    exists: bool


@dataclass
class Attr:
    root: str
    name: str
    type: Type
    var: z3.ExprRef
    present: z3.BoolRef  # z3.BoolVal(True) for required fields


@dataclass
class ToolSpace:
    """Variables and constraints for requests to one tool (shared by every rule on it)."""

    schema: Schema
    tool: Tool
    attrs: dict[tuple[str, str], Attr] = field(default_factory=dict)
    base: list[z3.BoolRef] = field(default_factory=list)
    nice: list[z3.BoolRef] = field(default_factory=list)
    windows: dict[tuple[str, int], z3.ExprRef] = field(default_factory=dict)
    sorted_sets: set[tuple[str, str]] = field(default_factory=set)
    comprehensions: dict[int, ListQuantifier] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resource_present = z3.Bool("has(resource)")
        for root, fields in (
            ("agent", self.schema.agent),
            ("action", self.tool.args),
            ("resource", self.schema.resource),
            ("context", self.schema.context),
        ):
            self._record(root, fields)

    def _record(self, root: str, fields: Fields) -> None:
        for name, spec in sorted(fields.items()):
            self._attr(root, name, spec)

    def _attr(self, root: str, name: str, spec: Field) -> None:
        label = f"{root}.{name}"
        var = z3.Const(label, sort_of(spec.type))
        optional = spec.optional and (root, name) != ("agent", "roles")
        if root == "resource":
            present = z3.Bool(f"has({label})") if optional else self.resource_present
            self.base.append(z3.Implies(present, self.resource_present))
        else:
            present = z3.Bool(f"has({label})") if optional else z3.BoolVal(True)
        self.attrs[(root, name)] = Attr(root, name, spec.type, var, present)
        necessary = _necessary(spec.type, var)
        if necessary is not None:
            self.base.append(necessary)
        nice = _nice(spec.type, var)
        if nice is not None:
            self.nice.append(nice)
        if spec.type.is_collection:
            # Quantifier-free: a nice collection is one of at most three nice elements.
            elem = spec.type.elem or Type("string")
            items = [z3.Const(f"{label}[{n}]", sort_of(elem)) for n in range(3)]
            for item in items:
                item_nice = _nice(elem, item)
                if item_nice is not None:
                    self.nice.append(item_nice)
            shapes = [var == z3.Empty(var.sort())]
            for k in range(1, 4):
                units = [z3.Unit(i) for i in items[:k]]
                shapes.append(var == (units[0] if k == 1 else z3.Concat(*units)))
            self.nice.append(z3.Or(*shapes))

    def attr(self, root: str, name: str) -> Attr:
        return self.attrs[(root, name)]

    def require_sorted(self, root: str, name: str) -> None:
        """A set is a frozenset: where its size or iteration order matters, model it as a
        strictly increasing sequence (the order `sorted()` gives the evaluator)."""
        if (root, name) in self.sorted_sets:
            return
        self.sorted_sets.add((root, name))
        s = self.attr(root, name).var
        i = z3.Int(f"j({root}.{name})")
        self.base.append(
            z3.ForAll([i], z3.Implies(z3.And(i >= 0, i + 1 < z3.Length(s)), s[i] < s[i + 1]))
        )

    def window(self, arg: str, seconds: int) -> z3.ExprRef:
        """``window.count`` (arg "") or ``window.sum(action.args.<arg>)`` over ``seconds``."""
        key = (arg, seconds)
        found = self.windows.get(key)
        if found is None:
            if arg:
                sort = sort_of(self.tool.args[arg].type)
                found = z3.Const(f"window.sum({arg},{seconds}s)", sort)
                nice = _nice(self.tool.args[arg].type, found)
                if nice is not None:
                    self.nice.append(nice)
            else:
                found = z3.Int(f"window.count({seconds}s)")
            self.windows[key] = found
        return found

    def window_constraints(self) -> list[z3.BoolRef]:
        """What every window state satisfies: counts are non-negative and grow with the
        duration; a sum can only change where the count does (empty windows sum to 0).
        Sums are otherwise unconstrained: recorded arguments may be negative."""
        out: list[z3.BoolRef] = []
        durations = sorted({s for _, s in self.windows})
        counts = [self.window("", s) for s in durations]
        if counts:
            out.append(counts[0] >= 0)
        for a, b in itertools.pairwise(counts):
            out.append(a <= b)
        for arg in sorted({a for a, _ in self.windows if a}):
            sums = [self.window(arg, s) for s in durations]
            prev_count: z3.ExprRef = z3.IntVal(0)
            prev_sum: z3.ExprRef = z3.IntVal(0)
            for c, s in zip(counts, sums, strict=True):
                out.append(z3.Implies(c == prev_count, s == prev_sum))
                prev_count, prev_sum = c, s
        return out

    # -- from a model back to a request ---------------------------------------------
    def witness(self, model: Any) -> Witness:
        """``model``: a z3 model, or anything with its ``eval`` (abstract.ModelView)."""
        request: dict[str, Any] = {"agent": {}, "action": {"tool": self.tool.name, "args": {}}}
        has_resource = z3.is_true(model.eval(self.resource_present, model_completion=True))
        if has_resource:
            request["resource"] = {}
        context: dict[str, Any] = {}
        for (root, name), a in self.attrs.items():
            if root == "resource" and not has_resource:
                continue
            if not z3.is_true(model.eval(a.present, model_completion=True)):
                continue
            value = to_python(model.eval(a.var, model_completion=True), a.type)
            if root == "action":
                request["action"]["args"][name] = value
            elif root == "context":
                context[name] = value
            else:
                request[root][name] = value
        if context:
            request["context"] = context
        history = self._history(model)
        return Witness(request, history)

    def _history(self, model: Any) -> list[dict[str, Any]]:
        """Earlier allowed actions that give every window variable its model value."""
        durations = sorted({s for _, s in self.windows})
        args = sorted({a for a, _ in self.windows if a})
        history: list[dict[str, Any]] = []
        prev_count = 0
        prev_sums: dict[str, Fraction] = dict.fromkeys(args, Fraction(0))
        lower = 0
        for seconds in durations:
            count = int(str(model.eval(self.window("", seconds), model_completion=True)))
            extra = count - prev_count
            for k in range(extra):
                entry_args: dict[str, Any] = {}
                for arg in args:
                    total = _fraction(model.eval(self.window(arg, seconds), model_completion=True))
                    value = total - prev_sums[arg] if k == 0 else Fraction(0)
                    entry_args[arg] = _number(value, self.tool.args[arg].type)
                history.append({"ago_seconds": lower, "args": entry_args})
            if extra > 0:
                for arg in args:
                    prev_sums[arg] = _fraction(
                        model.eval(self.window(arg, seconds), model_completion=True)
                    )
            prev_count = max(prev_count, count)
            lower = seconds
        return history


def _fraction(value: z3.ExprRef) -> Fraction:
    if z3.is_int_value(value):
        return Fraction(value.as_long())
    if z3.is_rational_value(value):
        return Fraction(value.numerator_as_long(), value.denominator_as_long())
    raise ValueError(f"not a number: {value}")


class Unrealisable(ValueError):
    """A model value no request can carry (e.g. the decimal 1/3)."""


def _number(value: Fraction, t: Type) -> Any:
    if t.name == "int":
        return int(value)
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        raise Unrealisable(f"{value} is not a finite decimal")
    return str(Decimal(value.numerator) / Decimal(value.denominator))


def _seq_items(value: z3.ExprRef) -> list[z3.ExprRef]:
    if z3.is_app_of(value, z3.Z3_OP_SEQ_EMPTY):
        return []
    if z3.is_app_of(value, z3.Z3_OP_SEQ_UNIT):
        return [value.arg(0)]
    if z3.is_app_of(value, z3.Z3_OP_SEQ_CONCAT):
        return [item for child in value.children() for item in _seq_items(child)]
    raise Unrealisable(f"cannot read sequence value {value}")


def to_python(value: z3.ExprRef, t: Type) -> Any:
    """A model value as the JSON value a request carries."""
    if t.is_stringlike:
        if not z3.is_string_value(value):
            raise Unrealisable(f"cannot read string value {value}")
        return value.as_string()
    if t.name == "bool":
        return z3.is_true(value)
    if t.name in ("int", "decimal"):
        return _number(_fraction(value), t)
    elem = t.elem if t.elem is not None else Type("string")
    items = [to_python(v, elem) for v in _seq_items(value)]
    if t.name == "set":
        return sorted(set(items))
    return items


@dataclass(frozen=True)
class Witness:
    """A concrete request, plus the earlier allowed actions its window values need."""

    request: dict[str, Any]
    history: list[dict[str, Any]]

    def windows(self) -> InMemoryWindows:
        """The window state of the witness, at the fixed test instant."""
        state = InMemoryWindows(clock=lambda: TEST_NOW)
        agent = str(self.request["agent"].get("id", ""))
        tool = str(self.request["action"]["tool"])
        for entry in self.history:
            args = {k: Decimal(v) if isinstance(v, str) else v for k, v in entry["args"].items()}
            state.record(agent, tool, args, TEST_NOW - entry["ago_seconds"])
        return state

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": self.request}
        if self.history:
            out["history"] = self.history
        return out
