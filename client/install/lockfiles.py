r"""Where installers keep the hashes they will accept: requirements files and pylock.toml.

The readers return :class:`Pin` records, one per (requirement or file, SHA-256
digest), grouped by requirement in :class:`LockedRequirement` records
(:func:`read_requirements_entries`, :func:`read_pylock_entries`) that keep each
requirement's environment marker and say which entries are not from an index.
:mod:`sigledger.client.install.selection` decides, per target environment, which
of a requirement's files is installed and therefore checked. SHA-256 is the only
digest the log indexes; sha384/sha512-only entries are errors. Every problem
raises :class:`LockfileError` with a message that starts ``FILE:LINE:``.

**requirements.txt** (pip's format, the hash-pinned subset written by
``pip-compile --generate-hashes``, ``uv pip compile --generate-hashes`` and
``uv export --format requirements-txt``)::

    # comment lines, and comments after white space, are ignored
    --index-url https://pypi.org/simple     # global options: ignored
    -r base.txt                             # include, relative to this file
    -c constraints.txt                      # constraints: skipped, see below
    certifi==2024.8.30 \
        --hash=sha256:7d3b...63cb \
        --hash=sha256:9f6d...7a4b
        # via requests
    colorama==0.4.6 ; sys_platform == "win32" --hash sha256:08695f...
    sampleproject @ https://example.org/sampleproject-4.0.0.tar.gz --hash=sha256:...
    -e .                                    # not from an index: reported, not checked
    mylib @ git+https://example.org/mylib.git@v1   # likewise

The rules, as pip applies them:

* A line ending in a backslash continues on the next line; the joined line has
  the number of its first line. A line carrying a comment is never continued.
* ``#`` starts a comment at the start of a line or after white space (so
  ``#egg=`` in a URL is not one). Environment variables are not expanded.
* A line that starts with ``-`` holds global options. ``-r``/``--requirement``
  includes another file (relative paths are relative to the including file;
  an include cycle is an error). ``-c``/``--constraint`` files are skipped
  entirely: a constraint only narrows versions of requirements named
  elsewhere, pip does not require hashes there and does not reliably apply
  them, so the hashes that decide what is installed are those on requirement
  lines. ``-i``/``--index-url``, ``--extra-index-url``, ``--no-index``,
  ``-f``/``--find-links``, ``--require-hashes``, ``--only-binary``,
  ``--no-binary``, ``--prefer-binary``, ``--pre``, ``--trusted-host`` and
  ``--use-feature`` are ignored; ``-e``/``--editable`` names a source tree or
  checkout, which has no file hash: it is a requirement "not from an index"
  (:attr:`LockedRequirement.local`); any other option is an error.
* Otherwise the words up to the first one starting with ``-`` are a PEP 508
  requirement (parsed by ``packaging.requirements.Requirement``), and the rest
  are its options: ``--hash=ALG:HEX`` or ``--hash ALG:HEX`` (ALG sha256, sha384
  or sha512; hex digits in either case), and the ignored ``--config-settings``/
  ``-C`` and ``--global-option``.
* Local directories and files (a requirement that starts with ``.``, ``/`` or
  ``~``, or a ``file:`` URL, with or without ``NAME @``) and VCS references
  (``NAME @ git+...``, also ``hg+``, ``svn+``, ``bzr+``) are "not from an index"
  too; they need no hash.
* Every other requirement needs at least one ``--hash`` and must be pinned with
  a single ``==`` (or ``===``) version, or be a direct reference ``NAME @ URL``
  (whose version is then unknown). The environment marker is kept
  (:attr:`LockedRequirement.marker`) and evaluated per target by the selection;
  :func:`read_requirements` (every hash of every line, markers ignored, local
  entries an error) is for files whose every line is installed, such as the
  ones the pip front-end writes.
* The file is UTF-8 (an initial BOM is allowed). Lines are split as
  ``str.splitlines`` splits them, as pip does.

**pylock.toml** (PEP 751, ``lock-version = "1.0"``; ``packaging.pylock`` validates
it, accepting any 1.x and rejecting other versions). Each wheel, sdist and
archive yields one Pin with its ``size``, its filename (``name``, else the last
part of ``path``, else of ``url``) and the package's ``version`` (when absent,
the version in a wheel or sdist filename)::

    lock-version = "1.0"
    created-by = "uv"

    [[packages]]
    name = "certifi"
    version = "2024.8.30"
    sdist = { url = "https://files.example/certifi-2024.8.30.tar.gz", size = 168507, hashes = { sha256 = "..." } }
    wheels = [
        { url = "https://files.example/certifi-2024.8.30-py3-none-any.whl", size = 167321, hashes = { sha256 = "..." } },
    ]

    [[packages]]
    name = "sampleproject"
    directory = { path = ".", editable = true }

Packages from a VCS checkout or a directory have no file hash: they are not
errors, :func:`read_pylock` returns them separately and the caller decides
(:func:`read_pylock_entries` marks them "not from an index"). A package's
``marker`` is kept for the selection, evaluated with the lock's
``default-groups`` as the dependency groups asked for; so are the lock's
``environments`` (one of which must hold for the target, else the lock is not
for it: an error) and the ``requires-python`` of the lock and of the package
(each must hold).
Beyond what ``packaging.pylock`` checks, the sha256 value must be 64 hex digits
(either case) and ``size`` must not be negative.

**Command-line hashes** (:func:`pins_from_args`): ``sha256:<64 lowercase hex>``.
"""  # noqa: E501 (the pylock example lines are as long as uv writes them)

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.pylock import Package, Pylock, PylockValidationError
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.client.install.tomlpos import (
    TomlPath,
    TomlPlaces,
    line_of,
    short_repr,
    toml_decode_error,
    toml_lines,
)
from sigledger.ledger.encoding import sha256_from_hex
from sigledger.ledger.entry import parse_release_filename
from sigledger.ledger.errors import FormatError

__all__ = [
    "LockedRequirement",
    "LockfileError",
    "Pin",
    "TomlPath",
    "line_of",
    "pins_from_args",
    "read_pylock",
    "read_pylock_entries",
    "read_requirements",
    "read_requirements_entries",
    "toml_decode_error",
    "toml_lines",
]

# The digest lengths pip accepts for --hash (pip's "strong" hashes), in hex digits.
_HASH_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
# pip's rule: "#" starts a comment at the start of a line or after white space.
# pip writes it as (^|\s+)#, which backtracks quadratically over long runs of
# blanks; a lookbehind finds the same comments in linear time.
_COMMENT = re.compile(r"(?:^|(?<=\s))#.*$")


class LockfileError(
    FormatError,
    hint="Fix the file named above (or regenerate it with hashes, e.g. "
    "`pip-compile --generate-hashes` or `uv export -o pylock.toml`) and try again.",
):
    """A requirements file, pylock.toml or hash argument cannot be used."""


@dataclass(frozen=True, slots=True)
class Pin:
    """One SHA-256 digest an installer will accept, and what is known of its file.

    The one record the installer checks (:mod:`sigledger.client.install.verdicts`),
    whether it comes from a lock file, a ``sha256:`` argument or a file on disk.
    """

    project: str | None  # PEP 503 canonical; None when unknown (a bare digest)
    version: str | None  # PEP 440 normalized; None when unknown (direct references)
    sha256: bytes  # 32 bytes
    filename: str | None  # known for pylock files and files on disk
    size: int | None  # known for pylock files that record it and files on disk
    source: str  # "requirements.txt:12", "pylock.toml:packages[3].wheels[0]", "argument 1"
    name: str = ""
    """For display (and, for a file on disk, its path); derived from the rest if empty."""

    def __post_init__(self) -> None:
        if self.name:
            return
        if self.filename is not None:
            name = f"{self.filename} ({self.source})"
        elif self.project is not None:
            digest = self.sha256.hex()[:16]
            what = self.project if self.version is None else f"{self.project}=={self.version}"
            name = f"{what} sha256:{digest}… ({self.source})"
        else:
            name = f"sha256:{self.sha256.hex()}"
        object.__setattr__(self, "name", name)


@dataclass(frozen=True, slots=True)
class LockedRequirement:
    """One requirement line of a requirements file, or one package of a lock file.

    ``pins`` are the files (pylock: with their filenames) or hashes (requirements
    files: no filenames) it accepts, one of which the installer installs.
    ``local`` says why an entry is not from an index (``"editable ."``,
    ``"vcs git+https://..."``, ``"directory ./lib"``); such an entry has no pins.
    """

    project: str | None  # PEP 503 canonical; None for a bare path or an editable tree
    version: str | None
    marker: str  # "" when the requirement has none
    pins: tuple[Pin, ...]
    source: str  # "requirements.txt:12", "pylock.toml:packages[3]"
    local: str | None = None
    dependency_groups: tuple[str, ...] = ()  # what "... in dependency_groups" tests
    # pylock.toml's lock-wide ``environments`` (one must hold) and ``requires-python``
    # of the lock and the package (each must hold), as written.
    environments: tuple[str, ...] = ()
    requires_python: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """For display: ``certifi==2024.8.30 (requirements.txt:3)``, ``. (requirements.txt:9)``."""
        if self.project is None:
            what = self.local or "?"
        elif self.version is None:
            what = self.project
        else:
            what = f"{self.project}=={self.version}"
        return f"{what} ({self.source})"


# ---------------------------------------------------------------------------
# Command-line hashes


def pins_from_args(values: Sequence[str]) -> list[Pin]:
    """Pins for ``sha256:<64 lowercase hex>`` strings (project and version unknown).

    The project (unknown), version, filename and size are None, and
    ``source`` is ``"argument N"`` (1-based).
    """
    pins: list[Pin] = []
    for number, value in enumerate(values, start=1):
        digest = sha256_from_hex(value[7:]) if value.startswith("sha256:") else None
        if digest is None:
            raise LockfileError(
                f"argument {number}: {short_repr(value)} is not sha256:<64 lowercase hex digits>"
            )
        pins.append(Pin(None, None, digest, None, None, f"argument {number}"))
    return pins


# ---------------------------------------------------------------------------
# requirements.txt

_GLOBAL_WITH_VALUE = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
    "--use-feature",
}
_GLOBAL_FLAGS = {"--no-index", "--require-hashes", "--pre", "--prefer-binary"}
_REQ_OPTIONS_WITH_VALUE = {"-C", "--config-settings", "--global-option"}
_VCS_SCHEMES = ("git+", "hg+", "svn+", "bzr+")


def _local_kind(location: str) -> str | None:
    """``"vcs"``/``"directory"``/``"file"`` for a location not served by an index."""
    if location.startswith(_VCS_SCHEMES):
        return "vcs"
    if location.startswith("file:"):
        return "file"
    if location.startswith((".", "/", "~")) or re.match(r"[A-Za-z]:[\\/]", location):
        return "directory" if not location.endswith((".whl", ".tar.gz", ".zip")) else "file"
    return None


def _read_text(path: Path, where: str) -> str:
    """The UTF-8 text of a regular file (an initial BOM dropped)."""
    try:
        # A device or FIFO could block forever or never end.
        regular = path.is_file()
        data = path.read_bytes() if regular else b""
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise LockfileError(f"{where}: cannot read {short_repr(str(path))}: {exc}") from None
    if not regular:
        problem = "is not a regular file" if path.exists() else "does not exist"
        raise LockfileError(f"{where}: {short_repr(str(path))} {problem}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LockfileError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines and drop comments; (first line number, text)."""
    result: list[tuple[int, str]] = []
    parts: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        has_comment = _COMMENT.search(line) is not None
        if line.endswith("\\") and not has_comment:
            if not parts:
                first = number
            parts.append(line[:-1])
            continue
        if parts:
            parts.append(line)
            result.append((first, "".join(parts)))
            parts = []
        else:
            result.append((number, line))
    if parts:  # the file ends with a backslash
        result.append((first, "".join(parts)))
    return [(number, _COMMENT.sub("", line).strip()) for number, line in result]


def _split_words(text: str, where: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise LockfileError(f"{where}: cannot split options: {exc}") from None


def _option_value(words: list[str], index: int, where: str) -> tuple[str, str, int]:
    """(option, value, next index) for ``--opt=V``, ``--opt V``, ``-oV`` or ``-o V``."""
    word = words[index]
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        if eq:
            return name, value, index + 1
    elif len(word) > 2:
        return word[:2], word[2:], index + 1
    else:
        name = word
    if index + 1 >= len(words):
        raise LockfileError(f"{where}: option {name} needs a value")
    return name, words[index + 1], index + 2


def _option_name(word: str) -> str:
    if word.startswith("--"):
        return word.partition("=")[0]
    return word[:2]


class _RequirementsReader:
    def __init__(self) -> None:
        self.entries: list[LockedRequirement] = []
        # The files being read, outermost first: (resolved path, name as shown).
        self.stack: list[tuple[Path, str]] = []

    def read(self, path: Path, where: str) -> None:
        shown = str(path)
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
            raise LockfileError(f"{where}: cannot read {short_repr(shown)}: {exc}") from None
        open_files = [p for p, _ in self.stack]
        if resolved in open_files:
            names = [name for _, name in self.stack[open_files.index(resolved) :]]
            raise LockfileError(f"{where}: include cycle: {' -> '.join([*names, shown])}")
        text = _read_text(path, where)
        self.stack.append((resolved, shown))
        for number, line in _logical_lines(text):
            if not line:
                continue
            here = f"{shown}:{number}"
            if line.startswith("-"):
                self.option_line(path, line, here)
            else:
                self.requirement_line(line, here)
        self.stack.pop()

    def option_line(self, path: Path, line: str, where: str) -> None:
        words = _split_words(line, where)
        index = 0
        while index < len(words):
            word = words[index]
            name = _option_name(word)
            if name in ("-r", "--requirement"):
                _, value, index = _option_value(words, index, where)
                self.include(path, value, where)
            elif name in ("-c", "--constraint"):
                _, _, index = _option_value(words, index, where)
            elif name in ("-e", "--editable"):
                _, value, index = _option_value(words, index, where)
                self.local_line(value, f"editable {value}", where)
            elif name in _GLOBAL_WITH_VALUE:
                _, _, index = _option_value(words, index, where)
            elif word in _GLOBAL_FLAGS:
                index += 1
            elif name == "--hash":
                raise LockfileError(
                    f"{where}: --hash without a requirement on its line (is a backslash "
                    "missing on the line above, or a comment in the middle of a requirement?)"
                )
            else:
                raise LockfileError(f"{where}: unknown or unsupported option {short_repr(word)}")

    def include(self, path: Path, value: str, where: str) -> None:
        if "://" in value:
            raise LockfileError(f"{where}: cannot include {short_repr(value)}: only local files")
        target = Path(value)
        if not target.is_absolute():
            target = path.parent / target
        self.read(target, where)

    def local_line(self, location: str, kind: str, where: str) -> None:
        """An entry not from an index: a source tree, a checkout or a local file."""
        spec, _, marker = location.partition(";")
        project = None
        egg = re.search(r"#egg=([A-Za-z0-9._-]+)", spec)
        if egg:
            project = str(canonicalize_name(egg[1]))
        self.entries.append(LockedRequirement(project, None, marker.strip(), (), where, local=kind))

    def requirement_line(self, line: str, where: str) -> None:
        # pip's split: the words before the first one that starts with "-" are
        # the requirement, the rest are its options.
        words = line.split(" ")
        cut = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        spec = " ".join(words[:cut]).strip()
        kind = _local_kind(spec)
        if kind is not None:  # pip's bare paths and file: URLs
            self.local_line(spec, f"{kind} {spec.partition(';')[0].strip()}", where)
            return
        option_words = _split_words(" ".join(words[cut:]), where)
        hashes: dict[str, list[str]] = {}
        index = 0
        while index < len(option_words):
            name = _option_name(option_words[index])
            if name == "--hash":
                _, value, index = _option_value(option_words, index, where)
                alg, hexdigest = _parse_hash(value, where)
                if hexdigest not in hashes.setdefault(alg, []):
                    hashes[alg].append(hexdigest)
            elif name in _REQ_OPTIONS_WITH_VALUE:
                _, _, index = _option_value(option_words, index, where)
            else:
                raise LockfileError(
                    f"{where}: unknown or unsupported option {short_repr(option_words[index])} "
                    "after a requirement"
                )
        req = _parse_requirement(spec, where)
        project = str(canonicalize_name(req.name))
        marker = str(req.marker) if req.marker is not None else ""
        if req.url is not None and (kind := _local_kind(req.url)) is not None:
            self.entries.append(
                LockedRequirement(project, None, marker, (), where, local=f"{kind} {req.url}")
            )
            return
        if not hashes:
            raise LockfileError(f"{where}: {project} is not pinned by hash (no --hash option)")
        if "sha256" not in hashes:
            raise LockfileError(
                f"{where}: {project} has only {', '.join(sorted(hashes))} hashes; "
                "the log indexes sha256, add --hash=sha256:..."
            )
        version = _pinned_version(req, project, where)
        pins = tuple(
            Pin(project, version, bytes.fromhex(hexdigest), None, None, where)
            for hexdigest in hashes["sha256"]
        )
        self.entries.append(LockedRequirement(project, version, marker, pins, where))


def _parse_hash(value: str, where: str) -> tuple[str, str]:
    alg, sep, hexdigest = value.partition(":")
    alg = alg.lower()
    if not sep or alg not in _HASH_HEX_LENGTHS:
        raise LockfileError(
            f"{where}: --hash {short_repr(value)} is not ALG:HEX with ALG sha256, sha384 or sha512"
        )
    length = _HASH_HEX_LENGTHS[alg]
    if len(hexdigest) != length or not all(c in "0123456789abcdefABCDEF" for c in hexdigest):
        raise LockfileError(f"{where}: --hash {short_repr(value)}: want {length} hex digits")
    return alg, hexdigest.lower()


def _parse_requirement(spec: str, where: str) -> Requirement:
    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        # pip's bare archive URLs and paths end up here: they name no project.
        detail = str(exc).splitlines()[0]
        raise LockfileError(
            f"{where}: {short_repr(spec)} is not a PEP 508 requirement ({detail}); "
            "a direct URL is written NAME @ URL"
        ) from None


def _pinned_version(req: Requirement, project: str, where: str) -> str | None:
    """The normalized ``==``/``===`` version; for a direct reference the version its
    URL's filename names (None if the URL names no wheel or sdist of ``project``)."""
    if req.url is not None:
        filename = _basename(req.url, None)
        try:
            named, version = parse_release_filename(filename or "")
        except FormatError:
            return None
        return version if named == project else None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise LockfileError(
            f"{where}: {project} is not pinned to one version with == (got {short_repr(str(req))})"
        )
    try:
        return str(Version(specs[0].version))
    except InvalidVersion:
        raise LockfileError(
            f"{where}: {project} version {short_repr(specs[0].version)} is not a PEP 440 version"
        ) from None


def read_requirements_entries(path: str | Path) -> list[LockedRequirement]:
    """One LockedRequirement per requirement line of a requirements file.

    Includes (``-r``) are read in place, in file order. Entries not from an index
    (editable trees, local paths, ``file:`` URLs, VCS references) are returned
    with ``local`` set. Raises LockfileError (``FILE:LINE: ...``) for anything
    else that cannot be checked against the log: see the module docstring.
    """
    reader = _RequirementsReader()
    path = Path(path)
    reader.read(path, str(path))
    return reader.entries


def read_requirements(path: str | Path) -> list[Pin]:
    """One Pin per (requirement, sha256 digest) of a hash-pinned requirements file,
    markers ignored: for a file whose every line is installed.

    An entry not from an index is an error here (it has no file hash).
    """
    pins: list[Pin] = []
    for entry in read_requirements_entries(path):
        if entry.local is not None:
            what = "editable requirement" if entry.local.startswith("editable") else entry.local
            raise LockfileError(
                f"{entry.source}: {what} is not pinned by hash "
                "(a source tree, checkout or local file has no file hash from an index)"
            )
        pins.extend(entry.pins)
    return pins


# ---------------------------------------------------------------------------
# pylock.toml

_CONTEXT_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _context_path(context: str | None) -> TomlPath:
    """``"packages[3].wheels[0]"`` -> ``("packages", 3, "wheels", 0)``."""
    path: list[str | int] = []
    for match in _CONTEXT_PART.finditer(context or ""):
        path.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    return tuple(path)


def _basename(url: str | None, path: str | None) -> str | None:
    if path:
        return path.replace("\\", "/").rsplit("/", 1)[-1] or None
    if url:
        try:
            url_path = urlsplit(url).path
        except ValueError:
            return None
        return unquote(url_path.rsplit("/", 1)[-1]) or None
    return None


class _PylockReader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._places = TomlPlaces(text, str(path))

    def fail(self, path: TomlPath, message: str) -> LockfileError:
        return LockfileError(f"{self._places.at(path)}: {message}")

    def read(self) -> list[LockedRequirement]:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            line, message = toml_decode_error(exc, self.text)
            raise LockfileError(f"{self.path}:{line}: invalid TOML: {message}") from None
        try:
            lock = Pylock.from_dict(data)
        except PylockValidationError as exc:
            prefix = f"{exc.context}: " if exc.context else ""
            raise self.fail(_context_path(exc.context), f"{prefix}{exc.message}") from None
        groups = tuple(str(g) for g in lock.default_groups or ())
        environments = tuple(str(m) for m in lock.environments or ())
        python = (str(lock.requires_python),) if lock.requires_python else ()
        return [
            self.package(n, package, groups, environments, python)
            for n, package in enumerate(lock.packages)
        ]

    def package(
        self,
        number: int,
        package: Package,
        groups: tuple[str, ...],
        environments: tuple[str, ...],
        python: tuple[str, ...],
    ) -> LockedRequirement:
        base: TomlPath = ("packages", number)
        label = f"packages[{number}]"
        version = str(package.version) if package.version is not None else None
        marker = str(package.marker) if package.marker is not None else ""
        pins: list[Pin] = []
        files: list[tuple[TomlPath, str | None, int | None, Mapping[str, str], bool]] = []
        for index, wheel in enumerate(package.wheels or ()):
            files.append(((*base, "wheels", index), wheel.filename, wheel.size, wheel.hashes, True))
        if package.sdist is not None:
            sdist = package.sdist
            files.append(((*base, "sdist"), sdist.filename, sdist.size, sdist.hashes, True))
        if package.archive is not None:
            archive = package.archive
            name = _basename(archive.url, archive.path)
            files.append(((*base, "archive"), name, archive.size, archive.hashes, False))
        local: str | None = None
        if package.vcs is not None:
            local = f"vcs {package.vcs.url or package.vcs.path}"
        elif package.directory is not None:
            editable = "editable" if package.directory.editable else "directory"
            local = f"{editable} {package.directory.path}"
        for where, filename, size, hashes, is_release in files:
            dotted = label + "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in where[2:]
            )
            if size is not None and size < 0:
                raise self.fail((*where, "size"), f"{dotted}: size {size} is negative")
            digest = hashes.get("sha256")
            if digest is None:
                algs = ", ".join(sorted(hashes))
                raise self.fail(
                    (*where, "hashes"),
                    f"{dotted}: has only {algs} hashes; the log indexes sha256",
                )
            sha256 = sha256_from_hex(digest, any_case=True)
            if sha256 is None:
                raise self.fail(
                    (*where, "hashes", "sha256"),
                    f"{dotted}: sha256 {short_repr(digest)} is not 64 hex digits",
                )
            file_version = version
            if file_version is None and is_release and filename is not None:
                # packaging.pylock checked that wheel and sdist names parse.
                try:
                    file_version = parse_release_filename(filename)[1]
                except FormatError:
                    file_version = None
            pins.append(
                Pin(
                    project=str(package.name),
                    version=file_version,
                    sha256=sha256,
                    filename=filename,
                    size=size,
                    source=f"{self.path}:{dotted}",
                )
            )
        return LockedRequirement(
            str(package.name),
            version,
            marker,
            tuple(pins),
            f"{self.path}:{label}",
            local=local if not pins else None,
            dependency_groups=groups,
            environments=environments,
            requires_python=python
            + ((str(package.requires_python),) if package.requires_python else ()),
        )


def read_pylock(path: str | Path) -> tuple[list[Pin], list[str]]:
    """The Pins of a PEP 751 lock file, and the packages that carry no file hash.

    One Pin per wheel, sdist and archive (each needs a sha256 hash). The second
    list names each VCS or directory package as ``"NAME (vcs|directory,
    FILE:packages[N])"``; whether those are acceptable is the caller's choice.
    Raises LockfileError (``FILE:LINE: ...``).
    """
    pins: list[Pin] = []
    unhashed: list[str] = []
    for entry in read_pylock_entries(path):
        pins.extend(entry.pins)
        if entry.local is not None:
            kind = "vcs" if entry.local.startswith("vcs") else "directory"
            unhashed.append(f"{entry.project} ({kind}, {entry.source})")
    return pins, unhashed


def read_pylock_entries(path: str | Path) -> list[LockedRequirement]:
    """One LockedRequirement per package of a PEP 751 lock file, in file order.

    VCS and directory packages come with ``local`` set (``"vcs URL"``,
    ``"editable PATH"``, ``"directory PATH"``) and no pins. Raises LockfileError
    (``FILE:LINE: ...``).
    """
    path = Path(path)
    text = _read_text(path, str(path))
    return _PylockReader(path, text).read()
