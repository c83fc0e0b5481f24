"""Verify, then install: ``sigledger pip install``, ``sigledger uv pip install`` and
``sigledger uv sync``.

Each front-end runs in three steps, with the user's own tool, environment and
configuration (this is the user's install):

1. **Resolve** with the real tool, installing nothing, and learn the exact files
   it would install (:meth:`Frontend.resolve` -> :class:`Plan`):

   * pip: ``python -m pip install --dry-run --ignore-installed --report FILE
     --quiet ARGS``; the report's ``install[*]`` items give ``metadata.name`` and
     ``.version``, ``download_info.url``, ``.archive_info.hashes.sha256`` (or
     the older ``.archive_info.hash = "sha256=..."``) and ``is_direct`` (a file
     named by URL). Items with ``download_info.dir_info`` (a local directory,
     ``editable`` or not) or ``.vcs_info`` (a VCS checkout) are *not from an
     index*. Read by :func:`read_pip_report`.
   * uv pip: ``uv pip compile --format pylock.toml`` (``--generate-hashes``
     requirements where this uv has no pylock output) of the requirements for
     this environment; of each package's files the one this interpreter installs
     is chosen with :func:`~sigledger.client.install.environment.choose_file`
     (with requirements output every listed hash is verified instead).
     ``directory`` and ``vcs`` packages are not from an index.
   * uv sync: ``uv lock`` (skipped with ``--locked`` or ``--frozen``), then
     uv.lock is read (:mod:`~sigledger.client.install.uvlock`) for the
     Python ``uv python find`` names for the project, the requested extras and
     the dependency groups (every group unless ``--no-dev``, ``--only-dev``,
     ``--only-group`` or ``--no-default-groups`` narrow them: verifying more
     than is installed is safe). The project's own packages (the workspace members) are the user's
     code and always pass; other ``editable``, ``directory``, ``virtual``,
     ``git`` and ``path`` packages are not from an index.

2. **Verify** every chosen file against the policy's log, exactly as ``sigledger
   verify`` does (the caller does this with
   :func:`~sigledger.client.install.verify.verify_online` on
   the plan's pins). Packages not from an index are refused when asked to
   (``--require-index-files``), else they pass through unchecked, named in the
   report.

3. **Install** exactly what was verified (:meth:`Frontend.install`):

   * pip: a temporary requirements file of ``name==version --hash=sha256:H``
     lines (``name @ URL --hash=...`` for files named by URL), installed with
     ``python -m pip install --require-hashes --no-deps -r FILE`` and the user's
     options (index, target, ...; never the requirements, which were resolved
     already); pip refuses any file whose bytes differ. Packages not from an
     index that were let through are installed after it with ``--no-deps``.
   * uv pip: the same file with ``uv pip install --require-hashes --no-deps -r
     FILE``.
   * uv sync: ``uv sync --locked`` (uv checks every file against the hashes in
     uv.lock, which were the ones verified).

Nothing is installed unless resolving and verifying succeeded. What would turn
the hash check off is refused (uv's ``--no-verify-hashes``) or left out of the
install step's environment (``UV_NO_VERIFY_HASHES``). A tool that
fails raises :class:`InstallerError` with the end of its output; a tool that is
missing raises :class:`~sigledger.ledger.errors.ConfigError`.

**Limits.** pip chooses the files itself, so what is verified is exactly what
pip installs, also for ``--python``, ``--platform`` or ``--target`` installs.
uv pip's file choice here is for the interpreter running sigledger; were uv to
pick another file for its target, the hash-checking install refuses it (the
install fails, it never installs an unverified file). ``uv sync`` is verified for the
Python version ``uv python find`` names for the project, on this machine and
with this interpreter's implementation; a ``--python-platform`` given to uv sync
is not taken into account.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.client.install.environment import TargetEnvironment, choose_file, marker_applies
from sigledger.client.install.lockfiles import Pin, read_pylock, read_requirements
from sigledger.client.install.uvlock import pins_for_environment, read_uvlock
from sigledger.ledger.errors import ConfigError, FormatError, LedgerError

__all__ = [
    "Frontend",
    "InstallerError",
    "LocalEntry",
    "PipFrontend",
    "Plan",
    "UvPipFrontend",
    "UvSyncFrontend",
    "hash_requirements",
    "read_pip_report",
    "split_pip_args",
]

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# How much of a failing tool's output an error shows.
_TAIL_LINES = 25


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A package not from an index: a local directory, an editable tree or a checkout."""

    name: str
    what: str  # "editable file:///src/demo", "git https://...@abc123", "path=wheels/x.whl"
    requirement: tuple[str, ...]  # how to hand it to the installer; empty: the tool does


@dataclass
class Plan:
    """What one install would put on disk, and how to name it to the installer."""

    pins: list[Pin]  # the files to verify, one per package (several only for old uv)
    urls: dict[str, str] = field(default_factory=dict)  # Pin.source -> URL of a direct file
    local: list[LocalEntry] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # uv sync: the project's own packages


# ---------------------------------------------------------------------------
# Running the tools


class InstallerError(
    LedgerError,
    hint="The installer's own message is above. Fix the requirements or options it names; "
    "nothing was installed unless the message says the install step failed.",
):
    """The installer (pip or uv) failed while resolving or installing."""


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    shown = lines[-_TAIL_LINES:]
    return "\n".join(("  " + line) for line in shown) or "  (no output)"


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the user's own installer with the arguments the user gave it."""
    try:
        return subprocess.run(list(cmd), check=False, text=True, **kw)  # noqa: S603
    except OSError as exc:
        raise ConfigError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None


def _run_quiet(cmd: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a resolving step, capturing its output; InstallerError if it fails."""
    result = _run(cmd, capture_output=True)
    if result.returncode != 0:
        raise InstallerError(
            f"{what} failed (exit {result.returncode}); nothing was installed:\n"
            f"{_tail(result.stderr + result.stdout)}"
        )
    return result


def _run_install(cmd: Sequence[str], what: str, out: IO[str] | None) -> None:
    """Run an install step, its output shown to the user (on ``out``)."""
    sys.stdout.flush()
    # UV_NO_VERIFY_HASHES would let uv install files without the hash check.
    env = {k: v for k, v in os.environ.items() if k != "UV_NO_VERIFY_HASHES"}
    result = _run(cmd, stdout=out, env=env)
    if result.returncode != 0:
        raise InstallerError(
            f"{what} failed (exit {result.returncode}) after every file was verified; "
            "its message is above"
        )


def find_uv() -> str:
    """The ``uv`` on PATH, else the one installed beside this interpreter."""
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    if beside.is_file():
        return str(beside)
    raise ConfigError("uv is not installed (not on PATH); install it, e.g. `pip install uv`")


def hash_requirements(plan: Plan) -> str:
    """The requirements file of a plan: one line per package with every verified hash
    (``name==version --hash=sha256:H``, or ``name @ URL --hash=...`` for a file
    named by URL)."""
    hashes: dict[str, list[str]] = {}
    for pin in plan.pins:
        url = plan.urls.get(pin.source)
        spec = f"{pin.project} @ {url}" if url else f"{pin.project}=={pin.version}"
        hashes.setdefault(spec, []).append(f"--hash=sha256:{pin.sha256.hex()}")
    return "".join(f"{spec} {' '.join(found)}\n" for spec, found in hashes.items())


def _write_hashes(plan: Plan, work: Path) -> Path:
    path = work / "verified-requirements.txt"
    path.write_text(hash_requirements(plan))
    return path


# ---------------------------------------------------------------------------
# Splitting a tool's arguments


def _words(text: str) -> frozenset[str]:
    """A set of option names written as white-space separated words."""
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class _Options:
    """One tool's option syntax: which options take a value, which name requirements."""

    with_value: frozenset[str]
    requirements: frozenset[str]  # options whose value is a requirement source
    ours: frozenset[str]  # options sigledger sets itself: the user's are dropped
    refused: frozenset[str] = frozenset()  # options that would undo the hash check


def _split(
    args: Sequence[str], syntax: _Options
) -> tuple[list[tuple[str, str | None]], list[list[str]]]:
    """``(requirements, options)``: requirements as (option or "", value), options as
    word groups (an option and its value stay together)."""
    requirements: list[tuple[str, str | None]] = []
    options: list[list[str]] = []
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            requirements.extend(("", value) for value in args[index + 1 :])
            break
        if not word.startswith("-") or word == "-":
            requirements.append(("", word))
            index += 1
            continue
        name, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", "")
        short_value = not word.startswith("--") and len(word) > 2
        if name in syntax.with_value:
            if eq:
                group, found = [word], value
            elif short_value:
                group, found = [word], word[2:]
            elif index + 1 < len(args):
                group, found = [word, args[index + 1]], args[index + 1]
                index += 1
            else:
                raise ConfigError(f"option {word} needs a value")
            if name in syntax.requirements:
                requirements.append((name, found))
            else:
                options.append(group)
        else:
            options.append([word])
        index += 1
    return requirements, options


_PIP = _Options(
    with_value=_words(
        """
        -r --requirement -c --constraint -e --editable --group -t --target
        --platform --python-version --implementation --abi --root --prefix --src
        --upgrade-strategy -C --config-settings --global-option --report -i
        --index-url --extra-index-url -f --find-links --no-binary --only-binary
        --progress-bar --root-user-action --log --log-file --python --proxy
        --retries --resume-retries --timeout --exists-action --trusted-host --cert
        --client-cert --cache-dir --use-feature --use-deprecated --keyring-provider
        """
    ),
    requirements=_words("-r --requirement -c --constraint -e --editable --group"),
    ours=frozenset({"--report", "--dry-run"}),
)


def _kept(options: list[list[str]], syntax: _Options) -> list[list[str]]:
    """The user's options less those sigledger sets; ConfigError for a refused one."""
    for group in options:
        if _name(group[0]) in syntax.refused:
            raise ConfigError(f"{group[0]} would install files without checking their hashes")
    return [group for group in options if _name(group[0]) not in syntax.ours]


def split_pip_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """pip's arguments as (what names requirements, the options for every pip call).

    Requirement words keep their options (``-r FILE``, ``-e PATH``, ``-c FILE``,
    ``--group G``); the options sigledger sets itself (``--report``,
    ``--dry-run``) are dropped. Every other option (``--no-deps`` too) applies to
    resolving and installing alike.
    """
    requirements, options = _split(args, _PIP)
    req_words: list[str] = []
    for option, value in requirements:
        req_words.extend([option, value or ""] if option else [value or ""])
    return req_words, [w for group in _kept(options, _PIP) for w in group]


def _name(word: str) -> str:
    return word.partition("=")[0] if word.startswith("--") else word[:2]


def _value(group: Sequence[str], syntax: _Options) -> str:
    """The value of an option's word group (``--opt V``, ``--opt=V``, ``-oV``); "" for a flag."""
    if len(group) > 1:
        return group[1]
    word = group[0]
    if _name(word) not in syntax.with_value:
        return ""
    return word.partition("=")[2] if word.startswith("--") else word[2:]


# ---------------------------------------------------------------------------
# pip


def _filename(url: str) -> str:
    try:
        return unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:
        return ""


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def read_pip_report(report: Any, where: str = "pip's report") -> Plan:
    """The plan in a pip installation report (format version 1; see the module docs).

    Raises FormatError for a report without the fields a file needs (a name, a
    version, a URL and a sha256 hash).
    """
    if not isinstance(report, dict) or not isinstance(report.get("install"), list):
        raise FormatError(f"{where}: not a pip installation report (no install list)")
    plan = Plan(pins=[])
    for number, item in enumerate(report["install"]):
        here = f"{where}: install[{number}]"
        name = _get(item, "metadata", "name")
        version = _get(item, "metadata", "version")
        url = _get(item, "download_info", "url")
        if not isinstance(name, str) or not isinstance(url, str):
            raise FormatError(f"{here}: no metadata.name or download_info.url")
        project = canonicalize_name(name)
        info = _get(item, "download_info")
        if "dir_info" in info:
            editable = _get(info, "dir_info", "editable") is True
            requirement = ("-e", url) if editable else (f"{project} @ {url}",)
            what = f"{'editable' if editable else 'directory'} {url}"
            plan.local.append(LocalEntry(project, what, requirement))
            continue
        if "vcs_info" in info:
            vcs = _get(info, "vcs_info", "vcs")
            commit = _get(info, "vcs_info", "commit_id")
            if not isinstance(vcs, str) or not isinstance(commit, str):
                raise FormatError(f"{here}: vcs_info without vcs or commit_id")
            pinned = f"{vcs}+{url}@{commit}"
            plan.local.append(
                LocalEntry(project, f"{vcs} {url}@{commit}", (f"{project} @ {pinned}",))
            )
            continue
        digest = _get(info, "archive_info", "hashes", "sha256")
        if digest is None:
            old = _get(info, "archive_info", "hash")
            if isinstance(old, str) and old.startswith("sha256="):
                digest = old.removeprefix("sha256=")
        if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
            raise FormatError(
                f"{here}: {project} from {url} has no sha256 hash in the report; "
                "the log indexes sha256"
            )
        if not isinstance(version, str):
            raise FormatError(f"{here}: {project} has no metadata.version")
        try:
            version = str(Version(version))
        except InvalidVersion:
            raise FormatError(f"{here}: {project} version {version!r} is not PEP 440") from None
        filename = _filename(url) or None
        source = f"{where}: {project}=={version}"
        plan.pins.append(Pin(project, version, bytes.fromhex(digest), filename, None, source))
        if item.get("is_direct") is True:
            plan.urls[source] = url
    return plan


class Frontend:
    """One installer: resolve to a :class:`Plan`, later install exactly that plan."""

    tool = ""

    def __init__(self, args: Sequence[str], *, out: IO[str] | None = None) -> None:
        self.args = list(args)
        self.out = out  # where install steps print (None: inherit stdout)

    def resolve(self, work: Path) -> Plan:
        raise NotImplementedError

    def install(self, plan: Plan, work: Path) -> None:
        """Install the verified files, then the packages not from an index in the plan
        (the caller has refused them first where that was asked for)."""
        raise NotImplementedError


class PipFrontend(Frontend):
    tool = "pip"

    def __init__(self, args: Sequence[str], *, out: IO[str] | None = None) -> None:
        super().__init__(args, out=out)
        self.requirements, self.options = split_pip_args(self.args)
        if not self.requirements:
            raise ConfigError("nothing to install: name packages, -r FILE or -e PATH")
        self.pip = [sys.executable, "-m", "pip"]

    def resolve(self, work: Path) -> Plan:
        report = work / "pip-report.json"
        cmd = [*self.pip, "install", "--dry-run", "--ignore-installed", "--quiet"]
        cmd += ["--report", str(report), *self.options, *self.requirements]
        _run_quiet(cmd, "pip (resolving, --dry-run)")
        try:
            doc = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InstallerError(f"pip wrote no readable report: {exc}") from None
        return read_pip_report(doc)

    def install(self, plan: Plan, work: Path) -> None:
        if plan.pins:
            hashes = _write_hashes(plan, work)
            cmd = [*self.pip, "install", "--require-hashes", "--no-deps", "-r", str(hashes)]
            _run_install([*cmd, *self.options], "pip install", self.out)
        passed = [w for entry in plan.local for w in entry.requirement]
        if passed:
            cmd = [*self.pip, "install", "--no-deps", *self.options, *passed]
            _run_install(cmd, "pip install (packages not from an index)", self.out)


# ---------------------------------------------------------------------------
# uv pip

_UV_PIP = _Options(
    with_value=_words(
        """
        --allow-insecure-host --cache-dir --cert --color --config-file
        --config-settings-package --default-index --directory --exclude-newer
        --exclude-newer-package --excludes --extra --extra-index-url --fork-strategy
        --group --index --index-strategy --keyring-provider --link-mode --no-binary
        --no-build-isolation-package --no-editable-package --no-sources-package
        --only-binary --output-format --overrides --prefix --prerelease
        --prerelease-package --project --python-platform --python-version
        --refresh-package --reinstall-package --resolution --torch-backend
        --upgrade-group -C --config-setting -P --upgrade-package -b
        --build-constraints -c --constraints -e --editable -f --find-links -i
        --index-url -p --python -r --requirements --requirement -t --target
        """
    ),
    requirements=_words("-r --requirements --requirement -e --editable -c --constraints"),
    ours=frozenset({"--dry-run"}),
    refused=frozenset({"--no-verify-hashes"}),
)
# uv pip install options `uv pip compile` does not take (they say where to install).
_UV_INSTALL_ONLY = _words(
    """
        --break-system-packages --check --compile-bytecode --exact
        --no-break-system-packages --no-editable --no-editable-package
        --output-format --prefix --reinstall --reinstall-package --strict --target
        -t --user --link-mode --require-hashes
        """
)


def _local_path(value: str) -> str:
    """A path argument made absolute (the .in file lives elsewhere); others unchanged."""
    if "://" not in value and "@" not in value and os.path.exists(value):
        return str(Path(value).resolve())
    return value


class UvPipFrontend(Frontend):
    tool = "uv pip"

    def __init__(self, args: Sequence[str], *, out: IO[str] | None = None) -> None:
        super().__init__(args, out=out)
        requirements, options = _split(self.args, _UV_PIP)
        if all(option in {"-c", "--constraints"} for option, _ in requirements):
            raise ConfigError("nothing to install: name packages, -r FILE or -e PATH")
        self.requirements = requirements
        kept = _kept(options, _UV_PIP)
        self.install_options = [w for g in kept for w in g]
        self.compile_options = [w for g in kept if _name(g[0]) not in _UV_INSTALL_ONLY for w in g]
        self.uv = find_uv()

    def _supports_pylock(self) -> bool:
        help_cmd = [self.uv, "pip", "compile", "--help"]
        result = subprocess.run(help_cmd, capture_output=True, text=True, check=False)  # noqa: S603
        return "pylock.toml" in result.stdout

    def resolve(self, work: Path) -> Plan:
        lines: list[str] = []
        sources: list[str] = []
        for option, given in self.requirements:
            value = given or ""
            if option in ("-r", "--requirements", "--requirement"):
                sources.append(_local_path(value))
            elif option in ("-c", "--constraints"):
                sources.extend(["-c", _local_path(value)])
            elif option in ("-e", "--editable"):
                lines.append(f"-e {_local_path(value)}")
            else:
                lines.append(_local_path(value))
        if lines:
            wanted = work / "requirements.in"
            wanted.write_text("\n".join(lines) + "\n")
            sources.append(str(wanted))
        pylock = self._supports_pylock()
        out = work / ("pylock.toml" if pylock else "requirements.txt")
        cmd = [self.uv, "pip", "compile", "--quiet", "--no-header", "-o", str(out)]
        cmd += ["--format", "pylock.toml"] if pylock else ["--generate-hashes"]
        _run_quiet([*cmd, *self.compile_options, *sources], "uv pip compile (resolving)")
        if not pylock:
            return Plan(pins=read_requirements(out))
        return plan_from_pylock(out, TargetEnvironment.current())

    def install(self, plan: Plan, work: Path) -> None:
        if plan.pins:
            hashes = _write_hashes(plan, work)
            cmd = [self.uv, "pip", "install", "--require-hashes", "--no-deps", "-r", str(hashes)]
            _run_install([*cmd, *self.install_options], "uv pip install", self.out)
        passed = [w for entry in plan.local for w in entry.requirement]
        if passed:
            cmd = [self.uv, "pip", "install", "--no-deps", *self.install_options, *passed]
            _run_install(cmd, "uv pip install (packages not from an index)", self.out)


_PACKAGE_INDEX = re.compile(r":packages\[(\d+)\]")


def plan_from_pylock(path: Path, env: TargetEnvironment) -> Plan:
    """The files ``env`` installs from a pylock.toml: per package whose marker holds,
    the file :func:`choose_file` picks; directory and VCS packages as local entries."""
    pins, _ = read_pylock(path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))  # read_pylock checked it
    packages: list[dict[str, Any]] = raw.get("packages", [])
    by_package: dict[int, list[Pin]] = {}
    for pin in pins:
        match = _PACKAGE_INDEX.search(pin.source)
        assert match is not None  # read_pylock names every pin's package
        by_package.setdefault(int(match.group(1)), []).append(pin)
    plan = Plan(pins=[])
    for number, package in enumerate(packages):
        marker = package.get("marker")
        if isinstance(marker, str) and not marker_applies(env, marker):
            continue
        name = str(canonicalize_name(str(package.get("name", ""))))
        directory = package.get("directory")
        vcs = package.get("vcs")
        if isinstance(directory, dict):
            where = (path.parent / str(directory.get("path", "."))).resolve()
            editable = directory.get("editable") is True
            requirement = ("-e", str(where)) if editable else (f"{name} @ {where.as_uri()}",)
            what = f"{'editable' if editable else 'directory'} {where}"
            plan.local.append(LocalEntry(name, what, requirement))
            continue
        if isinstance(vcs, dict):
            url = f"{vcs.get('type')}+{vcs.get('url')}@{vcs.get('commit-id')}"
            plan.local.append(LocalEntry(name, url, (f"{name} @ {url}",)))
            continue
        files = by_package.get(number, [])
        named = {pin.filename: pin for pin in files if pin.filename}
        choice = choose_file(env, named)
        if choice.chosen is None:
            raise FormatError(f"{path}: packages[{number}]: {name}: {choice.reason}")
        # The compiled file is temporary: name the pin by what it is, not where it was.
        chosen = named[choice.chosen]
        source = f"uv pip compile: {chosen.project}=={chosen.version}"
        plan.pins.append(dataclasses.replace(chosen, source=source, name=""))  # name: anew
    return plan


# ---------------------------------------------------------------------------
# uv sync

_UV_SYNC_WITH_VALUE = _words(
    """
        --allow-insecure-host --cache-dir --color --config-file
        --config-settings-package --default-index --directory --exclude-newer
        --exclude-newer-package --extra --extra-index-url --fork-strategy --group
        --index --index-strategy --keyring-provider --link-mode --no-binary-package
        --no-build-isolation-package --no-build-package --no-editable-package
        --no-extra --no-group --no-install-package --no-sources-package --only-group
        --output-format --package --prerelease --prerelease-package --project
        --python-platform --refresh-package --reinstall-package --resolution
        --script --upgrade-group -C --config-setting -P --upgrade-package -f
        --find-links -i --index-url -p --python
        """
)
# uv sync options that `uv lock` does not take (they choose what to install).
_UV_SYNC_ONLY = _words(
    """
        --active --all-extras --all-groups --all-packages --compile-bytecode --extra
        --frozen --group --inexact --locked --no-default-groups --no-dev
        --no-editable --no-editable-package --no-extra --no-group --no-install-local
        --no-install-package --no-install-project --no-install-workspace --only-dev
        --only-group --output-format --package --python-platform --reinstall
        --reinstall-package --link-mode
        """
)


class UvSyncFrontend(Frontend):
    tool = "uv sync"

    def __init__(self, args: Sequence[str], *, out: IO[str] | None = None) -> None:
        super().__init__(args, out=out)
        syntax = _Options(_UV_SYNC_WITH_VALUE, frozenset(), frozenset())
        self.syntax = syntax
        positional, self.groups_of_words = _split(self.args, syntax)
        if positional:
            words = " ".join(value or "" for _, value in positional)
            raise ConfigError(f"uv sync takes no packages (got {words}); add them with uv add")
        self.uv = find_uv()
        # option -> the values given ("" for a flag)
        self.values: dict[str, list[str]] = {}
        for group in self.groups_of_words:
            self.values.setdefault(_name(group[0]), []).append(_value(group, syntax))

    def _given(self, *names: str) -> bool:
        return any(name in self.values for name in names)

    def _project_dir(self) -> Path:
        base = Path(self.values.get("--directory", [os.getcwd()])[-1])
        project = self.values.get("--project", [os.environ.get("UV_PROJECT", "")])[-1]
        start = (base / project) if project else base
        start = start.resolve()
        for folder in (start, *start.parents):
            if (folder / "uv.lock").is_file():
                return folder
        raise ConfigError(f"no uv.lock in {start} or above; run this in a uv project")

    def _selection(self) -> tuple[list[str], list[str] | None]:
        extras = [e for e in self.values.get("--extra", []) if e]
        if self._given("--all-extras"):
            extras.append("*")
        groups: list[str] | None = None  # every group: a superset of what uv installs
        if self._given("--no-dev", "--only-dev", "--only-group", "--no-default-groups"):
            groups = [g for g in self.values.get("--group", []) if g]
            groups += [g for g in self.values.get("--only-group", []) if g]
            if self._given("--only-dev"):
                groups.append("dev")
        return extras, groups

    def _target(self) -> TargetEnvironment:
        """The environment uv sync installs for: the Python ``uv python find`` names
        for the project (its .venv, .python-version, requires-python, ``--python``)."""
        request = (self.values.get("--python") or self.values.get("-p") or [""])[-1]
        where = [w for g in self.groups_of_words if _name(g[0]) in _LOCATION for w in g]
        cmd = [self.uv, "python", "find", "--show-version", *where, *([request] if request else [])]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:  # uv sync will say why; verify for this interpreter
            return TargetEnvironment.current()
        return environment_for_version(result.stdout.strip())

    def resolve(self, work: Path) -> Plan:
        if not self._given("--locked", "--frozen"):
            lock_args = [
                w for g in self.groups_of_words if _name(g[0]) not in _UV_SYNC_ONLY for w in g
            ]
            _run_quiet([self.uv, "lock", "--quiet", *lock_args], "uv lock (resolving)")
        lock = read_uvlock(self._project_dir() / "uv.lock")
        extras, groups = self._selection()
        if "*" in extras:
            extras = sorted({e for p in lock.packages for e in p.optional})
        found = pins_for_environment(lock, self._target(), extras=extras, groups=groups)
        plan = Plan(pins=found.pins, members=found.members)
        # uv sync installs these itself (from the lock): nothing to pass on.
        plan.local = [LocalEntry(name, what, ()) for name, what in found.not_from_index]
        return plan

    def install(self, plan: Plan, work: Path) -> None:
        mode = [] if self._given("--locked", "--frozen") else ["--locked"]
        _run_install([self.uv, "sync", *mode, *self.args], "uv sync", self.out)


# Options that say where the project is (uv python find takes them too).
_LOCATION = frozenset({"--directory", "--project"})


def environment_for_version(version: str) -> TargetEnvironment:
    """This machine and implementation with Python ``version`` ("3.12.4"): this
    interpreter itself when the minor version is the same."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version.split(".")[:2] == running.split("."):
        return TargetEnvironment.current()
    try:
        return TargetEnvironment.from_pip_options(python_version=version)
    except ConfigError:
        return TargetEnvironment.current()


def make_frontend(tool: str, args: Sequence[str], *, out: IO[str] | None = None) -> Frontend:
    """The front-end for ``tool`` ("pip", "uv pip" or "uv sync")."""
    kinds: Mapping[str, type[Frontend]] = {
        "pip": PipFrontend,
        "uv pip": UvPipFrontend,
        "uv sync": UvSyncFrontend,
    }
    return kinds[tool](args, out=out)


def describe_local(entries: Iterable[LocalEntry]) -> list[str]:
    return [f"{entry.name} ({entry.what})" for entry in entries]
