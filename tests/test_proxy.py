"""``sigledger proxy``: page parsing and rendering, the filter, the cache, and real
installs (pip, uv) through a real proxy in front of a real pypiserver and a real log."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import http.client
import io
import json
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.install.policy import (
    LogTrust,
    Policy,
    SignerRule,
    dump_policy,
)
from sigledger.client.install.proxy import (
    HTML,
    HTML_V1,
    JSON_V1,
    STOP_FLAG,
    FileCache,
    IndexFile,
    ShownFile,
    judge,
    negotiate,
    parse_html_page,
    parse_html_projects,
    parse_json_page,
    parse_json_projects,
    render_index_html,
    render_project_html,
    render_project_json,
)
from sigledger.client.publish.submit import sign_statement
from sigledger.client.trust import VerifiedEntry
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.entry import Entry, SignedObservation, Statement, encode_entry
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer
from tests.helpers import LogProcess, ProxyProcess, run_cli
from tests.index import (
    ALICE,
    BOB,
    MALLORY,
    Release,
    http_get,
    index_world,
    pip_install,
    uv_install,
    wheel,
)
from tests.simulator import SimulatedLog

# --- content negotiation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, HTML),
        ("", HTML),
        ("*/*", HTML),
        ("text/html", HTML),
        (JSON_V1, JSON_V1),
        (HTML_V1, HTML_V1),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        # what pip sends
        (f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01", JSON_V1),
        (f"text/html, {JSON_V1};q=0.5", HTML),
        (f"*/*, {JSON_V1}", JSON_V1),  # an exact type beats a wildcard of equal q
        ("application/json", None),
        (f"{JSON_V1};q=0", None),
        ("image/png, text/plain", None),
    ],
)
def test_negotiate(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept) == chosen


@given(hs.text())
def test_negotiate_never_raises(accept: str) -> None:
    assert negotiate(accept) in (None, HTML, HTML_V1, JSON_V1)


# --- page parsing and rendering ----------------------------------------------------

PYPISERVER_LIKE = """<html><head><title>Links for demo</title></head><body>
<h1>Links for demo</h1>
<a href="../../packages/demo-1.0-py3-none-any.whl#sha256=AB12">demo-1.0-py3-none-any.whl</a><br>
<a href="https://files.example/demo-1.0.tar.gz#md5=ff" data-requires-python="&gt;=3.8"
   data-yanked="broken &amp; bad">demo-1.0.tar.gz</a>
<a href="demo-2.0-py3-none-any.whl" data-dist-info-metadata="sha256=cd">x</a>
<a href="demo-3.0-py3-none-any.whl" data-core-metadata="true" data-yanked></a>
<a>no href</a>
</body></html>"""


def test_parse_html_page() -> None:
    files = parse_html_page(PYPISERVER_LIKE, "http://up.example/simple/demo/")
    assert [f.filename for f in files] == [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
        "demo-2.0-py3-none-any.whl",
        "demo-3.0-py3-none-any.whl",
    ]
    whl, sdist, two, three = files
    assert whl.url == "http://up.example/packages/demo-1.0-py3-none-any.whl"
    assert whl.hashes == {"sha256": "ab12"}
    assert sdist.requires_python == ">=3.8" and sdist.yanked == "broken & bad"
    assert sdist.hashes == {"md5": "ff"}
    assert two.url == "http://up.example/simple/demo/demo-2.0-py3-none-any.whl"
    assert two.core_metadata == {"sha256": "cd"} and two.yanked is False
    assert three.core_metadata is True and three.yanked is True


def test_parse_html_projects_and_base() -> None:
    page = '<base href="http://other/x/"><a href="/simple/foo-bar/">Foo_Bar</a><a href="baz/"></a>'
    assert parse_html_projects(page) == ["Foo_Bar", "baz"]
    files = parse_html_page('<base href="http://cdn/p/"><a href="f-1.0.tar.gz">f</a>', "http://i/")
    assert files[0].url == "http://cdn/p/f-1.0.tar.gz"


def test_parse_json_page() -> None:
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "../../packages/demo-1.0.tar.gz",
                "hashes": {"sha256": "AA"},
                "requires-python": ">=3.9",
                "yanked": "oops",
                "core-metadata": {"sha256": "bb"},
                "size": 12,
            },
            {"filename": "demo-1.1.tar.gz", "url": "https://f/demo-1.1.tar.gz", "hashes": {}},
        ],
    }
    a, b = parse_json_page(json.dumps(doc), "http://up/simple/demo/")
    assert a == IndexFile(
        "demo-1.0.tar.gz",
        "http://up/packages/demo-1.0.tar.gz",
        {"sha256": "aa"},
        ">=3.9",
        "oops",
        {"sha256": "bb"},
        12,
    )
    assert b.yanked is False and b.core_metadata is False and b.size is None
    with pytest.raises(FormatError):
        parse_json_page(b"[]", "http://up/")
    with pytest.raises(FormatError):
        parse_json_page(b'{"files": [{"filename": 1}]}', "http://up/")
    assert parse_json_projects(b'{"projects": [{"name": "A"}, {"x": 1}]}') == ["A"]


def _shown() -> list[ShownFile]:
    return [
        ShownFile("demo-1.0-py3-none-any.whl", "ab" * 32, 100, ">=3.8", False, {"sha256": "cd"}),
        ShownFile("demo-1.0.tar.gz", "ef" * 32, 50, None, "bad <build>", False),
        ShownFile("demo-0.9.tar.gz", "01" * 32, 10, None, True, True),
    ]


def test_render_html_parses_back() -> None:
    page = render_project_html("demo", _shown())
    assert 'name="pypi:repository-version" content="1.1"' in page
    files = parse_html_page(page, "http://proxy/simple/demo/")
    assert [f.url for f in files] == [f"http://proxy/files/demo/{f.filename}" for f in _shown()]
    for parsed, shown in zip(files, _shown(), strict=True):
        assert parsed.hashes == {"sha256": shown.sha256}
        assert parsed.requires_python == shown.requires_python
        assert parsed.yanked == shown.yanked
        assert parsed.core_metadata == shown.core_metadata


def test_render_json_parses_back() -> None:
    doc = render_project_json("demo", _shown())
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["versions"] == ["0.9", "1.0"]
    files = parse_json_page(json.dumps(doc), "http://proxy/simple/demo/")
    for parsed, shown in zip(files, _shown(), strict=True):
        assert parsed.hashes == {"sha256": shown.sha256}
        assert parsed.size == shown.size
        assert parsed.yanked == shown.yanked
        assert parsed.core_metadata == shown.core_metadata
    unsized = render_project_json("demo", [ShownFile("demo-1.0.tar.gz", None, None)])
    assert unsized["meta"] == {"api-version": "1.0"} and "versions" not in unsized


def test_render_index() -> None:
    assert parse_html_projects(render_index_html(["Foo_Bar", "<x>"])) == ["Foo_Bar", "<x>"]
    assert 'href="/simple/foo-bar/"' in render_index_html(["Foo_Bar"])


@settings(max_examples=200, deadline=None)
@given(hs.text())
def test_parse_html_never_raises(text: str) -> None:
    for f in parse_html_page(text, "http://up/simple/p/"):
        assert f.filename and "/" not in f.filename
    parse_html_projects(text)


@settings(max_examples=200, deadline=None)
@given(
    hs.recursive(
        hs.none() | hs.booleans() | hs.integers() | hs.text(),
        _json_extend := (
            lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=12), c, max_size=4)
        ),
    )
)
def test_parse_json_only_format_errors(doc: object) -> None:
    for candidate in (doc, {"files": doc}, {"files": [doc]}, {"projects": doc}):
        data = json.dumps(candidate)
        try:
            parse_json_page(data, "http://up/")
        except FormatError:
            pass
        try:
            parse_json_projects(data)
        except FormatError:
            pass


_FILENAMES = hs.from_regex(
    r"[a-z][a-z0-9_]{0,8}-[0-9]{1,3}(\.[0-9]{1,3})?(\.tar\.gz|-py3-none-any\.whl)", fullmatch=True
)


@settings(max_examples=100, deadline=None)
@given(
    hs.lists(
        hs.builds(
            ShownFile,
            _FILENAMES,
            hs.binary(min_size=32, max_size=32).map(bytes.hex),
            hs.integers(min_value=0, max_value=2**40),
            hs.none() | hs.text(min_size=1).filter(str.strip).map(str.strip),
            hs.booleans() | hs.text(min_size=1),
            hs.booleans()
            | hs.fixed_dictionaries({"sha256": hs.from_regex(r"[0-9a-f]{64}", fullmatch=True)}),
        ),
        max_size=5,
        unique_by=lambda f: f.filename,
    )
)
def test_render_round_trips(files: list[ShownFile]) -> None:
    for parsed_files in (
        parse_html_page(render_project_html("p", files), "http://x/simple/p/"),
        parse_json_page(json.dumps(render_project_json("p", files)), "http://x/simple/p/"),
    ):
        assert [f.filename for f in parsed_files] == [f.filename for f in files]
        for parsed, shown in zip(parsed_files, files, strict=True):
            assert parsed.hashes == {"sha256": shown.sha256}
            assert parsed.yanked == shown.yanked
            assert parsed.core_metadata == shown.core_metadata
            assert (parsed.requires_python or None) == shown.requires_python


# --- the filter ------------------------------------------------------------------------

_CP = Checkpoint("test/log", 100, b"\0" * 32)


def _entry(index: int, signer: Signer, filename: str, content: bytes) -> VerifiedEntry:
    st = Statement.for_file(filename, hashlib.sha256(content).digest(), len(content))
    entry = Entry(sign_statement(signer, st), 1_700_000_000_000)
    return VerifiedEntry(index, encode_entry(entry), entry, _CP)


def _policy(**projects: SignerRule) -> Policy:
    return Policy((LogTrust("http://log", ALICE.verifier(), "test/log"),), projects=projects)


def _up(filename: str, content: bytes | None = None) -> IndexFile:
    hashes = {"sha256": hashlib.sha256(content).hexdigest()} if content is not None else {}
    return IndexFile(filename, f"http://up/{filename}", hashes)


def test_judge_filters_by_policy() -> None:
    policy = _policy(demo=SignerRule(frozenset({ALICE.vkey, BOB.vkey}), 2))
    files = [
        _up("demo-1.0.tar.gz", b"evil"),  # the upstream's hash is not used
        _up("Demo-1.1.tar.gz"),
        _up("demo-1.2.tar.gz"),
        _up("demo-1.3.tar.gz"),
        _up("demo-1.4.exe"),
    ]
    entries = [
        _entry(0, ALICE, "demo-1.0.tar.gz", b"one"),
        _entry(1, BOB, "demo-1.0.tar.gz", b"one"),
        _entry(2, ALICE, "demo-1.1.tar.gz", b"eleven"),  # only one of two
        _entry(3, MALLORY, "demo-1.2.tar.gz", b"twelve"),
        _entry(4, ALICE, "demo-1.0.tar.gz", b"other"),  # a conflicting hash from a trusted signer
    ]
    v = judge(policy, "demo", files, entries[:4])
    assert v["demo-1.0.tar.gz"].served
    assert v["demo-1.0.tar.gz"].sha256 == hashlib.sha256(b"one").digest()
    assert v["demo-1.0.tar.gz"].size == 3 and v["demo-1.0.tar.gz"].verified
    assert v["demo-1.0.tar.gz"].signers == tuple(sorted([ALICE.vkey, BOB.vkey]))
    assert not v["Demo-1.1.tar.gz"].served
    assert "2 of 2 required signers, got 1" in v["Demo-1.1.tar.gz"].reason
    assert not v["demo-1.2.tar.gz"].served
    assert "not signed by any trusted signer" in v["demo-1.2.tar.gz"].reason
    assert MALLORY.vkey in v["demo-1.2.tar.gz"].reason
    assert v["demo-1.3.tar.gz"].reason == "not in the log (no entry for this file)"
    assert v["demo-1.4.exe"].reason == "not a wheel or sdist filename"
    alarm = judge(policy, "demo", files[:1], entries)["demo-1.0.tar.gz"]
    assert not alarm.served and alarm.alarm and "ALARM" in alarm.reason


def test_judge_unlisted_projects() -> None:
    policy = _policy(other=SignerRule(frozenset({ALICE.vkey}), 1))
    files = [_up("free-1.0.tar.gz", b"up"), _up("free-2.0.tar.gz", b"up2"), _up("free-3.0.tar.gz")]
    entries = [_entry(0, MALLORY, "free-1.0.tar.gz", b"logged")]
    strict = judge(policy, "free", files, entries)
    assert strict["free-1.0.tar.gz"].served  # any signer
    assert strict["free-1.0.tar.gz"].sha256 == hashlib.sha256(b"logged").digest()
    assert not strict["free-2.0.tar.gz"].served
    loose = judge(policy, "free", files, entries, unlisted="pass-through")
    assert loose["free-1.0.tar.gz"].verified
    assert loose["free-2.0.tar.gz"].served and not loose["free-2.0.tar.gz"].verified
    assert loose["free-2.0.tar.gz"].sha256 == hashlib.sha256(b"up2").digest()
    assert loose["free-3.0.tar.gz"].served and loose["free-3.0.tar.gz"].sha256 is None
    # a listed project never passes through
    assert not judge(policy, "other", [_up("other-1.0.tar.gz")], [], unlisted="pass-through")[
        "other-1.0.tar.gz"
    ].served


def _observed(index: int, observer: Signer, filename: str, content: bytes) -> VerifiedEntry:
    st = Statement.for_file(filename, hashlib.sha256(content).digest(), len(content))
    obs = SignedObservation.sign(observer, st, "https://up.example/simple/", 1_700_000_000_000)
    entry = Entry(obs, 1_700_000_000_001)
    return VerifiedEntry(index, encode_entry(entry), entry, _CP)


def test_unlisted_projects_when_the_default_trusts_the_logs_observer() -> None:
    log_observer = Signer.from_seed("test/log/observer", hashlib.sha256(b"obs").digest())
    files = [_up("free-1.0.tar.gz", b"up"), _up("free-2.0.tar.gz", b"up2")]
    entries = [_observed(0, log_observer, "free-1.0.tar.gz", b"up")]
    # What `policy pin` writes: [default] trusts the log's own observation. Every
    # project then has a rule, so --unlisted never applies: a file the log observed
    # is served, one it did not observe is not, even with pass-through.
    rule = SignerRule(frozenset(), 1, observers=frozenset({log_observer.vkey}))
    pinned = dataclasses.replace(_policy(), default=rule)
    for unlisted in ("require-any-signer", "pass-through"):
        v = judge(pinned, "free", files, entries, unlisted=unlisted)
        assert v["free-1.0.tar.gz"].served and v["free-1.0.tar.gz"].verified
        assert "observed by 1 of 1 trusted observers" in v["free-1.0.tar.gz"].reason
        assert not v["free-2.0.tar.gz"].served
        assert v["free-2.0.tar.gz"].reason == "not in the log (no entry for this file)"
    # Without a [default], require-any-signer means a signature: an observation, even
    # the log's own, does not count, and the reason says so.
    v = judge(_policy(), "free", files, entries)
    assert not v["free-1.0.tar.gz"].served
    assert f"observed by {log_observer.vkey}, but the policy for free requires signers" in (
        v["free-1.0.tar.gz"].reason
    )


# --- the cache ---------------------------------------------------------------------------


def _put(cache: FileCache, data: bytes) -> str:
    tmp = cache.temp_path()
    tmp.write_bytes(data)
    key = hashlib.sha256(data).hexdigest()
    cache.add(key, tmp)
    return key


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=25)
    a, b = _put(cache, b"a" * 10), _put(cache, b"b" * 10)
    assert cache.get(a) is not None  # a is now the most recent
    c = _put(cache, b"c" * 10)
    assert cache.get(b) is None and not (cache.dir / b).exists()
    assert cache.get(a) is not None and cache.get(c) is not None
    assert cache.total == 20
    big = _put(cache, b"d" * 100)  # larger than the bound: it alone stays
    assert cache.get(big) is not None and cache.get(a) is None and cache.total == 100
    again = FileCache(tmp_path, max_bytes=25)  # a restart keeps what is there, bounded
    assert again.total == 100 and again.get(big) is not None
    (tmp_path / "tmp" / "left.part").write_bytes(b"x")
    FileCache(tmp_path, max_bytes=25)
    assert not (tmp_path / "tmp" / "left.part").exists()


async def test_cache_single_flight(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=1000)
    calls = 0
    gate = asyncio.Event()

    async def produce() -> Path:
        nonlocal calls
        calls += 1
        await gate.wait()
        tmp = cache.temp_path()
        tmp.write_bytes(b"payload")
        return cache.add(hashlib.sha256(b"payload").hexdigest(), tmp)

    waiters = [asyncio.ensure_future(cache.single_flight("k", produce)) for _ in range(5)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()  # one client going away does not cancel the others' download
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert calls == 1 and len(set(results)) == 1 and results[0].read_bytes() == b"payload"

    async def fail() -> Path:
        raise RuntimeError("upstream broke")

    for _ in range(2):  # a failure reaches every waiter and is not remembered
        with pytest.raises(RuntimeError):
            await asyncio.gather(cache.single_flight("f", fail), cache.single_flight("f", fail))


# --- end to end: real log, real pypiserver, real proxy, real pip and uv ----------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kw: object) -> None:
        return None


@dataclass
class World:
    log: LogProcess
    packages: Path
    proxy: ProxyProcess
    tmp: Path
    files: dict[str, bytes]

    @property
    def index(self) -> str:
        return self.proxy.url + "/simple/"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("proxy")
    releases = [
        Release("goodpkg", "1.0", ALICE),
        Release("goodpkg", "2.0", MALLORY),  # logged, but not by a signer the policy trusts
        Release("victim", "1.0", ALICE),  # the upstream will serve other bytes for it
        Release("free-pkg", "0.1", MALLORY),  # no rule in the policy: any signer will do
    ]
    rules = {"goodpkg": [ALICE], "victim": [ALICE]}
    with index_world(tmp, releases, rules, unlogged=[("free-pkg", "0.2")]) as iw:
        proxy = ProxyProcess(iw.index, iw.policy_file, tmp / "proxy", "--page-ttl", "0").start()
        try:
            yield World(iw.log, iw.packages, proxy, tmp, iw.files)
        finally:
            proxy.stop()


@pytest.mark.timeout(120)
def test_pages_show_only_trusted_files(world: World) -> None:
    status, body, headers = http_get(world.index + "goodpkg/", "text/html")
    assert status == 200, body
    assert headers["X-Sigledger-Dropped"] == "1"
    page = parse_html_page(body.decode(), world.index + "goodpkg/")
    assert [f.filename for f in page] == ["goodpkg-1.0-py3-none-any.whl"]
    good = world.files["goodpkg-1.0-py3-none-any.whl"]
    assert page[0].hashes == {"sha256": hashlib.sha256(good).hexdigest()}
    status, body, headers = http_get(world.index + "goodpkg/", JSON_V1)
    assert status == 200 and headers["Content-Type"].startswith(JSON_V1)
    doc = json.loads(body)
    assert doc["meta"]["api-version"] == "1.1" and doc["versions"] == ["1.0"]
    assert doc["files"][0]["size"] == len(good)
    # the file left out is explained
    status, body, _ = http_get(world.proxy.url + "/why/goodpkg/goodpkg-2.0-py3-none-any.whl")
    assert status == 200
    assert b"left out" in body and b"not signed by any trusted signer" in body
    assert MALLORY.vkey.encode() in body
    status, body, _ = http_get(
        world.proxy.url + "/why/goodpkg/goodpkg-2.0-py3-none-any.whl?format=json"
    )
    why = json.loads(body)
    assert why["served"] is False and why["signers"] == [MALLORY.vkey]
    assert world.proxy.logged("dropped goodpkg-2.0-py3-none-any.whl"), world.proxy.log()
    # nor can it be downloaded by guessing its URL
    status, body, _ = http_get(world.proxy.url + "/files/goodpkg/goodpkg-2.0-py3-none-any.whl")
    assert status == 404 and b"not signed by any trusted signer" in body
    # unlisted project: logged by anyone is served, not logged is not
    status, body, headers = http_get(world.index + "free-pkg/")
    assert [f.filename for f in parse_html_page(body.decode(), world.index)] == [
        "free_pkg-0.1-py3-none-any.whl"
    ]
    # names are normalized as PyPI does
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(world.index + "Free_Pkg/", timeout=10)
    with redirect.value:
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"] == "/simple/free-pkg/"
    status, body, _ = http_get(world.index, JSON_V1)
    assert {p["name"] for p in json.loads(body)["projects"]} >= {"goodpkg", "victim"}
    status, body, _ = http_get(world.proxy.url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, _ = http_get(world.index + "nosuchproject/")
    assert status == 404


@pytest.mark.timeout(180)
def test_pip_installs_through_the_proxy(world: World) -> None:
    target = world.tmp / "pip-target"
    r = pip_install(world.index, target, world.tmp, "goodpkg", "free-pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "goodpkg" / "__init__.py").read_text() == "NAME = 'goodpkg'\nVERSION = '1.0'\n"
    assert (target / "free_pkg").is_dir()
    # the version only an untrusted signer logged is not installable
    r = pip_install(world.index, world.tmp / "pip-2", world.tmp, "goodpkg==2.0")
    assert r.returncode != 0 and "No matching distribution" in r.stdout + r.stderr


@pytest.mark.timeout(180)
def test_uv_installs_through_the_proxy(world: World) -> None:
    target = world.tmp / "uv-target"
    r = uv_install(world.index, target, world.tmp, "goodpkg", "free-pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "goodpkg" / "__init__.py").read_text() == "NAME = 'goodpkg'\nVERSION = '1.0'\n"
    r = uv_install(world.index, world.tmp / "uv-2", world.tmp, "goodpkg==2.0")
    assert r.returncode != 0


@pytest.mark.timeout(60)
def test_head_then_get_on_one_connection(world: World) -> None:
    """A HEAD answers headers only, so the next answer on the same keep-alive connection
    is intact (uv sends HEAD before GET); a GET sends the verified bytes."""
    filename = "goodpkg-1.0-py3-none-any.whl"
    data = world.files[filename]
    url = urllib.parse.urlsplit(world.proxy.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        for _ in range(2):  # whether or not the file is in the cache yet
            conn.request("HEAD", f"/files/goodpkg/{filename}")
            r = conn.getresponse()
            assert r.status == 200 and r.read() == b""
            assert r.headers["Content-Length"] == str(len(data))
            conn.request("GET", f"/files/goodpkg/{filename}")
            r = conn.getresponse()
            assert r.status == 200 and r.read() == data
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_targeted_attack_is_refused(world: World) -> None:
    filename = "victim-1.0-py3-none-any.whl"
    logged = world.files[filename]
    _, evil = wheel("victim", "1.0", "import os  # something else\n")
    (world.packages / filename).write_bytes(evil)
    try:
        want = hashlib.sha256(logged).hexdigest()
        got = hashlib.sha256(evil).hexdigest()
        target = world.tmp / "attack-pip"
        r = pip_install(world.index, target, world.tmp, "victim")
        out = r.stdout + r.stderr
        assert r.returncode != 0
        assert f"upstream served sha256:{got} for {filename} but the log holds sha256:{want}" in out
        assert not (target / "victim").exists()
        target = world.tmp / "attack-uv"
        r = uv_install(world.index, target, world.tmp, "victim")
        assert r.returncode != 0, r.stdout + r.stderr
        assert f"409 upstream served sha256:{got} for {filename}" in r.stdout + r.stderr
        assert not (target / "victim").exists()
        status, body, _ = http_get(f"{world.proxy.url}/files/victim/{filename}")
        assert status == 409 and f"the log holds sha256:{want}".encode() in body
        assert world.proxy.logged(f"refused {filename}"), world.proxy.log()
        assert not (world.tmp / "proxy" / "cache" / "files" / got).exists()
    finally:
        (world.packages / filename).write_bytes(logged)
    # the honest bytes are served again
    status, body, _ = http_get(f"{world.proxy.url}/files/victim/{filename}")
    assert status == 200 and body == logged


# --- a log showing two histories stops the proxy -----------------------------------------

FORK_KEY = Signer.from_seed("fork.example/log", bytes([21]) * 32)


@pytest.mark.timeout(120)
async def test_forked_log_stops_the_proxy(tmp_path: Path) -> None:
    honest = SimulatedLog(FORK_KEY)
    honest.append(b"entry 0", b"entry 1")
    honest.publish()
    forked = honest.fork()
    honest.append(b"entry 2")
    forked.append(b"another entry 2")
    honest.publish()
    forked.publish()
    await honest.start()
    upstream = tmp_path / "dir"
    upstream.mkdir()
    filename, data = wheel("anything", "1.0")
    (upstream / filename).write_bytes(data)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        dump_policy(Policy((LogTrust(honest.url, FORK_KEY.verifier(), FORK_KEY.name),)))
    )
    work = tmp_path / "proxy"
    proxy = ProxyProcess(str(upstream), policy_file, work)
    try:
        await asyncio.to_thread(proxy.start)
        status, body, _ = await asyncio.to_thread(http_get, proxy.url + "/healthz")
        assert status == 200, body  # the honest checkpoint is now remembered
        honest_note = honest.note
        honest.note = forked.note  # the same log key now shows another history
        for path in ("/simple/anything/", f"/files/anything/{filename}", "/simple/"):
            status, body, _ = await asyncio.to_thread(http_get, proxy.url + path)
            assert status == 503, (path, body)
            assert b"two checkpoints that cannot both be true" in body
            assert STOP_FLAG.encode() in body and b"remove" in body
        status, body, _ = await asyncio.to_thread(http_get, proxy.url + "/healthz")
        assert status == 503
        health = json.loads(body)
        assert health["status"] == "stopped"
        assert health["evidence"]["type"] == "inconsistent_checkpoints"
        assert health["evidence"]["checkpoints"] == [honest_note.decode(), forked.note.decode()]
        assert await asyncio.to_thread(proxy.logged, "inconsistent_checkpoints"), proxy.log()
        # a restart stays stopped, even if the log looks honest again
        proxy.stop()
        honest.note = honest_note
        proxy = ProxyProcess(str(upstream), policy_file, work)
        await asyncio.to_thread(proxy.start)
        assert await asyncio.to_thread(proxy.logged, "STOPPED"), proxy.log()
        status, body, _ = await asyncio.to_thread(http_get, proxy.url + "/simple/anything/")
        assert status == 503
        status, body, _ = await asyncio.to_thread(http_get, proxy.url + "/healthz")
        assert status == 503 and json.loads(body)["evidence"]["type"] == "inconsistent_checkpoints"
        assert (work / "state" / STOP_FLAG).exists()
        assert FileCheckpointStore(work / "state").get(FORK_KEY.name) is not None
    finally:
        await asyncio.to_thread(proxy.stop)
        await honest.stop()


@pytest.mark.timeout(180)
def test_directory_upstream_with_core_metadata(world: World) -> None:
    """``--upstream DIR``: PEP 658 metadata beside a wheel is announced, served through
    the proxy, and pip installs with it."""
    upstream = world.tmp / "dir-upstream"
    (upstream / "sub").mkdir(parents=True)
    filename = "goodpkg-1.0-py3-none-any.whl"
    data = world.files[filename]
    (upstream / "sub" / filename).write_bytes(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        metadata = z.read("goodpkg-1.0.dist-info/METADATA")
    (upstream / "sub" / f"{filename}.metadata").write_bytes(metadata)
    proxy = ProxyProcess(
        upstream.as_uri(), world.tmp / "policy.toml", world.tmp / "dir-proxy", "--page-ttl", "0"
    ).start()
    try:
        status, body, _ = http_get(proxy.url + "/simple/goodpkg/", JSON_V1)
        assert status == 200, body
        (item,) = json.loads(body)["files"]
        assert item["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert item["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
        status, body, _ = http_get(f"{proxy.url}/files/goodpkg/{filename}.metadata")
        assert status == 200 and body == metadata
        target = world.tmp / "dir-target"
        r = pip_install(proxy.url + "/simple/", target, world.tmp, "goodpkg")
        assert r.returncode == 0, r.stdout + r.stderr
        assert (target / "goodpkg" / "__init__.py").exists()
        # a wheel nobody logged, dropped into the directory, is not shown
        _, extra = wheel("goodpkg", "3.0")
        (upstream / "goodpkg-3.0-py3-none-any.whl").write_bytes(extra)
        status, body, headers = http_get(proxy.url + "/simple/goodpkg/", HTML)
        assert status == 200 and headers["X-Sigledger-Dropped"] == "1"
        assert b"goodpkg-3.0" not in body
        status, body, _ = http_get(proxy.url + "/why/goodpkg/goodpkg-3.0-py3-none-any.whl")
        assert b"not in the log" in body
    finally:
        proxy.stop()


def test_cli_refuses_a_bad_upstream(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(dump_policy(Policy((LogTrust("http://127.0.0.1:9", ALICE.verifier(), "x"),))))
    r = run_cli("proxy", "--upstream", str(tmp_path / "nowhere"), "--policy", str(policy))
    assert r.returncode == 2
    assert "is neither an http(s) URL of a simple index" in r.stderr
    r = run_cli("proxy", "--upstream", str(tmp_path), "--policy", str(tmp_path / "none.toml"))
    assert r.returncode == 2 and "no trust policy" in r.stderr
