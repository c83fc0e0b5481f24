from __future__ import annotations

import doctest
import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import sigledger.ledger.entry
from sigledger.client.publish.submit import sign_statement
from sigledger.ledger.entry import (
    Entry,
    SignedStatement,
    Statement,
    decode_entry,
    decode_signed_statement,
    encode_entry,
    encode_signed_statement,
    parse_release_filename,
    statement_message,
)
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer

SIGNER = Signer.from_seed("alice@example.org", bytes(range(32)))


def _entry(
    project: str = "sampleproject",
    version: str = "4.0.0",
    filename: str = "sampleproject-4.0.0-py3-none-any.whl",
    size: int = 4242,
    time_ms: int = 1767225600000,
) -> Entry:
    st = Statement(project, version, filename, hashlib.sha256(filename.encode()).digest(), size)
    return Entry(sign_statement(SIGNER, st), time_ms)


def test_module_docstring_example() -> None:
    result = doctest.testmod(sigledger.ledger.entry, raise_on_error=False)
    assert result.attempted >= 5
    assert result.failed == 0


def test_round_trip_and_signature() -> None:
    e = _entry()
    data = encode_entry(e)
    assert decode_entry(data) == e
    assert e.signed.verify()
    s = decode_signed_statement(encode_signed_statement(e.signed))
    assert s == e.signed


def test_signature_binds_every_field() -> None:
    e = _entry()
    st = e.statement
    for changed in (
        Statement(st.project, st.version, st.filename, bytes(32), st.size),
        Statement(st.project, st.version, st.filename, st.sha256, st.size + 1),
        Statement(st.project, st.version, "sampleproject-4.0.0.tar.gz", st.sha256, st.size),
    ):
        forged = SignedStatement(
            changed, e.signed.key_name, e.signed.public_key, e.signed.signature
        )
        assert not forged.verify()


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0"),
        ("foo_bar-1.0.post1.tar.gz", "foo-bar", "1.0.post1"),
        ("zope.interface-6.0-cp311-cp311-manylinux_2_17_x86_64.whl", "zope-interface", "6.0"),
        ("numpy-2.1.0.zip", "numpy", "2.1.0"),
    ],
)
def test_parse_release_filename(filename: str, project: str, version: str) -> None:
    assert parse_release_filename(filename) == (project, version)


@pytest.mark.parametrize(
    ("project", "version", "filename", "why"),
    [
        ("Sample_Project", "1.0", "sample_project-1.0.tar.gz", "canonical"),
        ("sampleproject", "1.0.0.0-rc1", "sampleproject-1.0.0.0rc1.tar.gz", "normalized"),
        ("sampleproject", "1.0", "other-1.0.tar.gz", "release of"),
        ("sampleproject", "1.0", "sampleproject-1.1.tar.gz", "release of"),
        ("sampleproject", "1.0", "sampleproject-1.0.exe", "not a wheel or sdist"),
        ("sampleproject", "1.0", "../sampleproject-1.0.tar.gz", "bare file name"),
        ("sampleproject", "not a version", "sampleproject-1.0.tar.gz", "PEP 440"),
        ("", "1.0", "x-1.0.tar.gz", "non-empty"),
    ],
)
def test_invalid_statements_rejected(project: str, version: str, filename: str, why: str) -> None:
    st = Statement(project, version, filename, bytes(32), 1)
    with pytest.raises(FormatError, match=why):
        st.validate()


def test_create_canonicalizes() -> None:
    st = Statement.create(
        "Sample_Project", "1.0.0-RC1", "sample_project-1.0.0rc1.tar.gz", bytes(32), 10
    )
    assert (st.project, st.version) == ("sample-project", "1.0.0rc1")


def test_non_canonical_encodings_rejected() -> None:
    data = encode_entry(_entry())
    fields = msgpack.unpackb(data)
    # size 4242 written as uint32 instead of uint16
    bad = bytearray(data)
    i = bad.index(bytes.fromhex("cd1092"))
    bad[i : i + 3] = bytes.fromhex("ce00001092")
    with pytest.raises(FormatError, match="canonical"):
        decode_entry(bytes(bad))
    # str field written as bin
    fields2 = list(fields)
    fields2[1] = fields2[1].encode()
    with pytest.raises(FormatError):
        decode_entry(msgpack.packb(fields2, use_bin_type=True))
    # trailing bytes
    with pytest.raises(FormatError):
        decode_entry(data + b"\x00")
    # unknown version
    fields3 = list(fields)
    fields3[0] = 2
    with pytest.raises(FormatError, match="version"):
        decode_entry(msgpack.packb(fields3, use_bin_type=True))
    # oversized field
    fields4 = list(fields)
    fields4[6] = "k" * 200
    with pytest.raises(FormatError):
        decode_entry(msgpack.packb(fields4, use_bin_type=True))
    # a map instead of an array
    with pytest.raises(FormatError):
        decode_entry(msgpack.packb({"a": 1}))
    # truncated
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            decode_entry(data[:cut])


def test_statement_message_is_domain_separated() -> None:
    st = _entry().statement
    msg = statement_message(st, "alice")
    assert msg.startswith(b"sigledger/statement/v1\n")
    assert msgpack.unpackb(msg[len(b"sigledger/statement/v1\n") :]) == [
        st.project,
        st.version,
        st.filename,
        st.sha256,
        st.size,
        "alice",
    ]


def test_key_name_is_signed() -> None:
    s = _entry().signed
    renamed = SignedStatement(s.statement, "mallory", s.public_key, s.signature)
    assert s.verify()
    assert not renamed.verify()


@settings(max_examples=300)
@given(hs.binary(max_size=400))
def test_decode_never_raises_other_errors(data: bytes) -> None:
    for decode in (decode_entry, decode_signed_statement):
        try:
            decode(data)
        except FormatError:
            pass


@settings(max_examples=200)
@given(hs.data())
def test_flipped_bytes_never_crash(data: hs.DataObject) -> None:
    raw = bytearray(encode_entry(_entry()))
    pos = data.draw(hs.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(hs.integers(1, 255))
    try:
        e = decode_entry(bytes(raw))
    except FormatError:
        return
    # A flip that still decodes must change what was signed or who signed it,
    # or only the (unsigned) integration time.
    original = _entry()
    assert e != original
    if e.signed != original.signed:
        assert e.time_ms == original.time_ms
        assert not e.signed.verify()


@settings(max_examples=100)
@given(
    version=hs.sampled_from(["1.0", "2.3.4", "1.0rc1", "0.0.1.dev3", "2024.1.post2", "1!2.0"]),
    size=hs.integers(0, 2**63 - 1),
    time_ms=hs.integers(0, 2**63 - 1),
    kind=hs.sampled_from(["whl", "sdist"]),
    project=hs.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
)
def test_round_trip_property(
    version: str, size: int, time_ms: int, kind: str, project: str
) -> None:
    if "--" in project:
        return
    stem = project.replace("-", "_")
    filename = f"{stem}-{version}-py3-none-any.whl" if kind == "whl" else f"{stem}-{version}.tar.gz"
    e = _entry(project, version, filename, size, time_ms)
    assert decode_entry(encode_entry(e)) == e
