"""The c2sp.org/tlog-witness wire format (sigledger.ledger.witnessproto): round trips,
strictness, and "never raises anything but FormatError"."""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import NoteSignature, Verifier, verify_cosignature
from sigledger.ledger.witnessproto import (
    MAX_PROOF_LINES,
    SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    format_add_checkpoint,
    format_size_body,
    parse_add_checkpoint,
    parse_cosignature_lines,
    parse_size_body,
)

ROOT = Path(__file__).resolve().parent.parent
COSIGNATURES = json.loads((ROOT / "tests" / "vectors" / "cosignatures.json").read_text("utf-8"))

# The request example of c2sp.org/tlog-witness (placeholder signatures).
SPEC_EXAMPLE = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"  # noqa: E501
    "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"  # noqa: E501
).encode()

HASH = bytes(range(32))
HASH_LINE = base64.b64encode(HASH)
NOTE = b"example.com/log\n3\n" + HASH_LINE + b"\n\n\xe2\x80\x94 example.com/log AAAAAAA=\n"


def test_spec_example_parses() -> None:
    req = parse_add_checkpoint(SPEC_EXAMPLE)
    assert req.old_size == 20852014
    assert len(req.proof) == 4
    assert req.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert req.checkpoint.startswith(b"example.com/behind-the-sofa\n20852163\n")
    assert req.checkpoint.endswith(b"+qbSzm9Q=\n")
    assert format_add_checkpoint(req) == SPEC_EXAMPLE


@pytest.mark.parametrize("lines", [0, 1, 2, MAX_PROOF_LINES])
def test_proof_line_counts(lines: int) -> None:
    req = AddCheckpointRequest(7, (HASH,) * lines, NOTE)
    body = format_add_checkpoint(req)
    assert body.count(b"\n") == 1 + lines + 1 + NOTE.count(b"\n")
    assert parse_add_checkpoint(body) == req


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "no 'old <size>' line"),
        (b"old 1", "no 'old <size>' line"),
        (b"old 1\n", "ends before the empty line"),
        (b"old 1\n\n", "no checkpoint"),
        (b"old 1\n" + HASH_LINE + b"\n", "ends before the empty line"),
        (b"old 1\n" + HASH_LINE, "ends before the empty line"),
        (b"old 01\n\n" + NOTE, "canonical decimal"),
        (b"old -1\n\n" + NOTE, "canonical decimal"),
        (b"old +1\n\n" + NOTE, "canonical decimal"),
        (b"old 1 \n\n" + NOTE, "canonical decimal"),
        (b"old  1\n\n" + NOTE, "canonical decimal"),
        (b"old \n\n" + NOTE, "canonical decimal"),
        (b"old 1\r\n\n" + NOTE, "canonical decimal"),
        (b"old \xd9\xa1\n\n" + NOTE, "canonical decimal"),  # ARABIC-INDIC DIGIT ONE
        (b"old 9223372036854775808\n\n" + NOTE, "larger than 2"),
        (b"old 99999999999999999999\n\n" + NOTE, "canonical decimal"),
        (b"Old 1\n\n" + NOTE, "does not start with"),
        (b"old=1\n\n" + NOTE, "does not start with"),
        (b"\nold 1\n\n" + NOTE, "does not start with"),
        (b"old 1\n" + HASH_LINE[:-1] + b"\n\n" + NOTE, "proof line 1"),
        (b"old 1\n" + HASH_LINE[:-2] + b"B=\n\n" + NOTE, "canonical base64"),
        (b"old 1\n-" + HASH_LINE[1:] + b"\n\n" + NOTE, "proof line 1"),  # URL-safe alphabet
        (b"old 1\n" + HASH_LINE + b" \n\n" + NOTE, "proof line 1"),
        (b"old 1\n" + HASH_LINE + b"\r\n\n" + NOTE, "proof line 1"),
        (b"old 1\n" + base64.b64encode(bytes(33)) + b"\n\n" + NOTE, "proof line 1"),
        (b"old 1\n" + b"A" * 43 + b"=\n" + b"!" * 44 + b"\n\n" + NOTE, "proof line 2"),
        (b"old 1\n" + (HASH_LINE + b"\n") * 64 + b"\n" + NOTE, "more than 63"),
    ],
)
def test_malformed_requests(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_add_checkpoint(body)


@pytest.mark.parametrize(
    "req",
    [
        AddCheckpointRequest(-1, (), NOTE),
        AddCheckpointRequest(2**63, (), NOTE),
        AddCheckpointRequest(True, (), NOTE),
        AddCheckpointRequest(1, (bytes(31),), NOTE),
        AddCheckpointRequest(1, (HASH,) * 64, NOTE),
        AddCheckpointRequest(1, (), b""),
    ],
)
def test_format_refuses_what_parse_would(req: AddCheckpointRequest) -> None:
    with pytest.raises(ValueError, match="."):
        format_add_checkpoint(req)


# -- 409 bodies (sigsum-go client test vectors, SPECS.md 5.1) ----------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "size"),
    [
        (b"50\n", SIZE_CONTENT_TYPE, 50),
        (b"0\n", SIZE_CONTENT_TYPE, 0),
        (b"9223372036854775807\n", SIZE_CONTENT_TYPE, 2**63 - 1),
    ],
)
def test_size_body_accepted(body: bytes, content_type: str, size: int) -> None:
    assert parse_size_body(body, content_type) == size
    assert format_size_body(size) == body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"50", SIZE_CONTENT_TYPE),  # no newline
        (b"050\n", SIZE_CONTENT_TYPE),  # leading zero
        (b"", SIZE_CONTENT_TYPE),  # empty
        (b"\n", SIZE_CONTENT_TYPE),
        (b"50\n\n", SIZE_CONTENT_TYPE),
        (b"50\r\n", SIZE_CONTENT_TYPE),
        (b" 50\n", SIZE_CONTENT_TYPE),
        (b"+50\n", SIZE_CONTENT_TYPE),
        (b"-0\n", SIZE_CONTENT_TYPE),
        (b"9223372036854775808\n", SIZE_CONTENT_TYPE),
        (b"50\n", "text/x.tlog.size; charset=utf-8"),  # sigsum rejects parameters
        (b"50\n", "text/plain"),
        (b"50\n", "Text/X.Tlog.Size"),
        (b"50\n", ""),
    ],
)
def test_size_body_refused(body: bytes, content_type: str) -> None:
    with pytest.raises(FormatError):
        parse_size_body(body, content_type)


def test_format_size_body_range() -> None:
    for bad in (-1, 2**63):
        with pytest.raises(ValueError, match="not in"):
            format_size_body(bad)


# -- 200 bodies -------------------------------------------------------------------------


def test_cosignature_vector_parses_and_verifies() -> None:
    vec = COSIGNATURES["deterministic"][0]
    sigs = parse_cosignature_lines(vec["line"].encode())
    assert len(sigs) == 1
    sig = sigs[0]
    assert (sig.name, f"{sig.key_id:08x}") == (vec["name"], vec["key_id"])
    verifier = Verifier.from_vkey(vec["vkey"])
    assert verify_cosignature(verifier, vec["checkpoint_text"], sig) == vec["timestamp"]
    # Several lines, in order; each round-trips through NoteSignature.line().
    other = NoteSignature("example.org/w2", 0x01020304, bytes(72))
    body = (vec["line"] + other.line()).encode()
    assert parse_cosignature_lines(body) == [sig, other]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\n",
        b"\xe2\x80\x94 example.org/w AAAAAAA=",  # no final newline
        b"- example.org/w AAAAAAA=\n",  # hyphen, not em dash
        b"\xe2\x80\x94example.org/w AAAAAAA=\n",
        b"\xe2\x80\x94 example.org/w\n",
        b"\xe2\x80\x94 example.org/w AAAA\n",  # 3 bytes: shorter than a key ID + 1
        b"\xe2\x80\x94 example.org/w AAAAAAB=\n",  # non-canonical base64
        b"\xe2\x80\x94 example.org/w AAAAAAA\n",  # unpadded
        b"\xe2\x80\x94 example.org/w AAAAAAA= \n",
        b"\xe2\x80\x94 example.org/w AAAAAAA=\r\n",
        b"\xe2\x80\x94 exa+mple.org/w AAAAAAA=\n",
        b"\xe2\x80\x94  AAAAAAA=\n",
        b"\xe2\x80\x94 example.org/w AAAAAAA=\n\n",
        b"\xe2\x80\x94 example.org/w \xc3\xa9AAAAAA=\n",
        b"\xff\n",
        b"\xe2\x80\x94 w AAAAAAA=\n" * 101,
    ],
)
def test_malformed_cosignature_lines(body: bytes) -> None:
    with pytest.raises(FormatError):
        parse_cosignature_lines(body)


# -- properties --------------------------------------------------------------------------

_hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES)
_sizes = st.integers(min_value=0, max_value=2**63 - 1)


@given(old=_sizes, proof=_hashes, checkpoint=st.binary(min_size=1, max_size=300))
def test_request_round_trip(old: int, proof: list[bytes], checkpoint: bytes) -> None:
    req = AddCheckpointRequest(old, tuple(proof), checkpoint)
    assert parse_add_checkpoint(format_add_checkpoint(req)) == req


@given(size=_sizes)
def test_size_round_trip(size: int) -> None:
    assert parse_size_body(format_size_body(size), SIZE_CONTENT_TYPE) == size


@given(name=st.from_regex(r"[a-z0-9./-]{1,30}", fullmatch=True), key_id=st.integers(0, 2**32 - 1))
def test_cosignature_line_round_trip(name: str, key_id: int) -> None:
    sig = NoteSignature(name, key_id, bytes(72))
    assert parse_cosignature_lines(sig.line().encode()) == [sig]


# Pieces that make the parsers' branches likely to be reached by chance.
_pieces = st.sampled_from(
    [
        b"old ",
        b"0",
        b"1",
        b"07",
        b"9223372036854775808",
        b"\n",
        b"\n\n",
        b"\r",
        b" ",
        b"=",
        HASH_LINE,
        HASH_LINE[:-2] + b"B=",
        b"\xe2\x80\x94 ",
        b"\xe2\x80",
        b"example.org/w",
        b"+",
        b"AAAAAAA=",
        b"\xff",
        b"\x00",
        "é".encode(),
    ]
)
_structured = st.lists(_pieces, max_size=40).map(b"".join)
_bodies = st.one_of(st.binary(max_size=400), _structured)


def _only_format_errors(parse: Callable[..., object], *args: object) -> None:
    try:
        parse(*args)
    except FormatError:
        pass


@settings(max_examples=400)
@given(body=_bodies)
def test_parse_add_checkpoint_raises_only_format_error(body: bytes) -> None:
    _only_format_errors(parse_add_checkpoint, body)


@settings(max_examples=400)
@given(body=_bodies, content_type=st.one_of(st.just(SIZE_CONTENT_TYPE), st.text(max_size=40)))
def test_parse_size_body_raises_only_format_error(body: bytes, content_type: str) -> None:
    _only_format_errors(parse_size_body, body, content_type)


@settings(max_examples=400)
@given(body=_bodies)
def test_parse_cosignature_lines_raises_only_format_error(body: bytes) -> None:
    _only_format_errors(parse_cosignature_lines, body)


@given(body=_structured)
def test_accepted_requests_are_canonical(body: bytes) -> None:
    """Whatever parses formats back to the same bytes (one encoding per request)."""
    try:
        req = parse_add_checkpoint(body)
    except FormatError:
        return
    assert format_add_checkpoint(req) == body


def test_module_is_pure() -> None:
    tree = ast.parse((ROOT / "ledger" / "witnessproto.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    allowed = {
        "__future__",
        "base64",
        "re",
        "dataclasses",
        "sigledger.ledger.encoding",
        "sigledger.ledger.errors",
        "sigledger.ledger.merkle",
        "sigledger.ledger.note",
    }
    assert imported <= allowed, imported - allowed
