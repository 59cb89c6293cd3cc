"""The enforcer's checks before any policy runs, as deterministic functions of the record
and the folded state (`enforcer_state.decide`): one canonical agent id, the agent's own
key and partition, the skew bound, undecodable actions decided once per position."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.decision import INVALID_REQUEST
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import AgentWindows, InMemoryWindows
from ordinance.processors.enforcer_state import (
    CLOCK_SKEW,
    UNDECODABLE,
    WRONG_PARTITION,
    PartitionState,
    decide,
)
from ordinance.streams import ConsumedRecord, partition_for
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord
from ordinance.wire import MAX_AGENT_ID_BYTES, agent_id_problem, request_to_wire
from tests.processors.test_enforcer import EXAMPLES

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PARTITIONS = 4


@pytest.mark.parametrize(
    "agent_id", ["b1", "billing-bot-7", "agent.one_2", "é", "agent é", "代理-1"]
)
def test_canonical_agent_ids_are_accepted(agent_id: str) -> None:
    assert agent_id_problem(agent_id) is None


@pytest.mark.parametrize(
    "agent_id",
    [
        "ｂ1",  # fullwidth: NFKC makes it b1
        "B1",  # case
        "Billing-Bot",
        "straße",  # case folding makes it strasse
        " b1",
        "b1 ",
        "b1\u00a0",  # NBSP: NFKC makes it a space, then trimmed
        "e\u0301",  # decomposed: NFKC composes it
        "ﬁle",  # ligature
        "",
        "b\x001",
        "b\t1",
        "b\u200b1",  # zero-width space (Cf)
        "b\u202e1",  # right-to-left override (Cf)
        "b\u20281",  # line separator
        "\ud800",  # lone surrogate
        "a" * (MAX_AGENT_ID_BYTES + 1),
        "é" * (MAX_AGENT_ID_BYTES // 2 + 1),  # short in code points, long in bytes
        "\u0301" * 100_000,  # refused by size before NFKC runs on it
    ],
)
def test_other_spellings_are_refused_not_repaired(agent_id: str) -> None:
    assert agent_id_problem(agent_id) is not None


def test_a_non_string_agent_id_is_refused() -> None:
    assert agent_id_problem(7) == "agent.id must be a string, not int"


# -- decide -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return compile_bundle(read_bundle_dir(EXAMPLES))


def _state(partition: int, ruleset: Ruleset, *, skew_ms: int | None = 300_000) -> PartitionState:
    state = PartitionState(partition)
    state.fold(
        "EnforcerTakeover",
        {"nonce": "n", "agent_partitions": PARTITIONS, "max_clock_skew_ms": skew_ms},
        0,
    )
    state.fold("RulesetSwap", {"bundle_id": ruleset.bundle_id, "policy_offset": 1}, 1)
    return state


_SERDE = Serde()  # built once: a Serde compiles every schema (milliseconds)


def _action(request_id: str, agent_id: str, at: dt.datetime, amount: int = 9000) -> Decoded:
    request = {
        "agent": {"id": agent_id, "roles": ["billing"], "team": "finance"},
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": amount, "currency": "EUR", "country": "DE", "iban": "X"},
        },
    }
    wire = request_to_wire(request, request_id=request_id, event_time=at, client_id="t")
    decoded = _SERDE.decode(_SERDE.encode("ActionRequest", wire))
    assert isinstance(decoded, Decoded)
    return decoded


def _decide(
    state: PartitionState,
    ruleset: Ruleset,
    action: Decoded | UndecodableRecord,
    *,
    key: bytes | None,
    offset: int = 0,
    now: dt.datetime = T0,
) -> dict[str, Any] | None:
    datum = decide(
        state,
        ruleset,
        action,
        action_offset=offset,
        agent_key=key,
        enforcer_id="e",
        evaluated_at=now,
    )
    if datum is not None:
        state.fold("Decision", datum, state.offset + 1)
    return datum


def _home(agent_id: str) -> int:
    return partition_for(agent_id.encode(), PARTITIONS)


def test_the_skew_bound_is_inclusive_and_both_ways(ruleset: Ruleset) -> None:
    state = _state(_home("b1"), ruleset)
    bound = dt.timedelta(minutes=5)
    cases = {
        "at-plus": (T0 + bound, "allow"),
        "at-minus": (T0 - bound, "allow"),
        "past-plus": (T0 + bound + dt.timedelta(microseconds=1), CLOCK_SKEW),
        "past-minus": (T0 - bound - dt.timedelta(microseconds=1), CLOCK_SKEW),
    }
    for request_id, (at, expected) in cases.items():
        d = _decide(state, ruleset, _action(request_id, "b1", at, amount=10), key=b"b1")
        assert d is not None
        assert (d["effect"] if expected == "allow" else d["code"]) == expected, request_id


def test_checks_apply_in_order_and_only_under_a_takeover_that_names_them(
    ruleset: Ruleset,
) -> None:
    wrong = (_home("b1") + 1) % PARTITIONS
    far = T0 + dt.timedelta(days=1)
    state = _state(wrong, ruleset)
    # The id is judged first, then placement, then time.
    invalid = _decide(state, ruleset, _action("a", "B1", far), key=b"B1")
    misplaced = _decide(state, ruleset, _action("b", "b1", far), key=b"b1")
    assert invalid is not None and invalid["code"] == INVALID_REQUEST
    assert misplaced is not None and misplaced["code"] == WRONG_PARTITION
    # A takeover record written before the checks existed (no fields): none but the id's.
    state.fold("EnforcerTakeover", {"nonce": "old"}, state.offset + 1)
    assert (state.agent_partitions, state.max_clock_skew_ms) == (None, None)
    d = _decide(state, ruleset, _action("c", "b1", far), key=None)
    assert d is not None and d["effect"] == "allow"


def test_budgets_are_read_and_kept_under_the_decisions_agent_id(ruleset: Ruleset) -> None:
    state = _state(_home("b1"), ruleset)
    effects = []
    for n in range(7):
        d = _decide(state, ruleset, _action(f"r{n}", "b1", T0), key=b"b1")
        assert d is not None
        effects.append(d["effect"])
    assert effects == ["allow"] * 5 + ["deny"] * 2
    assert state.windows.sum("b1", "payments.transfer", "amount", 86400) == Decimal(45000)


def test_a_redelivered_undecodable_action_is_not_decided_again(ruleset: Ruleset) -> None:
    state = _state(0, ruleset)
    record = ConsumedRecord("agent.actions", 0, 17, b"x", b"\xc3\x01junk", (), 0)
    undecodable = Serde().decode_record(record, expect={"ActionRequest"})
    assert isinstance(undecodable, UndecodableRecord)
    first = _decide(state, ruleset, undecodable, key=b"x", offset=17)
    assert first is not None and first["request_id"] == f"{UNDECODABLE}@0:17"
    assert _decide(state, ruleset, undecodable, key=b"x", offset=17) is None
    # Another position is another record.
    assert _decide(state, ruleset, undecodable, key=b"x", offset=18) is not None


def test_agent_windows_answer_only_for_their_agent() -> None:
    windows = InMemoryWindows(clock=lambda: 100.0)
    windows.record("b1", "t", {"amount": 5}, 99.0)
    view = AgentWindows(windows, "b1")
    assert (view.count("b1", "t", 60), view.sum("b1", "t", "amount", 60)) == (1, 5)
    with pytest.raises(ValueError, match="recorded for 'b1'"):
        view.sum("ｂ1", "t", "amount", 60)
