"""A recorded `ordinance demo` run (with its hot swap) on the embedded log, made once per
session and copied for each test that alters it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ordinance.commands.demo import default_policies
from ordinance.commands.demo_pipeline import PipelineRun, run_pipeline
from ordinance.policy.bundle import read_bundle_dir
from ordinance.streams import ConsumedRecord, open_log
from ordinance.streams.serde import Decoded, Serde

PREFIX = "ordinance."


@dataclass(frozen=True)
class Recorded:
    db: Path
    run: PipelineRun
    files: dict[str, str]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def copy(self, directory: Path) -> Path:
        """A copy (WAL folded in) to alter."""
        target = directory / "altered.db"
        with sqlite3.connect(self.db) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return target

    def records(self, topic: str) -> list[tuple[ConsumedRecord, Decoded]]:
        serde = Serde()
        out = []
        with open_log(self.url) as log:
            for record in log.read_to_end(PREFIX + topic):
                decoded = serde.decode_record(record)
                assert isinstance(decoded, Decoded)
                out.append((record, decoded))
        return out


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    directory = tmp_path_factory.mktemp("demo-run")
    files = read_bundle_dir(default_policies())
    db = directory / "demo.db"
    run = run_pipeline(files, f"sqlite:///{db}", intents_per_phase=80)
    return Recorded(db, run, files)


def rewrite(
    db: Path,
    topic: str,
    partition: int,
    offset: int,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Decode one stored record, change its datum, encode it back in place — what someone
    with write access to the log's storage could do."""
    serde = Serde()
    with sqlite3.connect(db) as conn:
        (topic_id,) = conn.execute(
            "SELECT id FROM topics WHERE name=?", (PREFIX + topic,)
        ).fetchone()
        where = "topic_id=? AND partition=? AND offset=?"
        (value,) = conn.execute(
            f"SELECT value FROM records WHERE {where}", (topic_id, partition, offset)
        ).fetchone()
        decoded = serde.decode(value)
        assert isinstance(decoded, Decoded)
        new = serde.encode(decoded.name, change(dict(decoded.value)))
        conn.execute(
            f"UPDATE records SET value=? WHERE {where}", (new, topic_id, partition, offset)
        )
