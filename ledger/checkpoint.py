r"""Checkpoints: signed tree heads of a transparency log (c2sp.org/tlog-checkpoint@v1.0.0).

A checkpoint is the text of a signed note (c2sp.org/signed-note@v1.0.0, see
:mod:`sigledger.ledger.note`) made of at least three non-empty lines, each ending in
"\n"::

    <origin>\n          unique log identity, e.g. "example.com/log42"
    <tree size>\n       ASCII decimal, no sign, no leading zeros ("0" when empty)
    <root hash>\n       base64 (standard, padded) of the 32-byte RFC 6962 root
    [<extension>\n]*    optional, opaque, non-empty; NOT RECOMMENDED

followed by the empty line and signature lines of the note. The log signs with
Ed25519 (type 0x01) under a key whose name SHOULD be the origin; clients MUST
ignore signatures by unknown keys, so witness cosignatures can be appended.

We parse strictly: the size is canonical and at most 2^63-1, the root is
canonical base64 of exactly 32 bytes, and no line is empty.

Worked example: the body of Go's tree note for N = 123456789012 (from the
golang.org/x/mod/sumdb/tlog tests), then a checkpoint with the same root signed
by a test key whose seed is 32 zero bytes:

>>> import hashlib
>>> from sigledger.ledger.note import Signer
>>> root = hashlib.sha256(b"\x00hello world").digest()
>>> body = format_checkpoint(Checkpoint("go.sum database tree", 123456789012, root))
>>> print(body, end="")
go.sum database tree
123456789012
TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=
>>> signer = Signer.from_seed("example.com/log", bytes(32))
>>> signed = sign_checkpoint(Checkpoint("example.com/log", 10, root), signer)
>>> print(signed.decode(), end="")
example.com/log
10
TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=
<BLANKLINE>
— example.com/log Hd5FMZd+ZrcNmqTuoFfdwS/9zfcAbWWDiYtV/6uU5tBU3Urjl5/8FudR3JsT+W4Lj9YM0fPXlEe6fPXGO2dPx9TLxwA=
>>> cp, note = open_checkpoint(signed, signer.verifier(), origin="example.com/log")
>>> cp.size, cp.root == root, len(note.signatures)
(10, True, 1)
"""  # noqa: E501 (the signature line above is 111 characters)

from __future__ import annotations

from dataclasses import dataclass

from sigledger.ledger.encoding import (
    MAX_UINT63,
    b64decode,
    b64encode,
    lines_problem,
    parse_decimal,
    text_problem,
)
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.merkle import HASH_SIZE
from sigledger.ledger.note import ALG_ED25519, Note, Signer, Verifier, open_note, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "format_checkpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

# Tree sizes are uint64 on the wire; like every implementation we talk to, we
# accept only [0, 2^63-1] (see sigledger.ledger.encoding).
MAX_TREE_SIZE = MAX_UINT63


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed content of a checkpoint note (c2sp.org/tlog-checkpoint@v1.0.0)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def _line_problem(line: str) -> str | None:
    if not line:
        return "is empty"
    if "\n" in line:
        return "contains a newline"
    return text_problem(line)


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint body ``"<origin>\\n<size>\\n<base64 root>\\n[<ext>\\n]*"``.

    Raises ValueError for values that :func:`parse_checkpoint` would refuse.
    """
    problem = _line_problem(cp.origin)
    if problem is not None:
        raise ValueError(f"checkpoint origin {problem}")
    if isinstance(cp.size, bool) or not 0 <= cp.size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size {cp.size!r} is not in [0, 2^63-1]")
    if len(cp.root) != HASH_SIZE:
        raise ValueError(f"root hash is {len(cp.root)} bytes, want 32")
    for ext in cp.extensions:
        problem = _line_problem(ext)
        if problem is not None:
            raise ValueError(f"checkpoint extension line {ext!r} {problem}")
    root = b64encode(bytes(cp.root))
    extensions = "".join(f"{ext}\n" for ext in cp.extensions)
    return f"{cp.origin}\n{cp.size:d}\n{root}\n{extensions}"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, signatures removed).

    c2sp.org/tlog-checkpoint@v1.0.0, "Note text": origin, size and root hash
    lines, then optional extension lines. Raises FormatError unless the text
    ends with a newline, has at least three lines, none of them empty, a
    canonical decimal size in [0, 2^63-1] and a canonical base64 root hash of
    exactly 32 bytes.
    """
    problem = lines_problem(text)
    if problem is not None:
        raise FormatError(f"checkpoint {problem}")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise FormatError("checkpoint has fewer than three lines (origin, size, root hash)")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise FormatError("checkpoint origin is empty")
    size = parse_decimal(size_text, "checkpoint tree size")
    root = b64decode(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise FormatError(f"checkpoint root hash is {len(root)} bytes, want 32")
    for ext in extensions:
        if not ext:
            raise FormatError("checkpoint has an empty extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """The signed note of ``cp`` with one Ed25519 (type 0x01) log signature.

    The key name SHOULD equal the origin (c2sp.org/tlog-checkpoint@v1.0.0);
    that is the caller's choice, not enforced here. Raises ValueError.
    """
    if signer.alg != ALG_ED25519:
        raise ValueError(f"{signer!r} is not an Ed25519 note (type 0x01) key")
    return sign_note(format_checkpoint(cp), [signer])


def open_checkpoint(
    data: bytes | str, log_verifier: Verifier, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify the log's signature on a checkpoint note and parse it.

    Other signatures (witness cosignatures, rotated keys) are ignored here; the
    returned note keeps them for a later cosignature check. The key name need
    not be the origin (sum.golang.org signs "go.sum database tree"). If
    ``origin`` is given the checkpoint must be for that log. Raises FormatError
    for a malformed note or checkpoint, VerificationError otherwise.
    """
    if log_verifier.alg != ALG_ED25519:
        raise ValueError(f"{log_verifier!r} is not an Ed25519 note (type 0x01) key")
    note, _ = open_note(data, [log_verifier])
    cp = parse_checkpoint(note.text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    return cp, note
