"""The classes of one abstracted string: its type's language split by every atom the
policies test it against (abstract.py explains the abstraction).

Each class (``Cell``) is kept with a member — a realisable one where there is one — so a
split costs one solver check, and a class is cut only when Z3 proves it empty. All
checks run on one budgeted solver per abstraction, in a fixed order: which member Z3
returns for a class depends on what that solver was asked before, and witnesses are
built from the members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import z3

MAX_CELLS = 64  # beyond this a string keeps the exact theory (the solver handles it better)


@dataclass
class Cell:
    language: z3.ReRef
    singleton: bool  # inside an equality atom: exactly one string
    rep: str = ""
    nice: bool = False  # rep is a realisable value (see space._nice)
    # no realisable value in a language containing this one: do not ask again
    no_nice: bool = False
    signs: dict[int, bool] = field(default_factory=dict)  # atom index -> inside it


@dataclass
class Subject:
    """One abstracted string (a scalar attribute, or the elements of a list attribute)."""

    label: str
    base: z3.ReRef  # the necessary conditions of its type
    nice: z3.ReRef | None  # realisable values, preferred for representatives
    atoms: dict[int, z3.ReRef] = field(default_factory=dict)  # by AST id (hash-consed)
    cells: list[Cell] = field(default_factory=list)
    cls: z3.ArithRef | None = None  # the class variable (scalars)
    extra: dict[int, list[str]] = field(default_factory=dict)  # more members per cell


def _implied_empty(
    proven: dict[tuple[int, str], bool], signs: dict[int, bool], inside: bool
) -> bool:
    """The part of a cell (with these signs) on the other side of the atom is empty by a
    proven relation: ``cell ∩ A`` when the cell is outside an atom containing A or inside
    one disjoint from it, ``cell ∩ ¬A`` when the cell is inside an atom within A."""
    for j, sign in signs.items():
        if inside and sign and proven.get((j, "super")):
            return True
        if not inside and not sign and proven.get((j, "sub")):
            return True
        if not inside and sign and proven.get((j, "disjoint")):
            return True
    return False


class Partitioner:
    """The splitting, as used by ``Abstraction`` (which owns the solver and caches)."""

    rlimit: int
    _solver: z3.Solver | None
    # (text, language id) -> (language, member?): the language is kept so its id stays
    _members: dict[tuple[str, int], tuple[z3.ReRef, bool]]

    def _status(self, language: z3.ReRef) -> tuple[str, str | None]:
        from ordinance.policy.analysis.bucket import budgeted

        x = z3.String("abstraction:probe")
        if self._solver is None:
            self._solver = budgeted(self.rlimit)
        solver = self._solver
        solver.push()
        try:
            solver.add(z3.InRe(x, language))
            status = str(solver.check())
            if status != "sat":
                return status, None
            return status, solver.model().eval(x, model_completion=True).as_string()
        finally:
            solver.pop()

    def _sample(self, subject: Subject, language: z3.ReRef) -> tuple[str, str | None, bool]:
        """Status and a member of ``language``, a realisable ("nice") one where there is
        one. The plain language first: most parts a split leaves are empty, and an empty
        part then costs one check, not two (nice, then plain); a member is often nice
        already (a ground membership test, no search)."""
        status, found = self._status(language)
        if found is None or subject.nice is None:
            return status, found, found is not None
        if self._member(found, subject.nice):
            return status, found, True
        _, pretty = self._status(z3.Intersect(language, subject.nice))
        if pretty is not None:
            return status, pretty, True
        return status, found, False

    def _literal_in(
        self, subject: Subject, literal: z3.ReRef, language: z3.ReRef
    ) -> tuple[str, str | None, bool]:
        """``_sample`` of ``language ∩ {literal}``, without the solver: the literal is its
        only possible member (a ground membership test decides it)."""
        text = literal.arg(0).as_string()
        if not self._member(text, language):
            return "unsat", None, False
        return "sat", text, subject.nice is None or self._member(text, subject.nice)

    def _relations(
        self,
        subject: Subject,
        atoms: list[z3.ReRef],
        i: int,
        cells: list[Cell],
        inside_of: list[bool],
    ) -> dict[tuple[int, str], bool]:
        """Which earlier atoms ``atoms[j]`` the atom ``atoms[i]`` is inside ("sub"),
        disjoint from, or contains ("super"), within the type's language — asked only
        where the cells' representatives do not already refute it and some split would
        be spared by it. A proven relation empties whole families of splits (the URL's
        metadata assertion pattern lies inside the metadata rule's pattern)."""
        a = atoms[i]
        out: dict[tuple[int, str], bool] = {}
        for j in range(i):
            b = atoms[j]
            pairs = [(c.signs.get(j), inside) for c, inside in zip(cells, inside_of, strict=True)]
            questions = {
                # (refuted by a representative, splits it spares, the empty language)
                "sub": ((True, False) in pairs, pairs.count((False, False)), (a, z3.Complement(b))),
                "disjoint": ((True, True) in pairs, pairs.count((True, False)), (a, b)),
                "super": ((False, True) in pairs, pairs.count((True, True)), (b, z3.Complement(a))),
            }
            for name, (refuted, spared, (x, y)) in questions.items():
                if refuted or spared < 2:  # a check to spare one check: not worth asking
                    continue
                status, _ = self._status(z3.Intersect(subject.base, x, y))
                out[(j, name)] = status == "unsat"
        return out

    def _partition(self, subject: Subject) -> bool:
        """Split the type's language by every atom, keeping the nonempty parts. Each cell
        carries a member, so a split costs one solver check (or two, when the new part has
        no realisable member): the side holding the member is nonempty without asking.
        Literals cost none: a cell inside an equality atom is that one string, which no
        later atom splits, and a cell's share of a literal is a ground membership test
        (the example set's path literals made most of its checks such empty splits)."""
        status, rep, nice = self._sample(subject, subject.base)
        if rep is None:
            return False  # an empty type, or undecided: stay exact
        cells = [Cell(subject.base, False, rep, nice, no_nice=not nice)]
        atoms = list(subject.atoms.values())
        for i, lang in enumerate(atoms):
            singleton_atom = z3.is_app_of(lang, z3.Z3_OP_SEQ_TO_RE)
            inside_of = [self._member(cell.rep, lang) for cell in cells]
            proven = self._relations(subject, atoms, i, cells, inside_of)
            split: list[Cell] = []
            for cell, inside in zip(cells, inside_of, strict=True):
                if cell.singleton:  # exactly {rep}: inside every atom or outside it
                    split.append(cell)
                    continue
                other_part = z3.Complement(lang) if inside else lang
                other = z3.Intersect(cell.language, other_part)
                if _implied_empty(proven, cell.signs, inside):
                    status, found, nice = "unsat", None, False
                elif singleton_atom and not inside:
                    # the other part is the cell's share of {literal}: a ground test
                    status, found, nice = self._literal_in(subject, lang, cell.language)
                else:
                    status, found, nice = self._sample(subject, other)
                if status == "unknown":
                    return False
                same = z3.Intersect(cell.language, lang if inside else z3.Complement(lang))
                single = cell.singleton or (inside and singleton_atom)
                signs = {**cell.signs, i: inside}
                split.append(Cell(same, single, cell.rep, cell.nice, cell.no_nice, signs))
                if found is not None:
                    single = cell.singleton or (not inside and singleton_atom)
                    signs = {**cell.signs, i: not inside}
                    split.append(Cell(other, single, found, nice, not nice, signs))
            cells = split
            if len(cells) > MAX_CELLS:
                return False
        for cell in cells:
            if cell.nice or subject.nice is None:
                cell.nice = True
                continue
            if cell.singleton:  # its one member is the representative
                cell.nice = self._member(cell.rep, subject.nice)
                continue
            if cell.no_nice or self._member(cell.rep, subject.nice):
                cell.nice = not cell.no_nice
                continue
            _, found = self._status(z3.Intersect(cell.language, subject.nice))
            if found is not None:
                cell.rep, cell.nice = found, True
        subject.cells = cells
        return True

    def members(self, subject: Subject, k: int, count: int) -> list[str]:
        """``count`` distinct strings of cell ``k`` (for sets: distinct elements)."""
        from ordinance.policy.analysis.bucket import budgeted

        out = [subject.cells[k].rep, *subject.extra.get(k, [])]
        x = z3.String("abstraction:member")
        while len(out) < count:
            solver = budgeted(self.rlimit)
            language = subject.cells[k].language
            if subject.nice is not None:
                language = z3.Intersect(language, subject.nice)
            solver.add(z3.InRe(x, language), *[x != z3.StringVal(s) for s in out])
            if solver.check() != z3.sat:
                break
            out.append(solver.model().eval(x, model_completion=True).as_string())
        subject.extra[k] = out[1:]
        return out[:count]

    def _member(self, text: str, lang: z3.ReRef) -> bool:
        """``text`` is in ``lang`` (cached: the partition and every rewritten occurrence
        of an atom ask the same representatives about the same languages)."""
        key = (text, lang.get_id())
        found = self._members.get(key)
        if found is None:
            found = self._members[key] = (lang, self._ground_member(text, lang))
        return found[1]

    def _ground_member(self, text: str, lang: z3.ReRef) -> bool:
        ground = z3.InRe(z3.StringVal(text), lang)
        value = z3.simplify(ground)
        if z3.is_true(value) or z3.is_false(value):
            return bool(z3.is_true(value))
        solver = z3.Solver()  # ground membership: decided by derivatives, no budget needed
        solver.add(ground)
        return bool(solver.check() == z3.sat)
