from __future__ import annotations

import doctest
import hashlib
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import sigledger.ledger.entry
from sigledger.client.publish.submit import sign_observation, sign_statement
from sigledger.ledger.entry import (
    OBSERVATION_CONTEXT,
    Entry,
    SignedObservation,
    SignedStatement,
    Statement,
    decode_entry,
    decode_signed,
    decode_signed_statement,
    encode_entry,
    encode_signed,
    encode_signed_statement,
    observation_message,
    parse_release_filename,
    statement_message,
)
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer

SIGNER = Signer.from_seed("alice@example.org", bytes(range(32)))
OBSERVER = Signer.from_seed("log.example.org/observer", bytes(range(1, 33)))
INDEX = "https://pypi.org/simple/"


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


# -- observations ----------------------------------------------------------------


def _observed(
    project: str = "sampleproject",
    version: str = "4.0.0",
    filename: str = "sampleproject-4.0.0-py3-none-any.whl",
    size: int = 4242,
    index_url: str = INDEX,
    observed_ms: int = 1767225599000,
    time_ms: int = 1767225600000,
) -> Entry:
    st = Statement(project, version, filename, hashlib.sha256(filename.encode()).digest(), size)
    return Entry(sign_observation(OBSERVER, st, index_url, observed_ms), time_ms)


def test_observation_round_trip_and_signature() -> None:
    e = _observed()
    assert isinstance(e.signed, SignedObservation)
    assert (e.signed.kind, SignedStatement.kind) == ("observation", "signature")
    data = encode_entry(e)
    assert data[:2] == b"\x9c\x02"  # 12 elements, format 2
    assert decode_entry(data) == e
    assert e.signed.verify()
    assert decode_signed(encode_signed(e.signed)) == e.signed
    # The first six fields sit where a signed statement has them (storage reads them).
    fields = msgpack.unpackb(data)
    statement_fields = msgpack.unpackb(encode_entry(_entry()))
    assert fields[1:6] == statement_fields[1:6]
    # A statement still decodes through both decoders; an observation only through one.
    s = _entry().signed
    assert decode_signed(encode_signed(s)) == s == decode_signed_statement(encode_signed(s))
    with pytest.raises(FormatError, match="observation"):
        decode_signed_statement(encode_signed(e.signed))


def test_observation_message_is_domain_separated_and_binds_every_field() -> None:
    e = _observed()
    obs = e.signed
    assert isinstance(obs, SignedObservation)
    msg = observation_message(obs.statement, obs.index_url, obs.observed_ms, obs.key_name)
    assert msg.startswith(OBSERVATION_CONTEXT)
    assert msgpack.unpackb(msg[len(OBSERVATION_CONTEXT) :]) == [
        *msgpack.unpackb(statement_message(obs.statement, "x")[23:])[:5],
        INDEX,
        obs.observed_ms,
        OBSERVER.name,
    ]
    # Not interchangeable with a publisher signature over the same statement.
    as_statement = SignedStatement(obs.statement, obs.key_name, obs.public_key, obs.signature)
    assert not as_statement.verify()
    st = obs.statement
    for changed in (
        replace(obs, index_url="https://evil.example/simple/"),
        replace(obs, observed_ms=obs.observed_ms + 1),
        replace(obs, key_name="mallory"),
        replace(obs, statement=Statement(st.project, st.version, st.filename, bytes(32), st.size)),
    ):
        assert not changed.verify()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "non-empty"),
        ("ftp://pypi.org/simple/", "http"),
        ("https://", "http"),
        ("https:///simple/", "http"),
        ("pypi.org/simple/", "http"),
        ("https://pypi.org/simple /", "whitespace"),
        ("https://pypi.org/\x00", "control"),
        ("https://pypi.org/" + "a" * 1100, "at most 1024"),
    ],
)
def test_invalid_index_urls_refused(url: str, why: str) -> None:
    st = _entry().statement
    with pytest.raises(FormatError, match=why):
        sign_observation(OBSERVER, st, url, 1)
    fields = msgpack.unpackb(encode_entry(_observed()))
    fields[9] = url
    with pytest.raises(FormatError):
        decode_entry(msgpack.packb(fields, use_bin_type=True))


def test_observation_non_canonical_and_malformed_forms_refused() -> None:
    data = encode_entry(_observed())
    fields = msgpack.unpackb(data)
    cases: list[bytes] = []
    for i, value in [
        (9, INDEX.encode()),  # index URL as bin
        (10, -1),  # negative observation time
        (10, "1767225599000"),  # time as str
        (10, 2**63),  # out of range
        (0, 3),  # unknown format
    ]:
        changed = list(fields)
        changed[i] = value
        cases.append(msgpack.packb(changed, use_bin_type=True))
    cases.append(msgpack.packb(fields[:11], use_bin_type=True))  # no time_ms
    cases.append(msgpack.packb([*fields, 0], use_bin_type=True))  # one field too many
    cases.append(msgpack.packb([1, *fields[1:]], use_bin_type=True))  # format 1 with 12 fields
    cases.append(data + b"\x00")
    # observed_ms written as uint64 although it fits fewer bytes
    small = list(fields)
    small[10] = 5
    packed = msgpack.packb(small, use_bin_type=True)
    assert packed[-10:-8] == b"\x05\xcf"
    cases.append(packed[:-10] + b"\xcf" + (5).to_bytes(8, "big") + packed[-9:])
    cases.extend(data[:cut] for cut in range(len(data)))
    for bad in cases:
        with pytest.raises(FormatError):
            decode_entry(bad)
    signed_fields = fields[:11]
    for cut in range(len(encode_signed(_observed().signed))):
        with pytest.raises(FormatError):
            decode_signed(encode_signed(_observed().signed)[:cut])
    with pytest.raises(FormatError, match="fields"):
        decode_signed(msgpack.packb(signed_fields[:10], use_bin_type=True))


@settings(max_examples=100)
@given(
    version=hs.sampled_from(["1.0", "2.3.4", "1.0rc1", "0.0.1.dev3", "2024.1.post2", "1!2.0"]),
    size=hs.integers(0, 2**63 - 1),
    observed_ms=hs.integers(0, 2**63 - 1),
    time_ms=hs.integers(0, 2**63 - 1),
    kind=hs.sampled_from(["whl", "sdist"]),
    project=hs.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    path=hs.from_regex(r"[a-z0-9./_-]{0,60}", fullmatch=True),
    scheme=hs.sampled_from(["http", "https"]),
)
def test_observation_round_trip_property(
    version: str,
    size: int,
    observed_ms: int,
    time_ms: int,
    kind: str,
    project: str,
    path: str,
    scheme: str,
) -> None:
    if "--" in project:
        return
    stem = project.replace("-", "_")
    filename = f"{stem}-{version}-py3-none-any.whl" if kind == "whl" else f"{stem}-{version}.tar.gz"
    url = f"{scheme}://index.example/{path}"
    e = _observed(project, version, filename, size, url, observed_ms, time_ms)
    data = encode_entry(e)
    assert decode_entry(data) == e
    assert e.signed.verify()
    assert decode_signed(encode_signed(e.signed)) == e.signed
    # Proper prefixes are refused.
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        with pytest.raises(FormatError):
            decode_entry(data[:cut])


@settings(max_examples=300)
@given(hs.data())
def test_observation_flipped_bytes_never_crash(data: hs.DataObject) -> None:
    original = _observed()
    raw = bytearray(encode_entry(original))
    pos = data.draw(hs.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(hs.integers(1, 255))
    try:
        e = decode_entry(bytes(raw))
    except FormatError:
        return
    assert e != original
    if e.signed != original.signed:
        assert e.time_ms == original.time_ms
        assert not e.signed.verify()


@settings(max_examples=300)
@given(hs.binary(max_size=400))
def test_decode_signed_never_raises_other_errors(data: bytes) -> None:
    try:
        decode_signed(data)
    except FormatError:
        pass
