"""The typed records (`ordinance/streams/records.py`) are what the schemas say and what the
decoders return.

The checked-in module must be what the generator (`ordinance/streams/typed_records.py`)
makes of the current schemas: ``UPDATE_GOLDEN=1 python -m pytest
tests/streams/test_typed_records.py`` rewrites it (as ``python -m
ordinance.streams.typed_records --write`` does); review the diff like any other change.
Records decoded by both serde paths, from random datums of every current schema and from
the recorded samples of older writers, must conform to the classes at runtime: every key,
each value of its annotated type, checked recursively from ``typing.get_type_hints``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ForwardRef, Literal, Union

import pytest
from avro_strategies import actions, datums, decisions
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.streams import records
from ordinance.streams.errors import SchemaError
from ordinance.streams.serde import Decoded, SchemaRegistry, Serde
from ordinance.streams.typed_records import TARGET, gather, generate, main, render

SAMPLES = Path(__file__).with_name("samples")
REGISTRY = SchemaRegistry()
NAMES = REGISTRY.names
FAST, SLOW = Serde(REGISTRY), Serde(REGISTRY, fast=False)


def test_the_checked_in_module_is_what_the_generator_makes() -> None:
    source = generate()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        TARGET.write_text(source, encoding="utf-8")
        return
    assert TARGET.read_text(encoding="utf-8") == source, (
        f"{TARGET.name} is stale: run python -m ordinance.streams.typed_records --write"
    )


def test_the_check_switch_says_the_module_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_every_current_schema_has_its_classes() -> None:
    for name in NAMES:
        assert typing.is_typeddict(getattr(records, name))
        assert typing.is_typeddict(getattr(records, name + "In"))
    assert set(typing.get_args(records.AnyRecord)) == {getattr(records, n) for n in NAMES}


def mismatches(value: object, annotation: object, path: str = "") -> list[str]:
    """Where ``value`` is not of ``annotation`` (a type from records.py), as paths."""
    if isinstance(annotation, str | ForwardRef):
        # The recursive aliases refer to themselves by name: records.Value, records.ValueIn.
        name = annotation if isinstance(annotation, str) else annotation.__forward_arg__
        return mismatches(value, getattr(records, name), path)
    if typing.is_typeddict(annotation):
        assert isinstance(annotation, type)
        if not isinstance(value, Mapping):
            return [f"{path}: {type(value).__name__}, not a record"]
        keys = set(value)
        required: frozenset[str] = annotation.__required_keys__  # type: ignore[attr-defined]
        optional: frozenset[str] = annotation.__optional_keys__  # type: ignore[attr-defined]
        out = [f"{path}.{k}: missing" for k in sorted(required - keys)]
        out += [f"{path}.{k}: not in the schema" for k in sorted(keys - required - optional)]
        hints = typing.get_type_hints(annotation)
        for key in sorted(keys & set(hints)):
            out += mismatches(value[key], hints[key], f"{path}.{key}")
        return out
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        found = [mismatches(value, branch, path) for branch in args]
        return [] if any(not m for m in found) else [f"{path}: {value!r} is not {annotation}"]
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin in (list, tuple):
        if type(value) is not origin:
            return [f"{path}: {type(value).__name__}, not {origin.__name__}"]
        assert isinstance(value, list | tuple)
        return [
            m for i, item in enumerate(value) for m in mismatches(item, args[0], f"{path}[{i}]")
        ]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping) or (origin is dict and type(value) is not dict):
            return [f"{path}: {type(value).__name__}, not {origin.__name__}"]
        out = [f"{path}: key {k!r} is not a string" for k in value if type(k) is not str]
        return out + [m for k, v in value.items() for m in mismatches(v, args[1], f"{path}[{k!r}]")]
    if annotation is None or annotation is type(None):
        return [] if value is None else [f"{path}: {value!r} is not None"]
    if annotation is dt.datetime:
        # Decoded: UTC. Encoded: the encoders refuse a naive one (local time is no instant).
        aware = isinstance(value, dt.datetime) and value.tzinfo is not None
        return [] if aware else [f"{path}: {value!r} is not an aware datetime"]
    if annotation is float or annotation is decimal.Decimal:
        return [] if isinstance(value, annotation) else [f"{path}: {value!r} is not {annotation}"]
    if annotation in (bool, int, str, bytes):
        # Exact types: a bool where an int belongs would be a decoder's bug, not an int.
        return [] if type(value) is annotation else [f"{path}: {value!r} is not {annotation}"]
    raise AssertionError(f"{path}: no check for {annotation!r}")


def test_the_conformance_check_finds_what_is_wrong() -> None:
    """It must not pass vacuously: a key missing, one too many, a wrong type deep down."""
    good = {"kind": "redact", "params": {"fields": ["ssn", decimal.Decimal("1.5"), None]}}
    assert mismatches(good, records.Obligation) == []
    assert mismatches({"kind": "redact"}, records.Obligation) == [".params: missing"]
    assert mismatches({"kind": "redact"}, records.ObligationIn) == []  # params has a default
    assert mismatches({**good, "x": 1}, records.Obligation) == [".x: not in the schema"]
    assert mismatches({"kind": "k", "params": {"a": [1.5]}}, records.Obligation)
    assert mismatches({"kind": "k", "params": {"a": [1.5]}}, records.ObligationIn) == []
    assert mismatches({"kind": "k", "params": {"a": (1,)}}, records.Obligation)
    assert mismatches({"kind": True, "params": {}}, records.Obligation)
    shadow = {"bundle_id": "b", "effect": "allow", "rule_ids": [], "code": "c", "detail": ""}
    decision = {"effect": "permit", "shadow": {**shadow, "rule_ids": [1]}}
    found = mismatches(decision, records.Decision)
    assert ".effect: 'permit' is not one of ('allow', 'deny', 'require_approval')" in found
    assert any(m.startswith(".shadow:") for m in found)
    naive = {"request_id": "r", "agent_id": "a", "effect": "deny", "enforcer_id": "e"}
    assert mismatches({**naive, "evaluated_at": dt.datetime(2026, 1, 1)}, records.DecisionIn)


def _decoded_both_ways(name: str, datum: Any) -> list[Decoded]:
    raw = FAST.encode(name, datum)
    out = [FAST.decode(raw, expect={name}), SLOW.decode(raw, expect={name})]
    assert all(isinstance(d, Decoded) for d in out), out
    return [d for d in out if isinstance(d, Decoded)]


ANY_DATUM = st.one_of(
    *(datums(REGISTRY.current(n).parsed, {}).map(lambda d, n=n: (n, d)) for n in NAMES),
    decisions().map(lambda d: ("Decision", d)),
    actions().map(lambda d: ("ActionRequest", d)),
)


@settings(max_examples=300)
@given(datum=ANY_DATUM)
def test_decoded_records_conform_to_their_class(datum: tuple[str, Any]) -> None:
    """Random datums (fields with defaults left out at random, floats, tuples, wide
    integers in Values) fit the encodable class; decoded by either path, the record fits
    the decoded class: every key present, Values in their plain form."""
    name, value = datum
    assert mismatches(value, getattr(records, name + "In")) == []
    for decoded in _decoded_both_ways(name, value):
        assert decoded.name == name
        assert mismatches(decoded.value, getattr(records, name)) == []
        assert records.decoded_record(decoded, getattr(records, name)) is decoded.value


def test_records_of_older_writers_conform_once_resolved() -> None:
    """Schema resolution fills the fields an older writer did not have from their
    defaults: the decoded record is as complete as a current one."""
    bins = sorted(SAMPLES.glob("*.bin"))
    assert {p.name.split(".")[0] for p in bins} == set(NAMES)
    for path in bins:
        for serde in (FAST, SLOW):
            decoded = serde.decode(path.read_bytes())
            assert isinstance(decoded, Decoded), (path.name, decoded)
            assert mismatches(decoded.value, getattr(records, decoded.name)) == [], path.name


def test_decoded_record_refuses_a_record_of_another_schema() -> None:
    (decoded, _) = _decoded_both_ways("Decision", _a_decision())
    assert records.decoded_record(decoded, records.Decision)["effect"] == "deny"
    with pytest.raises(SchemaError, match="a Decision record, not a Approval"):
        records.decoded_record(decoded, records.Approval)


def _a_decision() -> records.DecisionIn:
    at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    return {
        "request_id": "r",
        "agent_id": "a",
        "effect": "deny",
        "evaluated_at": at,
        "enforcer_id": "e",
    }


def _schema_dir(tmp_path: Path, *schemas: dict[str, Any]) -> Path:
    tmp_path.mkdir()
    for schema in schemas:
        (tmp_path / f"{schema['name']}.avsc").write_text(json.dumps(schema))
    return tmp_path


def _record(name: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "ordinance.v1", "fields": list(fields)}


def test_what_the_generator_cannot_type_exactly_is_refused(tmp_path: Path) -> None:
    day = {"name": "day", "type": {"type": "int", "logicalType": "date"}}
    with pytest.raises(SchemaError, match="logical type date"):
        gather(_schema_dir(tmp_path / "a", _record("A", day)))
    inner = {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "string"}]}
    other = {**inner, "fields": [{"name": "x", "type": "long"}]}
    twice = (_record("A", {"name": "i", "type": inner}), _record("B", {"name": "i", "type": other}))
    with pytest.raises(SchemaError, match="Inner is defined twice, differently"):
        gather(_schema_dir(tmp_path / "b", *twice))
    documented = {**inner, "doc": "the same record, documented"}  # docs may differ
    same = (
        _record("A", {"name": "i", "type": inner}),
        _record("B", {"name": "i", "type": documented}),
    )
    assert list(gather(_schema_dir(tmp_path / "d", *same)).records) == ["Inner", "A", "B"]
    with pytest.raises(SchemaError, match="no Python identifier"):
        gather(_schema_dir(tmp_path / "c", _record("A", {"name": "from", "type": "string"})))


def test_a_small_schema_renders_as_documented(tmp_path: Path) -> None:
    color = {"type": "enum", "name": "Color", "symbols": ["red", "green"]}
    doc = 'Paint, e.g. "red" or \\ """green"""'  # quotes and a backslash stay as written
    schema = {
        **_record(
            "Paint",
            {"name": "color", "type": color},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "note", "type": ["null", "string"], "default": None},
        ),
        "doc": doc,
    }
    source = render(gather(_schema_dir(tmp_path / "a", schema)))
    assert 'Color: TypeAlias = Literal["red", "green"]' in source
    assert "class Paint(TypedDict):" in source
    assert "    tags: list[str]\n    note: str | None\n" in source
    assert "    color: Color\n    at: datetime.datetime\n" in source
    assert "    tags: NotRequired[list[str]]\n    note: NotRequired[str | None]\n" in source
    namespace: dict[str, Any] = {}
    # dont_inherit: this module's `from __future__ import annotations` would hide NotRequired.
    exec(compile(source, "<records>", "exec", dont_inherit=True), namespace)
    assert namespace["PaintIn"].__required_keys__ == {"color", "at"}
    assert namespace["Paint"].__doc__ == doc
