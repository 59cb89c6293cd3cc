"""The dedupe horizon end to end, on both backends: the enforcer writes its horizon into
its takeover record and each bundle's longest window into its swap record; an intent
dated before the horizon — a re-send of a forgotten request id included — is denied
``stale_request``, never judged a second time; and `replay verify` reproduces it all
from the log alone."""

from __future__ import annotations

from typing import Any

from ordinance.processors.enforcer import Enforcer
from ordinance.processors.state_horizon import STALE_REQUEST
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from tests.processors.caught_up import run_caught_up
from tests.processors.test_enforcer import EXAMPLES, T0, publish
from tests.processors.test_enforcer_budgets import SPECS, keyed, produce, transfer

ON_MEMORY_LOG = True  # also on memory:// (tests/processors/conftest.py)

HOUR = 3600.0


def _enforce(url: str, now: float) -> None:
    with open_log(url) as log:
        run_caught_up(
            Enforcer(log, clock=lambda: now, max_clock_skew_s=None, dedupe_horizon_s=HOUR)
        )


def _records(url: str) -> list[tuple[str, dict[str, Any]]]:
    serde = Serde()
    with open_log(url) as log:
        out = []
        for record in log.read_to_end(SPECS["agent.decisions"].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.append((decoded.name, decoded.value))
        return out


def test_stale_intents_are_denied_and_replay_agrees(log_url: str) -> None:
    publish(log_url, EXAMPLES)
    produce(log_url, [keyed(transfer("first", "b1", 100, T0))])
    _enforce(log_url, T0)
    produce(log_url, [keyed(transfer("later", "b1", 100, T0 + 2 * HOUR))])
    _enforce(log_url, T0 + 2 * HOUR)
    # The first request again (same id, same date: a client retrying, or a replay of the
    # record), and a new one dated inside the day's window but before the horizon.
    produce(
        log_url,
        [keyed(transfer("first", "b1", 100, T0)), keyed(transfer("old", "b1", 100, T0 + 900))],
    )
    _enforce(log_url, T0 + 2 * HOUR + 1)
    records = _records(log_url)
    takeovers = [d for n, d in records if n == "EnforcerTakeover"]
    swaps = [d for n, d in records if n == "RulesetSwap"]
    assert takeovers and all(t["dedupe_horizon_ms"] == 3_600_000 for t in takeovers)
    assert swaps and all(s["longest_window_ms"] == 86_400_000 for s in swaps)  # 24h budget
    decided = [(d["request_id"], d["effect"], d["code"]) for n, d in records if n == "Decision"]
    assert decided[:2] == [("first", "allow", "matched"), ("later", "allow", "matched")]
    assert decided[2:] == [("first", "deny", STALE_REQUEST), ("old", "deny", STALE_REQUEST)]
    source, log = open_source(log_url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert report.ok, [f.to_json() for f in report.findings]
    assert report.decisions == 4
