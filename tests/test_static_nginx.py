"""Static publication served by a real nginx with the deploy configuration.

nginx runs as a child process (one process, no daemon) with a generated top-level
configuration that includes deploy/nginx-static-reads.conf and
deploy/nginx-static-api.conf unchanged, so the deploy files are what is tested.
The log is then read through nginx with the project's own clients, after the log
server has stopped: every answer comes from the files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.remote import LogClient
from sigledger.client.trust import VerifiedLog
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import ROOT, LogProcess, sigledger_cmd, signed, tree_env
from tests.index import free_port

DEPLOY = ROOT / "deploy"
ALICE = Signer.from_seed("alice", bytes([1]) * 32)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


class Nginx:
    """nginx serving ``root`` with the deploy snippets, proxying to ``upstream``."""

    def __init__(self, binary: str, workdir: Path, root: Path, upstream: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        self.config = workdir / "nginx.conf"
        self.config.write_text(
            f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    upstream sigledger {{ server {upstream}; }}
    limit_req_zone $binary_remote_addr zone=sigledger_add:1m rate=100r/s;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        include {DEPLOY / "nginx-static-reads.conf"};
        include {DEPLOY / "nginx-static-api.conf"};
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        check = subprocess.run(
            [
                self.binary,
                "-t",
                "-q",
                "-p",
                str(self.workdir),
                "-e",
                "stderr",
                "-c",
                str(self.config),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr.decode()
        with (self.workdir / "stderr.log").open("wb") as stderr:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.workdir), "-e", "stderr", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "nginx did not start: " + (self.workdir / "stderr.log").read_text()
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def nginx_path() -> str:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs Debian's nginx)")
        pytest.skip("nginx is not installed (apt-get install nginx); static serving untested")
    return binary


@pytest.fixture
def processes() -> Iterator[list[LogProcess | Nginx]]:
    started: list[LogProcess | Nginx] = []
    yield started
    for p in reversed(started):
        if isinstance(p, Nginx):
            p.stop()
        else:
            p.kill()


async def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *sigledger_cmd(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=tree_env(env),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _get(url: str, **headers: str) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        s.get(url, headers={"Accept-Encoding": "identity", **headers}) as r,
    ):
        return r.status, await r.read(), r.headers


async def _size_at(url: str) -> int:
    status, body, _ = await _get(url + "/checkpoint")
    if status != 200:
        return -1
    return int(body.split(b"\n")[1])


async def test_log_read_through_nginx(
    tmp_path: Path, nginx_path: str, processes: list[LogProcess | Nginx]
) -> None:
    public = tmp_path / "public"
    log = LogProcess(tmp_path / "log", "--publish-dir", str(public)).start()
    processes.append(log)
    nginx = Nginx(nginx_path, tmp_path / "nginx", public, log.url.removeprefix("http://"))
    processes.append(nginx.start())
    env = {
        "SIGLEDGER_CACHE_DIR": str(tmp_path / "cache"),
        "SIGLEDGER_STATE_DIR": str(tmp_path / "state"),
    }

    # submissions and lookups go through nginx to the log process
    async with LogClient(nginx.url) as client:
        for start in (0, 300):
            await client.add([signed(ALICE, version=f"{i}.0") for i in range(start, start + 300)])
        found = await client.lookup(project="sampleproject", version="7.0")
        assert [e.index for e in found.entries] == [7]
    deadline = time.monotonic() + 15
    while await _size_at(nginx.url) != 600:
        assert time.monotonic() < deadline, "the publication directory did not reach 600"
        await asyncio.sleep(0.05)

    status, body, _ = await _get(log.url + "/metrics")
    assert b"\nsigledger_static_tree_size 600.0\n" in body

    # from here on nginx has nothing but the files
    assert log.stop() == 0
    status, _, _ = await _get(nginx.url + "/healthz")
    assert status == 502

    rc, out = await _cli("fsck", nginx.url, "--log-key", log.vkey, env=env)
    assert rc == 0, out
    assert "600 entries and 4 hash tiles" in out
    rc, out = await _cli(
        "monitor", "--once", "--log", nginx.url, "--log-key", log.vkey,
        "--state", str(tmp_path / "monitor.db"), env=env,
    )  # fmt: skip
    assert rc == 0, out

    key = Verifier.from_vkey(log.vkey)
    store = FileCheckpointStore(tmp_path / "verified")
    async with VerifiedLog(nginx.url, key, store, use_tiles=True) as verified:
        cp = await verified.checkpoint()
        assert cp.size == 600
        _, note, _ = await _get(nginx.url + "/checkpoint")
        auth = verified.tiles(cp, note)
        await auth.start()
        for index in (0, 255, 256, 599):
            entry = await auth.entry(index)
            proof = await auth.prove_inclusion(index)
            merkle.check_inclusion(index, 600, merkle.leaf_hash(entry), proof, cp.root)

    # cache headers and types, as c2sp.org/tlog-tiles asks
    status, body, h = await _get(nginx.url + "/checkpoint")
    assert status == 200
    open_checkpoint(body, key)
    assert h["Content-Type"] == "text/plain; charset=utf-8"
    assert h["Cache-Control"] == "public, max-age=2"
    assert h["Access-Control-Allow-Origin"] == "*"
    for path, cache in (
        ("tile/0/000", "public, max-age=31536000, immutable"),
        ("tile/0/001", "public, max-age=31536000, immutable"),
        ("tile/0/002.p/88", "public, max-age=60"),
        ("tile/1/000.p/2", "public, max-age=60"),
        ("tile/entries/000", "public, max-age=31536000, immutable"),
        ("tile/entries/002.p/88", "public, max-age=60"),
        ("tile/0/001.p/44", "public, max-age=60"),  # the partial of size 300, kept
    ):
        status, body, h = await _get(f"{nginx.url}/{path}")
        assert status == 200, path
        assert body == (public / path).read_bytes()
        assert h["Content-Type"] == "application/octet-stream", path
        assert h["Cache-Control"] == cache, path
        assert h["Access-Control-Allow-Origin"] == "*", path
    status, body, h = await _get(nginx.url + "/tile/entries/000", **{"Accept-Encoding": "gzip"})
    assert status == 200 and h.get("Content-Encoding") == "gzip"
    # not yet there, or not a tile path: 404 without cache headers
    (public / "tile/0/000.1.tmp").write_bytes(b"x")  # as a crash mid-write leaves one
    for path in ("tile/0/003", "tile/0/002.p/89", "tile/0/0", "tile/0/000.1.tmp"):
        status, _, h = await _get(f"{nginx.url}/{path}")
        assert status == 404, path
        assert "Cache-Control" not in h, path
    status, _, _ = await _get(nginx.url + "/.lock")
    assert status != 200
    async with aiohttp.ClientSession() as s, s.post(nginx.url + "/tile/0/000") as r:
        assert r.status in (403, 405)
