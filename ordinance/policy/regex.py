"""The regular-expression subset ``matches()`` accepts, and how it is compiled.

One parse (CPython's ``re`` parser, in ASCII mode) decides what a pattern means; both the
evaluator and the Z3 encoding (:mod:`ordinance.policy.analysis.zregex`) work from that one
tree, so they cannot read a pattern differently. The evaluator does not run CPython's
backtracking engine: the tree is printed as an RE2 pattern (every class spelled as explicit
code-point ranges, every anchor as ``\\A``/``\\z``) and matched by Google RE2, which runs
in time linear in the input — ``^/(a+)+$`` on a long path cannot stall the enforcer.

Semantics are CEL's: an unanchored search; ``^``/``\\A`` anchor at the very start and
``$``/``\\Z`` at the very end (``$`` never matches before a trailing newline, unlike
Python's default); ``\\d``, ``\\w``, ``\\s`` are ASCII-only; ``.`` is any character but
``\\n``. Only constructs with a regular meaning that RE2 and the Z3 encoding both express
exactly are accepted; everything else is refused when the policy compiles:

- back-references, look-around, word boundaries, inline flags, possessive and atomic
  repetition;
- anchors anywhere but at the start (``^``) or end (``$``) of the pattern or of one of its
  top-level alternatives — elsewhere they would need a context the encoding cannot state;
- counted repetitions above ``{1000}``, or nested ones whose counts multiply past 1000
  (RE2's bound);
- patterns that NFKC would change (what is compiled is what the author wrote).
"""

from __future__ import annotations

import re
import unicodedata
from re import _constants as C  # type: ignore[attr-defined]  # noqa: N812
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2  # type: ignore[import-untyped]
from re2 import _re2

MAX_PATTERN_LENGTH = 1000
MAX_REPEAT = 1000  # RE2's bound on a counted repetition and on the product of nested ones
MAX_NESTING = 32  # groups and repetitions inside each other; deeper is never a real pattern
MAX_CODE_POINT = 0x10FFFF


class RegexProblem(ValueError):
    def __init__(self, message: str, hint: str | None = None, pos: int | None = None):
        super().__init__(message)
        self.hint = hint
        self.pos = pos  # where in the pattern, when the parser says (regexlint.span_of)


_ALLOWED = {
    C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.BRANCH, C.SUBPATTERN, C.MAX_REPEAT,
    C.MIN_REPEAT, C.AT,
}  # fmt: skip
START_ANCHORS = frozenset({C.AT_BEGINNING, C.AT_BEGINNING_STRING})
END_ANCHORS = frozenset({C.AT_END, C.AT_END_STRING})
_ALLOWED_CATEGORIES = {
    C.CATEGORY_DIGIT, C.CATEGORY_NOT_DIGIT, C.CATEGORY_WORD, C.CATEGORY_NOT_WORD,
    C.CATEGORY_SPACE, C.CATEGORY_NOT_SPACE,
}  # fmt: skip

Intervals = list[tuple[int, int]]

ASCII_DIGIT: Intervals = [(0x30, 0x39)]
ASCII_WORD: Intervals = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
ASCII_SPACE: Intervals = [(0x09, 0x0D), (0x20, 0x20)]  # Python's ASCII \s, \v included
_CATEGORIES: dict[Any, tuple[Intervals, bool]] = {
    C.CATEGORY_DIGIT: (ASCII_DIGIT, False),
    C.CATEGORY_NOT_DIGIT: (ASCII_DIGIT, True),
    C.CATEGORY_WORD: (ASCII_WORD, False),
    C.CATEGORY_NOT_WORD: (ASCII_WORD, True),
    C.CATEGORY_SPACE: (ASCII_SPACE, False),
    C.CATEGORY_NOT_SPACE: (ASCII_SPACE, True),
}


def normalise(ranges: Intervals) -> Intervals:
    out: Intervals = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def complement(ranges: Intervals, max_char: int = MAX_CODE_POINT) -> Intervals:
    out: Intervals = []
    start = 0
    for lo, hi in normalise(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= max_char:
        out.append((start, max_char))
    return out


def category(cat: Any, max_char: int = MAX_CODE_POINT) -> Intervals:
    ranges, negated = _CATEGORIES[cat]
    return complement(ranges, max_char) if negated else list(ranges)


def class_ranges(items: Any, max_char: int = MAX_CODE_POINT) -> Intervals:
    """The code points one ``[...]`` item list matches, as sorted disjoint intervals."""
    ranges: Intervals = []
    negate = False
    for op, arg in items:
        if op == C.NEGATE:
            negate = True
        elif op == C.LITERAL:
            ranges.append((arg, arg))
        elif op == C.RANGE:
            ranges.append((arg[0], arg[1]))
        elif op == C.CATEGORY:
            ranges.extend(category(arg, max_char))
        else:  # pragma: no cover - _walk refuses anything else
            raise RegexProblem(f"character-class item {op} is not supported")
    return complement(ranges, max_char) if negate else normalise(ranges)


# -- validation -------------------------------------------------------------------------


def _walk(items: Any, multiplier: int, depth: int = 0) -> None:
    """Refuse what is outside the subset; ``multiplier`` is the product of the counted
    repetitions around ``items`` (RE2 refuses nests whose product passes 1000)."""
    if depth > MAX_NESTING:
        raise RegexProblem(f"groups and repetitions nest deeper than {MAX_NESTING} levels")
    for op, arg in items:
        if op not in _ALLOWED:
            name = str(op).lower()
            hint = None
            if op in (C.GROUPREF, C.GROUPREF_EXISTS):
                hint = "back-references have no regular meaning; repeat the sub-pattern instead"
            elif op in (C.ASSERT, C.ASSERT_NOT):
                hint = "look-around is not supported; split the condition with && and !"
            raise RegexProblem(f"`{name}` is not in the supported regex subset", hint)
        if op == C.AT:
            if arg not in START_ANCHORS | END_ANCHORS:
                raise RegexProblem("word boundaries (\\b, \\B) are not supported")
            raise RegexProblem(
                "`^` may only begin the pattern (or one of its top-level alternatives) "
                "and `$` only end it",
                "anchors elsewhere have no single meaning in the analysis; move them out "
                "of groups and repetitions",
            )
        if op == C.IN:
            for sub_op, sub_arg in arg:
                if sub_op == C.CATEGORY and sub_arg not in _ALLOWED_CATEGORIES:
                    raise RegexProblem(f"class {sub_arg} is not supported")
        elif op == C.BRANCH:
            for branch in arg[1]:
                _walk(branch, multiplier, depth + 1)
        elif op == C.SUBPATTERN:
            _group, add_flags, del_flags, sub = arg
            if add_flags or del_flags:
                raise RegexProblem(
                    "inline flags such as (?i) are not supported", "use lower() first"
                )
            _walk(sub, multiplier, depth + 1)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = arg
            count = lo if hi == C.MAXREPEAT else hi
            if count > MAX_REPEAT or multiplier * max(count, 1) > MAX_REPEAT:
                raise RegexProblem(
                    f"counted repetitions may reach at most {{{MAX_REPEAT}}}, nested ones "
                    f"multiplied together included"
                )
            _walk(sub, multiplier * max(count, 1), depth + 1)


def _check_anchors(items: list[Any], depth: int = 0) -> None:
    """Anchors are accepted exactly where :func:`zregex.search_regex` encodes them: first
    and last in the pattern, or in each alternative of a top-level alternation (also
    inside one top-level group). Everything between goes through :func:`_walk`."""
    if depth > MAX_NESTING:
        raise RegexProblem(f"groups and repetitions nest deeper than {MAX_NESTING} levels")
    if len(items) == 1 and items[0][0] == C.BRANCH:
        for branch in items[0][1][1]:
            _check_anchors(list(branch), depth + 1)
        return
    if len(items) == 1 and items[0][0] == C.SUBPATTERN:
        _group, add_flags, del_flags, sub = items[0][1]
        if not (add_flags or del_flags):
            _check_anchors(list(sub), depth + 1)
            return
    if items and items[0][0] == C.AT and items[0][1] in START_ANCHORS:
        items = items[1:]
    if items and items[-1][0] == C.AT and items[-1][1] in END_ANCHORS:
        items = items[:-1]
    _walk(items, 1, depth)


def parse_pattern(pattern: str) -> Any:
    """The checked parse tree of ``pattern``; raises :class:`RegexProblem` unless the
    pattern is in the supported subset. Both the evaluator and the Z3 encoding use it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexProblem(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    if not pattern.isascii() and unicodedata.normalize("NFKC", pattern) != pattern:
        raise RegexProblem(
            "the pattern changes under NFKC normalisation",
            "write it in NFKC form: requests are compared in that form, and a full-width "
            "character would otherwise turn into regex syntax",
        )
    try:
        parsed = sre_parse.parse(pattern, re.ASCII)
    except (re.error, OverflowError, RecursionError) as exc:
        pos = getattr(exc, "pos", None)
        raise RegexProblem(f"invalid pattern: {exc}", pos=pos) from None
    if parsed.state.flags & ~(re.ASCII | re.UNICODE):
        raise RegexProblem("inline flags such as (?i) are not supported", "use lower() first")
    _check_anchors(list(parsed))
    return parsed


def check_regex(pattern: str) -> None:
    """Raise :class:`RegexProblem` unless ``pattern`` is in the supported subset and RE2
    compiles it."""
    compile_regex(pattern)


# -- RE2 --------------------------------------------------------------------------------


def _char(code: int) -> str:
    return chr(code) if chr(code).isascii() and chr(code).isalnum() else f"\\x{{{code:X}}}"


def _class(ranges: Intervals) -> str:
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{body}]" if body else f"[^\\x{{0}}-\\x{{{MAX_CODE_POINT:X}}}]"


_BOUNDS = {(0, C.MAXREPEAT): "*", (1, C.MAXREPEAT): "+", (0, 1): "?"}


def _re2_items(items: Any, top: bool) -> str:
    out: list[str] = []
    last = len(items) - 1
    for n, (op, arg) in enumerate(items):
        if op == C.LITERAL:
            out.append(_char(arg))
        elif op == C.NOT_LITERAL:
            out.append(_class(complement([(arg, arg)])))
        elif op == C.ANY:  # without DOTALL: anything but a newline
            out.append(_class(complement([(0x0A, 0x0A)])))
        elif op == C.IN:
            out.append(_class(class_ranges(arg)))
        elif op == C.BRANCH:
            alternatives = (_re2_items(b, top and len(items) == 1) for b in arg[1])
            out.append("(?:" + "|".join(alternatives) + ")")
        elif op == C.SUBPATTERN:
            out.append("(?:" + _re2_items(arg[3], top and len(items) == 1) + ")")
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):  # laziness cannot change a search's answer
            lo, hi, sub = arg
            bound = _BOUNDS.get((lo, hi)) or (
                f"{{{lo},}}" if hi == C.MAXREPEAT else f"{{{lo},{hi}}}"
            )
            out.append(f"(?:{_re2_items(sub, False)}){bound}")
        elif op == C.AT:  # placed where _check_anchors allows: first or last only
            assert top and n in (0, last)
            out.append("\\A" if arg in START_ANCHORS else "\\z")
        else:  # pragma: no cover - parse_pattern refuses anything else
            raise RegexProblem(f"regex construct {op} is not supported")
    return "".join(out)


def re2_source(pattern: str) -> str:
    """The RE2 spelling of a checked pattern: same language, no room for dialect drift."""
    return _re2_items(parse_pattern(pattern), True)


_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # a search answers yes or no; groups only cost memory
_OPTIONS.log_errors = False  # refusals are reported as policy errors, not on stderr
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


class Matcher:
    """A compiled ``matches()`` pattern. ``search`` returns a true value or None, like
    ``re.Pattern.search`` (generated code tests ``is not None``), in time linear in the text."""

    __slots__ = ("_regexp", "pattern", "source")

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.source = re2_source(pattern)
        regexp = _re2.RE2(self.source.encode(), _OPTIONS)
        if not regexp.ok():
            raise RegexProblem(f"pattern too large for the linear-time engine: {regexp.error()}")
        self._regexp = regexp

    def search(self, text: str) -> bool | None:
        # Lone surrogates (possible in JSON) pass through as their own code points, the
        # same characters the class ranges above name.
        data = text.encode("utf-8", "surrogatepass")
        if self._regexp.Match(_UNANCHORED, data, 0, len(data))[0] == _NO_MATCH:
            return None
        return True

    def __repr__(self) -> str:
        return f"Matcher({self.pattern!r})"


def compile_regex(pattern: str) -> Matcher:
    """The linear-time matcher of a checked pattern; raises :class:`RegexProblem`."""
    return Matcher(pattern)
