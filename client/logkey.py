"""The log key a user names (``--log-key``), and a log's checkpoint opened against it.

A log key is a signed-note verifier key ``<name>+<hex key ID>+<base64>``
(:class:`~sigledger.ledger.note.Verifier`). :func:`parse_log_key` turns the text
into a verifier or a :class:`~sigledger.ledger.errors.ConfigError`.

:func:`open_with_log_key` checks a checkpoint note fetched from ``url``. When the
log did not sign it with the key given, the error names the URL, the key that
was expected and the keys the note is signed with (``<name>+<key ID>``: a note
signature carries the key's name and ID, never the public key itself), so a
user can tell a typo in the key from the wrong log.
"""

from __future__ import annotations

from sigledger.client.remote import LogClient
from sigledger.ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from sigledger.ledger.errors import ConfigError, FormatError, VerificationError
from sigledger.ledger.note import ALG_ED25519, Note, Verifier, parse_note


class WrongLogKeyError(
    VerificationError,
    hint="Nothing from this log was trusted. Check --log-key and --log: the key belongs "
    "to another log, or the URL does. A log's key is the 'verifier key:' line its "
    "server prints at start.",
):
    """A log's checkpoint is not signed by the key given for it."""


def parse_log_key(value: str, flag: str = "--log-key") -> Verifier:
    """The Ed25519 verifier key a log signs its checkpoints with; ConfigError if not one."""
    try:
        key = Verifier.from_vkey(value.strip())
    except FormatError as exc:
        raise ConfigError(f"{flag} is not a verifier key: {exc}") from None
    if key.alg != ALG_ED25519:
        raise ConfigError(f"{flag} {key.vkey} is not an Ed25519 (0x01) log key")
    return key


def note_signers(note: bytes | str) -> list[str]:
    """``<name>+<key ID>`` of every signature line of a note (empty if it does not parse)."""
    try:
        parsed = parse_note(note)
    except FormatError:
        return []
    return [f"{s.name}+{s.key_id:08x}" for s in parsed.signatures]


def open_with_log_key(
    note: bytes, key: Verifier, url: str, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify the log's signature (and origin, if given) on a checkpoint from ``url``.

    Raises VerificationError for a malformed note or checkpoint, a checkpoint
    for another origin, or (:class:`WrongLogKeyError`) one the key did not sign,
    naming who did.
    """
    try:
        return open_checkpoint(note, key, origin)
    except FormatError as exc:
        raise VerificationError(f"the log at {url} sent a malformed checkpoint: {exc}") from None
    except VerificationError as exc:
        signers = note_signers(note)
        by = ", ".join(signers) if signers else "no key"
        raise WrongLogKeyError(
            f"the checkpoint from {url} is not signed by the log key {key.vkey} "
            f"(key ID {key.name}+{key.key_id:08x}); it is signed by {by}: {exc}"
        ) from None


async def fetch_checkpoint(url: str, key: Verifier | None) -> tuple[Checkpoint, bytes, bool]:
    """Fetch ``url``'s checkpoint; verify it when ``key`` is given.

    Returns the checkpoint, the raw note and whether its signature was checked.
    """
    async with LogClient(url) as client:
        raw = await client.checkpoint()
        if key is not None:
            cp, _ = open_with_log_key(raw, key, client.url)
            return cp, raw, True
        try:
            cp = parse_checkpoint(parse_note(raw).text)
        except FormatError as exc:
            raise VerificationError(
                f"the log at {client.url} sent a malformed checkpoint: {exc}"
            ) from None
        return cp, raw, False
