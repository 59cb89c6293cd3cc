"""One tool's solver, and what the encoding predicts for a request.

Every check of a tool runs on one solver: the space's constraints are asserted once and
each check is a ``push``/``pop`` — except in buckets with quantifiers, see ``fresh``. (Checks under assumption literals instead, with the
formulas retired afterwards, made every string-heavy check after the first run out of
time: the retired string constraints stay in the solver.)

A model's *prediction* (the effect and the rules that determine it) is the combining
algorithm applied to which rules the model's request makes apply and err
(``combine.Combiner``, the formulas' case analysis in Python). Those flags are read in the
check's own model where the rules are quantifier-free and exactly encoded; otherwise the
request is pinned and the per-rule definitions are solved once (a ground problem) over
one Boolean per rule. Each prediction also records which rules
it shows determining a decision (``alive``) and which it shows changing the effect when
removed (``matters``): the dead-rule and redundancy checks are skipped for those, since a
model of the same constraints already answers them (``sat``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import z3

from ordinance.policy.analysis.abstract import Abstraction
from ordinance.policy.analysis.boxes import box_of, neighbours
from ordinance.policy.analysis.combine import EFFECTS, Combiner, ToolModel
from ordinance.policy.analysis.encode import all_of
from ordinance.policy.analysis.fuse import Fuser
from ordinance.policy.analysis.space import ToolSpace, Unrealisable, Witness
from ordinance.policy.analysis.terms import quantifier_free
from ordinance.policy.decision import Decision

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"
# Budgets are Z3 resource units (``rlimit``), not milliseconds: the count of solver steps
# is the same on every machine and under any load, so which checks end undecided is a
# property of the bundle, never of the host. In this Z3 the limit is relative to the
# solver's count at each ``check`` (measured: consecutive checks each get the full budget).
DEFAULT_RLIMIT = 5_000_000
NICE_SHARE = 4  # realisable witness values are a preference: a quarter of the budget


def budgeted(rlimit: int) -> z3.Solver:
    """A solver whose every check is bounded by ``rlimit`` resource units."""
    solver = z3.Solver()
    solver.set("rlimit", rlimit)
    return solver


_RLIMIT_KEY = "rlimit count"
_rlimit_at = [0]  # where the key was last seen among the statistics


def spent(solver: z3.Solver) -> int:
    """Resource units the solver has used so far (cumulative over its checks)."""
    # Statistics.get_key_value scans every key through the C API (twice per check, a
    # few percent of a large bucket's time); the key's position rarely moves, so it is
    # looked up where it was last found and searched for only when it is not there.
    stats = solver.statistics()
    ref, ctx = stats.stats, stats.ctx.ref()
    size = z3.Z3_stats_size(ctx, ref)
    at = _rlimit_at[0]
    if not (at < size and z3.Z3_stats_get_key(ctx, ref, at) == _RLIMIT_KEY):
        found = [i for i in range(size) if z3.Z3_stats_get_key(ctx, ref, i) == _RLIMIT_KEY]
        if not found:  # no check has run yet
            return 0
        at = _rlimit_at[0] = found[0]
    if z3.Z3_stats_is_uint(ctx, ref, at):
        return int(z3.Z3_stats_get_uint_value(ctx, ref, at))
    return int(z3.Z3_stats_get_double_value(ctx, ref, at))


@dataclass(frozen=True)
class Prediction:
    effect: str
    determines: frozenset[str]
    applies: frozenset[str]


class Bucket:
    """One tool: one solver, the base constraints asserted once."""

    def __init__(
        self, model: ToolModel, rlimit: int = DEFAULT_RLIMIT, abstraction: Abstraction | None = None
    ):
        self.abstraction = abstraction
        if abstraction is not None:  # every rule over the string classes (abstract.py)
            rewrite = abstraction.rewrite
            model = replace(
                model,
                rules=[
                    replace(r, applies=rewrite(r.applies), errs=rewrite(r.errs))
                    for r in model.rules
                ],
                _cache={},
            )
        self.model = model
        self.rlimit = rlimit
        self.space = model.space
        self.solver = budgeted(rlimit)
        self.fuse = Fuser()
        self.effect = model.effect()
        self.rules = {r.qualified_id: r for r in model.rules}
        self.applies = {rid: r.applies for rid, r in self.rules.items()}
        self._determines: dict[str, z3.BoolRef] = {}
        self._without: dict[str, z3.ArithRef] = {}
        # one Boolean per rule for the pinned-request path (see the module doc)
        tag = f"{id(model.ruleset)}:{self.space.tool.name}"
        self.tag = tag
        self.combiner = Combiner(model)
        proxies = [
            (z3.Bool(f"{tag}:applies:{r.index}"), z3.Bool(f"{tag}:errs:{r.index}"))
            for r in model.rules
        ]
        # one evaluation reads a flag per rule (per-rule model.eval calls dominated the time)
        self._flags = (_bits([a for a, _ in proxies]), _bits([e for _, e in proxies]))
        self.definitions = z3.And(
            *[
                d
                for r, (applies, errs) in zip(model.rules, proxies, strict=True)
                for d in (applies == r.applies, errs == r.errs)
            ]
        )
        base = [*map(self.rewrite, [*self.space.base, *self.space.window_constraints()])]
        if abstraction is not None:
            base += abstraction.constraints
        self._fused_base = [self.fuse(f) for f in base]
        # representatives of string classes are already realisable where possible: the
        # preferences on abstracted strings would read them as strings again
        self._nice = [
            f
            for f in self.space.nice
            if abstraction is None or not (abstraction.mentions(f) or _items_only(f, abstraction))
        ]
        if abstraction is not None:
            self._nice += abstraction.preferences()
        self._base = slice(len(self.space.base), None)
        self.nice_literal = z3.Bool(f"{tag}:nice")
        self._nice_formula: z3.BoolRef | None = None
        terms_qf = quantifier_free([f for r in model.rules for f in (r.applies, r.errs)])
        # A bucket with quantifiers (over list/set elements) gets a fresh solver per check:
        # after a push Z3 answers on its incremental core, without the preprocessing of a
        # fresh solver's first check, and there the example set's email checks ran into
        # the time limit where a fresh solver answers in milliseconds. Quantifier-free
        # buckets keep one solver (re-asserting the base made them about twice as slow).
        self.fresh = not (terms_qf and quantifier_free(base))
        # Formulas built from this bucket's own terms (rules, combining) are rewritten
        # already; fusing them only matters while some string keeps the exact theory. On
        # a bucket whose strings are all classes, both walks are identities, and walking
        # every check's O(rules) combining formula again in Python dominated large buckets.
        self._exact_strings = abstraction is None or _exact_strings(self.space, abstraction)
        self._restated: tuple[tuple[int, ...], list[z3.BoolRef]] = ((), [])
        if not self.fresh:
            self.solver.add(*self._fused_base)
        # Quantifier-free, exactly encoded rules are evaluated in the check's own model
        # (exact there); otherwise the request is pinned and the definitions solved.
        direct = all(not r.notes for r in model.rules) and terms_qf
        self._direct = (
            (_bits([r.applies for r in model.rules]), _bits([r.errs for r in model.rules]))
            if direct and model.rules
            else None
        )
        self.checks = 0
        self.undecided_reason = ""  # why the last undecided check stopped (Z3's words)
        self.max_spent = 0  # the most resource units one check used (sizing the budget)
        self.alive: set[str] = set()  # shown to determine some decision
        self.matters: set[str] = set()  # shown to change some effect when removed
        # keyed by id(model); the model is kept so that its id is not reused
        self._predictions: dict[int, tuple[z3.ModelRef, Prediction | None]] = {}
        self._near: dict[str, set[str]] | None = None  # boxes that meet, on first use
        self._local: dict[str, ToolModel | None] = {}
        self._can_err: set[str] | None = None  # rules whose errs term is not false
        self._replays: dict[int, tuple[z3.ModelRef, tuple[Witness, Decision] | None]] = {}

    # -- formulas built on demand ---------------------------------------------------------
    def overlaps(self, a: str, b: str) -> bool:
        """Some request might make both rules apply (their boxes meet, boxes.py)."""
        if self._near is None:
            self._near = neighbours({rid: box_of(r.applies) for rid, r in self.rules.items()})
        return b in self._near[a]

    def local(self, rid: str) -> ToolModel | None:
        """The rules that can take part in a decision where ``rid`` applies: the rule, the
        rules whose box meets its box and every rule that can err (errors are outside any
        box). Where ``rid`` applies the others neither apply nor err, so a question about
        ``rid`` applying asked of these rules alone is the same question, with fewer terms
        for Z3 to take in per check. None when that saves nothing, or ``rid`` can err
        itself (a request where it errs need not be inside its box)."""
        if rid in self._local:
            return self._local[rid]
        found: ToolModel | None = None
        if self._can_err is None:
            self._can_err = {q for q, r in self.rules.items() if not z3.is_false(r.errs)}
        if rid not in self._can_err:
            self.overlaps(rid, rid)  # the boxes, on first use
            assert self._near is not None
            near = self._near[rid] | self._can_err | {rid}
            keep = [r for r in self.model.rules if r.qualified_id in near]
            if len(keep) < len(self.model.rules):
                found = ToolModel(self.space, self.model.ruleset, keep)
        self._local[rid] = found
        return found

    def determines(self, rid: str) -> z3.BoolRef:
        """``rid`` is among the decision's rules (exact: ``local`` where it applies; it
        cannot err there)."""
        found = self._determines.get(rid)
        if found is None:
            model = self.local(rid) or self.model
            found = self._determines[rid] = model.determines(self.rules[rid])
        return found

    def changes(self, rid: str) -> z3.BoolRef:
        """Removing ``rid`` changes the request's effect. A rule that neither applies nor
        errs changes nothing, so where it cannot err this is "it applies and, among the
        rules of ``local``, the effect differs without it"."""
        model = self.local(rid)
        if model is None:
            return self.effect != self.without(rid)
        rule = self.rules[rid]
        return all_of(rule.applies, model.effect() != model.effect(without=rule.index))

    def without(self, rid: str) -> z3.ArithRef:
        """The effect with the rule ``rid`` removed."""
        found = self._without.get(rid)
        if found is None:
            found = self._without[rid] = self.model.effect(without=self.rules[rid].index)
        return found

    # -- solving ----------------------------------------------------------------------------
    def solve(
        self, *formulas: z3.BoolRef, nice: bool = True
    ) -> tuple[str, z3.ModelRef | None, z3.ModelRef | None]:
        """Status, plus a model preferring realisable ("nice") values when ``nice``, plus
        the raw model."""
        self.checks += 1
        if self.fresh:
            solver = budgeted(self.rlimit)
            solver.add(*self._fused_base)
        else:
            solver = self.solver
            solver.push()
        try:
            own = list(formulas) if not self._exact_strings else [*map(self.fuse, formulas)]
            solver.add(*own, *self._restate())
            before = spent(solver)
            status = str(solver.check())
            self.max_spent = max(self.max_spent, spent(solver) - before)
            if status != SAT:
                if status == UNKNOWN:
                    self.undecided_reason = solver.reason_unknown()
                return status, None, None
            raw = solver.model()
            if not nice:
                return SAT, None, raw
            if not self._nice:  # nothing to prefer (e.g. only numbers and string classes)
                return SAT, raw, raw
            # Preferences under an assumption, not a nested push: a push right after a
            # satisfiable string check can propagate for minutes with no limit armed.
            if self._nice_formula is None:  # built once: the preferences do not change
                self._nice_formula = z3.Implies(
                    self.nice_literal, z3.And(*map(self.fuse, self._nice))
                )
            solver.add(self._nice_formula)
            solver.set("rlimit", max(1, self.rlimit // NICE_SHARE))
            pretty = solver.check(self.nice_literal)
            solver.set("rlimit", self.rlimit)
            return SAT, (solver.model() if pretty == z3.sat else None), raw
        finally:
            if not self.fresh:
                solver.pop()

    def _restate(self) -> list[z3.BoolRef]:
        """The window constraints and the space's later base constraints, prepared: they
        are re-stated in every check (an assertion may read a duration no rule reads, or
        add sorted sets to the space) and are the same until the space grows."""
        parts = [*self.space.window_constraints(), *self.space.base[self._base]]
        key = tuple(f.get_id() for f in parts)
        if key != self._restated[0]:
            self._restated = (key, [self.prepare(f) for f in parts])
        return self._restated[1]

    def prepare(self, f: z3.BoolRef) -> z3.BoolRef:
        """A formula over the space's own variables (not the bucket's terms) as a check
        takes it: string atoms as classes, and fused."""
        return self.fuse(self.rewrite(f))

    # -- what the encoding says about a model's request -------------------------------------
    def rewrite(self, f: z3.BoolRef) -> z3.BoolRef:
        return f if self.abstraction is None else self.abstraction.rewrite(f)

    def pins(self, model: z3.ModelRef) -> list[z3.BoolRef]:
        """Every request variable fixed to its value in ``model``."""
        space = self.space
        consts: list[z3.ExprRef] = [space.resource_present, *space.windows.values()]
        for a in space.attrs.values():
            if self.abstraction is None or not self.abstraction.abstracted(a.var):
                consts.append(a.var)
            consts.append(a.present)
        if self.abstraction is not None:
            consts += self.abstraction.consts()
        return [c == model.eval(c, model_completion=True) for c in consts if not z3.is_true(c)]

    def predicted(self, model: z3.ModelRef) -> Prediction | None:
        """The decision the encoding gives the request of ``model`` (cached per model)."""
        hit = self._predictions.get(id(model))
        if hit is not None:
            return hit[1]
        found = self._predict(model)
        self._predictions[id(model)] = (model, found)
        return found

    def _predict(self, model: z3.ModelRef) -> Prediction | None:
        if self._direct is not None:
            applies, errs = (self._read_flags(model, t) for t in self._direct)
            if applies is not None and errs is not None:
                return self._from_flags(applies, errs)
        solver = budgeted(self.rlimit)
        solver.set("solve_eqs", False)  # keep the proxies: eval cannot expand definitions
        solver.add(z3.And(*self.pins(model)), self.definitions)
        if solver.check() != z3.sat:
            return None
        m = solver.model()
        applies, errs = (self._read_flags(m, t) for t in self._flags)
        if applies is None or errs is None:
            return None
        return self._from_flags(applies, errs)

    def _from_flags(self, applies: set[str], errs: set[str]) -> Prediction:
        """The prediction from which rules apply and err (combine.Combiner)."""
        outcome = self.combiner.outcome(applies, errs)
        self.alive |= outcome.determines
        self.matters |= outcome.matters
        return Prediction(EFFECTS[outcome.tier], outcome.determines, frozenset(applies))

    def _bits_to_ids(self, value: z3.ExprRef) -> set[str] | None:
        if not z3.is_bv_value(value):
            return None
        bits = value.as_long()
        ids = list(self.rules)
        # Concat puts the first rule in the most significant bit
        return {rid for n, rid in enumerate(ids) if bits >> (len(ids) - 1 - n) & 1}

    def _read_flags(self, m: z3.ModelRef, term: z3.ExprRef | None) -> set[str] | None:
        if term is None:
            return set()
        return self._bits_to_ids(m.eval(term, model_completion=True))

    def learn(self, model: z3.ModelRef | None) -> None:
        if model is not None:
            self.predicted(model)

    def replayed(self, model: z3.ModelRef) -> tuple[Witness, Decision] | None:
        """The model's witness and its decision, when the real evaluator decides it exactly
        as the encoding predicts (cached per model)."""
        hit = self._replays.get(id(model))
        if hit is not None:
            return hit[1]
        found: tuple[Witness, Decision] | None = None
        try:
            view = model if self.abstraction is None else self.abstraction.view(model)
            w = self.space.witness(view)
        except Unrealisable:
            w = None
        if w is not None:
            decision = self.model.ruleset.evaluate(w.request, w.windows())
            predicted = self.predicted(model)
            if (
                predicted is not None
                and decision.effect == predicted.effect
                and set(decision.rule_ids) == predicted.determines
            ):
                found = (w, decision)
        self._replays[id(model)] = (model, found)
        return found

    def witness(
        self, *models: z3.ModelRef | None, extra: Callable[[Witness], bool] | None = None
    ) -> tuple[Witness, Decision] | None:
        """The first model whose witness the real evaluator decides as the model says."""
        for m in models:
            found = self.replayed(m) if m is not None else None
            if found is not None and (extra is None or extra(found[0])):
                return found
        return None


def _exact_strings(space: ToolSpace, abstraction: Abstraction) -> bool:
    """Some string (or list of strings) of the space keeps the exact string theory."""
    for a in space.attrs.values():
        sort = a.var.sort()
        stringy = sort == z3.StringSort() or (
            isinstance(sort, z3.SeqSortRef) and sort.basis() == z3.StringSort()
        )
        if stringy and not abstraction.abstracted(a.var):
            return True
    return False


def _items_only(f: z3.BoolRef, abstraction: Abstraction) -> bool:
    """``f`` reads only the element constants of abstracted lists (``space.py``'s nice
    list shapes): the abstraction builds those lists from its classes, so preferring
    values for the constants is a solver check with no effect on the witness."""
    items = {
        f"{a.root}.{a.name}[{n}]"
        for a in abstraction.space.attrs.values()
        if a.type.is_collection and abstraction.abstracted(a.var)
        for n in range(3)
    }
    names: set[str] = set()
    todo: list[z3.ExprRef] = [f]
    while todo:
        e = todo.pop()
        if z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            names.add(e.decl().name())
        elif z3.is_app(e):
            todo.extend(e.children())
    return bool(names) and names <= items


def _bits(flags: list[z3.BoolRef]) -> z3.ExprRef | None:
    """A bit-vector with one bit per flag, the first flag most significant."""
    one, zero = z3.BitVecVal(1, 1), z3.BitVecVal(0, 1)
    bits = [z3.If(f, one, zero) for f in flags]
    if not bits:
        return None
    return bits[0] if len(bits) == 1 else z3.Concat(*bits)
