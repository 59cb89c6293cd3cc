"""The type system shared by the schema, the type checker, the evaluator and the analysis.

Canonicalising types (``path``, ``url``, ``domain``, ``email``, and the internal ``tool``)
are strings whose values are put in canonical form on the way in, so that comparisons are
plain string comparisons with an exact meaning. A ``string`` states its own normalisation
(``norm``: NFKC by default, ``none``, or ``nfkc_casefold_trim``) and may be limited to an
``enum`` of values (in that normal form): a value outside it is refused, never unmatched.
Every converter bounds its input (:mod:`ordinance.policy.canon.limits`) before it
normalises anything.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ordinance.decimals import DecimalSyntaxError, parse_decimal
from ordinance.policy import canon


@dataclass(frozen=True, slots=True)
class Type:
    name: str
    elem: Type | None = None
    norm: str = canon.NORMALIZE_NFKC  # strings only: see canon.NORMALIZATIONS
    enum: frozenset[str] | None = None  # strings only: the values accepted, in normal form

    def __str__(self) -> str:
        if self.elem:
            return f"{self.name}<{self.elem}>"
        options = []
        if self.norm != canon.NORMALIZE_NFKC:
            options.append(f"normalize={self.norm}")
        if self.enum is not None:
            options.append("enum=" + "|".join(sorted(self.enum)))
        return f"{self.name}({', '.join(options)})" if options else self.name

    @property
    def is_plain_string(self) -> bool:
        """``string`` with the default normalisation and no enum: the type of literals."""
        return self == STRING

    @property
    def is_numeric(self) -> bool:
        return self.name in ("int", "decimal")

    @property
    def is_stringlike(self) -> bool:
        return self.name in STRINGLIKE

    @property
    def is_collection(self) -> bool:
        return self.name in ("set", "list")


STRINGLIKE = frozenset({"string", "path", "url", "domain", "email", "tool"})
STRING = Type("string")
INT = Type("int")
DECIMAL = Type("decimal")
BOOL = Type("bool")
PATH = Type("path")
URL = Type("url")
DOMAIN = Type("domain")
EMAIL = Type("email")
TOOL = Type("tool")
SET_STRING = Type("set", STRING)
EMPTY_LIST = Type("list", None)  # the type of `[]` before context gives it one

SCALARS = {t.name: t for t in (STRING, INT, DECIMAL, BOOL, PATH, URL, DOMAIN, EMAIL)}
TYPE_NAMES = (*SCALARS, "set<string>", "list<T>")


def list_of(elem: Type) -> Type:
    return Type("list", elem)


_GENERIC = re.compile(r"(set|list)\s*<\s*(.+)\s*>")


def parse_type(text: str) -> Type:
    """Parse a schema type name; raises ValueError with the accepted spellings."""
    text = text.strip()
    if text in SCALARS:
        return SCALARS[text]
    m = _GENERIC.fullmatch(text)
    if m:
        elem = parse_type(m.group(2))
        if m.group(1) == "set":
            if elem != STRING:
                raise ValueError("sets hold strings only: write `set<string>` or `list<T>`")
            return SET_STRING
        return list_of(elem)
    raise ValueError(f"unknown type `{text}`; types are: {', '.join(TYPE_NAMES)}")


def comparable(a: Type, b: Type) -> bool:
    """Whether ``==`` between values of these types has a meaning (else a type error)."""
    if a.is_numeric and b.is_numeric:
        return True
    if a.is_stringlike and b.is_stringlike:
        return True
    if a.name == "list" and b.name == "list":
        return a.elem is None or b.elem is None or comparable(a.elem, b.elem)
    return a == b


# -- request values -----------------------------------------------------------------


class ValueProblem(ValueError):
    """A request value that does not fit its declared type."""


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueProblem(f"expected a string, got {type(value).__name__}")
    try:
        return canon.bounded_nfkc(value)
    except canon.CanonError as exc:
        raise ValueProblem(str(exc)) from None


def string_converter(norm: str, enum: frozenset[str] | None) -> Callable[[Any], str]:
    """A string field's converter: its normalisation, then its enum (if any)."""

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueProblem(f"expected a string, got {type(value).__name__}")
        try:
            text = canon.normalize_string(value, norm)
        except canon.CanonError as exc:
            raise ValueProblem(str(exc)) from None
        if enum is not None and text not in enum:
            shown = ", ".join(sorted(enum)[:8]) + (", ..." if len(enum) > 8 else "")
            raise ValueProblem(f"{text[:40]!r} is not one of {shown}")
        return text

    return convert


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueProblem(f"expected an integer, got {type(value).__name__}")
    return value


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueProblem("expected a decimal, got bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueProblem("expected a finite decimal")
        result = Decimal(repr(value))  # the shortest decimal that reads back as this float
    elif isinstance(value, str):
        try:
            result = parse_decimal(value)  # the wire's grammar: no spaces, exponents, "+"
        except DecimalSyntaxError as exc:
            raise ValueProblem(str(exc)) from None
    else:
        raise ValueProblem(f"expected a decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueProblem("expected a finite decimal")
    return result


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueProblem(f"expected true or false, got {type(value).__name__}")
    return value


def _canonical(fn: Callable[[str], str]) -> Callable[[Any], str]:
    def convert_canonical(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueProblem(f"expected a string, got {type(value).__name__}")
        try:
            return fn(value)
        except canon.CanonError as exc:
            raise ValueProblem(str(exc)) from None

    return convert_canonical


_SCALAR_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "int": _int,
    "decimal": _decimal,
    "bool": _bool,
    "path": _canonical(canon.canonical_path),
    "url": _canonical(canon.canonical_url),
    "domain": _canonical(canon.canonical_domain),
    "email": _canonical(canon.canonical_email),
    "tool": _canonical(canon.canonical_tool),
}


@functools.cache  # one converter per type: callers on hot paths ask for it per value
def converter(t: Type) -> Callable[[Any], Any]:
    """A function that validates a request value against ``t`` and returns its canonical form."""
    if t.name == "set":
        return _set_of_strings
    if t.name == "list":
        assert t.elem is not None
        elem = converter(t.elem)

        def convert_list(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple):
                raise ValueProblem(f"expected a list, got {type(value).__name__}")
            _check_items(value)
            return tuple(elem(v) for v in value)

        return convert_list
    if t.name == "string" and not t.is_plain_string:
        return string_converter(t.norm, t.enum)
    return _SCALAR_CONVERTERS[t.name]


def _check_items(value: Any) -> None:
    if len(value) > canon.MAX_LIST_ITEMS:
        raise ValueProblem(f"a list of more than {canon.MAX_LIST_ITEMS} items ({len(value)})")


def _set_of_strings(value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueProblem(f"expected a list of strings, got {type(value).__name__}")
    _check_items(value)
    for item in value:
        if type(item) is not str or not item.isascii() or len(item) > canon.MAX_STRING_CHARS:
            return frozenset(_string(v) for v in value)
    return frozenset(value)  # all short ASCII strings: already canonical


def canonical_literal(value: Any, t: Type) -> Any:
    """Put a policy literal in the canonical form of the type it is compared with."""
    return converter(t)(value)
