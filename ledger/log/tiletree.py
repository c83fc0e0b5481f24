"""The sequencer's in-memory view of a tiled Merkle tree (pure; no I/O).

A tree of size ``s`` is stored as C2SP tlog-tiles hash tiles of height 8. To
append, only the *right edge* matters: at each tile level ``L`` with
``s >> 8L > 0``, the tile ``N = s >> (8L + 8)`` holding ``(s >> 8L) % 256``
hashes. Every perfect subtree in the decomposition of ``[0, s)`` lies in one of
these edge tiles, so the root needs nothing else (c2sp.org/tlog-tiles, "Merkle
tree"; Go ``tlog.TreeHash`` over ``TileHashReader``).

Each tile is held *expanded*: all eight levels of hashes inside it, so that
the hash of any perfect subtree (``level``, ``index``) is one lookup rather than
a fold of up to 128 hashes. Full tiles that proofs needed stay in a bounded
LRU cache; the caller reads missing ones from storage (:meth:`missing_tiles`)
and proves over :meth:`getter`, so proof generation itself never does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from hashlib import sha256 as _sha256

from sigledger.ledger import merkle
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, tile_width, tiles_for_size

_HASH = 32


class ExpandedTile:
    """One hash tile with every internal level computed (levels[r] = hashes at height r)."""

    __slots__ = ("levels",)

    def __init__(self, data: bytes = b"") -> None:
        if len(data) % _HASH or len(data) > TILE_WIDTH * _HASH:
            raise ValueError("tile data must be 0..256 hashes")
        self.levels: list[list[bytes]] = [[]]
        for i in range(0, len(data), _HASH):
            self.push(data[i : i + _HASH])

    @property
    def width(self) -> int:
        return len(self.levels[0])

    @property
    def full(self) -> bool:
        return len(self.levels[0]) == TILE_WIDTH

    def push(self, h: bytes) -> None:
        """Append one hash, completing every parent it finishes."""
        levels = self.levels
        levels[0].append(h)
        lv = 0
        while len(levels[lv]) % 2 == 0:
            row = levels[lv]
            parent = merkle.node_hash(row[-2], row[-1])
            lv += 1
            if lv == len(levels):
                levels.append([])
            levels[lv].append(parent)

    def root(self) -> bytes:
        """Hash of the full tile (the tile's entry in its parent tile)."""
        assert self.full, "bad math in ExpandedTile.root: tile not full"
        return self.levels[TILE_HEIGHT][0]

    def data(self) -> bytes:
        return b"".join(self.levels[0])

    def hash(self, r: int, local: int) -> bytes | None:
        """The hash at height ``r``, position ``local`` in the tile, if computed yet."""
        levels = self.levels
        if r >= len(levels) or local >= len(levels[r]):
            return None
        return levels[r][local]


class FullTile:
    """A full tile held compactly for proofs: each of its nine levels as one bytes
    object (about 16 KB in all, against about 37 KB as hundreds of small objects).
    Immutable."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[bytes]) -> None:
        self.rows = rows

    @classmethod
    def of_data(cls, data: bytes) -> FullTile:
        """Expand the bytes of a full tile (256 hashes), level by level in one pass;
        ValueError for any other length."""
        if len(data) != TILE_WIDTH * _HASH:
            raise ValueError("a full tile holds 256 hashes")
        rows = [data]
        row = [data[i : i + _HASH] for i in range(0, len(data), _HASH)]
        while len(row) > 1:
            row = [_sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
            rows.append(b"".join(row))
        return cls(rows)

    @classmethod
    def of_expanded(cls, tile: ExpandedTile) -> FullTile:
        assert tile.full, "bad math in FullTile.of_expanded: tile not full"
        return cls([b"".join(level) for level in tile.levels])

    def hash(self, r: int, local: int) -> bytes | None:
        """The hash at height ``r`` (0-8), position ``local`` (below ``256 >> r``)."""
        start = local * _HASH
        return self.rows[r][start : start + _HASH]

    def root(self) -> bytes:
        return self.rows[TILE_HEIGHT]


class TiledTree:
    """Right edge of a log's tree plus a cache of full tiles, for appends and proofs."""

    def __init__(self, size: int, edge: dict[int, bytes], cache_tiles: int = 1024) -> None:
        """``edge[L]`` holds the bytes of edge tile ``(L, size >> (8L + 8))``.

        Raises ValueError when a tile has the wrong width for ``size``.
        """
        self.size = size
        self._edge: list[ExpandedTile] = []
        level = 0
        while (size >> (TILE_HEIGHT * level)) > 0:
            width = tile_width(level, size >> (TILE_HEIGHT * (level + 1)), size)
            data = edge.get(level, b"")[: width * _HASH]
            if len(data) != width * _HASH:
                raise ValueError(
                    f"edge tile at level {level} has {len(data) // _HASH} hashes, expected {width}"
                )
            self._edge.append(ExpandedTile(data))
            level += 1
        self._cache: OrderedDict[tuple[int, int], FullTile] = OrderedDict()
        self._cache_tiles = cache_tiles

    @staticmethod
    def edge_refs(size: int) -> list[tuple[int, int]]:
        """The (level, n) of every edge tile with at least one hash at ``size``."""
        return [(ref.level, ref.n) for ref in tiles_for_size(size)]

    def _edge_n(self, level: int) -> int:
        return self.size >> (TILE_HEIGHT * (level + 1))

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
        """Append leaves; return every tile whose bytes changed ((level, n) -> data)."""
        changed: dict[tuple[int, int], bytes] = {}
        carry: Sequence[bytes] = leaf_hashes
        old_size = self.size
        level = 0
        while carry:
            if level == len(self._edge):
                self._edge.append(ExpandedTile())
            edge = self._edge[level]
            n = old_size >> (TILE_HEIGHT * (level + 1))
            up: list[bytes] = []
            for h in carry:
                edge.push(h)
                if edge.full:
                    changed[(level, n)] = edge.data()
                    self._remember((level, n), FullTile.of_expanded(edge))
                    up.append(edge.root())
                    n += 1
                    edge = ExpandedTile()
            self._edge[level] = edge
            if edge.width:
                changed[(level, n)] = edge.data()
            carry = up
            level += 1
        self.size = old_size + len(leaf_hashes)
        return changed

    def _remember(self, ref: tuple[int, int], tile: FullTile) -> None:
        self._cache[ref] = tile
        self._cache.move_to_end(ref)
        while len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)

    def _tile(self, level: int, n: int) -> ExpandedTile | FullTile | None:
        if level < len(self._edge) and n == self._edge_n(level):
            return self._edge[level]
        tile = self._cache.get((level, n))
        if tile is not None:
            self._cache.move_to_end((level, n))
        return tile

    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree (level, index); KeyError if its tile is not loaded."""
        return self._node(level, index, None)

    def _node(self, level: int, index: int, extra: dict[tuple[int, int], FullTile] | None) -> bytes:
        tl, r = divmod(level, TILE_HEIGHT)
        n = (index << r) >> TILE_HEIGHT
        tile = self._tile(tl, n)
        if tile is None and extra is not None:
            tile = extra.get((tl, n))
        found = None if tile is None else tile.hash(r, index % (TILE_WIDTH >> r))
        if found is None:
            raise KeyError((level, index))
        return found

    def missing_tiles(self, nodes: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Tiles (level, n) that must be loaded before these nodes can be read."""
        out = set()
        for level, index in nodes:
            tl, r = divmod(level, TILE_HEIGHT)
            n = (index << r) >> TILE_HEIGHT
            if self._tile(tl, n) is None:
                out.add((tl, n))
        return out

    def getter(self, tiles: dict[tuple[int, int], bytes] | None = None) -> merkle.GetNode:
        """A ``get_node`` over the tree plus ``tiles`` (full tiles read from storage).

        The extra tiles are consulted directly rather than only through the
        bounded cache, so a proof needing more tiles than the cache holds works.
        """
        if not tiles:
            return self.node
        extra = {ref: _full_tile(ref[0], ref[1], data) for ref, data in tiles.items()}
        for ref, tile in extra.items():
            self._remember(ref, tile)
        return lambda level, index: self._node(level, index, extra)

    def root(self) -> bytes:
        return merkle.root_from(self.size, self.node)


def _full_tile(level: int, n: int, data: bytes) -> FullTile:
    if len(data) != TILE_WIDTH * _HASH:
        raise ValueError(f"tile {level}/{n} is not full")
    return FullTile.of_data(data)
