"""Pipeline tests run on both backends: the embedded log, and a real Kafka-protocol broker
(marked `kafka`; one fresh broker per test, so no test sees another's topics)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield broker.url
