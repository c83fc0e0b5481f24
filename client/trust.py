"""A view of one log in which everything has been verified before it is returned.

:class:`VerifiedLog` wraps :class:`~sigledger.client.remote.LogClient`. Every checkpoint
it accepts is signed by the pinned log key and *consistent* with the last
checkpoint this client ever verified for that origin (kept by
:class:`~sigledger.client.checkpoints.CheckpointStore`): trust on first use, then append-only.
Every entry it returns comes with an inclusion proof checked against such a
checkpoint. Two signed checkpoints that cannot both be true raise
:class:`~sigledger.ledger.errors.LogMisbehaviorError` carrying both notes and the proof,
so the report stands on its own as evidence.

Checkpoints newer than the stored one replace it only after the consistency
proof verified. Older ones (a lagging mirror, a cache) are accepted when a
proof shows them to be a prefix of the stored one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sigledger.client.checkpoints import CheckpointStore
from sigledger.client.receipts import check_witness_quorum
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.client.tiles import TileReader
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, open_checkpoint
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

LOOKUP_PAGE = 1000
BATCH = 1000  # digests per POST /lookup (the server's limit)


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
        self.origin = origin or verifier.name
        self.store = store
        self._tile_cache = tile_cache
        self.witnesses = tuple(witnesses)
        self.witness_quorum = witness_quorum
        self.use_tiles = use_tiles  # prove consistency from tiles, not /proof/consistency
        self._latest: tuple[Checkpoint, bytes] | None = None  # verified this run
        self._known: dict[int, tuple[bytes, bytes]] = {}  # size -> (root, note), verified
        self._lock = asyncio.Lock()
        self._accepted: dict[bytes, Checkpoint] = {}

    async def __aenter__(self) -> VerifiedLog:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.__aexit__(t, e, tb)

    def tiles(self) -> TileReader:
        return TileReader(self.client, self.origin, self._tile_cache)

    @property
    def url(self) -> str:
        return self.client.url

    def _open(self, note: bytes) -> Checkpoint:
        """Check the log's signature and origin (witness quorum: see _remember)."""
        try:
            cp, _ = open_checkpoint(note, self.verifier, self.origin)
        except FormatError as exc:
            raise VerificationError(
                f"the log at {self.url} sent a malformed checkpoint: {exc}"
            ) from None
        except VerificationError as exc:
            raise VerificationError(
                f"the checkpoint from {self.url} is not signed by the pinned log key "
                f"{self.verifier.vkey}: {exc}"
            ) from None
        return cp

    def _stored(self) -> tuple[Checkpoint, bytes] | None:
        note = self.store.load(self.origin)
        if note is None:
            return None
        try:
            return self._open(note), note
        except VerificationError as exc:
            raise VerificationError(
                f"the stored checkpoint for {self.origin} does not verify with the pinned key "
                f"({exc}); was the log key changed? Remove the state file only if you know why"
            ) from None

    async def checkpoint(self) -> Checkpoint:
        """Fetch, verify and remember the log's current checkpoint."""
        note = await self.client.checkpoint()
        return await self.accept(note)

    async def accept(self, note: bytes) -> Checkpoint:
        """Verify a checkpoint note from this log against everything seen before."""
        done = self._accepted.get(note)
        if done is not None:
            return done  # these exact bytes were fully checked already
        cp = self._open(note)
        async with self._lock:
            known = self._known.get(cp.size)
            if known is not None:
                if known[0] != cp.root:
                    raise self._misbehavior(known[1], note, [])
                return cp
            if self._latest is None:
                self._latest = self._stored()
            latest = self._latest
            if latest is None:
                # Trust on first use.
                self._remember(cp, note, store=True)
                return cp
            old_cp, old_note = latest
            if cp.size == old_cp.size:
                if cp.root != old_cp.root:
                    raise self._misbehavior(old_note, note, [])
            elif cp.size > old_cp.size:
                await self._check_consistency(old_cp, old_note, cp, note)
                self._remember(cp, note, store=True)
                return cp
            else:
                try:
                    await self._check_consistency(cp, note, old_cp, old_note)
                except LogRefusedError as exc:
                    raise VerificationError(
                        f"{self.url} served checkpoint {cp.size}, older than checkpoint "
                        f"{old_cp.size} already verified for {self.origin}, and cannot prove it "
                        f"is a prefix of it ({exc.code}): a stale mirror or a rollback"
                    ) from None
            self._remember(cp, note, store=False)
            return cp

    def _remember(self, cp: Checkpoint, note: bytes, *, store: bool) -> None:
        # After the consistency checks, so a fork is reported as misbehavior (with
        # evidence) even when it also lacks witness cosignatures.
        check_witness_quorum(note, self.witnesses, self.witness_quorum)
        self._accepted[note] = cp
        self._known[cp.size] = (cp.root, note)
        if store:
            self.store.save(self.origin, note)
            self._latest = (cp, note)

    async def _check_consistency(
        self, old: Checkpoint, old_note: bytes, new: Checkpoint, new_note: bytes
    ) -> None:
        self._known.setdefault(old.size, (old.root, old_note))
        proof = None
        if not self.use_tiles:
            with contextlib.suppress(NotFoundError):  # no proof endpoint: use tiles
                proof = await self.client.consistency_proof(old.size, new.size)
        if proof is None:
            # A plain tlog-tiles log (e.g. behind a CDN): compute the proof from
            # tiles authenticated against the newer checkpoint.
            proof = await self.tiles().prove_consistency(old.size, new)
        try:
            merkle.check_consistency(old.size, new.size, old.root, new.root, proof)
        except VerificationError:
            raise self._misbehavior(old_note, new_note, proof) from None

    def _misbehavior(self, first: bytes, second: bytes, proof: list[bytes]) -> LogMisbehaviorError:
        return LogMisbehaviorError(
            f"the log {self.origin} signed two inconsistent checkpoints: this is evidence of a "
            "split view or a rewritten history",
            {
                "type": "inconsistent_checkpoints",
                "origin": self.origin,
                "log_key": self.verifier.vkey,
                "log_url": self.url,
                "checkpoints": [first.decode(), second.decode()],
                "consistency_proof": [base64.b64encode(h).decode() for h in proof],
                "how_to_check": "both notes verify with log_key; for sizes m < n, "
                "consistency_proof (RFC 9162 2.1.4.2) does not prove the m-tree a prefix of "
                "the n-tree; for equal sizes the roots differ",
            },
        )

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
