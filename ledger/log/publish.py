"""Static publication: the log's read API as plain files, for any web server or bucket.

With ``publish_dir`` set, every checkpoint the sequencer publishes is also written
under that directory, at exactly the paths of the read API (c2sp.org/tlog-tiles),
so that nginx (see ``deploy/nginx-static.conf``) or a CDN can answer every read::

    DIR/checkpoint                    the signed checkpoint note (replaced)
    DIR/tile/<L>/<N>                  full hash tiles (written once, never changed)
    DIR/tile/<L>/<N>.p/<W>            partial hash tiles (written once, kept)
    DIR/tile/entries/<N>              full entry bundles (written once)
    DIR/tile/entries/<N>.p/<W>        partial entry bundles (written once, kept)
    DIR/.lock                         serializes checkpoint replacement between writers

``<N>`` is the ``x001/234`` form of :func:`sigledger.ledger.tiles.format_index`.
Files are mode 0644 and directories 0755 whatever the process umask, so that a
web server running as another user can read them.

**Crash-consistency contract.** ``checkpoint`` only ever names data already durable
on disk: for each publication every new or grown tile and bundle is written
first (temporary file in the same directory, fsync, rename, then fsync of every
directory touched), and only then the checkpoint (same steps). A crash at any
point leaves the previous checkpoint with all of its data, plus perhaps some
files of the next size, which are correct (their bytes depend only on committed
entries) and are found in place later, and perhaps a temporary file
``<name>.<pid>.tmp``, which no tile path names (safe to delete). The checkpoint never moves
backwards: a checkpoint of a smaller tree than the one on disk is not written.

**Write once.** The bytes at a tile path are fixed forever (a partial tile of
width ``W`` is the first ``W`` hashes of its tile). A path that already exists
with the same bytes is skipped; with different bytes, :class:`PublishForkError`
is raised and publication stops: the log now holds a different tree than the one
it published (e.g. a database restored from an old backup), which must be looked
at by a person, never papered over. Other failures (a full disk, say) are
retried; the log itself keeps running either way, and ``/healthz`` reports it.

**Partial tiles are kept.** tlog-tiles allows deleting a partial tile some time
after its full tile exists; we do not (yet): readers holding an older
checkpoint can always fetch its tiles. They cost at most 255 small files per
full tile and level.

**Catch-up.** On start the directory's own ``checkpoint`` tells how far it got;
everything from there up to the published size is written (from the start when
there is none, skipping files already there). So enabling the option on an
existing log, or a crash between a commit and the files, needs nothing more
than a restart.

**Cost.** Writing happens in a background task after publication, with file
I/O in a worker thread: receipts for ``/add`` never wait for it. When
publications come faster than the files, intermediate checkpoints are skipped
(the files catch up to the newest one); the directory may lag the API by a
batch, never lead it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sigledger.ledger.checkpoint import parse_checkpoint
from sigledger.ledger.errors import FormatError
from sigledger.ledger.log.store import LogStorage
from sigledger.ledger.note import parse_note
from sigledger.ledger.service.files import write_atomically
from sigledger.ledger.service.sqlite import StorageError
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileRef, encode_entry_bundle, tile_width

__all__ = ["PublishForkError", "PublishStats", "StaticPublisher", "changed_tiles"]

log = logging.getLogger("sigledger.publish")

HASH_SIZE = 32
FILE_MODE = 0o644
DIR_MODE = 0o755
CHECKPOINT = "checkpoint"
# Tiles read from storage in one query while catching up.
READ_CHUNK = 64
RETRY_MAX = 60.0


class PublishForkError(Exception):
    """A file already published holds other bytes than the log now has for it."""


@dataclass
class PublishStats:
    """What publication has done so far (for metrics, logs and tests)."""

    size: int = 0  # tree size of the checkpoint file on disk
    files: int = 0  # tile and bundle files written
    skipped: int = 0  # already there with the same bytes
    batches: int = 0  # checkpoints written
    seconds: float = 0.0  # wall time spent writing, all batches together
    last_seconds: float = 0.0  # ... the last one


def changed_tiles(old: int, new: int) -> Iterator[TileRef]:
    """Every hash tile and entry bundle that exists at tree size ``new`` but not, at
    that width, at ``old``: level by level, lowest first, bundles with level 0."""
    if not 0 <= old <= new:
        raise ValueError(f"cannot publish from size {old} to {new}")
    level = 0
    while new >> (TILE_HEIGHT * level):
        first = (old >> (TILE_HEIGHT * level)) // TILE_WIDTH
        last = ((new >> (TILE_HEIGHT * level)) - 1) // TILE_WIDTH
        for n in range(first, last + 1):
            width = tile_width(level, n, new)
            if width > tile_width(level, n, old):
                yield TileRef(level, n, width)
                if level == 0:
                    yield TileRef(-1, n, width)
        level += 1


def _disk_size(directory: Path) -> int:
    """The tree size named by ``directory``'s checkpoint file; 0 when there is none."""
    try:
        data = (directory / CHECKPOINT).read_bytes()
    except FileNotFoundError:
        return 0
    try:
        return parse_checkpoint(parse_note(data).text).size
    except (FormatError, ValueError) as exc:
        # Only we write this file, atomically: an unreadable one is outside damage.
        raise PublishForkError(f"{directory / CHECKPOINT} is not a checkpoint: {exc}") from None


class StaticPublisher:
    """Writes one log's tiles, bundles and checkpoint under ``directory``.

    :meth:`publish` (called by the sequencer each time readers see a new
    checkpoint) only records the newest checkpoint and wakes the background
    writer; :meth:`flush` waits until the directory has caught up (or a write
    failed); :meth:`close` flushes and stops. ``error`` says what is wrong: after
    a :class:`PublishForkError` nothing more is written; any other failure (a full
    disk, storage trouble) is retried after ``retry_after`` seconds, doubling up
    to a minute, from what is on disk.
    """

    def __init__(self, storage: LogStorage, directory: Path, *, retry_after: float = 1.0) -> None:
        self.storage = storage
        self.directory = directory
        self.retry_after = retry_after  # first pause after a failed write (doubles to 60 s)
        self.stats = PublishStats()
        self.error: str | None = None
        self._target: tuple[int, bytes] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closed = asyncio.Event()
        self._stopped = False  # after a PublishForkError: for good
        self._backoff = retry_after
        self._task: asyncio.Task[None] | None = None
        self._written: bytes | None = None  # the checkpoint note on disk, when we wrote it

    def publish(self, size: int, note: bytes) -> None:
        """Make ``note`` (of tree ``size``) the checkpoint to write next; returns at once."""
        if self._closing or self._stopped:
            return
        if self._target is not None and self._target[0] > size:
            return  # never step back (a reload may show an older head for a moment)
        self._target = (size, note)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sigledger-publish")

    async def flush(self) -> None:
        """Wait until everything handed to :meth:`publish` is on disk (or failed)."""
        if self._task is not None:
            await self._idle.wait()

    async def close(self) -> None:
        """Flush, then stop the background writer."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        self._backoff = self.retry_after
        while True:
            try:
                await self._open()
                await self._follow()
                return
            except PublishForkError as exc:
                self.error = f"static publication stopped: {exc}"
                self._stopped = True
                log.critical(
                    "static publication stopped; the directory keeps its last checkpoint",
                    extra={"directory": str(self.directory), "error": str(exc)},
                )
                self._idle.set()
                return
            except Exception as exc:
                # A full disk, permissions, storage trouble: the files only trail the
                # log, so keep the log running and try again (from what is on disk).
                self.error = f"static publication failing, retrying in {self._backoff:g} s: {exc}"
                log.error(
                    "static publication failed; retrying",
                    extra={"directory": str(self.directory), "error": str(exc)},
                    exc_info=True,
                )
                self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self._backoff)
                if self._closing:
                    return
                self._backoff = min(2 * self._backoff, RETRY_MAX)

    async def _open(self) -> None:
        """Create the directory if needed and find out how far it got."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True)
            self.directory.chmod(DIR_MODE)
        self.stats.size = await asyncio.to_thread(_disk_size, self.directory)
        head = await self.storage.latest_head()
        if head is not None and head.size < self.stats.size:
            raise PublishForkError(
                f"{self.directory / CHECKPOINT} names tree size {self.stats.size} but the "
                f"log holds only {head.size} entries (a database restored from an old "
                "backup?)"
            )
        log.info(
            "static publication",
            extra={"directory": str(self.directory), "published_size": self.stats.size},
        )

    async def _follow(self) -> None:
        """Write each newest target until closed."""
        while True:
            target = self._target
            if target is None or target[1] == self._written:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.write(*target)
            self.error = None
            self._backoff = self.retry_after

    async def write(self, size: int, note: bytes) -> None:
        """Write every file of tree ``size`` missing under the directory, then ``note``."""
        started = time.monotonic()
        old = self.stats.size
        if size < old:
            log.warning(
                "not publishing an older checkpoint than the one on disk",
                extra={"tree_size": size, "published_size": old},
            )
            self._written = note
            return
        dirs: set[Path] = set()
        refs = list(changed_tiles(old, size))
        for start in range(0, len(refs), READ_CHUNK):
            chunk = refs[start : start + READ_CHUNK]
            files = await self._contents(chunk)
            written, skipped = await asyncio.to_thread(self._write_files, files, dirs)
            self.stats.files += written
            self.stats.skipped += skipped
        # Every file of this size is durable before the checkpoint can name it.
        await asyncio.to_thread(_fsync_dirs, dirs)
        await asyncio.to_thread(self._write_checkpoint, size, note)
        self._written = note
        self.stats.size = size
        self.stats.batches += 1
        self.stats.last_seconds = time.monotonic() - started
        self.stats.seconds += self.stats.last_seconds

    async def _contents(self, refs: list[TileRef]) -> list[tuple[str, bytes]]:
        """(path, bytes) of each tile or bundle, read from storage."""
        hashes = await self.storage.read_tiles([(r.level, r.n) for r in refs if not r.is_entries])
        out = []
        for ref in refs:
            if ref.is_entries:
                first = ref.n * TILE_WIDTH
                entries = await self.storage.read_entries(first, first + ref.width)
                if len(entries) != ref.width:
                    raise StorageError(f"storage lacks entries for {ref.path}")
                out.append((ref.path, encode_entry_bundle(entries)))
            else:
                data = hashes.get((ref.level, ref.n), b"")
                if len(data) < ref.width * HASH_SIZE:
                    raise StorageError(f"storage lacks hashes for {ref.path}")
                out.append((ref.path, data[: ref.width * HASH_SIZE]))
        return out

    def _write_files(self, files: list[tuple[str, bytes]], dirs: set[Path]) -> tuple[int, int]:
        written = skipped = 0
        for rel, data in files:
            path = self.directory / rel
            try:
                existing = path.read_bytes()
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if existing != data:
                    raise PublishForkError(
                        f"{path} already holds {len(existing)} other bytes than the log's "
                        f"{len(data)}: the log's tree differs from the one it published"
                    )
                skipped += 1
            else:
                _make_dirs(path.parent, self.directory, dirs)
                write_atomically(path, data, mode=FILE_MODE)
                written += 1
            # Also for a file found in place: a killed writer may have renamed it
            # without syncing its directory, and the checkpoint is about to name it.
            dirs.update(_ancestors(path, self.directory))
        return written, skipped

    def _write_checkpoint(self, size: int, note: bytes) -> None:
        # Several processes may publish into one directory (on one host): the lock
        # makes "read the size on disk, replace if not newer" one step.
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                on_disk = _disk_size(self.directory)
                if on_disk > size:
                    return
                write_atomically(self.directory / CHECKPOINT, note, mode=FILE_MODE)
                _fsync_dirs({self.directory})
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _make_dirs(path: Path, root: Path, dirs: set[Path]) -> None:
    """Create ``path`` and its missing parents below ``root``; each new directory's
    parent goes into ``dirs`` (its entry must be fsynced too)."""
    if path == root or path.is_dir():
        return
    _make_dirs(path.parent, root, dirs)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        path.chmod(DIR_MODE)  # the umask (0077 under systemd) would hide it from the web server
    dirs.add(path.parent)


def _ancestors(path: Path, root: Path) -> Iterator[Path]:
    """The directories from ``path``'s parent up to ``root``, both included."""
    parent = path.parent
    while parent != root:
        yield parent
        parent = parent.parent
    yield root


def _fsync_dirs(dirs: set[Path]) -> None:
    # Deepest first, so that a directory's entry is synced after its contents.
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
