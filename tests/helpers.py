"""Shared test helpers: a real `sigledger serve` subprocess, release files, keys."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

import aiohttp
import pytest
from yarl import URL

from sigledger.client.publish.submit import sign_observation, sign_statement
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import Signed, SignedObservation, SignedStatement, Statement
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.wire import JSON_TYPE, encode_add_request
from tests.memtree import MemoryTree

ROOT = Path(__file__).resolve().parent.parent


def missing_tool(reason: str) -> NoReturn:
    """A test needs a system tool this machine lacks: a visible skip on a developer's
    machine, a failure under CI (``CI`` set), where .ci/run installs what is missing."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (required under CI)")
    pytest.skip(reason)


def sigledger_cmd() -> list[str]:
    """``python -m sigledger`` from the tree under test (see :func:`tree_env`)."""
    return [sys.executable, "-m", "sigledger"]


def tree_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: ``sigledger`` imports from this checkout.

    Without it a subprocess would import whatever ``sigledger`` the interpreter has
    installed, which need not be the code these tests are checking.
    """
    merged = {**os.environ, **(env or {})}
    path = merged.get("PYTHONPATH")
    merged["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return merged


def pump_lines(
    stream: IO[str], keep: list[str]
) -> tuple[queue.Queue[str | None], threading.Thread]:
    """Read a child's ``stream`` in a thread: each line appended to ``keep`` and
    queued, then None at its end (so a reader can wait for a line with a timeout)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        with stream:
            for line in stream:
                keep.append(line)
                lines.put(line)
        lines.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = tree_env(env)
    return subprocess.run(
        [*sigledger_cmd(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


class LogProcess:
    """`sigledger serve` on a free loopback port with its own data directory."""

    command: tuple[str, ...] = ("serve",)

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.args = args
        self.env = tree_env({"SIGLEDGER_LOG_FORMAT": "json", **(env or {})})
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.vkey = ""
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 30.0) -> LogProcess:
        self.data.mkdir(parents=True, exist_ok=True)
        self._stdout = stdout = (self.data.parent / f"{self.data.name}.stdout.log").open("a")
        self.url = self.vkey = ""
        self.proc = subprocess.Popen(
            [
                *sigledger_cmd(),
                *self.command,
                "--data",
                str(self.data),
                "--listen",
                "127.0.0.1:0",
                *self.args,
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert self.proc.stderr is not None
        lines, _ = pump_lines(self.proc.stderr, self.stderr_lines)
        deadline = time.monotonic() + timeout
        while not (self.url and self.vkey):
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise TimeoutError("server did not start: " + "".join(self.stderr_lines)) from None
            if line is None:
                self.proc.wait(timeout=10)
                self._stdout.close()
                raise RuntimeError("server exited: " + "".join(self.stderr_lines))
            if m := re.search(r"listening on (http://\S+)", line):
                self.url = m.group(1)
            if m := re.search(r"verifier key: (\S+)", line):
                self.vkey = m.group(1)
        return self

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._stdout.close()

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self._stdout.close()


def make_release(
    directory: Path,
    project: str = "sampleproject",
    version: str = "1.0.0",
    kind: str = "whl",
    content: bytes | None = None,
) -> Path:
    """A file named like a wheel or sdist (content is arbitrary bytes)."""
    name = project.replace("-", "_")
    filename = f"{name}-{version}-py3-none-any.whl" if kind == "whl" else f"{name}-{version}.tar.gz"
    path = directory / filename
    path.write_bytes(
        content
        if content is not None
        else hashlib.sha256(f"{project} {version} {kind}".encode()).digest() * 10
    )
    return path


def signed(
    signer: Signer,
    project: str = "sampleproject",
    version: str = "1.0.0",
    content: bytes = b"x",
    kind: str = "whl",
) -> SignedStatement:
    name = project.replace("-", "_")
    filename = f"{name}-{version}-py3-none-any.whl" if kind == "whl" else f"{name}-{version}.tar.gz"
    st = Statement.create(
        project, version, filename, hashlib.sha256(content).digest(), len(content)
    )
    return sign_statement(signer, st)


def observed(
    observer: Signer,
    project: str = "sampleproject",
    version: str = "1.0.0",
    content: bytes = b"x",
    kind: str = "whl",
    index_url: str = "https://index.example/simple/",
    observed_ms: int = 1767225600000,
) -> SignedObservation:
    """An observation of the file :func:`signed` would sign, served by ``index_url``."""
    st = signed(observer, project, version, content, kind).statement
    return sign_observation(observer, st, index_url, observed_ms)


async def post_add(
    url: str, statements: list[Signed], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /add`` (JSON) without retries: status, JSON answer, response headers."""
    body = encode_add_request(statements, JSON_TYPE)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            url + "/add", data=body, headers={"Content-Type": JSON_TYPE, **(headers or {})}
        ) as r,
    ):
        return r.status, await r.json(), dict(r.headers)


async def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(URL(url, encoded=True)) as r:
        return r.status, await r.read(), dict(r.headers)


async def read_log(url: str, vkey: str) -> tuple[int, list[bytes]]:
    """Fetch and verify the whole log through the tile API only."""
    status, note, _ = await get(url + "/checkpoint")
    assert status == 200
    cp, _ = open_checkpoint(note, Verifier.from_vkey(vkey))
    entries: list[bytes] = []
    for n in range((cp.size + 255) // 256):
        width = min(256, cp.size - 256 * n)
        ref = tiles.TileRef(-1, n, width)
        status, body, _ = await get(f"{url}/{ref.path}")
        assert status == 200, ref.path
        entries.extend(tiles.decode_entry_bundle(body))
    tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
    assert tree.root() == cp.root
    # the right-edge hash tiles reproduce the root too
    for ref in tiles.tiles_for_size(cp.size):
        status, body, _ = await get(f"{url}/{ref.path}")
        assert status == 200
        for i in range(ref.width):
            assert body[32 * i : 32 * i + 32] == tree.node(8 * ref.level, ref.n * 256 + i)
    return cp.size, entries


class WitnessProcess(LogProcess):
    """`sigledger witness serve` on a free loopback port with its own data directory.

    ``args`` are extra flags (``--config FILE``, ``--log VKEY``, ``--name NAME``);
    ``vkey`` is the witness's cosigner key.
    """

    command = ("witness", "serve")

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(data, *args, env={"SIGLEDGER_WITNESS_LOG_FORMAT": "json", **(env or {})})

    def start(self, timeout: float = 30.0) -> WitnessProcess:
        super().start(timeout)
        return self


def worker_pids(server_pid: int) -> list[int]:
    """Process ids of a server's verification workers (spawned children, Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(entry))
    return out


class ProxyProcess:
    """``sigledger proxy`` on a free loopback port; ``lines`` is everything it logged."""

    def __init__(self, upstream: str, policy: Path, work: Path, *extra: str) -> None:
        self.work = work
        self.args = [
            *sigledger_cmd(),
            "proxy",
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
            "--policy",
            str(policy),
            "--cache",
            str(work / "cache"),
            "--state",
            str(work / "state"),
            "--json-log",
            *extra,
        ]
        self.lines: list[str] = []
        self.url = ""

    def start(self, timeout: float = 30) -> ProxyProcess:
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=tree_env(),
        )
        assert self.proc.stdout is not None
        found, self.pump = pump_lines(self.proc.stdout, self.lines)
        deadline = time.monotonic() + timeout
        while not self.url:
            try:
                line = found.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise TimeoutError("proxy did not start: " + "".join(self.lines)) from None
            if line is None:
                raise RuntimeError("proxy exited: " + "".join(self.lines))
            if m := re.search(r"listening on (http://\S+)/simple/", line):
                self.url = m.group(1)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def index(self) -> str:
        return self.url + "/simple/"

    def cached_files(self) -> int:
        """How many downloads the proxy holds in its cache."""
        files = self.work / "cache" / "files"
        return sum(1 for _ in files.iterdir()) if files.is_dir() else 0

    def stop(self) -> int | None:
        """Stop it (SIGTERM, then kill); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.pump.join(timeout=10)
        return self.proc.returncode

    def log(self) -> str:
        return "".join(self.lines)

    def logged(self, text: str, timeout: float = 10) -> bool:
        """Whether ``text`` shows up in the proxy's output within ``timeout`` seconds
        (its lines arrive through a pipe and a reader thread, a little after the answer)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
