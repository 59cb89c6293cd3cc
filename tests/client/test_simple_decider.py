"""The stand-in responder the client tests run against: undecodable input is answered with
a fail-closed deny on the action's partition, not skipped."""

from __future__ import annotations

import time

from ordinance.processors.simple_decider import UNDECODABLE, SimpleDecider
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import topic_specs

ACTIONS = topic_specs()["agent.actions"].name
DECISIONS = topic_specs()["agent.decisions"].name


def test_undecodable_actions_are_denied_on_their_partition(
    log_url: str, decider: SimpleDecider
) -> None:
    with open_log(log_url) as log:
        [where] = log.produce(ACTIONS, [Record(b"agent-x", b"\xc3\x01garbage")])
        deadline = time.monotonic() + 10
        while decider.decided < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        [record] = list(log.read_to_end(DECISIONS))
    decoded = Serde().decode_record(record)
    assert isinstance(decoded, Decoded)
    assert record.partition == where.partition
    assert (decoded.value["effect"], decoded.value["code"]) == ("deny", UNDECODABLE)
    assert decoded.value["request_id"] == f"{UNDECODABLE}@{where.partition}:{where.offset}"
    assert decoded.value["action_offset"] == where.offset
