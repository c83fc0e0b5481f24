"""Durable storage of a log in a PostgreSQL database (asyncpg).

:class:`PostgresStorage` implements :class:`~sigledger.ledger.log.store.LogStorage`
with the semantics of the SQLite engine (:mod:`sigledger.ledger.log.storage`): the
same records, constraints, orderings and paging, so the two are interchangeable and
``sigledger migrate`` copies a log from one to the other.

Layout (schema version 4)::

    meta(key PRIMARY KEY, value)                 origin, log vkey, schema_version, index salt
    signers(id integer PRIMARY KEY,              every signer verifier key, stored once;
            vkey UNIQUE)                         entries refer to it by id
    entries(idx bigint PRIMARY KEY,              the unsealed tail: entries of the level-0
            hkey bigint, fkey bigint,            tile that is not full yet, with their hash
            signer integer,                      key, file key (indexed.py) and signer id;
            data bytea)                          indexes (hkey), (fkey), (signer)
    bundles(n bigint PRIMARY KEY, data bytea)    sealed entries 256 n .. 256 n + 255, one
                                                 packed value (packed.py), stored
                                                 uncompressed out of line (EXTERNAL) so
                                                 that one entry is two slices of it
    key_runs(kind smallint, lo bytea,            sorted runs of the sealed entries' keys:
             items bytea, PRIMARY KEY (kind, lo)) kind 0 hash keys, 1 file keys, 2 signer
                                                 ids (packed.py)
    tiles(level smallint, n bigint, data bytea,  the newest bytes of hash tile (level, n),
                                                 level >= 1 (level 0: indexed.py)
          PRIMARY KEY (level, n))
    checkpoints(size bigint PRIMARY KEY,         every committed tree head: one root per
                time_ms, published boolean,      size; ``note`` is the signed note,
                root bytea, note bytea)          ``published`` once readers were shown it
    leader(id = 1, epoch bigint,                 high availability (ha.py): the current
           lease_until, holder)                  leader's epoch, lease and internal URL

**Sealing.** A row costs about 28 bytes of tuple header and line pointer, an index
entry about 30 after page splits, so an entry kept as a row with three indexes takes
its leaf bytes plus about 170. Entries are therefore written to ``entries`` and,
in the transaction of the commit that fills their level-0 tile, **sealed**: packed
into one ``bundles`` row, their keys merged into ``key_runs`` (each affected run
rewritten, split beyond 48 items) and their rows deleted. Runs are small and their
pages 30% free, so that PostgreSQL rewrites them in place (HOT updates, no index
change), and the store vacuums ``entries`` and ``key_runs`` every 16 bundles, so the
space of deleted and rewritten rows is reused at once rather than after
autovacuum's next round. An entry then takes its leaf bytes plus about 70-90 bytes,
however it got there (``bench/bench_storage.py``). A copy (``sigledger migrate``)
and the schema 3 -> 4 migration seal everything at the end in one pass over sorted
keys instead, and rebuild ``entries`` so that no dead rows are left behind.

Readers look in ``entries`` first and in the sealed part second, each statement in
its own snapshot: an entry moves only from the first to the second, so between the
two it is found once or twice (answers are merged by index), never missed. Sealed
bundles never change, so the last ones read are cached (decoded).

Lookups, the binding check and the explorer's aggregates are shared with SQLite
(:mod:`~sigledger.ledger.log.indexed`) over the primitives implemented here.

Text columns use the "C" collation (bytewise, like SQLite's BINARY collation).
Fixed-width columns come first in each table, which keeps rows free of padding.

Contracts (those of :class:`~sigledger.ledger.log.store.LogStorage`):

* :meth:`PostgresStorage.commit_batch` is one transaction on the writer connection,
  durable when it returns: the writer session sets ``synchronous_commit = on``
  (whatever the server's default); the server must run with ``fsync = on``, and
  opening a log on one that does not logs a warning. Constraint violations (a
  second root for one size, a reused index, a reused (signer, file) binding) raise
  :class:`StorageConflictError` and leave nothing behind; every other database
  failure raises :class:`StorageError`.
* Single writer: :func:`_take_writer_lock` holds the session-level advisory lock
  :data:`WRITER_LOCK` (advisory locks are per database) on the writer connection
  for as long as the store is open; another process gets
  :class:`StorageLockedError` at open. PostgreSQL drops the lock when the session
  ends, also when the holder is killed. Should the writer connection be lost, the
  next write reconnects and takes the lock again (or fails if someone else took it
  meanwhile).
* Standby mode (``open(..., standby=True)``, ``serve --ha``; see
  :mod:`sigledger.ledger.log.ha`): no writer lock at open. :meth:`PostgresStorage.try_lead`
  takes it on a new session and increments ``leader.epoch``; from then on every
  ``commit_batch`` and ``save_notes`` transaction starts with the fencing UPDATE of
  the leader row (its epoch still current, its session still holding the lock) and
  aborts with :class:`FencedError` otherwise, also when the writer session was lost:
  a leader never reconnects as the writer. Other writes (log creation, metadata)
  use the read pool.
* Reads run on a small connection pool, so they see the last committed state and
  never wait behind a commit (MVCC).

Migrations: :data:`MIGRATIONS` is a list of SQL scripts (or Python steps, for what
SQL cannot compute); step ``i`` takes schema version ``i`` to ``i + 1`` (version 0:
an empty database). At open, under the
writer lock, every script past ``meta.schema_version`` runs and the new version is
written, all in one transaction (DDL is transactional in PostgreSQL). A future
schema change is one more script appended to the list, never an edit of an old one.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from array import array
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from sigledger.ledger.errors import FormatError
from sigledger.ledger.log.database import redact
from sigledger.ledger.log.indexed import (
    REPORT_EVERY,
    SALT_KEY,
    VIOLATIONS_KEY,
    IndexedLookups,
    IndexKeys,
    Leaf,
    new_salt,
    violations_json,
)
from sigledger.ledger.log.packed import (
    KEY_LIMIT,
    RUN_FILL,
    item,
    items_between,
    merge_run,
    pack_bundle,
    pack_runs,
    select_items,
    unpack_bundle,
)
from sigledger.ledger.log.store import Batch, Copied, EntryRow, StoredHead
from sigledger.ledger.service.sqlite import (
    StorageConflictError,
    StorageError,
    StorageLockedError,
)
from sigledger.ledger.tiles import TILE_WIDTH

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "WRITER_LOCK", "FencedError", "PostgresStorage"]

log = logging.getLogger("sigledger.storage")


async def _compact_entries(conn: Any) -> None:
    """Schema 2 -> 3: key columns computed from the leaf bytes (with the index salt),
    the text columns and their indexes dropped; violations of the identity rule of
    older logs recorded in meta (``identity_violations``)."""
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        SALT_KEY,
        new_salt(),
    )
    keys = IndexKeys.from_meta(
        await conn.fetchval("SELECT value FROM meta WHERE key = $1", SALT_KEY)
    )
    # A new table rather than dropped columns: PostgreSQL keeps dropped columns in
    # every row's null bitmap, which would cost each entry 8 bytes.
    await conn.execute(
        """
        CREATE TABLE entries_v3 (
            idx bigint PRIMARY KEY,
            hkey bigint NOT NULL,
            fkey bigint NOT NULL,
            signer integer NOT NULL REFERENCES signers (id),
            data bytea NOT NULL
        );
        """
    )
    # (key id, identity, hash, index) of every entry, grouped in SQL at the end: memory
    # stays flat however long the log.
    await conn.execute(
        "CREATE TEMP TABLE migrate_bindings (signer integer, identity text, sha256 bytea,"
        " idx bigint) ON COMMIT DROP"
    )
    total = int(await conn.fetchval("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries"))
    log.info("migrating the log database to schema 3", extra={"entries": total})
    start = 0
    while True:
        rows = await conn.fetch(
            "SELECT idx, signer, data FROM entries WHERE idx >= $1 ORDER BY idx LIMIT 5000",
            start,
        )
        if not rows:
            break
        decoded = [EntryRow.from_leaf(int(r[0]), bytes(r[2])) for r in rows]
        keyed = [keys.of_row(e) for e in decoded]
        await conn.execute(
            "INSERT INTO entries_v3 (idx, hkey, fkey, signer, data) SELECT * FROM"
            " unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::bytea[])",
            [e.index for e in decoded],
            [h for h, _ in keyed],
            [f for _, f in keyed],
            [int(r[1]) for r in rows],
            [e.data for e in decoded],
        )
        await conn.execute(
            "INSERT INTO migrate_bindings SELECT * FROM unnest($1::integer[], $2::text[],"
            " $3::bytea[], $4::bigint[])",
            [int(r[1]) for r in rows],
            [e.identity for e in decoded],
            [e.sha256 for e in decoded],
            [e.index for e in decoded],
        )
        if (int(rows[-1][0]) + 1) // REPORT_EVERY != start // REPORT_EVERY:
            log.info("migrating", extra={"done": int(rows[-1][0]) + 1, "entries": total})
        start = int(rows[-1][0]) + 1
    grouped = await conn.fetch(
        "SELECT s.vkey, b.identity, array_agg(b.idx) FROM (SELECT signer, identity,"
        " MIN(idx) AS idx FROM migrate_bindings GROUP BY signer, identity, sha256) AS b"
        " JOIN signers AS s ON s.id = b.signer GROUP BY s.vkey, b.identity HAVING COUNT(*) > 1"
    )
    if found := violations_json((str(r[0]), str(r[1]), r[2]) for r in grouped):
        await conn.execute("INSERT INTO meta (key, value) VALUES ($1, $2)", VIOLATIONS_KEY, found)
    await conn.execute(
        """
        DROP TABLE entries;
        DELETE FROM tiles WHERE level = 0;
        ALTER TABLE entries_v3 RENAME TO entries;
        ALTER INDEX entries_v3_pkey RENAME TO entries_pkey;
        CREATE INDEX entries_hkey ON entries (hkey);
        CREATE INDEX entries_fkey ON entries (fkey);
        CREATE INDEX entries_signer ON entries (signer);
        """
    )


# The kinds of key run (packed.py) and the column of ``entries`` each is made from.
HASH_RUNS, FILE_RUNS, SIGNER_RUNS = 0, 1, 2
_RUN_COLUMNS = ((HASH_RUNS, "hkey"), (FILE_RUNS, "fkey"), (SIGNER_RUNS, "signer"))
# Statements of a one-pass seal, which grow with the log (the usual limit is 60 s).
_BULK_TIMEOUT = 24 * 3600.0
# File key ranges (projects) whose sealed indexes are kept, and how many newly sealed
# bundles are read to bring one up to date rather than reading its runs again.
FILE_RANGE_CACHE = 8
FILE_RANGE_CATCH_UP = 16
# Sealed bundles kept decoded in memory (about 60 kB each).
BUNDLE_CACHE = 64
# Run rows read per round trip while scanning a key range.
RUN_PAGE = 64
# A bundle is read whole, not entry by entry, when a read wants this many of its entries.
WHOLE_BUNDLE = 32


# Every seal deletes the tail's rows and rewrites runs: the store vacuums both every
# VACUUM_EVERY bundles (PostgreSQL's autovacuum wakes once a minute, and would leave
# the space of a minute of such writes unused until then).
VACUUM_EVERY = 16


def _tail_table(name: str) -> str:
    return f"""
    CREATE TABLE {name} (
        idx bigint PRIMARY KEY,
        hkey bigint NOT NULL,
        fkey bigint NOT NULL,
        signer integer NOT NULL REFERENCES signers (id),
        data bytea NOT NULL
    )
    """


_TAIL_INDEXES = """
CREATE INDEX entries_hkey ON entries (hkey);
CREATE INDEX entries_fkey ON entries (fkey);
CREATE INDEX entries_signer ON entries (signer);
"""


async def _seal_entries(conn: Any) -> None:
    """Schema 3 -> 4: bundles and key runs (the module docstring), everything sealed."""
    await conn.execute(
        """
        CREATE TABLE bundles (n bigint PRIMARY KEY, data bytea NOT NULL);
        ALTER TABLE bundles ALTER COLUMN data SET STORAGE EXTERNAL;
        CREATE TABLE key_runs (
            kind smallint NOT NULL,
            lo bytea NOT NULL,
            items bytea NOT NULL,
            PRIMARY KEY (kind, lo)
        ) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05);
        INSERT INTO key_runs (kind, lo, items) VALUES (0, '', ''), (1, '', ''), (2, '', '');
        """
    )
    await _bulk_seal(conn)


async def _sealed_count(conn: Any) -> int:
    return int(await conn.fetchval("SELECT COALESCE(MAX(n) + 1, 0) FROM bundles"))


async def _insert_bundles(conn: Any, first: int, leaves: Sequence[bytes]) -> None:
    """Bundles ``first``, ``first + 1``, ... of ``leaves`` (whole bundles, in order)."""
    count = len(leaves) // TILE_WIDTH
    await conn.execute(
        "INSERT INTO bundles (n, data) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        list(range(first, first + count)),
        [pack_bundle(leaves[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]) for k in range(count)],
    )


async def _seal(conn: Any, target: int) -> None:
    """Seal bundles up to ``target`` (exclusive) in the caller's transaction; refuse
    an entry written at an index that is sealed already (the tail's primary key no
    longer sees those)."""
    sealed = await _sealed_count(conn)
    if await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM entries WHERE idx < $1)", sealed * TILE_WIDTH
    ):
        raise StorageConflictError(
            f"write refused: an entry at an index below {sealed * TILE_WIDTH}, which is sealed"
        )
    if target <= sealed:
        return
    start, end = sealed * TILE_WIDTH, target * TILE_WIDTH
    rows = await conn.fetch(
        "SELECT idx, hkey, fkey, signer, data FROM entries WHERE idx >= $1 AND idx < $2"
        " ORDER BY idx",
        start,
        end,
    )
    if len(rows) != end - start or int(rows[0][0]) != start:
        raise StorageError(
            f"entries {start}..{end - 1} are not all in the unsealed tail ({len(rows)} found)"
        )
    await _insert_bundles(conn, sealed, [bytes(r[4]) for r in rows])
    await conn.execute("DELETE FROM entries WHERE idx < $1", end)
    for col, (kind, _column) in enumerate(_RUN_COLUMNS, start=1):
        await _merge_items(conn, kind, sorted(item(int(r[col]), int(r[0])) for r in rows))


async def _merge_items(conn: Any, kind: int, items: Sequence[bytes]) -> None:
    """Add sorted ``items`` to the runs of ``kind``: each run they fall in is rewritten."""
    found = await conn.fetch(
        "SELECT DISTINCT r.lo, r.items FROM unnest($2::bytea[]) AS q(a) CROSS JOIN LATERAL"
        " (SELECT lo, items FROM key_runs WHERE kind = $1 AND lo <= q.a"
        " ORDER BY lo DESC LIMIT 1) AS r",
        kind,
        list(items),
    )
    rows = sorted((bytes(r[0]), bytes(r[1])) for r in found)
    los = [lo for lo, _ in rows]
    groups: dict[int, list[bytes]] = {}
    for raw in items:
        k = bisect.bisect_right(los, raw) - 1
        if k < 0:  # only without the first row (lo = '', below every item)
            raise StorageError(f"the key runs of kind {kind} have lost their first row")
        groups.setdefault(k, []).append(raw)
    updates: list[tuple[bytes, bytes]] = []
    inserts: list[tuple[bytes, bytes]] = []
    for k, new in groups.items():
        lo, run = rows[k]
        first, *rest = merge_run(lo, run, new)
        updates.append(first)
        inserts += rest
    await conn.execute(
        "UPDATE key_runs AS r SET items = v.items FROM unnest($2::bytea[], $3::bytea[])"
        " AS v(lo, items) WHERE r.kind = $1 AND r.lo = v.lo",
        kind,
        [lo for lo, _ in updates],
        [run for _, run in updates],
    )
    if inserts:
        await _insert_runs(conn, kind, inserts)


async def _insert_runs(conn: Any, kind: int, rows: Sequence[tuple[bytes, bytes]]) -> None:
    await conn.execute(
        "INSERT INTO key_runs (kind, lo, items) SELECT $1, * FROM unnest($2::bytea[], $3::bytea[])",
        kind,
        [lo for lo, _ in rows],
        [run for _, run in rows],
    )


async def _bulk_seal(conn: Any) -> None:
    """Seal every full bundle of a log that has none sealed yet (a copy, a schema
    migration) in one pass: bundles in index order, each kind's runs from keys sorted
    by the server, ``entries`` rebuilt with the unsealed rest. In the caller's
    transaction. A log with sealed bundles is sealed the usual way (:func:`_seal`)."""
    end = int(await conn.fetchval("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries"))
    target = end // TILE_WIDTH
    if await _sealed_count(conn) > 0:
        await _seal(conn, target)
        return
    if target == 0:
        return
    log.info("sealing entries", extra={"entries": target * TILE_WIDTH})
    step = 64 * TILE_WIDTH
    for start in range(0, target * TILE_WIDTH, step):
        stop = min(start + step, target * TILE_WIDTH)
        rows = await conn.fetch(
            "SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            start,
            stop,
            timeout=_BULK_TIMEOUT,
        )
        if len(rows) != stop - start or int(rows[0][0]) != start:
            raise StorageError(f"entries {start}..{stop - 1} are not all stored")
        await _insert_bundles(conn, start // TILE_WIDTH, [bytes(r[1]) for r in rows])
        if stop // REPORT_EVERY != start // REPORT_EVERY:
            log.info("sealing: bundles", extra={"done": stop, "entries": target * TILE_WIDTH})
    for kind, column in _RUN_COLUMNS:
        log.info("sealing: lookup keys", extra={"column": column})
        await conn.execute("DELETE FROM key_runs WHERE kind = $1", kind)
        pending: list[bytes] = []
        first = True
        async for r in conn.cursor(
            f"SELECT {column}, idx FROM entries WHERE idx < $1 ORDER BY {column}, idx",  # noqa: S608 (fixed columns)
            target * TILE_WIDTH,
            prefetch=10_000,
            timeout=_BULK_TIMEOUT,  # the first fetch waits for a sort of every key
        ):
            pending.append(item(int(r[0]), int(r[1])))
            if len(pending) == RUN_FILL * 1024:
                await _insert_runs(conn, kind, pack_runs(pending, first=first))
                pending, first = [], False
        await _insert_runs(conn, kind, pack_runs(pending, first=first))
    # A new table for the unsealed rest: deleting the sealed rows would leave the
    # table its size (the rest sits at its end, so VACUUM could not shorten it).
    await conn.execute(_tail_table("entries_rest"))
    await conn.execute(
        "INSERT INTO entries_rest SELECT * FROM entries WHERE idx >= $1",
        target * TILE_WIDTH,
        timeout=_BULK_TIMEOUT,
    )
    await conn.execute(
        "DROP TABLE entries; ALTER TABLE entries_rest RENAME TO entries;"
        " ALTER INDEX entries_rest_pkey RENAME TO entries_pkey;" + _TAIL_INDEXES
    )


MIGRATIONS: list[str | Callable[[Any], Awaitable[None]]] = [
    # 0 -> 1: the initial schema.
    """
    CREATE TABLE meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
    CREATE TABLE signers (
        id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        vkey text COLLATE "C" NOT NULL UNIQUE
    );
    CREATE TABLE entries (
        idx bigint PRIMARY KEY,
        time_ms bigint NOT NULL,
        signer integer NOT NULL REFERENCES signers (id),
        sha256 bytea NOT NULL,
        project text COLLATE "C" NOT NULL,
        version text COLLATE "C" NOT NULL,
        filename text COLLATE "C" NOT NULL,
        identity text COLLATE "C" NOT NULL,
        data bytea NOT NULL
    );
    CREATE INDEX entries_file ON entries (project, version, filename);
    CREATE INDEX entries_sha256 ON entries (sha256);
    CREATE UNIQUE INDEX entries_binding ON entries (signer, project, version, filename);
    CREATE INDEX entries_identity ON entries (identity);
    CREATE INDEX entries_signer_identity ON entries (signer, identity, sha256);
    CREATE TABLE tiles (
        n bigint NOT NULL,
        level smallint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (level, n)
    );
    CREATE TABLE checkpoints (
        size bigint PRIMARY KEY,
        time_ms bigint NOT NULL,
        published boolean NOT NULL DEFAULT false,
        root bytea NOT NULL,
        note bytea
    );
    """,
    # 1 -> 2: the leader row of highly available sequencing (see ha.py): one row whose
    # epoch every new leader increments; each fenced commit checks it is still its own.
    """
    CREATE TABLE leader (
        id smallint PRIMARY KEY CHECK (id = 1),
        epoch bigint NOT NULL,
        lease_until timestamptz NOT NULL,
        holder text COLLATE "C" NOT NULL
    );
    """,
    # 2 -> 3: compact entries (see the module docstring).
    _compact_entries,
    # 3 -> 4: sealed bundles and key runs (see the module docstring).
    _seal_entries,
]
SCHEMA_VERSION = len(MIGRATIONS)

# The advisory lock key of the single writer ("sigledgr"); advisory locks live per
# database, so logs in different databases of one server do not contend.
WRITER_LOCK = int.from_bytes(b"sigledgr", "big")
# Serializes schema migrations of processes opening one database at once (standby mode
# opens without the writer lock).
MIGRATE_LOCK = int.from_bytes(b"sigmigr8", "big")

# How long a leader's lease is said to last in the leader row. Informative only (for
# operators and followers' status): the advisory lock and the epoch are what fence.
LEASE_SECONDS = 5.0

# The fencing statement of every leader's transaction: it matches the one leader row
# only while the epoch is this leader's and its session still holds the writer lock
# (pg_locks shows a bigint advisory key as its high and low 32 bits, classid and objid,
# with objsubid 1), and row-locks it until commit, so a takeover waits for (or fences) it.
_FENCE = """
UPDATE leader SET lease_until = now() + make_interval(secs => $2), holder = $5
WHERE id = 1 AND epoch = $1 AND EXISTS (
    SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
    AND pid = pg_backend_pid() AND classid = $3 AND objid = $4 AND objsubid = 1
)
"""
_TAKE_OVER = """
INSERT INTO leader (id, epoch, lease_until, holder)
VALUES (1, 1, now() + make_interval(secs => $2), $1)
ON CONFLICT (id) DO UPDATE
SET epoch = leader.epoch + 1, lease_until = EXCLUDED.lease_until, holder = EXCLUDED.holder
RETURNING epoch
"""

# Seconds a statement may take before it fails (a hung server becomes a StorageError,
# which the sequencer reports and recovers from, instead of a silent stall).
_COMMAND_TIMEOUT = 60.0

# Errors of the connection or the server (anything else is a bug and propagates).
# InternalClientError: asyncpg's state after the server ended a session mid-query.
_DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# A note, once published, is never replaced by an unpublished one.
_SAVE_NOTES = """
UPDATE checkpoints AS c SET note = v.note, published = v.published
FROM unnest($1::bigint[], $2::bytea[], $3::boolean[]) AS v(size, note, published)
WHERE c.size = v.size AND (NOT c.published OR v.published)
"""
_INSERT_SIGNERS = (
    "INSERT INTO signers (vkey) SELECT DISTINCT unnest($1::text[]) ON CONFLICT (vkey) DO NOTHING"
)
_INSERT_ENTRIES = """
INSERT INTO entries (idx, hkey, fkey, signer, data)
SELECT e.idx, e.hkey, e.fkey, s.id, e.data
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[])
     AS e(idx, hkey, fkey, vkey, data)
JOIN signers AS s ON s.vkey = e.vkey
"""
_UPSERT_TILES = """
INSERT INTO tiles (level, n, data)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
ON CONFLICT (level, n) DO UPDATE SET data = EXCLUDED.data
"""
_INSERT_HEADS = """
INSERT INTO checkpoints (size, root, time_ms, note, published)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bytea[], $5::boolean[])
"""

# The run rows that may hold items of each inclusive range (a[k], b[k]): the one whose
# lo is the greatest <= a[k] (the first row, lo = '', is <= everything), up to b[k].
_RUNS_COVERING = """
SELECT DISTINCT r.lo, r.items FROM unnest($2::bytea[], $3::bytea[]) AS q(a, b)
CROSS JOIN LATERAL (
    SELECT lo, items FROM key_runs WHERE kind = $1 AND lo <= q.b
    AND lo >= (SELECT lo FROM key_runs WHERE kind = $1 AND lo <= q.a ORDER BY lo DESC LIMIT 1)
) AS r
"""
_RUNS_FROM = """
SELECT lo, items FROM key_runs WHERE kind = $1 AND lo <= $3
AND lo >= (SELECT lo FROM key_runs WHERE kind = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1)
ORDER BY lo LIMIT $4
"""
_TAIL_IN_FILE_RANGE = """
WITH s AS (SELECT COALESCE(MAX(n) + 1, 0) AS sealed FROM bundles)
SELECT s.sealed, e.idx, e.data FROM s LEFT JOIN LATERAL (
    SELECT idx, data FROM entries WHERE fkey BETWEEN $1 AND $2 AND idx >= $3 AND idx < $4
    ORDER BY idx LIMIT $5
) AS e ON true
"""
_RUNS_AFTER = (
    "SELECT lo, items FROM key_runs WHERE kind = $1 AND lo > $2 AND lo <= $3 ORDER BY lo LIMIT $4"
)
# Sealed entries one by one: the entry's two offsets (packed.py), then its bytes; each
# substring of an uncompressed out-of-line value reads only the chunks it covers.
_ENTRY_SLICES = """
SELECT q.idx, substring(b.data FROM (o.a + 1)::integer FOR (o.b - o.a)::integer)
FROM unnest($1::bigint[]) AS q(idx)
JOIN bundles AS b ON b.n = q.idx / $2
CROSS JOIN LATERAL (SELECT substring(b.data FROM (q.idx % $2)::integer * 4 + 1 FOR 8) AS h) AS s
CROSS JOIN LATERAL (
    SELECT (get_byte(s.h, 0)::bigint << 24) | (get_byte(s.h, 1) << 16)
           | (get_byte(s.h, 2) << 8) | get_byte(s.h, 3) AS a,
           (get_byte(s.h, 4)::bigint << 24) | (get_byte(s.h, 5) << 16)
           | (get_byte(s.h, 6) << 8) | get_byte(s.h, 7) AS b
) AS o
"""

T = TypeVar("T")


class FencedError(StorageError):
    """A leader's write refused because it no longer leads (a newer epoch took over,
    or its session, and with it the writer lock, is gone). The process steps down."""


# SQL and its arguments, or a step of Python and SQL run on the transaction's connection.
Statement = tuple[str, Sequence[Any]] | Callable[[Any], Awaitable[None]]


class PostgresStorage(IndexedLookups):
    """A log's PostgreSQL database (:class:`~sigledger.ledger.log.store.LogStorage`
    documents each method). Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, url: str, writer: Any, pool: Any, keys: IndexKeys) -> None:
        self.url = url
        self.keys = keys
        self.where = redact(url)
        self._w = writer  # None in standby mode until this process leads
        self._pool = pool
        self._write_lock = asyncio.Lock()
        self.standby = writer is None
        self.epoch: int | None = None  # while leading (standby mode): this leader's epoch
        self.holder = ""  # the URL written into the leader row while leading
        self._candidate: Any = None  # the session a follower tries to take the lock on
        self._bundles: OrderedDict[int, list[bytes]] = OrderedDict()  # sealed, decoded
        self._vacuum: asyncio.Task[None] | None = None
        # (lo, hi) -> (bundles sealed, sorted sealed indexes): _sealed_in_file_range
        self._file_ranges: OrderedDict[tuple[int, int], tuple[int, array[int]]] = OrderedDict()

    @classmethod
    async def open(cls, url: str, *, readers: int = 4, standby: bool = False) -> PostgresStorage:
        """Connect to ``url`` (``postgresql://user@host:port/db``), take the writer
        lock, bring the schema up to date and open ``readers`` read connections.

        With ``standby``, the writer lock is not taken: the store reads, and writes
        only after :meth:`try_lead` made this process the leader (ha.py)."""
        where = redact(url)
        writer = await _connect(url)
        try:
            if not standby:
                await _take_writer_lock(writer, where)
            await _migrate(writer, where)
            if await writer.fetchval("SHOW fsync") != "on":
                log.warning(
                    "PostgreSQL runs with fsync off: commits are not durable",
                    extra={"database": where},
                )
            keys = _index_keys(
                await writer.fetchval("SELECT value FROM meta WHERE key = $1", SALT_KEY), where
            )
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=readers, command_timeout=_COMMAND_TIMEOUT
            )
        except _DB_ERRORS as exc:
            await writer.close()
            failed = StorageError(f"cannot open the log database {where}: {exc}")
            if isinstance(exc, asyncpg.InsufficientPrivilegeError):
                failed.hint = (
                    "The log's database user creates and owns its tables: make it the owner "
                    "of the database (createdb -O USER DBNAME, or ALTER DATABASE ... OWNER TO)."
                )
            raise failed from exc
        except BaseException:
            await writer.close()
            raise
        if standby:
            await writer.close()
            writer = None
        return cls(url, writer, pool, keys)

    async def close(self) -> None:
        if self._vacuum is not None and not self._vacuum.done():
            self._vacuum.cancel()  # it would only make space reusable a little sooner
            await asyncio.wait([self._vacuum])
        try:
            await self._pool.close()
        finally:
            # Ending the session releases the writer lock.
            if self._candidate is not None:
                self._candidate.terminate()
            if self._w is not None:
                await self._w.close()

    # -- leadership (standby mode) ----------------------------------------------

    async def try_lead(self, holder: str) -> int | None:
        """Take the writer lock if it is free and become the leader: the new epoch, or
        None when another process holds the lock. ``holder`` (the URL /add requests are
        forwarded to; :attr:`holder` may change it later) goes into the leader row.
        StorageError if the database fails."""
        async with self._write_lock:
            if self.epoch is not None:
                return self.epoch
            # One session kept for the attempts (a follower tries twice a second),
            # which becomes the writer session once it gets the lock.
            conn = self._candidate
            if conn is None or conn.is_closed():
                conn = self._candidate = await _connect(self.url)
            try:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK):
                    return None
                epoch = int(await conn.fetchval(_TAKE_OVER, holder, LEASE_SECONDS))
            except _DB_ERRORS as exc:
                self._candidate = None
                conn.terminate()  # also drops the lock, if it was just taken
                raise StorageError(f"cannot take the lead on {self.where}: {exc}") from exc
            except BaseException:
                self._candidate = None
                conn.terminate()
                raise
            self._candidate = None
            self._w, self.epoch, self.holder = conn, epoch, holder
            return epoch

    async def check_leader(self) -> None:
        """FencedError unless this process still leads (its epoch is current and its
        session holds the writer lock); renews the lease in the leader row."""
        await self._transaction([], fenced=True)

    async def resign(self) -> None:
        """Stop leading: end the writer session, which releases the lock at once."""
        async with self._write_lock:
            conn, self._w, self.epoch = self._w, None, None
            if conn is not None:
                # terminate, not close: a close waits on a connection that may hang.
                conn.terminate()

    async def leader(self) -> tuple[int, str] | None:
        """(epoch, holder) of the leader row, if any leader ever took over."""
        rows = await self._fetch("SELECT epoch, holder FROM leader WHERE id = 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    # -- plumbing ---------------------------------------------------------------

    async def _writer(self) -> Any:
        """The writer connection, reconnected (and the lock retaken) if it was lost."""
        if self.standby:
            # A leader whose session ended cannot know whether another took over
            # meanwhile: it never reconnects as the writer, it steps down.
            if self._w is None or self.epoch is None or self._w.is_closed():
                raise FencedError(f"not the leader of {self.where} (writer session lost)")
            return self._w
        if self._w.is_closed():
            conn = await _connect(self.url)
            try:
                await _take_writer_lock(conn, self.where)
            except BaseException:
                await conn.close()
                raise
            self._w = conn
        return self._w

    async def _transaction(self, statements: Sequence[Statement], *, fenced: bool = False) -> None:
        async with self._write_lock:
            try:
                if self.standby and not fenced:
                    # Log creation and metadata: any process may write them.
                    async with self._pool.acquire() as conn, conn.transaction():
                        await _run_all(conn, statements)
                else:
                    conn = await self._writer()
                    async with conn.transaction():
                        if self.standby:
                            await self._fence(conn)
                        await _run_all(conn, statements)
            except asyncpg.IntegrityConstraintViolationError as exc:
                # The caller's mistake (a reused index, a second root), not a broken store.
                raise StorageConflictError(f"write refused: {exc}") from exc
            except _DB_ERRORS as exc:
                if fenced and self.standby:
                    # Whatever failed, this process can no longer prove that it leads: end
                    # the session (the lock goes with it) so that it cannot write again.
                    if self._w is not None and not self._w.is_closed():
                        self._w.terminate()
                    raise FencedError(
                        f"lost the writer session to {self.where} while leading: {exc}"
                    ) from exc
                raise StorageError(f"database write failed ({self.where}): {exc}") from exc

    async def _fence(self, conn: Any) -> None:
        hi, lo = WRITER_LOCK >> 32, WRITER_LOCK & 0xFFFFFFFF
        status = await conn.execute(_FENCE, self.epoch, LEASE_SECONDS, hi, lo, self.holder)
        if status != "UPDATE 1":
            raise FencedError(
                f"epoch {self.epoch} is no longer the leader of {self.where} "
                "(another process took over, or this session lost the writer lock)"
            )

    async def _read(self, run: Callable[[Any], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await run(conn)
        except _DB_ERRORS as exc:
            raise StorageError(f"database read failed ({self.where}): {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._read(lambda conn: conn.fetch(sql, *args))
        return rows

    async def _entries(self, sql: str, *args: Any) -> list[tuple[int, bytes]]:
        """(idx, data) of every row of ``sql``, which selects exactly those two."""
        return [(int(r[0]), bytes(r[1])) for r in await self._fetch(sql, *args)]

    # -- metadata ---------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("SELECT value FROM meta WHERE key = $1", key)
        return str(rows[0][0]) if rows else None

    async def set_meta(self, values: dict[str, str]) -> None:
        await self._transaction([_meta_upsert(values)])

    async def initialize(self, meta: dict[str, str], empty_root: bytes, time_ms: int) -> None:
        await self._transaction(
            [
                (
                    "INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[])",
                    (list(meta), list(meta.values())),
                ),
                (
                    "INSERT INTO checkpoints (size, root, time_ms) VALUES (0, $1, $2)",
                    (empty_root, time_ms),
                ),
            ]
        )

    # -- writes -----------------------------------------------------------------

    async def commit_batch(self, batch: Batch) -> None:
        target = batch.size // TILE_WIDTH

        async def seal(conn: Any) -> None:
            await _seal(conn, target)

        await self._transaction(
            [
                *_entry_inserts(self.keys, batch.entries),
                *_tile_upserts(batch.tiles),
                (
                    "INSERT INTO checkpoints (size, root, time_ms) VALUES ($1, $2, $3)",
                    (batch.size, batch.root, batch.time_ms),
                ),
                *_note_updates(batch.notes),
                seal,
            ],
            fenced=True,
        )
        first = (batch.size - len(batch.entries)) // TILE_WIDTH
        if first // VACUUM_EVERY != target // VACUUM_EVERY and (
            self._vacuum is None or self._vacuum.done()
        ):
            self._vacuum = asyncio.create_task(self._vacuum_sealed())

    async def _vacuum_sealed(self) -> None:
        """Make the space of deleted tail rows and rewritten runs reusable (in the
        background, on a read connection: VACUUM runs outside transactions)."""
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("VACUUM (SKIP_LOCKED) entries, key_runs")
        except _DB_ERRORS as exc:
            log.warning("vacuum after sealing failed", extra={"error": str(exc)})

    async def save_notes(self, notes: Iterable[tuple[int, bytes, bool]]) -> None:
        await self._transaction(_note_updates(notes), fenced=True)

    # -- reads ------------------------------------------------------------------

    async def latest_head(self, *, published: bool = False) -> StoredHead | None:
        where = "WHERE published " if published else ""
        rows = await self._fetch(
            "SELECT size, root, time_ms, note, published FROM checkpoints "  # noqa: S608
            f"{where}ORDER BY size DESC LIMIT 1"
        )
        return _head(rows[0]) if rows else None

    async def count_entries(self) -> int:
        rows = await self._fetch(
            "SELECT GREATEST((SELECT COALESCE(MAX(idx) + 1, 0) FROM entries),"
            " (SELECT COALESCE(MAX(n) + 1, 0) * $1 FROM bundles))",
            TILE_WIDTH,
        )
        return int(rows[0][0])

    async def _stored_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(refs))
        if not wanted:
            return {}
        rows = await self._fetch(
            "SELECT t.level, t.n, t.data FROM unnest($1::smallint[], $2::bigint[]) AS r(level, n)"
            " JOIN tiles AS t ON t.level = r.level AND t.n = r.n",
            [lv for lv, _ in wanted],
            [n for _, n in wanted],
        )
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}

    async def read_entries(self, start: int, end: int) -> list[bytes]:
        if end <= start:
            return []
        first, last = start // TILE_WIDTH, (end - 1) // TILE_WIDTH
        cached = [self._bundles.get(n) for n in range(first, last + 1)]
        if all(b is not None for b in cached):
            have: dict[int, bytes] = {}
        else:
            # The tail first, then the sealed part (see the module docstring).
            have = dict(
                await self._entries(
                    "SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2", start, end
                )
            )
        need = [
            n
            for n in range(first, last + 1)
            if any(
                i not in have
                for i in range(max(start, n * TILE_WIDTH), min(end, (n + 1) * TILE_WIDTH))
            )
        ]
        bundles = await self._read_bundles(need)
        out: list[bytes] = []
        for i in range(start, end):
            data = have.get(i)
            if data is None:
                bundle = bundles.get(i // TILE_WIDTH)
                if bundle is None:
                    break
                data = bundle[i % TILE_WIDTH]
            out.append(data)
        return out

    async def _read_bundles(self, wanted: Iterable[int]) -> dict[int, list[bytes]]:
        """The sealed bundles among ``wanted`` (decoded; from the cache when there)."""
        out: dict[int, list[bytes]] = {}
        missing = []
        for n in wanted:
            cached = self._bundles.get(n)
            if cached is None:
                missing.append(n)
            else:
                self._bundles.move_to_end(n)
                out[n] = cached
        if missing:
            for r in await self._fetch(
                "SELECT n, data FROM bundles WHERE n = ANY($1::bigint[])", missing
            ):
                out[int(r[0])] = self._remember(int(r[0]), bytes(r[1]))
        return out

    def _remember(self, n: int, data: bytes) -> list[bytes]:
        try:
            leaves = unpack_bundle(data)
        except FormatError as exc:
            raise StorageError(f"sealed bundle {n} in {self.where} is damaged: {exc}") from exc
        if len(leaves) != TILE_WIDTH:
            raise StorageError(f"sealed bundle {n} in {self.where} holds {len(leaves)} entries")
        self._bundles[n] = leaves
        while len(self._bundles) > BUNDLE_CACHE:
            self._bundles.popitem(last=False)
        return leaves

    async def _sealed_entries(self, indexes: Iterable[int]) -> dict[int, bytes]:
        """The sealed entries at ``indexes``: from the cache, whole bundles when a read
        wants many of one, else two slices of its bundle per entry."""
        by_bundle: dict[int, list[int]] = {}
        for i in indexes:
            by_bundle.setdefault(i // TILE_WIDTH, []).append(i)
        whole = [
            n for n, ids in by_bundle.items() if n in self._bundles or len(ids) >= WHOLE_BUNDLE
        ]
        out: dict[int, bytes] = {}
        for n, leaves in (await self._read_bundles(whole)).items():
            for i in by_bundle.pop(n):
                out[i] = leaves[i % TILE_WIDTH]
        single = sorted(i for ids in by_bundle.values() for i in ids)
        if single:
            out.update(await self._entries(_ENTRY_SLICES, single, TILE_WIDTH))
        return out

    async def _sealed_items(
        self, kind: int, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[int, int]]:
        """(key, index) of every sealed item in one of the inclusive ``ranges``."""
        if not ranges:
            return []
        rows = await self._fetch(
            _RUNS_COVERING, kind, [a for a, _ in ranges], [b for _, b in ranges]
        )
        return select_items(sorted((bytes(r[0]), bytes(r[1])) for r in rows), ranges)

    async def _scan_items(
        self, kind: int, low: bytes, high: bytes, want: int, keep: Callable[[int], bool]
    ) -> list[tuple[int, int]]:
        """The first ``want`` sealed items in [low, high] (item order) whose index
        passes ``keep``, reading RUN_PAGE run rows per round trip."""
        out: list[tuple[int, int]] = []
        rows = await self._fetch(_RUNS_FROM, kind, low, high, RUN_PAGE)
        while True:
            for r in rows:
                for key, i in items_between([bytes(r[1])], low, high):
                    # A run split by a seal between two pages repeats items already read.
                    if keep(i) and (not out or (key, i) > out[-1]):
                        out.append((key, i))
                        if len(out) >= want:
                            return out
            if len(rows) < RUN_PAGE:
                return out
            rows = await self._fetch(_RUNS_AFTER, kind, bytes(rows[-1][0]), high, RUN_PAGE)

    async def _with_sealed(
        self, tail: list[tuple[int, bytes]], items: Iterable[tuple[int, int]]
    ) -> list[tuple[int, bytes]]:
        """``tail`` rows plus the sealed entries of ``items``, by index, each once."""
        have = dict(tail)
        have.update(await self._sealed_entries({i for _k, i in items if i not in have}))
        return sorted(have.items())

    # -- key scans (see indexed.py) -----------------------------------------------

    async def _rows_by_hash_keys(self, keys: Sequence[int], below: int) -> list[tuple[int, bytes]]:
        return await self._rows_by_keys(HASH_RUNS, "hkey", keys, below)

    async def _rows_by_file_keys(self, keys: Sequence[int], below: int) -> list[tuple[int, bytes]]:
        return await self._rows_by_keys(FILE_RUNS, "fkey", keys, below)

    async def _rows_by_keys(
        self, kind: int, column: str, keys: Sequence[int], below: int
    ) -> list[tuple[int, bytes]]:
        unique = sorted(set(keys))
        tail = await self._entries(
            f"SELECT idx, data FROM entries WHERE {column} = ANY($1::bigint[]) AND idx < $2",  # noqa: S608 (fixed columns)
            unique,
            below,
        )
        ranges = [(item(k, 0), item(k, KEY_LIMIT - 1)) for k in unique]
        items = await self._sealed_items(kind, ranges)
        return await self._with_sealed(tail, ((k, i) for k, i in items if i < below))

    async def _rows_by_file_range(
        self, lo: int, hi: int, start: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        # The tail, and in the same snapshot how many bundles are sealed.
        found = await self._fetch(_TAIL_IN_FILE_RANGE, lo, hi, start, below, limit)
        sealed_count = int(found[0][0])
        tail = [(int(r[1]), bytes(r[2])) for r in found if r[1] is not None]
        sealed = await self._sealed_in_file_range(lo, hi, sealed_count)
        # Index order, not key order: the first ``limit`` of both.
        first = bisect.bisect_left(sealed, start)
        chosen = sorted({i for i in sealed[first : first + limit] if i < below} | dict(tail).keys())
        chosen = chosen[:limit]
        keep = set(chosen)
        return await self._with_sealed([r for r in tail if r[0] in keep], ((0, i) for i in chosen))

    async def _sealed_in_file_range(self, lo: int, hi: int, sealed_count: int) -> array[int]:
        """The sorted indexes of the sealed entries with lo <= file key <= hi, at least
        those of the first ``sealed_count`` bundles. A project's explorer page reads its
        entries 512 at a time: the list is kept between calls and brought up to date
        from the bundles sealed since, so that a page costs one pass over the runs."""
        known = self._file_ranges.get((lo, hi))
        if known is not None and known[0] < sealed_count <= known[0] + FILE_RANGE_CATCH_UP:
            added = await self._read_bundles(range(known[0], sealed_count))
            new = [
                n * TILE_WIDTH + k
                for n, leaves in added.items()
                for k, data in enumerate(leaves)
                if (leaf := Leaf.parse(data)) is not None
                and lo <= self.keys.file_key(leaf.identity.project, leaf.identity.version) <= hi
            ]
            known = (sealed_count, array("q", sorted({*known[1], *new})))
        elif known is None or known[0] != sealed_count:
            # Everything sealed when the runs are read: at least ``sealed_count`` bundles.
            items = await self._sealed_items(FILE_RUNS, [(item(lo, 0), item(hi, KEY_LIMIT - 1))])
            known = (sealed_count, array("q", sorted({i for _k, i in items})))
        self._file_ranges[(lo, hi)] = known
        self._file_ranges.move_to_end((lo, hi))
        while len(self._file_ranges) > FILE_RANGE_CACHE:
            self._file_ranges.popitem(last=False)
        return known[1]

    async def _rows_by_signer(
        self, signer: str, start: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        found = await self._fetch("SELECT id FROM signers WHERE vkey = $1", signer)
        if not found or start >= below:
            return []
        sid = int(found[0][0])
        tail = await self._entries(
            "SELECT idx, data FROM entries WHERE signer = $1 AND idx >= $2 AND idx < $3"
            " ORDER BY idx LIMIT $4",
            sid,
            start,
            below,
            limit,
        )
        # Within one signer, items are in index order.
        items = await self._scan_items(
            SIGNER_RUNS, item(sid, start), item(sid, below - 1), limit, lambda i: True
        )
        rows = await self._with_sealed(tail, items)
        return rows[:limit]

    async def _rows_by_hash_range(
        self, lo: int, hi: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        tail = await self._fetch(
            "SELECT hkey, idx, data FROM entries WHERE hkey BETWEEN $1 AND $2 AND idx < $3"
            " ORDER BY hkey, idx LIMIT $4",
            lo,
            hi,
            below,
            limit,
        )
        items = await self._scan_items(
            HASH_RUNS, item(lo, 0), item(hi, KEY_LIMIT - 1), limit, lambda i: i < below
        )
        # Key order: the first ``limit`` of both, each index once.
        keyed = sorted({(int(r[0]), int(r[1])) for r in tail} | set(items))[:limit]
        data = dict(await self._with_sealed([(int(r[1]), bytes(r[2])) for r in tail], keyed))
        seen: set[int] = set()
        out: list[tuple[int, bytes]] = []
        for _k, i in keyed:
            if i not in seen:
                seen.add(i)
                out.append((i, data[i]))
        return out

    async def signers_between(self, low: str, high: str, limit: int) -> list[str]:
        rows = await self._fetch(
            "SELECT vkey FROM signers WHERE vkey >= $1 AND vkey < $2 ORDER BY vkey LIMIT $3",
            low,
            high,
            limit,
        )
        return [str(r[0]) for r in rows]

    # -- explorer reads (see the SQLite engine: bounded by ``below``, at most
    # ``limit`` rows, aggregates over at most ``scan`` entries, keyset paging) --

    async def entries_before(self, before: int, limit: int) -> list[tuple[int, bytes]]:
        # Indexes are dense from 0: the last ``limit`` below ``before`` are one range.
        end = min(before, await self.count_entries())
        start = max(0, end - limit)
        rows = await self.read_entries(start, end)
        return [(start + k, data) for k, data in enumerate(rows)][::-1]

    async def checkpoint_time(self, size: int) -> int | None:
        rows = await self._fetch("SELECT time_ms FROM checkpoints WHERE size = $1", size)
        return int(rows[0][0]) if rows else None

    async def growth(self, below: int, points: int) -> list[tuple[int, int]]:
        step = max(1, -(-below // max(1, points)))
        targets = [*range(0, below, step), below]
        rows = await self._fetch(
            "SELECT DISTINCT c.size, c.time_ms FROM unnest($1::bigint[]) AS t(v)"
            " CROSS JOIN LATERAL (SELECT size, time_ms FROM checkpoints"
            " WHERE size >= t.v AND size <= $2 ORDER BY size LIMIT 1) AS c ORDER BY c.size",
            targets,
            below,
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    # -- bulk copy (sigledger migrate) ------------------------------------------

    async def all_meta(self) -> dict[str, str]:
        rows = await self._fetch("SELECT key, value FROM meta")
        return {str(r[0]): str(r[1]) for r in rows}

    async def read_entry_rows(self, start: int, end: int) -> list[EntryRow]:
        rows = await self.read_entries(start, end)
        return [EntryRow.from_leaf(start + k, data) for k, data in enumerate(rows)]

    async def read_heads(self, start: int, limit: int) -> list[StoredHead]:
        rows = await self._fetch(
            "SELECT size, root, time_ms, note, published FROM checkpoints WHERE size >= $1"
            " ORDER BY size LIMIT $2",
            start,
            limit,
        )
        return [_head(r) for r in rows]

    async def _stored_tile_rows(
        self, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, bytes]]:
        level, n = after
        rows = await self._fetch(
            "SELECT level, n, data FROM tiles WHERE (level, n) > ($1, $2) ORDER BY level, n"
            " LIMIT $3",
            level,
            n,
            limit,
        )
        return [(int(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    async def load(self, rows: Copied) -> None:
        statements = [*_entry_inserts(self.keys, rows.entries), *_tile_upserts(rows.tiles)]
        if rows.heads:
            statements.append(
                (
                    _INSERT_HEADS,
                    (
                        [h.size for h in rows.heads],
                        [h.root for h in rows.heads],
                        [h.time_ms for h in rows.heads],
                        [h.note for h in rows.heads],
                        [h.published for h in rows.heads],
                    ),
                )
            )
        meta = {k: v for k, v in rows.meta.items() if k != SALT_KEY}
        if meta:
            statements.append(_meta_upsert(meta))
        await self._transaction(statements)

    async def settle(self) -> None:
        # A copy is loaded into the tail; seal it in one pass before it is proven.
        await self._transaction([_bulk_seal])


# -- helpers -------------------------------------------------------------------------


def _index_keys(salt: str | None, where: str) -> IndexKeys:
    if not salt:
        # Written with the schema, never copied: without it no lookup key can be found.
        raise StorageError(
            f"the log database {where} has entries but no index salt (meta {SALT_KEY}); "
            "restore it from a backup, or copy the log again with sigledger migrate"
        )
    return IndexKeys.from_meta(salt)


async def _connect(url: str) -> Any:
    """A connection to ``url``, or a StorageError that says what failed and what to do."""
    where = redact(url)
    try:
        # A commit is durable when it returns, whatever the server's default.
        return await asyncpg.connect(
            url,
            timeout=15,
            command_timeout=_COMMAND_TIMEOUT,
            server_settings={"synchronous_commit": "on"},
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        failed = StorageError(f"PostgreSQL at {where} refused the login: {exc}")
        failed.hint = (
            "Check the user in the database URL and its password: give it in PGPASSWORD or "
            "~/.pgpass rather than in a configuration file."
        )
    except asyncpg.InvalidCatalogNameError as exc:
        failed = StorageError(f"cannot open the log database {where}: {exc}")
        failed.hint = "Create the database first (e.g. `createdb -O USER DBNAME`) and start again."
    except (*_DB_ERRORS, ValueError) as exc:
        # ValueError: asyncpg could not parse the URL.
        failed = StorageError(f"cannot connect to PostgreSQL at {where}: {exc}")
        failed.hint = (
            "Check that the PostgreSQL server runs and accepts connections from this host, "
            "and that the database URL (postgresql://USER@HOST:PORT/DBNAME) is right."
        )
    raise failed


async def _run_all(conn: Any, statements: Sequence[Statement]) -> None:
    for statement in statements:
        if callable(statement):
            await statement(conn)
        else:
            sql, args = statement
            await conn.execute(sql, *args)


async def _take_writer_lock(conn: Any, where: str) -> None:
    """Hold the single-writer lock on ``conn`` for the life of its session.

    Session-level, so it is held outside transactions and dropped by PostgreSQL
    when the session ends (close, crash, kill -9, lost network). Leader election
    would replace this one function: wait for the lock instead of failing.
    """
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK)
    except _DB_ERRORS as exc:
        raise StorageError(f"cannot take the writer lock on {where}: {exc}") from exc
    if not got:
        locked = StorageLockedError(
            f"the log database {where} is in use by another sigledger process "
            f"(advisory lock {WRITER_LOCK} is held)"
        )
        locked.hint = (
            "Only one server may write a log. Stop the other process (see pg_stat_activity "
            "and pg_locks on the database server) or use another database, then start again."
        )
        raise locked


async def _migrate(conn: Any, where: str) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (see the module docstring)."""
    async with conn.transaction():
        # Processes opening in standby mode do not hold the writer lock: one migrates.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
        version = 0
        if await conn.fetchval("SELECT to_regclass('meta') IS NOT NULL"):
            stored = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
            if stored is None or not str(stored).isdigit():
                raise StorageError(f"{where} has a meta table without a valid schema_version")
            version = int(stored)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{where} has schema version {version}, newer than this sigledger "
                f"({SCHEMA_VERSION}); upgrade sigledger"
            )
        for step in MIGRATIONS[version:]:
            if isinstance(step, str):
                await conn.execute(step)
            else:
                await step(conn)
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            str(SCHEMA_VERSION),
        )


def _meta_upsert(values: Mapping[str, str]) -> Statement:
    return (
        "INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[])"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (list(values), list(values.values())),
    )


def _entry_inserts(keys: IndexKeys, entries: Sequence[EntryRow]) -> list[Statement]:
    if not entries:
        return []
    keyed = [keys.of_row(e) for e in entries]
    return [
        (_INSERT_SIGNERS, (sorted({e.signer for e in entries}),)),
        (
            _INSERT_ENTRIES,
            (
                [e.index for e in entries],
                [h for h, _ in keyed],
                [f for _, f in keyed],
                [e.signer for e in entries],
                [e.data for e in entries],
            ),
        ),
    ]


def _tile_upserts(tiles: Mapping[tuple[int, int], bytes]) -> list[Statement]:
    # Level 0 is not stored: its tiles are the entries' leaf hashes (indexed.py).
    tiles = {ref: data for ref, data in tiles.items() if ref[0] > 0}
    if not tiles:
        return []
    refs = list(tiles)
    return [(_UPSERT_TILES, ([lv for lv, _ in refs], [n for _, n in refs], list(tiles.values())))]


def _note_updates(notes: Iterable[tuple[int, bytes, bool]]) -> list[Statement]:
    # One UPDATE sees each size once: keep what applying the notes one by one would
    # leave (the last published note of a size, else its last note).
    last: dict[int, tuple[int, bytes, bool]] = {}
    for size, note, published in notes:
        if published or not last.get(size, (0, b"", False))[2]:
            last[size] = (size, note, published)
    rows = list(last.values())
    if not rows:
        return []
    return [
        (_SAVE_NOTES, ([s for s, _, _ in rows], [n for _, n, _ in rows], [p for *_, p in rows]))
    ]


def _head(r: Any) -> StoredHead:
    note = None if r[3] is None else bytes(r[3])
    return StoredHead(int(r[0]), bytes(r[1]), int(r[2]), note, bool(r[4]))
