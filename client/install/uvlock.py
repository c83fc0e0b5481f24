r"""uv's lock file, ``uv.lock``: which release files ``uv sync`` installs here, as Pins.

The format (``version = 1``; any ``revision``) as uv writes it::

    version = 1
    revision = 3
    requires-python = ">=3.11"
    resolution-markers = ["sys_platform == 'win32'", "sys_platform != 'win32'"]

    [manifest]                       # only in workspaces
    members = ["app", "lib"]

    [[package]]
    name = "app"
    version = "0.1.0"
    source = { editable = "." }      # or virtual / directory / git / path / url / registry
    dependencies = [
        { name = "certifi" },
        { name = "colorama", marker = "sys_platform == 'win32'" },
        { name = "requests", extra = ["socks"] },
    ]

    [package.optional-dependencies]
    cli = [{ name = "click" }]

    [package.dev-dependencies]       # dependency groups; "dev" is installed by default
    dev = [{ name = "pytest" }]

    [[package]]
    name = "certifi"
    version = "2024.8.30"
    source = { registry = "https://pypi.org/simple" }
    sdist = { url = "https://files.example/certifi-2024.8.30.tar.gz", hash = "sha256:...", size = 168507 }
    wheels = [
        { url = "https://files.example/certifi-2024.8.30-py3-none-any.whl", hash = "sha256:...", size = 167321 },
    ]

A package locked in several versions (a "fork") carries ``resolution-markers``
and the dependencies that point at it name its ``version`` (and ``source``).

**Reading** (:func:`read_uvlock`) checks the structure and returns a
:class:`UvLock`. Every file of a registry or URL package needs a
``hash = "sha256:<64 hex>"`` (sha256 is the only digest the log indexes) and a
filename (the last part of ``url``, or ``filename`` / ``path``). Problems raise
:class:`UvLockError` (a FormatError) whose message starts ``FILE:LINE:``, the
line of the offending table or key.

**This environment** (:func:`pins_for_environment`) walks the dependency graph
as ``uv sync`` does: from the workspace members (``[manifest] members``, else
every editable, virtual or directory package at ``"."``, else every package no
other package depends on), following each dependency whose marker holds for the
target (:func:`~sigledger.client.install.environment.marker_applies`), the
optional dependencies of every extra asked for, and the dependency groups asked
for (``dev`` by default) of the members. For each package reached from a
registry or a URL, the file this environment installs is chosen with
:func:`~sigledger.client.install.environment.choose_file` and becomes one Pin.
Packages with an ``editable``, ``virtual``, ``directory``, ``git`` or ``path``
source have no file from an index: they are returned by name as "not from an
index" and the caller decides; the workspace members reached as roots are
listed apart, as the project's own packages. A reached package with no file for this
environment is an error. The files not installed here are returned too
(:attr:`EnvironmentPins.not_for_environment`), for the report.
"""  # noqa: E501 (the example lines are as long as uv writes them)

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.client.install.environment import TargetEnvironment, choose_file, marker_applies
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.tomlpos import (
    TomlPath,
    TomlReader,
    key_path,
    line_of,
    toml_decode_error,
    toml_lines,
)
from sigledger.ledger.errors import ConfigError, FormatError

__all__ = [
    "INDEX_SOURCES",
    "LOCAL_SOURCES",
    "Dependency",
    "EnvironmentPins",
    "LockedFile",
    "LockedPackage",
    "UvLock",
    "UvLockError",
    "all_pins",
    "parse_uvlock",
    "pins_for_environment",
    "read_uvlock",
]

# Sources whose files come with hashes from an index or a URL.
INDEX_SOURCES = frozenset({"registry", "url"})
# Sources that are a local tree, a checkout or a local file: no index file to check.
LOCAL_SOURCES = frozenset({"editable", "virtual", "directory", "git", "path"})
_HASH = re.compile(r"sha256:([0-9a-fA-F]{64})")


class UvLockError(FormatError):
    """A uv.lock cannot be read, or names no file for this environment."""

    hint = "Regenerate the lock with `uv lock` (or fix the file named above) and try again."


@dataclass(frozen=True, slots=True)
class LockedFile:
    """One wheel or sdist of a locked package."""

    filename: str
    sha256: bytes
    size: int | None
    url: str | None
    where: TomlPath


@dataclass(frozen=True, slots=True)
class Dependency:
    """An edge of the lock's graph; ``version``/``source`` single out one of a fork."""

    name: str
    version: str | None
    source: str | None  # the source's kind and value, "registry=https://..."
    marker: str
    extras: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LockedPackage:
    name: str  # PEP 503 canonical
    version: str | None
    source_kind: str  # one of INDEX_SOURCES | LOCAL_SOURCES
    source: str  # "registry=https://pypi.org/simple", "editable=."
    files: tuple[LockedFile, ...]
    dependencies: tuple[Dependency, ...]
    optional: Mapping[str, tuple[Dependency, ...]]
    groups: Mapping[str, tuple[Dependency, ...]]
    resolution_markers: tuple[str, ...]
    where: TomlPath


@dataclass
class UvLock:
    path: Path
    packages: list[LockedPackage]
    members: tuple[str, ...]  # [manifest] members, canonical; empty outside workspaces
    _lines: dict[TomlPath, int] | None = field(default=None, repr=False)
    _text: str = field(default="", repr=False)

    def line(self, where: TomlPath) -> int:
        if self._lines is None:
            self._lines = toml_lines(self._text)
        return line_of(self._lines, where)

    def label(self, where: TomlPath) -> str:
        return key_path(where)


# ---------------------------------------------------------------------------
# Reading


class _Reader(TomlReader):
    error = UvLockError

    def __init__(self, path: Path, text: str) -> None:
        super().__init__(text, str(path))
        self.path = path

    def read(self) -> UvLock:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            line, message = toml_decode_error(exc, self.text)
            raise UvLockError(f"{self.path}:{line}: invalid TOML: {message}") from None
        version = data.get("version")
        if version != 1 or isinstance(version, bool):
            raise self.fail(
                ("version",),
                f"lock version {version!r} is not supported (uv.lock version 1 is)",
            )
        members: list[str] = []
        if "manifest" in data:
            manifest = self.table(("manifest",), data["manifest"])
            raw = self.array(("manifest", "members"), manifest.get("members", []))
            members = [
                canonicalize_name(self.string(("manifest", "members", i), m))
                for i, m in enumerate(raw)
            ]
        packages = [
            self.package(self.table(("package", i), p), ("package", i))
            for i, p in enumerate(self.array(("package",), data.get("package", [])))
        ]
        return UvLock(self.path, packages, tuple(members), None, self.text)

    def package(self, raw: dict[str, Any], where: TomlPath) -> LockedPackage:
        if "name" not in raw:
            raise self.fail(where, "a package needs a name")
        name = canonicalize_name(self.string((*where, "name"), raw["name"]))
        version: str | None = None
        if "version" in raw:
            text = self.string((*where, "version"), raw["version"])
            try:
                version = str(Version(text))
            except InvalidVersion:
                raise self.fail((*where, "version"), f"{text!r} is not a PEP 440 version") from None
        if "source" not in raw:
            raise self.fail(where, f"package {name} has no source")
        kind, source = self.package_source(raw["source"], (*where, "source"))
        files: list[LockedFile] = []
        if "sdist" in raw:
            files.append(self.file(raw["sdist"], (*where, "sdist")))
        for i, wheel in enumerate(self.array((*where, "wheels"), raw.get("wheels", []))):
            files.append(self.file(wheel, (*where, "wheels", i)))
        dependencies = self.dependencies(raw.get("dependencies", []), (*where, "dependencies"))
        optional = self.groups(raw, where, "optional-dependencies")
        groups = self.groups(raw, where, "dev-dependencies")
        fork = self.array((*where, "resolution-markers"), raw.get("resolution-markers", []))
        markers = tuple(
            self.string((*where, "resolution-markers", i), m) for i, m in enumerate(fork)
        )
        return LockedPackage(
            name,
            version,
            kind,
            source,
            tuple(files),
            dependencies,
            optional,
            groups,
            markers,
            where,
        )

    def package_source(self, value: object, where: TomlPath) -> tuple[str, str]:
        table = self.table(where, value)
        kinds = [k for k in table if k in INDEX_SOURCES | LOCAL_SOURCES]
        if len(kinds) != 1:
            known = ", ".join(sorted(INDEX_SOURCES | LOCAL_SOURCES))
            raise self.fail(where, f"needs exactly one of {known}; got {sorted(table)}")
        kind = kinds[0]
        return kind, f"{kind}={self.string((*where, kind), table[kind])}"

    def file(self, value: object, where: TomlPath) -> LockedFile:
        table = self.table(where, value)
        url = self.string((*where, "url"), table["url"]) if "url" in table else None
        filename: str | None = None
        if "filename" in table:
            filename = self.string((*where, "filename"), table["filename"])
        elif "path" in table:
            filename = self.string((*where, "path"), table["path"]).replace("\\", "/")
            filename = filename.rsplit("/", 1)[-1]
        elif url is not None:
            try:
                filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
            except ValueError:
                raise self.fail((*where, "url"), f"{url!r} is not a URL") from None
        if not filename:
            raise self.fail(where, "a file needs a url, path or filename that names it")
        if "hash" not in table:
            raise self.fail(where, f"{filename} has no hash; the log needs its sha256")
        digest = self.string((*where, "hash"), table["hash"])
        match = _HASH.fullmatch(digest)
        if match is None:
            raise self.fail(
                (*where, "hash"),
                f"{digest[:80]!r} is not sha256:<64 hex digits> (the log indexes sha256)",
            )
        size = table.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise self.fail((*where, "size"), f"size {size!r} is not a non-negative integer")
        return LockedFile(filename, bytes.fromhex(match.group(1)), size, url, where)

    def dependencies(self, value: object, where: TomlPath) -> tuple[Dependency, ...]:
        result: list[Dependency] = []
        for i, raw in enumerate(self.array(where, value)):
            here = (*where, i)
            table = self.table(here, raw)
            if "name" not in table:
                raise self.fail(here, "a dependency needs a name")
            name = canonicalize_name(self.string((*here, "name"), table["name"]))
            version = None
            if "version" in table:
                text = self.string((*here, "version"), table["version"])
                try:
                    version = str(Version(text))
                except InvalidVersion:
                    raise self.fail(
                        (*here, "version"), f"{text!r} is not a PEP 440 version"
                    ) from None
            source = None
            if "source" in table:
                source = self.package_source(table["source"], (*here, "source"))[1]
            marker = self.string((*here, "marker"), table.get("marker", ""))
            extras = self.array((*here, "extra"), table.get("extra", []))
            names = tuple(
                canonicalize_name(self.string((*here, "extra", j), e)) for j, e in enumerate(extras)
            )
            result.append(Dependency(name, version, source, marker, names))
        return tuple(result)

    def groups(
        self, raw: dict[str, Any], where: TomlPath, key: str
    ) -> dict[str, tuple[Dependency, ...]]:
        if key not in raw:
            return {}
        table = self.table((*where, key), raw[key])
        return {
            canonicalize_name(group): self.dependencies(deps, (*where, key, group))
            for group, deps in table.items()
        }


def read_uvlock(path: str | Path) -> UvLock:
    """Read and check a uv.lock (see the module documentation).

    Raises UvLockError (``FILE:LINE: ...``) for anything malformed, and for a file
    that cannot be read or is not UTF-8.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UvLockError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UvLockError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    return _Reader(path, text).read()


def parse_uvlock(text: str, path: str | Path = "uv.lock") -> UvLock:
    """:func:`read_uvlock` for text already in memory (``path`` names it in messages)."""
    return _Reader(Path(path), text).read()


# ---------------------------------------------------------------------------
# What this environment installs


@dataclass(frozen=True, slots=True)
class EnvironmentPins:
    """The result of :func:`pins_for_environment`."""

    pins: list[Pin]  # one per package installed from an index or URL
    not_from_index: list[tuple[str, str]]  # (name, "git=https://..., uv.lock:package[7]")
    urls: dict[str, str]  # Pin.source -> the file's URL, where the lock has one
    members: list[str]  # the roots with a local source: the project's own packages
    # Files of the lock this environment does not install: the other files of the
    # packages installed, and every file of the packages not reached.
    not_for_environment: list[Pin] = field(default_factory=list)


def _applies(lock: UvLock, env: TargetEnvironment, marker: str, where: TomlPath) -> bool:
    try:
        return marker_applies(env, marker)
    except (FormatError, ConfigError) as exc:
        raise UvLockError(f"{lock.path}:{lock.line(where)}: {exc}") from None


def _roots(lock: UvLock) -> list[LockedPackage]:
    if lock.members:
        wanted = set(lock.members)
        return [p for p in lock.packages if p.name in wanted and p.source_kind in LOCAL_SOURCES]
    here = [
        p
        for p in lock.packages
        if p.source_kind in ("editable", "virtual", "directory") and p.source.endswith("=.")
    ]
    if here:
        return here
    depended = {d.name for p in lock.packages for d in p.dependencies}
    return [p for p in lock.packages if p.name not in depended]


def pins_for_environment(
    lock: UvLock,
    env: TargetEnvironment,
    *,
    extras: Iterable[str] = (),
    groups: Iterable[str] | None = ("dev",),
) -> EnvironmentPins:
    """The files ``uv sync`` installs on ``env`` (see the module documentation).

    ``extras`` are the members' extras asked for; ``groups`` their dependency
    groups (``None``: every group). Raises UvLockError when a dependency cannot be
    found in the lock, a marker cannot be decided, or no file fits ``env``.
    """
    by_name: dict[str, list[LockedPackage]] = {}
    for p in lock.packages:
        by_name.setdefault(p.name, []).append(p)
    wanted_extras = {canonicalize_name(e) for e in extras}
    wanted_groups = None if groups is None else {canonicalize_name(g) for g in groups}

    def target(dep: Dependency, where: TomlPath) -> LockedPackage:
        candidates = [
            p
            for p in by_name.get(dep.name, [])
            if (dep.version is None or p.version == dep.version)
            and (dep.source is None or p.source == dep.source)
        ]
        if len(candidates) > 1:  # a fork: the one whose resolution markers hold here
            candidates = [
                p
                for p in candidates
                if not p.resolution_markers
                or any(_applies(lock, env, m, p.where) for m in p.resolution_markers)
            ]
        if len(candidates) != 1:
            problem = "is not in the lock" if not candidates else "is ambiguous in the lock"
            raise UvLockError(
                f"{lock.path}:{lock.line(where)}: dependency {dep.name}"
                f"{' ' + dep.version if dep.version else ''} {problem}"
            )
        return candidates[0]

    seen: dict[int, set[str]] = {}  # id of package -> extras already followed
    order: list[LockedPackage] = []
    roots = _roots(lock)
    todo: list[tuple[LockedPackage, frozenset[str], bool]] = [
        (root, frozenset(wanted_extras), True) for root in roots
    ]
    while todo:
        package, package_extras, is_root = todo.pop(0)
        key = id(package)
        done = seen.get(key)
        if done is None:
            order.append(package)
            done = seen[key] = set()
            edges: list[tuple[Dependency, TomlPath]] = [
                (d, (*package.where, "dependencies", i)) for i, d in enumerate(package.dependencies)
            ]
            if is_root:
                for group, deps in package.groups.items():
                    if wanted_groups is None or group in wanted_groups:
                        here = (*package.where, "dev-dependencies", group)
                        edges.extend((d, (*here, i)) for i, d in enumerate(deps))
        else:
            edges = []
        for extra in sorted(package_extras - done):
            done.add(extra)
            here = (*package.where, "optional-dependencies", extra)
            edges.extend((d, (*here, i)) for i, d in enumerate(package.optional.get(extra, ())))
        for dep, where in edges:
            if dep.marker and not _applies(lock, env, dep.marker, where):
                continue
            todo.append((target(dep, where), frozenset(dep.extras), False))

    pins: list[Pin] = []
    local: list[tuple[str, str]] = []
    urls: dict[str, str] = {}
    members: list[str] = []
    root_ids = {id(root) for root in roots}
    others: list[Pin] = []
    reached = {id(p) for p in order}
    for package in lock.packages:
        if id(package) not in reached:
            others.extend(_pin(lock, package, f) for f in package.files)
    for package in order:
        if id(package) in root_ids and package.source_kind in LOCAL_SOURCES:
            members.append(package.name)
            continue
        if package.source_kind in LOCAL_SOURCES:
            shown = f"{lock.path}:{lock.label(package.where)}"
            local.append((package.name, f"{package.source}, {shown}"))
            continue
        chosen = _choose(lock, env, package)
        pin = _pin(lock, package, chosen)
        pins.append(pin)
        others.extend(_pin(lock, package, f) for f in package.files if f is not chosen)
        if chosen.url is not None:
            urls[pin.source] = chosen.url
    return EnvironmentPins(pins, local, urls, members, others)


def _pin(lock: UvLock, package: LockedPackage, f: LockedFile) -> Pin:
    source = f"{lock.path}:{lock.label(f.where)}"
    return Pin(package.name, package.version, f.sha256, f.filename, f.size, source)


def all_pins(lock: UvLock) -> list[Pin]:
    """Every file of every package from an index or URL (``--all-files``)."""
    return [_pin(lock, p, f) for p in lock.packages for f in p.files]


def _choose(lock: UvLock, env: TargetEnvironment, package: LockedPackage) -> LockedFile:
    by_name = {f.filename: f for f in package.files}
    choice = choose_file(env, by_name)
    if choice.chosen is None:
        listed = ", ".join(by_name) or "no files"
        raise UvLockError(
            f"{lock.path}:{lock.line(package.where)}: {package.name} {package.version}: "
            f"{choice.reason} (listed: {listed})"
        )
    return by_name[choice.chosen]
