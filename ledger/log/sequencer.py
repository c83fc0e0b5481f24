"""The single writer of a log: batching, integration, checkpoint signing.

Submissions wait in a bounded queue. A batch closes when it holds
``batch_max_size`` statements or its oldest statement is ``batch_max_age``
seconds old. Per batch, strictly in this order:

1. apply the binding rule (one key, one hash per file identity, for signers and
   observers alike, see
   :func:`sigledger.ledger.entry.file_identity`: any spelling of a filename is the same
   file; the same bytes under another spelling answer with the existing entry);
2. **durably commit** the new entries, the changed tiles and the new tree head
   in one SQLite transaction;
3. **sign** the checkpoint for the new tree head;
4. **publish** it (readers see the new size only from here on); with a
   :class:`~sigledger.ledger.log.publish.StaticPublisher`, its tiles and then the
   checkpoint are also written as files, in the background;
5. answer each submitter with its index and an inclusion proof against the
   published checkpoint.

A crash between 2 and 3 loses nothing: on start the newest committed tree head
is re-signed (Ed25519 is deterministic, so the note is byte-identical to one
that may already have been seen). The checkpoints table's primary key on the
size makes two roots for one size impossible, and :class:`TiledTree` is checked
against the stored root on every start.

A request's statements succeed or fail together: if any conflicts with an
existing binding, none of them is logged.

Refusals are the domain errors of :mod:`sigledger.ledger.errors`
(:class:`~sigledger.ledger.errors.BindingConflictError`,
:class:`~sigledger.ledger.errors.OverloadedError`, ...); how they are answered
over HTTP is :mod:`sigledger.ledger.service.http`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from sigledger.ledger.entry import Entry, Signed, decode_entry, encode_entry
from sigledger.ledger.errors import (
    BindingConflictError,
    NotWitnessedError,
    OverloadedError,
    ShuttingDownError,
)
from sigledger.ledger.log.cosigner import WitnessPool
from sigledger.ledger.log.publish import StaticPublisher
from sigledger.ledger.log.store import Batch, BindingKey, BoundEntry, EntryRow, LogStorage
from sigledger.ledger.log.tiletree import TiledTree
from sigledger.ledger.note import Note, Signer, format_note, parse_note
from sigledger.ledger.service.config import ServerConfig
from sigledger.ledger.service.sqlite import StorageError
from sigledger.ledger.wire import Receipt

log = logging.getLogger("sigledger.sequencer")

# Statements handled between two yields to the event loop while integrating a batch.
YIELD_EVERY = 64
# Right-edge range hashes kept for proofs (a few per tree size; 32 bytes each).
EDGE_MEMO = 4096


@dataclass(frozen=True, slots=True)
class Published:
    """The checkpoint readers currently see."""

    size: int
    root: bytes
    note: bytes
    published_at: float  # time.time() of the last (re)publication


@dataclass(frozen=True, slots=True)
class Placed:
    """Where one submitted statement went: its entry's index and bytes, and whether
    the entry was logged before this batch (answered with the existing entry)."""

    index: int
    data: bytes
    existing: bool


@dataclass
class _Unit:
    statements: Sequence[Signed]
    future: asyncio.Future[list[Receipt]]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class SequencerConfig:
    """The sequencer's settings; each is the server setting of the same name
    (:class:`~sigledger.ledger.service.config.ServerConfig`), but
    ``cosign_refresh``, which is ``witness_refresh`` there."""

    batch_max_size: int = 4096
    batch_max_age: float = 0.05
    queue_max: int = 65536
    checkpoint_period: float = 1.0
    tile_cache: int = 4096
    cosign_refresh: float = 300.0

    @classmethod
    def of(cls, cfg: ServerConfig) -> SequencerConfig:
        """The sequencer's part of the server configuration ``cfg``."""
        same = {f.name: getattr(cfg, f.name) for f in fields(cls) if f.name != "cosign_refresh"}
        return cls(**same, cosign_refresh=cfg.witness_refresh)


class Sequencer:
    """Owns the write side of one log. Create with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        storage: LogStorage,
        signer: Signer,
        origin: str,
        config: SequencerConfig,
        on_batch: Callable[[int, float], None] | None = None,
        witnesses: WitnessPool | None = None,
        static: StaticPublisher | None = None,
        standby: bool = False,
    ) -> None:
        self.storage = storage
        # Standby (ha.py): the sequencer writes only while ``leading``; any storage
        # failure then makes it step down instead of reloading, and a follower's
        # readers see the newest published head in storage (:meth:`follow`).
        self.standby = standby
        self.leading = not standby
        self.static = static  # also writes each published checkpoint's files, if given
        self.witnesses = witnesses
        self.signer = signer
        self.origin = origin
        self.config = config
        self._on_batch = on_batch
        self._queue: deque[_Unit] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._tree: TiledTree | None = None
        # MTHs of the right-edge ranges of proofs (merkle.prove_inclusions): replaced,
        # never cleared, when full, so a proof in flight keeps the one it started with.
        self._edges: dict[tuple[int, int], bytes] = {}
        self._unsaved_notes: list[tuple[int, bytes, bool]] = []
        self._committed: tuple[int, bytes, bytes] | None = None  # size, root, log-signed note
        self.published: Published | None = None
        self.witnessed = True  # False while the newest commit lacks a witness quorum
        self.last_witness_error = ""
        self._cosigned_at = 0.0
        self.healthy = True
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self.standby:
            await self.follow()
            return
        await self._load()
        self._task = asyncio.create_task(self._run(), name="sigledger-sequencer")

    # -- standby: leading and following (see ha.py) -------------------------------

    async def lead(self) -> None:
        """Become the writer: reload the tree from storage (whatever the previous
        leader committed), publish its newest head and start sequencing."""
        self._unsaved_notes = []
        self._stopping = False
        await self._load()  # its writes are fenced by storage, not by this flag
        self.leading = True  # from here on /add is sequenced here, /healthz says leader
        self.healthy = True
        self.last_error = None
        self._task = asyncio.create_task(self._run(), name="sigledger-sequencer")

    async def step_down(self, reason: str) -> None:
        """Stop sequencing now: sign nothing more, refuse what is queued (503: the
        submitter retries and reaches the next leader). Readers keep the checkpoint
        already published until :meth:`follow` shows a newer one."""
        self._lose(reason)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _lose(self, reason: str) -> None:
        if self.leading:
            log.warning("stepping down as the leader", extra={"reason": reason})
        self.leading = False
        self._unsaved_notes = []
        while self._queue:
            unit = self._queue.popleft()
            if not unit.future.done():
                unit.future.set_exception(
                    OverloadedError(f"this server stopped leading the log ({reason}); retry")
                )
        self._queued = 0

    async def follow(self) -> None:
        """As a follower: show readers the newest published tree head in storage
        (never an older one than already shown)."""
        head = await self.storage.latest_head(published=True)
        pub = self.published
        if head is None or head.note is None:
            if pub is None:
                raise StorageError("no published tree head yet (is a leader running?)")
            return
        if pub is not None and head.size <= pub.size:
            if self._tree is None:  # lost with a failed commit while leading
                self._tree = await self._tree_at(pub.size, pub.root)
            self.published = Published(pub.size, pub.root, pub.note, time.time())
            return
        self._tree = await self._tree_at(head.size, head.root)
        self._committed = (head.size, head.root, _log_part(head.note))
        self.published = Published(head.size, head.root, head.note, time.time())
        self.healthy = True

    async def _tree_at(self, size: int, root: bytes) -> TiledTree:
        """The tree of ``size`` from stored tiles, checked against ``root``."""
        refs = TiledTree.edge_refs(size)
        tiles = await self.storage.read_tiles(refs)
        try:
            tree = TiledTree(
                size,
                {lv: tiles.get((lv, n), b"") for lv, n in refs},
                cache_tiles=self.config.tile_cache,
            )
        except ValueError as exc:
            raise StorageError(f"stored tiles do not match tree size {size}: {exc}") from exc
        if tree.root() != root:
            raise StorageError(
                f"stored tiles hash to a different root than the tree head at size {size}"
            )
        return tree

    async def _load(self) -> None:
        """Rebuild the in-memory tree from storage and (re)publish the newest head."""
        head = await self.storage.latest_head()
        if head is None:
            raise StorageError("the database holds no tree head; was the log initialized?")
        self._tree = await self._tree_at(head.size, head.root)
        note = head.note
        if note is None:
            # Committed but crashed before the note was stored: re-sign (deterministic).
            note = self._sign(head.size, head.root)
            await self.storage.save_notes([(head.size, note, False)])
        self._committed = (head.size, head.root, _log_part(note))
        if self.witnesses is None:
            self.published = Published(head.size, head.root, note, time.time())
            if not head.published:
                await self.storage.save_notes([(head.size, note, True)])
        else:
            shown = head if head.published else await self.storage.latest_head(published=True)
            if shown is not None and shown.note is not None:
                self.published = Published(shown.size, shown.root, shown.note, time.time())
            await self._publish(head.size, head.root, _log_part(note))
            if self.published is None:
                # Never witnessed at all: serve the log-signed checkpoint so readers
                # see something; clients requiring a quorum refuse it, by design.
                self.published = Published(head.size, head.root, note, time.time())
        log.info(
            "log loaded", extra={"tree_size": head.size, "published_size": self.published.size}
        )
        if self.static is not None:  # catches the directory up in the background
            self.static.publish(self.published.size, self.published.note)

    async def _publish(self, size: int, root: bytes, note: bytes) -> bool:
        """Show readers the checkpoint (size, root): witnessed first if configured."""
        if self.witnesses is not None:
            cp = Checkpoint(self.origin, size, root)
            cosigs = await self.witnesses.cosign(note, cp)
            if len(cosigs) < self.witnesses.quorum:
                self.witnessed = False
                self.last_witness_error = (
                    f"{len(cosigs)} of {self.witnesses.quorum} required witness cosignatures "
                    f"for tree size {size}"
                )
                log.warning(
                    "witness quorum not met",
                    extra={
                        "tree_size": size,
                        "cosignatures": len(cosigs),
                        "quorum": self.witnesses.quorum,
                    },
                )
                return False
            note = note + "".join(sig.line() for sig in cosigs).encode()
            self._cosigned_at = time.monotonic()
            self.witnessed = True
            self.last_witness_error = ""
        self._unsaved_notes.append((size, note, True))
        self.published = Published(size, root, note, time.time())
        if self.static is not None:
            # After publication, never before: the files trail what readers see.
            self.static.publish(size, note)
        return True

    async def stop(self) -> None:
        """Stop accepting; integrate and answer everything already queued; then return."""
        self._stopping = True
        self._wake.set()
        self._full.set()
        if self._task is not None:
            await self._task
        if self.static is not None:
            await self.static.close()
        # Anything left could not be integrated (e.g. storage failed): refuse it explicitly.
        while self._queue:
            unit = self._queue.popleft()
            if not unit.future.done():
                unit.future.set_exception(ShuttingDownError("the log is shutting down"))
        if self._unsaved_notes and self.leading:
            with contextlib.suppress(StorageError):
                await self.storage.save_notes(self._unsaved_notes)
            self._unsaved_notes = []

    # -- submissions ------------------------------------------------------------

    @property
    def committed_size(self) -> int | None:
        return self._committed[0] if self._committed else None

    @property
    def queued(self) -> int:
        return self._queued

    async def submit(self, statements: Sequence[Signed]) -> list[Receipt]:
        """Queue already-verified statements; return their receipts once published."""
        if self._stopping:
            raise ShuttingDownError("the log is shutting down; retry later")
        if not self.leading:
            raise OverloadedError("this server does not lead the log now; retry")
        if not self.healthy:
            raise OverloadedError(f"the log cannot write right now: {self.last_error}")
        if self._queued + len(statements) > self.config.queue_max:
            raise OverloadedError("the submission queue is full; retry later")
        fut: asyncio.Future[list[Receipt]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(statements, fut))
        self._queued += len(statements)
        self._wake.set()
        if self._queued >= self.config.batch_max_size:
            self._full.set()
        return await asyncio.shield(fut)

    # -- the loop ---------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self.config
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), cfg.checkpoint_period)
                if not self._queue:
                    await self._heartbeat()
                    if not self.leading:
                        return
                    continue
            age = time.monotonic() - self._queue[0].enqueued
            if not self._stopping and self._queued < cfg.batch_max_size and age < cfg.batch_max_age:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), cfg.batch_max_age - age)
            units: list[_Unit] = []
            count = 0
            while self._queue and (
                not units or count + len(self._queue[0].statements) <= cfg.batch_max_size
            ):
                unit = self._queue.popleft()
                units.append(unit)
                count += len(unit.statements)
            self._queued -= count
            try:
                await self._integrate(units)
            except asyncio.CancelledError:  # stepping down (standby): answer, then stop
                _refuse(units, "this server stopped leading the log; retry")
                raise
            except Exception as exc:  # storage failures must not kill the loop
                log.exception("batch failed")
                _refuse(units, f"the log could not store the batch: {exc}")
                if not await self._storage_failed(exc):
                    return

    async def _heartbeat(self) -> None:
        """While idle: re-check storage, retry witnessing, re-publish the checkpoint."""
        try:
            if self._unsaved_notes:
                await self.storage.save_notes(self._unsaved_notes)
                self._unsaved_notes = []
            head = await self.storage.latest_head()
            committed = self._committed
            if committed is None or head is None or (head.size, head.root) != committed[:2]:
                raise StorageError("stored tree head differs from the committed one")
        except Exception as exc:
            log.exception("storage check failed")
            await self._storage_failed(exc)
            return
        self.healthy = True
        pub = self.published
        refresh = self.config.cosign_refresh
        if pub is not None and pub.size < committed[0]:
            await self._publish(*committed)
        elif (
            self.witnesses is not None
            and pub is not None
            and time.monotonic() - self._cosigned_at > refresh
        ):
            # Fresh cosignatures on an idle log tell monitors it is alive, not frozen.
            await self._publish(*committed)
        elif pub is not None:
            self.published = Published(pub.size, pub.root, pub.note, time.time())

    async def _storage_failed(self, exc: Exception) -> bool:
        """After a failed write or check: reload and go on (True), or, as one of several
        servers, stop leading (False): it cannot know whether it still leads, so it
        must never reload and sign on."""
        if self.standby:
            self._lose(str(exc))
            return False
        self.healthy = False
        self.last_error = str(exc)
        await self._recover()
        return True

    async def _recover(self) -> None:
        try:
            await self._load()
        except Exception as exc:
            log.exception("reload after failure failed")
            self.last_error = str(exc)
            return
        self.healthy = True
        self.last_error = None

    def _sign(self, size: int, root: bytes) -> bytes:
        return sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)

    async def _integrate(self, units: list[_Unit]) -> None:
        tree = self._tree
        assert tree is not None
        assert self.published is not None
        started = time.monotonic()
        keyed = [[(_binding_key(s), s) for s in unit.statements] for unit in units]
        found = await self.storage.find_bindings(k for ks in keyed for k, _ in ks)
        now_ms = int(time.time() * 1000)
        base = tree.size
        new_rows: list[EntryRow] = []
        leaves: list[bytes] = []
        batch: dict[BindingKey, BoundEntry] = {}
        accepted: list[tuple[_Unit, list[Placed]]] = []
        since_yield = 0
        for unit, pairs in zip(units, keyed, strict=True):
            since_yield += len(pairs)
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)  # let readers in; nothing shared has changed yet
            staged: dict[BindingKey, BoundEntry] = {}
            rows: list[EntryRow] = []
            results: list[Placed] = []
            conflicts: list[tuple[int, bytes]] = []
            described: list[str] = []
            for key, s in pairs:
                new = batch.get(key) or staged.get(key)
                priors = found.get(key) or ([new] if new is not None else [])
                if priors:
                    same = next((p for p in priors if p.sha256 == s.statement.sha256), None)
                    if same is not None:
                        results.append(Placed(same.index, same.data, key in found))
                    else:
                        prior = priors[0]
                        conflicts.append((prior.index, prior.data))
                        described.append(
                            f"{s.statement.filename} (entry #{prior.index} has sha256:"
                            f"{prior.sha256.hex()}"
                            + _spelled(prior.data, s.statement.filename)
                            + ")"
                        )
                    continue
                index = base + len(new_rows) + len(rows)
                data = encode_entry(Entry(s, now_ms))
                st = s.statement
                signer, identity = key
                rows.append(
                    EntryRow(
                        index=index,
                        data=data,
                        project=st.project,
                        version=st.version,
                        filename=st.filename,
                        sha256=st.sha256,
                        signer=signer,
                        time_ms=now_ms,
                        identity=identity,
                    )
                )
                staged[key] = BoundEntry(index, st.sha256, data)
                results.append(Placed(index, data, False))
            if conflicts:
                unit.future.set_exception(
                    BindingConflictError(
                        "this key already logged a different hash for "
                        + ", ".join(described)
                        + "; nothing in this request was logged",
                        conflicts,
                    )
                )
                continue
            batch.update(staged)
            new_rows.extend(rows)
            leaves.extend(merkle.leaf_hash(r.data) for r in rows)
            accepted.append((unit, results))

        if new_rows:
            changed = tree.append(leaves)
            root = tree.root()
            try:
                await self.storage.commit_batch(
                    Batch(new_rows, changed, tree.size, root, now_ms, self._unsaved_notes)
                )
            except BaseException:
                # The in-memory tree is ahead of storage; the caller reloads it.
                self._tree = None
                raise
            self._unsaved_notes = []
            note = self._sign(tree.size, root)  # only after the commit is durable
            self._committed = (tree.size, root, note)
            self._unsaved_notes.append((tree.size, note, False))  # saved with the next commit
            if not await self._publish(tree.size, root, note):
                for unit, res in accepted:
                    if not unit.future.done():
                        unit.future.set_exception(self._unwitnessed(res))
                accepted = []

        pub = self.published
        # Entries committed by an earlier batch whose checkpoint the witnesses have
        # not cosigned yet: resubmitting them is not an error, but there is no
        # published checkpoint to prove them against. Same answer as the first time.
        provable = []
        for unit, res in accepted:
            if all(p.index < pub.size for p in res):
                provable.append((unit, res))
            else:
                unit.future.set_exception(self._unwitnessed(res))
        # Answer in slices, yielding between them: a full batch would otherwise
        # hold the event loop (and every reader) for hundreds of milliseconds.
        chunk: list[tuple[_Unit, list[Placed]]] = []
        count = 0
        for unit, res in provable:
            chunk.append((unit, res))
            count += len(res)
            if count >= YIELD_EVERY:
                await self._answer(chunk, pub)
                chunk, count = [], 0
                await asyncio.sleep(0)
        if chunk:
            await self._answer(chunk, pub)
        if self._on_batch is not None:
            self._on_batch(len(new_rows), time.monotonic() - started)

    async def _answer(self, accepted: list[tuple[_Unit, list[Placed]]], pub: Published) -> None:
        """Receipts against ``pub`` for each unit's placed statements."""
        # New entries' proof nodes all lie in tiles the tree holds (the edge, or
        # tiles this batch completed); only older, existing entries may need reads.
        get = await self._getter(
            {
                n
                for _u, res in accepted
                for p in res
                if p.existing
                for n in merkle.inclusion_nodes(p.index, pub.size)
            }
        )
        flat = [p.index for _u, res in accepted for p in res]
        proofs = iter(merkle.prove_inclusions(flat, pub.size, get, self._edge_memo()))
        for unit, res in accepted:
            receipts = [
                Receipt(
                    p.index, p.data, p.existing, pub.size, pub.root, tuple(next(proofs)), pub.note
                )
                for p in res
            ]
            if not unit.future.done():
                unit.future.set_result(receipts)

    def _unwitnessed(self, results: list[Placed]) -> NotWitnessedError:
        return NotWitnessedError(
            f"logged at index(es) {sorted({p.index for p in results})} but the "
            f"checkpoint is not published yet: {self.last_witness_error}; "
            "submit again later to get the receipt"
        )

    # -- proofs for readers -----------------------------------------------------

    async def _getter(self, nodes: Iterable[tuple[int, int]]) -> merkle.GetNode:
        """A get_node that can read every node in ``nodes`` (loading tiles once)."""
        tree = self._tree
        if tree is None:
            raise OverloadedError("the log is recovering from a storage failure")
        missing = tree.missing_tiles(nodes)
        tiles = await self.storage.read_tiles(missing) if missing else {}
        if len(tiles) != len(missing):
            raise StorageError("tiles needed for a proof are missing from storage")
        # No await between here and the caller's use: the tree cannot change meanwhile.
        return tree.getter(tiles)

    def _edge_memo(self) -> dict[tuple[int, int], bytes]:
        """The memo of right-edge hashes (see ``_edges``), a new one when it is full."""
        if len(self._edges) > EDGE_MEMO:
            self._edges = {}
        return self._edges

    async def prove_inclusions(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """Inclusion proofs of ``indexes`` in the tree of ``size`` (<= the tree's size)."""
        memo = self._edge_memo()
        nodes = {n for i in indexes for n in merkle.inclusion_nodes(i, size, memo)}
        get = await self._getter(nodes)
        return merkle.prove_inclusions(indexes, size, get, memo)

    async def prove_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        get = await self._getter(merkle.consistency_nodes(old_size, new_size))
        return merkle.prove_consistency(old_size, new_size, get)


def _refuse(units: Iterable[_Unit], why: str) -> None:
    for unit in units:
        if not unit.future.done():
            unit.future.set_exception(OverloadedError(why))


def _log_part(note: bytes) -> bytes:
    """A note without any witness cosignature lines: text plus the log's own signature
    (always the first line: cosignatures are appended after it)."""
    parsed = parse_note(note)
    return format_note(Note(parsed.text, parsed.signatures[:1]))


def _binding_key(s: Signed) -> BindingKey:
    return (s.signer_vkey(), s.statement.identity.key)


def _spelled(prior: bytes, filename: str) -> str:
    """', logged as NAME' when the earlier entry spelled the file differently."""
    logged = decode_entry(prior).statement.filename
    return "" if logged == filename else f", logged as {logged}"
