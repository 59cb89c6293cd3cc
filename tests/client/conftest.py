"""Fixtures for the agent client. Answers come from the real pipeline: the example policies
published through ``policy.changes``, the controller's enforced event in ``policy.active``,
and an `Enforcer` deciding in a background thread. One such log per test module (publishing
and a takeover cost about a second); the tests of getting no answer use a fresh log with
the topics and nobody answering."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Log, open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import DEFAULT_PREFIX, ensure_topics, topic_specs
from tests.processors.running import RunningEnforcer, enforcer_thread

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ACTIONS = topic_specs()["agent.actions"].name
DECISIONS = topic_specs()["agent.decisions"].name


@dataclass(frozen=True)
class Bundle:
    files: dict[str, str]
    bundle_id: str


@pytest.fixture(scope="session")
def example_bundle() -> Bundle:
    files = read_bundle_dir(EXAMPLES)
    return Bundle(dict(files), compile_bundle(files).bundle_id)


def publish(log: Log, bundle: Bundle, prefix: str = DEFAULT_PREFIX) -> None:
    """Publish and enforce the bundle, as ``ordinance publish`` and the controller would."""
    publish_bundle(log, bundle.files, bundle.bundle_id, actor="test", prefix=prefix)
    run_controller(log, once=True, prefix=prefix, group=f"{prefix}controller")


@pytest.fixture(scope="session")
def published_log(tmp_path_factory: pytest.TempPathFactory, example_bundle: Bundle) -> Path:
    """An embedded log with the topics and the example bundle enforced, copied by each module."""
    directory = tmp_path_factory.mktemp("published")
    with open_log(f"sqlite:///{directory / 'log.db'}") as log:
        ensure_topics(log)
        publish(log, example_bundle)
    return directory


@dataclass(frozen=True)
class Pipeline:
    """The module's log and enforcer, as one test sees them."""

    url: str
    bundle_id: str
    enforcer_id: str
    since: Mapping[int, int]  # the end offsets of agent.actions when the test began

    def published(self) -> list[dict[str, Any]]:
        """The ActionRequests this test published."""
        return published(self.url, self.since)


@pytest.fixture(scope="module")
def module_pipeline(
    tmp_path_factory: pytest.TempPathFactory, published_log: Path, example_bundle: Bundle
) -> Iterator[tuple[str, RunningEnforcer]]:
    directory = tmp_path_factory.mktemp("pipeline")
    for path in published_log.iterdir():  # no connection is open: the files are consistent
        shutil.copy(path, directory / path.name)
    url = f"sqlite:///{directory / 'log.db'}"
    with enforcer_thread(url) as running:
        yield url, running


@pytest.fixture
def pipeline(
    module_pipeline: tuple[str, RunningEnforcer], example_bundle: Bundle
) -> Iterator[Pipeline]:
    """The module's published log with its enforcer answering; shared by the module's tests,
    so a test reads back only what it published (`Pipeline.published`) and speaks for
    its own agent where a window (the daily budget) or a pending approval could carry over."""
    url, running = module_pipeline
    running.check()
    with open_log(url) as log:
        since = log.end_offsets(ACTIONS)
    yield Pipeline(url, example_bundle.bundle_id, running.enforcer.enforcer_id, since)
    running.check()


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    """A fresh embedded log with the topics created (as `ordinance serve` would) and
    nobody answering."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        ensure_topics(log)
    return url


def published(url: str, since: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """The ActionRequests on the log (from ``since``, per partition), with their partition."""
    serde = Serde()
    start = since or {}
    with open_log(url) as log:
        out = []
        for record in log.read_to_end(ACTIONS):
            if record.offset < start.get(record.partition, 0):
                continue
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.append({**decoded.value, "_partition": record.partition})
        return out


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    # tests/streams/conftest.py has the same fixture, but a sibling directory's conftest
    # is not visible here; one broker per session all the same.
    broker = start_broker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    try:
        yield broker
    finally:
        broker.stop()
