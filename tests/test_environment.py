"""Target environments, marker evaluation and file choice (client/install/environment.py)."""

from __future__ import annotations

import platform
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from packaging.markers import Marker, default_environment
from packaging.tags import Tag, sys_tags
from packaging.utils import parse_wheel_filename

from sigledger.client.install.environment import (
    MARKER_NAMES,
    Choice,
    TargetEnvironment,
    UndecidableMarkerError,
    choose_file,
    marker_applies,
)
from sigledger.ledger.errors import ConfigError, FormatError, LedgerError


def target(
    python_version: str = "3.12",
    *platforms: str,
    implementation: str = "cp",
    abis: tuple[str, ...] | None = None,
) -> TargetEnvironment:
    """A cross target; the implementation is explicit so the host's does not matter."""
    return TargetEnvironment.from_pip_options(
        python_version=python_version,
        platforms=list(platforms) or None,
        implementation=implementation,
        abis=abis,
    )


WIN = target("3.12", "win_amd64")
MAC_ARM = target("3.11", "macosx_11_0_arm64")
LINUX_ARM = target("3.12", "manylinux2014_aarch64")
LINUX = target("3.12", "manylinux2014_x86_64")
MUSL = target("3.12", "musllinux_1_2_x86_64")


def platform_markers(env: TargetEnvironment) -> dict[str, str]:
    keys = ("sys_platform", "platform_system", "os_name", "platform_machine")
    found = env.marker_environment
    return {k: found[k] for k in keys if k in found}


# ---------------------------------------------------------------------------
# This interpreter


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython tag order")
def test_current_tags_are_packagings_sys_tags() -> None:
    assert TargetEnvironment.current().tags == tuple(sys_tags())


def test_current_markers_are_the_default_environment() -> None:
    env = TargetEnvironment.current()
    assert env.marker_environment == dict(default_environment())
    assert env.unknown_markers == frozenset()
    assert env.is_current
    assert env.describe().endswith(" (this interpreter)")


def test_no_options_is_the_current_interpreter() -> None:
    env = TargetEnvironment.from_pip_options(
        python_version=None, platforms=[], implementation=None, abis=[]
    )
    assert env == TargetEnvironment.current()
    assert env.tags == TargetEnvironment.current().tags
    assert env.marker_environment == TargetEnvironment.current().marker_environment


def test_marker_environment_is_a_fresh_copy() -> None:
    env = TargetEnvironment.current()
    env.marker_environment["sys_platform"] = "nowhere"
    assert env.marker_environment["sys_platform"] != "nowhere"


def test_current_chooses_a_pure_wheel_over_the_sdist() -> None:
    choice = choose_file(
        TargetEnvironment.current(), ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl"]
    )
    assert choice.chosen == "demo-1.0-py3-none-any.whl"
    assert choice.not_for_this_environment == ("demo-1.0.tar.gz",)


# ---------------------------------------------------------------------------
# pip's options


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("3.12", (3, 12)),
        ("312", (3, 12)),
        ("310", (3, 10)),
        ("37", (3, 7)),
        (" 3.12 ", (3, 12)),
        ("3.12.4", (3, 12, 4)),
    ],
)
def test_python_version_is_read_as_pip_reads_it(text: str, parsed: tuple[int, ...]) -> None:
    env = TargetEnvironment.from_pip_options(python_version=text, implementation="cp")
    assert env.python_version == parsed
    assert env.marker_environment["python_version"] == f"{parsed[0]}.{parsed[1]}"
    assert env.tags[0].interpreter == f"cp{parsed[0]}{parsed[1]}"


@pytest.mark.parametrize("text", ["3", "", "3.", "3.x", "three", "3.12.4.1", "3-12", "v3.12"])
def test_malformed_python_version_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--python-version"):
        TargetEnvironment.from_pip_options(python_version=text)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("platforms", ["many linux"]),
        ("platforms", ["manylinux-x86-64"]),
        ("platforms", [""]),
        ("abis", ["cp312-x"]),
        ("implementation", "c p"),
        ("implementation", ""),
    ],
)
def test_malformed_options_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        TargetEnvironment.from_pip_options(**{option: value})


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError):
        TargetEnvironment(python_version=(3,))
    with pytest.raises(ConfigError):
        TargetEnvironment(platforms=())


def test_platform_and_abi_spelling_is_normalised_to_lower_case() -> None:
    env = TargetEnvironment.from_pip_options(
        python_version="3.12", platforms=["Win_AMD64"], implementation="CP", abis=["CP312"]
    )
    assert env.platforms == ("win_amd64",)
    assert env.abis == ("cp312",)
    assert env.implementation == "cp"
    assert env.tags[0] == Tag("cp312", "cp312", "win_amd64")


def test_targets_are_hashable_values() -> None:
    assert target("3.12", "win_amd64") == WIN
    assert hash(target("3.12", "win_amd64")) == hash(WIN)
    assert target("3.12", "win_amd64") != target("3.12", "win_arm64")


# ---------------------------------------------------------------------------
# Cross targets: tags and marker values


def test_windows_cp312() -> None:
    assert WIN.tags[:3] == (
        Tag("cp312", "cp312", "win_amd64"),
        Tag("cp312", "abi3", "win_amd64"),
        Tag("cp312", "none", "win_amd64"),
    )
    assert WIN.tags[-1] == Tag("py30", "none", "any")
    assert platform_markers(WIN) == {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "os_name": "nt",
        "platform_machine": "AMD64",
    }
    assert WIN.marker_environment["python_version"] == "3.12"
    assert WIN.marker_environment["python_full_version"] == "3.12.0"
    assert WIN.marker_environment["implementation_name"] == "cpython"
    assert WIN.marker_environment["platform_python_implementation"] == "CPython"
    assert WIN.marker_environment["implementation_version"] == "3.12.0"
    assert WIN.unknown_markers == {"platform_release", "platform_version"}
    assert WIN.describe() == "cp312-win_amd64"


def test_macos_arm64_cp311_accepts_older_releases_and_universal2() -> None:
    platforms = [tag.platform for tag in MAC_ARM.tags]
    assert platforms[0] == "macosx_11_0_arm64"
    assert "macosx_10_9_universal2" in platforms
    assert "macosx_12_0_arm64" not in platforms  # needs a newer macOS than the target's
    assert "macosx_10_9_x86_64" not in platforms  # another architecture
    assert platform_markers(MAC_ARM) == {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "os_name": "posix",
        "platform_machine": "arm64",
    }
    files = [
        "demo-1.0-cp311-cp311-macosx_10_9_x86_64.whl",
        "demo-1.0-cp311-cp311-macosx_10_9_universal2.whl",
        "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "demo-1.0-cp311-cp311-macosx_12_0_arm64.whl",
        "demo-1.0.tar.gz",
    ]
    assert choose_file(MAC_ARM, files).chosen == "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl"
    without_arm = [f for f in files if "11_0_arm64" not in f]
    assert (
        choose_file(MAC_ARM, without_arm).chosen
        == "demo-1.0-cp311-cp311-macosx_10_9_universal2.whl"
    )


def test_manylinux_aarch64() -> None:
    assert platform_markers(LINUX_ARM) == {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "aarch64",
    }
    # manylinux2010/manylinux1 were never defined for aarch64: nothing is added.
    assert {tag.platform for tag in LINUX_ARM.tags} == {"manylinux2014_aarch64", "any"}
    files = [
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_28_aarch64.whl",
        "demo-1.0-cp312-cp312-win_amd64.whl",
    ]
    choice = choose_file(LINUX_ARM, files)
    assert choice.chosen == "demo-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert choice.not_for_this_environment == (files[0], files[2], files[3])


def test_manylinux2014_x86_64_accepts_manylinux2010_and_manylinux1_as_pip_does() -> None:
    assert [tag.platform for tag in LINUX.tags[:3]] == [
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]
    files = ["demo-1.0-cp312-cp312-manylinux1_x86_64.whl", "demo-1.0.tar.gz"]
    assert choose_file(LINUX, files).chosen == files[0]
    two_thousand_ten = target("3.12", "manylinux2010_x86_64")
    assert [tag.platform for tag in two_thousand_ten.tags[:2]] == [
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]


def test_platforms_keep_the_given_order_without_repeats() -> None:
    env = target("3.12", "manylinux1_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64")
    order = list(dict.fromkeys(tag.platform for tag in env.tags if tag.platform != "any"))
    assert order == ["manylinux1_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64"]
    assert env.describe() == "cp312-manylinux1_x86_64.manylinux2014_x86_64.manylinux2010_x86_64"


def test_a_glibc_platform_accepts_only_what_is_named_as_pip_does() -> None:
    only_228 = target("3.12", "manylinux_2_28_x86_64")
    files = [
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
    ]
    assert choose_file(only_228, files[:1]).chosen is None
    both = target("3.12", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
    assert choose_file(both, files).chosen == files[1]  # the first named platform wins
    assert choose_file(both, files[:1]).chosen == files[0]


def test_musllinux_and_manylinux_do_not_mix() -> None:
    files = [
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
        "demo-1.0-cp312-cp312-musllinux_1_1_x86_64.whl",
    ]
    assert choose_file(MUSL, files).chosen == files[1]
    assert choose_file(LINUX, files).chosen == files[0]
    # As in pip, musllinux_1_2 does not imply musllinux_1_1; name both to accept both.
    assert choose_file(MUSL, files[2:]).chosen is None
    assert choose_file(target("3.12", "musllinux_1_2_x86_64", "musllinux_1_1_x86_64"), files[2:])
    assert platform_markers(MUSL) == platform_markers(LINUX)


def test_pure_wheels() -> None:
    files = ["demo-1.0-py2.py3-none-any.whl", "demo-1.0.tar.gz"]
    for env in (WIN, MAC_ARM, LINUX_ARM, MUSL, TargetEnvironment.current()):
        assert choose_file(env, files).chosen == files[0]
    assert choose_file(WIN, ["demo-1.0-py2-none-any.whl"]).chosen is None
    # A platform wheel beats a pure one; the most specific pure tag beats py3.
    assert (
        choose_file(WIN, ["demo-1.0-py3-none-any.whl", "demo-1.0-cp312-none-win_amd64.whl"]).chosen
        == "demo-1.0-cp312-none-win_amd64.whl"
    )
    assert (
        choose_file(WIN, ["demo-1.0-py3-none-any.whl", "demo-1.0-py312-none-any.whl"]).chosen
        == "demo-1.0-py312-none-any.whl"
    )


def test_abi3_wheels() -> None:
    abi3 = "demo-1.0-cp38-abi3-win_amd64.whl"
    exact = "demo-1.0-cp312-cp312-win_amd64.whl"
    newer = "demo-1.0-cp313-abi3-win_amd64.whl"
    assert choose_file(WIN, [abi3, "demo-1.0.tar.gz"]).chosen == abi3
    assert choose_file(WIN, [abi3, exact]).chosen == exact
    assert choose_file(WIN, [newer]).chosen is None  # built for a newer stable ABI
    assert choose_file(target("3.7", "win_amd64"), [abi3]).chosen is None


def test_explicit_abis() -> None:
    env = target("3.12", "win_amd64", abis=("cp312",))
    assert env.tags[0] == Tag("cp312", "cp312", "win_amd64")
    assert env.describe() == "cp312-win_amd64 (abi cp312)"
    none_only = target("3.12", "win_amd64", abis=("none",))
    assert choose_file(none_only, ["demo-1.0-cp312-cp312-win_amd64.whl"]).chosen is None
    assert (
        choose_file(none_only, ["demo-1.0-cp38-abi3-win_amd64.whl"]).chosen
        == "demo-1.0-cp38-abi3-win_amd64.whl"
    )


def test_pypy_target() -> None:
    env = target("3.10", "manylinux2014_x86_64", implementation="pp", abis=("pypy310_pp73",))
    assert env.tags[0] == Tag("pp310", "pypy310_pp73", "manylinux2014_x86_64")
    files = [
        "demo-1.0-cp310-cp310-manylinux2014_x86_64.whl",
        "demo-1.0-pp310-pypy310_pp73-manylinux2014_x86_64.whl",
    ]
    assert choose_file(env, files).chosen == files[1]
    markers = env.marker_environment
    assert markers["implementation_name"] == "pypy"
    assert markers["platform_python_implementation"] == "PyPy"
    assert "implementation_version" in env.unknown_markers  # PyPy's own version


def test_generic_py_implementation_names_no_implementation() -> None:
    env = target("3.12", "win_amd64", implementation="py")
    assert {"implementation_name", "platform_python_implementation"} <= env.unknown_markers
    assert choose_file(env, ["demo-1.0-py3-none-any.whl"]).chosen == "demo-1.0-py3-none-any.whl"
    with pytest.raises(UndecidableMarkerError, match="implementation_name"):
        marker_applies(env, 'implementation_name == "cpython"')


@pytest.mark.parametrize(
    ("platform_tag", "expected"),
    [
        ("win32", {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}),
        (
            "win_arm64",
            {
                "sys_platform": "win32",
                "platform_system": "Windows",
                "os_name": "nt",
                "platform_machine": "ARM64",
            },
        ),
        (
            "linux_armv7l",
            {
                "sys_platform": "linux",
                "platform_system": "Linux",
                "os_name": "posix",
                "platform_machine": "armv7l",
            },
        ),
        (
            "macosx_10_9_x86_64",
            {
                "sys_platform": "darwin",
                "platform_system": "Darwin",
                "os_name": "posix",
                "platform_machine": "x86_64",
            },
        ),
        (
            "macosx_10_9_universal2",
            {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
        ),
        (
            "ios_13_0_arm64_iphoneos",
            {"sys_platform": "ios", "platform_system": "iOS", "os_name": "posix"},
        ),
        (
            "android_24_arm64_v8a",
            {
                "sys_platform": "android",
                "platform_system": "Android",
                "os_name": "posix",
                "platform_machine": "aarch64",
            },
        ),
        ("freebsd_14_0_release_amd64", {}),
        ("any", {}),
    ],
)
def test_marker_values_derived_from_a_platform(platform_tag: str, expected: dict[str, str]) -> None:
    env = target("3.12", platform_tag)
    assert platform_markers(env) == expected
    assert env.unknown_markers == MARKER_NAMES - env.marker_environment.keys()
    assert {"platform_release", "platform_version"} <= env.unknown_markers


def test_platforms_that_disagree_leave_the_value_unknown() -> None:
    mixed = target("3.12", "win_amd64", "manylinux2014_x86_64")
    assert platform_markers(mixed) == {}
    two_arches = target("3.12", "manylinux2014_x86_64", "manylinux2014_aarch64")
    assert platform_markers(two_arches) == {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
    }
    assert platform_markers(target("3.12", "manylinux2014_x86_64", "any")) == platform_markers(
        LINUX
    )


def test_python_version_alone_keeps_this_machine() -> None:
    env = TargetEnvironment.from_pip_options(python_version="3.9", implementation="cp")
    here = dict(default_environment())
    for name in ("sys_platform", "platform_system", "os_name", "platform_machine"):
        assert env.marker_environment[name] == here[name]
    assert env.marker_environment["platform_release"] == here["platform_release"]
    assert env.marker_environment["python_version"] == "3.9"
    assert env.marker_environment["implementation_version"] == "3.9.0"
    assert {tag.platform for tag in env.tags} == {tag.platform for tag in sys_tags()}


# ---------------------------------------------------------------------------
# Choosing a file


def test_sdist_fallback_prefers_tar_gz() -> None:
    files = ["demo-1.0.zip", "demo-1.0-cp312-cp312-win_amd64.whl", "demo-1.0.tar.gz"]
    choice = choose_file(LINUX, files)
    assert choice == Choice(
        chosen="demo-1.0.tar.gz",
        not_for_this_environment=("demo-1.0.zip", "demo-1.0-cp312-cp312-win_amd64.whl"),
        unrecognised=(),
        reason="no wheel for cp312-manylinux2014_x86_64: the sdist is built and installed",
    )
    assert choose_file(LINUX, ["demo-1.0.zip"]).chosen == "demo-1.0.zip"


def test_nothing_fits() -> None:
    env = target("3.12", "manylinux_2_17_x86_64")
    files = ["demo-1.0-cp312-cp312-win_amd64.whl", "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"]
    choice = choose_file(env, files)
    assert choice.chosen is None
    assert choice.reason == "no wheel for cp312-manylinux_2_17_x86_64 and no sdist"
    assert choice.not_for_this_environment == tuple(files)
    assert choose_file(env, []).chosen is None


def test_the_reason_names_the_winning_tag() -> None:
    choice = choose_file(WIN, ["demo-1.0-cp38-abi3-win_amd64.whl"])
    assert choice.reason == "the best wheel for cp312-win_amd64 (tag cp38-abi3-win_amd64)"


def test_ties_go_to_the_higher_build_then_the_smaller_name() -> None:
    files = [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-2-py3-none-any.whl",
        "demo-1.0-10-py3-none-any.whl",
        "demo-1.0-10b-py3-none-any.whl",
    ]
    assert choose_file(WIN, files).chosen == "demo-1.0-10b-py3-none-any.whl"
    # The same file under two spellings of the project name: the smaller name wins.
    assert (
        choose_file(WIN, ["Demo-1.0-py3-none-any.whl", "demo-1.0-py3-none-any.whl"]).chosen
        == "Demo-1.0-py3-none-any.whl"
    )


def test_unrecognised_names_are_listed_apart() -> None:
    files = [
        "README.md",
        "demo-1.0.egg",
        "demo-1.0.tar.bz2",
        "not a wheel.whl",
        "demo-1.0-py3-none.whl",
        "demo-x.y-py3-none-any.whl",
        "demo.tar.gz",
        "demo-1.0-py3-none-any.whl",
    ]
    choice = choose_file(WIN, files)
    assert choice.chosen == "demo-1.0-py3-none-any.whl"
    assert choice.unrecognised == tuple(files[:-1])
    assert choice.not_for_this_environment == ()


def test_a_huge_compressed_tag_set_is_unrecognised() -> None:
    many = ".".join(f"cp3{i}" for i in range(40))
    name = f"demo-1.0-{many}-{many}-{many}.whl"
    assert choose_file(WIN, [name]).unrecognised == (name,)


def test_repeated_names_are_counted_once() -> None:
    files = ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]
    choice = choose_file(WIN, files)
    assert choice.not_for_this_environment == ("demo-1.0.tar.gz",)


# ---------------------------------------------------------------------------
# Markers for a target


@pytest.mark.parametrize(
    ("marker", "win", "linux"),
    [
        ('sys_platform == "win32"', True, False),
        ("sys_platform == 'linux' and platform_machine == 'x86_64'", False, True),
        ('platform_system != "Windows"', False, True),
        ('os.name == "nt"', True, False),  # the old dotted spelling
        ('python_implementation == "CPython"', True, True),
        ('python_version < "3.12"', False, False),
        ('python_version >= "3.12" and implementation_name == "cpython"', True, True),
        ('platform_machine == "platform_release"', False, False),  # a name inside quotes
    ],
)
def test_markers_for_a_target(marker: str, win: bool, linux: bool) -> None:
    assert marker_applies(WIN, marker) is win
    assert marker_applies(LINUX, marker) is linux


def test_python_full_version_takes_a_missing_micro_as_zero() -> None:
    marker = 'python_full_version >= "3.12.4"'
    assert not marker_applies(target("3.12", "win_amd64"), marker)
    assert marker_applies(target("3.12.4", "win_amd64"), marker)
    assert marker_applies(target("3.13", "win_amd64"), marker)


def test_undecidable_markers_are_refused_not_guessed() -> None:
    with pytest.raises(UndecidableMarkerError, match="platform_release is not known") as info:
        marker_applies(WIN, 'sys_platform == "win32" and platform_release >= "10"')
    assert isinstance(info.value, ConfigError)
    assert "cp312-win_amd64" in info.value.diagnostics()
    mixed = target("3.12", "win_amd64", "manylinux2014_x86_64")
    with pytest.raises(UndecidableMarkerError, match="sys_platform"):
        marker_applies(mixed, 'sys_platform == "win32"')
    assert marker_applies(mixed, 'python_version == "3.12"')


@pytest.mark.parametrize(
    "marker",
    ['sys_platform = "win32"', "python_version >", "nonsense", 'os_name ~= "posix"'],
)
def test_malformed_markers_are_format_errors(marker: str) -> None:
    with pytest.raises(FormatError, match="marker"):
        marker_applies(WIN, marker)


def test_an_empty_marker_holds() -> None:
    assert marker_applies(WIN, "")
    assert marker_applies(WIN, "  ")


def test_extras_and_dependency_groups() -> None:
    assert not marker_applies(WIN, 'extra == "socks"')
    assert marker_applies(WIN, 'extra == "socks"', extras=["Socks"])
    assert marker_applies(WIN, 'extra == "socks"', extras=["http2", "socks"])
    assert marker_applies(WIN, '"socks" in extras', extras=["SOCKS"])
    assert not marker_applies(WIN, '"socks" in extras')
    assert marker_applies(WIN, '"dev" in dependency_groups', dependency_groups=["dev"])
    assert not marker_applies(WIN, '"dev" in dependency_groups and sys_platform == "linux"')


def test_errors_reach_the_command_line() -> None:
    for error in (FormatError, UndecidableMarkerError):
        assert issubclass(error, LedgerError)


# ---------------------------------------------------------------------------
# Properties

TARGETS = [
    WIN,
    MAC_ARM,
    LINUX_ARM,
    LINUX,
    MUSL,
    target("3.9", "manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    target("3.12", "win_amd64", abis=("none",)),
    target("3.12", "any"),
]
TARGET_TAGS = {env: frozenset(env.tags) for env in TARGETS}

PYTHONS = ["py3", "py2.py3", "py312", "cp39", "cp311", "cp312", "cp313", "pp310"]
ABIS = ["none", "abi3", "cp39", "cp311", "cp312", "pypy310_pp73"]
PLATFORMS = [
    "any",
    "win_amd64",
    "win32",
    "win_arm64",
    "macosx_10_9_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_universal2",
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux2014_aarch64",
    "musllinux_1_2_x86_64",
    "linux_x86_64",
]


@st.composite
def wheel_names(draw: st.DrawFn) -> str:
    build = draw(st.sampled_from(["", "1-", "2-", "2b-"]))
    tags = "-".join(draw(st.sampled_from(pool)) for pool in (PYTHONS, ABIS, PLATFORMS))
    return f"demo-1.0-{build}{tags}.whl"


filenames = st.lists(
    st.one_of(
        wheel_names(),
        st.sampled_from(["demo-1.0.tar.gz", "demo-1.0.zip", "Demo-1.0.tar.gz"]),
        st.sampled_from(["README.md", "demo-1.0.egg", "bad.whl"]),
    ),
    max_size=12,
)
targets = st.sampled_from(TARGETS)


@settings(max_examples=200, deadline=None)
@given(env=targets, names=filenames)
def test_the_choice_is_a_listed_file_and_every_file_is_accounted_for(
    env: TargetEnvironment, names: list[str]
) -> None:
    choice = choose_file(env, names)
    assert choice.chosen is None or choice.chosen in names
    placed = [*choice.not_for_this_environment, *choice.unrecognised]
    if choice.chosen is not None:
        placed.append(choice.chosen)
    assert sorted(placed) == sorted(set(names))
    assert choice.reason


@settings(max_examples=200, deadline=None)
@given(env=targets, names=filenames, data=st.data())
def test_the_choice_does_not_depend_on_input_order(
    env: TargetEnvironment, names: list[str], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(names))
    assert choose_file(env, shuffled).chosen == choose_file(env, names).chosen


@settings(max_examples=200, deadline=None)
@given(env=targets, names=filenames, extra=wheel_names(), data=st.data())
def test_an_incompatible_wheel_never_changes_the_choice(
    env: TargetEnvironment, names: list[str], extra: str, data: st.DataObject
) -> None:
    assume(not parse_wheel_filename(extra)[3] & TARGET_TAGS[env])
    position = data.draw(st.integers(0, len(names)))
    before = choose_file(env, names)
    after = choose_file(env, [*names[:position], extra, *names[position:]])
    assert after.chosen == before.chosen
    assert extra in after.not_for_this_environment or extra == before.chosen


@settings(max_examples=200, deadline=None)
@given(env=targets, names=filenames)
def test_no_listed_wheel_is_better_than_the_choice(
    env: TargetEnvironment, names: list[str]
) -> None:
    rank = {tag: index for index, tag in reversed(list(enumerate(env.tags)))}

    def best(name: str) -> int | None:
        if not name.endswith(".whl") or name == "bad.whl":
            return None
        found = [rank[t] for t in parse_wheel_filename(name)[3] if t in rank]
        return min(found) if found else None

    ranks = [r for r in map(best, names) if r is not None]
    choice = choose_file(env, names)
    if ranks:
        assert choice.chosen is not None and best(choice.chosen) == min(ranks)
    elif any(n.endswith((".tar.gz", ".zip")) for n in names):
        assert choice.chosen is not None and choice.chosen.endswith((".tar.gz", ".zip"))
        if any(n.endswith(".tar.gz") for n in names):
            assert choice.chosen.endswith(".tar.gz")
    else:
        assert choice.chosen is None


VALUES = {
    "sys_platform": ["linux", "win32", "darwin"],
    "platform_system": ["Linux", "Windows", "Darwin"],
    "os_name": ["posix", "nt"],
    "platform_machine": ["x86_64", "AMD64", "aarch64", "arm64"],
    "python_version": ["3.8", "3.11", "3.12", "3.13"],
    "python_full_version": ["3.11.0", "3.12.4", "3.13.1"],
    "implementation_name": ["cpython", "pypy"],
    "platform_python_implementation": ["CPython", "PyPy"],
}


@st.composite
def markers(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(VALUES)))
        op = draw(st.sampled_from(["==", "!=", "<", ">=", "in", "not in"]))
        parts.append(f'{name} {op} "{draw(st.sampled_from(VALUES[name]))}"')
    return " and ".join(parts) if draw(st.booleans()) else " or ".join(parts)


@settings(max_examples=300, deadline=None)
@given(marker=markers())
def test_this_interpreter_evaluates_markers_as_packaging_does(marker: str) -> None:
    assert marker_applies(TargetEnvironment.current(), marker) is Marker(marker).evaluate()


@settings(max_examples=300, deadline=None)
@given(env=targets, marker=markers())
def test_a_target_evaluates_markers_against_its_own_values(
    env: TargetEnvironment, marker: str
) -> None:
    used = {name for name in VALUES if name in marker}
    if used <= env.marker_environment.keys():
        expected = Marker(marker).evaluate(env.marker_environment)
        assert marker_applies(env, marker) is expected
    else:
        with pytest.raises(UndecidableMarkerError):
            marker_applies(env, marker)
