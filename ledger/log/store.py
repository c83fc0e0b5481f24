"""What a log keeps durably, independent of the database engine.

:class:`LogStorage` is the seam between the log's services (the sequencer, the read
handlers, the explorer) and a database: :class:`~sigledger.ledger.log.storage.Storage`
implements it on one SQLite file, :class:`~sigledger.ledger.log.postgres.PostgresStorage`
on PostgreSQL; :func:`~sigledger.ledger.log.database.open_storage` opens either from a
URL. The records below are what crosses it.

Contracts every implementation keeps:

* :meth:`LogStorage.commit_batch` is atomic and durable when it returns: the new
  entries, the changed tiles, the new tree head (and any notes given) are all
  there, or none of them. One root per tree size, ever.
* A note saved as published is never replaced by an unpublished one
  (:meth:`LogStorage.save_notes`).
* Only one process writes a log at a time; a second writer is refused at open.
* Reads see the last committed state and never wait behind a commit.
* Entries are immutable: ``index`` is the leaf index; ``data`` the leaf bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sigledger.ledger.entry import decode_entry

__all__ = [
    "Batch",
    "BindingKey",
    "BoundEntry",
    "Copied",
    "EntryQuery",
    "EntryRow",
    "LogStorage",
    "Page",
    "StoredHead",
]


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One entry and the fields its lookup keys and bindings are made from."""

    index: int
    data: bytes
    project: str
    version: str
    filename: str
    sha256: bytes
    signer: str
    time_ms: int
    identity: str

    @classmethod
    def from_leaf(cls, index: int, data: bytes) -> EntryRow:
        """The row of stored leaf bytes (FormatError if they are not an entry)."""
        e = decode_entry(data)
        st = e.statement
        return cls(
            index, data, st.project, st.version, st.filename, st.sha256, e.signed.signer_vkey(),
            e.time_ms, st.identity.key,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredHead:
    size: int
    root: bytes
    time_ms: int
    note: bytes | None
    published: bool = False


BindingKey = tuple[str, str]  # (signer vkey, file identity key)


@dataclass(frozen=True, slots=True)
class BoundEntry:
    index: int
    sha256: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """One commit: new entries, the hash tiles they changed and the new tree head.

    ``notes`` are (size, signed note, published) for earlier tree heads, persisted in
    the same transaction (a head is signed only after its own commit).
    """

    entries: Sequence[EntryRow]
    tiles: Mapping[tuple[int, int], bytes]
    size: int
    root: bytes
    time_ms: int
    notes: Iterable[tuple[int, bytes, bool]] = ()


@dataclass(frozen=True, slots=True)
class Copied:
    """Rows copied from another store (see :meth:`LogStorage.load`)."""

    entries: Sequence[EntryRow] = ()
    tiles: Mapping[tuple[int, int], bytes] = field(default_factory=dict)
    heads: Sequence[StoredHead] = ()
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an ordered listing: entries below index ``below``, from just after
    entry ``after`` (keyset paging; None: from the start), at most ``limit``."""

    below: int
    after: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Entries matching every given field with ``start <= index < below``; at most ``limit``.

    ``sha256`` or ``project`` must be given, so every query uses an index.
    """

    below: int
    sha256: bytes | None = None
    project: str | None = None
    version: str | None = None
    identity: str | None = None
    start: int = 0
    limit: int = 100

    def __post_init__(self) -> None:
        if self.sha256 is None and self.project is None:
            raise ValueError("an entry query needs sha256 or project")


class LogStorage(Protocol):
    """A log's durable state: entries, hash tiles, tree heads, bindings and lookups.

    Index arguments named ``below`` bound every read to a tree size, so that an
    answer never includes entries a reader's checkpoint does not cover.
    """

    async def close(self) -> None: ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, values: dict[str, str]) -> None: ...

    async def initialize(self, meta: dict[str, str], empty_root: bytes, time_ms: int) -> None:
        """Create a new, empty log: metadata plus the size-0 tree head, atomically."""
        ...

    async def commit_batch(self, batch: Batch) -> None:
        """Durably store the batch's entries, tiles, tree head and notes, atomically."""
        ...

    async def save_notes(self, notes: Iterable[tuple[int, bytes, bool]]) -> None:
        """Persist (size, signed note, published) for committed tree heads."""
        ...

    async def latest_head(self, *, published: bool = False) -> StoredHead | None:
        """The newest committed tree head (or the newest one shown to readers)."""
        ...

    async def count_entries(self) -> int: ...

    async def read_tile(self, level: int, n: int) -> bytes | None: ...

    async def read_tiles(self, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    async def read_entries(self, start: int, end: int) -> list[bytes]:
        """Entries with start <= index < end, in order."""
        ...

    async def lookup(self, query: EntryQuery) -> list[tuple[int, bytes]]:
        """(index, leaf bytes) of the entries ``query`` selects, by index."""
        ...

    async def lookup_hashes(
        self, hashes: Sequence[bytes], *, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """Entries (index < below) whose sha256 is any of ``hashes``; at most ``limit``."""
        ...

    async def lookup_identities(
        self, identities: Iterable[str], *, below: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """Entries (index < below) of any of these file identities, whatever their spelling."""
        ...

    async def find_bindings(self, keys: Iterable[BindingKey]) -> dict[BindingKey, list[BoundEntry]]:
        """The existing entries for each (signer, file identity) that has some, by index.

        More than one only in logs written before the identity rule.
        """
        ...

    async def identity_violations(self, limit: int = 1000) -> list[tuple[str, str, list[int]]]:
        """(signer, identity, entry indexes) where a signer logged more than one hash for
        one file identity: possible only in logs written before the identity rule."""
        ...

    async def entries_before(self, before: int, limit: int) -> list[tuple[int, bytes]]:
        """Entries with index < before, newest first."""
        ...

    async def checkpoint_time(self, size: int) -> int | None:
        """When the tree head of ``size`` was committed (ms since the epoch)."""
        ...

    async def growth(self, below: int, points: int) -> list[tuple[int, int]]:
        """(tree size, commit time ms) of at most ``points`` + 1 tree heads up to ``below``.

        Samples evenly by size: for each target size the first tree head at or
        above it, plus the newest, so idle stretches keep their two end points.
        """
        ...

    async def project_entries(
        self, project: str, version: str | None, page: Page
    ) -> list[tuple[int, bytes]]:
        """A project's entries ordered by (version, filename, index); one version if given."""
        ...

    async def project_versions(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int, int]]:
        """(version, entries, first index, first time ms), newest first seen first."""
        ...

    async def project_signers(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        """(signer vkey, entries, first index) of a project's signers, earliest first."""
        ...

    async def project_conflicts(
        self, project: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, str, int, int]]:
        """(version, a filename, distinct hashes, entries) of files (by identity, any
        spelling) logged with more than one hash."""
        ...

    async def signer_entries(self, signer: str, page: Page) -> list[tuple[int, bytes]]:
        """A signer's entries ordered by (project, version, filename)."""
        ...

    async def signer_projects(
        self, signer: str, below: int, limit: int, scan: int
    ) -> list[tuple[str, int, int]]:
        """(project, entries, first index) of the projects a signer signed, by name."""
        ...

    async def file_hash_counts(
        self, identities: Iterable[str], below: int
    ) -> dict[str, tuple[int, int, int]]:
        """Per file identity: (distinct hashes, entries, distinct signers)."""
        ...

    async def hashes_between(self, low: bytes, high: bytes, below: int, limit: int) -> list[bytes]:
        """Distinct file hashes in ``low <= sha256 <= high`` (a hex prefix's range),
        of entries below index ``below``, in order; at most ``limit``."""
        ...

    async def signers_between(self, low: str, high: str, limit: int) -> list[str]:
        """Signer verifier keys in ``low <= vkey < high`` (bytewise; a key name's
        range), in order; at most ``limit``."""
        ...

    # -- bulk copy (sigledger migrate) ----------------------------------------

    async def all_meta(self) -> dict[str, str]:
        """Every metadata key and value (``schema_version`` included)."""
        ...

    async def read_entry_rows(self, start: int, end: int) -> list[EntryRow]:
        """Entries with start <= index < end, in order, with every stored column."""
        ...

    async def read_heads(self, start: int, limit: int) -> list[StoredHead]:
        """At most ``limit`` tree heads of size >= ``start``, by size, notes included."""
        ...

    async def read_tile_rows(
        self, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, bytes]]:
        """At most ``limit`` stored tiles (level, n, data) after ``after``, by (level, n)."""
        ...

    async def load(self, rows: Copied) -> None:
        """Store rows copied from another store as they are, atomically (one transaction):
        entries, tiles (replacing), tree heads with their notes, metadata (replacing)."""
        ...

    async def settle(self) -> None:
        """After :meth:`load` has copied a log's entries: bring them into the layout the
        engine keeps them in (one transaction; PostgreSQL seals full tiles, SQLite has
        nothing to do), before the copy is proven."""
        ...
