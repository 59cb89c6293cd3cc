"""The regular-expression subset ``matches()`` accepts, and how it is compiled.

Only constructs with a regular-language meaning are allowed (no back-references, no
look-around, no possessive or atomic groups), so that every pattern has an exact
encoding in Z3's regex theory. Semantics are CEL's: an unanchored search; ``^`` and ``$``
anchor at the very start and end of the string (``$`` never matches before a trailing
newline, unlike Python's default); classes like ``\\d``, ``\\w``, ``\\s`` are ASCII-only.
"""

from __future__ import annotations

import re
from re import _constants as C  # type: ignore[attr-defined]  # noqa: N812
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

MAX_PATTERN_LENGTH = 1000


class RegexProblem(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


_ALLOWED = {
    C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.BRANCH, C.SUBPATTERN, C.MAX_REPEAT,
    C.MIN_REPEAT, C.AT,
}  # fmt: skip
_ALLOWED_AT = {C.AT_BEGINNING, C.AT_END, C.AT_BEGINNING_STRING, C.AT_END_STRING}
_ALLOWED_CATEGORIES = {
    C.CATEGORY_DIGIT, C.CATEGORY_NOT_DIGIT, C.CATEGORY_WORD, C.CATEGORY_NOT_WORD,
    C.CATEGORY_SPACE, C.CATEGORY_NOT_SPACE,
}  # fmt: skip


def _walk(items: Any) -> None:
    for op, arg in items:
        if op not in _ALLOWED:
            name = str(op).lower()
            hint = None
            if op in (C.GROUPREF, C.GROUPREF_EXISTS):
                hint = "back-references have no regular meaning; repeat the sub-pattern instead"
            elif op in (C.ASSERT, C.ASSERT_NOT):
                hint = "look-around is not supported; split the condition with && and !"
            raise RegexProblem(f"`{name}` is not in the supported regex subset", hint)
        if op == C.AT and arg not in _ALLOWED_AT:
            raise RegexProblem("word boundaries (\\b, \\B) are not supported")
        if op == C.IN:
            for sub_op, sub_arg in arg:
                if sub_op == C.CATEGORY and sub_arg not in _ALLOWED_CATEGORIES:
                    raise RegexProblem(f"class {sub_arg} is not supported")
        elif op == C.BRANCH:
            for branch in arg[1]:
                _walk(branch)
        elif op == C.SUBPATTERN:
            _group, add_flags, del_flags, sub = arg
            if add_flags or del_flags:
                raise RegexProblem(
                    "inline flags such as (?i) are not supported", "use lower() first"
                )
            _walk(sub)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            _walk(arg[2])


def check_regex(pattern: str) -> None:
    """Raise :class:`RegexProblem` unless ``pattern`` is in the supported subset."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexProblem(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        parsed = sre_parse.parse(pattern, re.ASCII)
    except re.error as exc:
        raise RegexProblem(f"invalid pattern: {exc}") from None
    if parsed.state.flags & ~(re.ASCII | re.UNICODE):
        raise RegexProblem("inline flags such as (?i) are not supported", "use lower() first")
    _walk(parsed)


def _anchor_end(pattern: str) -> str:
    """Rewrite unescaped ``$`` outside classes to ``\\Z`` (end of string, no newline slack)."""
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if i < len(pattern) and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < len(pattern) and pattern[i] == "]":
                out.append("]")
                i += 1
            continue
        elif ch == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def compile_regex(pattern: str) -> re.Pattern[str]:
    check_regex(pattern)
    return re.compile(_anchor_end(pattern), re.ASCII)
