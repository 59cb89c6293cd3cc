"""The demo's trip through the log: agents publish ActionRequests (Avro) to
``agent.actions``, a decide loop consumes them as a consumer group, evaluates, and writes
each Decision to ``agent.decisions`` (same partition as its action) while committing its
input offset in the same call; the demo then reads the decisions back.

This loop is the demo's, kept deliberately small: one process, in-memory window state.
The enforcer proper — takeover markers, state folded from the decision log, hot swaps,
scale-out — is built by the pipeline issue on the same log and wire contract.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ordinance.policy.decision import DENY, Decision
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import InMemoryWindows
from ordinance.processors.wire import decision_to_wire, request_from_wire, request_to_wire
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics

UNDECODABLE = "undecodable"  # the code of a deny for a record that did not decode
ENFORCER_ID = "ordinance-demo"


@dataclass(frozen=True, slots=True)
class LogRun:
    url: str
    actions_topic: str
    decisions_topic: str
    decisions: dict[str, dict[str, Any]]  # request id -> Decision datum as read back


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _decide_one(
    ruleset: Ruleset, serde: Serde, windows: InMemoryWindows, now: list[float], record: Any
) -> tuple[str, str, Decision]:
    """(request id, agent id, decision) for one consumed record; never raises."""
    decoded = serde.decode_record(record, expect={"ActionRequest"})
    if isinstance(decoded, UndecodableRecord):
        detail = f"{decoded.problem.value}: {decoded.detail}"
        request_id = f"{UNDECODABLE}@{record.partition}:{record.offset}"
        agent_id = (record.key or b"").decode(errors="replace")
        return (
            request_id,
            agent_id,
            Decision(DENY, (), (detail,), (), ruleset.bundle_id, UNDECODABLE, detail),
        )
    assert isinstance(decoded, Decoded)
    datum = decoded.value
    now[0] = datum["event_time"].timestamp()
    request = request_from_wire(datum)
    decision = ruleset.evaluate(request, windows)
    if decision.allowed:
        canonical = ruleset.canonical(request)
        windows.record(canonical.agent["id"], canonical.tool, canonical.args, now[0])
    return datum["request_id"], datum["agent"]["id"], decision


def run_session(
    ruleset: Ruleset,
    session: Sequence[tuple[float, Mapping[str, Any]]],
    url: str,
    *,
    prefix: str = "ordinance.",
    progress: Callable[[str], None] = lambda _message: None,
    timeout_s: float = 60.0,
) -> LogRun:
    """Publish ``session`` ((event time in seconds, request) pairs), decide it through the
    log, and read the decisions back."""
    serde = Serde()
    with open_log(url) as log:
        specs = ensure_topics(log, prefix)
        actions, decisions = specs[AGENT_ACTIONS].name, specs[AGENT_DECISIONS].name
        records = []
        for i, (at, request) in enumerate(session):
            datum = request_to_wire(
                request, request_id=f"demo-{i:03d}", event_time=_when(at), client_id=ENFORCER_ID
            )
            key = str(request["agent"]["id"]).encode()
            records.append(Record(key, serde.encode("ActionRequest", datum), (), int(at * 1000)))
        log.produce(actions, records)
        progress(f"published {len(records)} intents to {actions}")

        now = [0.0]
        windows = InMemoryWindows(clock=lambda: now[0])
        decided = 0
        deadline = time.monotonic() + timeout_s
        with log.consumer(ENFORCER_ID) as consumer:
            consumer.subscribe([actions])
            while decided < len(records) and time.monotonic() < deadline:
                for record in consumer.poll(max_records=100, timeout=0.5):
                    request_id, agent_id, decision = _decide_one(
                        ruleset, serde, windows, now, record
                    )
                    datum = decision_to_wire(
                        decision,
                        request_id=request_id,
                        agent_id=agent_id,
                        enforcer_id=ENFORCER_ID,
                        evaluated_at=_when(now[0]),
                        action_offset=record.offset,
                    )
                    # Same partition as the action: one writer per decisions partition.
                    out = Record(
                        record.key,
                        serde.encode("Decision", datum),
                        (),
                        record.timestamp_ms,
                        record.partition,
                    )
                    log.produce_and_commit(
                        [(decisions, out)], consumer, {record.position: record.offset + 1}
                    )
                    decided += 1
        progress(f"decided {decided} intents, decisions on {decisions}")

        read_back: dict[str, dict[str, Any]] = {}
        for record in log.read_to_end(decisions):
            decoded = serde.decode_record(record, expect={"Decision"})
            if isinstance(decoded, Decoded):
                read_back[decoded.value["request_id"]] = decoded.value
    return LogRun(url, actions, decisions, read_back)
