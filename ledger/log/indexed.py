"""Lookups over compact index keys, shared by both storage engines.

Both engines store each entry once: its leaf bytes, its index and a signer id
(``signers`` holds each verifier key once). Nothing else of an entry is kept as
text. Lookups go through two small integer keys (see :class:`IndexKeys`):

* the **hash key**: the first 47 bits of the file's SHA-256, so a key range finds
  the hashes that start with a given hex prefix (the explorer's search);
* the **file key**: 23 bits of the PEP 503 project name, then 24 bits of the
  canonical version of the file's identity
  (:func:`~sigledger.ledger.entry.file_identity`), so one key finds every
  spelling of a release's files and a key range finds a whole project.

File keys are keyed BLAKE2b hashes with a random per-log salt (meta
``index_salt``), so nobody can aim colliding names at another project's key (hash
keys need no salt: a collision there costs a second preimage search of 47 bits). A key selects
*candidates*; every answer is then decoded and compared in full here, so a
collision costs a little time and never a wrong answer.

**Level-0 hash tiles are not stored**: a level-0 tile holds the leaf hashes of
its 256 entries, which the entries themselves give (one range read and 256
SHA-256s); only tiles of level 1 and up are kept. This saves 32 bytes per entry,
and the read cache (reads.py) keeps the tiles it served.

Engines implement the ``_rows_*`` and ``_stored_*`` primitives (each one index
range scan) and ``read_entries``; this module implements the
:class:`~sigledger.ledger.log.store.LogStorage` tile reads, lookups, the binding
check and the explorer's aggregates over them, once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from packaging.utils import canonicalize_name, canonicalize_version

from sigledger.ledger.entry import FileIdentity, decode_entry, file_identity, signer_vkey
from sigledger.ledger.log.store import BindingKey, BoundEntry, EntryQuery, EntryRow, Page
from sigledger.ledger.merkle import leaf_hash
from sigledger.ledger.tiles import TILE_WIDTH

__all__ = [
    "SALT_KEY",
    "VIOLATIONS_KEY",
    "IndexKeys",
    "IndexedLookups",
    "Leaf",
    "new_salt",
    "violations_json",
]

SALT_KEY = "index_salt"
# Identity-rule violations of logs written before the rule, found when migrating them.
VIOLATIONS_KEY = "identity_violations"
HASH_BITS = 47  # SQLite stores integers below 2**47 in 6 bytes
VERSION_BITS = 24
PROJECT_BITS = HASH_BITS - VERSION_BITS
# Entries between progress lines of the engines' long migrations.
REPORT_EVERY = 100_000
# How many candidates one round trip fetches while filling a bounded answer.
SCAN_CHUNK = 512

Row = tuple[int, bytes]


def new_salt() -> str:
    return os.urandom(16).hex()


def _h(salt: bytes, what: bytes, bits: int) -> int:
    digest = hashlib.blake2b(what, digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


@dataclass(frozen=True, slots=True)
class IndexKeys:
    """The key functions of one log (its salt)."""

    salt: bytes

    @classmethod
    def from_meta(cls, value: str | None) -> IndexKeys:
        if not value:
            raise ValueError("the log has no index salt")
        return cls(bytes.fromhex(value))

    @staticmethod
    def hash_key(sha256: bytes) -> int:
        return int.from_bytes(sha256[:8], "big") >> (64 - HASH_BITS)

    def file_key(self, project: str, version: str) -> int:
        """Key of (normalized project, canonical version): equal for equal versions."""
        p = _h(self.salt, b"p" + canonicalize_name(project).encode(), PROJECT_BITS)
        v = canonicalize_version(version, strip_trailing_zero=True)
        return (p << VERSION_BITS) | _h(self.salt, b"v" + v.encode(), VERSION_BITS)

    def project_range(self, project: str) -> tuple[int, int]:
        """Inclusive range of the file keys of every release of ``project``."""
        p = _h(self.salt, b"p" + canonicalize_name(project).encode(), PROJECT_BITS)
        return p << VERSION_BITS, ((p + 1) << VERSION_BITS) - 1

    def identity_keys(self, identities: Iterable[str]) -> list[int]:
        """File keys of file identity key strings (``sdist NAME VERSION``, ``wheel ...``);
        strings of another shape select nothing."""
        keys: set[int] = set()
        for identity in identities:
            parts = identity.split(" ")
            if len(parts) >= 3 and parts[0] in ("sdist", "wheel"):
                keys.add(self.file_key(parts[1], parts[2]))
        return sorted(keys)

    def of_row(self, row: EntryRow) -> tuple[int, int]:
        """(hash key, file key) of a new entry."""
        ident = file_identity(row.filename)
        return self.hash_key(row.sha256), self.file_key(ident.project, ident.version)


def violations_json(found: Iterable[tuple[str, str, Iterable[int]]]) -> str | None:
    """What a migration records in meta ``identity_violations``: the (key, file identity,
    first index of each hash) of every file one key logged with several hashes before
    the identity rule (the engines group them in SQL), or None when there are none."""
    rows = sorted([vkey, identity, sorted(int(i) for i in ids)] for vkey, identity, ids in found)
    return json.dumps(rows) if rows else None


@dataclass(frozen=True, slots=True)
class Leaf:
    """The fields of a stored entry that lookups compare, read without the checks of
    :func:`~sigledger.ledger.entry.decode_entry` (every stored entry passed them when
    it was logged; readers of the answers decode in full). Both kinds of entry
    (statements, observations) keep these fields at the same places."""

    project: str
    version: str
    filename: str
    sha256: bytes
    key_name: str
    public_key: bytes
    time_ms: int

    @classmethod
    def parse(cls, data: bytes) -> Leaf | None:
        """None for bytes that are not an entry (a damaged row: fsck reports those)."""
        try:
            f = msgpack.unpackb(data, raw=False)
            leaf = cls(f[1], f[2], f[3], bytes(f[4]), f[6], bytes(f[7]), int(f[-1]))
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException):
            return None
        return leaf if isinstance(leaf.project, str) else None

    @property
    def signer(self) -> str:
        return signer_vkey(self.key_name, self.public_key)

    @property
    def identity(self) -> FileIdentity:
        return file_identity(self.filename)


def _decoded(rows: Iterable[Row]) -> list[tuple[int, bytes, Leaf]]:
    out = []
    for i, data in rows:
        leaf = Leaf.parse(data)
        if leaf is not None:
            out.append((i, data, leaf))
    return out


def _matches(e: Leaf, q: EntryQuery) -> bool:
    return (
        (q.sha256 is None or e.sha256 == q.sha256)
        and (q.project is None or e.project == q.project)
        and (q.version is None or e.version == q.version)
        and (q.identity is None or e.identity.key == q.identity)
    )


def _file_order(e: Leaf) -> tuple[str, str]:
    return e.version, e.filename


class IndexedLookups:
    """The lookups of :class:`~sigledger.ledger.log.store.LogStorage` over key scans.

    Subclasses provide ``keys`` (set when the log is opened) and the primitives.
    """

    keys: IndexKeys

    # -- primitives (engines) ---------------------------------------------------

    async def _rows_by_hash_keys(self, keys: Sequence[int], below: int) -> list[Row]:
        """Rows whose hash key is in ``keys`` and index < below, by index."""
        raise NotImplementedError

    async def _rows_by_file_keys(self, keys: Sequence[int], below: int) -> list[Row]:
        """Rows whose file key is in ``keys`` and index < below, by index."""
        raise NotImplementedError

    async def _rows_by_file_range(
        self, lo: int, hi: int, start: int, below: int, limit: int
    ) -> list[Row]:
        """Rows with lo <= file key <= hi and start <= index < below: the first
        ``limit`` by index."""
        raise NotImplementedError

    async def _rows_by_signer(self, signer: str, start: int, below: int, limit: int) -> list[Row]:
        """A signer's rows with start <= index < below: the first ``limit`` by index."""
        raise NotImplementedError

    async def _rows_by_hash_range(self, lo: int, hi: int, below: int, limit: int) -> list[Row]:
        """Rows with lo <= hash key <= hi and index < below: the first ``limit`` by key."""
        raise NotImplementedError

    async def get_meta(self, key: str) -> str | None:
        raise NotImplementedError

    async def read_entries(self, start: int, end: int) -> list[bytes]:
        raise NotImplementedError

    async def _stored_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored tiles (level >= 1) among ``refs``."""
        raise NotImplementedError

    async def _stored_tile_rows(
        self, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, bytes]]:
        """At most ``limit`` stored tiles (level, n, data) after ``after``, by (level, n)."""
        raise NotImplementedError

    # -- hash tiles -----------------------------------------------------------------

    async def read_tile(self, level: int, n: int) -> bytes | None:
        return (await self.read_tiles([(level, n)])).get((level, n))

    async def read_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = set(refs)
        out = await self._stored_tiles([r for r in wanted if r[0] > 0])
        leaves = sorted(n for level, n in wanted if level == 0)
        # Runs of consecutive tiles are one range read each.
        runs: list[list[int]] = []
        for n in leaves:
            if runs and n == runs[-1][-1] + 1 and len(runs[-1]) < 64:
                runs[-1].append(n)
            else:
                runs.append([n])
        for run in runs:
            out.update(await self._leaf_tiles(run[0], run[-1] + 1))
        return out

    async def _leaf_tiles(self, first: int, end: int) -> dict[tuple[int, int], bytes]:
        """Level-0 tiles first <= n < end, from the entries (the newest, partial or full)."""
        data = await self.read_entries(first * TILE_WIDTH, end * TILE_WIDTH)
        out: dict[tuple[int, int], bytes] = {}
        for n in range(first, end):
            chunk = data[(n - first) * TILE_WIDTH : (n - first + 1) * TILE_WIDTH]
            if not chunk:
                break
            out[(0, n)] = b"".join(leaf_hash(d) for d in chunk)
        return out

    async def read_tile_rows(
        self, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, bytes]]:
        rows: list[tuple[int, int, bytes]] = []
        if after is None or after[0] == 0:
            first = 0 if after is None else after[1] + 1
            want = min(limit, 64)  # bounded memory: 64 tiles are 16,384 entries
            tiles = await self._leaf_tiles(first, first + want)
            rows = [(0, n, tiles[(0, n)]) for n in sorted(n for _, n in tiles)]
            if len(rows) == want:
                return rows
            after = (0, 2**62)
        return rows + await self._stored_tile_rows(after, limit - len(rows))

    # -- lookups ------------------------------------------------------------------

    async def lookup(self, query: EntryQuery) -> list[Row]:
        if query.sha256 is not None:
            rows = await self._rows_by_hash_keys([self.keys.hash_key(query.sha256)], query.below)
            return [
                (i, d) for i, d, e in _decoded(rows) if i >= query.start and _matches(e, query)
            ][: query.limit]
        assert query.project is not None
        if query.identity is not None or query.version is not None:
            keys = (
                self.keys.identity_keys([query.identity])
                if query.identity is not None
                else [self.keys.file_key(query.project, query.version or "")]
            )
            rows = await self._rows_by_file_keys(keys, query.below)
            return [
                (i, d) for i, d, e in _decoded(rows) if i >= query.start and _matches(e, query)
            ][: query.limit]
        lo, hi = self.keys.project_range(query.project)
        return await self._scan_range(lo, hi, query.start, query.below, query.limit, query)

    async def _scan_range(
        self, lo: int, hi: int, start: int, below: int, limit: int, query: EntryQuery
    ) -> list[Row]:
        out: list[Row] = []
        while len(out) < limit:
            rows = await self._rows_by_file_range(lo, hi, start, below, SCAN_CHUNK)
            out += [(i, d) for i, d, e in _decoded(rows) if _matches(e, query)]
            if len(rows) < SCAN_CHUNK:
                break
            start = rows[-1][0] + 1
        return out[:limit]

    async def _project_rows(
        self, project: str, below: int, limit: int
    ) -> list[tuple[int, bytes, Leaf]]:
        """The first ``limit`` entries of ``project`` (index < below), decoded."""
        lo, hi = self.keys.project_range(project)
        query = EntryQuery(below=below, project=project, limit=limit)
        rows = await self._scan_range(lo, hi, 0, below, limit, query)
        return _decoded(rows)

    async def lookup_hashes(self, hashes: Sequence[bytes], *, below: int, limit: int) -> list[Row]:
        wanted = set(hashes)
        if not wanted:
            return []
        rows = await self._rows_by_hash_keys(sorted({self.keys.hash_key(h) for h in wanted}), below)
        return [(i, d) for i, d, e in _decoded(rows) if e.sha256 in wanted][:limit]

    async def lookup_identities(
        self, identities: Iterable[str], *, below: int, limit: int
    ) -> list[Row]:
        wanted = set(identities)
        if not wanted:
            return []
        rows = await self._rows_by_file_keys(self.keys.identity_keys(wanted), below)
        return [(i, d) for i, d, e in _decoded(rows) if e.identity.key in wanted][:limit]

    async def find_bindings(self, keys: Iterable[BindingKey]) -> dict[BindingKey, list[BoundEntry]]:
        wanted = set(keys)
        if not wanted:
            return {}
        file_keys = self.keys.identity_keys(identity for _, identity in wanted)
        out: dict[BindingKey, list[BoundEntry]] = {}
        for i, d, e in _decoded(await self._rows_by_file_keys(file_keys, 2**62)):
            key = (e.signer, e.identity.key)
            if key in wanted:
                out.setdefault(key, []).append(BoundEntry(i, e.sha256, d))
        return out

    async def identity_violations(self, limit: int = 1000) -> list[tuple[str, str, list[int]]]:
        # The sequencer refuses a second hash per (signer, identity); only logs written
        # before that rule can hold violations, and migrating them recorded which.
        stored = await self.get_meta(VIOLATIONS_KEY)
        if not stored:
            return []
        return [(str(s), str(i), [int(x) for x in ids]) for s, i, ids in json.loads(stored)][:limit]

    # -- explorer aggregates ----------------------------------------------------------

    async def hashes_between(self, low: bytes, high: bytes, below: int, limit: int) -> list[bytes]:
        lo, hi = self.keys.hash_key(low), self.keys.hash_key(high)
        found: set[bytes] = set()
        scanned = 0
        while len(found) < limit:
            rows = await self._rows_by_hash_range(lo, hi, below, SCAN_CHUNK)
            found |= {e.sha256 for _i, _d, e in _decoded(rows) if low <= e.sha256 <= high}
            scanned += len(rows)
            if len(rows) < SCAN_CHUNK or scanned >= 16 * SCAN_CHUNK:
                break
            # Many entries of one key (a popular hash logged by many): go on after it.
            lo = self.keys.hash_key(decode_entry(rows[-1][1]).statement.sha256) + 1
        return sorted(found)[:limit]

    async def project_entries(self, project: str, version: str | None, page: Page) -> list[Row]:
        if version is not None:
            rows = await self._rows_by_file_keys([self.keys.file_key(project, version)], page.below)
            found = [
                (i, d, e)
                for i, d, e in _decoded(rows)
                if e.project == project and e.version == version
            ]
        else:
            found = await self._project_rows(project, page.below, 2**62)
        return _keyset_page(found, lambda i, e: (*_file_order(e), i), page)

    async def project_versions(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int, int]]:
        by_version: dict[str, list[int]] = {}
        for i, _d, e in await self._project_rows(project, below, scan):
            v = by_version.setdefault(e.version, [0, i, e.time_ms])
            v[0] += 1
            v[2] = min(v[2], e.time_ms)
        out = [(ver, n, first, t) for ver, (n, first, t) in by_version.items()]
        out.sort(key=lambda r: r[2], reverse=True)
        return out[:limit]

    async def project_signers(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        by_signer: dict[str, list[int]] = {}
        for i, _d, e in await self._project_rows(project, below, scan):
            s = by_signer.setdefault(e.signer, [0, i])
            s[0] += 1
        out = [(vkey, n, first) for vkey, (n, first) in by_signer.items()]
        out.sort(key=lambda r: r[2])
        return out[:limit]

    async def project_conflicts(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, str, int, int]]:
        files: dict[str, tuple[list[str], list[str], set[bytes], list[int]]] = {}
        for _i, _d, e in await self._project_rows(project, below, scan):
            f = files.setdefault(e.identity.key, ([], [], set(), [0]))
            f[0].append(e.version)
            f[1].append(e.filename)
            f[2].add(e.sha256)
            f[3][0] += 1
        out = [
            (min(versions), min(names), len(hashes), count[0])
            for versions, names, hashes, count in files.values()
            if len(hashes) > 1
        ]
        out.sort(key=lambda r: (r[0], r[1]))
        return out[:limit]

    async def signer_entries(self, signer: str, page: Page) -> list[Row]:
        rows = _decoded(await self._rows_by_signer(signer, 0, page.below, 2**62))
        return _keyset_page(rows, lambda i, e: (e.project, *_file_order(e), i), page)

    async def signer_projects(
        self, signer: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        by_project: dict[str, list[int]] = {}
        for i, _d, e in _decoded(await self._rows_by_signer(signer, 0, below, scan)):
            p = by_project.setdefault(e.project, [0, i])
            p[0] += 1
        return sorted((name, n, first) for name, (n, first) in by_project.items())[:limit]

    async def file_hash_counts(
        self, identities: Iterable[str], below: int
    ) -> dict[str, tuple[int, int, int]]:
        wanted = set(identities)
        if not wanted:
            return {}
        keys = self.keys.identity_keys(wanted)
        groups: dict[str, tuple[set[bytes], list[int], set[str]]] = {}
        for _i, _d, e in _decoded(await self._rows_by_file_keys(keys, below)):
            ident = e.identity.key
            if ident in wanted:
                g = groups.setdefault(ident, (set(), [0], set()))
                g[0].add(e.sha256)
                g[1][0] += 1
                g[2].add(e.signer)
        return {k: (len(h), n[0], len(s)) for k, (h, n, s) in groups.items()}


def _keyset_page(
    rows: list[tuple[int, bytes, Leaf]],
    order: Callable[[int, Leaf], tuple[Any, ...]],
    page: Page,
) -> list[Row]:
    """One :class:`Page` of ``rows`` sorted by ``order``, after the row of index ``page.after``."""
    keyed = sorted(((order(i, e), i, d) for i, d, e in rows), key=lambda r: r[0])
    if page.after is not None:
        mark = next((k for k, i, _ in keyed if i == page.after), None)
        if mark is not None:
            keyed = [r for r in keyed if r[0] > mark]
    return [(i, d) for _k, i, d in keyed[: page.limit]]
