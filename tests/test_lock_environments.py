"""Lock files made by the real tools, verified per environment.

A test project depends on ``platpkg`` (wheels for Windows, macOS, manylinux x86_64
and aarch64, a ``py3-none-any`` wheel and an sdist), ``common`` (one pure wheel)
and, behind ``sys_platform == 'win32'``, ``winonly``. Every file is served by a
real pypiserver and published to a real log; ``pip lock``, ``uv export`` (both
formats) and ``uv lock`` lock the project against that index, isolated from this
machine's configuration; ``sigledger verify`` and ``sigledger policy pin`` then
check only what this environment (or a Windows target) installs.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sigledger.client.install.environment import TargetEnvironment, choose_file
from sigledger.client.install.policy import LogTrust, Policy, SignerRule, dump_policy
from sigledger.ledger.note import Verifier
from tests.helpers import ROOT, LogProcess, sigledger_cmd
from tests.index import ALICE, MALLORY, PyPIServer, installer_env, publish, uv_exe, wheel

PLATPKG_TAGS = (
    "cp311-cp311-win_amd64",
    "cp311-cp311-macosx_11_0_arm64",
    "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
    "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64",
    "py3-none-any",
)
WINDOWS_WHEEL = "platpkg-1.0-cp311-cp311-win_amd64.whl"


def tagged_wheel(name: str, version: str, tag: str) -> tuple[str, bytes]:
    """A minimal wheel for ``tag`` whose module says which tag it was built for."""
    return wheel(name, version, body=f"TAG = {tag!r}\n", tag=tag)


def sdist(name: str, version: str) -> tuple[str, bytes]:
    """A minimal sdist: PKG-INFO, pyproject.toml and the module."""
    base = f"{name}-{version}"
    files = {
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{base}/pyproject.toml": (
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        ).encode(),
        f"{base}/{name}/__init__.py": b"TAG = 'sdist'\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1704067200
            tar.addfile(info, io.BytesIO(data))
    return f"{base}.tar.gz", buf.getvalue()


@dataclass
class World:
    tmp: Path
    log: LogProcess
    server: PyPIServer
    policy: Path
    project: Path
    files: dict[str, bytes]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("locks")
    packages = tmp / "packages"
    packages.mkdir()
    built = [tagged_wheel("platpkg", "1.0", tag) for tag in PLATPKG_TAGS]
    built += [sdist("platpkg", "1.0"), sdist("winonly", "1.0")]
    built += [tagged_wheel("common", "1.0", "py3-none-any")]
    built += [tagged_wheel("winonly", "1.0", "py3-none-any")]
    files = dict(built)
    for filename, data in files.items():
        (packages / filename).write_bytes(data)
    log = LogProcess(tmp / "log").start()
    server = PyPIServer(packages)
    try:
        for filename, data in files.items():
            publish(log.url, ALICE, filename, data)
        server.start()
        verifier = Verifier.from_vkey(log.vkey)
        policy = Policy(
            (LogTrust(log.url, verifier, verifier.name),),
            projects={
                p: SignerRule(frozenset({ALICE.vkey}), 1) for p in ("platpkg", "common", "winonly")
            },
        )
        policy_file = tmp / "policy.toml"
        policy_file.write_text(dump_policy(policy))
        project = tmp / "app"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            'dependencies = ["platpkg==1.0", "common", "winonly; sys_platform == \'win32\'"]\n'
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        )
        yield World(tmp, log, server, policy_file, project, files)
    finally:
        server.stop()
        log.stop()


def tool(world: World, *args: str, cwd: Path | None = None) -> str:
    r = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env=installer_env(world.tmp),
        cwd=cwd or world.project,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout


def sigledger(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = installer_env(world.tmp)
    env.update(
        PYTHONPATH=str(ROOT),
        SIGLEDGER_STATE_DIR=str(world.tmp / "state"),
        SIGLEDGER_CACHE_DIR=str(world.tmp / "cache"),
    )
    return subprocess.run(
        [*sigledger_cmd(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def uv_lock(world: World) -> Path:
    lock = world.project / "uv.lock"
    if not lock.exists():
        tool(world, uv_exe(), "lock", "--default-index", world.server.url, "--no-cache")
    return lock


def uv_export(world: World, fmt: str, out: str) -> Path:
    uv_lock(world)
    path = world.tmp / out
    tool(
        world,
        uv_exe(),
        "export",
        "--frozen",
        "--format",
        fmt,
        "--output-file",
        str(path),
        "--no-cache",
    )
    return path


def pip_lock(world: World) -> Path:
    path = world.tmp / "pip-lock" / "pylock.toml"
    path.parent.mkdir(exist_ok=True)
    tool(
        world,
        sys.executable,
        "-m",
        "pip",
        "lock",
        "--isolated",
        "--no-cache-dir",
        "--index-url",
        world.server.url,
        "-o",
        str(path),
        "platpkg==1.0",
        "common",
        "winonly; sys_platform == 'win32'",
    )
    return path


def verify(world: World, *args: str) -> tuple[int, dict[str, Any], str]:
    r = sigledger(world, "verify", "--policy", str(world.policy), "--json", *args)
    return r.returncode, json.loads(r.stdout), r.stderr


def here_platpkg() -> str:
    names = [f"platpkg-1.0-{t}.whl" for t in PLATPKG_TAGS] + ["platpkg-1.0.tar.gz"]
    chosen = choose_file(TargetEnvironment.current(), names).chosen
    assert chosen is not None
    return chosen


WINDOWS = ("--platform", "win_amd64", "--python-version", "3.11")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("maker", ["uv-requirements", "uv-pylock", "uv-lock"])
def test_uv_locks_verify_per_environment(world: World, maker: str) -> None:
    if maker == "uv-requirements":
        lock = uv_export(world, "requirements-txt", "requirements.txt")
        source = ["-r", str(lock)]
    elif maker == "uv-pylock":
        lock = uv_export(world, "pylock.toml", "pylock.toml")
        source = ["--lock", str(lock)]
    else:
        source = ["--lock", str(uv_lock(world))]
    code, doc, err = verify(world, *source)
    assert code == 0, (doc, err)
    checked = sorted(str(r["filename"]) for r in doc["results"])
    assert checked == ["common-1.0-py3-none-any.whl", here_platpkg()]
    skipped = {str(s["filename"]) for s in doc["not_for_environment"]}
    assert WINDOWS_WHEEL in skipped and "winonly-1.0-py3-none-any.whl" in skipped
    assert len(doc["not_from_index"]) == 1, doc["not_from_index"]  # the project itself (-e .)

    code, doc, err = verify(world, *source, *WINDOWS)
    assert code == 0, (doc, err)
    checked = sorted(str(r["filename"]) for r in doc["results"])
    assert checked == ["common-1.0-py3-none-any.whl", WINDOWS_WHEEL, "winonly-1.0-py3-none-any.whl"]
    assert doc["environment"] == "cp311-win_amd64"

    code, doc, err = verify(world, *source, "--all-files")
    assert code == 0, (doc, err)
    assert len(doc["results"]) == len(world.files)


@pytest.mark.timeout(600)
def test_pip_lock_verifies_here(world: World) -> None:
    lock = pip_lock(world)
    code, doc, err = verify(world, "--lock", str(lock))
    assert code == 0, (doc, err)
    checked = sorted(str(r["filename"]) for r in doc["results"])
    assert checked == ["common-1.0-py3-none-any.whl", here_platpkg()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(300)
def test_requirements_text_report_editable_and_require_index_files(world: World) -> None:
    lock = uv_export(world, "requirements-txt", "requirements.txt")
    r = sigledger(world, "verify", "--policy", str(world.policy), "-v", "-r", str(lock))
    assert r.returncode == 0, r.stderr
    assert f"OK: {here_platpkg()}" in r.stderr
    assert "note: . (editable ., " in r.stderr and "not from an index, not checked" in r.stderr
    assert f"SKIP (not for this environment): {WINDOWS_WHEEL}" in r.stderr
    assert 'marker sys_platform == "win32" does not hold for cp311-' in r.stderr
    assert "2 of 2 verified (7 not for this environment, 1 not from an index" in r.stderr
    r = sigledger(
        world, "verify", "--policy", str(world.policy), "-r", str(lock), "--require-index-files"
    )
    assert r.returncode == 1 and "--require-index-files" in r.stderr, r.stderr


@pytest.mark.timeout(300)
def test_hashes_the_log_does_not_know(world: World) -> None:
    here = here_platpkg()
    stranger = "ab" * 32
    reqs = world.tmp / "handwritten.txt"
    reqs.write_text(
        f"platpkg==1.0 --hash=sha256:{sha(world.files[here])} "
        f"--hash=sha256:{sha(world.files[WINDOWS_WHEEL])} --hash=sha256:{stranger}\n"
        "./vendored/lib\n"
        "mylib @ git+https://example.org/mylib.git@v1\n"
    )
    code, doc, err = verify(world, "-r", str(reqs))
    assert code == 0, (doc, err)
    assert [r["filename"] for r in doc["results"]] == [here]
    kinds = {(s["filename"], s["kind"]) for s in doc["not_for_environment"]}
    assert kinds == {(WINDOWS_WHEEL, "not_for_environment"), (None, "not_attributable")}
    assert len(doc["not_from_index"]) == 2

    # nothing listed is logged: every hash is checked, and fails
    reqs.write_text(f"platpkg==1.0 --hash=sha256:{stranger} --hash=sha256:{'cd' * 32}\n")
    code, doc, _ = verify(world, "-r", str(reqs))
    assert code == 1
    assert [r["reason"] for r in doc["results"]] == ["not in the log"] * 2

    # only other platforms' files are logged: nothing for this environment
    reqs.write_text(f"platpkg==1.0 --hash=sha256:{sha(world.files[WINDOWS_WHEEL])}\n")
    code, doc, _ = verify(world, "-r", str(reqs))
    assert code == 1
    assert "no wheel for" in str(doc["results"][0]["reason"])
    code, doc, _ = verify(world, "-r", str(reqs), *WINDOWS)
    assert code == 0, doc


@pytest.mark.timeout(300)
def test_undecidable_marker_is_a_usage_error(world: World) -> None:
    reqs = world.tmp / "release-marker.txt"
    reqs.write_text(
        f"common==1.0 ; platform_release >= '5' "
        f"--hash=sha256:{sha(world.files['common-1.0-py3-none-any.whl'])}\n"
    )
    r = sigledger(world, "verify", "--policy", str(world.policy), "-r", str(reqs), *WINDOWS)
    assert r.returncode == 2, r.stderr
    assert f"{reqs}:1: cannot decide" in r.stderr and 'platform_release >= "5"' in r.stderr
    assert "platform_release is not known for this target" in r.stderr
    r = sigledger(world, "verify", "--policy", str(world.policy), "-r", str(reqs))
    assert r.returncode == 0, r.stderr  # known on this machine


@pytest.mark.timeout(300)
def test_policy_pin_per_environment_and_partial(world: World) -> None:
    state = world.tmp / "pin-policy.toml"
    base = ("policy", "pin", "--log", world.log.url, "--log-key", world.log.vkey)
    r = sigledger(world, *base, "--policy", str(state), "--lock", str(uv_lock(world)), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sorted(doc["projects"]) == ["common", "platpkg"] and doc["written"] is True
    r = sigledger(world, *base, "--policy", str(state), "--lock", str(uv_lock(world)), *WINDOWS)
    assert r.returncode == 0, r.stderr
    assert "pinned winonly" in r.stderr

    reqs = world.tmp / "partial.txt"
    reqs.write_text(
        f"common==1.0 --hash=sha256:{sha(world.files['common-1.0-py3-none-any.whl'])}\n"
        f"ghost==1.0 --hash=sha256:{'ef' * 32}\n"
    )
    partial = world.tmp / "partial-policy.toml"
    r = sigledger(world, *base, "--policy", str(partial), "-r", str(reqs), "--strict")
    assert r.returncode == 1 and "was not written (--strict)" in r.stderr, r.stderr
    assert not partial.exists()
    r = sigledger(world, *base, "--policy", str(partial), "-r", str(reqs))
    assert r.returncode == 1, r.stderr
    assert "FAIL: ghost==1.0 sha256:efefefefefefefef… (" in r.stderr
    assert "pinned common" in r.stderr and "the policy was written for the rest" in r.stderr
    assert "[project.common]" in partial.read_text() and "ghost" not in partial.read_text()


@pytest.mark.timeout(300)
def test_warning_for_another_hash_by_an_untrusted_signer(world: World) -> None:
    """Mallory logs other bytes under the Windows wheel's name: the real one still
    verifies, with a WARN line naming Mallory's entry."""
    publish(world.log.url, MALLORY, WINDOWS_WHEEL, b"other bytes")
    wheel_file = world.tmp / WINDOWS_WHEEL
    wheel_file.write_bytes(world.files[WINDOWS_WHEEL])
    r = sigledger(world, "verify", "--policy", str(world.policy), str(wheel_file))
    assert r.returncode == 0, r.stderr
    assert f"WARN: {wheel_file}: entry #" in r.stderr
    assert f"{MALLORY.vkey} (not trusted for platpkg) logged a different hash" in r.stderr
    assert "1 of 1 verified (1 with warnings)" in r.stderr
    code, doc, _ = verify(world, str(wheel_file))
    assert code == 0
    warning = doc["results"][0]["warnings"][0]
    assert warning["signer"] == MALLORY.vkey and warning["sha256"] == sha(b"other bytes")


@pytest.mark.timeout(300)
def test_front_end_says_warn_too(world: World) -> None:
    common = "common-1.0-py3-none-any.whl"
    publish(world.log.url, MALLORY, common, b"someone else's common")
    target = world.tmp / "installed"
    r = sigledger(
        world,
        "pip",
        "install",
        "--policy",
        str(world.policy),
        "--isolated",
        "--no-cache-dir",
        "--index-url",
        world.server.url,
        "--target",
        str(target),
        "common",
    )
    assert r.returncode == 0, r.stderr
    assert f"WARN: {common}" in r.stderr and "(not trusted for common)" in r.stderr
    assert (target / "common" / "__init__.py").exists()
