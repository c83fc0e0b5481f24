"""The LogStorage contract, run against every storage engine.

Each engine makes an opener that opens a fresh store for a temporary directory
(SQLite: a file in it; PostgreSQL: a new database on the test server of
``tests/postgres.py``); another engine joins by adding its factory to ``ENGINES``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sigledger.client.publish.submit import sign_statement
from sigledger.ledger import merkle
from sigledger.ledger.entry import Entry, Statement, encode_entry, file_identity
from sigledger.ledger.log.postgres import PostgresStorage
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.log.store import (
    Batch,
    Copied,
    EntryQuery,
    EntryRow,
    LogStorage,
    Page,
    StoredHead,
)
from sigledger.ledger.note import Signer
from sigledger.ledger.service.sqlite import StorageConflictError, StorageLockedError
from tests.postgres import PostgresServer

Opener = Callable[[Path], Awaitable[LogStorage]]
Engine = Callable[[pytest.FixtureRequest], Opener]
"""Makes an engine's opener for one test (it may need fixtures, e.g. a server)."""


def _sqlite(request: pytest.FixtureRequest) -> Opener:
    async def open_(tmp: Path) -> LogStorage:
        return await Storage.open(tmp / "log.db")

    return open_


def _postgresql(request: pytest.FixtureRequest) -> Opener:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    databases: dict[Path, str] = {}

    async def open_(tmp: Path) -> LogStorage:
        # One database per directory: opening the same one twice is a second writer.
        if tmp not in databases:
            databases[tmp] = server.create_database()
        return await PostgresStorage.open(databases[tmp])

    return open_


ENGINES: dict[str, Engine] = {"sqlite": _sqlite, "postgresql": _postgresql}


@pytest.fixture(params=sorted(ENGINES))
async def opener(request: pytest.FixtureRequest) -> Opener:
    return ENGINES[request.param](request)


@pytest.fixture
async def store(opener: Opener, tmp_path: Path) -> AsyncIterator[LogStorage]:
    s = await opener(tmp_path)
    await s.initialize({"origin": "example.org/log", "vkey": "v"}, b"\0" * 32, 1000)
    try:
        yield s
    finally:
        await s.close()


SIGNERS = {n: Signer.from_seed(n, hashlib.sha256(n.encode()).digest()) for n in ("a", "b", "c")}
ALICE, BOB, CAROL = (SIGNERS[n].vkey for n in ("a", "b", "c"))


def row(index: int, project: str, version: str, filename: str, signer: str = "a") -> EntryRow:
    """A real entry (stores decode what they index), logged at 1000 + index ms."""
    sha = hashlib.sha256(f"{index}:{project}:{filename}:{signer}".encode()).digest()
    signed = sign_statement(SIGNERS[signer], Statement(project, version, filename, sha, index))
    data = encode_entry(Entry(signed, 1000 + index))
    vkey = signed.signer_vkey()
    return EntryRow(
        index, data, project, version, filename, sha, vkey, 1000 + index,
        file_identity(filename).key,
    )  # fmt: skip


ROWS = [
    row(0, "demo", "1.0", "demo-1.0.tar.gz"),
    row(1, "demo", "1.0", "demo-1.0-py3-none-any.whl"),
    row(2, "other", "2.0", "other-2.0.tar.gz", signer="b"),
]


async def test_initialize_makes_an_empty_log(store: LogStorage) -> None:
    assert await store.get_meta("origin") == "example.org/log"
    head = await store.latest_head()
    assert head is not None and head.size == 0 and head.root == b"\0" * 32
    assert await store.count_entries() == 0
    assert await store.latest_head(published=True) is None


async def test_commit_batch_stores_entries_tiles_and_head(store: LogStorage) -> None:
    # Level-0 tiles are the entries' leaf hashes, whatever the batch says; higher
    # levels are stored as given.
    await store.commit_batch(
        Batch(ROWS, {(0, 0): b"t" * 96, (1, 0): b"u" * 32}, 3, b"\1" * 32, 2000)
    )
    assert await store.read_entries(0, 3) == [r.data for r in ROWS]
    assert await store.read_entries(1, 2) == [ROWS[1].data]
    leaves = b"".join(merkle.leaf_hash(r.data) for r in ROWS)
    assert await store.read_tile(0, 0) == leaves
    assert await store.read_tile(1, 0) == b"u" * 32
    assert await store.read_tiles([(0, 0), (1, 0), (0, 1), (2, 0)]) == {
        (0, 0): leaves,
        (1, 0): b"u" * 32,
    }
    assert await store.count_entries() == 3
    head = await store.latest_head()
    assert head is not None and (head.size, head.root, head.time_ms) == (3, b"\1" * 32, 2000)
    assert await store.checkpoint_time(3) == 2000


async def test_a_failed_batch_leaves_nothing(store: LogStorage) -> None:
    await store.commit_batch(Batch(ROWS[:1], {}, 1, b"\1" * 32, 2000))
    # A second root for size 1 is impossible, and takes its entries down with it.
    with pytest.raises(StorageConflictError):
        await store.commit_batch(Batch(ROWS[1:2], {(1, 0): b"x" * 32}, 1, b"\2" * 32, 3000))
    assert await store.count_entries() == 1
    assert await store.read_tile(1, 0) is None
    assert await store.read_tile(0, 0) == merkle.leaf_hash(ROWS[0].data)
    head = await store.latest_head()
    assert head is not None and head.root == b"\1" * 32


async def test_a_published_note_is_never_replaced_by_an_unpublished_one(
    store: LogStorage,
) -> None:
    await store.commit_batch(Batch(ROWS, {}, 3, b"\1" * 32, 2000))
    await store.save_notes([(3, b"note-a", False)])
    assert await store.latest_head(published=True) is None
    await store.save_notes([(3, b"note-b", True)])
    await store.save_notes([(3, b"note-c", False)])
    head = await store.latest_head(published=True)
    assert head is not None and head.note == b"note-b" and head.published


async def test_lookups_are_bounded_by_the_tree_size(store: LogStorage) -> None:
    await store.commit_batch(Batch(ROWS, {}, 3, b"\1" * 32, 2000))
    got = await store.lookup(EntryQuery(below=3, project="demo"))
    assert [i for i, _ in got] == [0, 1]
    assert [i for i, _ in await store.lookup(EntryQuery(below=1, project="demo"))] == [0]
    assert await store.lookup(EntryQuery(below=3, sha256=ROWS[2].sha256)) == [(2, ROWS[2].data)]
    hashes = [ROWS[0].sha256, ROWS[2].sha256]
    assert [i for i, _ in await store.lookup_hashes(hashes, below=3, limit=10)] == [0, 2]
    assert [i for i, _ in await store.lookup_hashes(hashes, below=2, limit=10)] == [0]
    # Any spelling of a filename is the same file identity.
    spelled = file_identity("Demo-1.0.tar.gz").key
    assert [i for i, _ in await store.lookup_identities([spelled], below=3, limit=10)] == [0]


async def test_bindings_and_file_counts(store: LogStorage) -> None:
    await store.commit_batch(Batch(ROWS, {}, 3, b"\1" * 32, 2000))
    key = (ALICE, ROWS[1].identity)
    found = await store.find_bindings([key, (CAROL, ROWS[1].identity)])
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


# A log with two projects, two signers, a file logged twice with different hashes
# (as logs written before the identity rule may hold) and mixed-case spellings.
EXPLORED = [
    row(0, "demo", "1.0", "demo-1.0.tar.gz"),
    row(1, "demo", "2.0", "demo-2.0.tar.gz"),
    row(2, "demo", "1.0", "demo-1.0-py3-none-any.whl", signer="b"),
    row(3, "other", "0.1", "other-0.1.tar.gz", signer="b"),
    row(4, "demo", "1.0", "Demo-1.0.tar.gz", signer="b"),
    row(5, "demo", "1.0", "demo-1.0.tar.gz", signer="c"),
    row(6, "demo", "10.0", "demo-10.0.tar.gz"),
]


async def test_explorer_reads_order_and_page_alike(store: LogStorage) -> None:
    await store.commit_batch(Batch(EXPLORED[:4], {}, 4, b"\1" * 32, 2000))
    await store.commit_batch(Batch(EXPLORED[4:], {}, 7, b"\2" * 32, 3000))
    assert [i for i, _ in await store.entries_before(7, 3)] == [6, 5, 4]
    assert await store.growth(7, 10) == [(0, 1000), (4, 2000), (7, 3000)]
    page = await store.project_entries("demo", None, Page(7, limit=3))
    assert [i for i, _ in page] == [4, 2, 0]  # by (version, filename, index), bytewise
    rest = await store.project_entries("demo", None, Page(7, page[-1][0], 10))
    assert [i for i, _ in rest] == [5, 6, 1]
    assert [i for i, _ in await store.project_entries("demo", "1.0", Page(7))] == [4, 2, 0, 5]
    assert [i for i, _ in await store.project_entries("demo", None, Page(5))] == [4, 2, 0, 1]
    assert await store.project_versions("demo", 7, 10, 100) == [
        ("10.0", 1, 6, 1006),
        ("2.0", 1, 1, 1001),
        ("1.0", 4, 0, 1000),
    ]
    assert await store.project_signers("demo", 7, 10, 100) == [
        (ALICE, 3, 0),
        (BOB, 2, 2),
        (CAROL, 1, 5),
    ]
    conflicts = await store.project_conflicts("demo", 7, 10, 100)
    assert conflicts == [("1.0", "Demo-1.0.tar.gz", 3, 3)]
    page = await store.signer_entries(BOB, Page(7, limit=2))
    assert [i for i, _ in page] == [4, 2]  # by (project, version, filename)
    assert [i for i, _ in await store.signer_entries(BOB, Page(7, page[-1][0]))] == [3]
    assert await store.signer_entries(SIGNERS["a"].vkey + "x", Page(7)) == []
    assert await store.signer_projects(BOB, 7, 10, 100) == [("demo", 2, 2), ("other", 1, 3)]
    counts = await store.file_hash_counts([EXPLORED[0].identity, "nothing"], 7)
    assert counts == {EXPLORED[0].identity: (3, 3, 3)}
    assert await store.file_hash_counts([EXPLORED[0].identity], 5) == {
        EXPLORED[0].identity: (2, 2, 2)
    }
    found = await store.lookup(EntryQuery(below=7, project="demo", version="1.0", start=1, limit=2))
    assert [i for i, _ in found] == [2, 4]
    same = [EXPLORED[0].identity, EXPLORED[3].identity]
    assert [i for i, _ in await store.lookup_identities(same, below=7, limit=3)] == [0, 3, 4]
    assert await store.identity_violations() == []


async def test_explorer_finds_hash_prefixes_and_signer_names(store: LogStorage) -> None:
    """The explorer's search by what it shows: a hash's first digits, a key's name."""
    names = {"alice1": "alice", "alice2": "alice", "aliceb": "alice.b", "alicf": "alicf"}
    for short, name in names.items():
        SIGNERS[short] = Signer.from_seed(name, hashlib.sha256(short.encode()).digest())
    named = [
        row(0, "demo", "1.0", "demo-1.0.tar.gz", signer="alice1"),
        row(1, "demo", "1.0", "demo-1.0-py3-none-any.whl", signer="alice2"),
        row(2, "demo", "2.0", "demo-2.0.tar.gz", signer="aliceb"),
        row(3, "demo", "3.0", "demo-3.0.tar.gz", signer="alicf"),
    ]
    alices = sorted(SIGNERS[n].vkey for n in ("alice1", "alice2"))
    await store.commit_batch(Batch(named, {}, 4, b"\1" * 32, 2000))
    digest = named[2].sha256
    assert await store.hashes_between(digest[:6] + bytes(26), digest[:6] + b"\xff" * 26, 4, 9) == [
        digest
    ]
    assert await store.hashes_between(digest[:6] + bytes(26), digest[:6] + b"\xff" * 26, 2, 9) == []
    everything = await store.hashes_between(bytes(32), b"\xff" * 32, 4, 9)
    assert everything == sorted(r.sha256 for r in named)
    assert await store.hashes_between(bytes(32), b"\xff" * 32, 4, 2) == everything[:2]
    assert await store.signers_between("alice+", "alice,", 9) == alices
    assert await store.signers_between("alice+", "alice,", 1) == alices[:1]
    assert await store.signers_between("alic+", "alic,", 9) == []


async def test_bindings_of_old_logs(store: LogStorage) -> None:
    # Two spellings of one file by one signer: possible before the identity rule
    # (migrating such a log records them as identity violations: test_identity.py).
    old = [row(0, "demo", "1.0", "demo-1.0.tar.gz"), row(1, "demo", "1.0", "Demo-1.0.tar.gz")]
    await store.commit_batch(
        Batch([*old, row(2, "demo", "1.0", "DEMO-1.0.tar.gz", "b")], {}, 3, b"\1" * 32, 2000)
    )
    key = old[0].identity
    found = await store.find_bindings([(ALICE, key), (BOB, key)])
    assert {k: [b.index for b in v] for k, v in found.items()} == {
        (ALICE, key): [0, 1],
        (BOB, key): [2],
    }


async def test_bulk_copy_reads_back_what_it_loads(store: LogStorage) -> None:
    await store.commit_batch(Batch(ROWS[:2], {(1, 0): b"a" * 32}, 2, b"\1" * 32, 2000))
    await store.save_notes([(2, b"note-2", True)])
    await store.commit_batch(Batch(ROWS[2:], {(1, 0): b"b" * 32}, 3, b"\2" * 32, 3000))
    assert await store.read_entry_rows(0, 10) == ROWS
    assert await store.read_entry_rows(1, 2) == ROWS[1:2]
    heads = await store.read_heads(1, 10)
    assert [(h.size, h.note, h.published) for h in heads] == [
        (2, b"note-2", True),
        (3, None, False),
    ]
    assert [h.size for h in await store.read_heads(0, 2)] == [0, 2]
    leaves = b"".join(merkle.leaf_hash(r.data) for r in ROWS)
    assert await store.read_tile_rows(None, 10) == [(0, 0, leaves), (1, 0, b"b" * 32)]
    assert await store.read_tile_rows(None, 1) == [(0, 0, leaves)]
    assert await store.read_tile_rows((0, 0), 10) == [(1, 0, b"b" * 32)]
    assert await store.read_tile_rows((1, 0), 10) == []
    meta = await store.all_meta()
    assert meta["origin"] == "example.org/log" and "schema_version" in meta


async def test_load_is_atomic(opener: Opener, tmp_path: Path) -> None:
    s = await opener(tmp_path)
    try:
        heads = [StoredHead(0, b"\0" * 32, 1000, None), StoredHead(3, b"\1" * 32, 2000, b"n", True)]
        await s.load(Copied(ROWS, {(0, 0): b"t" * 96, (1, 0): b"u" * 32}, heads, {"origin": "o"}))
        assert await s.read_entry_rows(0, 3) == ROWS
        assert await s.latest_head(published=True) == heads[1]
        assert await s.get_meta("origin") == "o"
        # Entry 2 again: nothing of this load stays.
        with pytest.raises(StorageConflictError):
            await s.load(Copied(ROWS[2:], {(2, 0): b"x" * 32}, meta={"origin": "p"}))
        assert await s.read_tile(2, 0) is None
        assert await s.read_tile(1, 0) == b"u" * 32
        assert await s.get_meta("origin") == "o"
    finally:
        await s.close()


# -- a log past its first full tiles -------------------------------------------------

# 700 entries: 12 projects, several versions and wheels each, three signers; an sdist
# every 50 entries, so some files are logged more than once.
MANY = [
    row(
        i,
        f"proj{i % 12}",
        f"{i % 5}.0",
        f"proj{i % 12}-{i % 5}.0-{i}-py3-none-any.whl"
        if i % 50
        else f"proj{i % 12}-{i % 5}.0.tar.gz",
        signer="abc"[i % 3] if i % 7 else "c",
    )
    for i in range(700)
]


async def _commit_many(store: LogStorage, sizes: list[int], done: int = 0) -> None:
    """Commit MANY[done:] in batches ending at each of ``sizes``."""
    for size in sizes:
        await store.commit_batch(
            Batch(MANY[done:size], {}, size, size.to_bytes(32, "big"), 2000 + size)
        )
        done = size


async def test_full_tiles_read_like_the_rest(store: LogStorage) -> None:
    """Entries of full level-0 tiles (which an engine may store apart: the PostgreSQL
    engine seals them) answer every read exactly as the newest ones do, also when a
    batch fills several tiles at once and across the boundaries."""
    await _commit_many(store, [100, 255, 256, 300, 699, 700])
    datas = [r.data for r in MANY]
    assert await store.count_entries() == 700
    assert await store.read_entries(0, 700) == datas
    assert await store.read_entries(250, 520) == datas[250:520]
    assert await store.read_entries(690, 800) == datas[690:]
    assert await store.read_entry_rows(510, 515) == MANY[510:515]
    assert [i for i, _ in await store.entries_before(515, 4)] == [514, 513, 512, 511]
    tiles = await store.read_tiles([(0, 1), (0, 2)])
    assert tiles[(0, 1)] == b"".join(merkle.leaf_hash(d) for d in datas[256:512])
    assert tiles[(0, 2)] == b"".join(merkle.leaf_hash(d) for d in datas[512:])
    for i in (0, 255, 256, 511, 512, 699):
        found = await store.lookup(EntryQuery(below=700, sha256=MANY[i].sha256))
        assert found == [(i, datas[i])]
        assert await store.lookup(EntryQuery(below=i, sha256=MANY[i].sha256)) == []

    def expect(pred: Callable[[EntryRow], bool], below: int = 700) -> list[int]:
        return [r.index for r in MANY[:below] if pred(r)]

    release = await store.lookup(EntryQuery(below=600, project="proj5", version="0.0"))
    assert [i for i, _ in release] == expect(
        lambda r: (r.project, r.version) == ("proj5", "0.0"), 600
    )
    page = await store.lookup(EntryQuery(below=700, project="proj3", start=200, limit=7))
    assert [i for i, _ in page] == expect(lambda r: r.project == "proj3" and r.index >= 200)[:7]
    whole = await store.project_entries("proj7", None, Page(700, limit=1000))
    assert sorted(i for i, _ in whole) == expect(lambda r: r.project == "proj7")
    mine = await store.signer_entries(BOB, Page(650, limit=1000))
    assert sorted(i for i, _ in mine) == expect(lambda r: r.signer == BOB, 650)
    assert await store.signer_projects(CAROL, 700, 100, 10_000) == sorted(
        (p, len(ids), ids[0])
        for p in {r.project for r in MANY}
        if (ids := expect(lambda r, p=p: r.signer == CAROL and r.project == p))
    )
    twice = MANY[100].identity
    same = [r for r in MANY if r.identity == twice]
    assert len(same) > 1
    assert await store.file_hash_counts([twice], 700) == {
        twice: (len({r.sha256 for r in same}), len(same), len({r.signer for r in same}))
    }
    bound = await store.find_bindings([(MANY[100].signer, twice)])
    assert [b.index for b in bound[(MANY[100].signer, twice)]] == [
        r.index for r in same if r.signer == MANY[100].signer
    ]
    hashes = sorted(r.sha256 for r in MANY)
    assert await store.hashes_between(bytes(32), b"\xff" * 32, 700, 1000) == hashes
    low = hashes[300][:1] + bytes(31)
    high = hashes[300][:1] + b"\xff" * 31
    assert (
        await store.hashes_between(low, high, 700, 3) == [h for h in hashes if low <= h <= high][:3]
    )
    below = sorted(r.sha256 for r in MANY[:300])
    assert await store.hashes_between(bytes(32), b"\xff" * 32, 300, 1000) == below
    # An index of a full tile is not written again, and the refused batch leaves nothing.
    with pytest.raises(StorageConflictError):
        await store.commit_batch(Batch([MANY[5]], {}, 701, b"\3" * 32, 9000))
    assert await store.count_entries() == 700
    assert await store.read_entries(5, 6) == [datas[5]]
    head = await store.latest_head()
    assert head is not None and head.size == 700
