"""Generates ``ordinance/streams/records.py``: the wire contract as `TypedDict` classes.

The schemas in ``ordinance/streams/schemas/*.avsc`` are the contract; this module turns the
current ones (not ``history/``) into Python types, so code handling records is checked by
mypy against the schemas instead of against string literals spread over packages::

    python -m ordinance.streams.typed_records            # print the module
    python -m ordinance.streams.typed_records --write    # rewrite records.py
    python -m ordinance.streams.typed_records --check    # exit 1 when records.py is stale

Each named record becomes two classes, because a decoded record and a datum for
``Serde.encode`` differ in what they promise:

* ``Decision`` — what ``Serde.decode`` returns. Every field of the reader schema is a key:
  fastavro and the generated reader (`fastdecode`) build the whole record, and schema
  resolution fills a field an older writer did not have from its default. So a field with
  a default is still a required key. Values are their plain Python form (`values`),
  ``timestamp-micros`` an aware UTC `datetime.datetime`, ``bytes`` `bytes`, an enum its
  symbol (a symbol the reader does not know reads as the enum's default, so the `Literal`
  holds).
* ``DecisionIn`` — what ``Serde.encode`` takes. A field with a default may be left out
  (the encoder writes the default); maps may be any `Mapping`; a Value may also be a
  `float` or a `tuple` (``values.to_wire`` turns them into exact decimals and arrays).
  Timestamps must be aware datetimes (fastavro would read a naive one in local time).

A construct this module cannot type exactly (another logical type, a named type defined
twice with different shapes, a field name that is no Python identifier) is an error, not
a guess: the schema change then decides its Python type here first.
"""

from __future__ import annotations

import argparse
import json
import keyword
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ordinance.streams.errors import SchemaError
from ordinance.streams.serde import NAMESPACE
from ordinance.streams.values import DECIMAL_TYPE, VALUE_TYPE

TARGET = Path(__file__).with_name("records.py")
COMMAND = "python -m ordinance.streams.typed_records --write"
_WIDTH = 100  # ruff's line length: the output is already in ruff format's shape

# Python types of the primitives, as fastavro and `fastdecode` return them.
_PRIMITIVES = {
    "null": "None",
    "boolean": "bool",
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "string": "str",
    "bytes": "bytes",
}
# Logical types whose decoded form is known exactly: `fastdecode.read_timestamp_micros`
# and fastavro both give an aware UTC datetime. Any other is refused (see the docstring).
_LOGICAL = {("long", "timestamp-micros"): "datetime.datetime"}

_HEADER = '''\
"""The wire contract as typed records. Generated from ordinance/streams/schemas/*.avsc by
ordinance/streams/typed_records.py — do not edit; regenerate with:

    {command}

``X`` is a record as ``Serde.decode`` returns it: every field a key, defaulted ones too.
``XIn`` is a datum as ``Serde.encode`` takes it: fields with a default may be left out,
maps may be any Mapping, Values may be floats and tuples. See typed_records.py.
"""

# No `from __future__ import annotations`: Python 3.11's TypedDict finds NotRequired only in
# evaluated annotations (__required_keys__ would list every key), and runtime checks read them.
import datetime
import decimal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, NotRequired, TypeAlias, TypedDict, TypeVar, cast

from ordinance.streams.errors import SchemaError

if TYPE_CHECKING:
    from ordinance.streams.serde import Decoded

# ordinance.v1.Value as `values.from_wire` and `fastdecode.read_value` return it: the
# Decimal record inside it is read as decimal.Decimal, so it has no class of its own.
Value: TypeAlias = bool | int | str | decimal.Decimal | list["Value"] | dict[str, "Value"] | None
# ordinance.v1.Value as `values.to_wire` takes it: floats become exact decimals, tuples
# arrays, any Mapping a map.
ValueIn: TypeAlias = (
    bool
    | int
    | float
    | str
    | decimal.Decimal
    | list["ValueIn"]
    | tuple["ValueIn", ...]
    | Mapping[str, "ValueIn"]
    | None
)
'''

_FOOTER = '''

def decoded_record(decoded: "Decoded", kind: type[_Record]) -> _Record:
    """``decoded.value`` as the record class of its schema (``decoded_record(d, Decision)``);
    SchemaError when it is a record of another schema. The decoders build every record to
    its reader schema (a property test checks it against these classes), so the check of
    the schema's name is all that is left to do."""
    if decoded.name != kind.__name__:
        raise SchemaError(f"a {decoded.name} record, not a {kind.__name__}")
    return cast(_Record, decoded.value)
'''


@dataclass
class _Shape:
    """One named record: its fields as (name, decoded type, encodable type, has default)."""

    name: str
    doc: str
    fields: list[tuple[str, str, str, bool]] = field(default_factory=list)


@dataclass
class _Contract:
    """What the schemas define, gathered before any source is written."""

    enums: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, _Shape] = field(default_factory=dict)  # in dependency order
    top_level: list[str] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)  # full name -> canonical JSON
    named: dict[str, Any] = field(default_factory=dict)  # full name -> definition

    def define(self, full: str, schema: dict[str, Any]) -> bool:
        """Whether ``full`` is new; a second definition must be the same as the first
        (every .avsc repeats Value, a record may be repeated too), docs aside."""
        text = json.dumps(_without_docs(schema), sort_keys=True)
        known = self.definitions.get(full)
        if known is None:
            self.definitions[full] = text
            self.named[full] = schema
            return True
        if known != text:
            raise SchemaError(f"{full} is defined twice, differently")
        return False


def _without_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_docs(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [_without_docs(item) for item in schema]
    return schema


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def _short(full: str) -> str:
    return full.rsplit(".", 1)[-1]


def _types(contract: _Contract, schema: Any, namespace: str, where: str) -> tuple[str, str]:
    """The decoded and the encodable Python type of ``schema`` (found at ``where``, e.g.
    ``ActionRequest.agent``), registering the named types it defines."""
    if isinstance(schema, list):
        branches = [_types(contract, branch, namespace, where) for branch in schema]
        # `X | None`, as ruff wants it (RUF036): the order of a type union means nothing.
        ordered = sorted(branches, key=lambda b: b[0] == "None")
        return " | ".join(b[0] for b in ordered), " | ".join(b[1] for b in ordered)
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema], _PRIMITIVES[schema]
        full = _full_name(schema, namespace)
        if full == VALUE_TYPE:
            return "Value", "ValueIn"
        named = contract.named.get(full)
        if named is None:
            raise SchemaError(f"unknown named type {schema}")
        return _short(full), _short(full) + ("" if named["type"] == "enum" else "In")
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical is not None:
        known = _LOGICAL.get((kind, logical))
        if known is None:
            raise SchemaError(f"no exact Python type for logical type {logical} on {kind}")
        return known, known
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind], _PRIMITIVES[kind]
    if kind == "array":
        decoded, encodable = _types(contract, schema["items"], namespace, where)
        return f"list[{decoded}]", f"list[{encodable}]"
    if kind == "map":
        decoded, encodable = _types(contract, schema["values"], namespace, where)
        return f"dict[str, {decoded}]", f"Mapping[str, {encodable}]"
    if kind == "enum":
        full = _full_name(schema["name"], schema.get("namespace", namespace))
        if contract.define(full, schema):
            contract.enums[_short(full)] = list(schema["symbols"])
        return _short(full), _short(full)
    if kind == "record":
        return _record(contract, schema, namespace, where)
    raise SchemaError(f"no Python type for Avro type {kind}")


def _record(
    contract: _Contract, schema: dict[str, Any], namespace: str, where: str = ""
) -> tuple[str, str]:
    namespace = schema.get("namespace", namespace)
    full = _full_name(schema["name"], namespace)
    if full == VALUE_TYPE:
        contract.define(full, schema)
        return "Value", "ValueIn"
    if full == DECIMAL_TYPE:
        # Only ever a branch of Value, whose Python form has no record in it.
        raise SchemaError(f"{DECIMAL_TYPE} used outside ordinance.v1.Value")
    name = _short(full)
    if not contract.define(full, schema):
        return name, name + "In"
    record = _Shape(name, schema.get("doc") or f"The {full} record, as in {where}.")
    for field_schema in schema["fields"]:
        field_name = field_schema["name"]
        if not field_name.isidentifier() or keyword.iskeyword(field_name):
            raise SchemaError(f"{full}.{field_name} is no Python identifier")
        decoded, encodable = _types(
            contract, field_schema["type"], namespace, f"{name}.{field_name}"
        )
        record.fields.append((field_name, decoded, encodable, "default" in field_schema))
    # After its fields' records: the module defines every class before it is used.
    contract.records[name] = record
    return name, name + "In"


def _schema_files(root: Traversable) -> Iterable[Traversable]:
    return sorted(
        (p for p in root.iterdir() if p.is_file() and p.name.endswith(".avsc")),
        key=lambda p: p.name,
    )


def gather(root: Traversable | None = None) -> _Contract:
    """The named types of every current schema under ``root`` (the packaged schemas)."""
    root = root or resources.files("ordinance.streams").joinpath("schemas")
    contract = _Contract()
    for path in _schema_files(root):
        schema = json.loads(path.read_text())
        if schema.get("namespace") != NAMESPACE:
            raise SchemaError(f"{path.name}: top-level record must be in namespace {NAMESPACE}")
        _record(contract, schema, NAMESPACE)
        contract.top_level.append(schema["name"])
    names = ["Value", "ValueIn", *contract.enums, *contract.records]
    names += [n + "In" for n in contract.records]
    if len(set(names)) != len(names):
        raise SchemaError(
            f"generated names clash: {sorted(n for n in names if names.count(n) > 1)}"
        )
    return contract


def _fits(line: str) -> bool:
    return len(line) <= _WIDTH


def _exploded(head: str, items: list[str], tail: str) -> list[str]:
    """``head item, item tail`` on one line when it fits, else one item a line with a
    trailing comma: the shape ruff format keeps, so the output passes ``ruff format``."""
    one = f"{head}{', '.join(items)}{tail}"
    if _fits(one):
        return [one]
    return [head, *(f"    {item}," for item in items), tail]


def _docstring(text: str, pad: str) -> list[str]:
    # Quotes stay readable: only what would end the docstring early is escaped.
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"""')
    if text.endswith('"'):
        text = text[:-1] + '\\"'
    one = f'{pad}"""{text}"""'
    if _fits(one):
        return [one]
    wrapped = textwrap.wrap(text, _WIDTH - len(pad) - 3)
    wrapped[0] = '"""' + wrapped[0]
    return [pad + line for line in wrapped] + [f'{pad}"""']


def _class(name: str, doc: str, fields: list[tuple[str, str]]) -> list[str]:
    lines = ["", "", f"class {name}(TypedDict):", *_docstring(doc, "    ")]
    if fields:
        lines.append("")
    for field_name, annotation in fields:
        lines.append(f"    {field_name}: {annotation}")
    return lines


def render(contract: _Contract) -> str:
    """The source of ``records.py``."""
    lines = [_HEADER.format(command=COMMAND).rstrip("\n")]
    lines.append("")
    for name, symbols in contract.enums.items():
        lines.append("")
        lines += _exploded(f"{name}: TypeAlias = Literal[", [json.dumps(s) for s in symbols], "]")
    for record in contract.records.values():
        lines += _class(
            record.name, record.doc, [(f, decoded) for f, decoded, _, _ in record.fields]
        )
    for record in contract.records.values():
        doc = f"A {record.name} as Serde.encode takes it: fields with a default may be left out."
        fields = [
            (f, f"NotRequired[{encodable}]" if default else encodable)
            for f, _, encodable, default in record.fields
        ]
        lines += _class(record.name + "In", doc, fields)
    lines += [
        "",
        "",
        "# The records a log carries at the top level: what decoded_record narrows to.",
    ]
    one = f"AnyRecord: TypeAlias = {' | '.join(contract.top_level)}"
    if _fits(one):
        lines.append(one)
    else:  # ruff format's shape of a long union
        lines += ["AnyRecord: TypeAlias = (", f"    {contract.top_level[0]}"]
        lines += [f"    | {name}" for name in contract.top_level[1:]] + [")"]
    lines.append('_Record = TypeVar("_Record", bound=AnyRecord)')
    lines.append(_FOOTER.rstrip("\n"))
    return "\n".join(lines) + "\n"


def generate() -> str:
    return render(gather())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite {TARGET.name}")
    action.add_argument("--check", action="store_true", help=f"exit 1 if {TARGET.name} is stale")
    args = parser.parse_args(argv)
    source = generate()
    if args.write:
        TARGET.write_text(source, encoding="utf-8")
        print(f"wrote {TARGET}")
        return 0
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != source:
            print(f"{TARGET} is stale; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
