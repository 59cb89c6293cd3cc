"""Serde's generated encoders write exactly what fastavro writes, or do not answer.

Well-formed datums of every current schema (generated from the schema itself, plus the
hand-written Decision and ActionRequest strategies) must be answered by the fast path, with
fastavro's bytes. Malformed ones (a field replaced by a value of another type, deleted, or a
container of another type) either get fastavro's bytes too or no fast answer at all, and
`Serde.encode` then answers exactly as its fastavro path does, error message included."""

from __future__ import annotations

import copy
import datetime as dt
import io
import math
from collections import OrderedDict
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import fastavro
import pytest
from avro_strategies import BOUNDS, actions, datums, decisions, text, times
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.streams import serde as serde_module
from ordinance.streams.errors import SchemaError
from ordinance.streams.fastencode import Encoder, Unsure, build_encoder
from ordinance.streams.serde import MAGIC, SchemaRegistry, Serde

SLOW, FAST = Serde(fast=False), Serde()
REGISTRY = SchemaRegistry()
NAMES = REGISTRY.names
ENCODERS: dict[str, Encoder] = {
    name: build_encoder(REGISTRY.current(name).parsed) for name in NAMES
}  # Unsupported here fails the module: every current schema has a fast path
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def fastavro_body(name: str, datum: Any) -> bytes:
    """The reference: fastavro's bytes for the datum after the Value conversion."""
    schema = REGISTRY.current(name)
    wire = schema.to_avro(datum) if schema.to_avro is not None else datum
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema.parsed, wire)
    return out.getvalue()


ANY_DATUM = st.one_of(
    *(datums(REGISTRY.current(n).parsed, {}).map(lambda d, n=n: (n, d)) for n in NAMES),
    decisions().map(lambda d: ("Decision", d)),
    actions().map(lambda d: ("ActionRequest", d)),
)


@settings(max_examples=400)
@given(datum=ANY_DATUM)
def test_the_fast_path_answers_every_well_formed_datum_with_fastavros_bytes(
    datum: tuple[str, Any],
) -> None:
    name, value = datum
    assert ENCODERS[name](value) == fastavro_body(name, value)  # answers, and exactly
    assert FAST.encode(name, value) == SLOW.encode(name, value)


@pytest.mark.parametrize("name", NAMES)
def test_every_current_schema_is_covered(name: str) -> None:
    @settings(max_examples=25)
    @given(datums(REGISTRY.current(name).parsed, {}))
    def check(value: Any) -> None:
        assert ENCODERS[name](value) == fastavro_body(name, value)

    check()


class Text(str):
    pass


class Number(int):
    pass


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(BOUNDS),
    st.floats(),  # NaN and infinities too
    st.decimals(),
    st.just(Decimal("NaN")),
    text,
    st.just("\ud800"),  # no UTF-8 form
    st.binary(max_size=4),
    st.just(bytearray(b"ab")),
    st.just(Text("allow")),
    st.just(Number(1)),
    st.datetimes(),  # naive: fastavro goes through the local time zone
    times,
    st.dates(),
    st.lists(text, max_size=2),
    st.lists(text, max_size=2).map(tuple),
    st.just({1: "one"}),
    st.just({"k": object()}),
    st.just({"-type": "other", "kind": "k", "id": "i"}),
    st.just(OrderedDict(a=1)),
)


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, dict | list):
        out.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, out)
    return out


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, Any]:
    """A well-formed datum with one thing changed: a value replaced by another type, a
    key deleted or a "-type" key added, or a container swapped for another type."""
    name, value = draw(ANY_DATUM)
    value = copy.deepcopy(value)
    container = draw(st.sampled_from(_containers(value, [])))
    keys = list(container) if isinstance(container, dict) else list(range(len(container)))
    change = draw(st.sampled_from(["replace", "delete", "-type", "swap"]))
    if change == "replace" and keys:
        container[draw(st.sampled_from(keys))] = draw(odd_values)
    elif change == "delete" and keys:
        del container[draw(st.sampled_from(keys))]
    elif change == "-type" and isinstance(container, dict):
        container["-type"] = draw(st.sampled_from(["other", "ordinance.v1.Resource"]))
    elif keys:
        key = draw(st.sampled_from(keys))
        inner = container[key]
        if isinstance(inner, dict):
            swap = draw(st.sampled_from([OrderedDict, MappingProxyType]))
            container[key] = swap(inner)
        elif isinstance(inner, list):
            container[key] = tuple(inner)
    return name, value


def _outcome(serde: Serde, name: str, value: Any) -> object:
    try:
        return serde.encode(name, value)
    except Exception as exc:
        return type(exc), str(exc)


@settings(max_examples=400)
@given(datum=malformed())
def test_a_malformed_datum_gets_fastavros_bytes_or_no_fast_answer(
    datum: tuple[str, Any],
) -> None:
    name, value = datum
    expected = _outcome(SLOW, name, value)
    try:
        fast = ENCODERS[name](value)
    except Exception:
        pass  # no answer: the serde takes its fastavro path
    else:
        assert isinstance(expected, bytes), f"the fast path answered, fastavro: {expected}"
        assert MAGIC + REGISTRY.current(name).fingerprint + fast == expected
    assert _outcome(FAST, name, value) == expected


def _decision(**fields: Any) -> dict[str, Any]:
    datum: dict[str, Any] = {
        "request_id": "r1",
        "agent_id": "a1",
        "effect": "deny",
        "evaluated_at": T0,
        "enforcer_id": "e",
    }
    return {**datum, **fields}


def _body(datum: dict[str, Any], name: str = "Decision") -> bytes:
    """The fast body, after checking it is fastavro's."""
    fast = ENCODERS[name](datum)
    assert fast == fastavro_body(name, datum)
    assert FAST.encode(name, datum) == SLOW.encode(name, datum)
    return fast


def _not_answered(datum: dict[str, Any], name: str = "Decision") -> None:
    with pytest.raises(Exception):  # noqa: B017 - any exception means no answer
        ENCODERS[name](datum)
    assert _outcome(FAST, name, datum) == _outcome(SLOW, name, datum)


def test_booleans_are_not_integers() -> None:
    # Value union: boolean is branch 1 (byte 02), long branch 2 (byte 04).
    body = _body(_decision(args={"t": True, "f": False, "one": 1, "zero": 0}))
    assert b"\x02t\x02\x01\x02f\x02\x00\x06one\x04\x02\x08zero\x04\x00" in body
    _not_answered(_decision(policy_offset=True))  # fastavro: no branch of [null, long]
    _not_answered(_decision(effect=True))
    _not_answered(_decision(prev_hash=True))


def test_the_64_bit_bounds() -> None:
    for n in (2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**70, -(2**70)):
        _body(_decision(args={"n": n}))  # outside 64 bits: an exact decimal
    assert b"\x08\x269223372036854775808" in _body(_decision(args={"n": 2**63}))
    _body(_decision(policy_offset=2**63 - 1, action_offset=-(2**63)))
    _not_answered(_decision(policy_offset=2**63))
    with pytest.raises(SchemaError, match="does not fit Decision"):
        FAST.encode("Decision", _decision(policy_offset=2**63))


def test_int_fields_are_answered_in_32_bits_only() -> None:
    swap = {"enforcer_id": "e", "partition": 2**31 - 1, "bundle_id": "b", "policy_offset": 1}
    swap["at"] = T0
    _body(swap, "RulesetSwap")
    _not_answered({**swap, "partition": 2**31}, "RulesetSwap")  # fastavro writes it anyway
    change = {"bundle_id": "b", "event": "canary", "actor": "a", "at": T0}
    _body({**change, "canary_percent": 50}, "PolicyChange")
    _not_answered({**change, "canary_percent": 2**31}, "PolicyChange")  # no branch fits


def test_decimals_and_floats_are_exact_decimal_text() -> None:
    numbers = [Decimal("1.50"), Decimal("-0"), Decimal("1E+3"), Decimal("-12.5e-30")]
    numbers += [0.1, -0.0, 1e300, 5e-324, 2.5]
    body = _body(_decision(args={"x": numbers}))
    assert b"\x08\x081.50" in body and b"\x08\x060.1" in body and b"\x08\x08-0.0" in body
    for bad in (math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("-Infinity")):
        _not_answered(_decision(args={"x": bad}))
        with pytest.raises(SchemaError, match="no exact decimal form"):
            FAST.encode("Decision", _decision(args={"x": bad}))


def test_nested_values_and_empty_containers() -> None:
    nested = {"l": [1, (2, None), [], (), {}, {"d": {"e": [True, "s", Decimal(1)]}}]}
    _body(_decision(args=nested, obligations=[{"kind": "k", "params": nested}]))
    body = _body(_decision(rule_ids=[], reasons=[], obligations=[], args={}))
    assert _body(_decision()) == body  # missing fields take their defaults
    empty = _body(_decision(args={"e": [], "t": (), "m": {}}))
    assert b"\x06\x02e\x0a\x00\x02t\x0a\x00\x02m\x0c\x00\x00" in empty  # one block, then 0


def _nested(depth: int, kind: type) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind is list else {"k": value}
    return value


@pytest.mark.parametrize("kind", [list, dict])
def test_deeply_nested_values_are_left_to_the_fastavro_path(kind: type) -> None:
    _body(_decision(args={"x": _nested(99, kind)}))
    _not_answered(_decision(args={"x": _nested(101, kind)}))
    # values.to_wire runs out of Python frames near 500 levels of lists, where the fast
    # path alone would have answered: the answer (bytes or RecursionError) stays its own.
    for depth in (600, 1200):
        datum = _decision(args={"x": _nested(depth, kind)})
        assert _outcome(FAST, "Decision", datum) == _outcome(SLOW, "Decision", datum)


def test_unicode_and_long_strings_and_big_collections() -> None:
    names = ["é", "日本語", "🙂", "a" * 2000, ""]
    _body(_decision(reasons=names, detail="ü" * 700, args={n: n for n in names}))
    _body(_decision(rule_ids=[str(i) for i in range(1100)], args={str(i): i for i in range(1100)}))
    _not_answered(_decision(detail="\ud800"))
    _not_answered(_decision(args={"\ud800": 1}))


def test_timestamps() -> None:
    plus = dt.timezone(dt.timedelta(hours=5, minutes=30))
    for at in (T0, T0.astimezone(plus), dt.datetime.min.replace(tzinfo=dt.UTC)):
        _body(_decision(evaluated_at=at, event_time=at))
    _body(_decision(evaluated_at=dt.datetime.max.replace(tzinfo=dt.UTC)))
    assert _body(_decision(evaluated_at=T0)) == _body(_decision(evaluated_at=T0.astimezone(plus)))
    _body(_decision(evaluated_at=1_700_000_000_000_000))  # an int is written as it is
    # Naive: fastavro converts through the local time zone (mktime); the fast path does not.
    _not_answered(_decision(evaluated_at=T0.replace(tzinfo=None)))
    _not_answered(_decision(event_time=T0.replace(tzinfo=None)))
    _not_answered(_decision(evaluated_at=dt.date(2026, 1, 1)))


@pytest.mark.parametrize(
    ("datum", "name"),
    [
        ({"request_id": "r"}, "Decision"),  # required fields missing
        (_decision(effect="maybe"), "Decision"),
        (_decision(code=None), "Decision"),
        (_decision(args={1: "x"}), "Decision"),  # to_wire's own SchemaError
        (_decision(args={"x": object()}), "Decision"),
        (_decision(rule_ids=["a", 1]), "Decision"),
        (_decision(obligations=[{"params": {}}]), "Decision"),
        (
            {
                "request_id": "r",
                "agent": {"id": "a"},
                "action": {"tool": "t"},
                "resource": {"kind": "k", "id": "i", "-type": "other"},
                "event_time": T0,
                "client_id": "c",
            },
            "ActionRequest",
        ),
    ],
)
def test_invalid_datums_raise_the_same_error(datum: dict[str, Any], name: str) -> None:
    slow = _outcome(SLOW, name, datum)
    assert isinstance(slow, tuple), "the fastavro path accepts it: not an invalid datum"
    _not_answered(datum, name)
    assert _outcome(FAST, name, datum) == slow


def test_what_fastavro_accepts_but_the_fast_path_does_not_know_takes_the_fastavro_path() -> None:
    for datum in (
        _decision(rule_ids=("a",)),  # fastavro takes a tuple for an array
        _decision(prev_hash=bytearray(b"h")),
        _decision(code=Text("matched")),
        OrderedDict(_decision()),
    ):
        _not_answered(datum)
        assert isinstance(SLOW.encode("Decision", datum), bytes)


def test_serde_encode_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the fastavro path was taken")

    datum = _decision(args={"a": [1, "b"]})
    expected = SLOW.encode("Decision", datum)
    monkeypatch.setattr(serde_module.fastavro, "schemaless_writer", broken)
    assert FAST.encode("Decision", datum) == expected
    assert FAST.encode("ordinance.v1.Decision", datum) == expected
    with pytest.raises(AssertionError):
        FAST.encode("Decision", _decision(evaluated_at=T0.replace(tzinfo=None)))  # naive: no answer
    with pytest.raises(AssertionError):
        SLOW.encode("Decision", datum)


def test_unsure_is_what_a_type_mismatch_raises() -> None:
    with pytest.raises(Unsure):
        ENCODERS["Decision"](_decision(request_id=b"r"))
