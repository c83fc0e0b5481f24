"""Which checkpoints of a log to believe, and a view of the log built on them.

**The acceptor.** :class:`CheckpointAcceptor` is the one place that decides
whether a signed checkpoint note of a log is accepted. It is a state machine
fed bytes, with no I/O of its own: the last trusted note per origin lives in a
:class:`CheckpointStore` (the CLI's files,
:class:`~sigledger.client.checkpoints.FileCheckpointStore`; the monitor's SQLite
state, :class:`~sigledger.client.monitor.watcher.MonitorState`), and the caller
fetches the consistency proof the acceptor asks for (from the log's
``/proof/consistency`` or from tiles, :class:`~sigledger.client.tiles.TileAuth`).
The rules:

* the note must be signed by the pinned log key for the origin
  (:func:`~sigledger.client.logkey.open_with_log_key`);
* first use: trusted as it is (trust on first use) and stored;
* larger than the trusted one: the consistency proof from the trusted size
  must verify; then it is stored;
* equal size: the roots must be equal (a re-signed or re-cosigned note of the
  same tree is stored, fresher);
* smaller (a lagging mirror, a cache): the proof from its size to the trusted
  one must show it a prefix; it is not stored;
* after those checks (so a fork is reported as misbehavior even when it also
  lacks cosignatures), the witness quorum of the policy
  (:func:`~sigledger.client.receipts.check_witness_quorum`).

Two signed checkpoints that cannot both be true raise
:class:`~sigledger.ledger.errors.LogMisbehaviorError` whose ``evidence``
(:func:`inconsistent_checkpoints`) stands on its own: ``type``
(``inconsistent_checkpoints``), ``origin``, ``log_key``, ``log_url``,
``checkpoints`` (both notes, older first), ``consistency_proof`` (base64; empty
for equal sizes) and ``how_to_check``.

**The view.** :class:`VerifiedLog` wraps :class:`~sigledger.client.remote.LogClient`:
every checkpoint it uses went through the acceptor, and every entry it returns
comes with an inclusion proof checked against such a checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from sigledger.client.logkey import open_with_log_key
from sigledger.client.receipts import check_witness_quorum
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.client.tiles import DiskTileCache, TileAuth
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.entry import Entry, decode_entry
from sigledger.ledger.errors import (
    FormatError,
    LogMisbehaviorError,
    NetworkError,
    NotFoundError,
    VerificationError,
)
from sigledger.ledger.note import Verifier
from sigledger.ledger.wire import LookupAnswer

__all__ = [
    "Acceptance",
    "Candidate",
    "CheckpointAcceptor",
    "CheckpointStore",
    "Trusted",
    "VerifiedEntry",
    "VerifiedLog",
    "inconsistent_checkpoints",
]

LOOKUP_PAGE = 1000
BATCH = 1000  # digests per POST /lookup (the server's limit)
_MEMO = 256  # checkpoints remembered per acceptor (opened notes, verified sizes)


class CheckpointStore(Protocol):
    """The last trusted checkpoint note per origin, exactly as the log served it.

    ``put`` is called only with notes the acceptor accepted and replaces the
    previous one; ``get`` answers None on first use.
    """

    def get(self, origin: str) -> bytes | None: ...

    def put(self, origin: str, note: bytes) -> None: ...


def inconsistent_checkpoints(
    verifier: Verifier, origin: str, url: str, first: bytes, second: bytes, proof: Sequence[bytes]
) -> LogMisbehaviorError:
    """The error (and its self-contained evidence) for two signed notes that cannot both
    be true: ``first`` the older (or, for equal sizes, the one trusted before)."""
    return LogMisbehaviorError(
        f"the log {origin} signed two checkpoints that cannot both be true: this is "
        "evidence of a split view or a rewritten history",
        {
            "type": "inconsistent_checkpoints",
            "origin": origin,
            "log_key": verifier.vkey,
            "log_url": url,
            "checkpoints": [first.decode(), second.decode()],
            "consistency_proof": [base64.b64encode(h).decode() for h in proof],
            "how_to_check": "both notes verify with log_key (c2sp.org/tlog-checkpoint); "
            "for sizes m < n, merkle.check_consistency(m, n, root_m, root_n, "
            "consistency_proof) (RFC 9162 2.1.4.2) fails; for equal sizes the roots differ. "
            "consistency_proof was served by the log, or computed from the tiles it serves "
            "for the newer checkpoint",
        },
    )


@dataclass(frozen=True, slots=True)
class Trusted:
    """A checkpoint and the signed note it came in."""

    checkpoint: Checkpoint
    note: bytes


Relation = Literal["first", "newer", "same", "older"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A checkpoint whose signature verified, not yet accepted (:meth:`CheckpointAcceptor.check`).

    ``consistency`` is ``(older, newer)`` when accepting needs the consistency
    proof from ``older``'s size to ``newer``'s (tiles, if used, must be
    authenticated against ``newer``), else None.
    """

    checkpoint: Checkpoint
    note: bytes
    url: str
    relation: Relation
    trusted: Trusted | None  # what it is compared with: the trusted or an equal-size known one
    consistency: tuple[Trusted, Trusted] | None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """An accepted checkpoint. ``stored``: it replaced the trusted note in the store."""

    checkpoint: Checkpoint
    note: bytes
    relation: Relation
    stored: bool


class CheckpointAcceptor:
    """Accepts checkpoints of one log (see the module docstring): :meth:`check` the
    note, fetch the proof the :class:`Candidate` asks for, then :meth:`accept`.

    A candidate is judged against the store as :meth:`check` found it, so one
    check-and-accept of an origin must finish before the next begins (VerifiedLog
    holds a lock; the monitor follows each log in one task).
    """

    def __init__(
        self,
        verifier: Verifier,
        store: CheckpointStore,
        origin: str | None = None,
        *,
        witnesses: Sequence[Verifier] = (),
        witness_quorum: int = 0,
    ) -> None:
        self.verifier = verifier
        self.store = store
        self.origin = origin or verifier.name
        self.witnesses = tuple(witnesses)
        self.witness_quorum = witness_quorum
        self._opened: OrderedDict[bytes, Checkpoint] = OrderedDict()
        self._known: OrderedDict[int, Trusted] = OrderedDict()  # accepted, by size

    def open(self, note: bytes, url: str) -> Checkpoint:
        """Check the log's signature and origin (memoized by the note's bytes)."""
        cp = self._opened.get(note)
        if cp is None:
            cp, _ = open_with_log_key(note, self.verifier, url, self.origin)
            _bounded_put(self._opened, note, cp)
        return cp

    def trusted(self) -> Trusted | None:
        """The stored checkpoint, its signature checked again."""
        note = self.store.get(self.origin)
        if note is None:
            return None
        try:
            cp = self.open(note, "the store")
        except VerificationError as exc:
            raise VerificationError(
                f"the stored checkpoint for {self.origin} does not verify with the pinned key "
                f"({exc}); was the log key changed? Remove the state file only if you know why"
            ) from None
        return Trusted(cp, note)

    def check(self, note: bytes, url: str) -> Candidate:
        """Open ``note`` (served by ``url``) and say what accepting it needs."""
        cp = self.open(note, url)
        known = self._known.get(cp.size)
        trusted = self.trusted()
        if trusted is None:
            return Candidate(cp, note, url, "first", None, None)
        new = Trusted(cp, note)
        if cp.size == trusted.checkpoint.size:
            return Candidate(cp, note, url, "same", trusted, None)
        relation: Relation = "newer" if cp.size > trusted.checkpoint.size else "older"
        if known is not None and relation == "older":
            return Candidate(cp, note, url, "older", known, None)  # compared by root
        pair = (trusted, new) if relation == "newer" else (new, trusted)
        return Candidate(cp, note, url, relation, trusted, pair)

    def accept(self, candidate: Candidate, proof: Sequence[bytes] = ()) -> Acceptance:
        """Accept ``candidate`` given the consistency proof it asked for.

        Raises LogMisbehaviorError (with evidence) if it contradicts what is
        trusted, VerificationError if the witness quorum is not met.
        """
        cp, note, url = candidate.checkpoint, candidate.note, candidate.url
        base = candidate.trusted
        if base is not None and candidate.consistency is None:
            if base.checkpoint.root != cp.root:
                raise self._inconsistent(url, base.note, note, [])
        elif candidate.consistency is not None:
            older, newer = candidate.consistency
            try:
                merkle.check_consistency(
                    older.checkpoint.size,
                    newer.checkpoint.size,
                    older.checkpoint.root,
                    newer.checkpoint.root,
                    list(proof),
                )
            except VerificationError:
                raise self._inconsistent(url, older.note, newer.note, proof) from None
        check_witness_quorum(note, self.witnesses, self.witness_quorum)
        _bounded_put(self._known, cp.size, Trusted(cp, note))
        stored = candidate.relation in ("first", "newer") or (
            candidate.relation == "same" and base is not None and note != base.note
        )
        if stored:
            self.store.put(self.origin, note)
        return Acceptance(cp, note, candidate.relation, stored)

    def _inconsistent(
        self, url: str, first: bytes, second: bytes, proof: Sequence[bytes]
    ) -> LogMisbehaviorError:
        return inconsistent_checkpoints(self.verifier, self.origin, url, first, second, proof)


def _bounded_put(memo: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > _MEMO:
        memo.popitem(last=False)


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    index: int
    data: bytes
    entry: Entry
    checkpoint: Checkpoint


class VerifiedLog:
    """Use as ``async with VerifiedLog(url, key, store) as log: ...``."""

    def __init__(
        self,
        url: str,
        verifier: Verifier,
        store: CheckpointStore,
        origin: str | None = None,
        *,
        tile_cache: Path | None = None,
        use_tiles: bool = False,
        witnesses: Sequence[Verifier] = (),
        witness_quorum: int = 0,
    ) -> None:
        self.client = LogClient(url)
        self.verifier = verifier
        self.acceptor = CheckpointAcceptor(
            verifier, store, origin, witnesses=witnesses, witness_quorum=witness_quorum
        )
        self.origin = self.acceptor.origin
        self.store = store
        self._tile_cache = tile_cache
        self.use_tiles = use_tiles  # prove consistency from tiles, not /proof/consistency
        self._lock = asyncio.Lock()
        self._accepted: dict[bytes, Checkpoint] = {}

    async def __aenter__(self) -> VerifiedLog:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.__aexit__(t, e, tb)

    def tiles(self, cp: Checkpoint, note: bytes) -> TileAuth:
        """The log's tiles, to be authenticated against ``cp`` (signed ``note``)."""
        disk = DiskTileCache(self._tile_cache, self.origin) if self._tile_cache else None
        return TileAuth(self.client, cp, note, disk=disk)

    @property
    def url(self) -> str:
        return self.client.url

    async def checkpoint(self) -> Checkpoint:
        """Fetch, verify and remember the log's current checkpoint."""
        note = await self.client.checkpoint()
        return await self.accept(note)

    async def accept(self, note: bytes) -> Checkpoint:
        """Verify a checkpoint note from this log against everything seen before."""
        done = self._accepted.get(note)
        if done is not None:
            return done  # these exact bytes were fully checked already
        self.acceptor.open(note, self.url)  # a bad signature fails before any waiting
        async with self._lock:
            candidate = self.acceptor.check(note, self.url)
            proof: list[bytes] = []
            if candidate.consistency is not None:
                older, newer = candidate.consistency
                try:
                    proof = await self._consistency_proof(older, newer)
                except LogRefusedError as exc:
                    if candidate.relation != "older":
                        raise
                    raise VerificationError(
                        f"{self.url} served checkpoint {older.checkpoint.size}, older than "
                        f"checkpoint {newer.checkpoint.size} already verified for "
                        f"{self.origin}, and cannot prove it is a prefix of it "
                        f"({exc.code}): a stale mirror or a rollback"
                    ) from None
            cp = self.acceptor.accept(candidate, proof).checkpoint
            self._accepted[note] = cp
            return cp

    async def _consistency_proof(self, older: Trusted, newer: Trusted) -> list[bytes]:
        old_size, new_size = older.checkpoint.size, newer.checkpoint.size
        if not self.use_tiles:
            with contextlib.suppress(NotFoundError):  # no proof endpoint: use tiles
                return await self.client.consistency_proof(old_size, new_size)
        # A plain tlog-tiles log (e.g. behind a CDN): compute the proof from
        # tiles authenticated against the newer checkpoint.
        auth = self.tiles(newer.checkpoint, newer.note)
        await auth.start()
        return await auth.prove_consistency(old_size)

    async def lookup(self, **query: str) -> list[VerifiedEntry]:
        """Every entry matching ``query`` (see GET /lookup), proofs verified, all pages.

        Each returned entry is proven to be in the log; that the log returned
        *all* matching entries cannot be proven this way (monitors check that).
        """
        out: list[VerifiedEntry] = []
        cursor = "0"
        while True:
            answer = await self.client.lookup(**query, limit=str(LOOKUP_PAGE), cursor=cursor)
            out.extend(await self._verify_lookup(answer))
            nxt = answer.next_cursor
            if nxt is None:
                return out
            if nxt <= int(cursor):
                raise NetworkError(f"the log at {self.url} sent a bad lookup cursor")
            cursor = str(nxt)

    async def lookup_hashes(
        self, sha256_hex: Sequence[str], *, related: bool = True
    ) -> list[VerifiedEntry]:
        """Entries for many digests in few round trips (POST /lookup), proofs verified.

        With ``related``, also every entry for the same file as a match. As with
        :meth:`lookup`, completeness cannot be proven this way.
        """
        chunks = [sha256_hex[i : i + BATCH] for i in range(0, len(sha256_hex), BATCH)]
        docs = await asyncio.gather(*(self.client.lookup_batch(c, related=related) for c in chunks))
        seen: dict[int, VerifiedEntry] = {}
        for doc in docs:
            for e in await self._verify_lookup(doc):
                seen.setdefault(e.index, e)
        return [seen[i] for i in sorted(seen)]

    async def _verify_lookup(self, answer: LookupAnswer) -> list[VerifiedEntry]:
        cp = await self.accept(answer.checkpoint)
        out = []
        for item in answer.entries:
            index, data = item.index, item.entry
            merkle.check_inclusion(index, cp.size, merkle.leaf_hash(data), item.proof, cp.root)
            try:
                entry = decode_entry(data)
            except FormatError as exc:
                raise VerificationError(f"logged entry #{index} does not decode: {exc}") from None
            out.append(VerifiedEntry(index, data, entry, cp))
        return out
