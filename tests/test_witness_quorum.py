from __future__ import annotations

import pytest

from sigledger.client.receipts import check_witness_quorum
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, format_checkpoint, sign_checkpoint
from sigledger.ledger.errors import VerificationError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, sign_cosignature, sign_note

LOG = Signer.from_seed("example.org/log", bytes(32))
W = [Signer.from_seed(f"w{i}.example", bytes([i + 1]) * 32, ALG_COSIGNATURE_V1) for i in range(3)]
PLAIN = Signer.from_seed("plain.example", bytes([9]) * 32)  # a witness with an Ed25519 (0x01) key
CP = Checkpoint("example.org/log", 5, merkle.EMPTY_ROOT)


def _note(cosigners: list[Signer], plain: bool = False) -> bytes:
    text = format_checkpoint(CP)
    note = sign_checkpoint(CP, LOG)
    lines = "".join(
        sign_cosignature(w, text, 1700000000 + i).line() for i, w in enumerate(cosigners)
    )
    out = note + lines.encode()
    if plain:
        out = sign_note(text, [LOG, PLAIN])
    return out


def test_quorum_met_and_missing_named() -> None:
    keys = [w.verifier() for w in W]
    assert check_witness_quorum(_note(W[:2]), keys, 2) == ["w0.example", "w1.example"]
    with pytest.raises(VerificationError, match="1 of the 2 .* missing: w1.example, w2.example"):
        check_witness_quorum(_note(W[:1]), keys, 2)
    assert check_witness_quorum(_note([]), keys, 0) == []


def test_unknown_and_forged_cosignatures_do_not_count() -> None:
    keys = [w.verifier() for w in W[:2]]
    stranger = Signer.from_seed("w0.example", bytes([77]) * 32, ALG_COSIGNATURE_V1)
    with pytest.raises(VerificationError):
        check_witness_quorum(_note([stranger, W[2]]), keys, 1)
    note = bytearray(_note(W[:1]))
    note[-10] ^= 1  # corrupt the cosignature
    with pytest.raises(VerificationError):
        check_witness_quorum(bytes(note), keys, 1)
    # the same witness twice still counts once
    doubled = _note(W[:1]) + _note(W[:1]).split(b"\n")[-2] + b"\n"
    with pytest.raises(VerificationError):
        check_witness_quorum(doubled, keys, 2)


def test_plain_ed25519_witness_key() -> None:
    assert check_witness_quorum(_note([], plain=True), [PLAIN.verifier()], 1) == ["plain.example"]
