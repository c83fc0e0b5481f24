"""Release statements and logged entries: the bytes sigledger signs and logs.

A **release statement** says "the file FILENAME of release PROJECT VERSION has
SHA-256 DIGEST and SIZE bytes". Its fields are checked against the Python
packaging standards: the project name is PEP 503 canonical, the version is
PEP 440 normalized, and the filename must parse (via ``packaging``) as a wheel
or sdist of exactly that project and version.

A publisher signs the statement with Ed25519 over a domain-separated message::

    b"sigledger/statement/v1\\n" || msgpack([project, version, filename, sha256, size, key_name])

The key name is inside the message so that nobody can re-attribute a
signature to another identity with the same public key (Ed25519 itself binds
only the public key).

A **signed statement** is what a publisher submits; its canonical binary form
(``encode_signed_statement``) is the msgpack array::

    [1, project, version, filename, sha256, size, key_name, public_key, signature]

A **logged entry** (the Merkle leaf bytes, ``encode_entry``) is the same array
with one more element, the log's integration time in milliseconds since the
Unix epoch::

    [1, project, version, filename, sha256, size, key_name, public_key, signature, time_ms]

Types: ``project``, ``version``, ``filename``, ``key_name`` are msgpack str;
``sha256`` (32 bytes), ``public_key`` (32 bytes), ``signature`` (64 bytes) are
msgpack bin; ``size`` and ``time_ms`` are non-negative integers below 2**63.
The leading 1 is the format version; a v2 gets a new number.

The encoding is canonical: the shortest msgpack encoding of every length and
integer (what ``msgpack.packb(..., use_bin_type=True)`` writes). Decoders accept
exactly that: every non-canonical encoding, unknown version, wrong type,
trailing byte or oversized field raises :class:`~sigledger.ledger.errors.FormatError`,
the only exception a decoder raises.

Worked example (executed as a doctest by ``tests/test_entry.py``): a wheel of
sampleproject 4.0.0, signed by the key with seed bytes 0..31 named
``alice@example.org``, integrated at 2026-01-01T00:00:00Z::

    >>> from sigledger.ledger.entry import Entry, Statement, encode_entry, decode_entry
    >>> from sigledger.ledger.note import Signer
    >>> from sigledger.client.publish.submit import sign_statement
    >>> signer = Signer.from_seed("alice@example.org", bytes(range(32)))
    >>> st = Statement("sampleproject", "4.0.0", "sampleproject-4.0.0-py3-none-any.whl",
    ...                bytes(32), 4242)
    >>> statement_message(st, signer.name)[:23]
    b'sigledger/statement/v1\\n'
    >>> data = encode_entry(Entry(sign_statement(signer, st), 1767225600000))
    >>> for i in range(0, len(data), 32): print(data[i:i+32].hex())
    9a01ad73616d706c6570726f6a656374a5342e302e30d92473616d706c657072
    6f6a6563742d342e302e302d7079332d6e6f6e652d616e792e77686cc4200000
    000000000000000000000000000000000000000000000000000000000000cd10
    92b1616c696365406578616d706c652e6f7267c42003a107bff3ce10be1d70dd
    18e74bc09967e4d6309ba50d5f1ddc8664125531b8c4409bdecbbae9c1fd7aa7
    64589c7a0fb03e0cf7a29eaccda4ffaf1c174be0a5046854e616bff397713856
    3a46991baccc8786fd3f2999f040683f2a61884de3a103cf0000019b76daa800
    >>> decode_entry(data).signed.signer_vkey()
    'alice@example.org+2c4c362e+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4'

(``9a`` = array of 10, ``01`` = version 1, ``ad...`` = 13-byte str, ``c420`` =
32-byte bin, ``cd1092`` = uint16 4242, ``cf...`` = uint64 time.)

The signer is identified by its signed-note verifier key (``key_name`` plus
``public_key``, algorithm Ed25519 0x01); see :func:`SignedStatement.signer_vkey`.

An **observation** is the second kind of logged statement: an observer key
(same key format as a signer's) states "the index at INDEX_URL served the file
FILENAME of release PROJECT VERSION with SHA-256 DIGEST and SIZE bytes at
OBSERVED_MS". The observer hashed the bytes it downloaded itself; nobody
vouches for the file's contents, only for what was served (the first-seen
hash, as the Go checksum database records it). Its signed message::

    b"sigledger/observation/v1\\n" || msgpack([project, version, filename, sha256, size,
                                               index_url, observed_ms, key_name])

A **signed observation** (:class:`SignedObservation`, ``encode_signed``) is::

    [2, project, version, filename, sha256, size, key_name, public_key, signature,
     index_url, observed_ms]

and its logged entry appends ``time_ms`` (12 elements). The first six
elements keep the positions and types of a signed statement, so anything that
reads the project, version, filename, sha256 or size of an entry reads either
kind; the leading 2 tells them apart. ``index_url`` is the simple-API base URL
the file was served by: an ``http``/``https`` URL of at most 1024 characters
without whitespace or control characters; ``observed_ms`` is milliseconds since
the Unix epoch below 2**63. The binding rule applies per key exactly as for
signers: one observer key, one hash per file identity.

The same file observed by the key with seed bytes 0..31 named
``log.example.org/observer`` at https://pypi.org/simple/::

    >>> from sigledger.ledger.entry import decode_signed, encode_signed
    >>> from sigledger.client.publish.submit import sign_observation
    >>> observer = Signer.from_seed("log.example.org/observer", bytes(range(32)))
    >>> obs = sign_observation(observer, st, "https://pypi.org/simple/", 1767225599000)
    >>> observation_message(st, obs.index_url, obs.observed_ms, obs.key_name)[:25]
    b'sigledger/observation/v1\\n'
    >>> data = encode_entry(Entry(obs, 1767225600000))
    >>> for i in range(0, len(data), 32): print(data[i:i+32].hex())
    9c02ad73616d706c6570726f6a656374a5342e302e30d92473616d706c657072
    6f6a6563742d342e302e302d7079332d6e6f6e652d616e792e77686cc4200000
    000000000000000000000000000000000000000000000000000000000000cd10
    92b86c6f672e6578616d706c652e6f72672f6f62736572766572c42003a107bf
    f3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8c440ec69
    1bb64276f4d496d7d1ec4f07eed583862097929c1898dbecbbaedeb599bfd37c
    2f9de456ffb6f6d2eb010d90f12e4c76ab43aa553ac1681ffcc356db2e03b868
    747470733a2f2f707970692e6f72672f73696d706c652fcf0000019b76daa418
    cf0000019b76daa800
    >>> entry = decode_entry(data)
    >>> (entry.signed.kind, entry.signed.index_url, entry.signed.verify())
    ('observation', 'https://pypi.org/simple/', True)
    >>> decode_signed(encode_signed(obs)) == obs
    True

(``9c`` = array of 12, ``02`` = format 2: an observation; after the signature,
``b8 18 68747470...`` = the 24-byte index URL, ``cf...a418`` = observed_ms,
``cf...a800`` = time_ms.)

**File identity** (:func:`file_identity`). Installers treat many spellings of
a filename as one file, so the binding rule ("one signer, one hash per file")
and every comparison of files use a canonical identity computed with
``packaging``, never the raw filename (which entries keep as published):

* sdist: the PEP 503 normalized project name and the version with equal PEP
  440 versions equal (``1.0`` == ``1.0.0`` == ``v1.0`` == ``01.0``; normalized
  pre/post/dev spellings; trailing ``.0`` dropped, as
  ``packaging.utils.canonicalize_version(..., strip_trailing_zero=True)``).
  The archive format is not part of it: a release has one sdist (PEP 527).
  Written ``sdist <name> <version>``.
* wheel: name and version as above, the build tag, and the *expanded set* of
  (python, abi, platform) tags (``py2.py3-none-any`` == ``py3.py2-none-any``).
  Written ``wheel <name> <version> <build or -> <tag>,<tag>,...`` with the tags
  sorted. A different build tag is a different file (a rebuild of the same
  release file: :attr:`FileIdentity.release_file` is equal).

    >>> file_identity("Norm_Demo-1.0.0.tar.gz").key
    'sdist norm-demo 1'
    >>> file_identity("norm_demo-1.0-py3.py2-none-any.whl").key
    'wheel norm-demo 1 - py2-none-any,py3-none-any'
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from sigledger.ledger.encoding import MAX_UINT63
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import ALG_ED25519, Signer, check_key_name, key_id
from sigledger.ledger.tiles import MAX_ENTRY_SIZE  # an entry must fit an entry bundle

FORMAT_VERSION = 1
OBSERVATION_FORMAT = 2
STATEMENT_CONTEXT = b"sigledger/statement/v1\n"
OBSERVATION_CONTEXT = b"sigledger/observation/v1\n"

MAX_PROJECT_LEN = 200
MAX_VERSION_LEN = 128
MAX_FILENAME_LEN = 255
MAX_KEY_NAME_LEN = 128
MAX_INDEX_URL_LEN = 1024

# PEP 508 names (the canonical form is also lower case with single '-').
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def is_project_name(name: str) -> bool:
    """Whether ``name`` is a PEP 508 project name (any spelling) of at most 200 characters."""
    return len(name) <= MAX_PROJECT_LEN and _PROJECT_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Statement:
    """What a publisher attests about one release file."""

    project: str
    version: str
    filename: str
    sha256: bytes
    size: int

    def validate(self) -> None:
        """Raise FormatError unless every field is valid and canonical."""
        _check_statement_fields(self.project, self.version, self.filename, self.sha256, self.size)

    @classmethod
    def create(
        cls, project: str, version: str, filename: str, sha256: bytes, size: int
    ) -> Statement:
        """Build a statement, canonicalizing project name and version first."""
        try:
            ver = str(Version(version))
        except InvalidVersion as exc:
            raise FormatError(f"invalid version {version!r}: {exc}") from None
        st = cls(str(canonicalize_name(project)), ver, filename, sha256, size)
        st.validate()
        return st

    @classmethod
    def for_file(cls, filename: str, sha256: bytes, size: int) -> Statement:
        """Build the statement for a wheel or sdist, reading project and version off its name."""
        project, version = parse_release_filename(filename)
        return cls.create(project, version, filename, sha256, size)

    @property
    def identity(self) -> FileIdentity:
        """The file this statement is about, as installers see it (see the module doc)."""
        return file_identity(self.filename)


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """A statement plus the publisher's key and Ed25519 signature."""

    kind: ClassVar[str] = "signature"

    statement: Statement
    key_name: str
    public_key: bytes
    signature: bytes

    def signer_vkey(self) -> str:
        """The signer's identity as a signed-note verifier key string."""
        return signer_vkey(self.key_name, self.public_key)

    def message(self) -> bytes:
        """The exact bytes the signature is over."""
        return statement_message(self.statement, self.key_name)

    def verify(self) -> bool:
        """True iff the signature is valid for this statement and key."""
        return _verify(self.public_key, self.message(), self.signature)


@dataclass(frozen=True, slots=True)
class SignedObservation:
    """An observer's signed account of what an index served (see the module doc)."""

    kind: ClassVar[str] = "observation"

    statement: Statement
    index_url: str
    observed_ms: int
    key_name: str
    public_key: bytes
    signature: bytes

    def signer_vkey(self) -> str:
        """The observer's identity as a signed-note verifier key string."""
        return signer_vkey(self.key_name, self.public_key)

    def message(self) -> bytes:
        """The exact bytes the signature is over."""
        return observation_message(self.statement, self.index_url, self.observed_ms, self.key_name)

    def verify(self) -> bool:
        """True iff the signature is valid for this observation and key."""
        return _verify(self.public_key, self.message(), self.signature)

    @classmethod
    def sign(
        cls, signer: Signer, statement: Statement, index_url: str, observed_ms: int
    ) -> SignedObservation:
        """``signer``'s observation that ``index_url`` served ``statement``'s file at
        ``observed_ms`` (FormatError for an invalid index URL)."""
        check_index_url(index_url)
        message = observation_message(statement, index_url, observed_ms, signer.name)
        return cls(
            statement, index_url, observed_ms, signer.name, signer.public_key, signer.sign(message)
        )


# What a logged entry holds: a publisher's signature or an observer's observation.
Signed = SignedStatement | SignedObservation


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Entry:
    """A logged entry: a signed statement or observation and the time the log
    integrated it."""

    signed: Signed
    time_ms: int

    @property
    def statement(self) -> Statement:
        return self.signed.statement


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What installers consider one release file, whatever the filename's spelling."""

    kind: str  # "sdist" or "wheel"
    project: str  # PEP 503 normalized
    version: str  # canonical: equal PEP 440 versions are equal strings
    build: str = ""  # wheel build tag ("" for none)
    tags: tuple[str, ...] = ()  # wheel: the expanded, sorted tag set

    @property
    def key(self) -> str:
        """The identity as one string (stored, indexed and compared)."""
        if self.kind == "sdist":
            return f"sdist {self.project} {self.version}"
        return f"wheel {self.project} {self.version} {self.build or '-'} {','.join(self.tags)}"

    @property
    def release_file(self) -> str:
        """The identity without the build tag: equal for rebuilds of one wheel."""
        if self.kind == "sdist":
            return self.key
        return f"wheel {self.project} {self.version} {','.join(self.tags)}"

    def rebuilds(self, other: FileIdentity) -> bool:
        """This wheel is ``other`` built again: same name, version and tags, other build tag."""
        return (
            self.kind == "wheel"
            and self.release_file == other.release_file
            and self.build != other.build
        )


@functools.lru_cache(maxsize=65536)
def file_identity(filename: str) -> FileIdentity:
    """The canonical identity of a wheel or sdist filename; FormatError if neither."""
    try:
        if filename.endswith(".whl"):
            name, version, build, tags = parse_wheel_filename(filename)
            return FileIdentity(
                "wheel",
                str(name),
                canonicalize_version(version, strip_trailing_zero=True),
                "".join(str(part) for part in build),
                tuple(sorted(str(t) for t in tags)),
            )
        name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise FormatError(f"{filename!r} is not a wheel or sdist filename: {exc}") from None
    return FileIdentity("sdist", str(name), canonicalize_version(version, strip_trailing_zero=True))


def parse_release_filename(filename: str) -> tuple[str, str]:
    """Return (canonical project, normalized version) of a wheel or sdist filename."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise FormatError(f"{filename!r} is not a wheel or sdist filename: {exc}") from None
    return str(name), str(version)


def _check_statement_fields(
    project: object, version: object, filename: object, sha256: object, size: object
) -> None:
    if not isinstance(project, str) or not 0 < len(project) <= MAX_PROJECT_LEN:
        raise FormatError("project must be a non-empty string of at most 200 characters")
    if not is_project_name(project) or canonicalize_name(project) != project:
        raise FormatError(
            f"project {project!r} is not a PEP 503 canonical name "
            f"(expected {canonicalize_name(project)!r})"
        )
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_LEN:
        raise FormatError("version must be a non-empty string of at most 128 characters")
    try:
        normalized = str(Version(version))
    except InvalidVersion:
        raise FormatError(f"version {version!r} is not a valid PEP 440 version") from None
    if normalized != version:
        raise FormatError(f"version {version!r} is not normalized (expected {normalized!r})")
    if not isinstance(filename, str) or not 0 < len(filename) <= MAX_FILENAME_LEN:
        raise FormatError("filename must be a non-empty string of at most 255 characters")
    if any(c in filename for c in "/\\\x00") or filename.strip() != filename:
        raise FormatError(f"filename {filename!r} must be a bare file name")
    fproject, fversion = parse_release_filename(filename)
    if fproject != project or fversion != version:
        raise FormatError(
            f"filename {filename!r} is a release of {fproject} {fversion}, "
            f"not of {project} {version}"
        )
    if not isinstance(sha256, bytes) or len(sha256) != 32:
        raise FormatError("sha256 must be 32 bytes")
    if type(size) is not int or not 0 <= size <= MAX_UINT63:
        raise FormatError("size must be an integer in [0, 2**63)")


def statement_message(st: Statement, key_name: str) -> bytes:
    """The exact bytes the publisher key named ``key_name`` signs for ``st``."""
    return STATEMENT_CONTEXT + _pack(
        [st.project, st.version, st.filename, st.sha256, st.size, key_name]
    )


def observation_message(st: Statement, index_url: str, observed_ms: int, key_name: str) -> bytes:
    """The exact bytes the observer key named ``key_name`` signs for ``st`` served by
    ``index_url`` at ``observed_ms``."""
    return OBSERVATION_CONTEXT + _pack(
        [st.project, st.version, st.filename, st.sha256, st.size, index_url, observed_ms, key_name]
    )


def check_index_url(url: object) -> str:
    """``url`` if it is a valid observation index URL (see the module doc), else FormatError."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_INDEX_URL_LEN:
        raise FormatError(
            f"index URL must be a non-empty string of at most {MAX_INDEX_URL_LEN} characters"
        )
    if not url.startswith(("http://", "https://")) or url.partition("://")[2][:1] in ("", "/"):
        raise FormatError(f"index URL {url[:100]!r} must be an http:// or https:// URL")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise FormatError(f"index URL {url[:100]!r} must not contain whitespace or control codes")
    return url


def _pack(obj: list[Any]) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def _signed_fields(s: Signed) -> list[Any]:
    st = s.statement
    fields = [
        FORMAT_VERSION if isinstance(s, SignedStatement) else OBSERVATION_FORMAT,
        st.project,
        st.version,
        st.filename,
        st.sha256,
        st.size,
        s.key_name,
        s.public_key,
        s.signature,
    ]
    if isinstance(s, SignedObservation):
        fields += [s.index_url, s.observed_ms]
    return fields


def encode_signed_statement(s: SignedStatement) -> bytes:
    """Canonical msgpack of a signed statement (the submission form)."""
    return _pack(_signed_fields(s))


def encode_signed(s: Signed) -> bytes:
    """Canonical msgpack of a signed statement or observation (the submission form)."""
    return _pack(_signed_fields(s))


def encode_entry(e: Entry) -> bytes:
    """Canonical msgpack of a logged entry (the Merkle leaf bytes)."""
    data = _pack([*_signed_fields(e.signed), e.time_ms])
    if len(data) > MAX_ENTRY_SIZE:
        raise FormatError("entry larger than 65535 bytes")
    return data


def _unpack_canonical(data: bytes, what: str) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"{what} must be bytes")
    data = bytes(data)
    if len(data) > MAX_ENTRY_SIZE:
        raise FormatError(f"{what} larger than {MAX_ENTRY_SIZE} bytes")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_ENTRY_SIZE,
            max_bin_len=MAX_ENTRY_SIZE,
            max_array_len=16,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types; all mean "malformed"
        raise FormatError(f"{what} is not valid msgpack: {exc.__class__.__name__}") from None
    if not isinstance(obj, list):
        raise FormatError(f"{what} must be a msgpack array")
    # Canonical iff re-encoding reproduces the input exactly (shortest forms,
    # str vs bin types, no trailing bytes: unpackb already rejects those).
    try:
        again = _pack(obj)
    except Exception:
        raise FormatError(f"{what} holds values that cannot be re-encoded") from None
    if again != data:
        raise FormatError(f"{what} is not canonically encoded")
    return obj


# Fields of each format: the signed form, and its entry (one more: time_ms).
_FIELDS = {FORMAT_VERSION: 9, OBSERVATION_FORMAT: 11}


def _format_of(fields: list[Any], what: str, extra: int) -> int:
    """The format number of ``fields`` after checking their count (``extra``: 1 for
    an entry's time_ms, 0 for a signed form)."""
    version = fields[0] if fields else None
    if type(version) is not int or version not in _FIELDS:
        raise FormatError(f"{what} has unknown format version {version!r}")
    want = _FIELDS[version] + extra
    if len(fields) != want:
        raise FormatError(
            f"{what} of format version {version} must have {want} fields, not {len(fields)}"
        )
    return version


def _signed_from_fields(fields: list[Any], what: str) -> Signed:
    version = fields[0]
    _v, project, ver, filename, sha256, size, key_name, public_key, signature = fields[:9]
    _check_statement_fields(project, ver, filename, sha256, size)
    if not isinstance(key_name, str) or not 0 < len(key_name) <= MAX_KEY_NAME_LEN:
        raise FormatError("key name must be a non-empty string of at most 128 characters")
    check_key_name(key_name)
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise FormatError("public key must be 32 bytes")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise FormatError("signature must be 64 bytes")
    st = Statement(project, ver, filename, sha256, size)
    if version == FORMAT_VERSION:
        return SignedStatement(st, key_name, public_key, signature)
    index_url, observed_ms = fields[9:11]
    check_index_url(index_url)
    if type(observed_ms) is not int or not 0 <= observed_ms <= MAX_UINT63:
        raise FormatError("observation time must be an integer in [0, 2**63)")
    return SignedObservation(st, index_url, observed_ms, key_name, public_key, signature)


def decode_signed(data: bytes) -> Signed:
    """Strictly decode :func:`encode_signed` output, either kind (signature not checked)."""
    fields = _unpack_canonical(data, "signed statement")
    _format_of(fields, "signed statement", 0)
    return _signed_from_fields(fields, "signed statement")


def decode_signed_statement(data: bytes) -> SignedStatement:
    """Strictly decode :func:`encode_signed_statement` output (signature not checked);
    an observation is refused (see :func:`decode_signed`)."""
    signed = decode_signed(data)
    if not isinstance(signed, SignedStatement):
        raise FormatError("signed statement is an observation, not a publisher's signature")
    return signed


def decode_entry(data: bytes) -> Entry:
    """Strictly decode a logged entry of either kind (signature not checked; see
    ``entry.signed.verify()``)."""
    fields = _unpack_canonical(data, "entry")
    version = _format_of(fields, "entry", 1)
    signed = _signed_from_fields(fields, "entry")
    time_ms = fields[_FIELDS[version]]
    if type(time_ms) is not int or not 0 <= time_ms <= MAX_UINT63:
        raise FormatError("entry time must be an integer in [0, 2**63)")
    return Entry(signed, time_ms)


@functools.lru_cache(maxsize=4096)
def signer_vkey(key_name: str, public_key: bytes) -> str:
    """Verifier key string (``name+hex8+base64(0x01||key)``) of a publisher key."""
    kid = key_id(key_name, ALG_ED25519, public_key)
    return f"{key_name}+{kid:08x}+{base64.b64encode(bytes([ALG_ED25519]) + public_key).decode()}"
