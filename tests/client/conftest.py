"""Fixtures for the agent client: a fresh embedded log with Ordinance's topics, the example
policies, and the simple decide loop answering in a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ordinance.policy.loader import load_ruleset
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.simple_decider import SimpleDecider, decider_thread
from ordinance.streams import open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.topics import ensure_topics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
# Short group timings: a decider joins its group at once.
SQLITE_OPTIONS = "heartbeat_interval_ms=50&session_timeout_ms=1500"


@pytest.fixture(scope="session")
def ruleset() -> Ruleset:
    return load_ruleset(EXAMPLES)


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    """An embedded log with the topics created (as `ordinance serve` would)."""
    url = f"sqlite:///{tmp_path / 'log.db'}?{SQLITE_OPTIONS}"
    with open_log(url) as log:
        ensure_topics(log)
    return url


@pytest.fixture
def decider(log_url: str, ruleset: Ruleset) -> Iterator[SimpleDecider]:
    with decider_thread(log_url, ruleset) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    # tests/streams/conftest.py has the same fixture, but a sibling directory's conftest
    # is not visible here; one broker per session all the same.
    broker = start_broker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    try:
        yield broker
    finally:
        broker.stop()
