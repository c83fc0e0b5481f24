"""Which locked files an install on one environment uses, and so which are checked.

A lock file lists, per requirement, every file the installer may accept: wheels
for every platform and the sdist; and requirements that apply only behind an
environment marker. pip installs exactly one of them per requirement that
applies. :func:`select` picks, per :class:`LockedRequirement`, the files to
verify for a :class:`~sigledger.client.install.environment.TargetEnvironment`:

* **Not from an index** (``local`` set: editable trees, directories, local
  files, VCS checkouts): nothing to verify; listed in
  :attr:`Selection.not_from_index`. The caller decides whether that fails the
  run (``--require-index-files``).
* **Marker**: a requirement whose marker does not hold for the target is not
  installed there; every one of its files is "not for this environment". A
  marker the target cannot decide raises
  :class:`~sigledger.client.install.environment.UndecidableMarkerError`
  (a usage error) naming the marker, the lock line and the missing value.
* **Files with names** (pylock.toml, uv.lock): the file
  :func:`~sigledger.client.install.environment.choose_file` picks is verified;
  every other one is "not for this environment". A file whose name is neither a
  wheel nor an sdist name (a pylock ``archive``) is verified when no wheel or
  sdist fits.
* **Bare hashes** (requirements files carry no filenames): the log says which
  file each hash is. ``logged`` maps each digest to the proven entries the log
  holds for it; a hash is attributed to the filenames of the entries for the
  requirement's project (and version), whoever signed them: a name only adds a
  candidate file, so a false name cannot hide the file of a true entry, and the
  chosen file's signers are judged by the policy afterwards. The installer's
  choice among the
  attributed files is verified; the other attributed files are "not for this
  environment". A hash the log does not hold for the requirement cannot be
  attributed: when a chosen file exists it is reported as "not attributable"
  and does not fail the run (pip could install that file only if the index
  serves bytes with that hash and prefers them to the chosen file; use
  ``--all-files``, or install through ``sigledger pip`` / the proxy, which
  verify the exact file pip downloads). When no listed hash is logged at all,
  or no logged file fits the target, every unattributed hash is verified (and
  fails as "not in the log"); with none left the requirement fails.
* ``all_files``: every listed hash of every requirement is verified, markers
  and environments ignored (the strict check).

Every skipped file is a :class:`Skipped` with ``kind`` ``"not_for_environment"``
or ``"not_attributable"`` and a reason; the JSON of a verify run lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from sigledger.client.install.environment import (
    TargetEnvironment,
    UndecidableMarkerError,
    choose_file,
    marker_applies,
)
from sigledger.client.install.lockfiles import LockedRequirement, LockfileError, Pin
from sigledger.client.install.uvlock import LOCAL_SOURCES, UvLock, all_pins, pins_for_environment
from sigledger.client.install.verdicts import Outcome, matches
from sigledger.client.trust import VerifiedEntry
from sigledger.ledger.errors import FormatError

__all__ = [
    "NOT_ATTRIBUTABLE",
    "NOT_FOR_ENVIRONMENT",
    "Selection",
    "Skipped",
    "select",
    "select_uvlock",
]

NOT_FOR_ENVIRONMENT = "not_for_environment"
NOT_ATTRIBUTABLE = "not_attributable"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A listed file that the target environment does not install."""

    pin: Pin
    kind: str  # NOT_FOR_ENVIRONMENT or NOT_ATTRIBUTABLE
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.pin.name,
            "project": self.pin.project,
            "version": self.pin.version,
            "filename": self.pin.filename,
            "sha256": self.pin.sha256.hex(),
            "source": self.pin.source,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass
class Selection:
    """What :func:`select` decided: the pins to verify, and everything else."""

    pins: list[Pin] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    not_from_index: list[str] = field(default_factory=list)  # "NAME (KIND, SOURCE)"
    failed: list[Outcome] = field(default_factory=list)  # requirements with nothing to verify

    def extend(self, other: Selection) -> None:
        self.pins.extend(other.pins)
        self.skipped.extend(other.skipped)
        self.not_from_index.extend(other.not_from_index)
        self.failed.extend(other.failed)

    @property
    def not_for_environment(self) -> list[Skipped]:
        return [s for s in self.skipped if s.kind == NOT_FOR_ENVIRONMENT]

    @property
    def not_attributable(self) -> list[Skipped]:
        return [s for s in self.skipped if s.kind == NOT_ATTRIBUTABLE]


def _applies(env: TargetEnvironment, entry: LockedRequirement) -> bool:
    try:
        return marker_applies(env, entry.marker, dependency_groups=entry.dependency_groups)
    except UndecidableMarkerError as exc:
        raise UndecidableMarkerError(f"{entry.source}: {exc}") from None
    except FormatError as exc:
        raise LockfileError(f"{entry.source}: {exc}") from None


def _check_lock_environment(env: TargetEnvironment, entry: LockedRequirement) -> None:
    """pylock.toml's ``environments`` and ``requires-python``: the lock must be for ``env``."""
    if entry.environments and not any(
        _applies(env, replace(entry, marker=m)) for m in entry.environments
    ):
        raise LockfileError(
            f"{entry.source}: the lock is for the environments {', '.join(entry.environments)}; "
            f"{env.describe()} is not one of them (lock for it, or give another target)"
        )
    version = env.marker_environment.get("python_full_version")
    for spec in entry.requires_python:
        try:
            wanted = SpecifierSet(spec)
        except InvalidSpecifier:
            raise LockfileError(f"{entry.source}: requires-python {spec!r} is invalid") from None
        if version is not None and not wanted.contains(version, prereleases=True):
            raise LockfileError(
                f"{entry.source}: {entry.label} requires Python {spec}; {env.describe()} is "
                f"Python {version}"
            )


def _with_filename(pin: Pin, filename: str) -> Pin:
    """The pin, now known to be ``filename`` (attributed by the log)."""
    return Pin(pin.project, pin.version, pin.sha256, filename, pin.size, pin.source)


def select(
    env: TargetEnvironment,
    entries: Sequence[LockedRequirement],
    *,
    logged: Mapping[bytes, Sequence[VerifiedEntry]] | None = None,
    all_files: bool = False,
) -> Selection:
    """The files to verify for ``env`` (see the module documentation).

    ``logged`` (digest -> proven entries) is needed for requirements whose pins
    carry no filename; without it their hashes cannot be attributed.
    """
    result = Selection()
    for entry in entries:
        if entry.local is not None:
            name = entry.project or entry.local.split(" ", 1)[-1]
            result.not_from_index.append(f"{name} ({entry.local}, {entry.source})")
            continue
        if all_files:
            result.pins.extend(entry.pins)
            continue
        _check_lock_environment(env, entry)
        attributed: list[Pin] = []
        unknown: list[Pin] = []
        for pin in entry.pins:
            if pin.filename is not None:
                attributed.append(pin)
                continue
            names = sorted(
                {
                    e.entry.statement.filename
                    for e in (logged or {}).get(pin.sha256, ())
                    if matches(pin, e)
                }
            )
            if names:
                attributed.extend(_with_filename(pin, name) for name in names)
            else:
                unknown.append(pin)
        if entry.marker and not _applies(env, entry):
            reason = f"marker {entry.marker} does not hold for {env.describe()}"
            result.skipped.extend(
                Skipped(p, NOT_FOR_ENVIRONMENT, reason) for p in (*attributed, *unknown)
            )
            continue
        _select_named(env, entry, attributed, unknown, result)
    return result


def _select_named(
    env: TargetEnvironment,
    entry: LockedRequirement,
    named: list[Pin],
    unknown: list[Pin],
    result: Selection,
) -> None:
    """Choose among ``named`` pins; ``unknown`` are hashes of unknown files."""
    by_name: dict[str, list[Pin]] = {}
    for pin in named:
        assert pin.filename is not None
        by_name.setdefault(pin.filename, []).append(pin)
    choice = choose_file(env, by_name)
    if choice.chosen is not None:
        chosen = choice.chosen
        result.pins.extend(by_name[chosen])
        reason = f"{env.describe()} installs {chosen}"
        for name in (*choice.not_for_this_environment, *choice.unrecognised):
            result.skipped.extend(Skipped(p, NOT_FOR_ENVIRONMENT, reason) for p in by_name[name])
        why = (
            f"the log holds no entry for this hash of {entry.project}, so which file it is "
            f"cannot be known; {env.describe()} installs {chosen}, which is verified"
        )
        result.skipped.extend(Skipped(p, NOT_ATTRIBUTABLE, why) for p in unknown)
        return
    # No wheel or sdist fits: archives (odd names) and hashes the log does not
    # know may be what is installed, so they are verified.
    to_check = [p for name in choice.unrecognised for p in by_name[name]] + unknown
    if to_check:
        result.pins.extend(to_check)
        reason = f"{env.describe()} cannot install it ({choice.reason})"
        for name in choice.not_for_this_environment:
            result.skipped.extend(Skipped(p, NOT_FOR_ENVIRONMENT, reason) for p in by_name[name])
        return
    listed = ", ".join(by_name) or "no files"
    first = entry.pins[0] if entry.pins else None
    if first is None:
        raise LockfileError(f"{entry.source}: {entry.label} lists no files")
    artifact = Pin(
        entry.project, entry.version, first.sha256, None, None, entry.source, name=entry.label
    )
    result.failed.append(Outcome(artifact, False, f"{choice.reason} (listed: {listed})"))
    for name in choice.not_for_this_environment:
        result.skipped.extend(Skipped(p, NOT_FOR_ENVIRONMENT, choice.reason) for p in by_name[name])


def select_uvlock(env: TargetEnvironment, lock: UvLock, *, all_files: bool = False) -> Selection:
    """The files of a uv.lock to verify for ``env``: what ``uv sync`` installs there
    (default dependency groups, no extras; see
    :func:`~sigledger.client.install.uvlock.pins_for_environment`), or with
    ``all_files`` every file the lock lists."""
    if all_files:
        local = [
            f"{p.name} ({p.source}, {lock.path}:{lock.label(p.where)})"
            for p in lock.packages
            if p.source_kind in LOCAL_SOURCES
        ]
        return Selection(pins=all_pins(lock), not_from_index=local)
    found = pins_for_environment(lock, env)
    reason = f"uv sync on {env.describe()} does not install it"
    return Selection(
        pins=found.pins,
        skipped=[Skipped(p, NOT_FOR_ENVIRONMENT, reason) for p in found.not_for_environment],
        not_from_index=[f"{name} ({where})" for name, where in found.not_from_index]
        + [f"{name} (the project itself, {lock.path})" for name in found.members],
    )
