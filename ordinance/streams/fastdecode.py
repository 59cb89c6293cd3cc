"""The fast path of `Serde.decode` — exact, or not used at all.

Every processor decodes at least one record per decision, and fastavro's reader walks the
schema for every datum. This module decodes the *current* schemas with one generated
Python function per record type (straight-line field reads; varints, nested records and
arrays inlined), producing the same values as ``Serde.decode``: Values as plain values,
exact decimals, timestamps as aware UTC datetimes built the way fastavro builds them.
It is a fast path only: anything it does not handle exactly — a retired writer schema, an
unexpected type, trailing bytes, a truncated or malformed body, a boolean byte other than
0/1, bad UTF-8 (``bytes.decode()`` is strict UTF-8), an encoding fastavro would not write
(negative index, overlong varint, second block, a map key twice) — goes to
``Serde.decode``, which gives the canonical answer (every `UndecodableRecord` comes from
there). Equality with the slow path is a property test (tests/streams/test_fastdecode.py).

Generated source holds no data from records or schemas except field names as ``repr``
literals and enum symbols as constants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ordinance.decimals import parse_decimal
from ordinance.streams.codegen import GeneratedNamespace, Unsupported
from ordinance.streams.values import DECIMAL_TYPE, VALUE_TYPE

Reader = Callable[[bytes, int], tuple[Any, int]]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The value of every one-byte varint (zig-zag): one index instead of five operations.
_ZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))
_MICRO = dt.timedelta(microseconds=1)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos
    n = b & 0x7F
    shift = 7
    while True:
        b = data[pos]
        pos += 1
        if shift == 63 and b > 1:
            # Bits past the 64th: fastavro drops them, so the value is not what was written.
            raise ValueError("varint beyond 64 bits")
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    if b == 0:
        raise ValueError("overlong varint")  # not what a writer emits: the slow path decides
    return (n >> 1) ^ -(n & 1), pos


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_long(data, pos)
    end = pos + n
    if n < 0 or end > len(data):
        raise ValueError("string runs past the end")
    return data[pos:end].decode(), end


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = read_long(data, pos)
    end = pos + n
    if n < 0 or end > len(data):
        raise ValueError("bytes run past the end")
    return data[pos:end], end


def read_boolean(data: bytes, pos: int) -> tuple[bool, int]:
    b = data[pos]
    if b > 1:
        raise ValueError("boolean byte is neither 0 nor 1")
    return b == 1, pos + 1


def read_null(_data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def read_timestamp_micros(data: bytes, pos: int) -> tuple[dt.datetime, int]:
    n, pos = read_long(data, pos)
    return _EPOCH + n * _MICRO, pos


def blocks(data: bytes, pos: int) -> tuple[int, int]:
    """An array/map's first block header: its item count. A negative count (followed by a
    byte size) is valid Avro but not what fastavro writes: the slow path decides."""
    count, pos = read_long(data, pos)
    if count < 0:
        raise ValueError("negative block count")
    return count, pos


def last_block(data: bytes, pos: int) -> tuple[int, int]:
    """The header after a block: fastavro writes every item in one block, so only the
    terminating zero is taken here; a second block goes to the slow path."""
    count, pos = read_long(data, pos)
    if count != 0:
        raise ValueError("a second block")
    return 0, pos


def read_value(data: bytes, pos: int) -> tuple[Any, int]:
    """An ``ordinance.v1.Value`` as its plain Python value (what values.from_wire gives)."""
    branch, pos = read_long(data, pos)
    if branch == 3:
        return read_string(data, pos)
    if branch == 2:
        return read_long(data, pos)
    if branch == 4:
        text, pos = read_string(data, pos)
        return parse_decimal(text), pos
    if branch == 1:
        return read_boolean(data, pos)
    if branch == 0:
        return None, pos
    if branch == 5:
        items: list[Any] = []
        count, pos = blocks(data, pos)
        while count:
            for _ in range(count):
                item, pos = read_value(data, pos)
                items.append(item)
            count, pos = last_block(data, pos)
        return items, pos
    if branch == 6:
        return read_value_map(data, pos)
    raise ValueError(f"Value union branch {branch}")


def read_value_map(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    """A map of Values: arguments, attributes, context — the hottest shape on the log, so
    keys and the common string / long / decimal values are read inline."""
    out: dict[str, Any] = {}
    size = len(data)
    count = data[pos]
    if count < 0x80 and not count & 1:  # a one-byte, non-negative item count
        count >>= 1
        pos += 1
    else:
        count, pos = blocks(data, pos)
    if count:
        zigzag = _ZIGZAG
        for _ in range(count):
            n = data[pos]
            if n < 0x80:
                n = zigzag[n]
                pos += 1
            else:
                n, pos = read_long(data, pos)
            end = pos + n
            if n < 0 or end > size:
                raise ValueError("map key runs past the end")
            key = data[pos:end].decode()
            branch = data[end]
            if branch in {6, 8}:  # string (branch 3) or Decimal (branch 4)
                n = data[end + 1]
                if n < 0x80:
                    n = zigzag[n]
                    pos = end + 2
                else:
                    n, pos = read_long(data, end + 1)
                end = pos + n
                if n < 0 or end > size:
                    raise ValueError("string runs past the end")
                out[key] = (
                    data[pos:end].decode() if branch == 6 else parse_decimal(data[pos:end].decode())
                )
                pos = end
            elif branch == 4:  # long (branch 2)
                out[key], pos = read_long(data, end + 1)
            else:
                out[key], pos = read_value(data, end)
        if data[pos]:  # fastavro writes one block: only the terminating 0 may follow
            raise ValueError("a second block")
        pos += 1
        if len(out) != count:
            # A key twice: the dict keeps the last value, which fastavro would not write.
            raise ValueError("a duplicate map key")
    return out, pos


_PRIMITIVES: dict[str, Reader] = {
    "null": read_null,
    "boolean": read_boolean,
    "int": read_long,
    "long": read_long,
    "string": read_string,
    "bytes": read_bytes,
}


def _is_value_record(schema: Any) -> bool:
    """The Value record exactly as values.py reads it (any other shape: no fast path)."""
    fields = schema.get("fields", [])
    if len(fields) != 1 or fields[0]["name"] != "v":
        return False
    names = [b if isinstance(b, str) else b.get("name") or b.get("type") for b in fields[0]["type"]]
    return names == ["null", "boolean", "long", "string", DECIMAL_TYPE, "array", "map"]


# Generated code reads every varint inline: one byte without a loop, longer ones (timestamps,
# offsets) with the same checks as read_long. Nested records, arrays, nullable fields and
# block headers are inlined too, and a record is built as one dict display: a record of the
# current schemas is one call, plus one per non-empty Value map (read_value_map).
def _long_lines(target: str, pad: str) -> list[str]:
    return [
        f"{pad}b = data[pos]",
        f"{pad}pos += 1",
        f"{pad}if b < 0x80:",
        f"{pad}    {target} = _ZIGZAG[b]",
        f"{pad}else:",
        f"{pad}    n = b & 0x7F",
        f"{pad}    shift = 7",
        f"{pad}    while True:",
        f"{pad}        b = data[pos]",
        f"{pad}        pos += 1",
        f"{pad}        if shift == 63 and b > 1:",
        f"{pad}            raise _Bad",  # bits past the 64th: see read_long
        f"{pad}        n |= (b & 0x7F) << shift",
        f"{pad}        if b < 0x80:",
        f"{pad}            break",
        f"{pad}        shift += 7",
        f"{pad}    if b == 0:",
        f"{pad}        raise _Bad",  # overlong: see read_long
        f"{pad}    {target} = (n >> 1) ^ -(n & 1)",
    ]


def _string_lines(target: str, pad: str, decode: bool = True) -> list[str]:
    value = "data[pos:end].decode()" if decode else "data[pos:end]"
    return [
        *_long_lines("n", pad),
        f"{pad}end = pos + n",
        f"{pad}if n < 0 or end > size:",
        f"{pad}    raise _Bad",
        f"{pad}{target} = {value}",
        f"{pad}pos = end",
    ]


def _block_lines(count: str, pad: str) -> list[str]:
    """An array/map's first block header (see ``blocks``): a negative count is refused."""
    return [*_long_lines(count, pad), f"{pad}if {count} < 0:", f"{pad}    raise _Bad"]


def _last_block_lines(pad: str) -> list[str]:
    """The header after the one block (see ``last_block``): only the single byte 0 is
    taken; any other count, or an overlong zero, is refused."""
    return [f"{pad}if data[pos]:", f"{pad}    raise _Bad", f"{pad}pos += 1"]


class _Builder(GeneratedNamespace):
    def __init__(self) -> None:
        self.named: dict[str, Reader] = {}
        self.records: dict[str, Any] = {}  # record name -> schema, to inline references
        self.building: set[str] = set()  # records being generated (a reference to one recurses)
        super().__init__(
            {
                "_long": read_long,
                "_Bad": ValueError,
                "_EPOCH": _EPOCH,
                "_MICRO": _MICRO,
                "_ZIGZAG": _ZIGZAG,
                "_value_map": read_value_map,
            }
        )

    def _inlinable_record(self, schema: Any) -> Any:
        """The record schema to inline for ``schema``, or None (Value, recursion, others)."""
        if isinstance(schema, str):
            schema = self.records.get(schema)
        if not isinstance(schema, dict) or schema.get("type") != "record":
            return None
        if schema["name"] == VALUE_TYPE or schema["name"] in self.building:
            return None
        return schema

    def record_lines(self, schema: Any, target: str, pad: str) -> list[str]:
        """Fields into locals, then the record as one dict display."""
        name = schema["name"]
        self.records[name] = schema
        self.building.add(name)
        lines: list[str] = []
        items = []
        for field in schema["fields"]:
            var = self.local("f")
            lines += self.lines(field["type"], var, pad)
            items.append(f"{field['name']!r}: {var}")
        self.building.discard(name)
        lines.append(f"{pad}{target} = {{{', '.join(items)}}}")
        return lines

    def lines(self, schema: Any, target: str, pad: str) -> list[str]:
        """Statements that read one ``schema`` datum into ``target`` (a local name)."""
        kind = schema if isinstance(schema, str) else None
        if isinstance(schema, dict):
            logical = schema.get("logicalType")
            if logical == "timestamp-micros" and schema["type"] == "long":
                return [*_long_lines("n", pad), f"{pad}{target} = _EPOCH + n * _MICRO"]
            if logical is None and schema["type"] in _PRIMITIVES:
                kind = schema["type"]
        if kind == "string":
            return _string_lines(target, pad)
        if kind == "bytes":
            return _string_lines(target, pad, decode=False)
        if kind in ("long", "int"):
            return _long_lines(target, pad)
        if kind == "null":
            return [f"{pad}{target} = None"]
        if isinstance(schema, list) and len(schema) == 2 and schema[0] == "null":
            # The nullable field: branch 0 is null, 1 the value; anything else is not ours.
            return [
                f"{pad}b = data[pos]",
                f"{pad}pos += 1",
                f"{pad}if b == 0:",
                f"{pad}    {target} = None",
                f"{pad}elif b == 2:",
                *self.lines(schema[1], target, pad + "    "),
                f"{pad}else:",
                f"{pad}    raise _Bad",
            ]
        if isinstance(schema, dict) and schema["type"] == "enum":
            symbols = self.bind(tuple(schema["symbols"]))
            self.named[schema["name"]] = self.reader(schema)
            # A negative index would silently pick from the end of the symbols: refuse it.
            return [
                *_long_lines("n", pad),
                f"{pad}if n < 0:",
                f"{pad}    raise _Bad",
                f"{pad}{target} = {symbols}[n]",
            ]
        record = self._inlinable_record(schema)
        if record is not None:
            return self.record_lines(record, target, pad)
        if isinstance(schema, dict) and schema["type"] == "array":
            items, count, item = self.local("items"), self.local("count"), self.local("item")
            return [
                f"{pad}{items} = []",
                *_block_lines(count, pad),
                f"{pad}if {count}:",
                f"{pad}    for _ in range({count}):",
                *self.lines(schema["items"], item, pad + "        "),
                f"{pad}        {items}.append({item})",
                *_last_block_lines(pad + "    "),
                f"{pad}{target} = {items}",
            ]
        if self._is_value_map(schema):
            # Empty maps (no arguments, no attributes) are common: no call for them.
            return [
                f"{pad}if data[pos] == 0:",
                f"{pad}    {target} = {{}}",
                f"{pad}    pos += 1",
                f"{pad}else:",
                f"{pad}    {target}, pos = _value_map(data, pos)",
            ]
        call = self.bind(self.reader(schema))
        return [f"{pad}{target}, pos = {call}(data, pos)"]

    def _is_value_map(self, schema: Any) -> bool:
        if not isinstance(schema, dict) or schema["type"] != "map":
            return False
        values = schema["values"]
        if isinstance(values, dict) and values.get("type") == "record":
            if values["name"] != VALUE_TYPE or not _is_value_record(values):
                return False
            self.named[VALUE_TYPE] = read_value
            return True
        return values == VALUE_TYPE and self.named.get(VALUE_TYPE) is read_value

    def reader(self, schema: Any) -> Reader:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            if schema == VALUE_TYPE:
                return read_value
            if schema in self.named:
                return self.named[schema]
            if schema in self.records:  # inlined so far; a reader of its own now
                return self.record(self.records[schema])
            raise Unsupported(f"unknown named type {schema}")
        if isinstance(schema, list):
            branches = [self.reader(b) for b in schema]

            def union(data: bytes, pos: int) -> tuple[Any, int]:
                index, pos = read_long(data, pos)
                if index < 0:
                    raise ValueError("negative union branch")
                return branches[index](data, pos)

            return union
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            if kind == "long" and logical == "timestamp-micros":
                return read_timestamp_micros
            raise Unsupported(f"logical type {logical}")
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "record":
            return self.record(schema)
        if kind == "enum":
            symbols = tuple(schema["symbols"])

            def enum(data: bytes, pos: int) -> tuple[str, int]:
                index, pos = read_long(data, pos)
                if index < 0:
                    raise ValueError("negative enum index")
                return symbols[index], pos

            self.named[schema["name"]] = enum
            return enum
        if kind == "array":
            item = self.reader(schema["items"])

            def array(data: bytes, pos: int) -> tuple[list[Any], int]:
                items: list[Any] = []
                count, pos = blocks(data, pos)
                while count:
                    for _ in range(count):
                        value, pos = item(data, pos)
                        items.append(value)
                    count, pos = last_block(data, pos)
                return items, pos

            return array
        if kind == "map":
            values = self.reader(schema["values"])
            if values is read_value:
                return read_value_map

            def mapping(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
                out: dict[str, Any] = {}
                count, pos = blocks(data, pos)
                while count:
                    for _ in range(count):
                        key, pos = read_string(data, pos)
                        out[key], pos = values(data, pos)
                    if len(out) != count:
                        raise ValueError("a duplicate map key")  # see read_value_map
                    count, pos = last_block(data, pos)
                return out, pos

            return mapping
        raise Unsupported(f"schema type {kind}")

    def record(self, schema: Any) -> Reader:
        name = schema["name"]
        if name == VALUE_TYPE:
            if not _is_value_record(schema):
                raise Unsupported("a Value record of another shape")
            self.named[name] = read_value
            return read_value
        # A record may refer to itself: a trampoline is registered before its fields.
        slot: list[Reader] = []

        def trampoline(data: bytes, pos: int) -> tuple[Any, int]:
            return slot[0](data, pos)

        self.named[name] = trampoline
        lines = ["def _record(data, pos):", "    size = len(data)"]
        lines += self.record_lines(schema, "out", "    ")
        lines.append("    return out, pos")
        namespace = dict(self.namespace)
        exec(compile("\n".join(lines), f"<fastdecode {name}>", "exec"), namespace)
        record: Reader = namespace["_record"]
        slot.append(record)
        self.named[name] = record
        return record


def build_reader(schema: Any) -> Reader:
    return _Builder().reader(schema)
