"""The Avro wire contract: single-object encoding, typed values, evolution and
bad input."""

from __future__ import annotations

import datetime as dt
import json
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples.record_samples import SAMPLES, from_json

from ordinance.cli import main
from ordinance.streams.errors import SchemaError
from ordinance.streams.serde import (
    MAGIC,
    Decoded,
    Problem,
    SchemaRegistry,
    Serde,
    UndecodableRecord,
    schema_fingerprint,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES_DIR = Path(__file__).with_name("samples")
PACKAGED = REPO / "ordinance" / "streams" / "schemas"
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

serde = Serde()


def request(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": "r",
        "agent": {"id": "a"},
        "action": {"tool": "t", "args": args},
        "event_time": T0,
        "client_id": "c",
    }


def test_the_schemas_live_once_and_export_byte_for_byte(tmp_path: Path) -> None:
    assert not (REPO / "schemas").exists(), "one copy: ordinance/streams/schemas (docs/log.md)"
    assert main(["schemas", "--export", str(tmp_path / "view")]) == 0
    exported = sorted(p.relative_to(tmp_path / "view") for p in (tmp_path / "view").rglob("*.avsc"))
    packaged = sorted(p.relative_to(PACKAGED) for p in PACKAGED.rglob("*.avsc"))
    assert exported == packaged and len(packaged) > 20
    for rel in packaged:
        assert (tmp_path / "view" / rel).read_bytes() == (PACKAGED / rel).read_bytes(), rel


def test_the_listing_names_the_fingerprints_the_serde_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schemas", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["schemas"]
    serde = Serde()
    current = {r["name"]: r["fingerprint"] for r in rows if r["current"]}
    assert sorted(current) == serde.registry.names
    for name, fingerprint in current.items():
        assert serde.registry.current(name).fingerprint.hex() == fingerprint
    for row in rows:
        known = serde.registry.by_fingerprint(bytes.fromhex(row["fingerprint"]))
        assert known is not None and known.name.endswith("." + row["name"]), row


@pytest.mark.parametrize(
    ("schema", "java_long"),
    [
        ('"null"', 7195948357588979594),
        ('"int"', 8247732601305521295),
        (
            '{"name":"PigValue","type":"record","fields":'
            '[{"name":"value","type":["null","int","long","PigValue"]}]}',
            -1759257747318642341,
        ),
    ],
)
def test_fingerprints_match_the_avro_specification(schema: str, java_long: int) -> None:
    import fastavro

    parsed = fastavro.parse_schema(json.loads(schema), named_schemas={})
    assert schema_fingerprint(parsed) == struct.pack("<q", java_long)


def test_payload_is_marker_fingerprint_body() -> None:
    raw = serde.encode("ActionRequest", request({}))
    assert raw[:2] == MAGIC == b"\xc3\x01"
    assert raw[2:10] == serde.registry.current("ActionRequest").fingerprint


@pytest.mark.parametrize(("name", "number", "datum"), SAMPLES, ids=lambda x: str(x)[:20])
def test_every_schema_round_trips(name: str, number: int, datum: dict[str, Any]) -> None:
    decoded = serde.decode(serde.encode(name, datum))
    assert isinstance(decoded, Decoded)
    assert decoded.name == name
    expected = dict(datum)
    if name == "ActionRequest":
        expected["action"] = {**datum["action"], "args": {**datum["action"]["args"]}}
        expected["action"]["args"]["huge"] = Decimal(2**80)
    assert _subset(expected, decoded.value)


def _subset(expected: Any, actual: Any) -> bool:
    """Records may gain fields (with defaults); everything recorded must match."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(_subset, expected, actual))
    return type(expected) is type(actual) and expected == actual


def test_recorded_samples_still_decode_with_the_current_schemas() -> None:
    recorded = sorted(SAMPLES_DIR.glob("*.bin"))
    assert {p.name.split(".")[0] for p in recorded} == set(serde.registry.names), (
        "every schema needs a recorded sample: run tests/streams/samples/record_samples.py"
    )
    for path in recorded:
        decoded = serde.decode(path.read_bytes())
        assert isinstance(decoded, Decoded), (path.name, decoded)
        assert decoded.name == path.name.split(".")[0]
        expected = from_json(json.loads(path.with_suffix(".json").read_text()))
        assert _subset(expected, decoded.value), path.name


def test_values_keep_their_types() -> None:
    args = {
        "flag": True,
        "zero": 0,
        "n": -(2**63),
        "big": 2**63,
        "price": 0.1,
        "exact": Decimal("1.10"),
        "none": None,
        "list": [False, 1, "x", [], {}],
        "text": {"text": "a map whose only key is text"},
    }
    decoded = serde.decode(serde.encode("ActionRequest", request(args)))
    assert isinstance(decoded, Decoded)
    got = decoded.value["action"]["args"]
    assert got["flag"] is True and type(got["zero"]) is int and got["n"] == -(2**63)
    assert got["big"] == Decimal(2**63) and isinstance(got["big"], Decimal)
    assert got["price"] == Decimal("0.1")
    assert str(got["exact"]) == "1.10"
    assert got["none"] is None
    assert got["list"] == [False, 1, "x", [], {}] and got["list"][0] is False
    assert got["text"] == {"text": "a map whose only key is text"}


@pytest.mark.parametrize("bad", [float("nan"), Decimal("inf"), {1: "x"}, object(), b"bytes"])
def test_values_without_an_exact_form_are_refused(bad: object) -> None:
    with pytest.raises(SchemaError):
        serde.encode("ActionRequest", request({"x": bad}))


def test_a_datum_that_does_not_fit_is_refused() -> None:
    with pytest.raises(SchemaError):
        serde.encode("Approval", {"request_id": "r"})
    with pytest.raises(SchemaError, match="no schema named"):
        serde.encode("Nope", {})


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(args=st.dictionaries(st.text(max_size=6), values, max_size=5))
def test_any_value_round_trips(args: dict[str, Any]) -> None:
    decoded = serde.decode(serde.encode("ActionRequest", request(args)))
    assert isinstance(decoded, Decoded)
    assert _same(args, decoded.value["action"]["args"])


def _same(sent: Any, got: Any) -> bool:
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return type(sent) is type(got) and sent == got
    if isinstance(sent, int | Decimal):
        return isinstance(got, int | Decimal) and not isinstance(got, bool) and sent == got
    if isinstance(sent, list):
        return isinstance(got, list) and len(sent) == len(got) and all(map(_same, sent, got))
    assert isinstance(sent, dict)
    return (
        isinstance(got, dict)
        and sent.keys() == got.keys()
        and all(_same(v, got[k]) for k, v in sent.items())
    )


GOOD = serde.encode("ActionRequest", request({"amount": Decimal("5"), "to": ["x", "y"]}))


def test_every_truncation_is_a_typed_error() -> None:
    for cut in range(len(GOOD)):
        result = serde.decode(GOOD[:cut])
        assert isinstance(result, UndecodableRecord), cut
        assert result.problem in (Problem.EMPTY, Problem.TRUNCATED, Problem.MALFORMED), cut


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), flips=st.lists(st.integers(0, len(GOOD) - 1), max_size=4))
def test_garbage_and_corruption_never_raise(data: bytes, flips: list[int]) -> None:
    assert isinstance(serde.decode(data), UndecodableRecord | Decoded)
    corrupt = bytearray(GOOD)
    for i in flips:
        corrupt[i] ^= 0x5A
    assert isinstance(serde.decode(bytes(corrupt)), UndecodableRecord | Decoded)
    assert isinstance(serde.decode(MAGIC + GOOD[2:10] + data), UndecodableRecord | Decoded)


def test_problems_are_named() -> None:
    big = Serde(max_bytes=32)
    assert big.decode(GOOD).problem is Problem.OVERSIZE  # type: ignore[union-attr]
    assert serde.decode(b"").problem is Problem.EMPTY  # type: ignore[union-attr]
    assert serde.decode(b"\xc3").problem is Problem.TRUNCATED  # type: ignore[union-attr]
    assert serde.decode(b"{json}").problem is Problem.BAD_MARKER  # type: ignore[union-attr]
    unknown = MAGIC + b"\x00" * 8 + GOOD[10:]
    assert serde.decode(unknown).problem is Problem.UNKNOWN_SCHEMA  # type: ignore[union-attr]
    wrong = serde.decode(GOOD, expect={"Decision"})
    assert isinstance(wrong, UndecodableRecord) and wrong.problem is Problem.UNEXPECTED_TYPE
    assert isinstance(serde.decode(GOOD, expect={"ActionRequest"}), Decoded)


def evolved_registry(tmp_path: Path) -> SchemaRegistry:
    """The next Approval: a new field with a default and a new verdict; every earlier
    version (the packaged history and the current schema) kept in history."""
    (tmp_path / "history").mkdir()
    older = sorted((PACKAGED / "history").glob("Approval.*.avsc"))
    for path in older:
        (tmp_path / "history" / path.name).write_text(path.read_text())
    v1 = (PACKAGED / "Approval.avsc").read_text()
    (tmp_path / "history" / f"Approval.{len(older) + 1}.avsc").write_text(v1)
    v2 = json.loads(v1)
    v2["fields"].append({"name": "channel", "type": "string", "default": "web"})
    for field in v2["fields"]:
        if field["name"] == "verdict":
            field["type"]["symbols"].append("escalated")
    (tmp_path / "Approval.avsc").write_text(json.dumps(v2))
    return SchemaRegistry(tmp_path)


def test_old_records_decode_with_a_newer_schema(tmp_path: Path) -> None:
    new = Serde(evolved_registry(tmp_path))
    old_bytes = (SAMPLES_DIR / "Approval.1.bin").read_bytes()
    decoded = new.decode(old_bytes)
    assert isinstance(decoded, Decoded)
    assert decoded.value["channel"] == "web"
    assert decoded.value["verdict"] == "approved"
    written = new.encode("Approval", {**decoded.value, "verdict": "escalated"})
    assert written[2:10] != old_bytes[2:10]
    # An old reader never saw the new writer schema: a typed error, not a crash.
    assert serde.decode(written).problem is Problem.UNKNOWN_SCHEMA  # type: ignore[union-attr]


def test_registry_refuses_misnamed_or_foreign_schemas(tmp_path: Path) -> None:
    (tmp_path / "Wrong.avsc").write_text((PACKAGED / "Alert.avsc").read_text())
    with pytest.raises(SchemaError, match=r"name it Alert\.avsc"):
        SchemaRegistry(tmp_path)
    (tmp_path / "Wrong.avsc").unlink()
    (tmp_path / "X.avsc").write_text('{"type":"record","name":"X","fields":[]}')
    with pytest.raises(SchemaError, match="namespace"):
        SchemaRegistry(tmp_path)
    (tmp_path / "X.avsc").write_text("{not json")
    with pytest.raises(SchemaError):
        SchemaRegistry(tmp_path)
