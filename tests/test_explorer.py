"""The HTML explorer: every page in-process (aiohttp test client), then a real
server with a witness driven by headless Chromium (``--dump-dom``: the DOM after
the page's scripts ran), checked against what the log serves through its API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urljoin, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import decode_entry, file_identity
from sigledger.ledger.log import explorer
from sigledger.ledger.log.app import SEQUENCER_KEY, STORAGE_KEY, create_app
from sigledger.ledger.log.sequencer import Published
from sigledger.ledger.log.store import Page
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    Signer,
    Verifier,
    cosignature_timestamp,
    parse_note,
    sign_cosignature,
)
from sigledger.ledger.service.config import ServerConfig
from sigledger.ledger.tiles import decode_entry_bundle, entry_bundle_for
from sigledger.ledger.wire import JSON_TYPE, encode_add_request
from tests.helpers import (
    LogProcess,
    WitnessProcess,
    get,
    missing_tool,
    observed,
    read_log,
    signed,
)

ALICE = Signer.from_seed("alice@example.org", bytes([1]) * 32)
BOB = Signer.from_seed("bob@example.org", bytes([2]) * 32)
HOSTILE = Signer.from_seed("<script>alert(1)</script>", bytes([3]) * 32)


# -- a tiny DOM ------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.attrs.get("class", "").split())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.walk() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"expected one #{ident}, found {len(found)}"
        return found[0]

    def has_id(self, ident: str) -> bool:
        return any(n.attrs.get("id") == ident for n in self.walk())


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    b = _Builder()
    b.feed(text)
    b.close()
    return b.root


def indexes(table: Node) -> list[int]:
    """The entry indexes of a table's rows."""
    return [int(tr.attrs["data-index"]) for tr in table.find_all("tr") if "data-index" in tr.attrs]


def flagged(table: Node) -> list[int]:
    """The entry indexes of a table's rows highlighted as conflicts."""
    return [int(tr.attrs["data-index"]) for tr in table.find_all("tr", cls="conflict")]


def fields_of(doc: Node) -> dict[str, str]:
    return {
        td.attrs["data-field"]: td.text().strip()
        for td in doc.find_all("td")
        if "data-field" in td.attrs
    }


# -- in-process app ------------------------------------------------------------------------


async def _start(tmp_path: Path) -> TestClient:
    app = create_app(ServerConfig(data=str(tmp_path / "log"), listen="127.0.0.1:0"))
    client: TestClient = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    c = await _start(tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def _add(client: TestClient, statements: list) -> list[dict]:
    r = await client.post(
        "/add", data=encode_add_request(statements), headers={"Content-Type": JSON_TYPE}
    )
    assert r.status == 200, await r.text()
    return (await r.json())["receipts"]


async def _page(client: TestClient, path: str, status: int = 200) -> tuple[Node, str, dict]:
    r = await client.get(path, allow_redirects=False)
    text = await r.text()
    assert r.status == status, (path, r.status, text[:500])
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    return parse_html(text), text, dict(r.headers)


async def _small_log(client: TestClient) -> None:
    await _add(
        client,
        [
            signed(ALICE, "pkg-a", "1.0", b"a-1.0-whl"),
            signed(ALICE, "pkg-a", "1.0", b"a-1.0-sdist", kind="sdist"),
            signed(ALICE, "pkg-a", "2.0", b"a-2.0-whl"),
        ],
    )
    await _add(client, [signed(BOB, "pkg-a", "2.0", b"a-2.0-whl"), signed(BOB, "other", "0.1")])
    await _add(client, [signed(HOSTILE, "pkg-a", "1.0", b"evil")])  # the conflict


async def test_observation_entries_show_kind_and_index(client: TestClient) -> None:
    observer = Signer.from_seed("localhost/sigledger/observer", bytes([5]) * 32)
    index_url = "http://127.0.0.1:9/simple/"
    await _add(
        client,
        [
            signed(ALICE, "pkg-a", "1.0", b"a-1.0-whl"),
            observed(observer, "pkg-a", "1.0", b"a-1.0-whl", index_url=index_url),
        ],
    )
    doc, _, _ = await _page(client, "/entry/1")
    f = fields_of(doc)
    assert (f["kind"], f["format_version"], f["index_url"]) == ("observation", "2", index_url)
    assert f["observed_ms"] == "1767225600000" and f["observed"] == "2026-01-01 00:00:00.000Z"
    assert (f["key_name"], f["signer"], f["signature_check"]) == (
        observer.name,
        observer.vkey,
        "valid",
    )
    assert doc.by_id("index-url").text() == index_url
    doc, _, _ = await _page(client, "/entry/0")
    assert fields_of(doc)["kind"] == "signature" and "index_url" not in fields_of(doc)
    doc, text, _ = await _page(client, "/project/pkg-a")
    assert "observed at " + index_url in text
    doc, _, _ = await _page(client, "/signer/" + quote(observer.vkey, safe=""))
    assert indexes(doc.by_id("signer-entries")) == [1]


def _links(doc: Node) -> set[str]:
    return {a.attrs["href"] for a in doc.find_all("a")}


async def test_every_page_renders_and_links(client: TestClient) -> None:
    await _small_log(client)
    doc, text, headers = await _page(client, "/")
    assert text.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert doc.find_all("title")[0].text().endswith("· localhost/sigledger · sigledger")
    assert headers["Cache-Control"] == explorer.PAGE_CACHE
    assert headers["Content-Security-Policy"] == explorer.CONTENT_SECURITY_POLICY
    assert doc.by_id("tree-size").text() == "6"
    assert indexes(doc.by_id("latest-entries")) == [5, 4, 3, 2, 1, 0]
    assert {"./entry/5", "./project/pkg-a", "./entries", "./search"} <= _links(doc) | {
        f.attrs["action"] for f in doc.find_all("form")
    }
    growth = json.loads(doc.by_id("growth-data").text())
    assert growth[0] == [growth[0][0], 0] and growth[-1][1] == 6 and len(growth) == 4
    assert len(doc.by_id("growth-table").find_all("tr")) == 1 + 4  # the no-JavaScript fallback
    assert [tr.find_all("td")[0].text() for tr in doc.by_id("signatures").find_all("tr")[1:]] == [
        "log signature"
    ]

    doc, _, headers = await _page(client, "/entries")
    assert len(doc.by_id("entries").find_all("tr")) == 1 + 6
    doc, _, _ = await _page(client, "/project/pkg-a")
    assert doc.by_id("project-name").text() == "pkg-a"
    assert {
        tr.attrs["data-version"]
        for tr in doc.by_id("versions").find_all("tr")
        if "data-version" in tr.attrs
    } == {"1.0", "2.0"}
    assert "../entry/0" in _links(doc) and f"../signer/{quote(ALICE.vkey, safe='')}" in _links(doc)
    doc, _, _ = await _page(client, "/project/pkg-a?version=2.0")
    assert indexes(doc.by_id("project-files")) == [2, 3]
    assert not flagged(doc.by_id("project-files"))
    doc, _, _ = await _page(client, "/entry/3")
    f = fields_of(doc)
    assert (f["project"], f["version"], f["key_name"], f["signer"]) == (
        "pkg-a",
        "2.0",
        "bob@example.org",
        BOB.vkey,
    )
    assert f["signature_check"] == "valid"
    assert not doc.has_id("conflict")
    assert indexes(doc.by_id("same-file")) == [2]
    doc, _, _ = await _page(client, "/signer/" + quote(BOB.vkey, safe=""))
    assert doc.by_id("signer-vkey").text() == BOB.vkey
    assert indexes(doc.by_id("signer-entries")) == [4, 3]  # by project name
    # the slashes of a verifier key's base64 need no escaping either
    doc, _, _ = await _page(client, "/signer/" + BOB.vkey.replace("+", "%2B"))
    assert doc.by_id("signer-vkey").text() == BOB.vkey

    # self-contained pages: nothing loaded from elsewhere; HEAD answers too
    for path in ("/", "/entries", "/project/pkg-a", "/entry/0", "/signer/" + quote(BOB.vkey)):
        _, text, _ = await _page(client, path)
        assert re.findall(r"https?://[^\s\"'<]*", text) == (
            ["http://www.w3.org/2000/svg"] if path == "/" else []  # the chart's SVG namespace
        )
        assert not re.search(r"<(?:img|link|iframe|object|embed)\b|\bsrc=", text), path
        r = await client.head(path)
        assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"


async def test_conflicts_are_highlighted(client: TestClient) -> None:
    await _small_log(client)
    doc, _, _ = await _page(client, "/project/pkg-a")
    conflict = doc.by_id("conflicts")
    (item,) = conflict.find_all("li")
    assert item.attrs == {"data-version": "1.0", "data-filename": "pkg_a-1.0-py3-none-any.whl"}
    assert flagged(doc.by_id("project-files")) == [0, 5]
    doc, _, _ = await _page(client, "/entry/5")
    assert "1 other hash" in doc.by_id("conflict").text()
    doc, _, _ = await _page(client, "/signer/" + quote(HOSTILE.vkey, safe=""))
    assert doc.has_id("signer-conflicts")
    doc, _, _ = await _page(client, "/project/other")
    assert doc.has_id("no-conflicts") and not doc.find_all("tr", cls="conflict")


async def test_search_decides_by_shape(client: TestClient) -> None:
    await _small_log(client)
    digest = hashlib.sha256(b"a-2.0-whl").hexdigest()
    for q in (digest, digest.upper(), "sha256:" + digest, f"  {digest} "):
        doc, _, _ = await _page(client, "/search?" + urlencode({"q": q}))
        assert indexes(doc.by_id("results")) == [2, 3]
    doc, _, _ = await _page(client, "/search?q=" + "0" * 64)
    assert doc.has_id("no-results")
    for q, where in (
        ("pkg-a", "project/pkg-a"),
        ("PKG_A", "project/pkg-a"),
        ("Pkg.A", "project/pkg-a"),
        (BOB.vkey, "signer/" + quote(BOB.vkey, safe="")),
    ):
        r = await client.get("/search?" + urlencode({"q": q}), allow_redirects=False)
        assert r.status == 303 and unquote(r.headers["Location"]) == "./" + unquote(where), q
    # a verifier key typed into a URL: its "+" arrive as spaces
    r = await client.get("/search?q=" + BOB.vkey, allow_redirects=False)
    assert r.status == 303
    doc, _, _ = await _page(client, "/search?q=nothing-here")
    assert "No entries for project nothing-here" in doc.by_id("no-results").text()
    doc, _, _ = await _page(client, "/search?" + urlencode({"q": Signer.generate("x").vkey}))
    assert doc.has_id("no-results")
    r = await client.get("/project/PKG_A?version=1.0", allow_redirects=False)
    assert r.status == 301 and r.headers["Location"] == "pkg-a?version=1.0"


async def test_search_finds_what_the_pages_show(client: TestClient) -> None:
    """A signer by the name the pages show, an entry by the hash digits they show."""
    await _small_log(client)
    home, _, _ = await _page(client, "/")
    shown = home.find_all("code")
    digits = next(
        c.text().rstrip("…")
        for c in shown
        if c.attrs.get("title", "").startswith(c.text().rstrip("…"))
        and len(c.attrs.get("title", "")) == 64
    )
    assert len(digits) >= 12
    for q in (digits, digits[:12], "sha256:" + digits[:12].upper()):
        r = await client.get("/search?" + urlencode({"q": q}), allow_redirects=False)
        assert r.status == 303, q
        doc, _, _ = await _page(client, "/" + r.headers["Location"].removeprefix("./"))
        full = [c.attrs["title"] for c in doc.by_id("results").find_all("code")]
        assert full and all(h.startswith(digits) for h in full)
    for signer in (ALICE, BOB, HOSTILE):
        r = await client.get("/search?" + urlencode({"q": signer.name}), allow_redirects=False)
        assert r.status == 303
        assert unquote(r.headers["Location"]) == "./signer/" + signer.vkey
    # too few digits to be a hash prefix, and neither a project nor a signer
    doc, _, _ = await _page(client, "/search?q=" + digits[:11])
    assert doc.has_id("no-results")
    # a name that is a project and a signer: both are offered
    await _add(client, [signed(Signer.generate("other"), "pkg-b", "1.0")])
    doc, _, _ = await _page(client, "/search?q=other")
    links = sorted(unquote(a.attrs["href"]) for a in doc.by_id("choices").find_all("a"))
    assert links[0] == "./project/other" and links[1].startswith("./signer/other+")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/entry/x", 400),
        ("/entry/", 400),
        ("/entry/-1", 400),
        ("/entry/01", 400),
        ("/entry/1e3", 400),
        ("/entry/" + "9" * 30, 400),
        ("/entry/6", 404),
        ("/entry/123456", 404),
        ("/project/", 400),
        ("/project/-bad-", 400),
        ("/project/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 400),
        ("/project/a%20b", 400),
        ("/project/" + "a" * 201, 400),
        ("/project/unknown", 404),
        ("/project/pkg-a?version=1.0.0.dev-x", 400),
        ("/project/pkg-a?version=01.0", 400),
        ("/project/pkg-a?version=9.9", 404),
        ("/project/pkg-a?after=x", 400),
        ("/signer/nobody", 400),
        ("/signer/a+00000000+AAAA", 400),
        ("/signer/" + quote(Signer.generate("nobody").vkey, safe=""), 404),
        ("/search", 400),
        ("/search?q=", 400),
        ("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E%01", 400),  # not even a key name
        ("/search?q=a%2Bb%2Bc", 400),
        ("/search?q=" + quote(Signer.generate("w", ALG_COSIGNATURE_V1).vkey, safe=""), 400),
        ("/entries?before=x", 400),
        ("/entries?before=-3", 400),
    ],
)
async def test_bad_input_gets_an_html_error_page(
    client: TestClient, path: str, status: int
) -> None:
    await _small_log(client)
    doc, text, headers = await _page(client, path, status)
    assert headers["Cache-Control"] == explorer.ERROR_CACHE
    assert doc.by_id("error").text() == ("Bad request" if status == 400 else "Not found")
    assert doc.by_id("error-message").text()
    assert "<script>alert" not in text and "<script" not in text
    assert doc.find_all("html")[0].attrs["lang"] == "en"


async def test_hostile_names_are_escaped(client: TestClient) -> None:
    await _small_log(client)
    pages = [
        "/",
        "/entries",
        "/project/pkg-a",
        "/entry/5",
        "/signer/" + quote(HOSTILE.vkey, safe=""),
        "/search?" + urlencode({"q": hashlib.sha256(b"evil").hexdigest()}),
    ]
    for path in pages:
        doc, text, _ = await _page(client, path)
        assert "<script>alert" not in text, path
        # the only scripts are the chart's (data block and drawing code, front page only)
        assert text.count("<script") == (2 if path == "/" else 0), path
        names = {a.text() for a in doc.find_all("a", cls="signer")}
        assert HOSTILE.name in names, path
    doc, _, _ = await _page(client, "/entry/5")
    assert fields_of(doc)["key_name"] == HOSTILE.name
    assert fields_of(doc)["signer"] == HOSTILE.vkey
    # a search echoes the query only escaped (it could be a signer's name: no entries)
    r = await client.get("/search?" + urlencode({"q": '"><script>alert(1)</script>'}))
    text = await r.text()
    assert r.status == 200 and "<script>alert" not in text and "&lt;script&gt;" in text
    assert 'id="no-results"' in text


async def test_witness_cosignatures_are_parsed(client: TestClient) -> None:
    await _small_log(client)
    seq = client.server.app[SEQUENCER_KEY]
    pub = seq.published
    assert pub is not None
    text = parse_note(pub.note).text
    witness = Signer.generate("w<b>1</b>.example", ALG_COSIGNATURE_V1)
    when = int(time.time()) - 60
    note = pub.note + sign_cosignature(witness, text, when).line().encode()
    seq.published = Published(pub.size, pub.root, note, pub.published_at)
    doc, raw, _ = await _page(client, "/")
    (row,) = doc.by_id("signatures").find_all("tr", cls="sig-witness")
    assert row.find_all("td", cls="sig-name")[0].text() == "w<b>1</b>.example"
    stamp = row.find_all("time")[0].attrs["datetime"]
    assert stamp == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))
    assert doc.by_id("witness-count").text() == "1"
    assert "<b>1</b>" not in raw
    lines = explorer.classify_signatures(parse_note(note), seq.signer)
    assert [(s.kind, s.timestamp) for s in lines] == [("log", None), ("witness", when)]


async def test_paging_walks_every_entry_once(client: TestClient) -> None:
    page = explorer.PAGE_SIZE
    n = 2 * page + 7
    await _add(client, [signed(ALICE, "big", f"1.{i}", b"same") for i in range(n)])
    await _add(client, [signed(BOB, "big", f"1.{i}", b"same") for i in range(3)])

    async def walk(path: str, table: str) -> list[int]:
        seen: list[int] = []
        pages = 0
        while path:
            doc, _, _ = await _page(client, path)
            pages += 1
            rows = indexes(doc.by_id(table))
            assert 0 < len(rows) <= page
            seen.extend(rows)
            nxt = [
                a
                for a in doc.by_id("pager").find_all("a")
                if a.text() in ("Older entries", "Next page", "More")
            ]
            path = (
                urljoin("http://x" + path, nxt[0].attrs["href"]).removeprefix("http://x")
                if nxt
                else ""
            )
        assert pages == -(-len(seen) // page)
        return seen

    total = n + 3
    assert await walk("/entries", "entries") == list(range(total - 1, -1, -1))
    by_project = await walk("/project/big", "project-files")
    assert sorted(by_project) == list(range(total)) and len(set(by_project)) == total
    by_signer = await walk("/signer/" + quote(ALICE.vkey, safe=""), "signer-entries")
    assert sorted(by_signer) == list(range(n))
    one_version = await walk("/project/big?version=1.1", "project-files")
    assert one_version == [1, n + 1]
    by_hash = await walk("/search?q=" + hashlib.sha256(b"same").hexdigest(), "results")
    assert by_hash == list(range(total))
    # newer-entries links go back up
    doc, _, _ = await _page(client, "/entries?before=10")
    (newer,) = doc.by_id("pager").find_all("a", cls="newer")
    assert newer.attrs["href"] == f"./entries?before={10 + page}"


async def test_storage_queries_stop_at_the_published_size(client: TestClient) -> None:
    await _small_log(client)
    storage = client.server.app[STORAGE_KEY]
    assert [i for i, _ in await storage.entries_before(3, 10)] == [2, 1, 0]
    assert [i for i, _ in await storage.project_entries("pkg-a", None, Page(3))] == [0, 1, 2]
    assert [i for i, _ in await storage.signer_entries(BOB.vkey, Page(4))] == [3]
    assert await storage.project_conflicts("pkg-a", 5, 10, 100) == []
    assert await storage.project_conflicts("pkg-a", 6, 10, 100) == [
        ("1.0", "pkg_a-1.0-py3-none-any.whl", 2, 2)
    ]
    assert [s for s, _t in await storage.growth(3, 100)] == [0, 3]
    assert [s for s, _t in await storage.growth(6, 1)] == [0, 6]
    ident = file_identity("pkg_a-1.0-py3-none-any.whl").key
    assert await storage.file_hash_counts([ident], 5) == {ident: (1, 1, 1)}


async def test_empty_log_front_page(client: TestClient) -> None:
    doc, _, _ = await _page(client, "/")
    assert doc.by_id("tree-size").text() == "0"
    assert json.loads(doc.by_id("growth-data").text())[0][1] == 0
    doc, _, _ = await _page(client, "/entries")
    assert not doc.by_id("entries").find_all("tr", data_index="0")


async def test_csp_allows_exactly_the_inline_style_and_script(client: TestClient) -> None:
    def source(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    r = await client.get("/")
    page = await r.text()
    policy = r.headers["Content-Security-Policy"]
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert policy.startswith("default-src 'none'; ")
    assert f"style-src {source(style)};" in policy
    assert f"script-src {source(script)};" in policy
    assert "form-action 'self'" in policy


# -- a real server in a real browser ------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing_tool(
            "the explorer's browser tests need Debian's chromium, which is not installed: "
            "apt-get install -y chromium (.ci/run installs it when it is missing)"
        )
    return exe


class Browser:
    """Headless Chromium, one process per page load (``--dump-dom`` prints the DOM
    once the page has loaded and its scripts ran; redirects are followed)."""

    def __init__(self, tmp: Path) -> None:
        self.exe = _chromium()
        self.tmp = tmp
        self.loads = 0
        # JavaScript off is a profile setting (the command-line switches do not
        # reach --dump-dom's renderer).
        no_js = tmp / "chromium-no-js" / "Default"
        no_js.mkdir(parents=True)
        (no_js / "Preferences").write_text(
            json.dumps({"profile": {"default_content_setting_values": {"javascript": 2}}})
        )

    async def dom(self, url: str, *, javascript: bool = True) -> Node:
        self.loads += 1
        profile = self.tmp / ("chromium" if javascript else "chromium-no-js")
        proc = await asyncio.create_subprocess_exec(
            self.exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(profile)},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        problem = f"chromium failed on {url}: {err.decode(errors='replace')[-2000:]}"
        assert proc.returncode == 0, problem
        text = out.decode()
        assert "<html" in text, problem
        return parse_html(text)


def _log_key(data: Path) -> Signer:
    data.mkdir(parents=True)
    signer = Signer.generate("localhost/sigledger")
    fd = os.open(data / "log.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (signer.skey + "\n").encode())
    os.close(fd)
    return signer


@pytest.fixture
def witnessed_log(tmp_path: Path) -> Iterator[tuple[LogProcess, WitnessProcess]]:
    log_signer = _log_key(tmp_path / "log")
    witness = WitnessProcess(
        tmp_path / "w0", "--name", "witness.example", "--log", log_signer.vkey
    ).start()
    try:
        env = {
            "SIGLEDGER_WITNESSES": f"{witness.url} {witness.vkey}",
            "SIGLEDGER_WITNESS_QUORUM": "1",
        }
        log = LogProcess(tmp_path / "log", env=env).start()
        try:
            yield log, witness
        finally:
            log.kill()
    finally:
        witness.kill()


async def _publish_releases(url: str) -> None:
    """Several projects, versions, wheels and sdists, two signers, one conflict; one
    request per release, so the log grows in steps."""
    releases = [
        [signed(ALICE, "sampleproject", "1.0.0", b"sp-1.0.0-whl"),
         signed(ALICE, "sampleproject", "1.0.0", b"sp-1.0.0-sdist", kind="sdist")],
        [signed(ALICE, "tinyhttp", "0.9.0", b"th-0.9.0-whl"),
         signed(ALICE, "tinyhttp", "0.9.0", b"th-0.9.0-sdist", kind="sdist")],
        [signed(ALICE, "sampleproject", "1.1.0", b"sp-1.1.0-whl"),
         signed(ALICE, "sampleproject", "1.1.0", b"sp-1.1.0-sdist", kind="sdist")],
        [signed(BOB, "zope-interface", "6.0", b"zi-6.0-whl"),
         signed(BOB, "zope-interface", "6.0", b"zi-6.0-sdist", kind="sdist"),
         signed(BOB, "sampleproject", "1.0.0", b"sp-1.0.0-whl")],  # agrees with alice
        [signed(ALICE, "sampleproject", "2.0.0", b"sp-2.0.0-whl"),
         signed(ALICE, "sampleproject", "2.0.0", b"sp-2.0.0-sdist", kind="sdist")],
        [signed(BOB, "sampleproject", "1.1.0", b"not what alice built", kind="sdist")],
    ]  # fmt: skip
    async with LogClient(url) as log:
        for statements in releases:
            await log.add(statements)


async def test_explorer_in_a_browser(
    tmp_path: Path, witnessed_log: tuple[LogProcess, WitnessProcess]
) -> None:
    log, witness = witnessed_log
    browser = Browser(tmp_path)
    await _publish_releases(log.url)
    size, leaves = await read_log(log.url, log.vkey)  # verified through the tile API
    entries = [decode_entry(e) for e in leaves]
    _, note, _ = await get(log.url + "/checkpoint")
    cp, _ = open_checkpoint(note, Verifier.from_vkey(log.vkey))
    assert cp.size == size == 12
    sha_files: dict[tuple[str, str, str], set[bytes]] = {}
    for e in entries:
        sha_files.setdefault(e.statement.identity.key, set()).add(e.statement.sha256)
    conflicting = {i for i, e in enumerate(entries) if len(sha_files[e.statement.identity.key]) > 1}
    assert conflicting == {5, 11}

    # the front page: checkpoint, witness cosignature, chart drawn by its script, latest
    home = log.url + "/"
    doc = await browser.dom(home)
    assert doc.find_all("html")[0].attrs["lang"] == "en"
    assert "localhost/sigledger" in doc.find_all("title")[0].text()
    assert int(doc.by_id("tree-size").text()) == cp.size
    assert doc.by_id("root-hash").text() == base64.b64encode(cp.root).decode()
    assert doc.by_id("checkpoint-note").text() == note.decode()
    (cosig,) = [s for s in parse_note(note).signatures if s.name == "witness.example"]
    (row,) = doc.by_id("signatures").find_all("tr", cls="sig-witness")
    assert row.find_all("td", cls="sig-name")[0].text() == "witness.example"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(cosignature_timestamp(cosig)))
    assert row.find_all("time")[0].attrs["datetime"] == stamp
    growth = json.loads(doc.by_id("growth-data").text())
    assert [s for _t, s in growth] == [0, 2, 4, 6, 9, 11, 12]  # one commit per request
    svg = doc.by_id("growth-svg")  # only exists if the inline script ran (CSP allowed it)
    points = svg.find_all("circle", cls="point")
    assert len(points) == len(growth) >= 7
    assert [int(p.attrs["data-size"]) for p in points] == [s for _t, s in growth]
    assert svg.find_all("polyline")
    latest = indexes(doc.by_id("latest-entries"))
    assert latest == list(range(cp.size - 1, -1, -1))

    # the search form, submitted the way a browser does: GET action?q=...
    (form,) = [f for f in doc.find_all("form") if f.attrs.get("id") == "search-form"]
    assert form.attrs["method"] == "get"
    (box,) = form.find_all("input", type="search")
    search = (
        urljoin(home, form.attrs["action"]) + "?" + urlencode({box.attrs["name"]: "SampleProject"})
    )
    assert parse_qs(urlsplit(search).query) == {"q": ["SampleProject"]}
    doc = await browser.dom(search)  # redirected to the canonical project page
    project_url = log.url + "/project/sampleproject"
    assert doc.by_id("project-name").text() == "sampleproject"
    rows = {
        int(tr.attrs["data-index"]): tr
        for tr in doc.by_id("project-files").find_all("tr")
        if "data-index" in tr.attrs
    }
    assert set(rows) == {i for i, e in enumerate(entries) if e.statement.project == "sampleproject"}
    for i, tr in rows.items():
        e = entries[i]
        cells = [td.text().strip() for td in tr.find_all("td")]
        assert cells[:5] == [
            e.statement.version,
            e.statement.filename,
            e.statement.sha256.hex(),
            str(e.statement.size),
            e.signed.key_name,
        ]
        assert ("conflict" in tr.attrs.get("class", "")) == (i in conflicting), i
    (item,) = doc.by_id("conflicts").find_all("li")
    assert item.attrs["data-filename"] == "sampleproject-1.1.0.tar.gz"
    versions = [
        tr.attrs["data-version"]
        for tr in doc.by_id("versions").find_all("tr")
        if "data-version" in tr.attrs
    ]
    assert versions == ["2.0.0", "1.1.0", "1.0.0"]  # newest first seen first

    # follow the link to bob's conflicting entry
    (link,) = [a for a in rows[11].find_all("a") if a.text() == "#11"]
    entry_url = urljoin(project_url, link.attrs["href"])
    assert urlsplit(entry_url).path == "/entry/11"
    doc = await browser.dom(entry_url)
    bundle_ref = entry_bundle_for(11, cp.size)
    _, bundle, _ = await get(f"{log.url}/{bundle_ref.path}")
    data = decode_entry_bundle(bundle)[11]
    e = decode_entry(data)
    st = e.statement
    assert fields_of(doc) == {
        "index": "11",
        "format_version": "1",
        "kind": "signature",
        "project": st.project,
        "version": st.version,
        "filename": st.filename,
        "sha256": st.sha256.hex(),
        "size": str(st.size),
        "key_name": e.signed.key_name,
        "public_key": base64.b64encode(e.signed.public_key).decode(),
        "signer": e.signed.signer_vkey(),
        "signature": base64.b64encode(e.signed.signature).decode(),
        "signature_check": "valid",
        "time_ms": str(e.time_ms),
        "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.time_ms // 1000))
        + f".{e.time_ms % 1000:03d}Z",
        "leaf_hash": merkle.leaf_hash(data).hex(),
    }
    assert doc.by_id("entry-bytes").text() == base64.b64encode(data).decode()
    assert "1 other hash" in doc.by_id("conflict").text()
    proof = [base64.b64decode(li.text()) for li in doc.by_id("inclusion-proof").find_all("li")]
    assert int(doc.by_id("proof-size").text()) == cp.size
    merkle.check_inclusion(11, cp.size, merkle.leaf_hash(data), proof, cp.root)
    assert doc.by_id("checkpoint-note").text() == note.decode()

    # and on to the signer
    (signer_link,) = doc.find_all("td", data_field="signer")[0].find_all("a")
    doc = await browser.dom(urljoin(entry_url, signer_link.attrs["href"]))
    assert doc.by_id("signer-vkey").text() == BOB.vkey
    signed_by_bob = indexes(doc.by_id("signer-entries"))
    assert sorted(signed_by_bob) == [
        i for i, e in enumerate(entries) if e.signed.signer_vkey() == BOB.vkey
    ]
    assert flagged(doc.by_id("signer-entries")) == [11]

    # search by file hash: the wheel both signers logged
    digest = entries[0].statement.sha256.hex()
    doc = await browser.dom(log.url + "/search?" + urlencode({"q": digest}))
    found = indexes(doc.by_id("results"))
    assert (
        found == [i for i, e in enumerate(entries) if e.statement.sha256.hex() == digest] == [0, 8]
    )

    # JavaScript off: no chart, but its data table, the checkpoint and the entries remain
    doc = await browser.dom(home, javascript=False)
    assert not doc.has_id("growth-svg")
    assert len(doc.by_id("growth-table").find_all("tr")) == 1 + len(growth)
    assert int(doc.by_id("tree-size").text()) == cp.size
    doc = await browser.dom(project_url, javascript=False)
    assert flagged(doc.by_id("project-files")) == sorted(conflicting)

    # unknown things are HTML 404 pages, bad input HTML 400 pages
    doc = await browser.dom(f"{log.url}/entry/{cp.size}")
    assert doc.by_id("error").text() == "Not found"
    doc = await browser.dom(log.url + "/search?q=" + quote("<b>bold</b>"))
    assert "<b>bold</b>" in doc.by_id("no-results").text() and not doc.find_all("b")
    doc = await browser.dom(log.url + "/search?q=" + quote("<b>bold</b>\x01"))
    assert doc.by_id("error").text() == "Bad request" and not doc.find_all("b")

    # the API beside the explorer is unchanged
    status, body, _ = await get(log.url + "/lookup?project=sampleproject")
    assert status == 200 and len(json.loads(body)["entries"]) == len(rows)
