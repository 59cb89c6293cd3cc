"""``matches()`` patterns as Z3 regular expressions.

The pattern subset accepted by :mod:`ordinance.policy.regex` is regular, so it has an
exact Z3 counterpart. ``matches`` is an unanchored search, so the encoded language is
``.* P .*`` with the leading (trailing) ``.*`` dropped where the pattern is anchored by
``^``/``\\A`` (``$``/``\\Z``; ``$`` means the very end of the string). Anchors anywhere
other than the ends of the pattern or of its top-level alternatives are rejected with
:class:`NotEncodable` rather than approximated.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from re import _constants as C  # type: ignore[attr-defined]  # noqa: N812
from typing import Any

import z3

from ordinance.policy.regex import (
    END_ANCHORS,
    START_ANCHORS,
    Intervals,
    class_ranges,
    complement,
    normalise,
    parse_pattern,
)

# Z3's string theory represents code points up to U+2FFFF; see docs/analysis.md.
MAX_CHAR = 0x2FFFF


class NotEncodable(Exception):
    """A construct the analysis cannot encode exactly; the rule is then over-approximated."""


def _normalise(ranges: Intervals) -> Intervals:
    return normalise(ranges)


def _complement(ranges: Intervals) -> Intervals:
    return complement(ranges, MAX_CHAR)


Mapper = Callable[[Intervals], Intervals]


def _identity(ranges: Intervals) -> Intervals:
    return ranges


_MAP: list[Mapper] = [_identity]  # the char-class mapper of the pattern being translated


def char_class(ranges: Intervals) -> z3.ReRef:
    """A regex matching exactly one character in ``ranges``."""
    return _class(_MAP[-1](ranges))


def _class(ranges: Intervals) -> z3.ReRef:
    parts = [
        z3.Range(chr(lo), chr(min(hi, MAX_CHAR))) for lo, hi in _normalise(ranges) if lo <= MAX_CHAR
    ]
    if not parts:
        return z3.Empty(z3.ReSort(z3.StringSort()))
    return parts[0] if len(parts) == 1 else z3.Union(*parts)


def _in(items: Any) -> Intervals:
    return class_ranges(items, MAX_CHAR)


def _empty() -> z3.ReRef:
    return z3.Re(z3.StringVal(""))


def _concat(parts: list[z3.ReRef]) -> z3.ReRef:
    if not parts:
        return _empty()
    return parts[0] if len(parts) == 1 else z3.Concat(*parts)


def _seq(items: Any) -> z3.ReRef:
    parts: list[z3.ReRef] = []
    run = ""  # literal runs become one string regex: much cheaper for the solver
    for op, arg in items:
        if op == C.LITERAL and _MAP[-1] is _identity:
            run += chr(arg)
            continue
        if run:
            parts.append(z3.Re(z3.StringVal(run)))
            run = ""
        parts.append(_item(op, arg))
    if run:
        parts.append(z3.Re(z3.StringVal(run)))
    return _concat(parts)


def _item(op: Any, arg: Any) -> z3.ReRef:
    if op == C.LITERAL:
        return char_class([(arg, arg)])
    if op == C.NOT_LITERAL:
        return char_class(_complement([(arg, arg)]))
    if op == C.ANY:  # without DOTALL, `.` is any character but a newline
        return char_class(_complement([(0x0A, 0x0A)]))
    if op == C.IN:
        return char_class(_in(arg))
    if op == C.BRANCH:
        return z3.Union(*[_seq(b) for b in arg[1]])
    if op == C.SUBPATTERN:
        return _seq(arg[3])
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):  # laziness does not change the language
        lo, hi, sub = arg
        body = _seq(sub)
        fixed = [body] * lo
        if hi == C.MAXREPEAT:
            return _concat([*fixed, z3.Star(body)])
        return _concat([*fixed, *([z3.Option(body)] * (hi - lo))])
    if op == C.AT:
        raise NotEncodable("an anchor (^, $, \\A, \\Z) inside the pattern")
    raise NotEncodable(f"regex construct {op}")


_START = START_ANCHORS
_END = END_ANCHORS


def _search(items: list[Any]) -> z3.ReRef:
    """The language of strings in which ``items`` (a sequence) finds a match."""
    if len(items) == 1 and items[0][0] == C.BRANCH:
        return z3.Union(*[_search(list(b)) for b in items[0][1][1]])
    if len(items) == 1 and items[0][0] == C.SUBPATTERN:
        return _search(list(items[0][1][3]))
    anchored_start = bool(items) and items[0][0] == C.AT and items[0][1] in _START
    if anchored_start:
        items = items[1:]
    anchored_end = bool(items) and items[-1][0] == C.AT and items[-1][1] in _END
    if anchored_end:
        items = items[:-1]
    full = z3.Full(z3.ReSort(z3.StringSort()))
    parts = [] if anchored_start else [full]
    parts.append(_seq(items))
    if not anchored_end:
        parts.append(full)
    return _concat(parts)


def search_regex(pattern: str, mapper: Mapper | None = None) -> z3.ReRef:
    """The Z3 language of strings ``s`` with ``compile_regex(pattern).search(s)``; with
    ``mapper``, of strings whose characters map into the pattern's classes."""
    parsed = parse_pattern(pattern)  # the evaluator's parse: one reading of every pattern
    _MAP.append(mapper or _identity)
    try:
        return _search(list(parsed))
    finally:
        _MAP.pop()


# -- lower(): preimages under codegen.simple_lower --------------------------------------


def lower_preimage(ranges: Intervals) -> Intervals:
    """Every character ``u`` with ``simple_lower(u)`` in ``ranges`` (exact)."""
    return list(_lower_preimage(tuple(_normalise(ranges))))


@functools.cache
def _lower_index() -> tuple[list[int], list[int], dict[int, list[int]]]:
    """The code points lower() changes (sorted), the lower cases it yields (sorted) and
    each lower case's preimage: ranges are searched by bisection, not by a scan of the
    table per range (per-character classes of every literal made that a hot loop)."""
    from ordinance.policy.codegen import lower_table

    table = lower_table()
    changed = sorted(table)
    inverse: dict[int, list[int]] = {}
    for u in changed:
        inverse.setdefault(table[u], []).append(u)
    return changed, sorted(inverse), inverse


@functools.cache  # plain intervals (no Z3 terms), so one cache serves every context
def _lower_preimage(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    changed, targets, inverse = _lower_index()
    keep: Intervals = []
    for lo, hi in ranges:  # characters lower() leaves alone stay where they are
        start = lo
        for code in changed[bisect.bisect_left(changed, lo) : bisect.bisect_right(changed, hi)]:
            if code > start:
                keep.append((start, code - 1))
            start = code + 1
        if start <= hi:
            keep.append((start, hi))
        for target in targets[bisect.bisect_left(targets, lo) : bisect.bisect_right(targets, hi)]:
            keep += [(u, u) for u in inverse[target]]
    return tuple(_normalise(keep))


def lowered_literal(text: str) -> z3.ReRef:
    """Strings whose ``lower()`` is exactly ``text``."""
    parts = [_class(lower_preimage([(ord(ch), ord(ch))])) for ch in text]
    return _concat(parts)
