"""The environment an install targets, and which listed file it would install.

Lock files list wheels for every platform and requirements that apply only
behind environment markers. To verify what an installer will really install,
this module answers two questions the way pip answers them:

* :func:`marker_applies` -- does a requirement's marker hold for the target?
* :func:`choose_file` -- of the files listed for one requirement, which one
  would be installed: the wheel with the most preferred compatible tag, else
  the sdist. Every other listed file is "not for this environment".

The target is a :class:`TargetEnvironment`: this interpreter
(:meth:`TargetEnvironment.current`), or another one described by pip's
``--python-version``, ``--platform``, ``--implementation`` and ``--abi``
options (:meth:`TargetEnvironment.from_pip_options`; an option left out means
"like this interpreter", as in pip).

**Tags.** ``TargetEnvironment.tags`` is the list pip's ``get_supported`` builds
from ``packaging.tags``, most preferred first: CPython tags (``cpython_tags``)
or, for other implementations, ``generic_tags``, followed by
``compatible_tags``. For this interpreter on CPython it equals
``packaging.tags.sys_tags()``. Given platforms are expanded as pip expands
them: ``macosx_X_Y_ARCH`` (and ``ios_X_Y_MULTIARCH``) to every older OS release
and compatible binary format, ``manylinux2014_{x86_64,i686}`` to also accept
``manylinux2010``/``manylinux1``, ``manylinux2010_*`` to also accept
``manylinux1``. Nothing else is expanded: like pip, ``manylinux_2_28_x86_64``
does not accept ``manylinux_2_17`` wheels and ``musllinux_1_2`` does not accept
``musllinux_1_1``; name each platform the target supports, most preferred
first.

**Markers.** ``TargetEnvironment.marker_environment`` holds the PEP 508 marker
values known for the target. For this interpreter they are
``packaging.markers.default_environment()``. For another target they are
derived from the options (pip itself evaluates markers against the running
interpreter whatever the options say; verifying for a target needs the
target's values):

* ``--python-version M.m[.p]``: ``python_version`` ``M.m`` and
  ``python_full_version`` ``M.m.p``, with a missing micro taken as 0, as pip
  does when it checks ``Requires-Python`` for a target version (give the micro
  version to decide markers such as ``python_full_version >= "3.12.4"``).
* ``--implementation``: ``implementation_name`` and
  ``platform_python_implementation`` for ``cp``, ``pp``, ``ip`` and ``jy``.
  ``implementation_version`` is known only for CPython, where it is the Python
  version; the generic ``py`` names no implementation at all.
* ``--platform``: ``sys_platform``, ``platform_system``, ``os_name`` and
  ``platform_machine`` from the platform tag -- ``win_amd64`` is
  ``win32``/``Windows``/``nt``/``AMD64``, ``win_arm64`` the same with ``ARM64``,
  ``win32`` the same with the machine unknown (a 32-bit interpreter reports
  the machine Windows runs on); ``linux_ARCH``, ``manylinux*_ARCH`` and
  ``musllinux*_ARCH`` are ``linux``/``Linux``/``posix``/``ARCH`` (a 32-bit
  interpreter on a 64-bit kernel reports the kernel's machine, which a tag
  cannot show); ``macosx_*_arm64`` and ``macosx_*_x86_64`` are
  ``darwin``/``Darwin``/``posix``/the architecture, while the machine of a
  ``universal2``, ``intel`` or other multi-architecture tag is unknown;
  ``ios_*`` is ``ios``/``iOS``/``posix`` (the machine is the device model);
  ``android_*`` is ``android``/``Android``/``posix`` with the ABI's machine.
  ``any`` says nothing about the machine and is skipped. A value is known only
  when every given platform agrees on it. Other platform tags (BSDs,
  Emscripten, ...) give no values.
* ``platform_release`` and ``platform_version`` (the OS kernel's release and
  build) cannot be known for a target given by ``--platform``.

Values that cannot be known are absent from ``marker_environment`` and listed
in ``TargetEnvironment.unknown_markers``. :func:`marker_applies` never guesses
them: a marker that needs one raises :class:`UndecidableMarkerError`.

**Choosing a file.** :func:`choose_file` takes the filenames listed for one
requirement. A compatible wheel beats every sdist; among compatible wheels the
one whose best tag comes first in ``tags`` wins, then the higher build number,
then the smaller filename (so the choice never depends on the input order).
With no compatible wheel, the sdist is chosen (``.tar.gz`` before ``.zip``).
Names that are neither a valid wheel nor a valid sdist filename take no part
in the choice and are returned separately.

The module is pure: it reads only the running interpreter's facts (through
``packaging``) and never touches files or the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from packaging.markers import (
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
    default_environment,
)
from packaging.tags import (
    Tag,
    compatible_tags,
    cpython_tags,
    generic_tags,
    interpreter_name,
    interpreter_version,
    ios_platforms,
    mac_platforms,
)
from packaging.utils import (
    BuildTag,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from sigledger.ledger.errors import ConfigError, FormatError

__all__ = [
    "MARKER_NAMES",
    "Choice",
    "TargetEnvironment",
    "UndecidableMarkerError",
    "choose_file",
    "marker_applies",
]

# The PEP 508 environment marker names (``extra``, ``extras`` and
# ``dependency_groups`` come from the requirement, not the environment).
MARKER_NAMES: frozenset[str] = frozenset(
    {
        "implementation_name",
        "implementation_version",
        "os_name",
        "platform_machine",
        "platform_python_implementation",
        "platform_release",
        "platform_system",
        "platform_version",
        "python_full_version",
        "python_version",
        "sys_platform",
    }
)

# Implementation abbreviations (as in wheel tags) -> (implementation_name,
# platform_python_implementation). "py" is deliberately absent: it names no
# implementation.
_IMPLEMENTATIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "cp": ("cpython", "CPython"),
        "pp": ("pypy", "PyPy"),
        "ip": ("ironpython", "IronPython"),
        "jy": ("jython", "Jython"),
    }
)

_PYTHON_VERSION = re.compile(r"(\d+)(?:\.(\d+)(?:\.(\d+))?)?")
_NAME = re.compile(r"[a-z0-9_]+")
_IMPLEMENTATION = re.compile(r"[a-z][a-z0-9]*")
_APPLE = re.compile(r"(macosx|ios)_(\d+)_(\d+)_([a-z0-9_]+)")
_LEGACY_MANYLINUX = re.compile(r"(manylinux2014|manylinux2010)_([a-z0-9_]+)")
_LINUX = re.compile(r"(?:linux|manylinux1|manylinux2010|manylinux2014)_([a-z0-9_]+)")
_MODERN_LINUX = re.compile(r"(?:manylinux|musllinux)_\d+_\d+_([a-z0-9_]+)")
_ANDROID = re.compile(r"android_\d+_([a-z0-9_]+)")

# Android ABIs -> what platform.machine() reports there.
_ANDROID_MACHINES: Mapping[str, str] = MappingProxyType(
    {"arm64_v8a": "aarch64", "armeabi_v7a": "armv7l", "x86_64": "x86_64", "x86": "i686"}
)
_WINDOWS_MACHINES: Mapping[str, str] = MappingProxyType(
    {"win_amd64": "AMD64", "win_arm64": "ARM64"}
)

# A wheel name's compressed tag set expands to the product of its parts; a
# crafted name could ask for millions. Real wheels list a handful.
_MAX_TAGS_PER_WHEEL = 1024

# Marker variables as they may be spelled in marker text, and the name each
# stands for (packaging accepts the old dotted spellings).
_MARKER_VARIABLE = re.compile(
    r"\b(python_version|python_full_version|os[._]name|sys[._]platform"
    r"|platform_(?:release|system)|platform[._](?:version|machine|python_implementation)"
    r"|python_implementation|implementation_(?:name|version))\b"
)
# PEP 508 strings have no escapes: a quote ends at the next quote of its kind.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class UndecidableMarkerError(ConfigError):
    """A marker needs an environment value that the target does not determine."""

    hint = (
        "Describe the target more fully (--python-version with the micro version, one "
        "--platform per machine kind), or verify on the target machine itself: values such "
        "as platform_release are known only there."
    )


@dataclass(frozen=True)
class TargetEnvironment:
    """An interpreter to install for: this one, or one described by pip's options.

    ``None`` in a field means "like this interpreter". ``python_version`` holds
    two or three numbers; ``platforms`` and ``abis`` are as given (lower case),
    before pip's platform expansion. ``tags`` and the marker values are derived
    once, on construction; see the module documentation.
    """

    python_version: tuple[int, ...] | None = None
    implementation: str | None = None
    platforms: tuple[str, ...] | None = None
    abis: tuple[str, ...] | None = None
    tags: tuple[Tag, ...] = field(init=False, repr=False, compare=False)
    _rank: Mapping[Tag, int] = field(init=False, repr=False, compare=False)
    _markers: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_options(self.python_version, self.implementation, self.platforms, self.abis)
        tags = tuple(_supported_tags(self))
        rank: dict[Tag, int] = {}
        for index, tag in enumerate(tags):
            rank.setdefault(tag, index)  # a repeated tag keeps its best place
        # The dataclass is frozen; derived fields are set once, here.
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "_rank", MappingProxyType(rank))
        object.__setattr__(self, "_markers", MappingProxyType(_marker_values(self)))

    @classmethod
    def current(cls) -> TargetEnvironment:
        """This interpreter, on this machine."""
        return cls()

    @classmethod
    def from_pip_options(
        cls,
        *,
        python_version: str | None = None,
        platforms: Sequence[str] | None = None,
        implementation: str | None = None,
        abis: Sequence[str] | None = None,
    ) -> TargetEnvironment:
        """The target pip's ``--python-version``, ``--platform`` (repeatable),
        ``--implementation`` and ``--abi`` (repeatable) options describe.

        ``python_version`` is ``"3.12"``, ``"3.12.4"`` or pip's ``"312"``; a
        bare major version is refused, as it decides no marker. An option that
        is ``None`` or empty is taken from this interpreter. Raises
        :class:`~sigledger.ledger.errors.ConfigError` for a malformed value.
        """
        version = None if python_version is None else _parse_python_version(python_version)
        return cls(
            python_version=version,
            implementation=None if implementation is None else implementation.strip().lower(),
            platforms=tuple(p.strip().lower() for p in platforms) if platforms else None,
            abis=tuple(a.strip().lower() for a in abis) if abis else None,
        )

    @property
    def is_current(self) -> bool:
        """Every option is this interpreter's."""
        return (
            self.python_version is None
            and self.implementation is None
            and self.platforms is None
            and self.abis is None
        )

    @property
    def marker_environment(self) -> dict[str, str]:
        """The marker values known for the target (a fresh dict for ``Marker.evaluate``)."""
        return dict(self._markers)

    @property
    def unknown_markers(self) -> frozenset[str]:
        """Marker names whose value the target does not determine."""
        return MARKER_NAMES - self._markers.keys()

    def describe(self) -> str:
        """A short name for messages: ``cp312-win_amd64``, ``cp311-linux_x86_64
        (this interpreter)``; several platforms join with ``.`` as in a tag."""
        version = self.python_version or _running_version()
        interpreter = f"{self.implementation or interpreter_name()}{version[0]}{version[1]}"
        if self.platforms is not None:
            where = ".".join(self.platforms)
        else:
            # This machine's most specific platform is the first tag's.
            where = self.tags[0].platform if self.tags else "unknown-platform"
        text = f"{interpreter}-{where}"
        if self.abis is not None:
            text += f" (abi {'.'.join(self.abis)})"
        if self.is_current:
            text += " (this interpreter)"
        return text


def _running_version() -> tuple[int, int]:
    # interpreter_version() is pip's source for the running version ("311").
    nodot = interpreter_version()
    return int(nodot[0]), int(nodot[1:])


def _parse_python_version(text: str) -> tuple[int, ...]:
    """pip's reading of ``--python-version``: dotted, or ``312`` as 3.12."""
    value = text.strip()
    match = _PYTHON_VERSION.fullmatch(value)
    if match is None:
        raise ConfigError(
            f"--python-version {text!r}: expected MAJOR.MINOR[.MICRO] (e.g. 3.12) or MAJORMINOR "
            "(e.g. 312)"
        )
    if "." not in value:
        if len(value) < 2:
            raise ConfigError(
                f"--python-version {text!r}: give the minor version too (e.g. 3.12), "
                "markers need it"
            )
        # pip reads the first digit as the major version: "310" is 3.10.
        return int(value[0]), int(value[1:])
    return tuple(int(part) for part in match.groups() if part is not None)


def _check_options(
    python_version: tuple[int, ...] | None,
    implementation: str | None,
    platforms: tuple[str, ...] | None,
    abis: tuple[str, ...] | None,
) -> None:
    if python_version is not None and (
        len(python_version) not in (2, 3) or any(part < 0 for part in python_version)
    ):
        raise ConfigError(f"python version {python_version!r}: expected (major, minor[, micro])")
    if implementation is not None and not _IMPLEMENTATION.fullmatch(implementation):
        raise ConfigError(
            f"--implementation {implementation!r}: expected a short lower-case name such as "
            "cp, pp or py"
        )
    for option, values in (("--platform", platforms), ("--abi", abis)):
        if values is None:
            continue
        if not values:
            raise ConfigError(f"{option}: an empty list; leave the option out instead")
        for value in values:
            if not _NAME.fullmatch(value):
                raise ConfigError(
                    f"{option} {value!r}: expected a wheel tag part (lower-case letters, "
                    "digits and underscores, e.g. manylinux2014_x86_64)"
                )


def _expand_platform(platform: str) -> list[str]:
    """The platforms pip accepts for one ``--platform`` value."""
    if apple := _APPLE.fullmatch(platform):
        system, major, minor, arch = apple.groups()
        version = (int(major), int(minor))
        if system == "macosx":
            return list(mac_platforms(version, arch))
        return list(ios_platforms(version, arch))
    if legacy := _LEGACY_MANYLINUX.fullmatch(platform):
        policy, arch = legacy.groups()
        # PEP 599 and PEP 571: older manylinux wheels are newer ones too, but
        # manylinux2010/1 were only ever defined for x86_64 and i686.
        if policy == "manylinux2014" and arch in ("x86_64", "i686"):
            return [platform, f"manylinux2010_{arch}", f"manylinux1_{arch}"]
        if policy == "manylinux2010":
            return [platform, f"manylinux1_{arch}"]
    return [platform]


def _supported_tags(env: TargetEnvironment) -> list[Tag]:
    """pip's ``get_supported`` for the target, from ``packaging.tags``."""
    platforms: list[str] | None = None
    if env.platforms is not None:
        platforms = []
        for given in env.platforms:
            if given in platforms:
                continue  # as pip: a platform already accepted adds nothing
            for accepted in _expand_platform(given):
                if accepted not in platforms:
                    platforms.append(accepted)
    implementation = env.implementation or interpreter_name()
    nodot = (
        f"{env.python_version[0]}{env.python_version[1]}"
        if env.python_version is not None
        else interpreter_version()
    )
    interpreter = f"{implementation}{nodot}"
    abis = list(env.abis) if env.abis is not None else None
    python = env.python_version[:2] if env.python_version is not None else None
    tags: list[Tag] = []
    if implementation == "cp":
        tags.extend(cpython_tags(python, abis, platforms))
    else:
        tags.extend(generic_tags(interpreter, abis, platforms))
    tags.extend(compatible_tags(python, interpreter, platforms))
    return tags


def _platform_markers(platform: str) -> dict[str, str]:
    """What one platform tag says about the machine (see the module documentation)."""
    if platform in ("win32", "win_amd64", "win_arm64"):
        found = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
        if platform in _WINDOWS_MACHINES:
            found["platform_machine"] = _WINDOWS_MACHINES[platform]
        return found
    linux = _LINUX.fullmatch(platform) or _MODERN_LINUX.fullmatch(platform)
    if linux:
        return {
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": linux[1],
        }
    apple = _APPLE.fullmatch(platform)
    if apple and apple[1] == "macosx":
        found = {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"}
        if apple[4] in ("arm64", "x86_64"):
            found["platform_machine"] = apple[4]
        return found
    if apple:
        return {"sys_platform": "ios", "platform_system": "iOS", "os_name": "posix"}
    android = _ANDROID.fullmatch(platform)
    if android:
        found = {"sys_platform": "android", "platform_system": "Android", "os_name": "posix"}
        if android[1] in _ANDROID_MACHINES:
            found["platform_machine"] = _ANDROID_MACHINES[android[1]]
        return found
    return {}


def _marker_values(env: TargetEnvironment) -> dict[str, str]:
    # Every value is a string; the filter only tells the type checker so.
    values = {k: v for k, v in default_environment().items() if isinstance(v, str)}
    running = interpreter_name()
    implementation = env.implementation or running
    if env.python_version is not None:
        major, minor, *rest = env.python_version
        values["python_version"] = f"{major}.{minor}"
        values["python_full_version"] = f"{major}.{minor}.{rest[0] if rest else 0}"
    if implementation != running:
        for name in ("implementation_name", "platform_python_implementation"):
            values.pop(name)
        if implementation in _IMPLEMENTATIONS:
            values["implementation_name"], values["platform_python_implementation"] = (
                _IMPLEMENTATIONS[implementation]
            )
    if env.python_version is not None or implementation != running:
        values.pop("implementation_version")
        if implementation == "cp":
            # CPython's implementation version is its Python version.
            values["implementation_version"] = values["python_full_version"]
    if env.platforms is not None:
        for name in ("platform_release", "platform_version"):
            values.pop(name)
        described = [_platform_markers(p) for p in env.platforms if p != "any"]
        for name in ("sys_platform", "platform_system", "os_name", "platform_machine"):
            values.pop(name)
            first = described[0].get(name) if described else None
            if first is not None and all(found.get(name) == first for found in described):
                values[name] = first
    return values


def _variables_in(marker_text: str) -> frozenset[str]:
    """The environment marker names a (well-formed) marker text refers to."""
    names = set()
    for spelled in _MARKER_VARIABLE.findall(_QUOTED.sub(" ", marker_text)):
        name = spelled.replace(".", "_")
        names.add("platform_python_implementation" if name == "python_implementation" else name)
    return frozenset(names)


def marker_applies(
    env: TargetEnvironment,
    marker_text: str,
    extras: Iterable[str] = (),
    *,
    dependency_groups: Iterable[str] = (),
) -> bool:
    """Whether a PEP 508 marker holds for the target.

    ``extras`` are the extras requested: like pip, a marker on ``extra`` holds
    when it holds for any one of them (with none requested, ``extra`` is
    ``""``). Lock-file markers (PEP 751) may also test ``"name" in extras`` and
    ``"name" in dependency_groups``. An empty marker holds.

    Raises :class:`~sigledger.ledger.errors.FormatError` for a malformed
    marker, and :class:`UndecidableMarkerError` when the marker needs a value
    the target does not determine (``env.unknown_markers``), rather than
    guess it.
    """
    if not marker_text.strip():
        return True
    try:
        marker = Marker(marker_text)
    except InvalidMarker as exc:
        raise FormatError(f"malformed environment marker {marker_text!r}: {exc}") from None
    missing = sorted(_variables_in(marker_text) - env._markers.keys())
    if missing:
        raise UndecidableMarkerError(
            f"cannot decide {marker_text!r} for {env.describe()}: "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not known for "
            "this target"
        )
    selected: list[str] = sorted({canonicalize_name(extra) for extra in extras})
    groups = frozenset(canonicalize_name(group) for group in dependency_groups)
    environment: dict[str, str | frozenset[str]] = dict(env._markers)
    environment["extras"] = frozenset(selected)
    environment["dependency_groups"] = groups
    try:
        return any(marker.evaluate({**environment, "extra": extra}) for extra in selected or [""])
    except UndefinedComparison as exc:
        raise FormatError(
            f"environment marker {marker_text!r} cannot be evaluated: {exc}"
        ) from None
    except UndefinedEnvironmentName as exc:  # pragma: no cover - every name is checked above
        raise UndecidableMarkerError(f"cannot decide {marker_text!r}: {exc} is not known") from None


@dataclass(frozen=True, slots=True)
class Choice:
    """The file an installer would take from those listed for one requirement.

    ``chosen`` is None when nothing fits; ``reason`` then says why (``no wheel
    for cp312-manylinux_2_17_x86_64 and no sdist``), and otherwise why the
    chosen file won. ``not_for_this_environment`` holds every other recognised
    file, in input order; ``unrecognised`` the names that are neither a wheel
    nor an sdist filename, in input order. Each distinct input name is in
    exactly one of the three places.
    """

    chosen: str | None
    not_for_this_environment: tuple[str, ...]
    unrecognised: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class _Wheel:
    name: str
    build: BuildTag
    rank: int | None  # index of the best compatible tag in env.tags; None: incompatible


def _tag_count(filename: str) -> int:
    """How many tags a wheel filename's compressed tag set expands to."""
    count = 1
    for part in filename.removesuffix(".whl").split("-")[-3:]:
        count *= part.count(".") + 1
    return count


def _wheel(env: TargetEnvironment, name: str) -> _Wheel | None:
    if _tag_count(name) > _MAX_TAGS_PER_WHEEL:
        return None
    try:
        _, _, build, tags = parse_wheel_filename(name)
    except ValueError:  # InvalidWheelFilename, and InvalidTag/InvalidVersion in older packaging
        return None
    ranks = [env._rank[tag] for tag in tags if tag in env._rank]
    return _Wheel(name, build, min(ranks) if ranks else None)


def _is_sdist(name: str) -> bool:
    try:
        parse_sdist_filename(name)
    except ValueError:  # InvalidSdistFilename, and InvalidVersion in older packaging
        return False
    return True


def choose_file(env: TargetEnvironment, filenames: Iterable[str]) -> Choice:
    """The file pip would install on ``env`` from those listed for one requirement.

    See the module documentation for the ranking.
    """
    names = list(dict.fromkeys(filenames))  # distinct, in input order
    compatible: list[_Wheel] = []
    sdists: list[str] = []
    unrecognised: list[str] = []
    for name in names:
        if name.endswith(".whl"):
            wheel = _wheel(env, name)
            if wheel is None:
                unrecognised.append(name)
            elif wheel.rank is not None:
                compatible.append(wheel)
        elif _is_sdist(name):
            sdists.append(name)
        else:
            unrecognised.append(name)

    chosen: str | None
    if compatible:
        best = min(wheel.rank for wheel in compatible if wheel.rank is not None)
        tied = [wheel for wheel in compatible if wheel.rank == best]
        build = max(wheel.build for wheel in tied)
        chosen = min(wheel.name for wheel in tied if wheel.build == build)
        reason = f"the best wheel for {env.describe()} (tag {env.tags[best]})"
    elif sdists:
        # pip builds an sdist when no wheel fits; .tar.gz is the standard format.
        chosen = min(sdists, key=lambda name: (not name.endswith(".tar.gz"), name))
        reason = f"no wheel for {env.describe()}: the sdist is built and installed"
    else:
        chosen = None
        reason = f"no wheel for {env.describe()} and no sdist"
    skipped = set(unrecognised)
    return Choice(
        chosen=chosen,
        not_for_this_environment=tuple(n for n in names if n != chosen and n not in skipped),
        unrecognised=tuple(unrecognised),
        reason=reason,
    )
