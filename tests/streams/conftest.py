"""Fixtures for the log tests: the same suite runs on the embedded log, the in-memory
log and a real Kafka-protocol broker this session starts (and stops) itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from streams_helpers import SQLITE_OPTIONS, sqlite_url

from ordinance.streams import Log, open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.memory_log import discard_memory_log


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    broker = start_broker(log_path=log_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["sqlite", "memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "log.db")
    elif request.param == "memory":
        name = f"test-{uuid.uuid4().hex[:12]}"
        yield f"memory://{name}?{SQLITE_OPTIONS}"  # the same group timings, the same waits
        discard_memory_log(name)  # a test's log goes with it, as its tmp_path does
    else:
        broker: LocalBroker = request.getfixturevalue("kafka_broker")
        yield broker.url


@pytest.fixture
def log(log_url: str) -> Iterator[Log]:
    with open_log(log_url) as opened:
        yield opened


@pytest.fixture
def topic() -> str:
    """A fresh topic name: tests share one broker, so names must not collide."""
    return f"test.{uuid.uuid4().hex[:12]}"
