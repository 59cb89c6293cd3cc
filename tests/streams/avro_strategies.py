"""Hypothesis strategies for datums of the wire contract in their Python form (what
`Serde.encode` takes), shared by the fast decoder's and the fast encoder's property tests
and the typed records' conformance test."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from ordinance.streams.values import VALUE_TYPE

text = st.text(max_size=12)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | text
    | st.decimals(allow_nan=False, allow_infinity=False, places=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
value_maps = st.dictionaries(text, values, max_size=4)
times = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


@st.composite
def decisions(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "request_id": draw(text),
        "agent_id": draw(text),
        "effect": draw(st.sampled_from(["allow", "deny", "require_approval"])),
        "rule_ids": draw(st.lists(text, max_size=3)),
        "reasons": draw(st.lists(text, max_size=3)),
        "code": draw(text),
        "detail": draw(text),
        "obligations": draw(
            st.lists(st.fixed_dictionaries({"kind": text, "params": value_maps}), max_size=2)
        ),
        "bundle_id": draw(st.none() | text),
        "policy_offset": draw(st.none() | st.integers(-(2**63), 2**63 - 1)),
        "evaluated_at": draw(times),
        "enforcer_id": draw(text),
        "action_offset": draw(st.none() | st.integers(0, 2**40)),
        "prev_hash": draw(st.none() | st.binary(max_size=32)),
        "hash": draw(st.none() | st.binary(max_size=32)),
        "tool": draw(text),
        "args": draw(value_maps),
        "event_time": draw(st.none() | times),
        "approval_ticket": draw(st.none() | text),
    }


@st.composite
def actions(draw: st.DrawFn) -> dict[str, Any]:
    resource = draw(
        st.none() | st.fixed_dictionaries({"kind": text, "id": text, "attributes": value_maps})
    )
    return {
        "request_id": draw(text),
        "agent": {
            "id": draw(text),
            "roles": draw(st.lists(text, max_size=3)),
            "attributes": draw(value_maps),
        },
        "action": {"tool": draw(text), "args": draw(value_maps)},
        "resource": resource,
        "context": draw(value_maps),
        "event_time": draw(times),
        "reply_to": draw(st.none() | text),
        "client_id": draw(text),
    }


# Beyond `values` above: floats, tuples, decimals with exponents, the 64-bit and
# one-byte bounds, strings with non-ASCII and astral characters.
BOUNDS = [0, 63, 64, -64, -65, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63)]
BOUNDS += [-(2**63) - 1]
LONGS = [n for n in BOUNDS if -(2**63) <= n < 2**63]
unicode = st.text(st.characters(codec="utf-8"), max_size=12)
wide_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from(BOUNDS)
    | unicode
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(unicode, inner, max_size=3)
    ),
    max_leaves=10,
)
offsets = st.timedeltas(dt.timedelta(hours=-23), dt.timedelta(hours=23))
aware_times = times | st.datetimes(timezones=st.just(dt.UTC) | st.builds(dt.timezone, offsets))


def datums(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Well-formed datums of a parsed schema, in the Python form ``Serde.encode`` takes;
    fields with a default may be left out."""
    if isinstance(schema, list):
        return st.one_of([datums(branch, named) for branch in schema])
    if isinstance(schema, str):
        primitive = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, -1, 2**31 - 1]),
            "long": st.integers(-(2**63), 2**63 - 1) | st.sampled_from(LONGS),
            "string": unicode | text,
            "bytes": st.binary(max_size=40),
        }.get(schema)
        return primitive if primitive is not None else datums(named[schema], named)
    if schema.get("logicalType") == "timestamp-micros":
        return aware_times
    kind = schema["type"]
    if kind in ("record", "enum"):
        named[schema["name"]] = schema
    if kind == "record" and schema["name"] == VALUE_TYPE:
        return wide_values
    if kind == "record":
        fields = {f["name"]: datums(f["type"], named) for f in schema["fields"]}
        optional = {f["name"] for f in schema["fields"] if "default" in f}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k not in optional},
            optional={k: v for k, v in fields.items() if k in optional},
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(datums(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(unicode, datums(schema["values"], named), max_size=3)
    return datums(kind, named)
