"""How replay hands partitions to workers, and what a source reads for it."""

from __future__ import annotations

from pathlib import Path

from ordinance.replay.parallel import map_partitions
from ordinance.replay.source import LogSource, Source
from ordinance.streams import Record, open_log
from ordinance.streams.log import Log
from ordinance.streams.topics import AGENT_ACTIONS, ensure_topics

from .traffic import MemorySource


def test_partitions_go_to_workers_largest_first() -> None:
    # One worker takes them in the order they are handed out.
    def opener() -> tuple[Source, Log | None]:
        return MemorySource(), None

    sizes = {0: 5, 1: 20, 2: 1, 3: 10}
    handed = list(map_partitions(lambda _source, p: p, [0, 1, 2, 3], 1, opener, sizes))
    assert handed == [1, 3, 0, 2]
    # Without sizes (a source that cannot say) the partition order stays.
    assert list(map_partitions(lambda _source, p: p, [2, 0, 1], 1, opener)) == [2, 0, 1]


def test_the_embedded_log_reads_the_same_records_without_headers(tmp_path: Path) -> None:
    with open_log(f"sqlite:///{tmp_path / 'log.db'}") as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        log.produce(
            topic,
            [Record(b"k%d" % i, b"v%d" % i, (("h", b"x"),), 1000 + i, 1) for i in range(5)],
        )
        source = LogSource(log)
        assert source.sizes("agent.actions") == {0: 0, 1: 5, 2: 0, 3: 0}
        full = list(source.read("agent.actions", 1))
        lean = list(source.read("agent.actions", 1, headers=False))
    assert [r.headers for r in full] == [(("h", b"x"),)] * 5
    assert lean == [r._replace(headers=()) for r in full]
    assert [r.offset for r in lean] == [0, 1, 2, 3, 4]
