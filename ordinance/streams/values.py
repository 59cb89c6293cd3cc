"""Open-ended values (tool arguments, attributes, context) in the typed Avro form.

On the wire a value is the record ``ordinance.v1.Value`` holding a union of
null, boolean, long, string, ``Decimal`` (exact decimal as text), array of
Value and map of Value. In Python it is the plain value: ``None``, `bool`,
`int`, `str`, `decimal.Decimal`, `list`, `dict`.

Floats are carried as exact decimals of their shortest repr (``0.1`` becomes
``Decimal("0.1")``, not 0.1000000000000000055...): a policy comparing amounts
must not depend on binary rounding. Integers outside 64 bits become decimals
too. NaN and infinities have no exact form and are refused.

Decimal text on the wire follows :mod:`ordinance.decimals` (``-?digits(.digits)?``) both
ways: written in plain notation (``1E+2`` goes out as ``100``) and read strictly, so a
record holding ``"1e1"``, ``" 5"`` or ``"1_000"`` is undecodable, not read as a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ordinance.decimals import MAX_DECIMAL_CHARS, parse_decimal
from ordinance.streams.errors import SchemaError

VALUE_TYPE = "ordinance.v1.Value"
DECIMAL_TYPE = "ordinance.v1.Decimal"

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1

Converter = Callable[[Any], Any]


def to_wire(value: object) -> dict[str, Any]:
    """A Python value as the datum of an ``ordinance.v1.Value`` record."""
    if value is None or isinstance(value, bool | str):
        return {"v": value}
    if isinstance(value, int):
        if _LONG_MIN <= value <= _LONG_MAX:
            return {"v": value}
        return {"v": (DECIMAL_TYPE, {"text": decimal_text(Decimal(value))})}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SchemaError(f"{value!r} has no exact decimal form")
        return {"v": (DECIMAL_TYPE, {"text": decimal_text(Decimal(repr(value)))})}
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SchemaError(f"{value!r} has no exact decimal form")
        return {"v": (DECIMAL_TYPE, {"text": decimal_text(value)})}
    if isinstance(value, list | tuple):
        return {"v": [to_wire(item) for item in value]}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaError(f"map keys must be strings, got {key!r}")
            out[key] = to_wire(item)
        return {"v": out}
    raise SchemaError(f"{type(value).__name__} is not a supported value: {value!r}")


def decimal_text(value: Decimal) -> str:
    """A finite decimal in the wire grammar: plain notation, never an exponent."""
    text = format(value, "f")
    if len(text) > MAX_DECIMAL_CHARS:
        raise SchemaError(f"{value!r} needs more than {MAX_DECIMAL_CHARS} characters")
    return text


def from_wire(datum: Mapping[str, Any]) -> Any:
    """The Python value of a decoded ``ordinance.v1.Value`` datum."""
    value = datum["v"]
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    if isinstance(value, dict):
        # The Decimal record reads back as {"text": str}; a map's values are
        # always Value records (dicts), so the two cannot be confused.
        text = value.get("text")
        if len(value) == 1 and isinstance(text, str):
            return parse_decimal(text)  # DecimalSyntaxError: the record is undecodable
        return {key: from_wire(item) for key, item in value.items()}
    return value


def compile_converter(schema: Any, to_avro: bool) -> Converter | None:
    """A function mapping a datum of ``schema`` between Python and wire form at
    every Value position, or None when the schema holds no Value."""
    names: dict[str, Any] = {}
    return _compile(schema, to_avro, names, set())


def _compile(schema: Any, to_avro: bool, names: dict[str, Any], seen: set[str]) -> Converter | None:
    if isinstance(schema, list):
        return _compile_union(schema, to_avro, names, seen)
    if isinstance(schema, str):
        if schema == VALUE_TYPE:
            return to_wire if to_avro else from_wire
        named = names.get(schema)
        if named is None or schema in seen:
            return None
        return _compile(named, to_avro, names, seen | {schema})
    kind = schema["type"]
    if kind == "record":
        name = schema["name"]
        names[name] = schema
        if name == VALUE_TYPE:
            return to_wire if to_avro else from_wire
        fields = []
        for field in schema["fields"]:
            convert = _compile(field["type"], to_avro, names, seen | {name})
            if convert is not None:
                fields.append((field["name"], convert))
        if not fields:
            return None

        def record(datum: Any) -> Any:
            out = dict(datum)
            for field_name, convert in fields:
                if field_name in out:
                    out[field_name] = convert(out[field_name])
            return out

        return record
    if kind == "array":
        item = _compile(schema["items"], to_avro, names, seen)
        return None if item is None else (lambda datum: [item(x) for x in datum])
    if kind == "map":
        value = _compile(schema["values"], to_avro, names, seen)
        return None if value is None else (lambda d: {k: value(v) for k, v in d.items()})
    if kind in ("enum", "fixed"):
        names[schema["name"]] = schema
    return None


def _compile_union(
    branches: list[Any], to_avro: bool, names: dict[str, Any], seen: set[str]
) -> Converter | None:
    converters = [_compile(b, to_avro, names, seen) for b in branches]
    active = [c for c in converters if c is not None]
    if not active:
        return None
    others = [b for b, c in zip(branches, converters, strict=True) if c is None and b != "null"]
    if len(active) > 1 or others:
        # Which branch a datum is in would need guessing; keep schemas simple.
        raise SchemaError("a union holding a Value may only be [null, <type with Values>]")
    convert = active[0]
    return lambda datum: None if datum is None else convert(datum)
