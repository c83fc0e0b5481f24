"""``sigledger pip install``, ``sigledger uv pip install`` and ``sigledger uv sync``:
argument handling and pip reports, then real resolves, verifications and installs
against a real pypiserver and a real log (tests/index.py), with pip and uv
isolated from this machine's configuration."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.client.cli.parser import protect_tool_args
from sigledger.client.install.environment import TargetEnvironment
from sigledger.client.install.frontend import (
    Plan,
    UvPipFrontend,
    UvSyncFrontend,
    environment_for_version,
    hash_requirements,
    plan_from_pylock,
    read_pip_report,
    split_pip_args,
)
from sigledger.client.install.lockfiles import Pin
from sigledger.ledger.errors import ConfigError, FormatError
from tests.helpers import ROOT, sigledger_cmd
from tests.index import (
    ALICE,
    MALLORY,
    IndexWorld,
    Release,
    index_world,
    installer_env,
    wheel,
)

# --- arguments and reports -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["pip", "install", "--json", "--index-url", "U", "demo"],
            ["pip", "install", "--json", "--", "--index-url", "U", "demo"],
        ),
        (
            ["-v", "uv", "pip", "install", "--policy", "P", "--log=L", "-q", "demo", "--json"],
            [
                "-v",
                "uv",
                "pip",
                "install",
                "--policy",
                "P",
                "--log=L",
                "-q",
                "--",
                "demo",
                "--json",
            ],
        ),
        (["uv", "sync"], ["uv", "sync", "--"]),
        (["uv", "sync", "--", "--frozen"], ["uv", "sync", "--", "--frozen"]),
        (["pip", "install", "--help"], ["pip", "install", "--help"]),
        (["verify", "--json", "x"], ["verify", "--json", "x"]),
    ],
)
def test_own_options_end_where_the_tools_begin(argv: list[str], expected: list[str]) -> None:
    assert protect_tool_args(argv) == expected


def test_split_pip_args() -> None:
    reqs, options = split_pip_args(
        [
            "--index-url",
            "http://i/simple/",
            "-r",
            "req.txt",
            "demo>=1",
            "-eDIR",
            "--target=T",
            "--report",
            "x.json",
            "--no-deps",
            "-c",
            "c.txt",
            "--isolated",
        ]
    )
    assert reqs == ["-r", "req.txt", "demo>=1", "-e", "DIR", "-c", "c.txt"]
    assert options == ["--index-url", "http://i/simple/", "--target=T", "--no-deps", "--isolated"]


def _item(name: str, url: str, info: dict[str, Any], *, direct: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "version": "1.0"},
        "is_direct": direct,
        "download_info": {"url": url, **info},
    }


def test_read_pip_report() -> None:
    h = hashlib.sha256(b"x").hexdigest()
    report = {
        "version": "1",
        "install": [
            _item(
                "Demo_Pkg",
                "http://i/p/demo_pkg-1.0-py3-none-any.whl",
                {"archive_info": {"hash": f"sha256={h}", "hashes": {"sha256": h}}},
            ),
            _item(
                "direct",
                "https://f/direct-1.0.tar.gz",
                {"archive_info": {"hash": f"sha256={h}"}},
                direct=True,
            ),
            _item("local", "file:///src/local", {"dir_info": {}}, direct=True),
            _item("ed", "file:///src/ed", {"dir_info": {"editable": True}}, direct=True),
            _item(
                "checkout",
                "https://git.example/c",
                {"vcs_info": {"vcs": "git", "commit_id": "abc123"}},
                direct=True,
            ),
        ],
    }
    plan = read_pip_report(report)
    assert [(p.project, p.version, p.filename) for p in plan.pins] == [
        ("demo-pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl"),
        ("direct", "1.0", "direct-1.0.tar.gz"),
    ]
    assert all(p.sha256.hex() == h for p in plan.pins)
    assert list(plan.urls.values()) == ["https://f/direct-1.0.tar.gz"]
    assert [(e.name, e.requirement) for e in plan.local] == [
        ("local", ("local @ file:///src/local",)),
        ("ed", ("-e", "file:///src/ed")),
        ("checkout", ("checkout @ git+https://git.example/c@abc123",)),
    ]


@pytest.mark.parametrize(
    "report",
    [
        [],
        {"install": None},
        {"install": [{"metadata": {"name": "x"}}]},
        {"install": [_item("x", "http://i/x-1.0.tar.gz", {"archive_info": {"hash": "md5=00"}})]},
        {"install": [_item("x", "http://i/x", {"vcs_info": {"vcs": "git"}})]},
    ],
)
def test_read_pip_report_refuses_what_it_cannot_check(report: Any) -> None:
    with pytest.raises(FormatError):
        read_pip_report(report)


# --- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexWorld]:
    releases = [
        Release("goodpkg", "1.0", ALICE),
        Release("goodpkg", "2.0", MALLORY),  # logged, but not by a signer the policy trusts
        Release("withdep", "1.0", ALICE, ("goodpkg<2",)),
        Release("victim", "1.0", ALICE),  # the index will serve other bytes for it
    ]
    rules = {"goodpkg": [ALICE], "withdep": [ALICE], "victim": [ALICE]}
    with index_world(tmp_path_factory.mktemp("frontend"), releases, rules) as iw:
        yield iw


def sigledger(
    world: IndexWorld, *args: str, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``sigledger ARGS`` with pip and uv isolated from this machine (the tests' index
    only) and sigledger's state kept in the test's folder."""
    env = installer_env(world.tmp)
    env.update(
        PYTHONPATH=str(ROOT),
        SIGLEDGER_STATE_DIR=str(world.tmp / "state"),
        SIGLEDGER_CACHE_DIR=str(world.tmp / "cache"),
        PIP_NO_CACHE_DIR="1",
    )
    return subprocess.run(
        [*sigledger_cmd(), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def pip_args(world: IndexWorld, target: Path, *reqs: str) -> list[str]:
    return ["--isolated", "--index-url", world.index, "--target", str(target), *reqs]


def uv_pip_args(world: IndexWorld, target: Path, *reqs: str) -> list[str]:
    return [
        "--no-cache",
        "--python",
        sys.executable,
        "--index-url",
        world.index,
        "--target",
        str(target),
        *reqs,
    ]


@pytest.mark.timeout(300)
def test_pip_install_verifies_then_installs(world: IndexWorld) -> None:
    target = world.tmp / "pip-clean"
    r = sigledger(
        world,
        "pip",
        "install",
        "--json",
        "--policy",
        str(world.policy_file),
        *pip_args(world, target, "withdep"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["installed"] is True and doc["tool"] == "pip"
    assert sorted(res["filename"] for res in doc["results"]) == [
        "goodpkg-1.0-py3-none-any.whl",
        "withdep-1.0-py3-none-any.whl",
    ]
    assert all(res["trusted_signers"] == [ALICE.vkey] for res in doc["results"])
    assert (target / "goodpkg" / "__init__.py").read_text() == (
        "NAME = 'goodpkg'\nVERSION = '1.0'\n"
    )
    assert (target / "withdep" / "__init__.py").exists()


@pytest.mark.timeout(300)
def test_pip_install_refuses_a_file_the_log_does_not_hold(world: IndexWorld) -> None:
    """The index serves other bytes for one project (a targeted attack): nothing is
    installed, and the message names the file."""
    filename = "victim-1.0-py3-none-any.whl"
    logged = world.files[filename]
    _, evil = wheel("victim", "1.0", "import os  # something else\n")
    (world.packages / filename).write_bytes(evil)
    try:
        for tool, args in [
            (["pip", "install"], pip_args(world, world.tmp / "attack-pip", "goodpkg<2", "victim")),
            (
                ["uv", "pip", "install"],
                uv_pip_args(world, world.tmp / "attack-uv", "goodpkg<2", "victim"),
            ),
        ]:
            r = sigledger(world, *tool, "--policy", str(world.policy_file), *args)
            out = r.stdout + r.stderr
            assert r.returncode == 1, out
            assert f"FAIL: {filename}" in out and "not in the log" in out
            assert f"no log entry holds sha256:{hashlib.sha256(evil).hexdigest()}" in out
            assert "nothing was installed" in out
            target = Path(args[args.index("--target") + 1])
            assert not target.exists() or not any(target.iterdir()), list(target.iterdir())
    finally:
        (world.packages / filename).write_bytes(logged)


@pytest.mark.timeout(300)
def test_pip_install_refuses_an_untrusted_signer(world: IndexWorld) -> None:
    target = world.tmp / "pip-untrusted"
    r = sigledger(
        world,
        "pip",
        "install",
        "--policy",
        str(world.policy_file),
        *pip_args(world, target, "goodpkg==2.0"),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "FAIL: goodpkg-2.0-py3-none-any.whl" in out
    assert "not signed by any trusted signer" in out and MALLORY.vkey in out
    assert not target.exists()
    r = sigledger(
        world,
        "pip",
        "install",
        "--json",
        "--policy",
        str(world.policy_file),
        *pip_args(world, target, "goodpkg==2.0"),
    )
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)  # the report alone: pip's output went to stderr
    assert doc["ok"] is False and doc["installed"] is False
    (result,) = doc["results"]
    assert result["ok"] is False and result["filename"] == "goodpkg-2.0-py3-none-any.whl"
    assert "nothing was installed" in r.stderr and not target.exists()


@pytest.mark.timeout(300)
def test_uv_pip_install_verifies_then_installs(world: IndexWorld) -> None:
    target = world.tmp / "uv-clean"
    r = sigledger(
        world,
        "uv",
        "pip",
        "install",
        "--json",
        "--policy",
        str(world.policy_file),
        *uv_pip_args(world, target, "withdep"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["installed"] is True and doc["tool"] == "uv pip"
    assert sorted(res["filename"] for res in doc["results"]) == [
        "goodpkg-1.0-py3-none-any.whl",
        "withdep-1.0-py3-none-any.whl",
    ]
    assert (target / "goodpkg" / "__init__.py").exists()
    assert (target / "withdep" / "__init__.py").exists()


def _project(folder: Path, dependency: str) -> Path:
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f'dependencies = ["{dependency}"]\n'
    )
    return folder


def _site_packages(project: Path) -> Path:
    found = list((project / ".venv").glob("lib/python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.timeout(300)
def test_uv_sync_verifies_the_lock_then_syncs(world: IndexWorld) -> None:
    project = _project(world.tmp / "proj", "withdep")
    uv_args = ["--index-url", world.index, "--python", sys.executable, "--no-cache"]
    r = sigledger(
        world, "uv", "sync", "--json", "--policy", str(world.policy_file), *uv_args, cwd=project
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["installed"] is True and doc["tool"] == "uv sync"
    assert doc["project"] == ["proj"] and doc["not_from_index"] == []
    assert sorted(res["filename"] for res in doc["results"]) == [
        "goodpkg-1.0-py3-none-any.whl",
        "withdep-1.0-py3-none-any.whl",
    ]
    assert (project / "uv.lock").exists()
    site = _site_packages(project)
    assert (site / "goodpkg" / "__init__.py").exists() and (site / "withdep").is_dir()


@pytest.mark.timeout(300)
def test_uv_sync_refuses_an_untrusted_lock_before_syncing(world: IndexWorld) -> None:
    project = _project(world.tmp / "proj-untrusted", "goodpkg")  # 2.0: untrusted signer
    uv_args = ["--index-url", world.index, "--python", sys.executable, "--no-cache"]
    r = sigledger(world, "uv", "sync", "--policy", str(world.policy_file), *uv_args, cwd=project)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "not signed by any trusted signer" in out and "nothing was installed" in out
    assert (project / "uv.lock").exists() and not (project / ".venv").exists()


# A PEP 517 backend with no requirements: pip builds this project offline.
_BACKEND = """
import base64, hashlib, io, zipfile, os

NAME, VERSION = "localpkg", "0.1"
DIST = f"{NAME}-{VERSION}"
WHEEL = b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
META = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\nRequires-Dist: goodpkg<2\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {
        f"{NAME}/__init__.py": b"LOCAL = True\\n",
        f"{DIST}.dist-info/METADATA": META.encode(),
        f"{DIST}.dist-info/WHEEL": WHEEL,
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{DIST}.dist-info/RECORD,,")
    files[f"{DIST}.dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = f"{DIST}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name
"""


def _local_project(world: IndexWorld) -> Path:
    local = world.tmp / "localpkg"
    if not local.exists():
        local.mkdir()
        (local / "pyproject.toml").write_text(
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        )
        (local / "backend.py").write_text(_BACKEND)
    return local


@pytest.mark.timeout(300)
def test_local_directories_pass_unless_index_files_are_required(world: IndexWorld) -> None:
    local = _local_project(world)
    policy = ["--policy", str(world.policy_file)]
    strict = world.tmp / "local-strict"
    r = sigledger(
        world,
        "pip",
        "install",
        *policy,
        "--require-index-files",
        *pip_args(world, strict, str(local)),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "FAIL: localpkg (directory file://" in out and "not from an index" in out
    assert "nothing was installed" in out and not strict.exists()
    target = world.tmp / "local-pass"
    r = sigledger(world, "pip", "install", *policy, *pip_args(world, target, str(local)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "note: localpkg (directory file://" in out and "not checked" in out
    assert "OK: goodpkg-1.0-py3-none-any.whl" in out
    assert (target / "localpkg" / "__init__.py").exists()
    assert (target / "goodpkg" / "__init__.py").exists()


def test_usage_errors(world: IndexWorld, tmp_path: Path) -> None:
    policy = ["--policy", str(world.policy_file)]
    r = sigledger(world, "pip", "install", *policy)
    assert r.returncode == 2 and "nothing to install" in r.stderr
    r = sigledger(world, "uv", "sync", *policy, "demo", cwd=tmp_path)
    assert r.returncode == 2 and "uv sync takes no packages" in r.stderr
    r = sigledger(world, "uv", "sync", *policy, "--frozen", cwd=tmp_path)
    assert r.returncode == 2 and "no uv.lock" in r.stderr
    r = sigledger(world, "pip", "install", "--policy", str(tmp_path / "none.toml"), "demo")
    assert r.returncode == 2 and "no trust policy" in r.stderr


@pytest.mark.timeout(300)
def test_uv_pip_local_directories(world: IndexWorld) -> None:
    local = _local_project(world)
    policy = ["--policy", str(world.policy_file)]
    strict = world.tmp / "uv-local-strict"
    args = uv_pip_args(world, strict, str(local))
    r = sigledger(world, "uv", "pip", "install", *policy, "--require-index-files", *args)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "FAIL: localpkg (directory " in out and "nothing was installed" in out
    assert not strict.exists()
    target = world.tmp / "uv-local-pass"
    r = sigledger(world, "uv", "pip", "install", *policy, *uv_pip_args(world, target, str(local)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "note: localpkg (directory " in out and "OK: goodpkg-1.0-py3-none-any.whl" in out
    assert (target / "localpkg" / "__init__.py").exists()
    assert (target / "goodpkg" / "__init__.py").exists()


@settings(max_examples=300, deadline=None)
@given(
    hs.recursive(
        hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=12),
        lambda c: (
            hs.lists(c, max_size=3)
            | hs.dictionaries(
                hs.sampled_from(
                    [
                        "install",
                        "metadata",
                        "name",
                        "version",
                        "download_info",
                        "url",
                        "archive_info",
                        "hashes",
                        "hash",
                        "sha256",
                        "dir_info",
                        "editable",
                        "vcs_info",
                        "vcs",
                        "commit_id",
                        "is_direct",
                    ]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_read_pip_report_raises_only_format_errors(doc: Any) -> None:
    for candidate in (doc, {"install": doc}, {"install": [doc]}):
        try:
            read_pip_report(candidate)
        except FormatError:
            pass


def test_options_that_would_undo_the_hash_check_are_refused() -> None:
    with pytest.raises(ConfigError, match="--no-verify-hashes would install files without"):
        UvPipFrontend(["--no-verify-hashes", "demo"])


def test_one_requirement_line_per_package() -> None:
    a, b, c = (hashlib.sha256(x).digest() for x in (b"a", b"b", b"c"))
    plan = Plan(
        pins=[
            Pin("demo", "1.0", a, None, None, "r.txt:1"),
            Pin("demo", "1.0", b, None, None, "r.txt:1"),
            Pin("direct", "2.0", c, "direct-2.0.tar.gz", None, "report: direct"),
        ],
        urls={"report: direct": "https://f/direct-2.0.tar.gz"},
    )
    assert hash_requirements(plan) == (
        f"demo==1.0 --hash=sha256:{a.hex()} --hash=sha256:{b.hex()}\n"
        f"direct @ https://f/direct-2.0.tar.gz --hash=sha256:{c.hex()}\n"
    )


def test_uv_compiled_files_are_named_by_what_they_are(tmp_path: Path) -> None:
    """uv pip compile's pylock.toml is a temporary file: reports never name it."""
    digest = hashlib.sha256(b"wheel").hexdigest()
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "uv"\n\n[[packages]]\nname = "demo"\n'
        'version = "1.0"\nwheels = [{ url = "https://files.example/demo-1.0-py3-none-any.whl",'
        f' hashes = {{ sha256 = "{digest}" }} }}]\n'
    )
    (pin,) = plan_from_pylock(lock, TargetEnvironment.current()).pins
    assert pin.name == "demo-1.0-py3-none-any.whl (uv pip compile: demo==1.0)"
    assert str(tmp_path) not in pin.name + pin.source


@pytest.mark.timeout(300)
def test_uv_without_pylock_output_verifies_every_listed_hash(
    world: IndexWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older uv writes requirements with --generate-hashes: every hash is checked."""
    for key, value in installer_env(world.tmp).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith(("PIP_", "UV_"))]:
        if key not in installer_env(world.tmp):
            monkeypatch.delenv(key)
    frontend = UvPipFrontend(uv_pip_args(world, tmp_path / "t", "withdep"))
    monkeypatch.setattr(frontend, "_supports_pylock", lambda: False)
    plan = frontend.resolve(tmp_path)
    assert sorted((p.project, p.version) for p in plan.pins) == [
        ("goodpkg", "1.0"),
        ("withdep", "1.0"),
    ]
    good = world.files["goodpkg-1.0-py3-none-any.whl"]
    assert hashlib.sha256(good).digest() in {p.sha256 for p in plan.pins}


def test_uv_sync_verifies_for_the_python_uv_would_use() -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert environment_for_version(f"{running}.99").is_current
    other = environment_for_version("3.99.1")
    assert other.python_version == (3, 99, 1) and not other.is_current
    assert other.marker_environment["python_full_version"] == "3.99.1"
    assert UvSyncFrontend(["--python", sys.executable])._target().is_current
