"""A read-only HTML explorer of the log for auditors, served next to the API.

Pages (``GET``; every one also answers ``HEAD``):

* ``/`` -- the current checkpoint (tree size, root hash, the signed note and
  its signature lines: the log's signature and each witness cosignature with
  the witness name and cosignature time), log growth over time (tree size vs
  commit time from the checkpoints table), the latest entries and the search
  form.
* ``/entries[?before=N]`` -- every entry, newest first, paged.
* ``/search?q=Q`` -- decided by the shape of ``Q``: 64 hex digits (optionally
  ``sha256:``-prefixed) find entries by file hash; a signed-note verifier key
  (it contains ``+``) goes to its signer page; anything else is matched against
  what the pages show -- the first 12 or more hex digits of a file hash, a
  signer's key name, a project name (canonicalized, PEP 503) -- and goes to the
  one match, or lists them when there are several.
* ``/project/<name>[?version=V][&after=N]`` -- versions, signers, files with
  hashes, signers and first-seen times; files logged with more than one hash
  are highlighted as conflicts.
* ``/entry/<index>`` -- every decoded field of one entry, its signer, other
  entries for the same file, its inclusion proof against the current
  checkpoint and that checkpoint.
* ``/signer/<vkey>[?after=N]`` -- the projects and files a publisher key signed.

Only what the published checkpoint covers is shown (entries below its tree
size, tree heads up to it). Every list is bounded and paged by keyset
(``after``/``before`` are entry indexes), so each page costs a few index range
scans. Pages are rendered with the standard library; every value from the log
or the request goes through :func:`html.escape` (and :func:`urllib.parse.quote`
inside links). Links are relative, so the explorer also works under a path
prefix behind a proxy.

The growth chart is the only part that needs JavaScript: a small inline script
draws an SVG from JSON embedded in the page; without JavaScript the same data
is in a table. There are no external assets: CSS is inline, and a
Content-Security-Policy allows exactly the inline style and chart script (by
hash) and nothing else. Bad input answers an HTML 400 page, unknown things a
404 page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, parse_checkpoint
from sigledger.ledger.encoding import b64encode as _b64
from sigledger.ledger.encoding import sha256_from_hex
from sigledger.ledger.entry import (
    MAX_VERSION_LEN,
    OBSERVATION_FORMAT,
    Entry,
    SignedObservation,
    Statement,
    decode_entry,
    is_project_name,
)
from sigledger.ledger.errors import FormatError, LedgerError
from sigledger.ledger.log.sequencer import Published, Sequencer
from sigledger.ledger.log.store import EntryQuery, LogStorage, Page
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    check_key_name,
    cosignature_timestamp,
    parse_note,
)
from sigledger.ledger.tiles import entry_bundle_for

PAGE_SIZE = 50
"""Rows per page of entry lists."""
HASH_PREFIX_MIN = 12
"""Fewest hex digits searched as the start of a file hash (the pages show 16)."""
LATEST = 20
"""Entries on the front page."""
GROWTH_POINTS = 200
"""Most points of the growth chart (sampled evenly by tree size)."""
SUMMARY_LIMIT = 200
"""Most rows of a summary table (versions, signers, projects, conflicts)."""
SUMMARY_SCAN = 10000
"""Most entries of one project or signer that a summary looks at."""
SAME_FILE_LIMIT = 50
"""Most other entries for the same file shown on an entry page."""

PAGE_CACHE = "public, max-age=2"  # pages follow the checkpoint, like GET /checkpoint
ERROR_CACHE = "no-store"

_MAX_INDEX = 2**63 - 1

_CSS = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #57606a;
  --line: #d0d7de; --accent: #0b5cad; --bad: #b42318; --bad-bg: #fde8e6; --ok: #1a7f37; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117;
  --muted: #9da7b1; --line: #30363d; --accent: #58a6ff; --bad: #ff7b72; --bad-bg: #3b1816;
  --ok: #3fb950; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { border-bottom: 1px solid var(--line); padding: .6rem 1rem; display: flex;
  flex-wrap: wrap; gap: .5rem 1.2rem; align-items: center; }
header a { font-weight: 600; }
header form { margin-left: auto; display: flex; gap: .4rem; }
header input { width: min(32rem, 70vw); padding: .3rem .5rem; font: inherit; }
main { padding: 0 1rem 2rem; max-width: 78rem; }
footer { border-top: 1px solid var(--line); padding: .6rem 1rem; color: var(--muted); }
a { color: var(--accent); }
h1 { font-size: 1.5rem; margin: 1rem 0 .5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.6rem 0 .5rem; }
code, pre, .mono { font-family: ui-monospace, monospace; font-size: .88em; }
code { overflow-wrap: anywhere; }
pre { padding: .6rem; border: 1px solid var(--line); overflow-x: auto; }
table { border-collapse: collapse; margin: .4rem 0; }
th, td { text-align: left; vertical-align: top; padding: .25rem .6rem .25rem 0;
  border-bottom: 1px solid var(--line); }
th { font-weight: 600; }
table.fields th { white-space: nowrap; padding-right: 1.2rem; }
.muted { color: var(--muted); }
tr.conflict td { background: var(--bad-bg); }
.badge { display: inline-block; padding: 0 .4rem; border: 1px solid currentColor;
  border-radius: .6rem; font-size: .8em; font-weight: 600; }
.bad { color: var(--bad); }
.good { color: var(--ok); }
.alert { border: 2px solid var(--bad); background: var(--bad-bg); padding: .4rem .9rem; }
.pager { display: flex; gap: 1.2rem; }
.chart svg { width: 100%; max-width: 46rem; height: auto; }
.chart .axis { stroke: var(--muted); }
.chart .line { fill: none; stroke: var(--accent); stroke-width: 2; }
.chart .point { fill: var(--accent); }
.chart text { fill: var(--muted); font-size: 11px; }
"""

_CHART_JS = """
(function () {
  "use strict";
  var box = document.getElementById("growth-chart");
  var src = document.getElementById("growth-data");
  if (!box || !src) { return; }
  var pts = JSON.parse(src.textContent);
  if (!pts.length) { return; }
  var NS = "http://www.w3.org/2000/svg";
  var W = 720, H = 260, L = 64, R = 16, T = 12, B = 44;
  var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  var top = Math.max(1, pts[pts.length - 1][1]);
  function x(t) { return (L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L - R)).toFixed(1); }
  function y(s) { return (H - B - (s / top) * (H - T - B)).toFixed(1); }
  function stamp(t) { return new Date(t).toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  var svg = el("svg", {id: "growth-svg", viewBox: "0 0 " + W + " " + H, role: "img",
                       "aria-labelledby": "growth-svg-title"});
  svg.appendChild(el("title", {id: "growth-svg-title"}, "Tree size over time"));
  svg.appendChild(el("line", {"class": "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}));
  svg.appendChild(el("line", {"class": "axis", x1: L, y1: T, x2: L, y2: H - B}));
  svg.appendChild(el("text", {x: L - 6, y: T + 4, "text-anchor": "end"}, String(top)));
  svg.appendChild(el("text", {x: L - 6, y: H - B + 4, "text-anchor": "end"}, "0"));
  svg.appendChild(el("text", {x: L, y: H - B + 18}, stamp(t0)));
  svg.appendChild(el("text", {x: W - R, y: H - B + 18, "text-anchor": "end"}, stamp(t1)));
  svg.appendChild(el("text", {x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle"},
                     "tree size (entries) by commit time"));
  svg.appendChild(el("polyline", {"class": "line", points: pts.map(function (p) {
    return x(p[0]) + "," + y(p[1]);
  }).join(" ")}));
  pts.forEach(function (p) {
    var dot = el("circle", {"class": "point", cx: x(p[0]), cy: y(p[1]), r: 3,
                            "data-size": p[1], "data-time": p[0]});
    dot.appendChild(el("title", {}, "size " + p[1] + " at " + stamp(p[0])));
    svg.appendChild(dot);
  });
  box.appendChild(svg);
}());
"""


def _csp_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_csp_source(_CSS)}; script-src {_csp_source(_CHART_JS)}; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


# -- wiring ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogAccess:
    """Where the explorer finds the running log in the application."""

    storage: web.AppKey[LogStorage]
    sequencer: web.AppKey[Sequencer]
    signer: web.AppKey[Signer]


_ACCESS = web.AppKey("explorer_access", LogAccess)


def add_routes(app: web.Application, access: LogAccess) -> None:
    """Register the explorer's pages on ``app`` (``/`` and the page prefixes)."""
    app[_ACCESS] = access
    app.router.add_get("/", _html(handle_home))
    app.router.add_get("/entries", _html(handle_entries))
    app.router.add_get("/search", _html(handle_search))
    app.router.add_get("/project/{name:.*}", _html(handle_project))
    app.router.add_get("/entry/{index:.*}", _html(handle_entry))
    app.router.add_get("/signer/{vkey:.*}", _html(handle_signer))


@dataclass(frozen=True, slots=True)
class _View:
    """What one page needs: the log, its published checkpoint, and link base."""

    storage: LogStorage
    seq: Sequencer
    signer: Signer
    pub: Published
    base: str  # relative prefix to the explorer's root ("./" or "../" ...)

    @property
    def size(self) -> int:
        return self.pub.size

    def href(self, *parts: str, query: dict[str, str] | None = None) -> str:
        path = self.base + "/".join(quote(p, safe="") for p in parts)
        return path + ("?" + urlencode(query) if query else "")


class PageError(Exception):
    """Answered as an HTML error page."""

    def __init__(self, status: int, title: str, message: str, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.body = body


Handler = Callable[[web.Request, "_View"], Awaitable[web.Response]]


def _html(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        view = _view(request)
        try:
            return await handler(request, view)
        except PageError as exc:
            return _error_page(view, exc.status, exc.title, exc.message, exc.body)
        except LedgerError as exc:
            resp = _error_page(view, 503, "Unavailable", f"The log cannot answer right now: {exc}")
            resp.headers["Retry-After"] = "1"
            return resp

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _view(request: web.Request) -> _View:
    access = request.app[_ACCESS]
    seq = request.app[access.sequencer]
    pub = seq.published
    assert pub is not None
    depth = request.rel_url.raw_path.count("/") - 1
    return _View(
        request.app[access.storage],
        seq,
        request.app[access.signer],
        pub,
        "../" * depth if depth > 0 else "./",
    )


# -- formatting --------------------------------------------------------------------------


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _a(href: str, text: object, cls: str = "") -> str:
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{c}>{esc(text)}</a>'


def iso_ms(ms: int) -> str:
    """``2026-01-01T00:00:00.000Z`` for milliseconds since the epoch (else the number)."""
    try:
        moment = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _time(ms: int) -> str:
    stamp = iso_ms(ms)
    return f'<time datetime="{esc(stamp)}">{esc(stamp.replace("T", " "))}</time>'


def _short_hash(digest: bytes) -> str:
    hexed = digest.hex()
    return f'<code title="{hexed}">{hexed[:16]}…</code>'


def _decode(data: bytes) -> Entry | None:
    try:
        return decode_entry(data)
    except FormatError:
        return None


def _page(
    view: _View,
    title: str,
    body: str,
    *,
    status: int = 200,
    chart: bool = False,
    cache: str = PAGE_CACHE,
    query: str = "",
) -> web.Response:
    b = view.base
    origin = view.seq.origin
    script = f"<script>{_CHART_JS}</script>\n" if chart else ""
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{esc(title)} · {esc(origin)} · sigledger</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<a href="{esc(b)}" id="home">{esc(origin)}</a>
<a href="{esc(b)}entries">Entries</a>
<form action="{esc(b)}search" method="get" role="search" id="search-form">
<input type="search" name="q" value="{esc(query)}" required aria-label="Search the log"
 placeholder="project name, sha256, or signer verifier key">
<button type="submit">Search</button>
</form>
</header>
<main>
{body}
</main>
<footer>sigledger transparency log <code>{esc(origin)}</code> · tree size {view.size} ·
API: <a href="{esc(b)}checkpoint">checkpoint</a>, <a href="{esc(b)}observer">observer key</a>,
<a href="{esc(b)}healthz">healthz</a>, <a href="{esc(b)}metrics">metrics</a></footer>
{script}</body>
</html>
"""
    return web.Response(
        text=doc,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": cache,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


def _error_page(
    view: _View, status: int, title: str, message: str, extra: str = ""
) -> web.Response:
    body = (
        f'<h1 id="error">{esc(title)}</h1>\n<p id="error-message">{esc(message)}</p>\n{extra}'
        f"<p>{_a(view.base, 'Back to the log')}</p>"
    )
    return _page(view, title, body, status=status, cache=ERROR_CACHE)


def _index_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    return _parse_index(raw, name)


def _parse_index(raw: str, what: str) -> int:
    if not raw.isascii() or not raw.isdigit() or (len(raw) > 1 and raw[0] == "0"):
        raise PageError(
            400, "Bad request", f"{what} must be a decimal entry index without leading zeros"
        )
    n = int(raw)
    if n > _MAX_INDEX:
        raise PageError(400, "Bad request", f"{what} is too large")
    return n


def canonical_project(name: str) -> str | None:
    """The PEP 503 form of a project name, or None if ``name`` is not one."""
    if not is_project_name(name):
        return None
    return str(canonicalize_name(name))


# -- shared fragments --------------------------------------------------------------------


def _signer_link(view: _View, entry: Entry) -> str:
    """The key's name linked to its page; an observer's marked as such, with the index."""
    vkey = entry.signed.signer_vkey()
    link = (
        f'<a href="{esc(view.href("signer", vkey))}" title="{esc(vkey)}"'
        f' class="signer">{esc(entry.signed.key_name)}</a>'
    )
    if isinstance(entry.signed, SignedObservation):
        link += (
            f' <small class="badge observation" title="observed at '
            f'{esc(entry.signed.index_url)}">observed</small>'
        )
    return link


def _entries_table(
    view: _View,
    rows: Sequence[tuple[int, bytes]],
    *,
    table_id: str,
    conflicts: dict[str, tuple[int, int, int]] | None = None,
) -> str:
    """Entries with links, one row each; files with several hashes marked as conflicts."""
    out = [
        f'<table id="{esc(table_id)}" class="entries"><thead><tr><th>#</th><th>Project</th>'
        "<th>Version</th><th>File</th><th>SHA-256</th><th>Signer</th><th>Logged</th>"
        + ("<th>Status</th>" if conflicts is not None else "")
        + "</tr></thead><tbody>"
    ]
    for index, data in rows:
        entry = _decode(data)
        if entry is None:
            out.append(
                f'<tr data-index="{index}"><td>{_a(view.href("entry", str(index)), index)}</td>'
                '<td colspan="6" class="bad">undecodable entry</td></tr>'
            )
            continue
        st = entry.statement
        status = ""
        cls = ""
        if conflicts is not None:
            hashes, count, signers = conflicts.get(st.identity.key, (1, 1, 1))
            if hashes > 1:
                cls = ' class="conflict"'
                status = f"<td>{_conflict_badge(hashes, count, signers)}</td>"
            else:
                status = '<td class="muted">ok</td>'
        out.append(
            f'<tr data-index="{index}"{cls}>'
            f"<td>{_a(view.href('entry', str(index)), index)}</td>"
            f"<td>{_a(view.href('project', st.project), st.project)}</td>"
            f"<td>{_a(view.href('project', st.project, query={'version': st.version}), st.version)}"
            f"</td><td>{esc(st.filename)}</td>"
            f"<td>{_short_hash(st.sha256)}</td><td>{_signer_link(view, entry)}</td>"
            f"<td>{_time(entry.time_ms)}</td>{status}</tr>"
        )
    out.append("</tbody></table>")
    if not rows:
        out.append('<p class="muted">No entries.</p>')
    return "\n".join(out)


def _conflict_badge(hashes: int, entries: int, signers: int) -> str:
    kind = "one signer with two hashes" if entries > signers else "signers disagree"
    return (
        f'<strong class="badge bad conflict-badge" title="{hashes} different hashes logged for '
        f'this file ({kind})">conflict: {hashes} hashes</strong>'
    )


async def _conflicts_for(
    view: _View, rows: Iterable[tuple[int, bytes]]
) -> dict[str, tuple[int, int, int]]:
    """Hash counts per file identity: any spelling of a filename is the same file."""
    files = []
    for _i, data in rows:
        entry = _decode(data)
        if entry is not None:
            files.append(entry.statement.identity.key)
    return await view.storage.file_hash_counts(files, view.size)


async def _rebuilds_of(view: _View, index: int, st: Statement) -> list[tuple[int, str]]:
    """Entries of the same wheel (name, version, tags) with another build tag."""
    ident = st.identity
    if ident.kind != "wheel":
        return []  # only wheels have build tags
    rows = await view.storage.project_entries(
        st.project, st.version, Page(view.size, limit=SAME_FILE_LIMIT)
    )
    out = []
    for i, data in rows:
        entry = _decode(data)
        if entry is None or i == index:
            continue
        if ident.rebuilds(entry.statement.identity):
            out.append((i, entry.statement.filename))
    return out


@dataclass(frozen=True, slots=True)
class SignatureLine:
    """One signature line of a checkpoint note, classified for display."""

    kind: str  # "log", "witness" or "other"
    name: str
    key_id: int
    timestamp: int | None  # cosignature time (POSIX seconds) for witnesses


def classify_signatures(note: Note, log_signer: Verifier | Signer) -> list[SignatureLine]:
    """The note's signature lines: the log's own, witness cosignatures (with their
    timestamp, c2sp.org/tlog-cosignature), and any other."""
    out = []
    for sig in note.signatures:
        out.append(_classify(sig, log_signer))
    return out


def _classify(sig: NoteSignature, log_signer: Verifier | Signer) -> SignatureLine:
    if sig.name == log_signer.name and sig.key_id == log_signer.key_id:
        return SignatureLine("log", sig.name, sig.key_id, None)
    try:
        timestamp = cosignature_timestamp(sig)
    except FormatError:
        return SignatureLine("other", sig.name, sig.key_id, None)
    return SignatureLine("witness", sig.name, sig.key_id, timestamp)


def _checkpoint_section(view: _View, time_ms: int | None) -> str:
    pub = view.pub
    note = parse_note(pub.note)
    cp: Checkpoint = parse_checkpoint(note.text)
    lines = classify_signatures(note, view.signer)
    rows = []
    for line in lines:
        if line.kind == "witness":
            assert line.timestamp is not None
            when = _time(line.timestamp * 1000)
            label = "witness cosignature"
        else:
            when = '<span class="muted">—</span>'
            label = "log signature" if line.kind == "log" else "other signature"
        rows.append(
            f'<tr class="sig-{line.kind}"><td>{label}</td>'
            f'<td class="sig-name">{esc(line.name)}</td>'
            f'<td><code>{line.key_id:08x}</code></td><td class="sig-time">{when}</td></tr>'
        )
    witnesses = sum(1 for line in lines if line.kind == "witness")
    committed = _time(time_ms) if time_ms is not None else '<span class="muted">unknown</span>'
    ext = "".join(f"<li><code>{esc(e)}</code></li>" for e in cp.extensions)
    return f"""<section id="checkpoint">
<h2>Current checkpoint</h2>
<table class="fields">
<tr><th>Origin</th><td><code id="cp-origin">{esc(cp.origin)}</code></td></tr>
<tr><th>Tree size</th><td id="tree-size">{cp.size}</td></tr>
<tr><th>Root hash</th><td><code id="root-hash">{esc(_b64(cp.root))}</code></td></tr>
<tr><th>Committed</th><td>{committed}</td></tr>
<tr><th>Witness cosignatures</th><td id="witness-count">{witnesses}</td></tr>
{f"<tr><th>Extension lines</th><td><ul>{ext}</ul></td></tr>" if ext else ""}
</table>
<table id="signatures"><thead><tr><th>Signature</th><th>Name</th><th>Key ID</th>
<th>Cosigned at</th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<details><summary>Signed note</summary>
<pre id="checkpoint-note">{esc(pub.note.decode())}</pre></details>
<p class="muted">Verify it with the log key
<code id="log-vkey">{esc(view.signer.vkey)}</code>;
raw: {_a(view.base + "checkpoint", "checkpoint")}.</p>
</section>"""


# -- pages -------------------------------------------------------------------------------


async def handle_home(request: web.Request, view: _View) -> web.Response:
    """The front page: checkpoint, growth chart, latest entries."""
    storage = view.storage
    time_ms = await storage.checkpoint_time(view.size)
    points = await storage.growth(view.size, GROWTH_POINTS)
    latest = await storage.entries_before(view.size, LATEST)
    data = json.dumps([[t, s] for s, t in points]).replace("<", "\\u003c")
    table = "".join(f"<tr><td>{_time(t)}</td><td>{s}</td></tr>" for s, t in reversed(points))
    more = (
        f"<p>{_a(view.href('entries', query={'before': str(latest[-1][0])}), 'Older entries')}"
        f" · {_a(view.href('entries'), 'All entries')}</p>"
        if latest and latest[-1][0] > 0
        else ""
    )
    body = f"""<h1>{esc(view.seq.origin)}</h1>
<p>A transparency log of signed statements and observations about Python release files.
Search by project name, file SHA-256 or signer verifier key, or browse the latest entries.</p>
{_checkpoint_section(view, time_ms)}
<section id="growth">
<h2>Log growth</h2>
<div id="growth-chart" class="chart"></div>
<noscript><p>The chart needs JavaScript; the table below holds the same data.</p></noscript>
<details><summary>Tree size over time ({len(points)} tree heads)</summary>
<table id="growth-table"><thead><tr><th>Committed</th><th>Tree size</th></tr></thead>
<tbody>{table}</tbody></table></details>
<script type="application/json" id="growth-data">{data}</script>
</section>
<section id="latest">
<h2>Latest entries</h2>
{_entries_table(view, latest, table_id="latest-entries")}
{more}
</section>"""
    return _page(view, "Log explorer", body, chart=True)


async def handle_entries(request: web.Request, view: _View) -> web.Response:
    """All entries, newest first, ``PAGE_SIZE`` per page (``?before=N``)."""
    before = _index_param(request, "before")
    if before is None or before > view.size:
        before = view.size
    rows = await view.storage.entries_before(before, PAGE_SIZE)
    links = []
    if before < view.size:
        newer = before + PAGE_SIZE
        query = {"before": str(newer)} if newer < view.size else None
        links.append(_a(view.href("entries", query=query), "Newer entries", "newer"))
    if rows and rows[-1][0] > 0:
        links.append(
            _a(view.href("entries", query={"before": str(rows[-1][0])}), "Older entries", "older")
        )
    first = f"#{rows[0][0]} to #{rows[-1][0]}" if rows else "none"
    body = f"""<h1>Entries</h1>
<p>Entries {first} of {view.size}, newest first.</p>
{_entries_table(view, rows, table_id="entries")}
<nav class="pager" id="pager">{" ".join(links)}</nav>"""
    return _page(view, "Entries", body)


async def handle_search(request: web.Request, view: _View) -> web.Response:
    """``?q=``: a sha256 (64 hex) or its first hex digits, a signer (verifier key or
    the key name the pages show), or a project name."""
    q = request.query.get("q", "").strip()
    if not q:
        raise PageError(
            400,
            "Bad request",
            "Enter a project name, a file SHA-256 (or its first 12 hex digits), or a signer "
            "name or verifier key.",
        )
    digest = sha256_from_hex(q.removeprefix("sha256:"), any_case=True)
    if digest is not None:
        return await _search_sha256(request, view, digest, q)
    vkey = q if "+" in q else q.replace(" ", "+")  # "+" in a typed URL query reads as " "
    if "+" in vkey:
        try:
            verifier = Verifier.from_vkey(vkey)
        except FormatError as exc:
            raise PageError(
                400, "Bad request", f"{q!r} looks like a verifier key but is not one: {exc}"
            ) from None
        if verifier.alg != ALG_ED25519:
            raise PageError(
                400, "Bad request", "publishers sign with Ed25519 (type 0x01) keys only"
            )
        if await _has_entries(view, verifier.vkey):
            raise _redirect(view.href("signer", verifier.vkey))
        return _no_results(view, q, f"No entries signed by {verifier.vkey}.")
    # What the pages show: a hash's first digits, a signer's name, a project's name.
    choices = await _hashes_starting(view, q) + await _signers_named(view, q)
    project = canonical_project(q)
    if project is not None and await view.storage.lookup(
        EntryQuery(below=view.size, project=project, limit=1)
    ):
        choices.append((view.href("project", project), f"project {project}"))
    if len(choices) == 1:
        raise _redirect(choices[0][0])
    if choices:
        items = "".join(f"<li>{_a(href, text)}</li>" for href, text in choices)
        body = f'<h1>Search</h1>\n<p>More than one match:</p>\n<ul id="choices">{items}</ul>'
        return _page(view, f"Search: {q}", body, query=q)
    if project is None and not _is_key_name(q):
        raise PageError(
            400,
            "Bad request",
            f"{q!r} is neither a project name, a SHA-256 (64 hex digits, or the first 12 or "
            "more), a signer name nor a signer verifier key (name+keyid+key)",
        )
    looked = [f"project {project}"] if project is not None else []
    looked += [f"signer named {q}"] if _is_key_name(q) else []
    return _no_results(view, q, f"No entries for {' or '.join(looked)}.")


async def _hashes_starting(view: _View, q: str) -> list[tuple[str, str]]:
    """Search links for the logged file hashes starting with the hex digits ``q``."""
    digits = q.removeprefix("sha256:").lower()
    if not HASH_PREFIX_MIN <= len(digits) < 64 or digits.strip("0123456789abcdef"):
        return []
    low = bytes.fromhex((digits + "0" * 64)[:64])
    high = bytes.fromhex((digits + "f" * 64)[:64])
    found = await view.storage.hashes_between(low, high, view.size, PAGE_SIZE)
    return [(view.href("search", query={"q": d.hex()}), f"SHA-256 {d.hex()}") for d in found]


def _is_key_name(name: str) -> bool:
    try:
        check_key_name(name)
    except FormatError:
        return False
    return True


async def _signers_named(view: _View, name: str) -> list[tuple[str, str]]:
    """Signer page links for the publisher keys named ``name`` with published entries."""
    if not _is_key_name(name):
        return []
    # Verifier keys are "name+keyid+key", and "," follows "+": one bytewise range.
    vkeys = await view.storage.signers_between(name + "+", name + ",", PAGE_SIZE)
    return [
        (view.href("signer", vkey), f"signer {vkey}")
        for vkey in vkeys
        if await _has_entries(view, vkey)
    ]


async def _has_entries(view: _View, vkey: str) -> bool:
    """Whether ``vkey`` signed an entry the view shows (one row read: signer_entries
    would read and sort them all)."""
    return bool(await view.storage.signer_projects(vkey, view.size, 1, 1))


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers={"Cache-Control": PAGE_CACHE})


def _no_results(view: _View, q: str, message: str) -> web.Response:
    body = f'<h1>Search</h1>\n<p id="no-results">{esc(message)}</p>'
    return _page(view, f"Search: {q}", body, query=q)


async def _search_sha256(request: web.Request, view: _View, digest: bytes, q: str) -> web.Response:
    after = _index_param(request, "after")
    start = 0 if after is None else after + 1
    rows = await view.storage.lookup(
        EntryQuery(below=view.size, sha256=digest, start=start, limit=PAGE_SIZE + 1)
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    conflicts = await _conflicts_for(view, rows)
    links = []
    if after is not None:
        links.append(_a(view.href("search", query={"q": digest.hex()}), "First page"))
    if more:
        next_q = {"q": digest.hex(), "after": str(rows[-1][0])}
        links.append(_a(view.href("search", query=next_q), "More", "next"))
    pager = f'<nav class="pager" id="pager">{" ".join(links)}</nav>'
    if rows:
        found = f"Entries for files with SHA-256 <code>{digest.hex()}</code>:"
    else:
        found = f"No entries for files with SHA-256 <code>{digest.hex()}</code>."
    body = f"""<h1>Search: SHA-256</h1>
<p id="{"results-summary" if rows else "no-results"}">{found}</p>
{_entries_table(view, rows, table_id="results", conflicts=conflicts) if rows else ""}
{pager}"""
    return _page(view, f"Search: {digest.hex()[:16]}", body, query=q)


async def handle_project(request: web.Request, view: _View) -> web.Response:
    """A project's versions, signers and files, with conflicting hashes highlighted."""
    raw = request.match_info["name"]
    project = canonical_project(raw)
    if project is None:
        raise PageError(400, "Bad request", f"{raw!r} is not a project name")
    version = request.query.get("version")
    if version is not None:
        try:
            valid = len(version) <= MAX_VERSION_LEN and str(Version(version)) == version
        except InvalidVersion:
            valid = False
        if not valid:
            raise PageError(400, "Bad request", f"{version!r} is not a normalized version")
    if project != raw:
        query = {k: v for k, v in request.query.items() if k in ("version", "after")}
        raise web.HTTPMovedPermanently(
            quote(project, safe="") + ("?" + urlencode(query) if query else "")
        )
    after = _index_param(request, "after")
    storage = view.storage
    rows = await storage.project_entries(project, version, Page(view.size, after, PAGE_SIZE + 1))
    if not rows and after is None:
        what = f"{project} {version}" if version else project
        raise PageError(404, "Not found", f"The log has no entries for {what}.")
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    versions = await storage.project_versions(project, view.size, SUMMARY_LIMIT, SUMMARY_SCAN)
    signers = await storage.project_signers(project, view.size, SUMMARY_LIMIT, SUMMARY_SCAN)
    conflicts = await storage.project_conflicts(project, view.size, SUMMARY_LIMIT, SUMMARY_SCAN)
    page_conflicts = await _conflicts_for(view, rows)
    scanned = sum(n for _v, n, _i, _t in versions)
    truncated = (
        f'<p class="muted">Summaries cover the first {SUMMARY_SCAN} entries only.</p>'
        if scanned >= SUMMARY_SCAN
        else ""
    )

    if conflicts:
        items = "".join(
            f'<li data-version="{esc(v)}" data-filename="{esc(f)}">'
            f"{_a(view.href('project', project, query={'version': v}), v)} "
            f"<code>{esc(f)}</code>: {h} different hashes in {n} entries</li>"
            for v, f, h, n in conflicts
        )
        conflict_html = (
            '<section id="conflicts" class="alert"><h2 class="bad">Conflicts</h2>'
            "<p>These files were logged with more than one SHA-256: at least one of the "
            f"signers vouches for a file other people may not get.</p><ul>{items}</ul></section>"
        )
    else:
        conflict_html = (
            '<p id="no-conflicts" class="good">No conflicts: every file of this project was '
            "logged with one hash.</p>"
        )
    version_rows = "".join(
        f'<tr data-version="{esc(v)}">'
        f"<td>{_a(view.href('project', project, query={'version': v}), v)}"
        f"</td><td>{n}</td><td>{_time(t)}</td><td>{_a(view.href('entry', str(i)), '#' + str(i))}"
        "</td></tr>"
        for v, n, i, t in versions
    )
    signer_rows = "".join(
        f'<tr><td><a href="{esc(view.href("signer", s))}" class="signer">'
        f'{esc(s.partition("+")[0])}</a><br><code class="muted">{esc(s)}</code></td>'
        f"<td>{n}</td><td>{_a(view.href('entry', str(i)), '#' + str(i))}</td></tr>"
        for s, n, i in signers
    )
    file_rows = []
    for index, data in rows:
        entry = _decode(data)
        if entry is None:
            continue
        st = entry.statement
        hashes, count, nsigners = page_conflicts.get(st.identity.key, (1, 1, 1))
        cls = ' class="conflict"' if hashes > 1 else ""
        status = _conflict_badge(hashes, count, nsigners) if hashes > 1 else ""
        file_rows.append(
            f'<tr data-index="{index}"{cls}><td>{esc(st.version)}</td>'
            f'<td>{esc(st.filename)}</td><td><code class="sha256">{st.sha256.hex()}</code></td>'
            f"<td>{st.size}</td><td>{_signer_link(view, entry)}</td><td>{_time(entry.time_ms)}</td>"
            f"<td>{_a(view.href('entry', str(index)), '#' + str(index))}</td><td>{status}</td></tr>"
        )
    pager = []
    if after is not None:
        first_q = {"version": version} if version else None
        pager.append(_a(view.href("project", project, query=first_q), "First page"))
    if more:
        next_q = {"after": str(rows[-1][0])}
        if version:
            next_q = {"version": version, **next_q}
        pager.append(_a(view.href("project", project, query=next_q), "Next page", "next"))
    heading = f"Files of {esc(version)}" if version else "Files"
    show_all = f"<p>{_a(view.href('project', project), 'All versions')}</p>" if version else ""
    body = f"""<h1>Project <span id="project-name">{esc(project)}</span></h1>
{conflict_html}
{truncated}
<section id="versions"><h2>Versions</h2>
<table><thead><tr><th>Version</th><th>Entries</th><th>First seen</th><th>First entry</th>
</tr></thead><tbody>{version_rows}</tbody></table></section>
<section id="signers"><h2>Signers</h2>
<table><thead><tr><th>Signer</th><th>Entries</th><th>First entry</th></tr></thead>
<tbody>{signer_rows}</tbody></table></section>
<section id="files"><h2>{heading}</h2>{show_all}
<table id="project-files"><thead><tr><th>Version</th><th>File</th><th>SHA-256</th><th>Bytes</th>
<th>Signer</th><th>First seen</th><th>Entry</th><th>Status</th></tr></thead>
<tbody>{"".join(file_rows)}</tbody></table>
{"" if rows else '<p class="muted">No more files.</p>'}
<nav class="pager" id="pager">{" ".join(pager)}</nav></section>"""
    return _page(view, f"Project {project}", body, query=project)


async def handle_entry(request: web.Request, view: _View) -> web.Response:
    """One entry: decoded fields, signer, same-file entries, inclusion proof, checkpoint."""
    index = _parse_index(request.match_info["index"], "the entry index")
    if index >= view.size:
        raise PageError(
            404,
            "Not found",
            f"Entry #{index} is not in the log: the published tree has {view.size} entries.",
        )
    storage = view.storage
    found = await storage.read_entries(index, index + 1)
    if len(found) != 1:
        raise PageError(500, "Storage error", f"entry #{index} is missing from storage")
    data = found[0]
    (proof,) = await view.seq.prove_inclusions([index], view.size)
    leaf = merkle.leaf_hash(data)
    bundle = entry_bundle_for(index, view.size)
    time_ms = await storage.checkpoint_time(view.size)
    entry = _decode(data)
    nav = []
    if index > 0:
        nav.append(_a(view.href("entry", str(index - 1)), f"← #{index - 1}", "prev"))
    if index + 1 < view.size:
        nav.append(_a(view.href("entry", str(index + 1)), f"#{index + 1} →", "next"))
    proof_items = "".join(f"<li><code>{esc(_b64(h))}</code></li>" for h in proof)
    proof_html = f"""<section id="proof"><h2>Inclusion proof</h2>
<p>Leaf <span id="proof-index">{index}</span> in the tree of size
<span id="proof-size">{view.size}</span> with root <code>{esc(_b64(view.pub.root))}</code>
(RFC 6962 audit path, {len(proof)} hashes, leaf hash <code id="leaf-hash">{leaf.hex()}</code>):</p>
<ol id="inclusion-proof">{proof_items}</ol>
<p>The entry's bytes are in the entry bundle
{_a(view.base + bundle.path, bundle.path)}.</p></section>"""
    if entry is None:
        body = f"""<h1>Entry #{index}</h1>
<p class="alert">This entry cannot be decoded. Its bytes (base64):</p>
<pre id="entry-bytes">{esc(_b64(data))}</pre>
{proof_html}
{_checkpoint_section(view, time_ms)}"""
        return _page(view, f"Entry #{index}", body)

    signed = entry.signed
    st = entry.statement
    vkey = signed.signer_vkey()
    verified = signed.verify()
    same = await storage.lookup(
        EntryQuery(
            below=view.size, project=st.project, identity=st.identity.key, limit=SAME_FILE_LIMIT
        )
    )
    others = [(i, d) for i, d in same if i != index]
    other_hashes = {e.statement.sha256 for _i, d in others if (e := _decode(d)) is not None}
    other_hashes.discard(st.sha256)
    alert = ""
    if other_hashes:
        spellings = sorted(
            {e.statement.filename for _i, d in others if (e := _decode(d)) is not None}
            - {st.filename}
        )
        spelled = f" (also spelled {', '.join(esc(f) for f in spellings)})" if spellings else ""
        alert = (
            f'<div id="conflict" class="alert"><strong class="bad">Conflict:</strong> '
            f"{len(other_hashes)} other hash(es) were logged for {esc(st.filename)}"
            f"{spelled} by other entries (below).</div>"
        )
    rebuilds = await _rebuilds_of(view, index, st)
    if rebuilds:
        alert += (
            '<div id="rebuild" class="alert">Rebuild: other builds of this wheel were '
            "logged: "
            + ", ".join(
                f"{_a(view.href('entry', str(i)), '#' + str(i))} ({esc(f)})" for i, f in rebuilds
            )
            + ".</div>"
        )
    sig_state = (
        '<span class="good">valid</span>' if verified else '<strong class="bad">INVALID</strong>'
    )
    fields = [
        ("Log index", "index", str(index)),
        ("Format version", "format_version", str(_format_version(signed))),
        ("Kind", "kind", esc(signed.kind)),
        ("Project", "project", _a(view.href("project", st.project), st.project)),
        (
            "Version",
            "version",
            _a(view.href("project", st.project, query={"version": st.version}), st.version),
        ),
        ("File name", "filename", esc(st.filename)),
        (
            "SHA-256",
            "sha256",
            _a(view.href("search", query={"q": st.sha256.hex()}), st.sha256.hex()),
        ),
        ("Size (bytes)", "size", str(st.size)),
        ("Key name", "key_name", esc(signed.key_name)),
        ("Public key", "public_key", f"<code>{esc(_b64(signed.public_key))}</code>"),
        ("Signer (verifier key)", "signer", _a(view.href("signer", vkey), vkey)),
        ("Signature", "signature", f"<code>{esc(_b64(signed.signature))}</code>"),
        *_observation_fields(signed),
        ("Signature check", "signature_check", sig_state),
        ("Logged at (ms)", "time_ms", str(entry.time_ms)),
        ("Logged at", "time", _time(entry.time_ms)),
        ("Leaf hash", "leaf_hash", f"<code>{leaf.hex()}</code>"),
    ]
    field_rows = "".join(
        f'<tr><th>{esc(label)}</th><td data-field="{key}">{value}</td></tr>'
        for label, key, value in fields
    )
    if others:
        others_html = _entries_table(
            view,
            others,
            table_id="same-file",
            conflicts=await _conflicts_for(view, others[:1]),
        )
    else:
        others_html = '<p class="muted" id="same-file-none">No other entries for this file.</p>'
    body = f"""<h1>Entry #{index}</h1>
<p><code>{esc(st.filename)}</code> of {_a(view.href("project", st.project), st.project)}
{esc(st.version)}, {_attribution(view, entry)}.</p>
{alert}
<table class="fields" id="entry-fields"><tbody>{field_rows}</tbody></table>
<details><summary>Entry bytes (base64)</summary><pre id="entry-bytes">{esc(_b64(data))}</pre>
</details>
<section id="same-file-section"><h2>Other entries for this file</h2>
{others_html}</section>
{proof_html}
{_checkpoint_section(view, time_ms)}
<nav class="pager">{" ".join(nav)}</nav>"""
    return _page(view, f"Entry #{index}: {st.filename}", body)


def _format_version(signed: object) -> int:
    return OBSERVATION_FORMAT if isinstance(signed, SignedObservation) else 1


def _observation_fields(signed: object) -> list[tuple[str, str, str]]:
    """The fields only an observation has: which index served the file, and when."""
    if not isinstance(signed, SignedObservation):
        return []
    return [
        ("Index URL", "index_url", f"<code>{esc(signed.index_url)}</code>"),
        ("Observed at (ms)", "observed_ms", str(signed.observed_ms)),
        ("Observed at", "observed", _time(signed.observed_ms)),
    ]


def _attribution(view: _View, entry: Entry) -> str:
    """ "signed by KEY" or "served by INDEX as observed by KEY"."""
    if isinstance(entry.signed, SignedObservation):
        return (
            f'served by <code id="index-url">{esc(entry.signed.index_url)}</code> as observed by '
            + _signer_link(view, entry)
        )
    return "signed by " + _signer_link(view, entry)


async def handle_signer(request: web.Request, view: _View) -> web.Response:
    """What one publisher key signed: its projects and files, paged."""
    raw = request.match_info["vkey"]
    try:
        verifier = Verifier.from_vkey(raw)
    except FormatError as exc:
        raise PageError(400, "Bad request", f"{raw!r} is not a verifier key: {exc}") from None
    vkey = verifier.vkey
    alg = {ALG_ED25519: "Ed25519", ALG_COSIGNATURE_V1: "Ed25519 cosignature/v1"}[verifier.alg]
    key_html = f"""<table class="fields" id="signer-key">
<tr><th>Verifier key</th><td><code id="signer-vkey">{esc(vkey)}</code></td></tr>
<tr><th>Key name</th><td id="signer-name">{esc(verifier.name)}</td></tr>
<tr><th>Key ID</th><td><code>{verifier.key_id:08x}</code></td></tr>
<tr><th>Algorithm</th><td>{alg}</td></tr>
<tr><th>Public key</th><td><code>{esc(_b64(verifier.public_key))}</code></td></tr>
</table>"""
    after = _index_param(request, "after")
    storage = view.storage
    rows = await storage.signer_entries(vkey, Page(view.size, after, PAGE_SIZE + 1))
    if not rows and after is None:
        raise PageError(404, "Not found", f"The log has no entries signed by {vkey}.", key_html)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    projects = await storage.signer_projects(vkey, view.size, SUMMARY_LIMIT, SUMMARY_SCAN)
    conflicts = await _conflicts_for(view, rows)
    project_rows = "".join(
        f"<tr><td>{_a(view.href('project', p), p)}</td><td>{n}</td>"
        f"<td>{_a(view.href('entry', str(i)), '#' + str(i))}</td></tr>"
        for p, n, i in projects
    )
    pager = []
    if after is not None:
        pager.append(_a(view.href("signer", vkey), "First page"))
    if more:
        pager.append(
            _a(view.href("signer", vkey, query={"after": str(rows[-1][0])}), "Next page", "next")
        )
    flagged = sum(1 for h, _n, _s in conflicts.values() if h > 1)
    flag_html = (
        f'<p class="alert" id="signer-conflicts">{flagged} file(s) on this page were also '
        "logged with a different hash.</p>"
        if flagged
        else ""
    )
    body = f"""<h1>Signer <span id="signer-heading">{esc(verifier.name)}</span></h1>
{key_html}
<section id="projects"><h2>Projects</h2>
<table><thead><tr><th>Project</th><th>Entries</th><th>First entry</th></tr></thead>
<tbody>{project_rows}</tbody></table></section>
<section id="signed"><h2>Signed files</h2>
{flag_html}
{_entries_table(view, rows, table_id="signer-entries", conflicts=conflicts)}
<nav class="pager" id="pager">{" ".join(pager)}</nav></section>"""
    return _page(view, f"Signer {verifier.name}", body, query=vkey)
