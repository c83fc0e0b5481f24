"""What an installer command is asked to check: the trust policy, and artifacts from
files, ``sha256:<hex>`` digests, requirements files and ``pylock.toml`` lock files.

Every problem with the inputs is a :class:`~sigledger.ledger.errors.ConfigError`
or :class:`~sigledger.ledger.errors.FormatError` raised before any network I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sigledger.client.install.checks import pin_from_file
from sigledger.client.install.lockfiles import Pin, pins_from_args, read_pylock, read_requirements
from sigledger.client.install.policy import (
    Policy,
    PolicyError,
    default_policy_path,
    load_policy,
)
from sigledger.client.publish.files import is_receipt
from sigledger.ledger.errors import ConfigError, FormatError


def require_policy(path: str | Path | None) -> Policy:
    """The policy at ``path`` (default: :func:`default_policy_path`); PolicyError if absent."""
    p = Path(path) if path else default_policy_path()
    if not p.exists():
        raise PolicyError(
            f"no trust policy at {p}; create one with 'sigledger policy pin -r requirements.txt "
            "--log URL --log-key VKEY' or pass --policy FILE"
        )
    return load_policy(p)


def read_pins(requirements: Sequence[str | Path], locks: Sequence[str | Path]) -> list[Pin]:
    """Every hash pin of the requirements and lock files; a lock file entry without a
    hash is an error (it cannot be checked against a log)."""
    pins: list[Pin] = []
    for r in requirements:
        pins.extend(read_requirements(r))
    for lock in locks:
        found, unhashed = read_pylock(lock)
        if unhashed:
            raise FormatError(
                f"{lock}: packages without a file hash cannot be checked against "
                f"the log: {', '.join(unhashed)}"
            )
        pins.extend(found)
    return pins


def artifacts_from_targets(targets: Sequence[str]) -> list[Pin]:
    """Artifacts for release files and ``sha256:<hex>`` arguments, in order.

    Receipts among the files (a ``dist/*`` glob from before receipts moved to
    ``dist/.sigledger/``) are skipped: they are evidence, not artifacts.
    """
    artifacts: list[Pin] = []
    for t in targets:
        if t.startswith("sha256:"):
            artifacts.extend(pins_from_args([t]))
        elif Path(t).is_file():
            if not is_receipt(Path(t)):
                artifacts.append(pin_from_file(Path(t)))
        else:
            raise ConfigError(f"{t} is neither a file nor sha256:<hex>")
    return artifacts
