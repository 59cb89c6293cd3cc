"""Hypothesis strategies for datums of the wire contract in their Python form (what
`Serde.encode` takes), shared by the fast decoder's and the fast encoder's property tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

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
