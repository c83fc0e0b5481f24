"""Durable storage of a log in one SQLite file: the only module that knows SQL.

:class:`Storage` implements :class:`~sigledger.ledger.log.store.LogStorage`.

Layout (schema version 2)::

    meta(key TEXT PRIMARY KEY, value TEXT)           origin, log vkey, schema version
    entries(idx INTEGER PRIMARY KEY, data BLOB,      leaf bytes, plus index columns
            project, version, filename, sha256, signer, time_ms,
            identity)                                the file identity key
                                                     (sigledger.ledger.entry.file_identity): the
                                                     binding rule and every comparison
                                                     of files use it, never the filename
    tiles(level, n, data BLOB)                       the newest bytes of hash tile (level, n);
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

Contracts:

* :meth:`Storage.commit_batch` is atomic and durable when it returns (WAL with
  ``synchronous=FULL``): the new entries, the changed tiles and the new tree
  head are all there, or none of them.
* Only one process may open a log for writing: :meth:`Storage.open` takes an
  exclusive ``flock`` on ``<db>.lock`` and raises :class:`StorageLockedError`
  when another process holds it. The kernel drops the lock when the holder
  dies, also on ``kill -9``.
* Reads run on a second connection, so serving tiles never waits behind a
  commit (WAL readers see the last committed state).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from sigledger.ledger.entry import file_identity
from sigledger.ledger.log.store import (
    Batch,
    BindingKey,
    BoundEntry,
    Copied,
    EntryQuery,
    EntryRow,
    Page,
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

SCHEMA_VERSION = "2"
# Indexes on columns that schema 1 lacked: created after the migration adds them.
_LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS entries_identity ON entries (identity);
CREATE INDEX IF NOT EXISTS entries_signer_identity ON entries (signer, identity, sha256);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    signer TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    identity TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS entries_file ON entries (project, version, filename);
CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256);
CREATE UNIQUE INDEX IF NOT EXISTS entries_binding ON entries (signer, project, version, filename);
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


# A note, once published, is never replaced by an unpublished one.
_SAVE_NOTE = (
    "UPDATE checkpoints SET note = ?1, published = ?2 WHERE size = ?3 AND (published = 0 OR ?2 = 1)"
)


class Storage:
    """A log's SQLite database (:class:`~sigledger.ledger.log.store.LogStorage` documents
    each method). Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, database: Database, reader: aiosqlite.Connection) -> None:
        self.path = database.path
        self._database = database
        self._w = database.conn
        self._r = reader

    @classmethod
    async def open(cls, path: Path | str) -> Storage:
        path = Path(path)

        async def setup(db: aiosqlite.Connection) -> None:
            await _migrate(db)
            # Schema 1 databases were brought up to date by _migrate.
            await check_schema_version(db, SCHEMA_VERSION, str(path), migrations={"1": None})

        database = await open_database(path, _SCHEMA, "sigledger process", setup=setup)
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only=ON")
        except BaseException as exc:
            await database.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(database, reader)

    async def close(self) -> None:
        try:
            await self._r.close()
        finally:
            await self._database.close()

    # -- metadata ---------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._w.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, values: dict[str, str]) -> None:
        await self._transaction(
            [("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))]
        )

    async def initialize(self, meta: dict[str, str], empty_root: bytes, time_ms: int) -> None:
        await self._transaction(
            [
                ("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items())),
                (
                    "INSERT INTO checkpoints (size, root, time_ms) VALUES (?, ?, ?)",
                    [(0, empty_root, time_ms)],
                ),
            ]
        )

    # -- writes -----------------------------------------------------------------

    async def commit_batch(self, batch: Batch) -> None:
        await self._transaction(
            [
                (_INSERT_ENTRY, [_entry_values(e) for e in batch.entries]),
                (
                    "INSERT OR REPLACE INTO tiles (level, n, data) VALUES (?, ?, ?)",
                    [(lv, n, data) for (lv, n), data in batch.tiles.items()],
                ),
                (
                    "INSERT INTO checkpoints (size, root, time_ms) VALUES (?, ?, ?)",
                    [(batch.size, batch.root, batch.time_ms)],
                ),
                (_SAVE_NOTE, [(n, int(p), s) for s, n, p in batch.notes]),
            ]
        )

    async def save_notes(self, notes: Iterable[tuple[int, bytes, bool]]) -> None:
        await self._transaction([(_SAVE_NOTE, [(n, int(p), s) for s, n, p in notes])])

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        async with transaction(self._w, _write_failed) as db:
            for sql, rows in statements:
                if rows:
                    await db.executemany(sql, rows)

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

    async def read_tile(self, level: int, n: int) -> bytes | None:
        rows = list(
            await self._r.execute_fetchall(
                "SELECT data FROM tiles WHERE level = ? AND n = ?", (level, n)
            )
        )
        return bytes(rows[0][0]) if rows else None

    async def read_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
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

    async def lookup(self, query: EntryQuery) -> list[tuple[int, bytes]]:
        where = ["idx >= ?", "idx < ?"] + [f"{column} = ?" for column, _ in query.filters()]
        params: list[Any] = [query.start, query.below]
        params += [value for _, value in query.filters()]
        sql = f"SELECT idx, data FROM entries WHERE {' AND '.join(where)} ORDER BY idx LIMIT ?"  # noqa: S608 (fixed columns, placeholders)
        params.append(query.limit)
        return [(int(r[0]), bytes(r[1])) for r in await self._r.execute_fetchall(sql, params)]

    async def lookup_hashes(
        self, hashes: Sequence[bytes], *, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for chunk in _chunks(sorted(set(hashes)), 500):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT idx, data FROM entries WHERE sha256 IN ({marks}) AND idx < ? LIMIT ?"  # noqa: S608 (placeholders only)
            rows = await self._r.execute_fetchall(sql, [*chunk, below, limit - len(out)])
            out.extend((int(r[0]), bytes(r[1])) for r in rows)
            if len(out) >= limit:
                break
        return out

    async def lookup_identities(
        self, identities: Iterable[str], *, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        wanted = sorted(set(identities))
        if not wanted:
            return []
        sql = (
            "SELECT e.idx, e.data FROM json_each(?) AS k CROSS JOIN entries AS e"
            " INDEXED BY entries_identity ON e.identity = k.value WHERE e.idx < ? LIMIT ?"
        )
        rows = await self._r.execute_fetchall(sql, (json.dumps(wanted), below, limit))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def find_bindings(self, keys: Iterable[BindingKey]) -> dict[BindingKey, list[BoundEntry]]:
        # One query for the whole batch: the keys travel as one JSON parameter.
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        sql = (
            "WITH k AS (SELECT value ->> 0 AS signer, value ->> 1 AS identity"
            " FROM json_each(?)) SELECT e.signer, e.identity, e.idx, e.sha256, e.data"
            " FROM k CROSS JOIN entries AS e INDEXED BY entries_signer_identity"
            " ON e.signer = k.signer AND e.identity = k.identity ORDER BY e.idx"
        )
        out: dict[BindingKey, list[BoundEntry]] = {}
        async with self._w.execute(sql, (json.dumps(wanted),)) as cur:
            for row in await cur.fetchall():
                key = (str(row[0]), str(row[1]))
                out.setdefault(key, []).append(
                    BoundEntry(int(row[2]), bytes(row[3]), bytes(row[4]))
                )
        return out

    async def identity_violations(self, limit: int = 1000) -> list[tuple[str, str, list[int]]]:
        sql = (
            "SELECT signer, identity, group_concat(idx) FROM entries INDEXED BY"
            " entries_signer_identity GROUP BY signer, identity"
            " HAVING COUNT(DISTINCT sha256) > 1 LIMIT ?"
        )
        async with self._r.execute(sql, (limit,)) as cur:
            return [
                (str(r[0]), str(r[1]), sorted(int(i) for i in str(r[2]).split(",")))
                for r in await cur.fetchall()
            ]

    # -- explorer reads ---------------------------------------------------------
    #
    # Read-only queries for the HTML explorer. Every one takes the published tree
    # size (``below``: entry indexes < below, tree sizes <= below) so readers see
    # nothing the log has not published, answers at most ``limit`` rows, and is
    # an index range scan. Aggregates over a project or a signer look at no more
    # than ``scan`` of its entries. Paging is by keyset: ``after`` is the index of
    # the last entry of the previous page.

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

    async def project_entries(
        self, project: str, version: str | None, page: Page
    ) -> list[tuple[int, bytes]]:
        where = ["project = ?", "idx < ?"]
        params: list[Any] = [project, page.below]
        if version is not None:
            where.append("version = ?")
            params.append(version)
        return await self._entry_page(where, params, "version, filename, idx", page)

    async def project_versions(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int, int]]:
        async with self._r.execute(
            "SELECT version, COUNT(*), MIN(idx), MIN(time_ms) FROM (SELECT version, idx,"
            " time_ms FROM entries WHERE project = ? AND idx < ? LIMIT ?)"
            " GROUP BY version ORDER BY MIN(idx) DESC LIMIT ?",
            (project, below, scan, limit),
        ) as cur:
            return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()]

    async def project_signers(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        async with self._r.execute(
            "SELECT signer, COUNT(*), MIN(idx) FROM (SELECT signer, idx FROM entries"
            " WHERE project = ? AND idx < ? LIMIT ?) GROUP BY signer ORDER BY MIN(idx) LIMIT ?",
            (project, below, scan, limit),
        ) as cur:
            return [(str(r[0]), int(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def project_conflicts(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, str, int, int]]:
        async with self._r.execute(
            "SELECT MIN(version), MIN(filename), COUNT(DISTINCT sha256), COUNT(*) FROM"
            " (SELECT version, filename, sha256, identity FROM entries WHERE project = ?"
            " AND idx < ? LIMIT ?) GROUP BY identity HAVING COUNT(DISTINCT sha256) > 1"
            " ORDER BY MIN(version), MIN(filename) LIMIT ?",
            (project, below, scan, limit),
        ) as cur:
            return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()]

    async def signer_entries(self, signer: str, page: Page) -> list[tuple[int, bytes]]:
        return await self._entry_page(
            ["signer = ?", "idx < ?"], [signer, page.below], "project, version, filename", page
        )

    async def _entry_page(
        self, where: list[str], params: list[Any], order: str, page: Page
    ) -> list[tuple[int, bytes]]:
        """(index, data) of the entries matching ``where``, ordered by the columns
        ``order``, one :class:`Page`."""
        if page.after is not None:
            after_clause = f"({order}) > (SELECT {order} FROM entries WHERE idx = ?)"  # noqa: S608 (fixed columns)
            where = [*where, after_clause]
            params = [*params, page.after]
        sql = (
            f"SELECT idx, data FROM entries WHERE {' AND '.join(where)}"  # noqa: S608 (fixed clauses)
            f" ORDER BY {order} LIMIT ?"
        )
        async with self._r.execute(sql, [*params, page.limit]) as cur:
            return [(int(r[0]), bytes(r[1])) for r in await cur.fetchall()]

    async def signer_projects(
        self, signer: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        async with self._r.execute(
            "SELECT project, COUNT(*), MIN(idx) FROM (SELECT project, idx FROM entries"
            " WHERE signer = ? AND idx < ? LIMIT ?) GROUP BY project ORDER BY project LIMIT ?",
            (signer, below, scan, limit),
        ) as cur:
            return [(str(r[0]), int(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def file_hash_counts(
        self, identities: Iterable[str], below: int
    ) -> dict[str, tuple[int, int, int]]:
        wanted = sorted(set(identities))
        if not wanted:
            return {}
        sql = (
            "SELECT k.value, COUNT(DISTINCT e.sha256), COUNT(*), COUNT(DISTINCT e.signer)"
            " FROM json_each(?) AS k CROSS JOIN entries AS e INDEXED BY entries_identity"
            " ON e.identity = k.value WHERE e.idx < ? GROUP BY k.value"
        )
        out: dict[str, tuple[int, int, int]] = {}
        async with self._r.execute(sql, (json.dumps(wanted), below)) as cur:
            for r in await cur.fetchall():
                out[str(r[0])] = (int(r[1]), int(r[2]), int(r[3]))
        return out

    async def hashes_between(self, low: bytes, high: bytes, below: int, limit: int) -> list[bytes]:
        async with self._r.execute(
            "SELECT DISTINCT sha256 FROM entries INDEXED BY entries_sha256"
            " WHERE sha256 BETWEEN ? AND ? AND idx < ? ORDER BY sha256 LIMIT ?",
            (low, high, below, limit),
        ) as cur:
            return [bytes(r[0]) for r in await cur.fetchall()]

    async def signers_between(self, low: str, high: str, limit: int) -> list[str]:
        async with self._r.execute(
            "SELECT DISTINCT signer FROM entries INDEXED BY entries_signer_identity"
            " WHERE signer >= ? AND signer < ? ORDER BY signer LIMIT ?",
            (low, high, limit),
        ) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    # -- bulk copy (sigledger migrate) ------------------------------------------

    async def all_meta(self) -> dict[str, str]:
        async with self._r.execute("SELECT key, value FROM meta") as cur:
            return {str(r[0]): str(r[1]) for r in await cur.fetchall()}

    async def read_entry_rows(self, start: int, end: int) -> list[EntryRow]:
        async with self._r.execute(
            "SELECT idx, data, project, version, filename, sha256, signer, time_ms, identity"
            " FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ) as cur:
            return [EntryRow.from_row(r) for r in await cur.fetchall()]

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

    async def read_tile_rows(
        self, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, bytes]]:
        level, n = after if after is not None else (-1, -1)
        async with self._r.execute(
            "SELECT level, n, data FROM tiles WHERE (level, n) > (?, ?) ORDER BY level, n LIMIT ?",
            (level, n, limit),
        ) as cur:
            return [(int(r[0]), int(r[1]), bytes(r[2])) for r in await cur.fetchall()]

    async def load(self, rows: Copied) -> None:
        await self._transaction(
            [
                (_INSERT_ENTRY, [_entry_values(e) for e in rows.entries]),
                (
                    "INSERT OR REPLACE INTO tiles (level, n, data) VALUES (?, ?, ?)",
                    [(lv, n, data) for (lv, n), data in rows.tiles.items()],
                ),
                (
                    "INSERT INTO checkpoints (size, root, time_ms, note, published)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(h.size, h.root, h.time_ms, h.note, int(h.published)) for h in rows.heads],
                ),
                (
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    list(rows.meta.items()),
                ),
            ]
        )


_INSERT_ENTRY = (
    "INSERT INTO entries (idx, data, project, version, filename, sha256, signer,"
    " time_ms, identity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _entry_values(e: EntryRow) -> tuple[Any, ...]:
    return (
        e.index,
        e.data,
        e.project,
        e.version,
        e.filename,
        e.sha256,
        e.signer,
        e.time_ms,
        e.identity,
    )


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring databases of schema 1 (and its development versions) up to date."""
    if "identity" not in await table_columns(db, "entries"):
        # Schema 1 -> 2: the file identity of every entry, computed from its filename.
        async with transaction(db):
            await db.execute("ALTER TABLE entries ADD COLUMN identity TEXT NOT NULL DEFAULT ''")
            async with db.execute("SELECT idx, filename FROM entries") as cur:
                rows = [(file_identity(str(f)).key, int(i)) for i, f in await cur.fetchall()]
            await db.executemany("UPDATE entries SET identity = ? WHERE idx = ?", rows)
    await db.executescript(_LATE_INDEXES)
    if "published" not in await table_columns(db, "checkpoints"):
        # Before witnessing, every checkpoint with a note had been published. One
        # transaction: a crash in between must not leave the column without its values.
        async with transaction(db):
            await db.execute(
                "ALTER TABLE checkpoints ADD COLUMN published INTEGER NOT NULL DEFAULT 0"
            )
            await db.execute("UPDATE checkpoints SET published = 1 WHERE note IS NOT NULL")


def _write_failed(exc: sqlite3.Error) -> BaseException:
    # A constraint violation is the caller's mistake (a reused index), not a broken store.
    if isinstance(exc, sqlite3.IntegrityError):
        return StorageConflictError(f"write refused: {exc}")
    return StorageError(f"database write failed: {exc}")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
