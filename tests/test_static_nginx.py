"""The deploy nginx configurations, served by a real nginx.

nginx runs as a child process (one process, no daemon). Static publication: a
generated top-level configuration includes deploy/nginx-static-reads.conf and
deploy/nginx-static-api.conf unchanged, so the deploy files are what is tested;
the log is then read through nginx with the project's own clients, after the log
server has stopped: every answer comes from the files. deploy/nginx.conf (nginx
caching in front of the log processes) is included with only what a loopback
test must change (listen address, TLS, cache directories, upstream address),
and the whole API is used through it, an observing lookup included.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
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
from sigledger.ledger.entry import decode_entry
from sigledger.ledger.log.observer import observing_seconds
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.config import ServerConfig
from tests.helpers import ROOT, LogProcess, missing_tool, sigledger_cmd, signed, tree_env
from tests.index import PyPIServer, free_port, wheel

DEPLOY = ROOT / "deploy"
ALICE = Signer.from_seed("alice", bytes([1]) * 32)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


class Nginx:
    """nginx serving ``root`` with the deploy snippets, proxying to ``upstream``."""

    def __init__(
        self, binary: str, workdir: Path, root: Path | None, upstream: str, site: bool = False
    ) -> None:
        """With ``site``: deploy/nginx.conf (see :func:`loopback_site`), else the static
        snippets with ``root`` as the publication directory."""
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        self.config = workdir / "nginx.conf"
        servers = f"include {loopback_site(workdir, self.port, upstream)};"
        if not site:
            servers = f"""upstream sigledger {{ server {upstream}; }}
    limit_req_zone $binary_remote_addr zone=sigledger_add:1m rate=100r/s;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        include {DEPLOY / "nginx-static-reads.conf"};
        include {DEPLOY / "nginx-static-api.conf"};
    }}"""
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
    {servers}
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


def loopback_site(workdir: Path, port: int, upstream: str) -> Path:
    """deploy/nginx.conf for a loopback test: plain HTTP on ``port`` instead of the
    redirect and TLS servers, caches under ``workdir``, the log at ``upstream``.
    Every change must apply, so a reshaped deploy file fails here, not silently."""
    text = (DEPLOY / "nginx.conf").read_text()
    changes = [
        (r"server 127\.0\.0\.1:8080;", f"server {upstream};"),
        (r"/var/cache/nginx/", f"{workdir}/cache/"),
        (r"server \{\n    listen 80;.*?return 301 [^\n]*\n\}\n", ""),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{port};"),
        (r"\n *listen \[::\]:443 ssl http2;", ""),
        (r"\n *ssl_[a-z_]+ [^\n]*;", ""),
    ]
    for pattern, replacement in changes:
        text, n = re.subn(pattern, replacement, text, flags=re.DOTALL)
        assert n, f"deploy/nginx.conf no longer has {pattern!r}"
    (workdir / "cache").mkdir(exist_ok=True)
    path = workdir / "site.conf"
    path.write_text(text)
    return path


@pytest.fixture
def nginx_path() -> str:
    binary = nginx_binary()
    if binary is None:
        missing_tool(
            "nginx is not installed (apt-get install nginx; .ci/run installs it); "
            "static serving untested"
        )
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


def _read_timeout(conf: Path, location: str) -> float:
    """The proxy_read_timeout (seconds) of ``location`` in a deploy file."""
    body = re.search(re.escape(location) + r" \{(.*?)\n *\}", conf.read_text(), re.DOTALL)
    assert body, f"{conf.name} has no {location}"
    found = re.search(r"proxy_read_timeout (\d+)s;", body.group(1))
    assert found, f"{conf.name} {location} keeps nginx's 60 s read timeout"
    return float(found.group(1))


def test_lookups_wait_as_long_as_observing_takes() -> None:
    longest = observing_seconds(ServerConfig())
    assert _read_timeout(DEPLOY / "nginx.conf", "location = /lookup") >= longest
    assert _read_timeout(DEPLOY / "nginx-static-api.conf", "location /") >= longest


async def test_the_api_through_the_caching_nginx(
    tmp_path: Path, nginx_path: str, processes: list[LogProcess | Nginx]
) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    files = {}
    for tag in ("py3-none-any", "cp312-cp312-win_amd64"):
        name, data = wheel("fresh", "1.0", "V = 1\n", tag=tag)
        (packages / name).write_bytes(data)
        files[name] = hashlib.sha256(data).digest()
    index = PyPIServer(packages).start()
    try:
        log = LogProcess(tmp_path / "log", "--observe-index", index.url).start()
        processes.append(log)
        nginx = Nginx(nginx_path, tmp_path / "nginx", None, log.url.removeprefix("http://"), True)
        processes.append(nginx.start())
        key = Verifier.from_vkey(log.vkey)

        status, body, _ = await _get(nginx.url + "/observer")
        assert status == 200
        observer = body.decode().strip()
        assert observer == (await _get(log.url + "/observer"))[1].decode().strip()
        # A release never seen: the log observes it while nginx waits, and the answer
        # proves both files against the checkpoint it returns.
        status, body, h = await _get(nginx.url + "/lookup?project=fresh&version=1.0")
        assert status == 200, body
        assert h["Cache-Control"] == "public, max-age=2"
        answer = json.loads(body)
        cp, _ = open_checkpoint(answer["checkpoint"].encode(), key)
        got = {}
        for item in answer["entries"]:
            data = base64.b64decode(item["entry"])
            proof = [base64.b64decode(x) for x in item["inclusion_proof"]]
            merkle.check_inclusion(
                item["log_index"], cp.size, merkle.leaf_hash(data), proof, cp.root
            )
            entry = decode_entry(data)
            assert entry.signed.signer_vkey() == observer
            got[entry.statement.filename] = entry.statement.sha256
        assert got == files
        # Submissions, batch lookups, proofs, checkpoint and tiles.
        async with LogClient(nginx.url) as client:
            await client.add([signed(ALICE, version=f"{i}.0") for i in range(3)])
        async with (
            aiohttp.ClientSession() as s,
            s.post(nginx.url + "/lookup", json={"sha256": [d.hex() for d in files.values()]}) as r,
        ):
            assert r.status == 200, await r.text()
            assert len((await r.json())["entries"]) == 2
        deadline = time.monotonic() + 15
        while await _size_at(nginx.url) != 5:  # the checkpoint is cached for 1 s
            assert time.monotonic() < deadline, "the checkpoint did not reach 5 entries"
            await asyncio.sleep(0.1)
        status, body, _ = await _get(nginx.url + "/proof/consistency?old=2&new=5")
        assert status == 200 and json.loads(body)["hashes"], body
        status, body, h = await _get(nginx.url + "/tile/0/000.p/5")
        assert status == 200 and len(body) == 5 * 32
        status, _, _ = await _get(nginx.url + "/metrics")
        assert status == 200  # from 127.0.0.1: an internal scraper
        status, _, _ = await _get(nginx.url + "/explorer-or-anything-else")
        assert status == 404
    finally:
        index.stop()
