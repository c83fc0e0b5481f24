"""A package index for end-to-end installer tests: minimal wheels, a real pypiserver
over a folder of them, a real ``sigledger serve`` log they are published to, a policy
trusting that log, and pip and uv run isolated from this machine's configuration."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sigledger.client.install.policy import LogTrust, Policy, SignerRule, dump_policy
from sigledger.client.publish.submit import sign_statement
from sigledger.ledger.entry import Statement
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, post_add

ALICE = Signer.from_seed("alice@example.org", hashlib.sha256(b"alice").digest())
BOB = Signer.from_seed("bob@example.org", hashlib.sha256(b"bob").digest())
MALLORY = Signer.from_seed("mallory@example.org", hashlib.sha256(b"mallory").digest())


def wheel(
    name: str,
    version: str,
    body: str = "VALUE = 1\n",
    requires: Sequence[str] = (),
    tag: str = "py3-none-any",
) -> tuple[str, bytes]:
    """A minimal wheel for ``tag`` (compressed tag sets allowed): one module, METADATA
    (with ``Requires-Dist`` lines for ``requires``), WHEEL and RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    interpreters, abis, platforms = tag.split("-")
    wheel_tags = "".join(
        f"Tag: {i}-{a}-{p}\n"
        for i in interpreters.split(".")
        for a in abis.split(".")
        for p in platforms.split(".")
    )
    purelib = "true" if tag == "py3-none-any" else "false"
    files = {
        f"{name.replace('-', '_')}/__init__.py": body.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: sigledger-tests\nRoot-Is-Purelib: {purelib}\n"
            + wheel_tags
        ).encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{tag}.whl", buf.getvalue()


def sdist(name: str, version: str, body: str = "VALUE = 1\n") -> tuple[str, bytes]:
    """A minimal sdist (PEP 625 name, ``PKG-INFO``, ``pyproject.toml``, one module),
    byte-for-byte the same on every call."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/pyproject.toml": (
            f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
            '[build-system]\nrequires = ["setuptools>=77"]\n'
            'build-backend = "setuptools.build_meta"\n'
        ),
        f"{dist}/{name.replace('-', '_')}/__init__.py": body,
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1704067200, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return f"{dist}.tar.gz", out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, accept: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(), dict(e.headers)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def installer_env(tmp: Path) -> dict[str, str]:
    """pip and uv see no configuration of this machine: only the index we give them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        HOME=str(tmp / "home"),
        XDG_CONFIG_HOME=str(tmp / "home" / ".config"),
    )
    return env


def pip_install(
    index: str, target: Path, tmp: Path, *reqs: str
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir"]
    cmd += ["--index-url", index, "--target", str(target), *reqs]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=installer_env(tmp), timeout=120, check=False
    )


def uv_exe() -> str:
    """The uv of the test extras (beside this interpreter), else the one on PATH."""
    uv = Path(sys.executable).parent / "uv"
    exe = str(uv) if uv.exists() else shutil.which("uv")
    assert exe, "uv is not installed; install the test extras: pip install -e '.[test]'"
    return exe


def uv_install(index: str, target: Path, tmp: Path, *reqs: str) -> subprocess.CompletedProcess[str]:
    cmd = [uv_exe(), "pip", "install", "--no-cache", "--python", sys.executable]
    cmd += ["--index-url", index, "--target", str(target), *reqs]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=installer_env(tmp), timeout=120, check=False
    )


def publish(log_url: str, signer: Signer, filename: str, data: bytes) -> None:
    st = Statement.for_file(filename, hashlib.sha256(data).digest(), len(data))
    status, body, _ = asyncio.run(post_add(log_url, [sign_statement(signer, st)]))
    assert status == 200, body


class PyPIServer:
    """A real pypiserver serving ``packages`` on a free loopback port (the same port
    again after :meth:`stop` and :meth:`start`)."""

    launcher: tuple[str, ...] = ("-m", "pypiserver")  # after the Python interpreter
    backend = "simple-dir"

    def __init__(self, packages: Path) -> None:
        self.packages = packages
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PyPIServer:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, *self.launcher, "run", "-p", str(self.port)),
                *("-i", "127.0.0.1", "-a", ".", "-P", ".", "--disable-fallback"),
                *("--backend", self.backend, "--log-stream", "none", str(self.packages)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(self.url, self.proc, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class IndexWorld:
    """A log, an index over ``packages`` and a policy file trusting the log."""

    log: LogProcess
    server: PyPIServer
    packages: Path
    policy_file: Path
    tmp: Path
    files: dict[str, bytes]  # filename -> the bytes published (and served)

    @property
    def index(self) -> str:
        return self.server.url


@dataclass(frozen=True)
class Release:
    """A wheel to build, publish (signed by ``signer``) and serve."""

    project: str
    version: str
    signer: Signer
    requires: tuple[str, ...] = ()


@contextlib.contextmanager
def index_world(
    tmp: Path,
    releases: Sequence[Release],
    rules: Mapping[str, Sequence[Signer]],
    unlogged: Sequence[tuple[str, str]] = (),
) -> Iterator[IndexWorld]:
    """Start a log and a pypiserver; publish ``releases``; serve them and the
    ``unlogged`` (project, version) wheels; write a policy whose per-project rules
    trust ``rules[project]`` (one signature required)."""
    packages = tmp / "packages"
    packages.mkdir()
    log = LogProcess(tmp / "log").start()
    server = PyPIServer(packages)
    try:
        files: dict[str, bytes] = {}
        for r in releases:
            body = f"NAME = {r.project!r}\nVERSION = {r.version!r}\n"
            filename, data = wheel(r.project, r.version, body, r.requires)
            files[filename] = data
            (packages / filename).write_bytes(data)
            publish(log.url, r.signer, filename, data)
        for name, version in unlogged:
            filename, data = wheel(name, version)
            files[filename] = data
            (packages / filename).write_bytes(data)
        server.start()
        verifier = Verifier.from_vkey(log.vkey)
        policy = Policy(
            (LogTrust(log.url, verifier, verifier.name),),
            projects={
                project: SignerRule(frozenset(s.vkey for s in signers), 1)
                for project, signers in rules.items()
            },
        )
        policy_file = tmp / "policy.toml"
        policy_file.write_text(dump_policy(policy))
        yield IndexWorld(log, server, packages, policy_file, tmp, files)
    finally:
        server.stop()
        log.stop()
