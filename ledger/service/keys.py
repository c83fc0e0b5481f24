"""Key files: one signed-note signer key per file, mode 0600.

A key file holds the Go-compatible signer key string (``PRIVATE+KEY+name+hexid+base64``)
and a newline. Files are written atomically (temporary file, fsync, rename), so a
crash leaves either no key or the whole key, and are refused when other users can
read them. The log, the witness and publishers all use these two functions;
:func:`service_key` is how a service finds (or makes) the key its state was made with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sigledger.ledger.errors import ConfigError, FormatError
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.files import write_atomically


def write_key_file(path: Path, signer: Signer, *, overwrite: bool = True) -> None:
    """Write ``signer`` to ``path`` with mode 0600; refuse an existing file unless ``overwrite``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise ConfigError(f"{path} already exists; choose another --out or pass --force")
    write_atomically(path, (signer.skey + "\n").encode(), mode=0o600)


def read_key_file(path: Path, *, create_hint: str = "") -> Signer:
    """The signer key in ``path``; ConfigError (saying what to do) when it cannot be used."""
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except FileNotFoundError:
        hint = f"; {create_hint}" if create_hint else ""
        raise ConfigError(f"key file {path} does not exist{hint}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    if not text.startswith("PRIVATE+KEY+") and _is_verifier_key(text):
        # The public half (keygen's output, saved to a file) is readable by anyone
        # on purpose: the permission check below would blame the wrong thing.
        raise ConfigError(
            f"key file {path}: this is a verifier key; pass the signing key file "
            "(the one 'sigledger keygen --out FILE' wrote, starting with PRIVATE+KEY+)"
        )
    if mode & 0o077:
        raise ConfigError(
            f"key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )
    try:
        return Signer.from_skey(text)
    except FormatError as exc:
        raise ConfigError(f"key file {path} does not hold a signer key: {exc}") from None


def _is_verifier_key(text: str) -> bool:
    try:
        Verifier.from_vkey(text)
    except FormatError:
        return False
    return True


def service_key(
    what: str,
    data_dir: Path,
    key_path: Path,
    *,
    new: bool,
    vkey: str | None,
    generate: Callable[[], Signer],
    read: Callable[[Path], Signer] = read_key_file,
    lost: str,
    log: logging.Logger,
) -> Signer:
    """The key of the service ``what`` (``"log"``, ``"witness"``) whose state is in ``data_dir``.

    A ``new`` state takes the key in ``key_path`` (as ``read`` reads it), or
    ``generate()``'s, written
    there (and logged). An existing one, which recorded the verifier key ``vkey``,
    needs that very key back: a missing key file is a ConfigError that says to
    restore it (``lost``: what a new key would mean), another key one that says so.
    """
    if new:
        if key_path.exists():
            return read(key_path)
        signer = generate()
        write_key_file(key_path, signer)
        log.info(f"generated {what} key", extra={"key_file": str(key_path)})
        return signer
    if not key_path.exists():
        raise ConfigError(
            f"the {what} in {data_dir} exists but its key {key_path} is missing; "
            f"restore the key file ({lost})"
        )
    signer = read(key_path)
    if signer.vkey != vkey:
        raise ConfigError(
            f"key {key_path} ({signer.vkey}) is not the key of the {what} in "
            f"{data_dir} ({vkey}); refusing to start"
        )
    return signer
