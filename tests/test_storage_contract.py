"""The LogStorage contract, run against every storage engine.

Each engine is a factory that opens a fresh store in a temporary directory; a
second engine (e.g. PostgreSQL) joins by adding its factory to ``ENGINES``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sigledger.ledger.entry import file_identity
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.log.store import EntryRow, LogStorage
from sigledger.ledger.service.sqlite import StorageConflictError, StorageLockedError

Opener = Callable[[Path], Awaitable[LogStorage]]


async def _sqlite(tmp: Path) -> LogStorage:
    return await Storage.open(tmp / "log.db")


ENGINES: dict[str, Opener] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(ENGINES))
async def opener(request: pytest.FixtureRequest) -> Opener:
    return ENGINES[request.param]


@pytest.fixture
async def store(opener: Opener, tmp_path: Path) -> AsyncIterator[LogStorage]:
    s = await opener(tmp_path)
    await s.initialize({"origin": "example.org/log", "vkey": "v"}, b"\0" * 32, 1000)
    try:
        yield s
    finally:
        await s.close()


def row(index: int, project: str, version: str, filename: str, signer: str = "alice") -> EntryRow:
    data = f"{index}:{project}:{filename}:{signer}".encode()
    return EntryRow(
        index,
        data,
        project,
        version,
        filename,
        hashlib.sha256(data).digest(),
        signer,
        1000 + index,
        file_identity(filename).key,
    )


ROWS = [
    row(0, "demo", "1.0", "demo-1.0.tar.gz"),
    row(1, "demo", "1.0", "demo-1.0-py3-none-any.whl"),
    row(2, "other", "2.0", "other-2.0.tar.gz", signer="bob"),
]


async def test_initialize_makes_an_empty_log(store: LogStorage) -> None:
    assert await store.get_meta("origin") == "example.org/log"
    head = await store.latest_head()
    assert head is not None and head.size == 0 and head.root == b"\0" * 32
    assert await store.count_entries() == 0
    assert await store.latest_head(published=True) is None


async def test_commit_batch_stores_entries_tiles_and_head(store: LogStorage) -> None:
    await store.commit_batch(ROWS, {(0, 0): b"t" * 96}, 3, b"\1" * 32, 2000)
    assert await store.read_entries(0, 3) == [r.data for r in ROWS]
    assert await store.read_entries(1, 2) == [ROWS[1].data]
    assert await store.read_tile(0, 0) == b"t" * 96
    assert await store.read_tiles([(0, 0), (1, 0)]) == {(0, 0): b"t" * 96}
    assert await store.count_entries() == 3
    head = await store.latest_head()
    assert head is not None and (head.size, head.root, head.time_ms) == (3, b"\1" * 32, 2000)
    assert await store.checkpoint_time(3) == 2000


async def test_a_failed_batch_leaves_nothing(store: LogStorage) -> None:
    await store.commit_batch(ROWS[:1], {}, 1, b"\1" * 32, 2000)
    # A second root for size 1 is impossible, and takes its entries down with it.
    with pytest.raises(StorageConflictError):
        await store.commit_batch(ROWS[1:2], {(0, 0): b"x" * 32}, 1, b"\2" * 32, 3000)
    assert await store.count_entries() == 1
    assert await store.read_tile(0, 0) is None
    head = await store.latest_head()
    assert head is not None and head.root == b"\1" * 32


async def test_a_published_note_is_never_replaced_by_an_unpublished_one(
    store: LogStorage,
) -> None:
    await store.commit_batch(ROWS, {}, 3, b"\1" * 32, 2000)
    await store.save_notes([(3, b"note-a", False)])
    assert await store.latest_head(published=True) is None
    await store.save_notes([(3, b"note-b", True)])
    await store.save_notes([(3, b"note-c", False)])
    head = await store.latest_head(published=True)
    assert head is not None and head.note == b"note-b" and head.published


async def test_lookups_are_bounded_by_the_tree_size(store: LogStorage) -> None:
    await store.commit_batch(ROWS, {}, 3, b"\1" * 32, 2000)
    got = await store.lookup(below=3, project="demo")
    assert [i for i, _ in got] == [0, 1]
    assert [i for i, _ in await store.lookup(below=1, project="demo")] == [0]
    assert await store.lookup(below=3, sha256=ROWS[2].sha256) == [(2, ROWS[2].data)]
    hashes = [ROWS[0].sha256, ROWS[2].sha256]
    assert [i for i, _ in await store.lookup_hashes(hashes, below=3, limit=10)] == [0, 2]
    assert [i for i, _ in await store.lookup_hashes(hashes, below=2, limit=10)] == [0]
    # Any spelling of a filename is the same file identity.
    spelled = file_identity("Demo-1.0.tar.gz").key
    assert [i for i, _ in await store.lookup_identities([spelled], below=3, limit=10)] == [0]


async def test_bindings_and_file_counts(store: LogStorage) -> None:
    await store.commit_batch(ROWS, {}, 3, b"\1" * 32, 2000)
    key = ("alice", ROWS[1].identity)
    found = await store.find_bindings([key, ("carol", ROWS[1].identity)])
    assert list(found) == [key]
    assert [(b.index, b.sha256) for b in found[key]] == [(1, ROWS[1].sha256)]
    counts = await store.file_hash_counts([ROWS[0].identity, ROWS[2].identity], 3)
    assert counts[ROWS[0].identity] == (1, 1, 1)
    assert await store.identity_violations() == []


async def test_a_second_writer_is_refused(opener: Opener, tmp_path: Path) -> None:
    first = await opener(tmp_path)
    try:
        with pytest.raises(StorageLockedError):
            await opener(tmp_path)
    finally:
        await first.close()
