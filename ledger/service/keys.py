"""Key files: one signed-note signer key per file, mode 0600.

A key file holds the Go-compatible signer key string (``PRIVATE+KEY+name+hexid+base64``)
and a newline. Files are written atomically (temporary file, fsync, rename), so a
crash leaves either no key or the whole key, and are refused when other users can
read them. The log, the witness and publishers all use these two functions.
"""

from __future__ import annotations

from pathlib import Path

from sigledger.ledger.errors import ConfigError, FormatError
from sigledger.ledger.note import Signer
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
    if mode & 0o077:
        raise ConfigError(
            f"key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )
    try:
        return Signer.from_skey(text)
    except FormatError as exc:
        raise ConfigError(f"key file {path} does not hold a signer key: {exc}") from None
