"""The log observes on demand (``observe_index``): a real log process, a real
pypiserver (PEP 503 HTML) and an in-test PEP 691 JSON index that can stall a
download, so that the log can be killed in the middle of observing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sigledger.client.publish.submit import sign_observation
from sigledger.client.remote import LogClient
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import Entry, SignedObservation, Statement, decode_entry
from sigledger.ledger.errors import BindingConflictError
from sigledger.ledger.log.observer import (
    KEY_LABEL,
    IndexFile,
    Source,
    key_name,
    parse_project_page,
    release_files,
)
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.keys import read_key_file, write_key_file
from tests.helpers import LogProcess, get, observed, run_cli
from tests.index import ALICE, PyPIServer, free_port, wheel

TAGS = ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-win_amd64")


def _release(packages: Path, name: str, version: str, tags: tuple[str, ...]) -> dict[str, bytes]:
    files = {}
    for tag in tags:
        filename, data = wheel(name, version, f"V = {version!r}\n", tag=tag)
        (packages / filename).write_bytes(data)
        files[filename] = data
    return files


@pytest.fixture
def pypi(tmp_path: Path) -> Iterator[tuple[PyPIServer, dict[str, bytes]]]:
    packages = tmp_path / "packages"
    packages.mkdir()
    files = _release(packages, "fresh", "1.0", TAGS)
    files |= _release(packages, "fresh", "2.0", TAGS[:2])
    files |= _release(packages, "fresh", "3.0rc1", TAGS[:1])
    files |= _release(packages, "other-pkg", "0.5", TAGS[:1])
    server = PyPIServer(packages).start()
    try:
        yield server, files
    finally:
        server.stop()


def _log(tmp_path: Path, *indexes: str, env: dict[str, str] | None = None) -> LogProcess:
    args = [a for url in indexes for a in ("--observe-index", url)]
    return LogProcess(tmp_path / "log", *args, env=env)


@pytest.fixture
def logs() -> Iterator[list[LogProcess]]:
    started: list[LogProcess] = []
    yield started
    for p in started:
        p.kill()


async def _lookup(url: str, **params: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(url + "/lookup", params=params) as r:
        return r.status, await r.json(), dict(r.headers)


def _proven(answer: dict[str, Any], vkey: str) -> list[Entry]:
    """The answer's entries, each proven against its checkpoint signed by ``vkey``."""
    cp, _ = open_checkpoint(answer["checkpoint"].encode(), Verifier.from_vkey(vkey))
    out = []
    for item in answer["entries"]:
        data = base64.b64decode(item["entry"])
        proof = [base64.b64decode(h) for h in item["inclusion_proof"]]
        merkle.check_inclusion(item["log_index"], cp.size, merkle.leaf_hash(data), proof, cp.root)
        out.append(decode_entry(data))
    return out


async def _observer_vkey(url: str) -> str:
    status, body, headers = await get(url + "/observer")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    vkey = body.decode()
    assert vkey.endswith("\n") and vkey.count("\n") == 1
    return vkey.strip()


async def test_lookup_observes_a_release_never_seen(
    tmp_path: Path, pypi: tuple[PyPIServer, dict[str, bytes]], logs: list[LogProcess]
) -> None:
    server, files = pypi
    log = _log(tmp_path, server.url).start()
    logs.append(log)
    vkey = await _observer_vkey(log.url)
    assert vkey.startswith(key_name("localhost/sigledger") + "+")
    assert any(f"observer key: {vkey}" in line for line in log.stderr_lines)
    key_file = log.data / "observer.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert read_key_file(key_file).vkey == vkey

    status, answer, _ = await _lookup(log.url, project="Fresh", version="1.0")
    assert status == 200, answer
    entries = _proven(answer, log.vkey)
    want = {n: hashlib.sha256(d).digest() for n, d in files.items() if "-1.0-" in n}
    assert {e.statement.filename: e.statement.sha256 for e in entries} == want
    for e in entries:
        assert isinstance(e.signed, SignedObservation) and e.signed.verify()
        assert (e.signed.signer_vkey(), e.signed.index_url) == (vkey, server.url)
        assert e.statement.size == len(files[e.statement.filename])
        assert e.signed.observed_ms <= e.time_ms
    assert answer["tree_size"] == 3

    # By file name: that file's release (2.0), answered with the file asked for.
    name = next(n for n in files if n.startswith("fresh-2.0-") and "manylinux" in n)
    status, answer, _ = await _lookup(log.url, project="fresh", filename=name)
    assert status == 200
    (entry,) = _proven(answer, log.vkey)
    assert entry.statement.sha256 == hashlib.sha256(files[name]).digest()
    assert answer["tree_size"] == 3 + 2
    # Project only: the log observed some of it, so nothing new; a project it has
    # nothing of gets its newest release observed.
    status, answer, _ = await _lookup(log.url, project="fresh")
    assert status == 200 and answer["tree_size"] == 5
    status, answer, _ = await _lookup(log.url, project="other_pkg")
    assert status == 200 and [e.statement.version for e in _proven(answer, log.vkey)] == ["0.5"]
    # A project the index does not have: an empty answer, nothing logged.
    status, answer, _ = await _lookup(log.url, project="nowhere", version="1.0")
    assert (status, answer["entries"], answer["tree_size"]) == (200, [], 6)

    # Observed once, never fetched again: with the index gone the answers stay.
    server.stop()
    status, answer, _ = await _lookup(log.url, project="fresh", version="1.0")
    assert status == 200 and len(answer["entries"]) == 3 and answer["tree_size"] == 6
    # Something not observed yet now fails as "retry later", not as "not in the log".
    status, answer, headers = await _lookup(log.url, project="fresh", version="3.0rc1")
    assert status == 503 and answer["error"] == "upstream_unavailable"
    assert int(headers["Retry-After"]) > 0
    _, metrics, _ = await get(log.url + "/metrics")
    assert 'sigledger_observed_files_total{outcome="observed"} 6.0' in metrics.decode()


async def test_the_observer_key_is_the_logs_own(tmp_path: Path, logs: list[LogProcess]) -> None:
    log = LogProcess(tmp_path / "log").start()
    logs.append(log)
    vkey = await _observer_vkey(log.url)  # also without observe_index
    log.stop()
    # The JSON log names it where it names the log key.
    records = [json.loads(line) for line in (tmp_path / "log.stdout.log").read_text().splitlines()]
    (listening,) = [r for r in records if "observer_vkey" in r]
    assert (listening["vkey"], listening["observer_vkey"]) == (log.vkey, vkey)
    key_file = log.data / "observer.key"
    derived = read_key_file(log.data / "log.key").derive(key_name("localhost/sigledger"), KEY_LABEL)
    assert read_key_file(key_file).vkey == derived.vkey == vkey
    # Lost: made again from the log key (every server holding the log key has it).
    key_file.unlink()
    log = LogProcess(tmp_path / "log").start()
    logs.append(log)
    assert await _observer_vkey(log.url) == vkey
    log.stop()
    # Another key in its place: refused, naming both.
    write_key_file(key_file, Signer.generate("localhost/sigledger/observer"))
    with pytest.raises(RuntimeError, match="is not the observer key of the log"):
        LogProcess(tmp_path / "log").start()
    # A key placed before the first start is the observer key of a new log.
    own = Signer.generate("log.example.org/eyes")
    write_key_file(tmp_path / "new" / "observer.key", own)
    log = LogProcess(tmp_path / "new").start()
    logs.append(log)
    assert await _observer_vkey(log.url) == own.vkey


async def test_observer_binding_conflict_refused_with_evidence(
    tmp_path: Path, pypi: tuple[PyPIServer, dict[str, bytes]], logs: list[LogProcess]
) -> None:
    server, files = pypi
    log = _log(tmp_path, server.url).start()
    logs.append(log)
    # (By project only, a project the log has nothing of: its newest final release.)
    status, answer, _ = await _lookup(log.url, project="fresh")
    assert {e.statement.version for e in _proven(answer, log.vkey)} == {"2.0"}
    assert len(answer["entries"]) == 2
    status, answer, _ = await _lookup(log.url, project="other-pkg", version="0.5")
    assert status == 200
    (first,) = _proven(answer, log.vkey)
    # The index later serves other bytes for that file: the observer's statement of
    # them is refused, with its first observation as the evidence.
    eye = read_key_file(log.data / "observer.key")
    changed = Statement.for_file(first.statement.filename, hashlib.sha256(b"new").digest(), 3)
    async with LogClient(log.url) as client:
        with pytest.raises(BindingConflictError) as err:
            await client.add([sign_observation(eye, changed, server.url, 1)])
        ((index, data),) = err.value.existing
        assert index == answer["entries"][0]["log_index"]
        assert decode_entry(data) == first
        # Another observer seeing those other bytes is logged: the disagreement is public.
        other = Signer.generate("mirror.example.org/observer")
        (receipt,) = await client.add([sign_observation(other, changed, server.url, 2)])
        assert receipt.status == "added"
        # The log's own observer may also observe through /add: the same bytes are
        # the existing entry.
        (same,) = await client.add(
            [observed(eye, "other-pkg", "0.5", files[first.statement.filename])]
        )
        assert (same.status, same.index) == ("existing", index)


async def test_large_release_is_observed_in_the_background(
    tmp_path: Path, pypi: tuple[PyPIServer, dict[str, bytes]], logs: list[LogProcess]
) -> None:
    server, files = pypi
    log = _log(tmp_path, server.url, env={"SIGLEDGER_OBSERVE_MAX_FILES": "1"}).start()
    logs.append(log)
    name = next(n for n in files if n.startswith("fresh-1.0-") and "win" in n)
    status, answer, headers = await _lookup(log.url, project="fresh", filename=name)
    assert status == 202, answer
    assert answer["status"] == "observing" and answer["files"] == 3
    assert 0 < int(headers["Retry-After"]) == answer["retry_after"] <= 60
    # The file asked for by name was observed within the request.
    status, by_name, _ = await _lookup(log.url, project="fresh", filename=name)
    assert status == 200 and len(by_name["entries"]) == 1
    for _ in range(100):
        status, answer, _ = await _lookup(log.url, project="fresh", version="1.0")
        if status == 200 and len(answer["entries"]) == 3:
            break
        await asyncio.sleep(0.1)
    entries = _proven(answer, log.vkey)
    assert sorted(e.statement.filename for e in entries) == sorted(
        n for n in files if n.startswith("fresh-1.0-")
    )
    # The client waits through the 202 (after its Retry-After) for the answer.
    async with LogClient(log.url) as client:
        found = await client.lookup(project="fresh", version="2.0")
    assert sorted(decode_entry(e.entry).statement.filename for e in found.entries) == sorted(
        n for n in files if n.startswith("fresh-2.0-")
    )


async def test_observing_lookups_are_rate_limited_per_client(
    tmp_path: Path, pypi: tuple[PyPIServer, dict[str, bytes]], logs: list[LogProcess]
) -> None:
    server, _ = pypi
    env = {"SIGLEDGER_OBSERVE_CLIENT_RATE": "0.01", "SIGLEDGER_OBSERVE_CLIENT_BURST": "2"}
    log = _log(tmp_path, server.url, env=env).start()
    logs.append(log)
    for version in ("1.0", "2.0"):
        status, _, _ = await _lookup(log.url, project="fresh", version=version)
        assert status == 200
    status, answer, headers = await _lookup(log.url, project="fresh", version="3.0rc1")
    assert (status, answer["error"], answer["limit"]) == (429, "rate_limited", "observe")
    assert int(headers["Retry-After"]) > 0
    # Lookups of what the log already observed cost nothing.
    for _ in range(5):
        status, _, _ = await _lookup(log.url, project="fresh", version="1.0")
        assert status == 200


# -- a JSON index that can stall, for kill -9 in the middle of observing ---------------


@dataclass
class JsonIndex:
    """A PEP 691 index of ``files`` whose downloads of ``stall`` wait for ``go``."""

    files: dict[str, bytes]
    stall: set[str] = field(default_factory=set)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    fetched: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # filename -> URL the page states
    stated: dict[str, str] = field(default_factory=dict)  # filename -> sha256 the page states
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    async def page(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        listed = [n for n in self.files if n.startswith(project.replace("-", "_") + "-")]
        if not listed:
            raise web.HTTPNotFound()
        doc = {
            "meta": {"api-version": "1.1"},
            "name": project,
            "files": [
                {
                    "filename": n,
                    "url": self.urls.get(n, f"../../files/{n}"),
                    "hashes": {
                        "sha256": self.stated.get(n, hashlib.sha256(self.files[n]).hexdigest())
                    },
                    "size": len(self.files[n]),
                }
                for n in listed
            ],
        }
        assert "application/vnd.pypi.simple.v1+json" in request.headers["Accept"]
        return web.Response(
            body=json.dumps(doc).encode(), content_type="application/vnd.pypi.simple.v1+json"
        )

    async def file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.fetched.append(name)
        if name in self.stall:
            self.stalled.set()
            await self.go.wait()
        return web.Response(body=self.files[name])

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[JsonIndex]:
        app = web.Application()
        app.router.add_get("/simple/{project}/", self.page)
        app.router.add_get("/files/{name}", self.file)
        app.router.add_get("/redirect", self.redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            self.go.set()
            await runner.cleanup()


@pytest.fixture
async def json_index() -> AsyncIterator[JsonIndex]:
    index = JsonIndex({})
    for tag in (*TAGS, "py2.py3-none-any", "cp310-cp310-macosx_11_0_arm64", "cp39-abi3-any"):
        name, data = wheel("slow", "1.0", tag=tag)
        index.files[name] = data
    async with index.serving():
        yield index


async def test_fetches_stay_under_the_index_and_bad_files_are_not_logged(
    tmp_path: Path, logs: list[LogProcess]
) -> None:
    good, _ = wheel("guard", "1.0")
    names = [good, *(wheel("guard", "1.0", tag=t)[0] for t in TAGS[1:]), "guard-1.0.tar.gz"]
    index = JsonIndex({n: wheel("guard", "1.0")[1] for n in names})
    elsewhere = JsonIndex(dict(index.files))
    big = "guard-1.0-py2-none-any.whl"
    index.files[big] = bytes(1200 * 1024)  # beyond observe_max_file_mb = 1
    outside = f"http://127.0.0.1:{elsewhere.port}/files/"
    index.urls[names[1]] = outside + names[1]  # another host
    index.urls[names[2]] = f"../../redirect?to={outside}{names[2]}"  # redirected there
    index.stated[names[3]] = "ab" * 32  # the page states another hash than it serves
    env = {"SIGLEDGER_OBSERVE_MAX_FILE_MB": "1"}
    async with index.serving(), elsewhere.serving():
        log = _log(tmp_path, index.url, env=env).start()
        logs.append(log)
        status, answer, _ = await _lookup(log.url, project="guard", version="1.0")
        assert status == 200, answer
        (entry,) = _proven(answer, log.vkey)
        assert entry.statement.filename == good
        assert elsewhere.fetched == []  # nothing outside the configured index
        assert sorted(index.fetched) == sorted([good, names[3], big])
        _, metrics, _ = await get(log.url + "/metrics")
        assert 'sigledger_observed_files_total{outcome="skipped"} 4.0' in metrics.decode()
        # Not asked for again: the release is known, the bad files remembered.
        status, answer, _ = await _lookup(log.url, project="guard", version="1.0")
        assert status == 200 and len(answer["entries"]) == 1
        assert sorted(index.fetched) == sorted([good, names[3], big])


async def _wait_for(event: asyncio.Event, timeout: float = 30) -> None:
    await asyncio.wait_for(event.wait(), timeout)


async def test_kill_9_in_the_middle_of_observing_loses_and_duplicates_nothing(
    tmp_path: Path, json_index: JsonIndex, logs: list[LogProcess]
) -> None:
    names = sorted(json_index.files)
    env = {"SIGLEDGER_OBSERVE_MAX_FILES": "2"}
    log = _log(tmp_path, json_index.url, env=env).start()
    logs.append(log)
    # Three passes of two files in the background; the third file stalls, so the
    # first pass is logged and the second is in flight when the log dies.
    json_index.stall = {names[2]}
    status, answer, _ = await _lookup(log.url, project="slow", version="1.0")
    assert status == 202 and answer["files"] == 6
    await _wait_for(json_index.stalled)
    async with LogClient(log.url) as client:
        for _ in range(100):
            found = (await client.lookup(project="slow")).entries
            if found:
                break
            await asyncio.sleep(0.05)
    assert len(found) == 2
    log.kill()  # SIGKILL
    json_index.stall = set()
    json_index.go.set()
    fetched_before = list(json_index.fetched)

    log = _log(tmp_path, json_index.url, env=env).start()
    logs.append(log)
    for _ in range(200):
        status, answer, _ = await _lookup(log.url, project="slow", version="1.0")
        if status == 200 and len(answer["entries"]) == 6:
            break
        await asyncio.sleep(0.1)
    entries = _proven(answer, log.vkey)
    assert sorted(e.statement.filename for e in entries) == names  # each exactly once
    assert answer["tree_size"] == 6
    for e in entries:
        assert e.statement.sha256 == hashlib.sha256(json_index.files[e.statement.filename]).digest()
    # The files logged before the kill were not fetched again.
    logged_first = {e.statement.filename for e in entries if e.time_ms == entries[0].time_ms}
    again = json_index.fetched[len(fetched_before) :]
    assert not logged_first & set(again), (logged_first, again)
    # And a lookup now fetches nothing at all.
    count = len(json_index.fetched)
    status, answer, _ = await _lookup(log.url, project="slow", version="1.0")
    assert status == 200 and len(json_index.fetched) == count


async def test_verify_makes_the_log_observe(
    tmp_path: Path, pypi: tuple[PyPIServer, dict[str, bytes]], logs: list[LogProcess]
) -> None:
    """``sigledger verify FILE`` asks the log about a file nobody logged: the log
    observes its release and the answer holds the log's observation of it."""
    server, files = pypi
    log = _log(tmp_path, server.url).start()
    logs.append(log)
    name = next(n for n in files if n.startswith("fresh-2.0-"))
    path = tmp_path / name
    path.write_bytes(files[name])
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'version = 1\n[[log]]\nurl = "{log.url}"\nkey = "{log.vkey}"\n'
        f'[project."fresh"]\nsigners = ["{ALICE.vkey}"]\n'
    )
    env = {"SIGLEDGER_STATE_DIR": str(tmp_path / "state"), "SIGLEDGER_POLICY": str(policy)}
    r = await asyncio.to_thread(run_cli, "verify", str(path), env=env)
    assert "Traceback" not in r.stderr
    vkey = await _observer_vkey(log.url)
    status, answer, _ = await _lookup(log.url, sha256=hashlib.sha256(files[name]).hexdigest())
    assert status == 200
    found = _proven(answer, log.vkey)
    assert [(e.signed.kind, e.signed.signer_vkey()) for e in found] == [("observation", vkey)]
    # The verdict is about that entry: the observation came back through verify.
    assert vkey in r.stderr and "not in the log" not in r.stderr, r.stderr


def test_project_pages_parse_json_and_html() -> None:
    digest = hashlib.sha256(b"a").hexdigest()
    html = (
        b"<html><body><a href='../../packages/demo-1.0.tar.gz#sha256=" + digest.encode() + b"'>"
        b"demo-1.0.tar.gz</a><a href='https://files.example/demo-1.0-py3-none-any.whl'>"
        b"demo-1.0-py3-none-any.whl</a></body></html>"
    )
    page = "http://127.0.0.1:9/simple/demo/"
    assert parse_project_page(html, "text/html", page) == [
        IndexFile(
            "demo-1.0.tar.gz", "http://127.0.0.1:9/packages/demo-1.0.tar.gz", bytes.fromhex(digest)
        ),
        IndexFile("demo-1.0-py3-none-any.whl", "https://files.example/demo-1.0-py3-none-any.whl"),
    ]
    doc = {
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "f/demo-1.0.tar.gz#x",
                "hashes": {"sha256": digest},
                "size": 1,
            },
            "junk",
        ]
    }
    assert parse_project_page(
        json.dumps(doc).encode(), "application/vnd.pypi.simple.v1+json", page
    ) == [IndexFile("demo-1.0.tar.gz", page + "f/demo-1.0.tar.gz", bytes.fromhex(digest), 1)]
    listed = [
        IndexFile(n, "u")
        for n in (
            "demo-1.0.tar.gz",
            "Demo-1.0.0-py3-none-any.whl",
            "demo-2.0b1.tar.gz",
            "demo-1.5.zip",
            "readme.txt",
            "other-9.0.tar.gz",
        )
    ]
    assert release_files(listed, "demo", "1.0")[1] == listed[:2]
    assert release_files(listed, "demo", None) == ("1.5", [listed[3]])
    assert release_files(listed[2:3], "demo", None)[0] == "2.0b1"
    source = Source("https://pypi.org/simple/", ("https://files.pythonhosted.org/packages/",))
    assert source.allows("https://pypi.org/packages/x.whl")
    assert source.allows("https://files.pythonhosted.org/packages/ab/x.whl")
    assert not source.allows("https://files.pythonhosted.org/other/x.whl")
    assert not source.allows("http://pypi.org/packages/x.whl")
    assert not source.allows("https://pypi.org.evil.example/x.whl")


async def test_an_index_that_changes_a_file_is_reported_first_seen_wins(
    tmp_path: Path, logs: list[LogProcess]
) -> None:
    name, data = wheel("moving", "1.0")
    index = JsonIndex({name: data})
    async with index.serving():
        log = _log(tmp_path, index.url).start()
        logs.append(log)
        status, answer, _ = await _lookup(log.url, project="moving", version="1.0")
        (first,) = _proven(answer, log.vkey)
        assert first.statement.sha256 == hashlib.sha256(data).digest()
        log.stop()
        # The index replaces the published file; the restarted log reads the page again
        # (it no longer knows the release complete), reports the change, fetches nothing.
        index.files[name] = data + b"changed"
        fetched = len(index.fetched)
        log = _log(tmp_path, index.url).start()
        logs.append(log)
        status, answer, _ = await _lookup(log.url, project="moving", version="1.0")
        assert status == 200 and _proven(answer, log.vkey) == [first]
        assert len(index.fetched) == fetched
        _, metrics, _ = await get(log.url + "/metrics")
        assert 'sigledger_observed_files_total{outcome="changed"} 1.0' in metrics.decode()
        log.stop()
    records = [json.loads(line) for line in (tmp_path / "log.stdout.log").read_text().splitlines()]
    (alarm,) = [r for r in records if "stated_sha256" in r]
    assert alarm["logged_sha256"] == first.statement.sha256.hex()
    assert alarm["stated_sha256"] == hashlib.sha256(data + b"changed").hexdigest()
    assert alarm["level"] == "warning" and "ALARM" in alarm["msg"]
