"""Publisher side: keys, signing release statements, submitting, receipts.

``publish`` hashes each file, builds its :class:`~sigledger.ledger.entry.Statement` from
the file name (a wheel or sdist), signs it, submits the signed statements in
chunks, verifies every receipt (entry, signature, inclusion proof, and the
log's checkpoint signature when the log key is known) and writes each
receipt where :mod:`sigledger.client.publish.files` says (``dist/.sigledger/``).
With a log key, the log's current checkpoint is verified before anything is
submitted: a wrong key or a wrong URL logs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigledger.client.logkey import open_with_log_key
from sigledger.client.publish.files import receipt_path, write_receipt
from sigledger.client.receipts import verify_receipt
from sigledger.client.remote import LogClient
from sigledger.ledger.entry import SignedObservation, SignedStatement, Statement, statement_message
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.keys import read_key_file, write_key_file
from sigledger.ledger.wire import statement_to_json

CHUNK = 500  # statements per request: well under the server's default limit of 1000


def generate_key(name: str) -> Signer:
    return Signer.generate(name)


def write_key(path: Path, signer: Signer, *, overwrite: bool = False) -> None:
    """Write a publisher key file (mode 0600); refuse to replace one unless asked."""
    write_key_file(path, signer, overwrite=overwrite)


def load_key(path: Path) -> Signer:
    return read_key_file(path, create_hint="create one with 'sigledger keygen --name NAME'")


def hash_file(path: Path) -> tuple[bytes, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def statement_for_file(path: Path) -> Statement:
    digest, size = hash_file(path)
    try:
        return Statement.for_file(path.name, digest, size)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from None


def sign_statement(signer: Signer, statement: Statement) -> SignedStatement:
    return SignedStatement(
        statement,
        signer.name,
        signer.public_key,
        signer.sign(statement_message(statement, signer.name)),
    )


def sign_observation(
    signer: Signer, statement: Statement, index_url: str, observed_ms: int
) -> SignedObservation:
    """An observation under ``signer``: ``index_url`` served the file of ``statement``
    (whose sha256 and size the observer computed from the bytes) at ``observed_ms``."""
    return SignedObservation.sign(signer, statement, index_url, observed_ms)


@dataclass
class PublishResult:
    path: Path
    signed: SignedStatement
    status: str  # "added", "existing" or "dry-run"
    receipt: dict[str, Any] | None = None
    receipt_path: Path | None = None
    logged_as: str | None = None  # the filename the log has, if another spelling

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "status": self.status,
            "statement": statement_to_json(self.signed),
            "log_index": self.receipt["log_index"] if self.receipt else None,
            "receipt": str(self.receipt_path) if self.receipt_path else None,
            "logged_as": self.logged_as,
        }


async def publish(
    log_url: str,
    signer: Signer,
    paths: Sequence[Path],
    *,
    log_key: Verifier | None = None,
    dry_run: bool = False,
    write_receipts: bool = True,
    receipts_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PublishResult]:
    """Sign and submit ``paths``; return one result per file, in order.

    Raises FormatError for a file that is not a wheel/sdist and VerificationError
    for a checkpoint ``log_key`` did not sign (both before anything is sent),
    LogRefusedError when the log refuses, NetworkError when it cannot be
    reached, VerificationError when a receipt does not verify.
    """
    signed = [sign_statement(signer, statement_for_file(p)) for p in paths]
    if dry_run:
        return [PublishResult(p, s, "dry-run") for p, s in zip(paths, signed, strict=True)]
    results: list[PublishResult] = []
    async with LogClient(log_url) as client:
        if log_key is not None:
            open_with_log_key(await client.checkpoint(), log_key, client.url)
        for start in range(0, len(signed), CHUNK):
            chunk = signed[start : start + CHUNK]
            receipts = await client.add(chunk)
            for offset, (s, receipt) in enumerate(zip(chunk, receipts, strict=True)):
                logged = verify_receipt(receipt, log_key=log_key, expect=s.statement).entry
                logged_as = logged.statement.filename
                path = paths[start + offset]
                doc = receipt.to_file_json(client.url)
                rpath = None
                if write_receipts:
                    rpath = receipt_path(path, receipts_dir)
                    write_receipt(rpath, doc)
                results.append(
                    PublishResult(
                        path,
                        s,
                        receipt.status,
                        doc,
                        rpath,
                        logged_as if logged_as != s.statement.filename else None,
                    )
                )
            if progress is not None:
                progress(len(chunk))
    return results
