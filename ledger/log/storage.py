"""Durable storage of a log in one SQLite file: the only module that knows SQLite's SQL.

:class:`Storage` implements :class:`~sigledger.ledger.log.store.LogStorage`; the
lookups over its index keys are shared with PostgreSQL
(:mod:`~sigledger.ledger.log.indexed` explains the keys).

Layout (schema version 3, 8 KiB pages)::

    meta(key TEXT PRIMARY KEY, value TEXT)           origin, log vkey, schema version,
                                                     index salt
    signers(id INTEGER PRIMARY KEY, vkey TEXT UNIQUE)
                                                     each signer's verifier key, once
    entries(idx INTEGER PRIMARY KEY, signer, data)   the leaf bytes and the signer's id;
                                                     index entries_signer(signer)
    hash_keys(k, idx) WITHOUT ROWID                  hash key -> entry (indexed.py)
    file_keys(k, idx) WITHOUT ROWID                  file key -> entry (indexed.py)
    tiles(level, n, data BLOB)                       the newest bytes of hash tile (level, n),
                                                     level >= 1 (level 0: indexed.py);
                                                     a partial tile's bytes are a prefix of
                                                     every later version, so `.p/W` is a slice
    checkpoints(size INTEGER PRIMARY KEY, root BLOB, time_ms, note BLOB,
                published INTEGER)
                                                     every tree head the log ever committed;
                                                     the PRIMARY KEY makes two roots for one
                                                     size impossible. ``note`` is the signed
                                                     note (with witness cosignatures once it
                                                     is published); ``published`` = 1 once
                                                     readers were shown it

An entry costs its leaf bytes plus about 65 bytes of rows and keys: nothing is
stored twice (level-0 hash tiles are the entries' leaf hashes, computed when
read). Schema 1 and 2 files (text columns per entry) are rebuilt into this
layout when first opened, in one transaction; identity violations found then
are kept in meta ``identity_violations``.

Contracts:

* :meth:`Storage.commit_batch` is atomic and durable when it returns (WAL with
  ``synchronous=FULL``): the new entries, the changed tiles and the new tree
  head are all there, or none of them.
* Only one process may open a log for writing: :meth:`Storage.open` takes an
  exclusive ``flock`` on ``<db>.lock`` and raises :class:`StorageLockedError`
  when another process holds it. The kernel drops the lock when the holder
  dies, also on ``kill -9``.
* Reads run on a second connection, so serving tiles never waits behind a
  commit (WAL readers see the last committed state). Lookups of a few keys
  (an installer's question: one hash, one release) run on a third connection in
  the caller's thread: such an indexed read takes tens of microseconds, less than
  handing it to aiosqlite's worker thread and back, which was most of a lookup's
  latency under load.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from sigledger.ledger.errors import FormatError
from sigledger.ledger.log.indexed import (
    REPORT_EVERY,
    SALT_KEY,
    VIOLATIONS_KEY,
    IndexedLookups,
    IndexKeys,
    new_salt,
    violations_json,
)
from sigledger.ledger.log.store import (
    Batch,
    Copied,
    EntryRow,
    StoredHead,
)
from sigledger.ledger.service.sqlite import (
    Database,
    StorageConflictError,
    StorageError,
    check_schema_version,
    open_database,
    table_columns,
    transaction,
)

log = logging.getLogger("sigledger.storage")

SCHEMA_VERSION = "3"
PAGE_SIZE = 8192
# Lookups of at most this many keys run in the caller's thread (see the contracts).
QUICK_KEYS = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signers (id INTEGER PRIMARY KEY, vkey TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    signer INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hash_keys (
    k INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (k, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_keys (
    k INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (k, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tiles (
    level INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (level, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time_ms INTEGER NOT NULL,
    note BLOB,
    published INTEGER NOT NULL DEFAULT 0
);
"""
# Created once the entries table has this schema's columns (after a migration).
_INDEXES = "CREATE INDEX IF NOT EXISTS entries_signer ON entries (signer);"


# A note, once published, is never replaced by an unpublished one.
_SAVE_NOTE = (
    "UPDATE checkpoints SET note = ?1, published = ?2 WHERE size = ?3 AND (published = 0 OR ?2 = 1)"
)


class Storage(IndexedLookups):
    """A log's SQLite database (:class:`~sigledger.ledger.log.store.LogStorage` documents
    each method). Create with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        database: Database,
        reader: aiosqlite.Connection,
        quick: sqlite3.Connection,
        keys: IndexKeys,
    ) -> None:
        self.path = database.path
        self._database = database
        self._w = database.conn
        self._r = reader
        self._quick = quick
        self.keys = keys
        self._signer_ids: dict[str, int] = {}

    @classmethod
    async def open(cls, path: Path | str) -> Storage:
        path = Path(path)

        async def setup(db: aiosqlite.Connection) -> None:
            await _ensure_salt(db)
            await _migrate_checkpoints(db)
            await check_schema_version(
                db, SCHEMA_VERSION, str(path), migrations={"1": _to_schema_3, "2": _to_schema_3}
            )
            await db.executescript(_INDEXES)

        database = await open_database(
            path, _SCHEMA, "sigledger process", page_size=PAGE_SIZE, setup=setup
        )
        try:
            async with database.conn.execute(
                "SELECT value FROM meta WHERE key = ?", (SALT_KEY,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                # Written with the schema, never copied: without it no key can be found.
                raise StorageError(
                    f"{path} has no index salt (meta {SALT_KEY}); restore it from a backup"
                )
            keys = IndexKeys.from_meta(str(row[0]))
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only=ON")
            quick = sqlite3.connect(path, isolation_level=None)
            quick.execute("PRAGMA query_only=ON")
        except BaseException as exc:
            await database.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(database, reader, quick, keys)

    async def close(self) -> None:
        try:
            self._quick.close()
            await self._r.close()
        finally:
            await self._database.close()

    # -- metadata ---------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._w.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, values: dict[str, str]) -> None:
        async with transaction(self._w, _write_failed) as db:
            await db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )

    async def initialize(self, meta: dict[str, str], empty_root: bytes, time_ms: int) -> None:
        async with transaction(self._w, _write_failed) as db:
            await db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
            await db.execute(
                "INSERT INTO checkpoints (size, root, time_ms) VALUES (?, ?, ?)",
                (0, empty_root, time_ms),
            )

    # -- writes -----------------------------------------------------------------

    async def commit_batch(self, batch: Batch) -> None:
        async with transaction(self._w, _write_failed) as db:
            ids = await self._insert_entries(db, batch.entries)
            await db.executemany(
                "INSERT OR REPLACE INTO tiles (level, n, data) VALUES (?, ?, ?)",
                [(lv, n, data) for (lv, n), data in batch.tiles.items() if lv > 0],
            )
            await db.execute(
                "INSERT INTO checkpoints (size, root, time_ms) VALUES (?, ?, ?)",
                (batch.size, batch.root, batch.time_ms),
            )
            await db.executemany(_SAVE_NOTE, [(n, int(p), s) for s, n, p in batch.notes])
        self._signer_ids.update(ids)  # committed: the ids are final

    async def _insert_entries(
        self, db: aiosqlite.Connection, rows: Sequence[EntryRow]
    ) -> dict[str, int]:
        """Insert ``rows`` with their keys; the signer ids used (for the cache, once
        the transaction commits)."""
        return await _insert_rows(db, "entries", rows, self.keys, self._signer_ids)

    async def save_notes(self, notes: Iterable[tuple[int, bytes, bool]]) -> None:
        async with transaction(self._w, _write_failed) as db:
            await db.executemany(_SAVE_NOTE, [(n, int(p), s) for s, n, p in notes])

    # -- reads ------------------------------------------------------------------

    async def latest_head(self, *, published: bool = False) -> StoredHead | None:
        where = "WHERE published = 1 " if published else ""
        async with self._w.execute(
            "SELECT size, root, time_ms, note, published FROM checkpoints "  # noqa: S608
            f"{where}ORDER BY size DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return StoredHead(int(row[0]), bytes(row[1]), int(row[2]), row[3], bool(row[4]))

    async def count_entries(self) -> int:
        async with self._r.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # The reads below serve the read API: each is one query in one round trip to the
    # reader thread (execute_fetchall), not three (execute, fetch, close).

    async def _stored_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(refs))
        out: dict[tuple[int, int], bytes] = {}
        for chunk in _chunks(wanted, 400):
            where = " OR ".join("(level = ? AND n = ?)" for _ in chunk)
            params = [x for ref in chunk for x in ref]
            sql = f"SELECT level, n, data FROM tiles WHERE {where}"  # noqa: S608 (placeholders only)
            for lv, n, data in await self._r.execute_fetchall(sql, params):
                out[(int(lv), int(n))] = bytes(data)
        return out

    async def read_entries(self, start: int, end: int) -> list[bytes]:
        rows = await self._r.execute_fetchall(
            "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [bytes(r[0]) for r in rows]

    # -- key scans (see indexed.py) -----------------------------------------------

    async def _rows_by_hash_keys(self, keys: Sequence[int], below: int) -> list[tuple[int, bytes]]:
        return await self._rows_by_keys("hash_keys", keys, below)

    async def _rows_by_file_keys(self, keys: Sequence[int], below: int) -> list[tuple[int, bytes]]:
        return await self._rows_by_keys("file_keys", keys, below)

    async def _rows_by_keys(
        self, table: str, keys: Sequence[int], below: int
    ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        unique = sorted(set(keys))
        for chunk in _chunks(unique, 500):
            sql = (
                f"SELECT e.idx, e.data FROM {table} AS k JOIN entries AS e ON e.idx = k.idx"  # noqa: S608 (fixed tables, placeholders)
                f" WHERE k.k IN ({','.join('?' * len(chunk))}) AND k.idx < ?"
            )
            if len(unique) <= QUICK_KEYS:
                rows = self._quick.execute(sql, [*chunk, below]).fetchall()
            else:
                rows = list(await self._r.execute_fetchall(sql, [*chunk, below]))
            out.extend((int(r[0]), bytes(r[1])) for r in rows)
        out.sort()
        return out

    async def _rows_by_file_range(
        self, lo: int, hi: int, start: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = await self._r.execute_fetchall(
            "SELECT e.idx, e.data FROM file_keys AS k JOIN entries AS e ON e.idx = k.idx"
            " WHERE k.k BETWEEN ? AND ? AND k.idx >= ? AND k.idx < ? ORDER BY k.idx LIMIT ?",
            (lo, hi, start, below, limit),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def _rows_by_signer(
        self, signer: str, start: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = await self._r.execute_fetchall(
            "SELECT e.idx, e.data FROM signers AS s JOIN entries AS e ON e.signer = s.id"
            " WHERE s.vkey = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx LIMIT ?",
            (signer, start, below, limit),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def _rows_by_hash_range(
        self, lo: int, hi: int, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = await self._r.execute_fetchall(
            "SELECT e.idx, e.data FROM hash_keys AS k JOIN entries AS e ON e.idx = k.idx"
            " WHERE k.k BETWEEN ? AND ? AND k.idx < ? ORDER BY k.k LIMIT ?",
            (lo, hi, below, limit),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def signers_between(self, low: str, high: str, limit: int) -> list[str]:
        rows = await self._r.execute_fetchall(
            "SELECT vkey FROM signers WHERE vkey >= ? AND vkey < ? ORDER BY vkey LIMIT ?",
            (low, high, limit),
        )
        return [str(r[0]) for r in rows]

    # -- explorer reads ---------------------------------------------------------
    #
    # Read-only queries for the HTML explorer. Every one takes the published tree
    # size (``below``: entry indexes < below, tree sizes <= below) so readers see
    # nothing the log has not published.

    async def entries_before(self, before: int, limit: int) -> list[tuple[int, bytes]]:
        async with self._r.execute(
            "SELECT idx, data FROM entries WHERE idx < ? ORDER BY idx DESC LIMIT ?",
            (before, limit),
        ) as cur:
            return [(int(r[0]), bytes(r[1])) for r in await cur.fetchall()]

    async def checkpoint_time(self, size: int) -> int | None:
        async with self._r.execute(
            "SELECT time_ms FROM checkpoints WHERE size = ?", (size,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def growth(self, below: int, points: int) -> list[tuple[int, int]]:
        step = max(1, -(-below // max(1, points)))
        targets = [*range(0, below, step), below]
        async with self._r.execute(
            "WITH t(v) AS (SELECT value FROM json_each(?1))"
            " SELECT DISTINCT c.size, c.time_ms FROM t JOIN checkpoints AS c ON c.size ="
            " (SELECT size FROM checkpoints WHERE size >= t.v AND size <= ?2"
            " ORDER BY size LIMIT 1) ORDER BY c.size",
            (json.dumps(targets), below),
        ) as cur:
            return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]

    # -- bulk copy (sigledger migrate) ------------------------------------------

    async def all_meta(self) -> dict[str, str]:
        async with self._r.execute("SELECT key, value FROM meta") as cur:
            return {str(r[0]): str(r[1]) for r in await cur.fetchall()}

    async def read_entry_rows(self, start: int, end: int) -> list[EntryRow]:
        rows = await self._r.execute_fetchall(
            "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [EntryRow.from_leaf(int(r[0]), bytes(r[1])) for r in rows]

    async def read_heads(self, start: int, limit: int) -> list[StoredHead]:
        async with self._r.execute(
            "SELECT size, root, time_ms, note, published FROM checkpoints WHERE size >= ?"
            " ORDER BY size LIMIT ?",
            (start, limit),
        ) as cur:
            return [
                StoredHead(int(r[0]), bytes(r[1]), int(r[2]), r[3], bool(r[4]))
                for r in await cur.fetchall()
            ]

    async def _stored_tile_rows(
        self, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, bytes]]:
        level, n = after
        async with self._r.execute(
            "SELECT level, n, data FROM tiles WHERE (level, n) > (?, ?) ORDER BY level, n LIMIT ?",
            (level, n, limit),
        ) as cur:
            return [(int(r[0]), int(r[1]), bytes(r[2])) for r in await cur.fetchall()]

    async def settle(self) -> None:
        return None  # entries are stored as they are loaded

    async def load(self, rows: Copied) -> None:
        async with transaction(self._w, _write_failed) as db:
            ids = await self._insert_entries(db, rows.entries)
            await db.executemany(
                "INSERT OR REPLACE INTO tiles (level, n, data) VALUES (?, ?, ?)",
                [(lv, n, data) for (lv, n), data in rows.tiles.items() if lv > 0],
            )
            await db.executemany(
                "INSERT INTO checkpoints (size, root, time_ms, note, published)"
                " VALUES (?, ?, ?, ?, ?)",
                [(h.size, h.root, h.time_ms, h.note, int(h.published)) for h in rows.heads],
            )
            await db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, v) for k, v in rows.meta.items() if k != SALT_KEY],
            )
        self._signer_ids.update(ids)


async def _signer_ids(
    db: aiosqlite.Connection, vkeys: set[str], known: dict[str, int]
) -> dict[str, int]:
    """Ids of ``vkeys`` (new ones inserted). ``known`` caches ids of committed rows only:
    an id is the row's, and a rolled-back insert would leave a stale one."""
    ids = {v: known[v] for v in vkeys if v in known}
    for vkey in sorted(vkeys - ids.keys()):
        await db.execute("INSERT OR IGNORE INTO signers (vkey) VALUES (?)", (vkey,))
        async with db.execute("SELECT id FROM signers WHERE vkey = ?", (vkey,)) as cur:
            row = await cur.fetchone()
        assert row is not None
        ids[vkey] = int(row[0])
    return ids


async def _ensure_salt(db: aiosqlite.Connection) -> None:
    """A new salt for a new file, or for one of an older schema (keys are made when it
    migrates); a file of this schema without one is damaged and refused at open."""
    async with db.execute("SELECT 1 FROM entries LIMIT 1") as cur:
        empty = await cur.fetchone() is None
    if empty or "project" in await table_columns(db, "entries"):
        await db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (SALT_KEY, new_salt())
        )


async def _migrate_checkpoints(db: aiosqlite.Connection) -> None:
    if "published" not in await table_columns(db, "checkpoints"):
        # Before witnessing, every checkpoint with a note had been published. One
        # transaction: a crash in between must not leave the column without its values.
        async with transaction(db):
            await db.execute(
                "ALTER TABLE checkpoints ADD COLUMN published INTEGER NOT NULL DEFAULT 0"
            )
            await db.execute("UPDATE checkpoints SET published = 1 WHERE note IS NOT NULL")


async def _to_schema_3(db: aiosqlite.Connection) -> None:
    """Schema 1/2 -> 3, inside the version check's transaction: rebuild ``entries``
    without its text columns and fill the key tables from the leaf bytes."""
    if "project" not in await table_columns(db, "entries"):
        return
    async with db.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)) as cur:
        row = await cur.fetchone()
    keys = IndexKeys.from_meta(None if row is None else str(row[0]))
    async with db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries") as cur:
        found_row = await cur.fetchone()
    total = int(found_row[0]) if found_row else 0
    # About a minute per million entries: say so, and how far it got.
    log.info("migrating the log database to schema %s", SCHEMA_VERSION, extra={"entries": total})
    await db.execute("DROP TABLE IF EXISTS entries_v3")
    await db.execute(
        "CREATE TABLE entries_v3 (idx INTEGER PRIMARY KEY, signer INTEGER NOT NULL,"
        " data BLOB NOT NULL)"
    )
    ids: dict[str, int] = {}
    # (key, identity, hash, index) of every entry, grouped in SQL at the end: memory
    # stays flat however long the log.
    await db.execute(
        "CREATE TEMP TABLE migrate_bindings (signer INTEGER, identity TEXT, sha256 BLOB,"
        " idx INTEGER)"
    )
    start = 0
    while True:
        async with db.execute(
            "SELECT idx, data FROM entries WHERE idx >= ? ORDER BY idx LIMIT 5000", (start,)
        ) as cur:
            chunk = [(int(i), bytes(d)) for i, d in await cur.fetchall()]
        if not chunk:
            break
        rows: list[EntryRow] = []
        for i, d in chunk:
            try:
                rows.append(EntryRow.from_leaf(i, d))
            except FormatError as exc:
                raise StorageError(f"entry {i} cannot be decoded: {exc}") from exc
        ids.update(await _insert_rows(db, "entries_v3", rows, keys, ids))
        await db.executemany(
            "INSERT INTO temp.migrate_bindings VALUES (?, ?, ?, ?)",
            [(ids[r.signer], r.identity, r.sha256, r.index) for r in rows],
        )
        if (chunk[-1][0] + 1) // REPORT_EVERY != start // REPORT_EVERY:
            log.info("migrating", extra={"done": chunk[-1][0] + 1, "entries": total})
        start = chunk[-1][0] + 1
    await db.execute("DROP TABLE entries")
    await db.execute("ALTER TABLE entries_v3 RENAME TO entries")
    await db.execute("DELETE FROM tiles WHERE level = 0")  # derived from the entries now
    async with db.execute(
        "SELECT s.vkey, b.identity, group_concat(b.idx) FROM (SELECT signer, identity,"
        " MIN(idx) AS idx FROM temp.migrate_bindings GROUP BY signer, identity, sha256) AS b"
        " JOIN signers AS s ON s.id = b.signer GROUP BY b.signer, b.identity"
        " HAVING COUNT(*) > 1"
    ) as cur:
        found = violations_json(
            (str(v), str(i), [int(x) for x in str(ix).split(",")])
            for v, i, ix in await cur.fetchall()
        )
    await db.execute("DROP TABLE temp.migrate_bindings")
    if found:
        await db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (VIOLATIONS_KEY, found)
        )


async def _insert_rows(
    db: aiosqlite.Connection,
    table: str,
    rows: Sequence[EntryRow],
    keys: IndexKeys,
    known: dict[str, int],
) -> dict[str, int]:
    """Insert ``rows`` into ``table`` (entries, or its migration's new table) and their
    keys; the signer ids used (``known``: see :func:`_signer_ids`)."""
    if not rows:
        return {}
    ids = await _signer_ids(db, {r.signer for r in rows}, known)
    keyed = [(r, *keys.of_row(r)) for r in rows]
    await db.executemany(
        f"INSERT INTO {table} (idx, signer, data) VALUES (?, ?, ?)",  # noqa: S608 (fixed names)
        [(r.index, ids[r.signer], r.data) for r, _h, _f in keyed],
    )
    await db.executemany(
        "INSERT INTO hash_keys (k, idx) VALUES (?, ?)", [(h, r.index) for r, h, _f in keyed]
    )
    await db.executemany(
        "INSERT INTO file_keys (k, idx) VALUES (?, ?)", [(f, r.index) for r, _h, f in keyed]
    )
    return ids


def _write_failed(exc: sqlite3.Error) -> BaseException:
    # A constraint violation is the caller's mistake (a reused index), not a broken store.
    if isinstance(exc, sqlite3.IntegrityError):
        return StorageConflictError(f"write refused: {exc}")
    return StorageError(f"database write failed: {exc}")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
