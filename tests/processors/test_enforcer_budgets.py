"""Budgets are per agent, exactly (issue 11): the attacks of the adversarial review run
through the real pipeline on both backends, each denied with its code, and `replay verify`
reproduces every decision from the log with no finding.

- one agent, two spellings (``ｂ1`` / ``b1`` / ``B1``): refused, never normalised;
- event times stepped back a day per request, or a few seconds per request;
- 6 x 9,000 EUR spread over partitions the agent chose, with no key or another's key,
  and a require_approval on a wrong partition;
- event times too far ahead of or behind the enforcer's clock;
- an undecodable action redelivered (a second consumer group re-reads every action).

One log per backend for the module: a Kafka broker and two enforcer runs cost seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ordinance.policy.decision import INVALID_REQUEST
from ordinance.processors.enforcer import Enforcer, EnforcerReport
from ordinance.processors.enforcer_state import CLOCK_SKEW, UNDECODABLE, WRONG_PARTITION
from ordinance.replay.findings import VerifyReport
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import Record, open_log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs
from ordinance.wire import request_to_wire
from tests.processors.caught_up import run_caught_up
from tests.processors.test_enforcer import EXAMPLES, T0, publish

SPECS = topic_specs()
PARTITIONS = SPECS[AGENT_ACTIONS].partitions
SKEW_S = 300.0
DAY = 24 * 3600
BUDGET = 50_000  # payments.yaml: daily-budget


def transfer(request_id: str, agent_id: str, amount: int, at: float) -> dict[str, Any]:
    request = {
        "agent": {"id": agent_id, "roles": ["billing"], "team": "finance"},
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": str(amount), "currency": "EUR", "country": "DE", "iban": "X"},
        },
    }
    return request_to_wire(
        request,
        request_id=request_id,
        event_time=dt.datetime.fromtimestamp(at, dt.UTC),
        client_id="attacker",
    )


def home(agent_id: str) -> int:
    return partition_for(agent_id.encode(), PARTITIONS)


@dataclass(frozen=True)
class Sent:
    """An action as the attacker publishes it: any key, any partition."""

    value: dict[str, Any] | bytes
    key: bytes | None
    partition: int


def keyed(datum: dict[str, Any]) -> Sent:
    """Published the way the client does: keyed by the agent id, on its partition."""
    agent_id = datum["agent"]["id"]
    return Sent(datum, agent_id.encode(), home(agent_id))


def attacks() -> list[Sent]:
    sent: list[Sent] = []
    # 1. One agent, two spellings. 5 x 9,000 as b1, then the same agent as ｂ1 and B1:
    # before, each spelling had its own window (72,000 allowed under 50,000).
    sent += [keyed(transfer(f"b1-{i}", "b1", 9000, T0 + i)) for i in range(5)]
    sent += [keyed(transfer(f"wide-{i}", "ｂ1", 9000, T0 + 10 + i)) for i in range(3)]
    sent.append(keyed(transfer("upper", "B1", 9000, T0 + 20)))
    # 2a. Back-dating by a day per request: each used to see an empty 24h window.
    sent += [keyed(transfer(f"days-{i}", "stepper", 9000, T0 - i * DAY)) for i in range(8)]
    # 2b. Back-dating by 10 s per request, inside the skew bound: a window that counted
    # only events up to "now" saw none of the later-dated ones.
    sent += [keyed(transfer(f"secs-{i}", "creeper", 9000, T0 - i * 10)) for i in range(8)]
    # 3. 6 x 9,000 spread over partitions of the agent's choosing, no key, another's key.
    p = home("splitter")
    split = [
        Sent(transfer("split-0", "splitter", 9000, T0), b"splitter", p),  # the one right one
        *(
            Sent(transfer(f"split-{n}", "splitter", 9000, T0 + n), b"splitter", (p + n) % 4)
            for n in (1, 2, 3)
        ),
        Sent(transfer("split-4", "splitter", 9000, T0 + 4), None, p),
        Sent(transfer("split-5", "splitter", 9000, T0 + 5), b"b1", p),
        # A require_approval on a wrong partition: no follow-up could ever answer it.
        Sent(transfer("split-big", "splitter", 20000, T0 + 6), b"splitter", (p + 1) % 4),
    ]
    sent += split
    # ... and the budget on the right partition counts only the one allowed there.
    sent += [keyed(transfer(f"split-home-{i}", "splitter", 9000, T0 + 10 + i)) for i in range(5)]
    # 4. Clock skew, both ways, and just inside the bound.
    sent += [
        keyed(transfer("ahead-day", "skewed", 10, T0 + DAY)),
        keyed(transfer("behind-day", "skewed", 10, T0 - DAY)),
        keyed(transfer("ahead-301", "skewed", 10, T0 + SKEW_S + 1)),
        keyed(transfer("behind-301", "skewed", 10, T0 - SKEW_S - 1)),
        keyed(transfer("ahead-299", "skewed", 10, T0 + SKEW_S - 1)),
        keyed(transfer("behind-299", "skewed", 10, T0 - SKEW_S + 1)),
    ]
    # 5. An undecodable action (decided once, however often it is delivered).
    sent.append(Sent(b"\xc3\x01not avro", b"garbage", home("garbage")))
    return sent


def produce(url: str, sent: list[Sent]) -> None:
    serde = Serde()
    with open_log(url) as log:
        ensure_topics(log)
        log.produce(
            SPECS[AGENT_ACTIONS].name,
            [
                Record(
                    s.key,
                    s.value
                    if isinstance(s.value, bytes)
                    else serde.encode("ActionRequest", s.value),
                    (),
                    int(T0 * 1000),
                    s.partition,
                )
                for s in sent
            ],
        )


def enforce(url: str, group: str) -> EnforcerReport:
    with open_log(url) as log:
        return run_caught_up(Enforcer(log, group=group, clock=lambda: T0, max_clock_skew_s=SKEW_S))


@dataclass(frozen=True)
class Outcome:
    decisions: list[tuple[int, dict[str, Any]]]  # (partition, datum), every Decision
    first: EnforcerReport
    again: EnforcerReport  # a second consumer group: every action delivered once more
    replay: VerifyReport

    def by_id(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for _, d in self.decisions:
            assert d["request_id"] not in out, f"two decisions for {d['request_id']}"
            out[d["request_id"]] = d
        return out

    def codes(self, prefix: str) -> list[tuple[str, str]]:
        return [
            (d["effect"], d["code"])
            for rid, d in sorted(self.by_id().items(), key=lambda kv: _order(kv[0]))
            if rid.startswith(prefix)
        ]

    def allowed_total(self, agent_ids: set[str]) -> int:
        return sum(
            int(d["args"]["amount"])
            for _, d in self.decisions
            if d["effect"] == "allow" and d["agent_id"] in agent_ids
        )


def _order(request_id: str) -> tuple[str, int]:
    stem, _, n = request_id.rpartition("-")
    return (stem, int(n)) if n.isdigit() else (request_id, -1)


def _decisions(url: str) -> list[tuple[int, dict[str, Any]]]:
    serde = Serde()
    with open_log(url) as log:
        out = []
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            if isinstance(decoded, Decoded) and decoded.name == "Decision":
                out.append((record.partition, decoded.value))
    return out


@pytest.fixture(scope="module", params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    def run(url: str) -> Outcome:
        with open_log(url) as log:
            ensure_topics(log)
        publish(url, EXAMPLES)
        produce(url, attacks())
        first = enforce(url, "ordinance.enforcer")
        again = enforce(url, "ordinance.enforcer-redelivery")
        source, opened = open_source(url, None)
        assert opened is not None
        with opened:
            report = verify(source)
        return Outcome(_decisions(url), first, again, report)

    if request.param == "sqlite":
        yield run(f"sqlite:///{tmp_path_factory.mktemp('budgets') / 'log.db'}")
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield run(broker.url)


def test_an_agent_id_with_another_spelling_is_refused_not_normalised(outcome: Outcome) -> None:
    assert outcome.codes("b1-") == [("allow", "matched")] * 5
    refused = outcome.codes("wide-") + outcome.codes("upper")
    assert refused == [("deny", INVALID_REQUEST)] * 4
    assert "not in canonical form" in outcome.by_id()["wide-0"]["detail"]
    assert outcome.allowed_total({"b1", "ｂ1", "B1"}) == 45_000 <= BUDGET


def test_back_dated_event_times_get_no_second_budget(outcome: Outcome) -> None:
    # A day back per request: only the first is within the skew bound.
    assert outcome.codes("days-") == [("allow", "matched")] + [("deny", CLOCK_SKEW)] * 7
    # Seconds back per request: inside the bound, and the window still sees the later-dated
    # ones, so the budget holds at 5 x 9,000.
    creeper = outcome.codes("secs-")
    assert creeper[:5] == [("allow", "matched")] * 5
    assert creeper[5:] == [("deny", "matched")] * 3
    assert {outcome.by_id()[f"secs-{i}"]["rule_ids"][0] for i in (5, 6, 7)} == {
        "payments-guardrails/daily-budget"
    }
    assert outcome.allowed_total({"creeper"}) <= BUDGET


def test_actions_off_their_agents_partition_or_key_are_denied(outcome: Outcome) -> None:
    by_id = outcome.by_id()
    p = home("splitter")
    assert by_id["split-0"]["effect"] == "allow"
    for n in range(1, 6):
        d = by_id[f"split-{n}"]
        assert (d["effect"], d["code"]) == ("deny", WRONG_PARTITION), d
    assert "no key" in by_id["split-4"]["detail"]
    assert "not by its agent id" in by_id["split-5"]["detail"]
    assert f"belongs on partition {p}" in by_id["split-1"]["detail"]
    # Denied up front: no require_approval that no follow-up could answer.
    big = by_id["split-big"]
    assert (big["effect"], big["code"], big["approval_ticket"]) == ("deny", WRONG_PARTITION, None)
    # Every decision sits on the partition its action was published to (one chain per
    # partition), and the only allowed ones are on the agent's own partition.
    allowed = [(part, d) for part, d in outcome.decisions if d["agent_id"] == "splitter"]
    assert {part for part, d in allowed if d["effect"] == "allow"} == {p}
    # The budget on the home partition counts the 9,000 allowed there: 4 more, then deny.
    assert outcome.codes("split-home-") == [("allow", "matched")] * 4 + [("deny", "matched")]
    assert outcome.allowed_total({"splitter"}) == 45_000 <= BUDGET


def test_event_times_beyond_the_skew_bound_are_denied(outcome: Outcome) -> None:
    by_id = outcome.by_id()
    for request_id in ("ahead-day", "behind-day", "ahead-301", "behind-301"):
        assert (by_id[request_id]["effect"], by_id[request_id]["code"]) == ("deny", CLOCK_SKEW)
    assert "ahead of" in by_id["ahead-301"]["detail"]
    assert "behind" in by_id["behind-301"]["detail"]
    for request_id in ("ahead-299", "behind-299"):
        assert by_id[request_id]["effect"] == "allow"


def test_a_redelivered_undecodable_action_is_decided_once(outcome: Outcome) -> None:
    undecodable = [d for _, d in outcome.decisions if d["code"] == UNDECODABLE]
    assert len(undecodable) == 1
    assert undecodable[0]["request_id"].startswith(f"{UNDECODABLE}@{home('garbage')}:")
    # The second group was handed every action again and decided none of them.
    sent = len(attacks())
    assert outcome.first.decided == sent
    assert (outcome.again.decided, outcome.again.duplicates) == (0, sent)


def test_replay_verify_reproduces_every_decision(outcome: Outcome) -> None:
    report = outcome.replay
    assert report.ok, [f.to_json() for f in report.findings]
    assert report.findings == []
    assert report.decisions == len(outcome.decisions) == len(attacks())
    assert sum(c.agreed for c in report.partitions.values()) == report.decisions
