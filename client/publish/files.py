"""Where the publisher's files live: release files, receipts, key files.

Receipts are kept out of the way of the next step of a release: ``twine upload
dist/*`` and ``sigledger publish dist/*`` must see only distribution files. So
the receipt of ``dist/NAME`` is ``dist/.sigledger/NAME.json`` (a dot folder, which
shell globs such as ``dist/*`` do not match), or ``DIR/NAME.json`` with an
explicit receipts folder (``--receipts DIR``). :func:`find_receipt` also accepts
the receipt location of earlier releases, ``dist/NAME.sigledger.json``.

A **distribution file** is one whose name ends in ``.whl``, ``.tar.gz`` or
``.zip`` (wheels and sdists); anything else given to ``publish`` (signatures,
checksums, receipts, folders) is skipped, not refused. A distribution file
with an invalid name is still an error: it is a release that cannot be logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sigledger.ledger.errors import ConfigError
from sigledger.ledger.service.files import write_atomically

RECEIPTS_FOLDER = ".sigledger"
RECEIPT_SUFFIX = ".json"
LEGACY_RECEIPT_SUFFIX = ".sigledger.json"  # next to the file, before the receipts folder
DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz", ".zip")


def is_distribution(path: Path) -> bool:
    """A wheel or sdist by its name (its contents are not looked at)."""
    return path.name.endswith(DISTRIBUTION_SUFFIXES) and not path.is_dir()


def split_distributions(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """``(distribution files, everything else)``, each in the order given."""
    dists: list[Path] = []
    others: list[Path] = []
    for p in paths:
        (dists if is_distribution(p) else others).append(p)
    return dists, others


def release_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """:func:`split_distributions` of paths that must exist; ConfigError for a
    missing path, or when no distribution file is among them."""
    given = list(paths)
    for p in given:
        if not p.exists():
            raise ConfigError(f"{p} is not a file")
    dists, others = split_distributions(given)
    if not dists:
        names = ", ".join(str(p) for p in others[:3]) + (", ..." if len(others) > 3 else "")
        raise ConfigError(f"nothing to publish: not a wheel or sdist: {names}")
    return dists, others


def receipts_folder(value: str | Path | None) -> Path | None:
    """A receipts folder given by a user (None: the default); ConfigError if a file."""
    if value is None or value == "":
        return None
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--receipts {folder} is not a folder")
    return folder


def receipt_path(path: Path, receipts_dir: Path | None = None) -> Path:
    """Where the receipt of release file ``path`` is written."""
    folder = receipts_dir if receipts_dir is not None else path.parent / RECEIPTS_FOLDER
    return folder / (path.name + RECEIPT_SUFFIX)


def receipt_candidates(path: Path, receipts_dir: Path | None = None) -> list[Path]:
    """Where the receipt of ``path`` may be, in the order they are tried."""
    found = [receipt_path(path, receipts_dir)]
    if receipts_dir is not None:
        found.append(receipt_path(path))
    found.append(path.with_name(path.name + LEGACY_RECEIPT_SUFFIX))
    return found


def find_receipt(path: Path, receipts_dir: Path | None = None) -> Path | None:
    """The first existing receipt of ``path`` (see :func:`receipt_candidates`)."""
    return next((p for p in receipt_candidates(path, receipts_dir) if p.is_file()), None)


def is_receipt(path: Path) -> bool:
    """A receipt file, by where it is or how it is named (not an artifact to verify)."""
    return path.name.endswith(LEGACY_RECEIPT_SUFFIX) or (
        path.parent.name == RECEIPTS_FOLDER and path.name.endswith(RECEIPT_SUFFIX)
    )


def write_receipt(path: Path, doc: dict[str, Any]) -> None:
    """Write a receipt atomically (a reader never sees half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(doc, indent=2) + "\n").encode())


def default_key_path(name: str) -> Path:
    """``./<name>.key``, with characters that do not belong in a file name replaced."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(f"{safe}.key")
