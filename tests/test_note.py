"""Tests for sigledger.ledger.note: published signed-note and cosignature vectors, strict
parsing, and properties (round trips, "only our errors", bit flips)."""

from __future__ import annotations

import ast
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

from sigledger.ledger import note as note_module
from sigledger.ledger.checkpoint import Checkpoint, format_checkpoint
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    check_key_name,
    cosignature_message,
    cosignature_timestamp,
    format_note,
    key_id,
    open_note,
    parse_note,
    sign_cosignature,
    sign_note,
    verify_cosignature,
)

VECTORS = Path(__file__).parent / "vectors"
NOTES: dict[str, Any] = json.loads((VECTORS / "notes.json").read_text(encoding="utf-8"))
COSIGS: dict[str, Any] = json.loads((VECTORS / "cosignatures.json").read_text(encoding="utf-8"))

KEYS = {k["name"]: k for k in NOTES["keys"]}
PETER = Signer.from_skey(KEYS["PeterNeumann"]["skey"])
ENOCH = Signer.from_skey(KEYS["EnochRoot"]["skey"])
PETER_V = Verifier.from_vkey(KEYS["PeterNeumann"]["vkey"])
ENOCH_V = Verifier.from_vkey(KEYS["EnochRoot"]["vkey"])
TEXT: str = NOTES["signed_notes"][0]["text"]
PETER_NOTE: str = NOTES["signed_notes"][0]["note"]
PETER_LINE = PETER_NOTE[len(TEXT) + 1 :]

COSIG = COSIGS["deterministic"][0]
SEED17 = bytes.fromhex(COSIG["seed_hex"])
WITNESS = Signer.from_seed(COSIG["name"], SEED17, ALG_COSIGNATURE_V1)
WITNESS_V = WITNESS.verifier()
CP_TEXT: str = COSIG["checkpoint_text"]


def vid(v: dict[str, Any]) -> str:
    return str(v.get("case") or v.get("why") or v.get("vkey") or v.get("name"))


def only_signature(data: str) -> NoteSignature:
    (sig,) = parse_note(data).signatures
    return sig


# --- module docstring and purity ----------------------------------------------


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(note_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8
    assert result.failed == 0


@pytest.mark.parametrize("module", ["note", "checkpoint"])
def test_format_modules_are_pure(module: str) -> None:
    path = Path(__file__).resolve().parent.parent / "ledger" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"os", "socket", "asyncio", "aiohttp", "aiosqlite", "subprocess", "io", "time"}
    assert not imported & forbidden
    assert "open" not in {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


# --- keys ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", NOTES["keys"], ids=vid)
def test_published_keys(vector: dict[str, Any]) -> None:
    signer = Signer.from_skey(vector["skey"])
    assert signer.skey == vector["skey"]
    assert signer.vkey == vector["vkey"]
    assert signer.name == vector["name"]
    assert signer.alg == vector["alg"] == ALG_ED25519
    assert f"{signer.key_id:08x}" == vector["key_id"]
    verifier = Verifier.from_vkey(vector["vkey"])
    assert verifier == signer.verifier()
    assert verifier.vkey == vector["vkey"]
    assert verifier.public_key == signer.public_key
    if "seed_hex" in vector:
        again = Signer.from_seed(vector["name"], bytes.fromhex(vector["seed_hex"]))
        assert again.skey == vector["skey"]


@pytest.mark.parametrize("vector", NOTES["key_ids"], ids=vid)
def test_key_id_table(vector: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(vector["vkey"])
    assert verifier.alg == vector["alg"]
    assert f"{verifier.key_id:08x}" == vector["key_id"]
    name, _, rest = vector["vkey"].partition("+")
    raw = base64.b64decode(rest.partition("+")[2])
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    assert f"{key_id(name, raw[0], raw[1:]):08x}" == expected == vector["key_id"]
    assert verifier.vkey == vector["vkey"]


def test_same_key_has_different_ids_per_type() -> None:
    assert key_id("example.org/witness", 1, WITNESS.public_key) != WITNESS.key_id
    assert Signer.from_seed("example.org/witness", SEED17).key_id != WITNESS.key_id


@pytest.mark.parametrize("vector", NOTES["bad_vkeys"], ids=vid)
def test_bad_vkeys(vector: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Verifier.from_vkey(vector["vkey"])


@pytest.mark.parametrize(
    "key",
    [KEYS["PeterNeumann"]["vkey"], KEYS["PeterNeumann"]["skey"], COSIG["vkey"]],
    ids=["vkey", "skey", "cosigner-vkey"],
)
def test_key_manglings_rejected(key: str) -> None:
    """golang.org/x/mod TestNewVerifier/TestNewSigner: every proper substring
    and every single-byte increment is rejected."""
    parse = Signer.from_skey if key.startswith("PRIVATE+") else Verifier.from_vkey
    parse(key)
    b = key.encode()
    mangled = {b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)} - {b}
    mangled |= {b[:i] + bytes([b[i] + 1]) + b[i + 1 :] for i in range(len(b))}
    for candidate in sorted(mangled):
        with pytest.raises(FormatError):
            parse(candidate.decode())


def test_cosigner_skey_round_trip() -> None:
    skey = WITNESS.skey
    assert skey.startswith("PRIVATE+KEY+example.org/witness+cacf2e50+B")
    again = Signer.from_skey(skey)
    assert again.alg == ALG_COSIGNATURE_V1
    assert again.vkey == COSIG["vkey"]
    # The same seed with type 0x01 has another key ID: claiming 0x04's is rejected.
    seed_b64 = base64.b64encode(b"\x01" + SEED17).decode()
    with pytest.raises(FormatError):
        Signer.from_skey(f"PRIVATE+KEY+example.org/witness+cacf2e50+{seed_b64}")


@pytest.mark.parametrize(
    "skey",
    [
        # type byte 0x02
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        # type byte and a 31-byte seed
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDE=",
        "PRIVATE+KEY+PeterNeumann+C74F20A3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "private+key+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_skeys(skey: str) -> None:
    with pytest.raises(FormatError) as info:
        Signer.from_skey(skey)
    assert "AYEKFALV" not in str(info.value)


def test_signer_repr_hides_secret() -> None:
    text = repr(PETER)
    assert "c74f20a3" in text
    assert "AYEKFALV" not in text
    assert PETER.skey not in text


def test_signer_construction_errors() -> None:
    with pytest.raises(FormatError):
        Signer.from_seed("ok", bytes(31))
    with pytest.raises(FormatError):
        Signer.from_seed("ok", bytes(32), alg=0x02)
    with pytest.raises(FormatError):
        Signer.from_seed("not ok", bytes(32))
    with pytest.raises(FormatError):
        Verifier("ok", bytes(33))
    with pytest.raises(FormatError):
        Verifier("ok", bytes(32), alg=0x06)


def test_generate() -> None:
    for alg in (ALG_ED25519, ALG_COSIGNATURE_V1):
        signer = Signer.generate("example.com/gen", alg)
        assert signer.alg == alg
        assert Signer.from_skey(signer.skey).vkey == signer.vkey
        assert Verifier.from_vkey(signer.vkey) == signer.verifier()
        assert signer.verifier().verify(b"hi", signer.sign(b"hi"))
    assert Signer.generate("x").public_key != Signer.generate("x").public_key


def test_raw_verify_never_raises() -> None:
    sig = PETER.sign(b"hi")
    assert PETER_V.verify(b"hi", sig)
    assert not PETER_V.verify(b"hj", sig)
    assert not PETER_V.verify(b"hi", sig[:63])
    assert not PETER_V.verify(b"hi", sig + b"\x00")
    assert not PETER_V.verify(b"hi", b"")
    assert not PETER_V.verify(b"hi", b"\xff" * 64)
    assert not ENOCH_V.verify(b"hi", sig)


def test_verifier_equality() -> None:
    assert Verifier.from_vkey(PETER.vkey) == PETER_V
    assert hash(PETER_V) == hash(PETER.verifier())
    assert PETER_V != ENOCH_V
    assert PETER_V != "PeterNeumann"
    assert len({PETER_V, PETER.verifier(), ENOCH_V}) == 2


# --- key names --------------------------------------------------------------------

GO_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "+", "a\tb", "a\x00", "a\x7f", "\x1c", "\ud800x", *GO_WHITE_SPACE],
)
def test_bad_key_names(name: str) -> None:
    with pytest.raises(FormatError):
        check_key_name(name)
    with pytest.raises(FormatError):
        Signer.from_seed(name, bytes(32))


@pytest.mark.parametrize(
    "name",
    [
        "example.com/log42",
        "PeterNeumann",
        "sum.golang.org",
        "é",
        "日本",
        "a-b_c.d/e:f?g=h",
        "\u200b",
    ],
)
def test_good_key_names(name: str) -> None:
    check_key_name(name)
    signer = Signer.from_seed(name, bytes(32))
    assert Verifier.from_vkey(signer.vkey) == signer.verifier()


# --- signed notes -------------------------------------------------------------------


@pytest.mark.parametrize("vector", NOTES["signed_notes"], ids=vid)
def test_published_signed_notes(vector: dict[str, Any]) -> None:
    verifiers = [Verifier.from_vkey(k) for k in vector["vkeys"]]
    note, verified = open_note(vector["note"].encode(), verifiers)
    assert note.text == vector["text"]
    assert [(s.name, s.key_id) for s in verified] == [(v.name, v.key_id) for v in verifiers]
    assert format_note(note) == vector["note"].encode()
    assert open_note(vector["note"], verifiers)[0] == note  # str input too


def test_sign_reproduces_go_byte_for_byte() -> None:
    single, double = NOTES["signed_notes"][0], NOTES["signed_notes"][1]
    assert sign_note(TEXT, [PETER]) == single["note"].encode()
    # Go's example: open Peter's note, add EnochRoot's signature.
    note, _ = open_note(single["note"], [PETER_V])
    assert sign_note(note.text, [ENOCH], existing=note.signatures) == double["note"].encode()
    # Signing again with both keys: the old lines are replaced, new ones last.
    parsed = parse_note(double["note"])
    assert sign_note(TEXT, [ENOCH], existing=parsed.signatures) == double["note"].encode()
    assert sign_note(TEXT, [PETER, ENOCH], existing=parsed.signatures) == double["note"].encode()


def test_sign_replaces_existing_signature_by_same_key() -> None:
    """golang.org/x/mod TestSign: an existing signature by the same key is dropped."""
    stale = NoteSignature("PeterNeumann", 0xC74F20A3, b"BADSIGN")
    assert sign_note(TEXT, [PETER], existing=[stale]) == PETER_NOTE.encode()
    other = NoteSignature("PeterNeumann", 0xC74F20A4, b"\x01")
    out = sign_note(TEXT, [PETER], existing=[other]).decode()
    assert out == TEXT + "\n" + other.line() + PETER_LINE


def test_sign_errors() -> None:
    with pytest.raises(ValueError, match="newline"):
        sign_note("abc", [PETER])
    with pytest.raises(ValueError):
        sign_note(TEXT, [], existing=[NoteSignature("a+b", 0, b"ABCD")])
    with pytest.raises(ValueError, match="at least one"):
        sign_note(TEXT, [])
    with pytest.raises(ValueError, match="control"):
        sign_note("a\tb\n", [PETER])
    with pytest.raises(ValueError, match="control"):
        sign_note("a\rb\n", [PETER])
    with pytest.raises(ValueError):
        sign_note("\ud800\n", [PETER])
    with pytest.raises(ValueError, match="cosign"):
        sign_note(CP_TEXT, [WITNESS])
    too_many = [NoteSignature(f"k{i}", i, b"x") for i in range(MAX_SIGNATURES)]
    with pytest.raises(ValueError):
        sign_note(TEXT, [PETER], existing=too_many)
    assert len(parse_note(sign_note(TEXT, [PETER], existing=too_many[1:])).signatures) == 100


def test_format_note_checks_signatures() -> None:
    with pytest.raises(ValueError):
        format_note(Note(TEXT, (NoteSignature("ok", 2**32, b"x"),)))
    with pytest.raises(ValueError):
        format_note(Note(TEXT, (NoteSignature("ok", 1, b""),)))
    with pytest.raises(ValueError):
        format_note(Note(TEXT, ()))
    line = NoteSignature("ok", 0x01020304, b"\x05").line()
    assert line == "— ok AQIDBAU=\n"


@pytest.mark.parametrize("vector", NOTES["open_cases"], ids=vid)
def test_go_open_cases(vector: dict[str, Any]) -> None:
    verifiers = [Verifier.from_vkey(k) for k in vector["vkeys"]]
    if "error" in vector:
        with pytest.raises(VerificationError) as info:
            open_note(vector["note"].encode(), verifiers)
        if "message" in vector:
            assert vector["message"] in str(info.value)
        return
    note, verified = open_note(vector["note"].encode(), verifiers)
    assert note.text == TEXT
    assert [s.name for s in verified] == vector["verified"]
    assert [s.name for s in note.signatures] == vector["signatures"]


def test_unverified_error_names_expected_key() -> None:
    with pytest.raises(VerificationError, match=r"EnochRoot\+af0cfe78"):
        open_note(PETER_NOTE, [ENOCH_V])
    with pytest.raises(VerificationError, match="none configured"):
        open_note(PETER_NOTE, [])


def test_known_key_with_second_different_signature_fails() -> None:
    """Go ignores all but the first signature line of a known key; we check all."""
    bad = PETER_LINE[:-4] + "Ag=\n"
    assert only_signature(TEXT + "\n" + bad).key_id == PETER.key_id
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_LINE + bad, [PETER_V])


def _malformed(vector: dict[str, Any]) -> bytes:
    if "note_hex" in vector:
        return bytes.fromhex(vector["note_hex"])
    if "repeat" in vector:
        text, line, repeat = (
            str(vector["text"]),
            str(vector["signature_line"]),
            int(vector["repeat"]),
        )
        return (text + "\n" + line * repeat).encode()
    return str(vector["note"]).encode()


@pytest.mark.parametrize("vector", NOTES["malformed_notes"], ids=vid)
def test_go_malformed_notes(vector: dict[str, Any]) -> None:
    data = _malformed(vector)
    with pytest.raises(FormatError):
        parse_note(data)
    with pytest.raises(FormatError):
        open_note(data, [PETER_V])
    if "note_hex" not in vector:
        with pytest.raises(FormatError):
            parse_note(data.decode())


SIG_B64 = PETER_LINE[len("— PeterNeumann ") : -1]


@pytest.mark.parametrize(
    "data",
    [
        TEXT + "\r\n" + PETER_LINE,
        TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_LINE,
        "a\tb\n\n" + PETER_LINE,
        "a\x00\n\n" + PETER_LINE,
        TEXT + "\n" + PETER_LINE.replace("\n", "\r\n"),
        TEXT + "\n" + PETER_LINE.replace("—", "-"),
        TEXT + "\n" + PETER_LINE.replace("— ", "—"),
        TEXT + "\n" + PETER_LINE.replace("— ", "—  "),
        TEXT + "\n" + PETER_LINE.replace(" x08", "  x08"),
        TEXT + "\n" + PETER_LINE.replace("=\n", "= \n"),
        TEXT + "\n" + PETER_LINE.replace("=\n", "\n"),  # padding missing
        TEXT + "\n" + PETER_LINE.replace("AM=\n", "AN=\n"),  # non-canonical trailing bits
        TEXT + "\n" + PETER_LINE.replace("/", "_"),  # URL-safe alphabet
        TEXT + "\n" + PETER_LINE.replace("PeterNeumann", "Peter+Neumann"),
        TEXT + "\n" + PETER_LINE.replace("PeterNeumann", "Peter\u00a0Neumann"),
        TEXT + "\n" + PETER_LINE.replace("PeterNeumann", ""),
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "— PeterNeumann \n",
        TEXT + "\n" + "— PeterNeumann AAAAAA==\n",  # 4 bytes: key ID only
        TEXT + "\n" + "— PeterNeumann " + SIG_B64 + "\n\n",
        TEXT + "\n" + PETER_LINE + "\n",
        TEXT + "\n" + PETER_LINE + PETER_LINE[:-1],
        TEXT + "\n\n",
        "\n",
        "",
        "\n\n",
    ],
)
def test_more_malformed_notes(data: str) -> None:
    with pytest.raises(FormatError):
        parse_note(data.encode())
    with pytest.raises(FormatError):
        open_note(data, [PETER_V])


def test_lone_surrogate_string_rejected() -> None:
    with pytest.raises(FormatError):
        parse_note("\ud800\n\n" + PETER_LINE)


def test_note_text_may_contain_empty_lines() -> None:
    text = "a\n\n\nb\n\n"
    data = sign_note(text, [PETER])
    note, _ = open_note(data, [PETER_V])
    assert note.text == text
    assert open_note(sign_note("\n", [PETER]), [PETER_V])[0].text == "\n"


def test_signature_limit() -> None:
    unknown = [Signer.from_seed(f"k{i}", bytes([i]) * 32) for i in range(MAX_SIGNATURES)]
    lines = [s.line() for s in (NoteSignature(u.name, u.key_id, u.sign(b"x")) for u in unknown)]
    ok = TEXT + "\n" + "".join(lines[:99]) + PETER_LINE
    note, verified = open_note(ok, [PETER_V])
    assert len(note.signatures) == MAX_SIGNATURES
    assert len(verified) == 1
    with pytest.raises(FormatError, match="101"):
        parse_note(TEXT + "\n" + "".join(lines) + PETER_LINE)
    # Exact duplicates count against the limit (as in Go) and are then dropped.
    note, verified = open_note(TEXT + "\n" + PETER_LINE * MAX_SIGNATURES, [PETER_V])
    assert len(note.signatures) == len(verified) == 1


def test_sixteen_signers_round_trip() -> None:
    signers = [Signer.from_seed(f"example.com/s{i}", bytes([i + 1]) * 32) for i in range(16)]
    data = sign_note(TEXT, signers)
    note, verified = open_note(data, [s.verifier() for s in signers])
    assert len(verified) == 16
    assert format_note(note) == data


def test_signature_bit_flips_fail() -> None:
    data = PETER_NOTE.encode()
    for i in range(len(data)):
        for bit in range(8):
            mutated = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
            with pytest.raises((FormatError, VerificationError)):
                open_note(mutated, [PETER_V])


# --- cosignature/v1 -----------------------------------------------------------------


def test_cosigner_key_vector() -> None:
    assert f"{WITNESS.key_id:08x}" == COSIG["key_id"]
    assert WITNESS.vkey == COSIG["vkey"]
    assert Verifier.from_vkey(COSIG["vkey"]) == WITNESS_V
    assert WITNESS_V.alg == ALG_COSIGNATURE_V1


def test_cosignature_reproduced_byte_for_byte() -> None:
    assert cosignature_message(CP_TEXT, COSIG["timestamp"]) == COSIG["message"].encode()
    sig = sign_cosignature(WITNESS, CP_TEXT, COSIG["timestamp"])
    assert sig.line() == COSIG["line"]
    assert len(sig.signature) == 72
    parsed = only_signature(CP_TEXT + "\n" + COSIG["line"])
    assert parsed == sig
    assert verify_cosignature(WITNESS_V, CP_TEXT, parsed) == 1234
    assert cosignature_timestamp(parsed) == 1234
    _note, verified = open_note(CP_TEXT + "\n" + COSIG["line"], [WITNESS_V])
    assert verified == [sig]


@pytest.mark.parametrize("vector", COSIGS["rejected_lines"], ids=vid)
def test_rejected_cosignature_lines(vector: dict[str, Any]) -> None:
    sig = only_signature(CP_TEXT + "\n" + vector["line"])
    assert verify_cosignature(WITNESS_V, CP_TEXT, sig) is None
    data = CP_TEXT + "\n" + COSIG["line"] + vector["line"]
    if (sig.name, sig.key_id) == (WITNESS.name, WITNESS.key_id):
        # Same key, wrong size: a known signature that fails.
        with pytest.raises(FormatError):
            cosignature_timestamp(sig)
        with pytest.raises(VerificationError, match="invalid signature"):
            open_note(data, [WITNESS_V])
    else:
        # Another key: ignored.
        _, verified = open_note(data, [WITNESS_V])
        assert [s.name for s in verified] == [WITNESS.name]


def test_cosignature_with_changed_timestamp_fails() -> None:
    sig = only_signature(CP_TEXT + "\n" + COSIG["line"])
    bumped = NoteSignature(sig.name, sig.key_id, (1235).to_bytes(8, "big") + sig.signature[8:])
    assert cosignature_timestamp(bumped) == 1235
    assert verify_cosignature(WITNESS_V, CP_TEXT, bumped) is None
    with pytest.raises(VerificationError):
        open_note(CP_TEXT + "\n" + bumped.line(), [WITNESS_V])


def test_cosignature_covers_whole_text() -> None:
    text = CP_TEXT + "Extendo\n"
    sig = sign_cosignature(WITNESS, text, 1)
    assert verify_cosignature(WITNESS_V, text, sig) == 1
    assert verify_cosignature(WITNESS_V, CP_TEXT + "Extendn\n", sig) is None
    assert verify_cosignature(WITNESS_V, CP_TEXT, sig) is None


def test_cosignature_needs_cosigner_key() -> None:
    """A 0x04 cosignature is not a 0x01 signature by the same key, and back."""
    log_key = Signer.from_seed(WITNESS.name, SEED17)
    data = CP_TEXT + "\n" + COSIG["line"]
    with pytest.raises(VerificationError):
        open_note(data, [log_key.verifier()])
    with pytest.raises(VerificationError):
        open_note(sign_note(CP_TEXT, [log_key]), [WITNESS_V])
    with pytest.raises(ValueError):
        sign_cosignature(log_key, CP_TEXT, 1)
    with pytest.raises(ValueError):
        verify_cosignature(log_key.verifier(), CP_TEXT, only_signature(data))


def test_cosignature_timestamp_range() -> None:
    for bad in (-1, 2**63, True):
        with pytest.raises(ValueError):
            cosignature_message(CP_TEXT, bad)
        with pytest.raises(ValueError):
            sign_cosignature(WITNESS, CP_TEXT, bad)
    with pytest.raises(ValueError):
        cosignature_message("no newline", 1)
    top = sign_cosignature(WITNESS, CP_TEXT, 2**63 - 1)
    assert verify_cosignature(WITNESS_V, CP_TEXT, top) == 2**63 - 1
    over = NoteSignature(top.name, top.key_id, b"\x80" + top.signature[1:])
    assert verify_cosignature(WITNESS_V, CP_TEXT, over) is None
    with pytest.raises(FormatError):
        cosignature_timestamp(over)
    assert cosignature_message(CP_TEXT, 0).startswith(b"cosignature/v1\ntime 0\n")


@pytest.mark.parametrize("vector", COSIGS["messages"], ids=vid)
def test_cosignature_messages(vector: dict[str, Any]) -> None:
    if vector.get("origin_is_sha256_of_32_zero_bytes"):
        assert vector["origin"].endswith(hashlib.sha256(bytes(32)).hexdigest())
    cp = Checkpoint(vector["origin"], vector["size"], bytes.fromhex(vector["root_hex"]))
    message = cosignature_message(format_checkpoint(cp), vector["timestamp"])
    assert message == vector["message"].encode()
    if "message_length" in vector:
        assert len(message) == vector["message_length"]


@pytest.mark.parametrize("vector", COSIGS["timestamps"], ids=vid)
def test_cosignature_timestamp_vectors(vector: dict[str, Any]) -> None:
    name = vector.get("name", "witness.example/w")
    sig = only_signature(f"x\n\n— {name} {vector['signature_b64']}\n")
    if "error" in vector:
        with pytest.raises(FormatError):
            cosignature_timestamp(sig)
        return
    assert f"{sig.key_id:08x}" == vector["key_id"]
    assert cosignature_timestamp(sig) == vector["timestamp"]
    assert len(base64.b64decode(vector["signature_b64"])) == 76


def test_cosignature_timestamp_gibberish() -> None:
    with pytest.raises(FormatError):
        parse_note("x\n\n— w 5%/$!\n 2\n")


@pytest.mark.parametrize("vector", COSIGS["notes"], ids=vid)
def test_c2sp_cosigned_note(vector: dict[str, Any]) -> None:
    note = parse_note(vector["note"])
    _log_sig, witness_sig = note.signatures
    assert witness_sig.name == vector["witness_name"]
    assert f"{witness_sig.key_id:08x}" == vector["witness_key_id"]
    assert cosignature_timestamp(witness_sig) == vector["timestamp"]
    assert format_note(note) == vector["note"].encode()
    with pytest.raises(VerificationError):  # placeholder signatures, unknown keys
        open_note(vector["note"], [PETER_V, WITNESS_V])


# --- properties -----------------------------------------------------------------------

NAME_CHARS = st.characters(
    exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="+\x85\xa0"
)
names = st.text(NAME_CHARS, min_size=1, max_size=16).filter(
    lambda s: not any(c.isspace() for c in s)
)
TEXT_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]
)
texts = st.lists(st.text(TEXT_CHARS, max_size=24), min_size=1, max_size=5).map(
    lambda lines: "".join(line + "\n" for line in lines)
)
seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(texts, st.lists(st.tuples(names, seeds), min_size=1, max_size=3, unique_by=lambda t: t[0]))
def test_sign_open_round_trip(text: str, keys: list[tuple[str, bytes]]) -> None:
    signers = [Signer.from_seed(name, seed) for name, seed in keys]
    data = sign_note(text, signers)
    note, verified = open_note(data, [s.verifier() for s in reversed(signers)])
    assert note.text == text
    assert [s.name for s in verified] == [s.name for s in signers]
    assert format_note(note) == data
    assert parse_note(data.decode()) == note
    # Any one of the keys suffices; unknown keys are ignored.
    assert open_note(data, [signers[-1].verifier(), ENOCH_V])[1][0].name == signers[-1].name


@settings(max_examples=60, deadline=None)
@given(texts, names, seeds, st.integers(0, 2**63 - 1))
def test_cosign_round_trip(text: str, name: str, seed: bytes, timestamp: int) -> None:
    signer = Signer.from_seed(name, seed, ALG_COSIGNATURE_V1)
    sig = sign_cosignature(signer, text, timestamp)
    assert verify_cosignature(signer.verifier(), text, sig) == timestamp
    assert cosignature_timestamp(sig) == timestamp
    _, verified = open_note(text + "\n" + sig.line(), [signer.verifier()])
    assert verified == [sig]


@settings(max_examples=60, deadline=None)
@given(texts, names, seeds, st.data())
def test_any_bit_flip_fails(text: str, name: str, seed: bytes, data: st.DataObject) -> None:
    signer = Signer.from_seed(name, seed)
    signed = sign_note(text, [signer])
    i = data.draw(st.integers(0, len(signed) - 1))
    bit = data.draw(st.integers(0, 7))
    mutated = signed[:i] + bytes([signed[i] ^ (1 << bit)]) + signed[i + 1 :]
    with pytest.raises((FormatError, VerificationError)):
        open_note(mutated, [signer.verifier()])


def _mutate(base: bytes, data: st.DataObject) -> bytes:
    """Apply a few random edits (insert, delete, replace, duplicate) to ``base``."""
    out = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "dup"]))
        i = data.draw(st.integers(0, len(out)))
        if op == "insert":
            out[i:i] = data.draw(
                st.sampled_from([b"\n", b"\n\n", b" ", b"+", b"=", b"\xe2\x80\x94 ", b"\xff", b"A"])
            )
        elif op == "delete":
            del out[i : i + data.draw(st.integers(1, 8))]
        elif op == "replace" and i < len(out):
            out[i] = data.draw(st.integers(0, 255))
        else:
            j = data.draw(st.integers(i, len(out)))
            out[j:j] = out[i:j]
    return bytes(out)


MIXED_NOTE = (
    TEXT + "\n" + PETER_LINE + NOTES["signed_notes"][1]["note"][len(PETER_NOTE) :]
).encode()
COSIGNED_NOTE = (CP_TEXT + "\n" + COSIG["line"]).encode()
VERIFIERS = [PETER_V, ENOCH_V, WITNESS_V]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([PETER_NOTE.encode(), MIXED_NOTE, COSIGNED_NOTE]), st.data())
def test_mutated_notes_raise_only_our_errors(base: bytes, data: st.DataObject) -> None:
    mutated = _mutate(base, data)
    try:
        note = parse_note(mutated)
    except FormatError:
        pass
    else:
        assert format_note(note).decode().startswith(note.text)
    with contextlib.suppress(FormatError, VerificationError):
        open_note(mutated, VERIFIERS)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parse_note_arbitrary_input(data: bytes | str) -> None:
    with contextlib.suppress(FormatError):
        parse_note(data)
    with contextlib.suppress(FormatError, VerificationError):
        open_note(data, VERIFIERS)


KEY_STRINGS = [
    KEYS["PeterNeumann"]["vkey"],
    KEYS["PeterNeumann"]["skey"],
    COSIG["vkey"],
    WITNESS.skey,
]


def _try_key_parsers(text: str) -> None:
    for parse in (Verifier.from_vkey, Signer.from_skey):
        with contextlib.suppress(FormatError):
            parse(text)
    with contextlib.suppress(FormatError):
        check_key_name(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_key_parsers_arbitrary_text(text: str) -> None:
    _try_key_parsers(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEY_STRINGS), st.data())
def test_key_parsers_mutated_keys(key: str, data: st.DataObject) -> None:
    _try_key_parsers(_mutate(key.encode(), data).decode("utf-8", "surrogateescape"))


def test_derived_keys_are_deterministic_and_separate() -> None:
    key = Signer.from_seed("log.example/log", bytes(range(32)))
    a = key.derive("log.example/log/observer", b"label one")
    assert a.vkey == key.derive("log.example/log/observer", b"label one").vkey
    assert a.name == "log.example/log/observer"
    assert a.public_key != key.public_key
    assert a.public_key != key.derive("log.example/log/observer", b"label two").public_key
    other = Signer.from_seed("log.example/log", bytes(32))
    assert a.public_key != other.derive("log.example/log/observer", b"label one").public_key
