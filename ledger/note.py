r"""Signed notes (c2sp.org/signed-note@v1.0.0) and Ed25519 cosignatures
(c2sp.org/tlog-cosignature@v1.0.1, signature type 0x04, "cosignature/v1").

Byte format of a signed note (c2sp.org/signed-note@v1.0.0, "Format")::

    <text: one or more lines, each ending in "\n">
    "\n"                                        (one empty line)
    "— " <key name> " " <base64 signature> "\n" (one or more signature lines)

* The whole note is UTF-8 with no ASCII control character (below U+0020) other
  than "\n"; in particular no "\r" and no "\t".
* The text is everything up to and including the "\n" before the *last*
  "\n\n"; the text may itself contain empty lines. Signatures cover the text
  bytes (with their final newline, without the separating empty line).
* "—" is U+2014 EM DASH (bytes E2 80 94). The base64 is the RFC 4648 §4
  standard alphabet with "=" padding; we accept only its canonical form.
* A decoded signature is ``u32be(key ID) || algorithm signature``: 4 + 64
  bytes for Ed25519 (type 0x01), 4 + 8 + 64 for cosignature/v1 (type 0x04).
* ``key ID = SHA-256(key name || 0x0A || type byte || public key)[:4]``,
  read big-endian (signed-note@v1.0.0, "Signatures").
* Key names are non-empty and contain no Unicode space and no "+".

Verifier keys (vkeys) are ``<name>+<8 lowercase hex key ID>+<base64(type ||
32-byte public key)>``. Signer keys (skeys) follow the golang.org/x/mod
convention ``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>``,
where the key ID is that of the public key.

A cosignature/v1 signs ``"cosignature/v1\ntime <T>\n" || checkpoint text`` with
Ed25519 and its signature field (after the key ID) is ``u64be(T) || 64-byte
signature`` (c2sp.org/tlog-cosignature@v1.0.1, "Ed25519 cosignatures").

Worked example, the note in the documentation of golang.org/x/mod/sumdb/note
(the output is byte for byte what Go's ``note.Sign`` prints):

>>> signer = Signer.from_skey(
...     "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
... )
>>> signer.vkey
'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'
>>> text = (
...     "If you think cryptography is the answer to your problem,\n"
...     "then you don't know what your problem is.\n"
... )
>>> signed = sign_note(text, [signer])
>>> print(signed.decode(), end="")
If you think cryptography is the answer to your problem,
then you don't know what your problem is.
<BLANKLINE>
— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=
>>> verifier = Verifier.from_vkey(
...     "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
... )
>>> note, verified = open_note(signed, [verifier])
>>> note.text == text, [(s.name, f"{s.key_id:08x}", len(s.signature)) for s in verified]
(True, [('PeterNeumann', 'c74f20a3', 64)])
"""  # noqa: E501 (the signature line above is 107 characters)

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from sigledger.ledger.encoding import MAX_UINT63, b64decode, b64encode, lines_problem, text_problem
from sigledger.ledger.errors import FormatError, VerificationError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "check_key_name",
    "cosignature_message",
    "cosignature_timestamp",
    "format_note",
    "key_id",
    "open_note",
    "parse_note",
    "sign_cosignature",
    "sign_note",
    "verify_cosignature",
]

# Signature type bytes, c2sp.org/signed-note@v1.0.0 "Signature types".
ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04

# c2sp.org/signed-note@v1.0.0: verifiers MUST accept at least 16 signatures and
# SHOULD cap the number; golang.org/x/mod/sumdb/note rejects more than 100.
MAX_SIGNATURES = 100

_KEY_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)
_ALG_NAMES = {ALG_ED25519: "Ed25519", ALG_COSIGNATURE_V1: "Ed25519 cosignature/v1"}
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_COSIGNATURE_SIZE = _TIMESTAMP_SIZE + _ED25519_SIG_SIZE
# c2sp.org/tlog-cosignature@v1.0.1: timestamps are at most 2^63 - 1.
_MAX_TIMESTAMP = MAX_UINT63

_SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE
_SKEY_PREFIX = "PRIVATE+KEY+"
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
# Unicode White_Space, which Go's unicode.IsSpace tests; str.isspace() covers
# all of these too, and a few more (U+001C..U+001F) that are controls anyway.
_GO_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


# ---------------------------------------------------------------------------
# Names, key IDs and base64


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid key name, or None if it is valid."""
    if not name:
        return "key name is empty"
    for ch in name:
        if ch == "+":
            return f"key name {name!r} contains '+'"
        if ch.isspace() or ch in _GO_SPACES:
            return f"key name {name!r} contains white space {ch!r}"
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"key name {name!r} contains control character {ch!r}"
        if category == "Cs":
            return f"key name {name!r} is not valid Unicode (lone surrogate {ch!r})"
    return None


def check_key_name(name: str) -> None:
    """Raise FormatError unless ``name`` is a valid key name.

    c2sp.org/signed-note@v1.0.0, "Format": key names are non-empty and contain
    no Unicode spaces and no "+". We also refuse control characters (a note
    cannot carry them anyway) and strings that are not encodable as UTF-8.
    """
    problem = _name_problem(name)
    if problem is not None:
        raise FormatError(problem)


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || alg || public_key)[:4]`` as a big-endian integer.

    c2sp.org/signed-note@v1.0.0, "Signatures" (the recommended key ID). The same
    Ed25519 key has different IDs as a note signer (0x01) and as a cosigner (0x04).
    """
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([alg]) + bytes(public_key)
    ).digest()
    return int.from_bytes(digest[:4], "big")


def _check_alg(alg: int) -> None:
    if alg not in _KEY_ALGS:
        raise FormatError(
            f"unsupported signature type 0x{alg:02x} (want 0x01 Ed25519 or 0x04 cosignature/v1)"
        )


def _check_text(text: str, what: str) -> None:
    """Raise ValueError unless ``text`` can be the text of a signed note."""
    problem = lines_problem(text)
    if problem is not None:
        raise ValueError(f"{what} {problem}")


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp!r} is not in [0, 2^63-1]")


# ---------------------------------------------------------------------------
# Keys


class _Key:
    """What signers and verifiers share: the key's name, type, public key and ID."""

    __slots__ = ("_alg", "_key_id", "_name", "_public_key")
    _name: str
    _alg: int
    _public_key: bytes
    _key_id: int

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def alg(self) -> int:
        return self._alg

    @property
    def public_key(self) -> bytes:
        return self._public_key


class Verifier(_Key):
    """An Ed25519 public key that checks note signatures (type 0x01) or
    cosignature/v1 cosignatures (type 0x04) under a key name.

    Build one with :meth:`from_vkey`, :meth:`Signer.verifier`, or directly from
    a name and a 32-byte public key.
    """

    __slots__ = ("_key",)

    def __init__(self, name: str, public_key: bytes, alg: int = ALG_ED25519) -> None:
        check_key_name(name)
        _check_alg(alg)
        public_key = bytes(public_key)
        if len(public_key) != _ED25519_KEY_SIZE:
            raise FormatError(f"Ed25519 public key is {len(public_key)} bytes, want 32")
        self._name = name
        self._alg = alg
        self._public_key = public_key
        self._key_id = key_id(name, alg, public_key)
        self._key = nacl.signing.VerifyKey(public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex8 key ID>+<base64(type || public key)>``.

        Follows Go's ``note.NewVerifier`` (split on the first two "+" only, the
        key ID is recomputed and must match), but stricter: the key ID must be
        8 lowercase hex digits and the base64 canonical. Only types 0x01 and
        0x04 with 32-byte keys are accepted. Raises FormatError.
        """
        name, sep1, rest = vkey.partition("+")
        hex_id, sep2, key_b64 = rest.partition("+")
        if not sep1 or not sep2:
            raise FormatError("verifier key is not of the form <name>+<key ID>+<key>")
        check_key_name(name)
        if _HEX_KEY_ID.fullmatch(hex_id) is None:
            raise FormatError(f"verifier key ID {hex_id!r} is not 8 lowercase hex digits")
        raw = b64decode(key_b64, "verifier key")
        if not raw:
            raise FormatError("verifier key is empty")
        # Like Go, check the key ID before looking at the type and length.
        if key_id(name, raw[0], raw[1:]) != int(hex_id, 16):
            raise FormatError(f"verifier key ID {hex_id} does not match the key")
        _check_alg(raw[0])
        return cls(name, raw[1:], raw[0])

    @property
    def vkey(self) -> str:
        """The ``<name>+<hex8>+<base64(type || public key)>`` encoding."""
        encoded = b64encode(bytes([self._alg]) + self._public_key)
        return f"{self._name}+{self._key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check a raw 64-byte Ed25519 signature over ``message``.

        For a cosigner key the caller builds the cosignature/v1 message; see
        :func:`verify_cosignature`. Returns False for any malformed signature.
        """
        signature = bytes(signature)
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(bytes(message), signature)
        except nacl.exceptions.CryptoError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self._name, self._alg, self._public_key) == (
            other._name,
            other._alg,
            other._public_key,
        )

    def __hash__(self) -> int:
        return hash((self._name, self._alg, self._public_key))

    def __repr__(self) -> str:
        return f"Verifier.from_vkey({self.vkey!r})"


class Signer(_Key):
    """An Ed25519 private key that signs notes (type 0x01) or cosignatures
    (type 0x04) under a key name. Its seed is secret; ``repr`` omits it."""

    __slots__ = ("_key", "_seed")

    def __init__(self, name: str, seed: bytes, alg: int = ALG_ED25519) -> None:
        check_key_name(name)
        _check_alg(alg)
        seed = bytes(seed)
        if len(seed) != 32:
            raise FormatError(f"Ed25519 seed is {len(seed)} bytes, want 32")
        self._name = name
        self._alg = alg
        self._seed = seed
        self._key = nacl.signing.SigningKey(seed)
        self._public_key = bytes(self._key.verify_key)
        self._key_id = key_id(name, alg, self._public_key)

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        """A new random key (libsodium's CSPRNG)."""
        return cls(name, bytes(nacl.signing.SigningKey.generate()), alg)

    @classmethod
    def from_seed(cls, name: str, seed: bytes, alg: int = ALG_ED25519) -> Signer:
        """The key with the given 32-byte RFC 8032 seed."""
        return cls(name, seed, alg)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex8 key ID>+<base64(type || seed)>``.

        The golang.org/x/mod ``note.NewSigner`` format; type 0x04 (cosigner) is
        accepted as transparency-dev/formats does. The key ID is recomputed
        from the derived public key and must match. Raises FormatError, whose
        message never contains key material.
        """
        if not skey.startswith(_SKEY_PREFIX):
            raise FormatError("signer key does not start with PRIVATE+KEY+")
        name, sep1, rest = skey[len(_SKEY_PREFIX) :].partition("+")
        hex_id, sep2, key_b64 = rest.partition("+")
        if not sep1 or not sep2:
            raise FormatError("signer key is not of the form PRIVATE+KEY+<name>+<key ID>+<key>")
        check_key_name(name)
        if _HEX_KEY_ID.fullmatch(hex_id) is None:
            raise FormatError("signer key ID is not 8 lowercase hex digits")
        raw = b64decode(key_b64, "signer key")
        if len(raw) != 33:
            raise FormatError("signer key is not a type byte and a 32-byte seed")
        _check_alg(raw[0])
        signer = cls(name, raw[1:], raw[0])
        if signer.key_id != int(hex_id, 16):
            raise FormatError(f"signer key ID {hex_id} does not match the key")
        return signer

    @property
    def skey(self) -> str:
        """The secret ``PRIVATE+KEY+...`` encoding. Never publish it."""
        encoded = b64encode(bytes([self._alg]) + self._seed)
        return f"{_SKEY_PREFIX}{self._name}+{self._key_id:08x}+{encoded}"

    @property
    def vkey(self) -> str:
        return self.verifier().vkey

    def verifier(self) -> Verifier:
        return Verifier(self._name, self._public_key, self._alg)

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message`` (deterministic)."""
        return bytes(self._key.sign(bytes(message)).signature)

    def derive(self, name: str, label: bytes) -> Signer:
        """Another Ed25519 key named ``name``: its seed is HMAC-SHA256(this seed,
        ``label``), so every holder of this key derives the same one, and nobody
        else can."""
        return Signer(name, hmac.new(self._seed, bytes(label), hashlib.sha256).digest())

    def __repr__(self) -> str:
        return f"<Signer {self._name}+{self._key_id:08x} ({_ALG_NAMES[self._alg]})>"


# ---------------------------------------------------------------------------
# Notes


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line. ``signature`` is what follows the 4-byte key ID:
    64 bytes for Ed25519, 72 (timestamp and signature) for cosignature/v1."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """``"— <name> <base64(u32be(key_id) || signature)>\\n"``."""
        problem = _name_problem(self.name)
        if problem is not None:
            raise ValueError(problem)
        if not 0 <= self.key_id <= 0xFFFFFFFF:
            raise ValueError(f"key ID {self.key_id} does not fit in 32 bits")
        if not self.signature:
            raise ValueError("signature is empty")
        encoded = b64encode(self.key_id.to_bytes(4, "big") + bytes(self.signature))
        return f"{_SIG_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note text (ending in "\\n") and its signatures, in note order."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise FormatError(f"signature line does not start with an em dash and a space: {line!r}")
    # Like Go, the name ends at the first space; the rest must be base64.
    name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
    check_key_name(name)
    raw = b64decode(sig_b64, f"signature by {name!r}")
    if len(raw) < 5:
        raise FormatError(f"signature by {name!r} is shorter than a key ID and one byte")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note without checking any signature.

    c2sp.org/signed-note@v1.0.0 "Format" plus Go's ``note.Open`` rules: valid
    UTF-8, no control character but "\\n", a text and an empty line and one
    or more well-formed signature lines, at most MAX_SIGNATURES of them
    (counted before duplicates are dropped, as Go does). Exactly repeated
    signature lines are kept once. Raises FormatError.
    """
    if isinstance(data, str):
        msg = data
    else:
        try:
            msg = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"note is not valid UTF-8 at byte {exc.start}") from exc
    problem = text_problem(msg)
    if problem is not None:
        raise FormatError(f"note {problem}")
    split = msg.rfind("\n\n")
    if split < 0:
        raise FormatError("note has no empty line before its signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise FormatError("note has no signatures")
    if not block.endswith("\n"):
        raise FormatError("last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    seen: set[str] = set()
    signatures: list[NoteSignature] = []
    for line in lines:
        sig = _parse_signature_line(line)
        if line in seen:
            continue
        seen.add(line)
        signatures.append(sig)
    return Note(text, tuple(signatures))


def format_note(note: Note) -> bytes:
    """Encode ``note``: text, an empty line, then each signature line.

    Raises ValueError if the result would not be a note that
    :func:`parse_note` accepts back unchanged.
    """
    _check_text(note.text, "note text")
    if not note.signatures:
        raise ValueError("a signed note needs at least one signature")
    if len(note.signatures) > MAX_SIGNATURES:
        raise ValueError(f"a note carries at most {MAX_SIGNATURES} signatures")
    lines = "".join(sig.line() for sig in note.signatures)
    return (note.text + "\n" + lines).encode("utf-8")


def sign_note(
    text: str, signers: Sequence[Signer], existing: Sequence[NoteSignature] = ()
) -> bytes:
    """Sign ``text`` with each Ed25519 (type 0x01) signer and encode the note.

    Same output as Go's ``note.Sign``: the ``existing`` signatures come first,
    except those with the same (name, key ID) as one of ``signers``, then one
    new line per signer. Cosignatures need a timestamp: make them with
    :func:`sign_cosignature` and pass them in ``existing``. Raises ValueError.
    """
    _check_text(text, "note text")
    message = text.encode("utf-8")
    replaced: set[tuple[str, int]] = set()
    new: list[NoteSignature] = []
    for signer in signers:
        if signer.alg != ALG_ED25519:
            raise ValueError(
                f"{signer!r} is a cosigner key; use sign_cosignature() and pass its result "
                "as an existing signature"
            )
        replaced.add((signer.name, signer.key_id))
        new.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)))
    kept = [sig for sig in existing if (sig.name, sig.key_id) not in replaced]
    return format_note(Note(text, (*kept, *new)))


def _signature_verifies(verifier: Verifier, text: str, sig: NoteSignature) -> bool:
    if verifier.alg == ALG_COSIGNATURE_V1:
        return verify_cosignature(verifier, text, sig) is not None
    return verifier.verify(text.encode("utf-8"), sig.signature)


def open_note(data: bytes | str, verifiers: Sequence[Verifier]) -> tuple[Note, list[NoteSignature]]:
    """Parse a signed note and check it against trusted keys.

    c2sp.org/signed-note@v1.0.0, "Signatures": a signature is matched to a key
    by (name, key ID); signatures of unknown keys are ignored (even if name
    or ID alone matches); every signature of a known key must verify; at least
    one must. Type 0x01 keys check the text itself, type 0x04 keys check a
    cosignature/v1 over it. Two verifiers with the same (name, key ID) are
    "ambiguous" when a signature uses them (as in Go's ``VerifierList``).

    Returns the note (all signatures) and the verified signatures. Raises
    FormatError for a malformed note and VerificationError otherwise.
    Stricter than Go in one respect: Go checks only the first of several
    different signatures by one known key; we check them all.
    """
    note = parse_note(data)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)
    verified: list[NoteSignature] = []
    for sig in note.signatures:
        candidates = known.get((sig.name, sig.key_id))
        if not candidates:
            continue
        label = f"{sig.name}+{sig.key_id:08x}"
        if len(candidates) > 1:
            raise VerificationError(f"ambiguous key {label}: it is configured more than once")
        if not _signature_verifies(candidates[0], note.text, sig):
            raise VerificationError(f"invalid signature for key {label}")
        verified.append(sig)
    if not verified:
        if verifiers:
            expected = ", ".join(f"{v.name}+{v.key_id:08x}" for v in verifiers)
            raise VerificationError(f"note has no valid signature by a trusted key ({expected})")
        raise VerificationError("note has no valid signature by a trusted key (none configured)")
    return note, verified


# ---------------------------------------------------------------------------
# cosignature/v1 (c2sp.org/tlog-cosignature@v1.0.1, type 0x04)


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """``b"cosignature/v1\\ntime <T>\\n" + checkpoint_text``, the signed bytes.

    The whole note text is covered, extension lines included
    (c2sp.org/tlog-cosignature@v1.0.1). Raises ValueError for a timestamp
    outside [0, 2^63-1] or a text that does not end with a newline.
    """
    _check_timestamp(timestamp)
    _check_text(checkpoint_text, "checkpoint text")
    return b"cosignature/v1\ntime %d\n" % timestamp + checkpoint_text.encode("utf-8")


def sign_cosignature(signer: Signer, checkpoint_text: str, timestamp: int) -> NoteSignature:
    """Cosign a checkpoint text at ``timestamp`` (POSIX seconds) with a type 0x04 key.

    The signature field is ``u64be(timestamp) || Ed25519(message)``.
    """
    if signer.alg != ALG_COSIGNATURE_V1:
        raise ValueError(f"{signer!r} is not a cosigner (type 0x04) key")
    message = cosignature_message(checkpoint_text, timestamp)
    return NoteSignature(
        signer.name, signer.key_id, timestamp.to_bytes(8, "big") + signer.sign(message)
    )


def verify_cosignature(verifier: Verifier, checkpoint_text: str, sig: NoteSignature) -> int | None:
    """The timestamp of a valid cosignature by ``verifier``, else None.

    The name and key ID must be the verifier's, the signature field 72 bytes
    and the timestamp at most 2^63-1. Bad signature bytes never raise.
    Raises ValueError if ``verifier`` is not a type 0x04 key.
    """
    if verifier.alg != ALG_COSIGNATURE_V1:
        raise ValueError(f"{verifier!r} is not a cosigner (type 0x04) key")
    if sig.name != verifier.name or sig.key_id != verifier.key_id:
        return None
    raw = bytes(sig.signature)
    if len(raw) != _COSIGNATURE_SIZE:
        return None
    timestamp = int.from_bytes(raw[:_TIMESTAMP_SIZE], "big")
    if timestamp > _MAX_TIMESTAMP:
        return None
    message = cosignature_message(checkpoint_text, timestamp)
    if not verifier.verify(message, raw[_TIMESTAMP_SIZE:]):
        return None
    return timestamp


def cosignature_timestamp(sig: NoteSignature) -> int:
    """The (unverified) timestamp of a cosignature/v1 signature.

    Raises FormatError unless the signature field is 72 bytes with a
    timestamp of at most 2^63-1.
    """
    raw = bytes(sig.signature)
    if len(raw) != _COSIGNATURE_SIZE:
        raise FormatError(
            f"signature by {sig.name!r} is {len(raw)} bytes, not a 72-byte cosignature/v1"
        )
    timestamp = int.from_bytes(raw[:_TIMESTAMP_SIZE], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise FormatError(f"cosignature timestamp {timestamp} is larger than 2^63-1")
    return timestamp
