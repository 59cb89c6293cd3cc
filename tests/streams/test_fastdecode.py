"""Serde's generated fast path gives exactly what its fastavro path gives: on random datums,
and on the same bytes truncated or with a byte changed (where the slow path decides).
Neither accepts a negative enum or union index (fastavro alone would read one from the
end of the list)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

from avro_strategies import actions, decisions
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.streams import ConsumedRecord
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord

SLOW, FAST = Serde(fast=False), Serde()


def _comparable(result: Decoded | UndecodableRecord) -> object:
    # fastavro's messages can name a BytesIO object by address: not part of the answer.
    if isinstance(result, UndecodableRecord):
        return replace(result, detail=re.sub(r"0x[0-9a-f]+", "0x…", result.detail))
    return result


def _same(raw: bytes, expect: set[str] | None = None) -> None:
    assert _comparable(FAST.decode(raw, expect)) == _comparable(SLOW.decode(raw, expect))
    record = ConsumedRecord("t", 1, 7, b"k", raw, (), 0)
    assert _comparable(FAST.decode_record(record, expect)) == _comparable(
        SLOW.decode_record(record, expect)
    )


@settings(max_examples=300, deadline=None)
@given(
    datum=st.one_of(
        decisions().map(lambda d: ("Decision", d)), actions().map(lambda d: ("ActionRequest", d))
    ),
    cut=st.integers(0, 400),
    flip=st.tuples(st.integers(0, 400), st.integers(0, 255)),
)
def test_fast_decoding_equals_the_serde(
    datum: tuple[str, dict[str, Any]], cut: int, flip: tuple[int, int]
) -> None:
    name, value = datum
    raw = SLOW.encode(name, value)
    decoded = FAST.decode(raw)
    assert decoded == SLOW.decode(raw)
    _same(raw)
    assert decoded.name == name  # type: ignore[union-attr]
    _same(raw, {"Decision"})  # an unexpected type is the slow path's answer
    _same(raw[: min(cut, len(raw))])
    _same(raw + b"\x00")
    at, byte = flip
    changed = bytearray(raw)
    changed[at % len(raw)] = byte
    _same(bytes(changed))


def test_values_come_out_as_plain_python_values() -> None:
    datum = {
        "request_id": "r",
        "agent": {"id": "a", "roles": ["x"], "attributes": {"n": 2**70, "d": Decimal("1.50")}},
        "action": {"tool": "t", "args": {"l": [1, "two", None, True, {"k": Decimal("-3")}]}},
        "resource": None,
        "context": {},
        "event_time": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "reply_to": None,
        "client_id": "c",
    }
    decoded = FAST.decode(SLOW.encode("ActionRequest", datum))
    assert decoded.value == datum  # type: ignore[union-attr]
    assert decoded.value["agent"]["attributes"]["n"] == 2**70  # type: ignore[union-attr]


def _with_effect_index(raw: bytes, index_byte: int) -> bytes:
    """A Decision whose effect enum index (the varint after the two leading strings) is
    replaced by ``index_byte`` (zig-zag: 0x05 is -3, which fastavro would read as allow)."""
    pos = 10  # after the single-object header
    for _ in range(2):  # request_id, agent_id
        n = raw[pos]
        assert n < 0x80
        pos += 1 + (n >> 1)
    return raw[:pos] + bytes([index_byte]) + raw[pos + 1 :]


def _decision(**fields: Any) -> bytes:
    """A small Decision, encoded; ``fields`` override its defaults."""
    datum = {
        "request_id": "r1",
        "agent_id": "a1",
        "effect": "deny",
        "rule_ids": [],
        "reasons": [],
        "code": "",
        "detail": "",
        "obligations": [],
        "bundle_id": None,
        "policy_offset": None,
        "evaluated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "enforcer_id": "e",
        "action_offset": None,
        "prev_hash": None,
        "hash": None,
        "tool": "",
        "args": {},
        "event_time": None,
        "approval_ticket": None,
        **fields,
    }
    return FAST.encode("Decision", datum)


def test_a_negative_enum_index_is_refused_on_both_paths() -> None:
    raw = _decision()
    assert _with_effect_index(raw, 0x02) == raw  # index 1 is deny: the splice is right
    for serde in (SLOW, FAST):
        decoded = serde.decode(_with_effect_index(raw, 0x00))
        assert isinstance(decoded, Decoded) and decoded.value["effect"] == "allow"
        refused = serde.decode(_with_effect_index(raw, 0x05))  # -3
        assert isinstance(refused, UndecodableRecord), refused
        assert "canonical" in refused.detail


def test_valid_but_non_canonical_encodings_are_refused_on_both_paths() -> None:
    """Two blocks where fastavro writes one, an overlong varint: valid Avro another writer
    might produce, refused alike by both paths (only fastavro's own bytes decode)."""
    raw = _decision(rule_ids=["a", "b"], policy_offset=1)
    one_block = b"\x04\x02a\x02b\x00"
    assert raw.count(one_block) == 1
    two_blocks = raw.replace(one_block, b"\x02\x02a\x02\x02b\x00")
    overlong = raw.replace(b"\x00\x02\x02", b"\x00\x02\x82\x00", 1)  # policy_offset 1 as 2 bytes
    for altered in (two_blocks, overlong):
        assert altered != raw
        for serde in (SLOW, FAST):
            assert isinstance(serde.decode(altered), UndecodableRecord)


def test_a_varint_with_bits_past_the_64th_is_the_slow_paths_answer() -> None:
    # fastavro drops the extra bits (2**63 reads back as 0); the serde then refuses the body.
    raw = _decision(policy_offset=2**62)
    zigzag = b"\x80" * 9 + b"\x01"  # 2**62 as written: nine continuation bytes, then 1
    assert raw.count(zigzag) == 1
    widened = raw.replace(zigzag, b"\x80" * 9 + b"\x02")
    _same(widened)
    assert isinstance(FAST.decode(widened), UndecodableRecord)


def test_a_map_key_written_twice_is_refused_on_both_paths() -> None:
    """A dict keeps the second value of a duplicated key; fastavro never writes one, so the
    serde refuses the body — the fast path must not read it as the last value."""
    raw = _decision(
        args={"a": "x", "b": "y"}, obligations=[{"kind": "k", "params": {"a": 1, "b": 2}}]
    )
    for original, duplicated in (
        (b"\x02b\x06\x02y", b"\x02a\x06\x02y"),
        (b"\x02b\x04", b"\x02a\x04"),
    ):
        assert raw.count(original) == 1
        altered = raw.replace(original, duplicated)
        _same(altered)
        assert isinstance(FAST.decode(altered), UndecodableRecord)
