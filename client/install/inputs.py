"""What an installer command is asked to check: the trust policy, and artifacts from
files, ``sha256:<hex>`` digests, requirements files and lock files (``pylock.toml``
and ``uv.lock``).

A ``--lock`` file is read as a uv.lock when it is named ``uv.lock`` or its TOML
has a top-level ``version`` and ``package`` array but no ``lock-version``;
otherwise as a PEP 751 pylock.toml. The target environment is this
interpreter, or the one pip's ``--python-version``, ``--platform``,
``--implementation`` and ``--abi`` options describe (:func:`target_environment`).

Every problem with the inputs is a :class:`~sigledger.ledger.errors.ConfigError`
or :class:`~sigledger.ledger.errors.FormatError` raised before any network I/O.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sigledger.client.install.environment import TargetEnvironment
from sigledger.client.install.lockfiles import (
    LockedRequirement,
    Pin,
    pins_from_args,
    read_pylock_entries,
    read_requirements_entries,
)
from sigledger.client.install.policy import (
    Policy,
    PolicyError,
    default_policy_path,
    load_policy,
)
from sigledger.client.install.uvlock import UvLock, read_uvlock
from sigledger.client.install.verdicts import pin_from_file
from sigledger.client.publish.files import is_receipt
from sigledger.ledger.errors import ConfigError


def require_policy(path: str | Path | None) -> Policy:
    """The policy at ``path`` (default: :func:`default_policy_path`); PolicyError if absent."""
    p = Path(path) if path else default_policy_path()
    if not p.exists():
        raise PolicyError(
            f"no trust policy at {p}; create one with 'sigledger policy pin -r requirements.txt "
            "--log URL --log-key VKEY' or pass --policy FILE"
        )
    return load_policy(p)


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


@dataclass
class LockInputs:
    """The requirements and lock files of one command, read."""

    entries: list[LockedRequirement] = field(default_factory=list)  # requirements, pylock
    uvlocks: list[UvLock] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entries or self.uvlocks)


def is_uvlock(path: Path) -> bool:
    """Whether ``path`` is a uv.lock (by its name, else by its top-level keys)."""
    if path.name == "uv.lock":
        return True
    if path.name.startswith("pylock.") or not path.is_file():
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # the pylock reader reports the problem with its line
    return "lock-version" not in data and "version" in data and "package" in data


def read_locks(requirements: Sequence[str | Path], locks: Sequence[str | Path]) -> LockInputs:
    """Every requirement of the requirements files and lock files, markers and
    entries not from an index included (the selection decides what to check)."""
    found = LockInputs()
    for r in requirements:
        found.entries.extend(read_requirements_entries(r))
    for lock in locks:
        if is_uvlock(Path(lock)):
            found.uvlocks.append(read_uvlock(lock))
        else:
            found.entries.extend(read_pylock_entries(lock))
    return found


def target_environment(
    python_version: str | None,
    platforms: Sequence[str] | None,
    implementation: str | None,
    abis: Sequence[str] | None,
) -> TargetEnvironment:
    """This interpreter, or the target pip's options describe (ConfigError if malformed)."""
    return TargetEnvironment.from_pip_options(
        python_version=python_version,
        platforms=platforms or None,
        implementation=implementation,
        abis=abis or None,
    )
