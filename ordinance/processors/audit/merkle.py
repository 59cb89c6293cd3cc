"""RFC 6962 / RFC 9162 Merkle trees over the chain hashes of one partition.

Leaves are the records' chain hashes in log order: ``leaf = SHA-256(0x00 || hash_i)``,
``node = SHA-256(0x01 || left || right)``, the root of ``n`` leaves splits at the largest
power of two below ``n`` (RFC 9162 §2.1.1), so any RFC 9162 verifier checks our proofs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The root of a growing tree in O(log n) memory: the perfect subtrees that the leaves
    so far decompose into (sizes are the set bits of the leaf count, largest first)."""

    __slots__ = ("_subtrees", "size")

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[tuple[int, bytes]] = []

    def append(self, entry: bytes) -> None:
        size, digest = 1, _sha256(b"\x00" + entry).digest()  # leaf_hash, inlined: hot
        subtrees = self._subtrees
        while subtrees and subtrees[-1][0] == size:
            left_size, left = subtrees.pop()
            size, digest = left_size + size, _sha256(b"\x01" + left + digest).digest()
        subtrees.append((size, digest))
        self.size += 1

    def root(self) -> bytes:
        if not self._subtrees:
            return EMPTY_ROOT
        root = self._subtrees[-1][1]
        for _size, digest in reversed(self._subtrees[:-1]):
            root = node_hash(digest, root)
        return root


class Levels:
    """Every perfect subtree of a fixed list of entries, built level by level in tight
    loops, so the root of any prefix costs O(log n): faster than a `Frontier` when all
    entries are at hand (``audit verify`` checks many checkpoint sizes of one list)."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        level = [_sha256(b"\x00" + entry).digest() for entry in entries]
        self.levels = [level]
        while len(level) > 1:
            level = [
                _sha256(b"\x01" + left + right).digest()
                for left, right in zip(level[0::2], level[1::2], strict=False)
            ]
            self.levels.append(level)

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` entries."""
        if not 0 <= size <= len(self.levels[0]):
            raise ValueError(f"no prefix of {size} in {len(self.levels[0])} entries")
        if size == 0:
            return EMPTY_ROOT
        parts, offset = [], 0
        for k in reversed(range(size.bit_length())):
            if size >> k & 1:
                parts.append(self.levels[k][offset >> k])
                offset += 1 << k
        root = parts[-1]
        for digest in reversed(parts[:-1]):
            root = node_hash(digest, root)
        return root


def _largest_power_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of already leaf-hashed entries."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _largest_power_below(len(leaves))
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def inclusion_path(entries: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 for the chain hashes ``entries``."""
    if not 0 <= index < len(entries):
        raise ValueError(f"leaf {index} is not in a tree of {len(entries)}")
    leaves = [leaf_hash(entry) for entry in entries]
    path: list[bytes] = []
    lo, hi, m = 0, len(leaves), index
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if m < k:
            path.append(root_of(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root_of(leaves[lo : lo + k]))
            lo, m = lo + k, m - k
    path.reverse()  # the recursion emits the top sibling first; proofs go leaf upward
    return path


def root_from_inclusion(entry: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``entry`` at ``index`` under, or None when the path
    cannot belong to a tree of ``size`` leaves (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf_hash(entry)
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(sibling, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, sibling)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
