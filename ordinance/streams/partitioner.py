"""Key -> partition mapping shared by every backend.

The embedded log must place a key in the same partition Kafka would, so that
"partition p" names the same agents whichever backend runs. That means the
Java client's default partitioner: murmur2 (seed 0x9747b28c) of the key bytes,
made positive with ``& 0x7fffffff``, modulo the partition count — which is what
librdkafka calls ``murmur2_random``.
"""

from __future__ import annotations

import functools
import random

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash, returned as a signed 32-bit int like the Java client."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes | None, partitions: int) -> int:
    """The partition a record with this key goes to.

    A null key has no affinity; like librdkafka's ``murmur2_random`` it goes to a
    random partition.
    """
    if partitions <= 0:
        raise ValueError(f"a topic needs at least one partition, got {partitions}")
    if key is None:
        return random.randrange(partitions)
    return _hashed_partition(key, partitions)


# Keys are agent ids, request ids, targets: few distinct ones, seen again and
# again. Caching keeps pure-Python hashing off the produce path.
@functools.lru_cache(maxsize=65536)
def _hashed_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
