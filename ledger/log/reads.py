"""The read side of a log: what ``/tile``, ``/lookup`` and ``/proof/consistency``
answer, as domain functions (no HTTP).

Everything is served from the published checkpoint only: a tile, an entry or a
proof beyond its size does not exist for readers. Answers are the formats of
:mod:`sigledger.ledger.wire` (or tile bytes, c2sp.org/tlog-tiles); refusals are
the domain errors of :mod:`sigledger.ledger.errors` (``not_found``,
``bad_query``, ``too_many_results``, ``storage_inconsistent``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from sigledger.ledger.entry import decode_entry
from sigledger.ledger.errors import (
    BadQueryError,
    NotFoundError,
    StorageInconsistentError,
    TooManyResultsError,
)
from sigledger.ledger.log.sequencer import Published, Sequencer
from sigledger.ledger.log.store import EntryQuery, LogStorage
from sigledger.ledger.tiles import TILE_WIDTH, TileRef, encode_entry_bundle
from sigledger.ledger.wire import (
    BATCH_MAX_ENTRIES,
    ConsistencyAnswer,
    LookupAnswer,
    LookupEntry,
    LookupQuery,
)

HASH_SIZE = 32
DEFAULT_CACHE_BYTES = 256 << 20  # the read_cache_mb setting's default


class FullTiles:
    """A bounded LRU of the bytes of *full* hash tiles and *full* entry bundles, by
    their canonical path (``tile/0/x001/234``).

    Only full tiles and bundles (256 hashes or entries; paths without ``.p/``) may be
    stored: their bytes are fixed forever once the tree has grown past them, so an
    entry can never be stale and is never invalidated. Partial tiles change with every
    checkpoint and are never stored here (:meth:`put` refuses them).

    Memory is bounded by ``max_bytes`` of tile data (Python object overhead is a
    few hundred bytes per item on top): the least recently served item is dropped
    first. ``max_bytes`` 0 disables the cache.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path: str) -> bytes | None:
        """The bytes stored for ``path``, or None (counted as a miss)."""
        data = self._items.get(path)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(path)
        return data

    def put(self, path: str, data: bytes) -> None:
        """Remember the bytes of the full tile or bundle ``path``; ValueError for a
        partial one (its bytes would be wrong once the tree grows)."""
        if ".p/" in path:
            raise ValueError(f"{path} is a partial tile; only full tiles are immutable")
        if len(data) > self.max_bytes or path in self._items:
            return
        self._items[path] = data
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _old, dropped = self._items.popitem(last=False)
            self.bytes -= len(dropped)


class LogReads:
    """Reads of one log, against the checkpoint its sequencer publishes.

    Full tiles and bundles are kept in :attr:`full` (see :class:`FullTiles`) after
    the first read, so repeated reads of them cost no storage round trip.
    """

    def __init__(
        self,
        storage: LogStorage,
        sequencer: Sequencer,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.storage = storage
        self.sequencer = sequencer
        self.full = FullTiles(cache_bytes)

    @property
    def published(self) -> Published:
        pub = self.sequencer.published
        if pub is None:
            raise AssertionError("bad math in LogReads: reading a log that was never loaded")
        return pub

    def cached(self, path: str) -> bytes | None:
        """The bytes of the full tile or bundle at the canonical ``path`` if it was
        read before, else None. No published-size check is needed: a full tile was
        only stored after being served within a published tree, and trees only grow."""
        return self.full.get(path)

    async def tile(self, ref: TileRef, path: str) -> bytes:
        """The bytes of a hash tile or an entry bundle (``path``, its canonical path,
        names it in errors and in the cache of full tiles)."""
        data = self.full.get(path) if ref.width == TILE_WIDTH else None
        if data is None:
            data = await self._read_tile(ref, path)
            if ref.width == TILE_WIDTH:
                self.full.put(path, data)
        return data

    async def _read_tile(self, ref: TileRef, path: str) -> bytes:
        pub = self.published
        level = 0 if ref.is_entries else ref.level
        available = min(TILE_WIDTH, (pub.size >> (8 * level)) - ref.n * TILE_WIDTH)
        if available < ref.width:
            raise NotFoundError(f"{path} is beyond the published tree size {pub.size}")
        if ref.is_entries:
            start = ref.n * TILE_WIDTH
            entries = await self.storage.read_entries(start, start + ref.width)
            if len(entries) != ref.width:
                raise StorageInconsistentError(f"entries missing for {path}")
            return encode_entry_bundle(entries)
        data = await self.storage.read_tile(ref.level, ref.n)
        if data is None or len(data) < ref.width * HASH_SIZE:
            raise StorageInconsistentError(f"tile data missing for {path}")
        return data[: ref.width * HASH_SIZE]

    async def lookup(self, q: LookupQuery) -> LookupAnswer:
        """One page of the entries matching a hash or a release."""
        pub = self.published
        rows = await self.storage.lookup(
            EntryQuery(pub.size, q.sha256, q.project, q.version, q.identity, q.cursor, q.limit + 1)
        )
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        return await self._answer(pub, rows, rows[-1][0] + 1 if more else None)

    async def lookup_hashes(self, hashes: Sequence[bytes], related: bool) -> LookupAnswer:
        """Every entry with one of ``hashes`` and, with ``related``, every entry for
        the same file as one of those; all in one answer."""
        pub = self.published
        limit = BATCH_MAX_ENTRIES + 1
        rows = await self.storage.lookup_hashes(hashes, below=pub.size, limit=limit)
        if related and rows:
            files = {decode_entry(data).statement.identity.key for _i, data in rows}
            rows += await self.storage.lookup_identities(files, below=pub.size, limit=limit)
        unique = sorted(dict(rows).items())
        if len(unique) > BATCH_MAX_ENTRIES:
            raise TooManyResultsError(
                f"more than {BATCH_MAX_ENTRIES} matching entries; ask for fewer "
                "digests per request",
            )
        return await self._answer(pub, unique, None)

    async def _answer(
        self, pub: Published, rows: list[tuple[int, bytes]], next_cursor: int | None
    ) -> LookupAnswer:
        proofs = await self.sequencer.prove_inclusions([i for i, _ in rows], pub.size)
        entries = tuple(
            LookupEntry(i, data, tuple(proof))
            for (i, data), proof in zip(rows, proofs, strict=True)
        )
        return LookupAnswer(pub.size, pub.note, entries, next_cursor)

    async def consistency(self, old: int, new: int) -> ConsistencyAnswer:
        """The proof that the ``old``-tree is a prefix of the ``new``-tree."""
        size = self.published.size
        if new > size:
            raise BadQueryError(f"new ({new}) is beyond the published tree size {size}")
        proof = await self.sequencer.prove_consistency(old, new)
        return ConsistencyAnswer(old, new, tuple(proof))
