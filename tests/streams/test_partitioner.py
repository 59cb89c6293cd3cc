"""Key -> partition is the Java client's, so both backends agree with Kafka."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordinance.streams import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # org.apache.kafka.common.utils.UtilsTest#testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@given(key=st.binary(max_size=64), partitions=st.integers(1, 1000))
def test_partition_is_in_range_and_stable(key: bytes, partitions: int) -> None:
    chosen = partition_for(key, partitions)
    assert 0 <= chosen < partitions
    assert chosen == partition_for(key, partitions)
    assert chosen == (murmur2(key) & 0x7FFFFFFF) % partitions


def test_null_keys_spread_and_bad_counts_are_refused() -> None:
    assert {partition_for(None, 4) for _ in range(400)} == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        partition_for(b"k", 0)
