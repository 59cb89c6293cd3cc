"""Replay compares wire forms: a decision that went through the log compares equal to the
datum it was encoded from, whatever Python types that datum held (tuples, big ints,
decimals), and values that encode differently never compare equal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ordinance.replay.findings import compare
from ordinance.streams.serde import Decoded, Serde
from tests.streams.avro_strategies import decisions

_SERDE = Serde()


def _as_recomputed(value: Any) -> Any:
    """The shapes the enforcer's own datum holds before encoding: tuples for lists."""
    if isinstance(value, list):
        return tuple(_as_recomputed(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_recomputed(v) for k, v in value.items()}
    return value


def _round_trip(datum: dict[str, Any]) -> dict[str, Any]:
    decoded = _SERDE.decode(_SERDE.encode("Decision", datum))
    assert isinstance(decoded, Decoded)
    return decoded.value


@given(decisions())
def test_a_recorded_decision_compares_equal_to_what_it_was_encoded_from(
    datum: dict[str, Any],
) -> None:
    recomputed = {k: _as_recomputed(v) for k, v in datum.items()}
    assert compare(_round_trip(datum), recomputed) == {}


@given(decisions(), st.sampled_from(["args", "rule_ids", "reasons", "effect", "code"]))
def test_a_changed_field_is_found(datum: dict[str, Any], name: str) -> None:
    recorded = _round_trip(datum)
    changed = dict(datum)
    changed[name] = {
        "args": {**datum["args"], "\x00extra": [1]},
        "rule_ids": [*datum["rule_ids"], "\x00extra"],
        "reasons": [*datum["reasons"], "\x00extra"],
        "effect": "deny" if datum["effect"] != "deny" else "allow",
        "code": datum["code"] + "\x00",
    }[name]
    assert set(compare(recorded, changed)) == {name}


def test_numbers_that_python_calls_equal_but_encode_differently_are_different() -> None:
    base = _round_trip(
        {
            "request_id": "r1",
            "agent_id": "a1",
            "effect": "allow",
            "rule_ids": ["p/r"],
            "reasons": [],
            "code": "",
            "detail": "",
            "obligations": [],
            "bundle_id": "sha256:00",
            "policy_offset": 1,
            "evaluated_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            "enforcer_id": "e",
            "action_offset": 0,
            "prev_hash": None,
            "hash": None,
            "tool": "t",
            "args": {"n": Decimal("1.0"), "flag": True, "big": 5},
            "event_time": None,
            "approval_ticket": None,
        }
    )
    for args in (
        {"n": Decimal("1.00"), "flag": True, "big": 5},
        {"n": Decimal("1.0"), "flag": 1, "big": 5},
        {"n": Decimal("1.0"), "flag": True, "big": Decimal(5)},
    ):
        assert set(compare(base, {**base, "args": args})) == {"args"}, args
