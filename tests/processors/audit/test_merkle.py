"""RFC 9162 laws: the streaming root equals the recursive definition, every inclusion
proof verifies against it, and an altered leaf, index or path does not."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ordinance.processors.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Levels,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
)


def _entries(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


def test_small_trees_match_rfc_shapes() -> None:
    a, b, c = _entries(3)
    assert root_of([]) == EMPTY_ROOT
    assert root_of([leaf_hash(a)]) == leaf_hash(a)
    # n = 3 splits at 2: node(node(a, b), c)
    expected = node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert root_of([leaf_hash(x) for x in (a, b, c)]) == expected


@given(st.integers(min_value=0, max_value=300))
def test_frontier_root_equals_recursive_root(n: int) -> None:
    frontier = Frontier()
    entries = _entries(n)
    for entry in entries:
        frontier.append(entry)
    assert frontier.size == n
    assert frontier.root() == root_of([leaf_hash(e) for e in entries])


@given(st.integers(min_value=0, max_value=130))
def test_levels_give_every_prefix_root(n: int) -> None:
    entries = _entries(n)
    levels = Levels(entries)
    for size in range(n + 1):
        assert levels.root(size) == root_of([leaf_hash(e) for e in entries[:size]])


@given(st.data())
def test_every_inclusion_proof_verifies_and_alterations_fail(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=200))
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    entries = _entries(n)
    root = root_of([leaf_hash(e) for e in entries])
    path = inclusion_path(entries, m)
    assert root_from_inclusion(entries[m], m, n, path) == root
    altered = bytes([entries[m][0] ^ 1]) + entries[m][1:]
    assert root_from_inclusion(altered, m, n, path) != root
    if n > 1:
        other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != m))
        assert root_from_inclusion(entries[m], other, n, path) != root
    if path:
        i = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
        bad = [*path]
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert root_from_inclusion(entries[m], m, n, bad) != root
        assert root_from_inclusion(entries[m], m, n, path[:-1]) != root


def test_index_outside_the_tree_is_refused() -> None:
    entries = _entries(4)
    assert root_from_inclusion(entries[0], 4, 4, inclusion_path(entries, 0)) is None
