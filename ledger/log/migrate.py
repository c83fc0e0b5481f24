"""Copy a log from one database to another, and prove the copy (``sigledger migrate``).

:func:`migrate` opens both stores through
:func:`~sigledger.ledger.log.database.open_storage` (so it takes both writer locks:
neither log may be running) and refuses a target that holds anything. It then copies,
in batches of ``batch`` rows, each batch one transaction:

1. the entries, with every stored column, by index;
2. the hash tiles, by (level, n);
3. every tree head with its signed note and published flag, by size;
4. once the copy is proven (below), the metadata (origin, log key; not the engine's
   own ``schema_version``).

Metadata goes last on purpose: a copy that was interrupted, or failed its proof, has
no ``origin``, and ``sigledger serve`` refuses a database with entries or tree heads
but no origin. Empty the target and run again.

The proof (:func:`prove_copy`) reads the target alone and uses
:mod:`sigledger.ledger.merkle`: the copied entries are re-hashed into a tree; every
copied tree head must have the root of the entries below its size, every copied
tile must equal the tile rebuilt from the entries (and there must be no other),
the root folded from the copied edge tiles alone must equal the newest head's,
that head must be the source's newest (size, root and note), and there must be as
many tree heads as the source has. Any difference raises
:class:`~sigledger.ledger.errors.VerificationError`; the target must then be discarded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from sigledger.ledger import merkle
from sigledger.ledger.errors import ConfigError, VerificationError
from sigledger.ledger.log.database import describe, open_storage, parse_database_url
from sigledger.ledger.log.indexed import SALT_KEY
from sigledger.ledger.log.store import Copied, LogStorage, StoredHead
from sigledger.ledger.log.tiletree import TiledTree
from sigledger.ledger.service.sqlite import StorageError
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, hash_from_tile, tile_for_node

__all__ = ["MigrationReport", "Progress", "migrate", "prove_copy"]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages: ``entries``, ``tiles``,
``tree heads`` (done and total are tree sizes), ``proof`` (entries re-hashed)."""

_FULL_TILE = TILE_WIDTH * 32
# Metadata that belongs to the database engine, not to the log (the index salt belongs
# to one database's keys: a copy makes its own).
_ENGINE_META = {"schema_version", SALT_KEY}


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What was copied, and the root the copy was proven to have."""

    source: str
    target: str
    entries: int
    tiles: int
    heads: int
    size: int
    root: bytes


async def migrate(
    source: str, target: str, *, batch: int = 5000, progress: Progress | None = None
) -> MigrationReport:
    """Copy the log at database URL ``source`` into the empty database ``target``.

    Raises ConfigError (bad URLs, a missing source, a non-empty target),
    StorageLockedError (a server is running on either), StorageError, and
    VerificationError when the copy does not prove equal to the source.
    """
    if batch < 1:
        raise ConfigError("the batch size must be at least 1")
    _check_urls(source, target)
    src_where, dst_where = describe(source), describe(target)
    report = _Progress(progress)
    src = await open_storage(source)
    try:
        dst = await open_storage(target)
        try:
            head = await src.latest_head()
            meta = {k: v for k, v in (await src.all_meta()).items() if k not in _ENGINE_META}
            if head is None or "origin" not in meta:
                raise ConfigError(f"the source database {src_where} holds no log")
            if (count := await src.count_entries()) != head.size:
                # Impossible with atomic commits: copying it would hide the damage.
                raise StorageError(
                    f"the source database {src_where} holds {count} entries but its newest "
                    f"tree head has size {head.size}; it is inconsistent and is not copied"
                )
            if not await _is_empty(dst):
                raise ConfigError(
                    f"the target database {dst_where} is not empty; migrate copies only into "
                    "an empty database (drop and re-create it, or choose another)"
                )
            entries = await _copy_entries(src, dst, head.size, batch, report)
            tiles = await _copy_tiles(src, dst, head.size, batch, report)
            heads = await _copy_heads(src, dst, head.size, batch, report)
            await dst.settle()
            try:
                root = await prove_copy(dst, head, heads=heads, batch=batch, progress=progress)
            except VerificationError as exc:
                raise VerificationError(
                    f"the copy in {dst_where} is not the source's log: {exc}. Discard it (drop "
                    "the database or delete the file); it holds no origin, so no server uses it"
                ) from exc
            # Last: only a proven copy becomes a log a server will open.
            await dst.load(Copied(meta=meta))
        finally:
            await dst.close()
    finally:
        await src.close()
    return MigrationReport(src_where, dst_where, entries, tiles, heads, head.size, root)


async def prove_copy(
    store: LogStorage,
    expected: StoredHead,
    *,
    heads: int | None = None,
    batch: int = 5000,
    progress: Progress | None = None,
) -> bytes:
    """Prove from ``store`` alone that it holds the log whose newest head is ``expected``
    and, if given, ``heads`` tree heads (see the module docstring); its root.
    VerificationError on any difference."""
    report = _Progress(progress)
    head = await store.latest_head()
    if head is None or (head.size, head.root, head.note) != (
        expected.size,
        expected.root,
        expected.note,
    ):
        raise VerificationError(
            f"the copy's newest tree head ({_head_text(head)}) is not the source's "
            f"({_head_text(expected)})"
        )
    size = head.size
    tree = TiledTree(0, {}, cache_tiles=1)
    rebuilt: dict[tuple[int, int], bytes] = {}  # tiles not yet compared
    compared = 0
    stored_heads = _heads(store, batch)
    seen = 0
    next_head = await anext(stored_heads, None)
    for start in range(0, size, batch):
        data = await store.read_entries(start, min(size, start + batch))
        if len(data) != min(size, start + batch) - start:
            raise VerificationError(f"the copy lacks entries in [{start}, {start + batch})")
        hashes = [merkle.leaf_hash(d) for d in data]
        pos = 0
        while pos < len(hashes) or (next_head is not None and next_head.size == tree.size):
            if next_head is not None and next_head.size == tree.size:
                _check_head(next_head, tree.root())
                seen += 1
                next_head = await anext(stored_heads, None)
                continue
            stop = len(hashes)
            if next_head is not None:
                stop = min(stop, pos + next_head.size - tree.size)
            rebuilt.update(tree.append(hashes[pos:stop]))
            pos = stop
        full = {ref: t for ref, t in rebuilt.items() if len(t) == _FULL_TILE}
        compared += await _compare_tiles(store, full)
        for ref in full:
            del rebuilt[ref]
        report("proof", start + len(data), size)
    while next_head is not None:  # the size-0 head of an empty log, or heads beyond it
        if next_head.size != tree.size:
            raise VerificationError(f"the copy has a tree head at size {next_head.size} > {size}")
        _check_head(next_head, tree.root())
        seen += 1
        next_head = await anext(stored_heads, None)
    if heads is not None and seen != heads:
        raise VerificationError(f"the copy holds {seen} tree heads, the source {heads}")
    compared += await _compare_tiles(store, rebuilt)
    stored = await _count_tiles(store, batch)
    if stored != compared:
        raise VerificationError(f"the copy holds {stored} hash tiles, the entries make {compared}")
    # The root again, from the copied tiles alone.
    from_tiles = await _root_from_tiles(store, size)
    if from_tiles != head.root or tree.root() != head.root:
        raise VerificationError(f"the copy's tiles and entries do not hash to the root at {size}")
    return head.root


# -- copying -------------------------------------------------------------------------


def _check_urls(source: str, target: str) -> None:
    engine, path = parse_database_url(source)
    parse_database_url(target)
    # Opening a SQLite file that is not there would create an empty one.
    if engine == "sqlite" and not Path(path).is_file():
        raise ConfigError(f"the source database {describe(source)} does not exist")
    if source == target:
        raise ConfigError("the source and the target are the same database")


class _Progress:
    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(stage, done, total)


async def _is_empty(store: LogStorage) -> bool:
    meta = set(await store.all_meta()) - _ENGINE_META
    return (
        not meta
        and not await store.read_heads(0, 1)
        and await store.count_entries() == 0
        and not await store.read_tile_rows(None, 1)
    )


async def _copy_entries(
    src: LogStorage, dst: LogStorage, size: int, batch: int, report: _Progress
) -> int:
    report("entries", 0, size)
    for start in range(0, size, batch):
        rows = await src.read_entry_rows(start, min(size, start + batch))
        await dst.load(Copied(entries=rows))
        report("entries", start + len(rows), size)
    return size


async def _copy_tiles(
    src: LogStorage, dst: LogStorage, size: int, batch: int, report: _Progress
) -> int:
    total = _tile_count(size)
    copied = 0
    after: tuple[int, int] | None = None
    report("tiles", 0, total)
    while rows := await src.read_tile_rows(after, batch):
        await dst.load(Copied(tiles={(lv, n): data for lv, n, data in rows}))
        copied += len(rows)
        after = rows[-1][:2]
        report("tiles", copied, max(total, copied))
    return copied


async def _copy_heads(
    src: LogStorage, dst: LogStorage, size: int, batch: int, report: _Progress
) -> int:
    copied = 0
    report("tree heads", 0, size)
    start = 0
    while rows := await src.read_heads(start, batch):
        await dst.load(Copied(heads=rows))
        copied += len(rows)
        start = rows[-1].size + 1
        report("tree heads", min(rows[-1].size, size), size)
    return copied


# -- proving -------------------------------------------------------------------------


async def _heads(store: LogStorage, batch: int) -> AsyncIterator[StoredHead]:
    start = 0
    while rows := await store.read_heads(start, batch):
        for head in rows:
            yield head
        start = rows[-1].size + 1


def _check_head(head: StoredHead, root: bytes) -> None:
    if head.root != root:
        raise VerificationError(
            f"the copied tree head at size {head.size} does not have the root of the copied "
            "entries below it"
        )


async def _compare_tiles(store: LogStorage, expected: dict[tuple[int, int], bytes]) -> int:
    if not expected:
        return 0
    stored = await store.read_tiles(expected)
    for ref, data in expected.items():
        if stored.get(ref) != data:
            raise VerificationError(
                f"the copied hash tile {ref[0]}/{ref[1]} differs from the one "
                "rebuilt from the copied entries"
            )
    return len(expected)


async def _count_tiles(store: LogStorage, batch: int) -> int:
    count = 0
    after: tuple[int, int] | None = None
    while rows := await store.read_tile_rows(after, batch):
        count += len(rows)
        after = rows[-1][:2]
    return count


def _tile_count(size: int) -> int:
    """How many hash tiles a tree of ``size`` leaves stores (full and partial)."""
    count, width = 0, size
    while width:
        count += -(-width // TILE_WIDTH)
        width >>= TILE_HEIGHT
    return count


async def _root_from_tiles(store: LogStorage, size: int) -> bytes:
    """The root of ``size`` folded from the stored tiles holding its perfect subtrees."""
    places = {node: tile_for_node(*node) for node in merkle.tree_nodes(size)}
    stored = await store.read_tiles({(ref.level, ref.n) for ref, _, _ in places.values()})

    def node(level: int, index: int) -> bytes:
        ref, offset, count = places[(level, index)]
        data = stored.get((ref.level, ref.n))
        if data is None:
            raise VerificationError(f"the copy lacks hash tile {ref.level}/{ref.n}")
        return hash_from_tile(data, offset, count)

    return merkle.root_from(size, node)


def _head_text(head: StoredHead | None) -> str:
    return "none" if head is None else f"size {head.size}, root {head.root.hex()[:16]}..."
