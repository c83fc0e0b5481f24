"""uv.lock reader and the files one environment installs (client/install/uvlock.py)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigledger.client.install.environment import TargetEnvironment
from sigledger.client.install.uvlock import (
    UvLockError,
    parse_uvlock,
    pins_for_environment,
    read_uvlock,
)
from sigledger.ledger.errors import ConfigError, FormatError


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def f(url_name: str, size: int = 100) -> str:
    return (
        f'{{ url = "https://files.example/{url_name}", hash = "sha256:{sha(url_name)}", '
        f'size = {size}, upload-time = "2024-08-30T01:55:02Z" }}'
    )


# A lock as uv 0.5+ writes it: an editable root project with a dev group and an
# extra, a platform-specific dependency, a fork (two versions of one package), a
# package with wheels for three platforms, a git and a path dependency.
LOCK = f"""\
version = 1
revision = 3
requires-python = ">=3.11"
resolution-markers = [
    "python_full_version >= '3.12'",
    "python_full_version < '3.12'",
]

[[package]]
name = "app"
version = "0.1.0"
source = {{ editable = "." }}
dependencies = [
    {{ name = "certifi" }},
    {{ name = "colorama", marker = "sys_platform == 'win32'" }},
    {{ name = "fastnum" }},
    {{ name = "forked", version = "1.0", source = {{ registry = "https://pypi.org/simple" }}, marker = "python_full_version < '3.12'" }},
    {{ name = "forked", version = "2.0", source = {{ registry = "https://pypi.org/simple" }}, marker = "python_full_version >= '3.12'" }},
    {{ name = "gitdep" }},
]

[package.optional-dependencies]
cli = [
    {{ name = "click" }},
]

[package.dev-dependencies]
dev = [
    {{ name = "pytest" }},
]
docs = [
    {{ name = "localwheel" }},
]

[package.metadata]
requires-dist = [{{ name = "certifi" }}]

[[package]]
name = "certifi"
version = "2024.8.30"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {f("certifi-2024.8.30.tar.gz")}
wheels = [
    {f("certifi-2024.8.30-py3-none-any.whl")},
]

[[package]]
name = "click"
version = "8.1.7"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [
    {{ name = "colorama", marker = "platform_system == 'Windows'" }},
]
wheels = [
    {f("click-8.1.7-py3-none-any.whl")},
]

[[package]]
name = "colorama"
version = "0.4.6"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {f("colorama-0.4.6-py2.py3-none-any.whl")},
]

[[package]]
name = "fastnum"
version = "2.1.0"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {f("fastnum-2.1.0.tar.gz")}
wheels = [
    {f("fastnum-2.1.0-cp311-cp311-macosx_11_0_arm64.whl")},
    {f("fastnum-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")},
    {f("fastnum-2.1.0-cp311-cp311-win_amd64.whl")},
    {f("fastnum-2.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")},
]

[[package]]
name = "forked"
version = "1.0"
source = {{ registry = "https://pypi.org/simple" }}
resolution-markers = [
    "python_full_version < '3.12'",
]
wheels = [
    {f("forked-1.0-py3-none-any.whl")},
]

[[package]]
name = "forked"
version = "2.0"
source = {{ registry = "https://pypi.org/simple" }}
resolution-markers = [
    "python_full_version >= '3.12'",
]
wheels = [
    {f("forked-2.0-py3-none-any.whl")},
]

[[package]]
name = "gitdep"
version = "0.3.0"
source = {{ git = "https://github.com/example/gitdep?rev=main#0123456789abcdef" }}

[[package]]
name = "localwheel"
version = "1.0"
source = {{ path = "wheels/localwheel-1.0-py3-none-any.whl" }}
wheels = [
    {{ filename = "localwheel-1.0-py3-none-any.whl", hash = "sha256:{sha("local")}" }},
]

[[package]]
name = "pytest"
version = "8.3.3"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [
    {{ name = "colorama", marker = "sys_platform == 'win32'" }},
]
sdist = {f("pytest-8.3.3.tar.gz")}
wheels = [
    {f("pytest-8.3.3-py3-none-any.whl")},
]
"""  # noqa: E501

LINUX_311 = TargetEnvironment.from_pip_options(
    python_version="3.11.9",
    platforms=["manylinux_2_17_x86_64"],
    implementation="cp",
    abis=["cp311"],
)
WIN_312 = TargetEnvironment.from_pip_options(
    python_version="3.12.4", platforms=["win_amd64"], implementation="cp", abis=["cp312"]
)


def _files(result: Any) -> list[tuple[str, str | None, str | None]]:
    return [(p.project, p.version, p.filename) for p in result.pins]


def test_linux_environment_installs_its_wheels(tmp_path: Path) -> None:
    path = tmp_path / "uv.lock"
    path.write_text(LOCK)
    lock = read_uvlock(path)
    assert [p.name for p in lock.packages][:3] == ["app", "certifi", "click"]
    result = pins_for_environment(lock, LINUX_311)
    assert _files(result) == [
        ("certifi", "2024.8.30", "certifi-2024.8.30-py3-none-any.whl"),
        (
            "fastnum",
            "2.1.0",
            "fastnum-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        ),
        ("forked", "1.0", "forked-1.0-py3-none-any.whl"),
        ("pytest", "8.3.3", "pytest-8.3.3-py3-none-any.whl"),
    ]
    certifi = result.pins[0]
    assert certifi.sha256.hex() == sha("certifi-2024.8.30-py3-none-any.whl")
    assert certifi.size == 100
    assert certifi.source == f"{path}:package[1].wheels[0]"
    assert result.urls[certifi.source] == (
        "https://files.example/certifi-2024.8.30-py3-none-any.whl"
    )
    assert result.members == ["app"]
    assert result.not_from_index == [
        (
            "gitdep",
            f"git=https://github.com/example/gitdep?rev=main#0123456789abcdef, {path}:package[7]",
        )
    ]


def test_windows_environment_takes_markers_and_fork_into_account() -> None:
    result = pins_for_environment(parse_uvlock(LOCK), WIN_312, extras=["cli"])
    assert _files(result) == [
        ("certifi", "2024.8.30", "certifi-2024.8.30-py3-none-any.whl"),
        ("colorama", "0.4.6", "colorama-0.4.6-py2.py3-none-any.whl"),
        # no cp312 Windows wheel: the sdist is built
        ("fastnum", "2.1.0", "fastnum-2.1.0.tar.gz"),
        ("forked", "2.0", "forked-2.0-py3-none-any.whl"),
        ("pytest", "8.3.3", "pytest-8.3.3-py3-none-any.whl"),
        ("click", "8.1.7", "click-8.1.7-py3-none-any.whl"),
    ]


def test_groups_and_extras() -> None:
    lock = parse_uvlock(LOCK)
    no_dev = pins_for_environment(lock, LINUX_311, groups=())
    assert "pytest" not in {p.project for p in no_dev.pins}
    every = pins_for_environment(lock, LINUX_311, groups=None)
    assert "pytest" in {p.project for p in every.pins}
    assert ("localwheel", "path=wheels/localwheel-1.0-py3-none-any.whl, uv.lock:package[8]") in (
        every.not_from_index
    )
    with_cli = pins_for_environment(lock, LINUX_311, extras=["CLI"])
    assert "click" in {p.project for p in with_cli.pins}
    # colorama only on Windows, also through click
    assert "colorama" not in {p.project for p in with_cli.pins}


def test_workspace_members_are_the_roots() -> None:
    text = LOCK.replace("revision = 3\n", 'revision = 3\n\n[manifest]\nmembers = ["App"]\n', 1)
    result = pins_for_environment(parse_uvlock(text), LINUX_311, groups=())
    assert [p.project for p in result.pins] == ["certifi", "fastnum", "forked"]


def test_no_file_for_the_environment_names_the_package() -> None:
    text = LOCK.replace(f"sdist = {f('fastnum-2.1.0.tar.gz')}\n", "")
    with pytest.raises(UvLockError) as exc:
        pins_for_environment(parse_uvlock(text), WIN_312)
    line = text.splitlines().index('name = "fastnum"')  # the [[package]] header above it
    assert str(exc.value).startswith(f"uv.lock:{line}: fastnum 2.1.0: no wheel for cp312")


def test_missing_dependency_and_undecidable_marker() -> None:
    text = LOCK.replace('{ name = "gitdep" }', '{ name = "nowhere" }')
    with pytest.raises(UvLockError, match="dependency nowhere is not in the lock"):
        pins_for_environment(parse_uvlock(text), LINUX_311)
    text = LOCK.replace("sys_platform == 'win32'\" }", "platform_release == '6.1'\" }", 1)
    with pytest.raises(UvLockError, match="platform_release is not known"):
        pins_for_environment(parse_uvlock(text), LINUX_311)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("version = 1\n", "version = 2\n", "uv.lock:1: version: lock version 2 is not supported"),
        (
            f'hash = "sha256:{sha("certifi-2024.8.30-py3-none-any.whl")}"',
            'hash = "sha512:abcd"',
            "package[1].wheels[0].hash: 'sha512:abcd' is not sha256:<64 hex digits>",
        ),
        ('source = { editable = "." }', "", "package app has no source"),
        ('source = { editable = "." }', 'source = { svn = "x" }', "needs exactly one of"),
        ('version = "2.1.0"', 'version = "two"', "package[4].version: 'two' is not a PEP 440"),
        ("size = 100", "size = -1", "size -1 is not a non-negative integer"),
        ('[[package]]\nname = "click"', "[[package]]\nname = 3", "name: must be a string"),
    ],
)
def test_errors_name_file_line_and_key(old: str, new: str, message: str) -> None:
    text = LOCK.replace(old, new, 1)
    with pytest.raises(UvLockError, match=".*".join(map(_escape, message.split("*")))) as exc:
        parse_uvlock(text)
    assert str(exc.value).startswith("uv.lock:")


def _escape(text: str) -> str:
    return re.escape(text)


def test_error_lines_point_at_the_offending_table() -> None:
    text = LOCK.replace('hash = "sha256:' + sha("pytest-8.3.3.tar.gz"), 'hash = "md5:0', 1)
    with pytest.raises(UvLockError) as exc:
        parse_uvlock(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "md5:0" in t)
    assert str(exc.value).startswith(f"uv.lock:{line}: package[9].sdist.hash:")


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(UvLockError, match="cannot read"):
        read_uvlock(tmp_path / "missing.lock")
    bad = tmp_path / "uv.lock"
    bad.write_bytes(b"version = 1\n[[package]\n")
    with pytest.raises(UvLockError, match=r"uv.lock:2: invalid TOML"):
        read_uvlock(bad)
    bad.write_bytes(b"version = 1\n# \xff\n")
    with pytest.raises(UvLockError, match="not valid UTF-8"):
        read_uvlock(bad)


# --- malformed input never crashes ---------------------------------------------------

_SCALARS = st.one_of(
    st.none().map(lambda _: ""),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20),
    st.sampled_from(["1.0", "sha256:" + "a" * 64, "x-1.0-py3-none-any.whl", "."]),
)
_KEYS = st.sampled_from(
    [
        "name",
        "version",
        "source",
        "registry",
        "editable",
        "git",
        "path",
        "url",
        "hash",
        "size",
        "filename",
        "sdist",
        "wheels",
        "dependencies",
        "marker",
        "extra",
        "optional-dependencies",
        "dev-dependencies",
        "resolution-markers",
        "members",
    ]
)


def _values(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _SCALARS
    inner = _values(depth - 1)
    return st.one_of(
        _SCALARS,
        st.lists(inner, max_size=3),
        st.dictionaries(_KEYS, inner, max_size=4),
    )


def _package() -> st.SearchStrategy[dict[str, Any]]:
    base = tomllib.loads(LOCK)["package"]
    return st.one_of(
        st.sampled_from(base),
        st.builds(
            lambda p, k, v: {**p, k: v},
            st.sampled_from(base),
            _KEYS,
            _values(),
        ),
        st.dictionaries(_KEYS, _values(), max_size=5),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packages=st.lists(_package(), max_size=6),
    manifest=st.none() | st.dictionaries(_KEYS, _values(1), max_size=2),
    version=st.sampled_from([1, 1, 1, 2, "1", True]),
)
def test_malformed_locks_raise_only_format_or_config_errors(
    packages: list[dict[str, Any]], manifest: dict[str, Any] | None, version: object
) -> None:
    doc: dict[str, Any] = {"version": version, "package": packages}
    if manifest is not None:
        doc["manifest"] = manifest
    text = tomli_w.dumps(doc)
    try:
        lock = parse_uvlock(text)
        for env in (LINUX_311, WIN_312):
            pins_for_environment(lock, env, extras=["cli"], groups=None)
    except (FormatError, ConfigError):
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_format_errors(text: str) -> None:
    try:
        parse_uvlock("version = 1\n" + text)
    except FormatError:
        pass
