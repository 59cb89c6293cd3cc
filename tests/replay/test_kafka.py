"""Replay on a real Kafka-protocol broker: the demo run replays clean, and replay writes
nothing (Log.read_to_end would append marker records there, so replay reads without it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ordinance.commands.demo import default_policies
from ordinance.commands.demo_pipeline import run_pipeline, stricter
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.replay.bundles import BundleStore
from ordinance.replay.export import export_slice
from ordinance.replay.source import FileSource, open_source
from ordinance.replay.times import Window
from ordinance.replay.verify import verify
from ordinance.replay.whatif import whatif
from ordinance.streams import open_log
from ordinance.streams.kafka_broker import start_broker
from ordinance.streams.topics import topic_specs

pytestmark = pytest.mark.kafka


def _ends(url: str) -> dict[str, dict[int, int]]:
    with open_log(url) as log:
        return {spec.name: log.end_offsets(spec.name) for spec in topic_specs().values()}


def test_the_demo_replays_clean_on_kafka_and_nothing_is_written(tmp_path: Path) -> None:
    files = read_bundle_dir(default_policies())
    with start_broker() as broker:
        run = run_pipeline(files, broker.url, intents_per_phase=30)
        before = _ends(broker.url)
        source, log = open_source(broker.url, None)
        assert log is not None
        with log:
            report = verify(source)
            changes = whatif(source, compile_bundle(stricter(files)))
            out = tmp_path / "slice.avro"
            export_slice(source, out, window=Window())
            BundleStore.load(source).state_at(dt.datetime.now(dt.UTC))
        assert _ends(broker.url) == before
    assert report.ok and report.decisions == len(run.outcomes)
    assert changes.changes  # the old bundle allowed transfers to RU
    offline = verify(FileSource(out))
    assert offline.ok and offline.decisions == report.decisions
