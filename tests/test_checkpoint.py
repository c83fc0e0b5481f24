"""Tests for sigledger.ledger.checkpoint: published checkpoints, strict parsing, properties."""

from __future__ import annotations

import base64
import contextlib
import doctest
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigledger.ledger import checkpoint as checkpoint_module
from sigledger.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    Signer,
    Verifier,
    open_note,
    parse_note,
    sign_cosignature,
    sign_note,
    verify_cosignature,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "checkpoints.json").read_text(encoding="utf-8")
)
SIGSUM = VECTORS["deterministic"][0]
SIGSUM_SIGNER = Signer.from_seed(SIGSUM["origin"], bytes.fromhex(SIGSUM["seed_hex"]))
ROOT = bytes.fromhex(SIGSUM["root_hex"])


def vid(v: dict[str, Any]) -> str:
    return str(v.get("case") or v.get("why"))


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(checkpoint_module)
    assert result.attempted >= 8
    assert result.failed == 0


@pytest.mark.parametrize("vector", VECTORS["signed"], ids=vid)
def test_published_signed_checkpoints(vector: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(vector["vkey"])
    assert verifier.name != vector["origin"]
    cp, note = open_checkpoint(vector["note"].encode(), verifier, origin=vector["origin"])
    assert cp == Checkpoint(vector["origin"], vector["size"], base64.b64decode(vector["root_b64"]))
    assert format_checkpoint(cp) == note.text
    assert open_checkpoint(vector["note"], verifier)[0] == cp
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(vector["note"], verifier, origin=verifier.name)


def test_sigsum_checkpoint_reproduced_byte_for_byte() -> None:
    signer = SIGSUM_SIGNER
    assert signer.public_key.hex() == SIGSUM["public_key_hex"]
    assert SIGSUM["origin"] == "sigsum.org/v1/tree/" + hashlib.sha256(signer.public_key).hexdigest()
    assert f"{signer.key_id:08x}" == SIGSUM["key_id"]
    assert signer.vkey == SIGSUM["vkey"]
    assert ROOT[:3] == bytes([28, 14, 71])
    cp = Checkpoint(SIGSUM["origin"], SIGSUM["size"], ROOT)
    signed = sign_checkpoint(cp, signer)
    assert signed == SIGSUM["note"].encode()
    verifier = Verifier.from_vkey(SIGSUM["vkey"])
    assert open_checkpoint(signed, verifier, origin=SIGSUM["origin"]) == (cp, parse_note(signed))


@pytest.mark.parametrize("vector", VECTORS["bodies"], ids=vid)
def test_checkpoint_bodies(vector: dict[str, Any]) -> None:
    cp = Checkpoint(
        vector["origin"],
        vector["size"],
        base64.b64decode(vector["root_b64"]),
        tuple(vector.get("extensions", ())),
    )
    assert format_checkpoint(cp) == vector["text"]
    assert parse_checkpoint(vector["text"]) == cp
    if "root_is_record_hash_of" in vector:
        assert (
            cp.root == hashlib.sha256(b"\x00" + vector["root_is_record_hash_of"].encode()).digest()
        )
    if "note" in vector:
        note = parse_note(vector["note"])
        assert parse_checkpoint(note.text) == cp
        with pytest.raises(VerificationError):  # placeholder signature
            open_checkpoint(vector["note"], SIGSUM_SIGNER.verifier())


@pytest.mark.parametrize("vector", VECTORS["bad_bodies"], ids=vid)
def test_bad_checkpoint_bodies(vector: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        parse_checkpoint(vector["text"])
    if vector["text"].endswith("\n") and "\r" not in vector["text"]:
        # Properly signed, still refused.
        signed = sign_note(vector["text"], [SIGSUM_SIGNER])
        with pytest.raises(FormatError):
            open_checkpoint(signed, SIGSUM_SIGNER.verifier())


def test_size_bounds() -> None:
    base = "example.org/log\n{}\nHA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    assert parse_checkpoint(base.format(0)).size == 0
    assert parse_checkpoint(base.format(MAX_TREE_SIZE)).size == 2**63 - 1
    for bad in ("0" * 5000, "9" * 5000, "1" * 20, "１０", "0x10", "1e3", "10 ", "10.0"):
        with pytest.raises(FormatError):
            parse_checkpoint(base.format(bad))


@pytest.mark.parametrize(
    "cp",
    [
        Checkpoint("", 1, ROOT),
        Checkpoint("a\nb", 1, ROOT),
        Checkpoint("a\rb", 1, ROOT),
        Checkpoint("a\tb", 1, ROOT),
        Checkpoint("\ud800", 1, ROOT),
        Checkpoint("o", -1, ROOT),
        Checkpoint("o", 2**63, ROOT),
        Checkpoint("o", True, ROOT),
        Checkpoint("o", 1, ROOT[:31]),
        Checkpoint("o", 1, ROOT + b"\x00"),
        Checkpoint("o", 1, ROOT, ("",)),
        Checkpoint("o", 1, ROOT, ("a\nb",)),
        Checkpoint("o", 1, ROOT, ("a\x00",)),
    ],
)
def test_format_rejects_invalid_values(cp: Checkpoint) -> None:
    with pytest.raises(ValueError):
        format_checkpoint(cp)


def test_extension_lines_round_trip() -> None:
    cp = Checkpoint("example.com/log", 5, ROOT, ("ext one", "— ext two"))
    text = format_checkpoint(cp)
    assert text.endswith("\next one\n— ext two\n")
    signed = sign_checkpoint(cp, SIGSUM_SIGNER)
    assert open_checkpoint(signed, SIGSUM_SIGNER.verifier())[0] == cp


def test_open_checkpoint_ignores_other_signatures() -> None:
    cp = Checkpoint("example.org/log", 10, ROOT)
    log = Signer.from_seed("example.org/log", bytes(32))
    witness = Signer.from_seed("example.org/witness", bytes([17]) + bytes(31), ALG_COSIGNATURE_V1)
    other = Signer.from_seed("example.org/other", bytes([1]) * 32)
    text = format_checkpoint(cp)
    cosig = sign_cosignature(witness, text, 1234)
    signed = sign_note(text, [log, other], existing=[cosig])
    got, note = open_checkpoint(signed, log.verifier(), origin="example.org/log")
    assert got == cp
    assert [s.name for s in note.signatures] == [
        "example.org/witness",
        "example.org/log",
        "example.org/other",
    ]
    assert verify_cosignature(witness.verifier(), note.text, note.signatures[0]) == 1234
    _, verified = open_note(signed, [log.verifier(), witness.verifier()])
    assert len(verified) == 2
    # Not signed by the expected log key.
    with pytest.raises(VerificationError):
        open_checkpoint(sign_note(text, [other]), log.verifier())
    # A cosignature alone does not make a checkpoint valid for the log.
    with pytest.raises(VerificationError):
        open_checkpoint(text + "\n" + cosig.line(), log.verifier())
    with pytest.raises(ValueError):
        open_checkpoint(signed, witness.verifier())
    with pytest.raises(ValueError):
        sign_checkpoint(cp, witness)


def test_checkpoint_bit_flips_fail() -> None:
    data = SIGSUM["note"].encode()
    verifier = SIGSUM_SIGNER.verifier()
    for i in range(len(data)):
        for bit in range(8):
            mutated = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
            with pytest.raises((FormatError, VerificationError)):
                open_checkpoint(mutated, verifier, origin=SIGSUM["origin"])


# --- properties -----------------------------------------------------------------------

LINE_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]
)
lines = st.text(LINE_CHARS, min_size=1, max_size=30)
checkpoints = st.builds(
    Checkpoint,
    lines,
    st.one_of(st.integers(0, 300), st.integers(0, MAX_TREE_SIZE)),
    st.binary(min_size=32, max_size=32),
    st.lists(lines, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(checkpoints)
def test_format_parse_round_trip(cp: Checkpoint) -> None:
    text = format_checkpoint(cp)
    assert parse_checkpoint(text) == cp
    assert format_checkpoint(parse_checkpoint(text)) == text


@settings(max_examples=50, deadline=None)
@given(checkpoints, st.binary(min_size=32, max_size=32))
def test_sign_open_round_trip(cp: Checkpoint, seed: bytes) -> None:
    signer = Signer.from_seed("example.com/log", seed)
    signed = sign_checkpoint(cp, signer)
    got, note = open_checkpoint(signed, signer.verifier(), origin=cp.origin)
    assert got == cp
    assert note.text == format_checkpoint(cp)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.text(alphabet="0123456789+-=/\nAHa5 ", max_size=80)))
def test_parse_arbitrary_text(text: str) -> None:
    with contextlib.suppress(FormatError):
        parse_checkpoint(text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_checkpoints_raise_only_our_errors(data: st.DataObject) -> None:
    base = bytearray(SIGSUM["note"].encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(base)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            base[i:i] = data.draw(st.sampled_from([b"\n", b"0", b"+", b"=", b" ", b"\xff", b"-"]))
        elif op == "delete":
            del base[i : i + data.draw(st.integers(1, 5))]
        elif i < len(base):
            base[i] = data.draw(st.integers(0, 255))
    mutated = bytes(base)
    with contextlib.suppress(FormatError):
        parse_checkpoint(mutated.decode("utf-8", "surrogateescape"))
    with contextlib.suppress(FormatError, VerificationError):
        open_checkpoint(mutated, SIGSUM_SIGNER.verifier(), origin=SIGSUM["origin"])
    # The text part alone (what open_checkpoint parses after verifying).
    text = mutated.decode("utf-8", "replace").split("\n\n")[0] + "\n"
    with contextlib.suppress(FormatError):
        parse_checkpoint(text)
