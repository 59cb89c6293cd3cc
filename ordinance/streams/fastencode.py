"""The fast path of `Serde.encode` — exact, or not used at all.

Every decision costs an encode in the enforcer and one in the client, and most of it is
fastavro walking the schema for every datum: validating each union candidate recursively
(every Value is a union) after `values.to_wire` has built a second copy of the datum. This
module writes the *current* schemas with one generated Python function per record type:
straight-line field writes, nested records, arrays and nullable fields inlined, Values
written from their Python form (the ``to_wire`` conversion folded in), into one bytearray
that starts with the single-object header.

It answers only when its bytes are certainly fastavro's: each datum must be of the exact
types it knows (``type(x) is str``, never a subclass; ``bool`` is not ``int``), longs in
64 bits, ints in 32, timestamps aware datetimes (fastavro converts a naive one through the
local time zone), finite decimals and floats, string map keys, no ``-type`` key in a record
fastavro would validate as a union branch, missing fields only where the default is one it
can write. Anything else raises (`Unsure`, or whatever Python raised) and `Serde.encode`
takes its fastavro path, which gives today's bytes or today's `SchemaError`. A schema with
a construct not handled here (another logical type, a union other than [null, X], a
recursive record other than Value) gets no encoder at all (`Unsupported`).

Equality with fastavro is a property test (tests/streams/test_fastencode.py) run on random
and on deliberately malformed datums of every current schema.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ordinance.decimals import MAX_DECIMAL_CHARS
from ordinance.streams.codegen import GeneratedNamespace, Unsupported
from ordinance.streams.values import DECIMAL_TYPE, VALUE_TYPE

Encoder = Callable[[Any], bytes]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MISSING = object()
# Values nested deeper are left to the fastavro path: values.to_wire recurses two Python
# frames per level and raises RecursionError near 500 levels, where this module would
# still answer. (Within the bound, only a caller already near the recursion limit could
# see the fastavro path fail where this one answers.)
_MAX_DEPTH = 100


class Unsure(Exception):
    """This datum is not certainly written as fastavro writes it: take the fastavro path."""


def _varint(n: int) -> bytes:
    """An unsigned (already zig-zagged) varint, as fastavro's write_long emits it."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_long(n: int) -> bytes:
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise Unsure  # fastavro raises OverflowError: the slow path says so
    return _varint((n << 1) ^ (n >> 63))


# Lengths and counts below this are one tuple index instead of a varint loop.
_NSIZES = 1024
_SIZES = tuple(_varint(n << 1) for n in range(_NSIZES))
# A Value string's branch byte and length in one piece: one bytearray append fewer.
_STRING_SIZES = tuple(b"\x06" + size for size in _SIZES)
# Longs in [-64, 64) are one byte; the tuple is laid out so that Python's negative
# indexing finds the negative ones (index -1 is the last entry, -64 the 65th).
_SMALL = tuple(encode_long(i if i < 64 else i - 128) for i in range(128))
_SMALL_VALUES = tuple(b"\x04" + small for small in _SMALL)


def encode_size(n: int) -> bytes:
    return _SIZES[n] if n < _NSIZES else _varint(n << 1)


def _decimal(text: str) -> bytes:
    """The Value's Decimal branch (4) carrying ``text``, as ``values.to_wire`` builds it."""
    data = text.encode()
    return b"\x08" + encode_size(len(data)) + data


def _plain_decimal(value: Decimal) -> bytes:
    """As ``values.decimal_text``: plain notation (the wire grammar has no exponent)."""
    text = format(value, "f")
    if len(text) > MAX_DECIMAL_CHARS:
        raise Unsure  # to_wire refuses it, with the reason
    return _decimal(text)


def write_value(out: bytearray, value: Any, depth: int = 0) -> None:
    """An ``ordinance.v1.Value`` from its Python form: the bytes fastavro writes for
    ``values.to_wire(value)``, or `Unsure` where ``to_wire`` would refuse or convert a
    type it is not certain of (subclasses, NaN, non-string keys). ``depth``: how many
    arrays and maps hold it (see _MAX_DEPTH)."""
    kind = type(value)
    if kind is str:
        data = value.encode()
        n = len(data)
        out += _STRING_SIZES[n] if n < _NSIZES else b"\x06" + _varint(n << 1)
        out += data
    elif kind is int:
        if -64 <= value < 64:
            out += _SMALL_VALUES[value]
        elif _LONG_MIN <= value <= _LONG_MAX:
            out += b"\x04"
            out += _varint((value << 1) ^ (value >> 63))
        else:
            out += _decimal(str(value))  # to_wire: outside 64 bits, an exact decimal
    elif value is None:
        out += b"\x00"
    elif kind is bool:
        out += b"\x02\x01" if value else b"\x02\x00"
    elif kind is Decimal:
        if not value.is_finite():
            raise Unsure
        out += _plain_decimal(value)
    elif kind is float:
        if not math.isfinite(value):
            raise Unsure
        out += _plain_decimal(Decimal(repr(value)))  # to_wire: the shortest repr
    elif kind is list or kind is tuple:
        if depth >= _MAX_DEPTH:
            raise Unsure
        out += b"\x0a"
        if value:
            out += encode_size(len(value))
            for item in value:
                write_value(out, item, depth + 1)
        out += b"\x00"  # fastavro: one block, then the terminating 0 (alone when empty)
    elif kind is dict:
        if depth >= _MAX_DEPTH:
            raise Unsure
        out += b"\x0c"
        write_value_map(out, value, depth + 1)
    else:
        raise Unsure


def write_value_map(out: bytearray, mapping: Any, depth: int = 0) -> None:
    """A map of Values (arguments, attributes, context): the hottest shape, so keys and
    short strings and longs are written inline."""
    if type(mapping) is not dict:
        raise Unsure
    count = len(mapping)
    if not count:
        out += b"\x00"
        return
    out += _SIZES[count] if count < _NSIZES else _varint(count << 1)
    for key, value in mapping.items():
        if type(key) is not str:
            raise Unsure
        data = key.encode()
        n = len(data)
        out += _SIZES[n] if n < _NSIZES else _varint(n << 1)
        out += data
        kind = type(value)
        if kind is str:
            data = value.encode()
            n = len(data)
            out += _STRING_SIZES[n] if n < _NSIZES else b"\x06" + _varint(n << 1)
            out += data
        elif kind is int and -64 <= value < 64:
            out += _SMALL_VALUES[value]
        else:
            write_value(out, value, depth)
    out += b"\x00"


def _is_value_record(schema: Any) -> bool:
    """The Value record exactly as values.py writes it (any other shape: no fast path)."""
    fields = schema.get("fields", [])
    if len(fields) != 1 or fields[0]["name"] != "v":
        return False
    names = [b if isinstance(b, str) else b.get("name") or b.get("type") for b in fields[0]["type"]]
    return names == ["null", "boolean", "long", "string", DECIMAL_TYPE, "array", "map"]


# Generated code checks the exact type of each datum before writing it, appends to ``out``
# with ``+=`` (no method lookup), and keeps short lengths and longs to one table index.
def _sized_lines(var: str, kind: str, pad: str) -> list[str]:
    """A string (``kind`` str) or bytes datum: length, then the bytes."""
    data = f"{var}.encode()" if kind == "str" else var
    return [
        f"{pad}if type({var}) is not {kind}:",
        f"{pad}    raise _Unsure",
        f"{pad}b = {data}",
        f"{pad}n = len(b)",
        f"{pad}out += _SIZES[n] if n < {_NSIZES} else _size(n)",
        f"{pad}out += b",
    ]


def _long_lines(var: str, pad: str, low: int, high: int) -> list[str]:
    zigzag = f"({var} << 1) ^ ({var} >> 63)"
    return [
        f"{pad}if type({var}) is not int or not {low} <= {var} <= {high}:",
        f"{pad}    raise _Unsure",
        f"{pad}out += _SMALL[{var}] if -64 <= {var} < 64 else _varint({zigzag})",
    ]


def _timestamp_lines(var: str, pad: str) -> list[str]:
    # fastavro's own arithmetic for an aware datetime (delta from the epoch, in whole
    # microseconds); an int is written as it is, like fastavro does.
    return [
        f"{pad}if type({var}) is _datetime and {var}.tzinfo is not None:",
        f"{pad}    d = {var} - _EPOCH",
        f"{pad}    out += _long((d.days * 86400 + d.seconds) * 1000000 + d.microseconds)",
        f"{pad}else:",
        *_long_lines(var, pad + "    ", _LONG_MIN, _LONG_MAX),
    ]


class _Builder(GeneratedNamespace):
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}  # record and enum name -> schema, for references
        self.building: set[str] = set()  # records being generated (a reference recurses)
        super().__init__(
            {
                "_Unsure": Unsure,
                "_MISSING": _MISSING,
                "_SIZES": _SIZES,
                "_SMALL": _SMALL,
                "_size": encode_size,
                "_long": encode_long,
                "_varint": _varint,
                "_datetime": dt.datetime,
                "_EPOCH": _EPOCH,
                "_value": write_value,
                "_value_map": write_value_map,
            }
        )

    def resolve(self, schema: Any) -> Any:
        """A schema with a named reference replaced by its definition."""
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if isinstance(schema, dict) and schema.get("type") in ("record", "enum"):
            self.named[schema["name"]] = schema
        return schema

    def lines(self, schema: Any, var: str, pad: str, in_union: bool) -> list[str]:
        """Statements that append the encoding of the datum in local ``var`` to ``out``.
        ``in_union``: fastavro validates the datum as a union branch before writing it."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            if len(schema) != 2 or schema[0] != "null" or schema[1] == "null":
                raise Unsupported("a union other than [null, X]")
            # Branch 0 only for None (fastavro tries null first); otherwise branch 1, which
            # fastavro picks whenever the datum validates — everything the lines below
            # accept does (see in_union).
            return [
                f"{pad}if {var} is None:",
                f"{pad}    out += b'\\x00'",
                f"{pad}else:",
                f"{pad}    out += b'\\x02'",
                *self.lines(schema[1], var, pad + "    ", in_union=True),
            ]
        kind = schema if isinstance(schema, str) else schema.get("type")
        if isinstance(schema, dict) and "logicalType" in schema:
            if schema["logicalType"] == "timestamp-micros" and kind == "long":
                return _timestamp_lines(var, pad)
            raise Unsupported(f"logical type {schema['logicalType']}")
        if kind == "string":
            return _sized_lines(var, "str", pad)
        if kind == "bytes":
            return _sized_lines(var, "bytes", pad)
        if kind == "long":
            return _long_lines(var, pad, _LONG_MIN, _LONG_MAX)
        if kind == "int":
            # fastavro writes any 64-bit int into an int field, but refuses one outside 32
            # bits as a union branch: only the range both agree on is answered here.
            return _long_lines(var, pad, _INT_MIN, _INT_MAX)
        if kind == "boolean":
            # fastavro writes any truthy value as 1 (and a union accepts only bool).
            return [
                f"{pad}if {var} is True:",
                f"{pad}    out += b'\\x01'",
                f"{pad}elif {var} is False:",
                f"{pad}    out += b'\\x00'",
                f"{pad}else:",
                f"{pad}    raise _Unsure",
            ]
        if kind == "null":
            return [f"{pad}if {var} is not None:", f"{pad}    raise _Unsure"]
        if kind == "enum":
            # A symbol's index as one precomputed varint; any other datum is a KeyError.
            table = self.bind({s: encode_long(i) for i, s in enumerate(schema["symbols"])})
            return [
                f"{pad}if type({var}) is not str:",
                f"{pad}    raise _Unsure",
                f"{pad}out += {table}[{var}]",
            ]
        if kind == "array":
            item = self.local("item")
            return [
                f"{pad}if type({var}) is not list:",
                f"{pad}    raise _Unsure",
                f"{pad}if {var}:",
                f"{pad}    out += _size(len({var}))",
                f"{pad}    for {item} in {var}:",
                *self.lines(schema["items"], item, pad + "        ", in_union),
                f"{pad}out += b'\\x00'",  # one block, then the terminating 0
            ]
        if kind == "map":
            if self._is_value(schema["values"]):
                return [f"{pad}_value_map(out, {var})"]
            key, value = self.local("key"), self.local("value")
            return [
                f"{pad}if type({var}) is not dict:",
                f"{pad}    raise _Unsure",
                f"{pad}if {var}:",
                f"{pad}    out += _size(len({var}))",
                f"{pad}    for {key}, {value} in {var}.items():",
                *_sized_lines(key, "str", pad + "        "),
                *self.lines(schema["values"], value, pad + "        ", in_union),
                f"{pad}out += b'\\x00'",
            ]
        if kind == "record":
            if self._is_value(schema):
                return [f"{pad}_value(out, {var})"]
            return self.record_lines(schema, var, pad, in_union)
        raise Unsupported(f"schema type {kind!r}")

    def _is_value(self, schema: Any) -> bool:
        """Whether ``schema`` is the Value record (values.py converts it; nothing else is)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or schema.get("name") != VALUE_TYPE:
            return False
        if not _is_value_record(schema):
            raise Unsupported("a Value record of another shape")
        return True

    def record_lines(self, schema: Any, var: str, pad: str, in_union: bool) -> list[str]:
        name = schema["name"]
        if name in self.building:
            raise Unsupported(f"recursive record {name}")
        self.building.add(name)
        lines = [f"{pad}if type({var}) is not dict:", f"{pad}    raise _Unsure"]
        if in_union:
            # fastavro's union validation refuses a record whose "-type" key names another.
            lines += [f"{pad}if '-type' in {var}:", f"{pad}    raise _Unsure"]
        for field in schema["fields"]:
            value = self.local("f")
            default = _default_bytes(self.resolve(field["type"]), field.get("default", _MISSING))
            if default is None:
                # A missing field is a KeyError: fastavro's answer (an error, or null for a
                # nullable field without default) comes from the slow path.
                lines.append(f"{pad}{value} = {var}[{field['name']!r}]")
                lines += self.lines(field["type"], value, pad, in_union)
            else:
                lines += [
                    f"{pad}{value} = {var}.get({field['name']!r}, _MISSING)",
                    f"{pad}if {value} is _MISSING:",
                    f"{pad}    out += {self.bind(default)}",
                    f"{pad}else:",
                    *self.lines(field["type"], value, pad + "    ", in_union),
                ]
        self.building.discard(name)
        return lines

    def encoder(self, schema: Any, prefix: bytes) -> Encoder:
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise Unsupported("the top level is not a record")
        lines = ["def _encode(datum):", f"    out = bytearray({self.bind(prefix)})"]
        lines += self.record_lines(self.resolve(schema), "datum", "    ", in_union=False)
        lines.append("    return bytes(out)")
        exec(compile("\n".join(lines), f"<fastencode {schema['name']}>", "exec"), self.namespace)
        encode: Encoder = self.namespace["_encode"]
        return encode


def _default_bytes(schema: Any, default: Any) -> bytes | None:
    """What fastavro writes for a missing field's default, for the defaults whose bytes are
    plain (null, empty array or map, a string, an integer, a boolean, an enum symbol); None
    for any other (or no) default, which then takes the slow path when missing."""
    kind = schema if isinstance(schema, str) else None
    if isinstance(schema, dict) and "logicalType" not in schema:
        kind = schema["type"]
    if isinstance(schema, list):
        return b"\x00" if default is None and schema[:1] == ["null"] else None
    if (kind, type(default)) in (("array", list), ("map", dict)) and not default:
        return b"\x00"
    if kind == "string" and type(default) is str:
        return encode_size(len(default.encode())) + default.encode()
    if kind == "long" and type(default) is int and _LONG_MIN <= default <= _LONG_MAX:
        return encode_long(default)
    if kind == "int" and type(default) is int and _INT_MIN <= default <= _INT_MAX:
        return encode_long(default)  # in 32 bits: fastavro validates it in a union branch
    if kind == "boolean" and type(default) is bool:
        return b"\x01" if default else b"\x00"
    if kind == "enum" and type(default) is str and default in schema["symbols"]:
        return encode_long(schema["symbols"].index(default))
    return None


def build_encoder(schema: Any, prefix: bytes = b"") -> Encoder:
    """A function writing ``prefix`` + the Avro binary body of a datum of the parsed record
    ``schema`` (in the Python form ``Serde.encode`` takes), as bytes; it raises on any datum
    it is not certain of. `Unsupported` if the schema holds a construct it does not handle."""
    return _Builder().encoder(schema, prefix)


# Generated once per process, shared by every Serde. Keyed by the whole parsed schema, not
# its fingerprint: the canonical form leaves out defaults and logical types, which an
# encoder depends on.
_SHARED: dict[tuple[str, bytes], Encoder | None] = {}


def shared_encoder(schema: Any, prefix: bytes) -> Encoder | None:
    """`build_encoder`, built once per schema and prefix; None if `Unsupported`."""
    key = (json.dumps(schema, sort_keys=True), prefix)
    if key not in _SHARED:
        try:
            _SHARED[key] = build_encoder(schema, prefix)
        except Unsupported:
            _SHARED[key] = None
    return _SHARED[key]
