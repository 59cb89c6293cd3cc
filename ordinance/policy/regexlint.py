"""Regex positions and lint: where in a ``matches()`` literal a problem sits, and the
patterns that mean something other than they seem.

``matches()`` is an unanchored search (CEL's semantics, see :mod:`ordinance.policy.regex`):
``s.matches('[a-z]+')`` holds for any string containing a letter. So:

- an unanchored leading or trailing repetition is redundant: ``'^[a-z]+'`` holds exactly
  when ``'^[a-z]'`` does (the search stops after one letter), ``'.*secret'`` exactly when
  ``'secret'`` does — usually a ``$`` (or ``^``) the author meant to write is missing;
- ``^``/``$`` bind to an alternative, not to the whole alternation: ``'^a|b$'`` is
  ``(^a)|(b$)``, any string that starts with ``a`` or ends with ``b`` (reported when only
  the first alternative has ``^`` and only the last has ``$``: anchoring some
  alternatives on purpose, as in ``'\\.pem$|^/run/secrets/'``, is fine).

Both are warnings (errors under ``check --strict``), reported at the construct inside the
literal: file:line:column and a caret, like every policy error. Unsupported constructs
(``\\b``, look-around, back-references, inline flags, misplaced anchors) are errors when the
policy compiles; :func:`span_of` finds their position in the pattern for the caret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _constants as C  # type: ignore[attr-defined]  # noqa: N812
from typing import Any

from ordinance.policy.cel.ast import Call, Expr, Literal, children
from ordinance.policy.document import Condition
from ordinance.policy.errors import GradedProblem, Location
from ordinance.policy.regex import END_ANCHORS, START_ANCHORS, RegexProblem, parse_pattern

# (kind, offset in the pattern, length): the constructs a refusal can be about
Token = tuple[str, int, int]


def tokens(pattern: str) -> Iterator[Token]:
    """Escapes, group openers and anchors outside character classes, in order."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if not in_class:
                if nxt in "bB":
                    yield "boundary", i, 2
                elif nxt.isdigit() and nxt != "0":
                    yield "backref", i, 2
                elif nxt in "AZz":
                    yield ("start" if nxt == "A" else "end"), i, 2
            i += 2
            continue
        if in_class:
            in_class = ch != "]" or pattern[i - 1] == "["
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 1
            if i < len(pattern) and pattern[i] == "^":
                i += 1
            if i < len(pattern) and pattern[i] == "]":
                i += 1  # a leading ] is a literal
            continue
        if ch == "(" and pattern.startswith("(?", i):
            m = re.match(r"\(\?(<=|<!|=|!|P=|P<|<|:|[aiLmsux-]+)", pattern[i:])
            head = m.group(1) if m else ""
            if head in ("=", "!", "<=", "<!"):
                yield "lookaround", i, len(m.group(0)) if m else 2
            elif head == "P=":
                yield "backref", i, 4
            elif head and head not in (":", "P<", "<"):
                yield "flags", i, len(m.group(0)) if m else 2
        elif ch == "^":
            yield "start", i, 1
        elif ch == "$":
            yield "end", i, 1
        i += 1


def _misplaced(pattern: str, kind: str, offset: int) -> bool:
    """An anchor not at the start (end) of the pattern or of a top-level alternative."""
    if kind == "start":
        before = pattern[:offset].rstrip("(")
        return not (before == "" or before.endswith("|"))
    end = offset + (2 if pattern[offset] == "\\" else 1)
    after = pattern[end:].lstrip(")")
    return not (after == "" or after.startswith("|"))


def span_of(pattern: str, problem: RegexProblem) -> tuple[int, int] | None:
    """Where in ``pattern`` the refused construct is (offset, length), if it can tell."""
    text = str(problem)
    pos = getattr(problem, "pos", None)
    if isinstance(pos, int):
        return pos, 1
    want = (
        "boundary" if "word boundar" in text
        else "lookaround" if "assert" in text or "look" in text
        else "backref" if "groupref" in text
        else "flags" if "inline flags" in text
        else "anchor" if "may only begin" in text
        else None
    )  # fmt: skip
    for kind, offset, length in tokens(pattern):
        if kind == want or (
            want == "anchor" and kind in ("start", "end") and _misplaced(pattern, kind, offset)
        ):
            return offset, length
    return None


def literal_location(
    condition: Condition, node: Literal, offset: int, length: int
) -> Location | None:
    """The source location of characters ``offset..offset+length`` of a string literal's
    value (escapes in the literal's spelling counted), or None if the spelling is unknown."""
    text = condition.node.value if condition.node is not None else condition.text
    spelled = text[node.pos : node.end]
    if not spelled or spelled[0] not in "rR'\"":
        return None
    raw = spelled[0] in "rR"
    i = 2 if raw else 1
    starts = []
    body_end = len(spelled) - 1
    while i < body_end:
        starts.append(i)
        if not raw and spelled[i] == "\\":
            nxt = spelled[i + 1]
            i += 6 if nxt == "u" else 10 if nxt == "U" else 2
        else:
            i += 1
    starts.append(body_end)
    if offset + length > len(starts) - 1:
        return None
    first, last = starts[offset], starts[offset + length]
    return condition.location(node.pos + first, max(1, last - first))


class RegexLint(GradedProblem):
    kind = "regex"


def _unbounded(item: Any) -> tuple[int, bool] | None:
    """(minimum count, unbounded) of a repetition item, else None."""
    op, arg = item
    if op not in (C.MAX_REPEAT, C.MIN_REPEAT):
        return None
    lo, hi, _sub = arg
    return lo, hi == C.MAXREPEAT


def lint_pattern(pattern: str) -> list[tuple[str, str, int, int]]:
    """(message, hint, offset, length) for each suspicious part of a supported pattern."""
    parsed = list(parse_pattern(pattern))
    out: list[tuple[str, str, int, int]] = []
    toks = list(tokens(pattern))
    starts = [t for t in toks if t[0] == "start"]
    ends = [t for t in toks if t[0] == "end"]
    if len(parsed) == 1 and parsed[0][0] == C.BRANCH:
        branches = [list(b) for b in parsed[0][1][1]]
        first_anchored = [
            bool(b) and b[0][0] == C.AT and b[0][1] in START_ANCHORS for b in branches
        ]
        last_anchored = [bool(b) and b[-1][0] == C.AT and b[-1][1] in END_ANCHORS for b in branches]
        # the pitfall: `^` opens the first alternative and `$` closes the last, and no
        # other alternative is anchored — the anchors were meant around the whole
        if (
            first_anchored[0]
            and last_anchored[-1]
            and not any(first_anchored[1:])
            and not any(last_anchored[:-1])
        ):
            at = (starts or ends)[0]
            out.append(
                (
                    "`^`/`$` bind to one alternative, not to the whole alternation: this holds"
                    " for strings matching any alternative, anchored or not",
                    "group the alternatives: `^(a|b)$`",
                    at[1],
                    at[2],
                )
            )
        return out
    anchored_start = bool(parsed) and parsed[0][0] == C.AT
    anchored_end = bool(parsed) and parsed[-1][0] == C.AT and len(parsed) > 1
    body = parsed[1:] if anchored_start else parsed
    body = body[:-1] if anchored_end else body
    if not body:
        return out
    lead = _unbounded(body[0]) if not anchored_start else None
    trail = _unbounded(body[-1]) if not anchored_end else None
    if trail is not None and trail[1]:
        kept = "nothing" if trail[0] == 0 else f"{trail[0]} repetition(s)"
        out.append(
            (
                "matches() searches: without `$` this trailing repetition is redundant (the"
                f" search stops after {kept})",
                "end the pattern with `$` to test the whole rest of the string, or drop it",
                *_trailing_span(pattern),
            )
        )
    if lead is not None and lead[1] and len(body) > 1:
        out.append(
            (
                "matches() searches: without `^` this leading repetition is redundant (the"
                " search may start anywhere)",
                "begin the pattern with `^` to test from the start of the string, or drop it",
                0,
                _first_item_length(pattern),
            )
        )
    return out


def _trailing_span(pattern: str) -> tuple[int, int]:
    """The trailing quantifier of a pattern without an end anchor."""
    m = re.search(r"(\*|\+|\{\d*,\d*\})\??$", pattern)
    return (m.start(), m.end() - m.start()) if m else (max(0, len(pattern) - 1), 1)


def _first_item_length(pattern: str) -> int:
    """Characters up to and including the first item's quantifier (heuristic: through the
    first `*`, `+` or `}` outside a class; the whole pattern's first character otherwise)."""
    m = re.match(r"(\\.|\[(?:\\.|[^\]])*\]|\((?:\\.|[^)])*\)|.)(\*|\+|\{[^}]*\})\??", pattern)
    return len(m.group(0)) if m else 1


def _literals(e: Expr) -> Iterator[Literal]:
    if isinstance(e, Call) and e.name == "matches" and e.args:
        arg = e.args[0]
        if isinstance(arg, Literal) and isinstance(arg.value, str):
            yield arg
    for c in children(e):
        yield from _literals(c)


def lint_condition(condition: Condition, severity: str = "warning") -> list[RegexLint]:
    out: list[RegexLint] = []
    for lit in _literals(condition.expr):
        pattern = str(lit.value)
        for message, hint, offset, length in lint_pattern(pattern):
            where = literal_location(condition, lit, offset, length) or condition.location(
                lit.pos, max(1, lit.end - lit.pos)
            )
            out.append(RegexLint(f"pattern `{pattern}`: {message}", where, hint, severity))
    return out
