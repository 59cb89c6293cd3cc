"""A separate process acting on an embedded log, driven by the log tests.

python log_child.py produce URL TOPIC NAME COUNT BATCH  # prints each acked seq
python log_child.py member URL TOPIC GROUP              # prints its assignment
"""

from __future__ import annotations

import itertools
import sys
import time

from ordinance.streams import Record, open_log


def produce(url: str, topic: str, name: str, count: int, batch: int) -> None:
    """Produce ``count`` records (forever if 0) keyed by ``name``, printing the
    last sequence number of every acknowledged batch."""
    with open_log(url) as log:
        seqs = itertools.count() if count == 0 else iter(range(count))
        while chunk := list(itertools.islice(seqs, batch)):
            log.produce(topic, [Record(name.encode(), f"{name}:{s}".encode()) for s in chunk])
            print(chunk[-1], flush=True)


def member(url: str, topic: str, group: str) -> None:
    with open_log(url) as log, log.consumer(group) as consumer:
        consumer.subscribe([topic])
        reported: frozenset[object] = frozenset()
        while True:
            consumer.poll(timeout=0.05)
            if consumer.assignment() != reported:
                reported = consumer.assignment()
                print(",".join(str(tp.partition) for tp in sorted(reported)), flush=True)
            time.sleep(0.01)


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        member(sys.argv[2], sys.argv[3], sys.argv[4])
