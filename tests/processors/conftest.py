"""Pipeline tests run on both backends: the embedded log, and a real Kafka-protocol broker
(marked `kafka`; one fresh broker per test, so no test sees another's topics).

A module that sets ``ON_MEMORY_LOG = True`` runs on the in-memory log (``memory://``) as
well: the processors' test driver, with no file and no broker. Only modules whose
processors all run in the test's own process can: another process opening the same URL
gets an empty log of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordinance.streams.memory_log import discard_memory_log

_KAFKA = pytest.param("kafka", marks=pytest.mark.kafka)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "log_url" in metafunc.fixturenames:
        on_memory = getattr(metafunc.module, "ON_MEMORY_LOG", False)
        backends = ["sqlite", "memory", _KAFKA] if on_memory else ["sqlite", _KAFKA]
        metafunc.parametrize("log_url", backends, indirect=True)


@pytest.fixture
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
        return
    if request.param == "memory":
        name = f"test-{uuid.uuid4().hex[:12]}"
        yield f"memory://{name}"
        discard_memory_log(name)  # the test's log goes with it, as its tmp_path does
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield broker.url
