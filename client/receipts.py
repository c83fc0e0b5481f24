"""Checks a client runs before it believes anything a log said.

A **receipt** (``<file>.sigledger.json``, media type
``application/vnd.sigledger.receipt.v1+json``) holds the logged entry, its
index, an inclusion proof and the signed checkpoint it is proven against::

    {"mediaType": "application/vnd.sigledger.receipt.v1+json",
     "log": {"url": "...", "origin": "..."},
     "status": "added" | "existing",
     "log_index": 7, "entry": "<base64 leaf bytes>",
     "inclusion_proof": {"log_index": 7, "tree_size": 9, "root_hash": "<base64>",
                         "hashes": ["<base64>", ...], "checkpoint": "<signed note>"}}

:func:`verify_receipt` checks that the entry decodes and its signature holds,
that the proof places its leaf hash under the checkpoint's root, that the
checkpoint is signed by the expected log key (when one is given), and that
the entry says what the caller expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from sigledger.ledger.encoding import b64decode
from sigledger.ledger.entry import Entry, Statement, decode_entry
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Verifier, parse_note, verify_cosignature

RECEIPT_MEDIA_TYPE = "application/vnd.sigledger.receipt.v1+json"


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    index: int
    entry: Entry
    checkpoint: Checkpoint
    log_signed: bool  # True when the checkpoint signature was checked against a log key


def b64_field(value: object, what: str) -> bytes:
    """Decode a base64 field of a log's answer or a receipt; VerificationError if it is not."""
    if not isinstance(value, str):
        raise VerificationError(f"{what} must be base64 text")
    try:
        return b64decode(value, what)
    except FormatError as exc:
        raise VerificationError(str(exc)) from None


def _same_file_and_bytes(logged: Statement, expected: Statement) -> bool:
    """The logged entry attests the expected file: the same file identity (the log
    answers a spelling variant of a logged file with the existing entry) and the
    same digest and size."""
    return (
        logged.identity == expected.identity
        and logged.sha256 == expected.sha256
        and logged.size == expected.size
    )


def verify_receipt(
    receipt: dict[str, Any],
    *,
    log_key: Verifier | None = None,
    expect: Statement | None = None,
) -> VerifiedReceipt:
    """Verify a receipt as returned by /add or stored next to a file.

    Raises VerificationError naming the first check that failed.
    """
    try:
        proof = receipt["inclusion_proof"]
        index = receipt["log_index"]
        entry_bytes = b64_field(receipt["entry"], "receipt entry")
        hashes = [b64_field(h, "receipt inclusion_proof.hashes") for h in proof["hashes"]]
        note_text = proof["checkpoint"]
    except (KeyError, TypeError):
        raise VerificationError("receipt is missing required fields") from None
    if type(index) is not int or proof.get("log_index") != index:
        raise VerificationError("receipt log_index is missing or inconsistent")
    if not isinstance(note_text, str):
        raise VerificationError("receipt checkpoint must be a string")
    try:
        entry = decode_entry(entry_bytes)
    except FormatError as exc:
        raise VerificationError(f"logged entry does not decode: {exc}") from None
    if not entry.signed.verify():
        raise VerificationError("the publisher signature in the logged entry does not verify")
    try:
        if log_key is not None:
            checkpoint, _note = open_checkpoint(note_text.encode(), log_key)
        else:
            checkpoint = parse_checkpoint(parse_note(note_text.encode()).text)
    except FormatError as exc:
        raise VerificationError(f"receipt checkpoint is malformed: {exc}") from None
    if proof.get("tree_size") != checkpoint.size:
        raise VerificationError("receipt tree_size differs from its checkpoint")
    merkle.check_inclusion(
        index, checkpoint.size, merkle.leaf_hash(entry_bytes), hashes, checkpoint.root
    )
    if expect is not None and not _same_file_and_bytes(entry.statement, expect):
        raise VerificationError(
            f"the log holds a different statement at index {index} than the one submitted"
        )
    return VerifiedReceipt(index, entry, checkpoint, log_key is not None)


def check_witness_quorum(
    note_bytes: bytes, witnesses: Sequence[Verifier], quorum: int
) -> list[str]:
    """Require ``quorum`` distinct witnesses to have cosigned this checkpoint note.

    Cosignature/v1 (0x04) keys are checked over ``cosignature/v1\\ntime T\\n`` +
    the checkpoint text; Ed25519 (0x01) witness keys as plain note signatures.
    Returns the names of the witnesses whose cosignature verified; raises
    VerificationError naming the missing ones when there are too few.
    """
    if quorum <= 0:
        return []
    try:
        note = parse_note(note_bytes)
    except FormatError as exc:
        raise VerificationError(f"checkpoint note is malformed: {exc}") from None
    good: list[str] = []
    for w in witnesses:
        for sig in note.signatures:
            if sig.name != w.name or sig.key_id != w.key_id:
                continue
            if w.alg == ALG_COSIGNATURE_V1:
                ok = verify_cosignature(w, note.text, sig) is not None
            else:
                ok = w.verify(note.text.encode(), sig.signature)
            if ok:
                good.append(w.name)
                break
    if len(good) < quorum:
        missing = [w.name for w in witnesses if w.name not in good]
        raise VerificationError(
            f"the checkpoint has {len(good)} of the {quorum} witness cosignatures the policy "
            f"requires; missing: {', '.join(missing)}"
        )
    return good
