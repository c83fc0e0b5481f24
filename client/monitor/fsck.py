"""``sigledger fsck`` as a library: a one-shot audit of a whole log.

:func:`fsck` fetches the log's checkpoint, verifies it against the log key
(:func:`sigledger.client.logkey.open_with_log_key`) and runs
:func:`~sigledger.client.monitor.audit.audit_log` over every tile and entry, in
worker processes for large logs. The result's :meth:`FsckResult.to_json` is the
JSON summary the command prints (format version 1)::

    {"version": 1, "ok": bool,
     "log": {"url", "origin", "tree_size", "root_hash" (hex), "log_key"},
     "checkpoint": "<signed note>", "entries_checked": N, "tiles_checked": N,
     "tiles_unchecked": N, "root_from_entries": "<hex>" | null, "seconds": S,
     "failures": [{"type", "index", "message", "evidence"}, ...]}
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigledger.client.logkey import open_with_log_key
from sigledger.client.monitor.audit import AuditReport, audit_log
from sigledger.client.monitor.watcher import POOL_THRESHOLD, worker_pool
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.client.tiles import TileAuth
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.errors import VerificationError
from sigledger.ledger.note import Verifier

FSCK_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FsckResult:
    checkpoint: Checkpoint
    note: bytes
    log_key: Verifier
    report: AuditReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_json(self) -> dict[str, Any]:
        r, cp = self.report, self.checkpoint
        return {
            "version": FSCK_FORMAT_VERSION,
            "ok": r.ok,
            "log": {
                "url": r.url,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root_hash": cp.root.hex(),
                "log_key": self.log_key.vkey,
            },
            "checkpoint": self.note.decode(),
            "entries_checked": r.entries_checked,
            "tiles_checked": r.tiles_checked,
            "tiles_unchecked": r.tiles_unchecked,
            "root_from_entries": r.root_from_entries.hex() if r.root_from_entries else None,
            "seconds": round(r.seconds, 3),
            "failures": [
                {"type": f.type, "index": f.index, "message": f.message, "evidence": f.evidence}
                for f in r.findings
            ],
        }


async def fsck(
    url: str,
    log_key: Verifier,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> FsckResult:
    """Audit the whole log at ``url``; ``progress(done, total)`` reports entries checked.

    Worker processes (``workers`` >= 2) are used only for logs large enough to
    pay for starting them. Raises VerificationError when the checkpoint does not
    verify or the log does not serve what it commits to, NetworkError when it
    cannot be reached.
    """
    pool: concurrent.futures.Executor | None = None
    async with LogClient(url) as client:
        note = await client.checkpoint()
        cp, _ = open_with_log_key(note, log_key, client.url, log_key.name)
        if workers >= 2 and cp.size >= POOL_THRESHOLD:
            pool = worker_pool(workers)

        def entries_done(done: int) -> None:
            if progress is not None:
                progress(done, cp.size)

        try:
            report = await audit_log(
                TileAuth(client, cp, note), executor=pool, progress=entries_done
            )
        except LogRefusedError as exc:
            raise VerificationError(
                f"{client.url} does not serve data its checkpoint {cp.size} commits to: {exc}"
            ) from None
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return FsckResult(cp, note, log_key, report)
