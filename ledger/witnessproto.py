r"""The c2sp.org/tlog-witness wire format, both directions (pure: no I/O).

``POST <prefix>/add-checkpoint`` request body (c2sp.org/tlog-witness@v1.0.0 and
HEAD, "add-checkpoint"); every line ends in "\n"::

    old <old size>\n            canonical decimal ("0" allowed, no leading zeros)
    <base64 hash>\n             0..63 consistency-proof hashes, RFC 6962 order
    \n                          one empty line
    <signed checkpoint note>    text, empty line, signature lines

Responses a client parses:

* 200: one or more note signature lines ``— <name> <base64>\n``, the witness's
  cosignatures, to be appended to the checkpoint note;
* 409: the witness's current size for the origin, ``<decimal>\n``, with
  ``Content-Type: text/x.tlog.size``.

Parsing is strict in the way the rest of sigledger is: canonical decimals
(at most 2^63-1), canonical standard base64 with padding, exactly 32-byte
hashes, ASCII header lines, at most :data:`MAX_PROOF_LINES` proof lines. Every
parser raises :class:`~sigledger.ledger.errors.FormatError` and nothing else, whatever
the input. The checkpoint note itself is returned as bytes; the caller parses
and verifies it with :mod:`sigledger.ledger.note` and :mod:`sigledger.ledger.checkpoint`.

Example (the spec's request shape, with a placeholder note):

>>> req = AddCheckpointRequest(2, (bytes(32),), b"example.com/log\n3\n...\n")
>>> body = format_add_checkpoint(req)
>>> print(body.decode(), end="")
old 2
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
<BLANKLINE>
example.com/log
3
...
>>> parse_add_checkpoint(body) == req
True
>>> parse_size_body(b"42\n", "text/x.tlog.size")
42
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sigledger.ledger.encoding import MAX_UINT63, b64decode, lines_problem, parse_decimal
from sigledger.ledger.errors import FormatError
from sigledger.ledger.merkle import HASH_SIZE
from sigledger.ledger.note import MAX_SIGNATURES, NoteSignature, check_key_name

__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpointRequest",
    "format_add_checkpoint",
    "format_size_body",
    "parse_add_checkpoint",
    "parse_cosignature_lines",
    "parse_size_body",
]

# c2sp.org/tlog-witness: a request carries at most 63 consistency-proof lines.
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"

_HASH_B64_LEN = 44  # base64 of 32 bytes, with one "=" of padding
_SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE


@dataclass(frozen=True, slots=True)
class AddCheckpointRequest:
    """An add-checkpoint request: the size the client believes the witness has
    cosigned, a consistency proof from that size, and the signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes


def _check_size(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT63:
        raise ValueError(f"{what} {value!r} is not in [0, 2^63-1]")


# ---------------------------------------------------------------------------
# add-checkpoint request


def format_add_checkpoint(req: AddCheckpointRequest) -> bytes:
    """Encode an add-checkpoint request body.

    Raises ValueError for a request :func:`parse_add_checkpoint` would refuse:
    a size outside [0, 2^63-1], more than 63 proof hashes, a hash that is not
    32 bytes, or an empty checkpoint.
    """
    _check_size(req.old_size, "old size")
    if len(req.proof) > MAX_PROOF_LINES:
        raise ValueError(f"a request carries at most {MAX_PROOF_LINES} proof hashes")
    for i, h in enumerate(req.proof):
        if len(h) != HASH_SIZE:
            raise ValueError(f"proof hash {i} is {len(h)} bytes, want 32")
    if not req.checkpoint:
        raise ValueError("the checkpoint note is empty")
    proof = b"".join(base64.b64encode(bytes(h)) + b"\n" for h in req.proof)
    return b"old %d\n" % req.old_size + proof + b"\n" + bytes(req.checkpoint)


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint request body strictly.

    ``old <canonical decimal>\\n``, then 0 to 63 lines each holding the
    canonical base64 of a 32-byte hash, then an empty line, then a non-empty
    checkpoint note (returned unparsed). Raises FormatError.
    """
    body = bytes(body)
    end = body.find(b"\n")
    if end < 0:
        raise FormatError("request has no 'old <size>' line")
    first = body[:end]
    if not first.startswith(b"old "):
        raise FormatError(f"request does not start with 'old <size>': {first[:40]!r}")
    old_size = parse_decimal(first[4:], "old size")
    pos = end + 1
    proof: list[bytes] = []
    while True:
        end = body.find(b"\n", pos)
        if end < 0:
            raise FormatError("request ends before the empty line that precedes the checkpoint")
        line = body[pos:end]
        pos = end + 1
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise FormatError(f"request has more than {MAX_PROOF_LINES} proof lines")
        if len(line) != _HASH_B64_LEN:
            raise FormatError(f"proof line {len(proof) + 1} is not the base64 of a 32-byte hash")
        decoded = b64decode(line, f"proof line {len(proof) + 1}")
        if len(decoded) != HASH_SIZE:
            raise FormatError(f"proof line {len(proof) + 1} is not the base64 of a 32-byte hash")
        proof.append(decoded)
    checkpoint = body[pos:]
    if not checkpoint:
        raise FormatError("request has no checkpoint after the empty line")
    return AddCheckpointRequest(old_size, tuple(proof), checkpoint)


# ---------------------------------------------------------------------------
# 409 Conflict body


def format_size_body(size: int) -> bytes:
    """The 409 body: ``b"<size>\\n"``. Raises ValueError outside [0, 2^63-1]."""
    _check_size(size, "tree size")
    return b"%d\n" % size


def parse_size_body(body: bytes, content_type: str) -> int:
    """Parse a 409 response: the size the witness has cosigned for the origin.

    As strict as sigsum-go's client: ``content_type`` (the raw Content-Type
    header value) must be exactly ``text/x.tlog.size``, without parameters,
    and the body exactly a canonical decimal followed by one "\\n". Raises
    FormatError.
    """
    if content_type != SIZE_CONTENT_TYPE:
        raise FormatError(
            f"409 response has content type {content_type[:80]!r}, want {SIZE_CONTENT_TYPE!r}"
        )
    body = bytes(body)
    if not body.endswith(b"\n"):
        raise FormatError("409 response body does not end with a newline")
    return parse_decimal(body[:-1], "409 response size")


# ---------------------------------------------------------------------------
# 200 OK body


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise FormatError(f"cosignature line {number} does not start with an em dash and a space")
    name, sep, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise FormatError(f"cosignature line {number} has no signature after the key name")
    check_key_name(name)
    try:
        raw_b64 = sig_b64.encode("ascii")
    except UnicodeEncodeError:
        raise FormatError(f"cosignature line {number} is not valid base64") from None
    raw = b64decode(raw_b64, f"cosignature line {number}")
    if len(raw) < 5:
        raise FormatError(f"cosignature line {number} is shorter than a key ID and one byte")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def parse_cosignature_lines(body: bytes) -> list[NoteSignature]:
    """Parse a 200 response: one or more note signature lines.

    Each line is ``— <key name> <canonical base64(u32be key ID || signature)>\\n``
    (c2sp.org/signed-note@v1.0.0). The caller checks them against the
    witness keys it trusts (e.g. :func:`sigledger.ledger.note.verify_cosignature`) and
    ignores unknown ones. At most MAX_SIGNATURES lines. Raises FormatError.
    """
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"cosignature response is not valid UTF-8 at byte {exc.start}") from exc
    if not text:
        raise FormatError("cosignature response is empty")
    problem = lines_problem(text)
    if problem is not None:
        raise FormatError(f"cosignature response {problem}")
    lines = text[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"cosignature response has more than {MAX_SIGNATURES} lines")
    return [_parse_signature_line(line, i + 1) for i, line in enumerate(lines)]
