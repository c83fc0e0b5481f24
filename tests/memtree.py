"""A reference Merkle tree kept in memory, for tests (RFC 6962, see sigledger.ledger.merkle)."""

from __future__ import annotations

from collections.abc import Iterable

from sigledger.ledger import merkle


class MemoryTree:
    """An in-memory log over leaf hashes: the reference the tests check the log against.

    Stores every perfect node hash it completes, level by level, so node
    lookups, roots and proofs for any size up to :attr:`size` are cheap.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[l][i] is the hash of node (l, i).
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash; returns the new leaf's index."""
        if len(leaf_hash) != merkle.HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, not {merkle.HASH_SIZE}")
        levels = self._levels
        row = levels[0]
        index = len(row)
        h = bytes(leaf_hash)
        row.append(h)
        # Each trailing 1-bit of the index completes one perfect subtree.
        i, level = index, 0
        while i & 1:
            h = merkle.node_hash(levels[level][i - 1], h)
            level += 1
            i >>= 1
            if level == len(levels):
                levels.append([])
            levels[level].append(h)
        return index

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def node(self, level: int, index: int) -> bytes:
        """Hash of perfect node ``(level, index)`` (a :data:`GetNode`).

        ``ValueError`` for negative arguments, ``KeyError`` if the node is not
        complete yet.
        """
        if level < 0 or index < 0:
            raise ValueError(f"invalid node ({level}, {index})")
        if level >= len(self._levels) or index >= len(self._levels[level]):
            raise KeyError((level, index))
        return self._levels[level][index]

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is not in [0, {self.size}]")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: all)."""
        return merkle.root_from(self._size_arg(size), self.node)

    def prove_inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof for leaf ``index`` in the tree of ``size`` leaves (default: all)."""
        return merkle.prove_inclusion(index, self._size_arg(size), self.node)

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` leaves (default: all)."""
        return merkle.prove_consistency(old_size, self._size_arg(new_size), self.node)
