"""`replay verify` reproduces the enforcer's pre-evaluation checks (issue 11) from the log
alone: invalid agent ids, wrong partitions and keys, clock skew, undecodable actions. The
partition count and the skew bound come from the enforcer's takeover records, so an
offline slice replays the same, and an edit of either shows as findings."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.decision import INVALID_REQUEST
from ordinance.processors.enforcer_state import CLOCK_SKEW, UNDECODABLE, WRONG_PARTITION
from ordinance.replay.export import export_slice
from ordinance.replay.findings import VerifyReport
from ordinance.replay.source import FileSource, LogSource, open_source
from ordinance.replay.times import Window
from ordinance.replay.verify import verify
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from tests.processors.test_enforcer import EXAMPLES, publish
from tests.processors.test_enforcer_budgets import attacks, enforce, produce

from .conftest import rewrite


def _verify(db: Path, **options: Any) -> VerifyReport:
    source, log = open_source(f"sqlite:///{db}", None)
    assert log is not None
    with log:
        return verify(source, **options)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("attacked") / "log.db"
    url = f"sqlite:///{db}"
    publish(url, EXAMPLES)
    produce(url, attacks())
    enforce(url, "ordinance.enforcer")
    enforce(url, "ordinance.enforcer-redelivery")  # every action delivered twice
    return db


def _copy(db: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.db"
    with sqlite3.connect(db) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


def _records(db: Path) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(partition, offset, schema name, datum) of every decisions record."""
    serde = Serde()
    out = []
    with open_log(f"sqlite:///{db}") as log:
        for record in log.read_to_end("ordinance.agent.decisions"):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.append((record.partition, record.offset, decoded.name, decoded.value))
    return out


def _decision(db: Path, request_id: str) -> tuple[int, int]:
    [found] = [
        (p, o) for p, o, n, d in _records(db) if n == "Decision" and d["request_id"] == request_id
    ]
    return found


def test_every_check_replays_with_no_finding(attacked: Path) -> None:
    report = _verify(attacked)
    assert report.ok, [f.to_json() for f in report.findings]
    codes = [d["code"] for _, _, n, d in _records(attacked) if n == "Decision"]
    for code in (INVALID_REQUEST, WRONG_PARTITION, CLOCK_SKEW, UNDECODABLE):
        assert code in codes
    assert report.decisions == len(codes) == len(attacks())
    assert sum(c.agreed for c in report.partitions.values()) == report.decisions


def test_an_offline_slice_of_one_agent_replays_the_same(attacked: Path, tmp_path: Path) -> None:
    """The placement check needs the partition count: it travels in the takeover records,
    not in which partitions a slice happens to hold."""
    out = tmp_path / "splitter.slice"
    with open_log(f"sqlite:///{attacked}") as log:
        export_slice(LogSource(log), out, window=Window(), agents={"splitter"})
    report = verify(FileSource(out), agents={"splitter"})
    assert report.ok, [f.to_json() for f in report.findings]
    agents = [s.value["agent"]["id"] for s in attacks() if isinstance(s.value, dict)]
    assert report.decisions == agents.count("splitter") > 0


def test_a_takeover_edited_to_drop_the_skew_bound_is_found(attacked: Path, tmp_path: Path) -> None:
    db = _copy(attacked, tmp_path)
    partition, decided_at = _decision(db, "ahead-day")
    [first_takeover, *_] = [
        o for p, o, n, _ in _records(db) if p == partition and n == "EnforcerTakeover"
    ]
    assert first_takeover < decided_at
    rewrite(
        db,
        "agent.decisions",
        partition,
        first_takeover,
        lambda t: {**t, "max_clock_skew_ms": None},
    )
    findings = _verify(db).findings
    assert findings and {f.kind for f in findings} == {"decision_mismatch"}
    skewed = {
        d["request_id"]
        for p, _, n, d in _records(db)
        if p == partition and n == "Decision" and d["code"] == CLOCK_SKEW
    }
    assert "ahead-day" in skewed
    # Every clock_skew decision on that partition is recomputed without the bound (and
    # budgets change after them); none elsewhere.
    assert skewed <= {f.request_id for f in findings}
    assert {f.partition for f in findings} == {partition}


def test_a_wrong_partition_decision_edited_to_allow_is_found(
    attacked: Path, tmp_path: Path
) -> None:
    db = _copy(attacked, tmp_path)
    partition, offset = _decision(db, "split-1")
    rewrite(
        db,
        "agent.decisions",
        partition,
        offset,
        lambda d: {**d, "effect": "allow", "code": "matched", "reasons": [], "detail": ""},
    )
    findings = _verify(db).findings
    assert [(f.kind, f.request_id) for f in findings][:1] == [("decision_mismatch", "split-1")]
    assert findings[0].differences["code"] == {"recorded": "matched", "recomputed": WRONG_PARTITION}
