"""The log observes on demand: first-seen hashes of releases nobody signed.

Like the Go checksum database, a log configured with upstream indexes
(``observe_index``, tried in order) answers a lookup for a release its own
observer key has not observed by fetching that release's files from the index,
hashing them, logging one observation statement per file
(:class:`~sigledger.ledger.entry.SignedObservation`, signed with the log's
observer key) and answering the lookup with their inclusion proofs, in the
same request.

**The observer key.** ``<data>/observer.key`` (mode 0600), made on the first
start: derived from the log key (:meth:`~sigledger.ledger.note.Signer.derive`,
label :data:`KEY_LABEL`), so every server of a log (``ha``) that holds the log
key has it too, and a lost file is made again; a key put in that file before the
first start is used instead. Its key name is ``<origin>/observer`` (the origin
cut short so that the name fits 128 characters). Its verifier key is recorded in
the log's metadata (``observer_vkey``), so a later start refuses another key; it
is served at ``GET /observer`` and printed with the log key when the server
starts.

**Which lookups observe.** ``GET /lookup`` by project (first page only): with
``version`` or ``filename`` that release, without either the project's newest
release (the highest PEP 440 version the index lists, final releases before
pre-releases: what an installer picks) while the observer has no entry of the
project at all. A lookup of a release the observer has no entry of is *new*:
it counts against the client's ``observe_client_rate``. One of a release the
observer has observed only partly (files added later, or a pass cut short by a
crash) is a *check*: the index page is read once (the release is then known
complete for :data:`COMPLETE_TTL`, so files uploaded later are seen too), the
missing files are observed, and an unreachable index answers with what the log
has. A release the index does not list is remembered for a minute
(:data:`NEGATIVE_TTL`), so repeated lookups of a missing project do not reach
the index each time.

**Fetching.** The project page is ``<index>/<normalized name>/``, asked for as
PEP 691 JSON and read as PEP 503 HTML when the index answers HTML. Files
are fetched only from the index's own origin (scheme, host and port) or under
one of the file prefixes configured for it, and so is every redirect (at most
:data:`MAX_REDIRECTS`). At most ``observe_concurrency`` downloads run at once;
each may take ``observe_timeout`` seconds and ``observe_max_file_mb``
megabytes, project pages :data:`MAX_PAGE_BYTES`. The log hashes the bytes it
received; a hash (or size) the index states is only a cross-check: a file
whose bytes disagree with it is not logged (the index is inconsistent) and is
reported in the server log. Files whose names are not wheels or sdists are
skipped.

**Once, and only once.** A file the observer key already observed (by file
identity, any spelling) is never fetched again. The files of one pass are
submitted together through the sequencer (one unit: all logged or none), so a
crash or ``kill -9`` in the middle loses nothing but downloads: the retried
lookup finds which files are observed and fetches the rest, and the binding
rule makes a resubmission the existing entry, never a second one. Concurrent
lookups of one release share one pass. With ``ha`` only the leader observes:
followers forward observing lookups to it (:mod:`sigledger.ledger.log.ha`).
The leader's answer to a forwarded lookup carries :data:`COMPLETE_HEADER` when
the release is known complete; the follower then remembers that too (for
:data:`COMPLETE_TTL`) and answers the next lookups of it from its own reads.

**Changed files.** When the index page states a hash for a file the observer
already observed and it is not the logged one (the index changed a published
file), the file is not fetched again (first seen wins) and the log reports it:
a warning naming both hashes and the entry, and
``sigledger_observed_files{outcome="changed"}``.

**Large releases.** When more than ``observe_max_files`` files are missing, the
answer is ``202 Accepted`` with ``Retry-After`` (see :class:`Pending`) and the
release is observed in the background, ``observe_max_files`` files per pass
(the file asked for by name first); asking again after the wait answers with
the proofs. A lookup that observed nothing new but failed to reach the index
is ``503`` (retry later); a permanent problem with one file (too large, wrong
hash) skips that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from sigledger.ledger.encoding import sha256_from_hex
from sigledger.ledger.entry import (
    MAX_KEY_NAME_LEN,
    SignedObservation,
    Statement,
    decode_entry,
    file_identity,
    parse_release_filename,
)
from sigledger.ledger.errors import ConfigError, FormatError, OverloadedError, UnavailableError
from sigledger.ledger.log.sequencer import Sequencer
from sigledger.ledger.log.store import EntryQuery, LogStorage
from sigledger.ledger.note import Signer, check_key_name
from sigledger.ledger.service.config import ServerConfig
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.keys import read_key_file, write_key_file
from sigledger.ledger.wire import LookupQuery

log = logging.getLogger("sigledger.observer")

KEY_FILE = "observer.key"
COMPLETE_HEADER = "X-Sigledger-Release-Complete"  # see the module doc
META_KEY = "observer_vkey"
KEY_SUFFIX = "/observer"
KEY_LABEL = b"sigledger/observer-key/v1"
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_SIMPLE}, text/html;q=0.2"
MAX_PAGE_BYTES = 16 << 20
MAX_REDIRECTS = 3
NEGATIVE_TTL = 60.0  # seconds a release the index does not list is not asked for again
SKIP_TTL = 3600.0  # seconds a file that cannot be observed (too large, bad hash) is skipped
COMPLETE_TTL = 3600.0  # seconds a release whose every listed file is observed is not re-read
MEMORY = 100_000  # entries kept in each of those memories
NEW = "new"
CHECK = "check"
MAX_BACKGROUND = 16  # releases observed in the background at once
ENTRY_SCAN = 10_000  # entries of a release read to find one of the observer's
PROJECT_SCAN = 1_000  # entries of a project read for that (see Observer.needs)
LOGGING_SECONDS = 30.0  # allowance for sequencing (and witnessing) one pass's observations


class UpstreamError(UnavailableError, code="upstream_unavailable", retry_after=10):
    """The upstream index could not be reached (or failed) while observing; retry later."""


def observing_seconds(cfg: ServerConfig) -> float:
    """The longest an observing lookup may take: the project page, then
    ``observe_max_files`` downloads ``observe_concurrency`` at a time, each up to
    ``observe_timeout``, and :data:`LOGGING_SECONDS` to log them (750 s with the
    defaults). Whatever forwards lookups to the log (a follower to the leader,
    nginx) waits that long for an answer."""
    waves = math.ceil(cfg.observe_max_files / max(1, cfg.observe_concurrency))
    return cfg.observe_timeout * (1 + waves) + LOGGING_SECONDS


def key_name(origin: str) -> str:
    """The observer key's name for a log with ``origin``: ``<origin>/observer``,
    the origin shortened to fit :data:`~sigledger.ledger.entry.MAX_KEY_NAME_LEN`."""
    name = origin[: MAX_KEY_NAME_LEN - len(KEY_SUFFIX)] + KEY_SUFFIX
    check_key_name(name)
    return name


async def open_observer_key(
    data_dir: Path, storage: LogStorage, log_signer: Signer, origin: str
) -> Signer:
    """The log's observer key (see the module doc); ConfigError when the key file
    holds another key than the one the log recorded, or a recorded key that is not
    the derived one is missing."""
    path = data_dir / KEY_FILE
    recorded = await storage.get_meta(META_KEY)
    if path.exists():
        signer = read_key_file(path)
    else:
        signer = log_signer.derive(key_name(origin), KEY_LABEL)
        if recorded is not None and signer.vkey != recorded:
            raise ConfigError(
                f"the observer key of the log in {data_dir} ({recorded}) is missing: restore "
                f"{path} (a new key is another observer, which installers do not trust)"
            )
        write_key_file(path, signer)
        log.info("wrote the observer key", extra={"key_file": str(path), "vkey": signer.vkey})
    if recorded is None:
        await storage.set_meta({META_KEY: signer.vkey})
    elif signer.vkey != recorded:
        raise ConfigError(
            f"key {path} ({signer.vkey}) is not the observer key of the log in {data_dir} "
            f"({recorded}); refusing to start"
        )
    return signer


# -- index pages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file a project page lists: name, absolute URL, what the index states."""

    filename: str
    url: str
    sha256: bytes | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """An upstream index: its simple-API base URL and where its files may live."""

    url: str
    file_prefixes: tuple[str, ...] = ()

    def allows(self, url: str) -> bool:
        """Whether the log may fetch ``url`` for this index."""
        if any(url.startswith(p) for p in self.file_prefixes):
            return True
        a, b = urlsplit(url), urlsplit(self.url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.scheme in ("http", "https")

    def page_url(self, project: str) -> str:
        return f"{self.url}{canonicalize_name(project)}/"


def parse_project_page(body: bytes, content_type: str, page_url: str) -> list[IndexFile]:
    """The files of a PEP 691 JSON or PEP 503 HTML project page; FormatError if neither."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() == JSON_SIMPLE:
        return _parse_json_page(body, page_url)
    return _parse_html_page(body, page_url)


def _parse_json_page(body: bytes, page_url: str) -> list[IndexFile]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"project page is not valid JSON: {exc}") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        raise FormatError("PEP 691 project page without a files list")
    out = []
    for f in files:
        if not isinstance(f, dict):
            continue
        name, url, hashes, size = f.get("filename"), f.get("url"), f.get("hashes"), f.get("size")
        if not isinstance(name, str) or not isinstance(url, str):
            continue
        stated = hashes.get("sha256") if isinstance(hashes, dict) else None
        out.append(
            IndexFile(
                name,
                urljoin(page_url, url).split("#", 1)[0],
                sha256_from_hex(stated.lower()) if isinstance(stated, str) else None,
                size if type(size) is int and size >= 0 else None,
            )
        )
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _parse_html_page(body: bytes, page_url: str) -> list[IndexFile]:
    parser = _Links()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser raises little, but a page is untrusted input
        raise FormatError(f"project page is not readable HTML: {exc}") from None
    out = []
    for href, text in parser.links:
        url, _, fragment = urljoin(page_url, href).partition("#")
        name = text or url.rsplit("/", 1)[-1]
        algo, _, value = fragment.partition("=")
        stated = sha256_from_hex(value.lower()) if algo == "sha256" else None
        out.append(IndexFile(name, url, stated))
    return out


def _release_version(filename: str, project: str) -> Version | None:
    """The version of a wheel or sdist of ``project`` named ``filename``, else None."""
    try:
        name, version = parse_release_filename(filename)
        return Version(version) if name == project else None
    except (FormatError, InvalidVersion):
        return None


def release_files(
    files: Iterable[IndexFile], project: str, version: str | None
) -> tuple[str | None, list[IndexFile]]:
    """The files of ``project`` ``version`` (any spelling) among ``files``, and that
    version as listed; without ``version`` the newest release's (see the module doc)."""
    versioned = [(v, f) for f in files if (v := _release_version(f.filename, project)) is not None]
    if not versioned:
        return None, []
    if version is None:
        finals = [v for v, _ in versioned if not v.is_prerelease]
        want = max(finals or [v for v, _ in versioned])
    else:
        want = Version(version)
    key = canonicalize_version(want, strip_trailing_zero=True)
    chosen = [f for v, f in versioned if canonicalize_version(v, strip_trailing_zero=True) == key]
    return str(want), chosen


# -- fetching ----------------------------------------------------------------------


class Skipped(Exception):  # noqa: N818 (a verdict on one file, not a failure of the pass)
    """A file that cannot be observed now or later (too large, inconsistent)."""


class Fetcher(HttpClient):
    """Downloads from upstream indexes with the limits of the module doc."""

    user_agent = "sigledger-observer/0.1"

    def __init__(self, timeout: float, concurrency: int, max_file_bytes: int) -> None:
        super().__init__(aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10)))
        self.slots = asyncio.Semaphore(concurrency)
        self.max_file_bytes = max_file_bytes

    @contextlib.asynccontextmanager
    async def _get(self, source: Source, url: str, accept: str) -> Any:
        """GET ``url``, following redirects only where ``source`` allows."""
        for _ in range(MAX_REDIRECTS + 1):
            if not source.allows(url):
                raise Skipped(f"{url} is outside the index {source.url}")
            async with self.session.get(
                url, allow_redirects=False, headers={"Accept": accept}
            ) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                yield resp
                return
        raise Skipped(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def project_files(self, source: Source, project: str) -> list[IndexFile] | None:
        """The files the index lists for ``project``; None if it does not know it."""
        page = source.page_url(project)
        async with self.slots, self._get(source, page, ACCEPT) as resp:
            if resp.status in (404, 410):
                return None
            if resp.status != 200:
                raise UpstreamError(f"{page} answered HTTP {resp.status}")
            body = await _read_capped(resp, MAX_PAGE_BYTES, page)
            try:
                return parse_project_page(body, resp.headers.get("Content-Type", ""), str(resp.url))
            except FormatError as exc:
                raise UpstreamError(f"{page}: {exc}") from None

    async def hash_file(self, source: Source, f: IndexFile) -> tuple[bytes, int]:
        """SHA-256 and size of the bytes the index serves for ``f``."""
        async with self.slots, self._get(source, f.url, "*/*") as resp:
            if resp.status != 200:
                raise UpstreamError(f"{f.url} answered HTTP {resp.status}")
            if (resp.content_length or 0) > self.max_file_bytes:
                raise Skipped(f"{f.filename} is larger than {self.max_file_bytes} bytes")
            h = hashlib.sha256()
            size = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > self.max_file_bytes:
                    raise Skipped(f"{f.filename} is larger than {self.max_file_bytes} bytes")
                h.update(chunk)
        digest = h.digest()
        if f.sha256 is not None and f.sha256 != digest:
            raise Skipped(
                f"{f.filename}: the index states sha256:{f.sha256.hex()} but served bytes "
                f"with sha256:{digest.hex()}"
            )
        if f.size is not None and f.size != size:
            raise Skipped(f"{f.filename}: the index states {f.size} bytes but served {size}")
        return digest, size


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    out = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        out += chunk
        if len(out) > cap:
            raise UpstreamError(f"{what} is larger than {cap} bytes")
    return bytes(out)


# -- observing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """A release still being observed in the background: the ``202`` answer.

    JSON: ``{"status": "observing", "project", "version", "files", "observed",
    "retry_after", "message"}`` with the ``Retry-After`` header.
    """

    project: str
    version: str
    files: int  # in the release
    observed: int  # of them, by the observer, so far
    retry_after: int

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "observing",
            "project": self.project,
            "version": self.version,
            "files": self.files,
            "observed": self.observed,
            "retry_after": self.retry_after,
            "message": (
                f"the log is observing {self.files} files of {self.project} {self.version} "
                f"({self.observed} done); ask again in {self.retry_after} s"
            ),
        }


@dataclass
class _Release:
    """One release being observed: its files and which the observer has."""

    source: Source
    project: str
    version: str
    files: list[IndexFile]
    done: set[str] = field(default_factory=set)  # identity keys observed
    task: asyncio.Task[None] | None = None


class _Memory:
    """Keys remembered for a while (bounded, oldest dropped first)."""

    def __init__(self, ttl: float, size: int = MEMORY) -> None:
        self.ttl = ttl
        self.size = size
        self._until: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[key]
            return False
        return True

    def add(self, key: str) -> None:
        self._until.pop(key, None)
        self._until[key] = time.monotonic() + self.ttl
        while len(self._until) > self.size:
            self._until.popitem(last=False)


class Observer:
    """Observes releases for lookups (see the module doc). ``count(outcome, n)`` is
    told how many files were ``observed``, ``skipped`` or ``failed``."""

    def __init__(
        self,
        signer: Signer,
        sequencer: Sequencer,
        storage: LogStorage,
        cfg: ServerConfig,
        count: Callable[[str, int], None] = lambda _o, _n: None,
    ) -> None:
        self.signer = signer
        self.vkey = signer.vkey
        self.sequencer = sequencer
        self.storage = storage
        self.sources = [Source(url, prefixes) for url, prefixes in cfg.observe_sources()]
        self.max_files = cfg.observe_max_files
        self.fetcher = Fetcher(
            cfg.observe_timeout, cfg.observe_concurrency, cfg.observe_max_file_mb << 20
        )
        self.count = count
        self._unknown = _Memory(NEGATIVE_TTL)
        self._skipped = _Memory(SKIP_TTL)
        self._complete = _Memory(COMPLETE_TTL)
        self._seen = _Memory(COMPLETE_TTL)  # releases and projects the observer has entries of
        self._releases: dict[str, _Release] = {}
        self._passes: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self.fetcher.start()

    async def close(self) -> None:
        for r in list(self._releases.values()):
            if r.task is not None:
                r.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await r.task
        await self.fetcher.close()

    # -- which lookups observe ---------------------------------------------------

    @staticmethod
    def asks_release(q: LookupQuery) -> bool:
        """Whether ``q`` is a lookup that may make the log observe (by project, first page)."""
        return q.project is not None and q.cursor == 0

    def complete(self, q: LookupQuery) -> bool:
        """Whether every file the index lists for the release ``q`` asks about is
        known observed (see :meth:`needs`)."""
        return self.asks_release(q) and self._release_key(q) in self._complete

    def mark_complete(self, q: LookupQuery) -> None:
        """Remember the release ``q`` asks about as complete: another server (the
        leader) says so."""
        if self.asks_release(q):
            self._complete.add(self._release_key(q))

    def _release_key(self, q: LookupQuery) -> str:
        """``project version`` (the version canonical: one key for every spelling)."""
        version = file_identity(q.filename).version if q.filename else q.version
        if version is not None:
            version = canonicalize_version(version, strip_trailing_zero=True)
        return f"{q.project} {version or ''}"

    async def needs(self, q: LookupQuery) -> str | None:
        """:data:`NEW`, :data:`CHECK` or None: whether (and how) ``q`` makes the log
        observe (see the module doc)."""
        key = self._release_key(q)
        if not self.asks_release(q) or key in self._unknown:
            return None
        assert q.project is not None
        if q.filename is not None:
            ident = file_identity(q.filename)
            # A release seen complete asks nothing more: no read on this lookup's path.
            complete = key in self._seen and key in self._complete
            if complete or ident.key in self._skipped or await self._observed([ident.key]):
                return None
            version: str | None = parse_release_filename(q.filename)[1]  # as entries spell it
        else:
            version = q.version
        if key not in self._seen:
            # The project's (or release's) entries, for one of the observer's: a
            # bounded scan, remembered once positive.
            scan = ENTRY_SCAN if version is not None else PROJECT_SCAN
            rows = await self.storage.lookup(
                EntryQuery(self._below(), project=q.project, version=version, limit=scan)
            )
            if not self._observed_in(rows):
                return NEW
            self._seen.add(key)
        if version is None or key in self._complete:
            return None
        return CHECK

    async def _observed(self, identities: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        """The observer key's entry (index, sha256) for each of these file identities
        it has one for."""
        found = await self.storage.find_bindings((self.vkey, i) for i in identities)
        return {
            identity: (bound[0].index, bound[0].sha256)
            for (_signer, identity), bound in found.items()
            if bound
        }

    def _below(self) -> int:
        # Committed, not only published: with witnesses, an entry may be stored and
        # not yet shown, and it is observed all the same.
        committed = self.sequencer.committed_size
        return committed if committed is not None else 0

    def _observed_in(self, rows: Sequence[tuple[int, bytes]]) -> set[str]:
        """Identity keys of the observer's own entries among ``rows``."""
        out = set()
        for _i, data in rows:
            try:
                e = decode_entry(data)
            except FormatError:
                continue
            if isinstance(e.signed, SignedObservation) and e.signed.signer_vkey() == self.vkey:
                out.add(e.statement.identity.key)
        return out

    # -- observing ---------------------------------------------------------------

    async def observe(self, q: LookupQuery, need: str = NEW) -> Pending | None:
        """Observe what ``q`` asks about (``need`` from :meth:`needs`); None once it is
        in the log (or there is nothing to observe), a :class:`Pending` while a large
        release is under way."""
        assert q.project is not None
        key = self._release_key(q)
        running = self._releases.get(key)
        if running is not None and running.task is not None and not running.task.done():
            return self._pending(running)
        try:
            found = await self._find(q)
        except UpstreamError as exc:
            if need == NEW:
                raise
            log.warning("cannot check a release", extra={"release": key, "reason": str(exc)})
            return None
        if found is None:
            self._unknown.add(key)
            return None
        release = found
        first = file_identity(q.filename).key if q.filename else None
        todo = await self._missing(release, first)
        if not todo:
            self._complete.add(key)
            return None
        if len(todo) <= self.max_files:
            await self._pass(key, release, todo)
            self._complete.add(key)
            return None
        if len([r for r in self._releases.values() if r.task and not r.task.done()]) >= (
            MAX_BACKGROUND
        ):
            raise OverloadedError("the log is observing too many large releases; retry later")
        # The file asked for by name first, in this request; the rest in the background.
        if first is not None and todo[0].filename and file_identity(todo[0].filename).key == first:
            await self._pass(key, release, todo[:1])
        release.task = asyncio.create_task(self._background(key, release), name=f"observe {key}")
        self._releases[key] = release
        return self._pending(release)

    def _pending(self, r: _Release) -> Pending:
        left = max(0, len(r.files) - len(r.done))
        passes = math.ceil(left / self.max_files) if left else 1
        return Pending(r.project, r.version, len(r.files), len(r.done), min(60, 2 * passes))

    async def _find(self, q: LookupQuery) -> _Release | None:
        """The release on the first index that lists it."""
        assert q.project is not None
        version = file_identity(q.filename).version if q.filename else q.version
        failures = []
        for source in self.sources:
            try:
                files = await self.fetcher.project_files(source, q.project)
            except (aiohttp.ClientError, TimeoutError, UpstreamError, Skipped) as exc:
                failures.append(f"{source.url}: {_describe(exc)}")
                continue
            if files is None:
                continue
            listed, chosen = release_files(files, q.project, version)
            if chosen:
                assert listed is not None
                return _Release(source, q.project, listed, chosen)
        if failures:
            raise UpstreamError("cannot read the index: " + "; ".join(failures))
        return None

    async def _missing(self, release: _Release, first: str | None) -> list[IndexFile]:
        """The release's files the observer has not observed, ``first`` first."""
        idents = {}
        for f in release.files:
            try:
                idents[f.filename] = file_identity(f.filename).key
            except FormatError:
                continue
        observed = await self._observed(set(idents.values()))
        release.done = set(observed)
        for f in release.files:
            logged = observed.get(idents.get(f.filename, ""))
            if logged is not None and f.sha256 is not None and f.sha256 != logged[1]:
                # First seen wins; the index now states other bytes: say so loudly.
                self.count("changed", 1)
                log.warning(
                    "ALARM: the index states another hash for a file the log observed",
                    extra={
                        "file": f.url,
                        "entry": logged[0],
                        "logged_sha256": logged[1].hex(),
                        "stated_sha256": f.sha256.hex(),
                    },
                )
        todo = [
            f
            for f in release.files
            if f.filename in idents
            and idents[f.filename] not in release.done
            and idents[f.filename] not in self._skipped
        ]
        # One file per identity: an index may list two spellings of one file.
        seen: set[str] = set()
        unique = []
        for f in sorted(todo, key=lambda f: idents[f.filename] != first):
            if idents[f.filename] not in seen:
                seen.add(idents[f.filename])
                unique.append(f)
        return unique

    async def _background(self, key: str, release: _Release) -> None:
        try:
            # Each pass logs or skips every file it takes; the bound is a safeguard.
            for _ in range(math.ceil(len(release.files) / self.max_files) + 1):
                todo = await self._missing(release, None)
                if not todo:
                    self._complete.add(key)
                    return
                await self._pass(key, release, todo[: self.max_files])
        except asyncio.CancelledError:
            raise
        except UpstreamError as exc:  # the next lookup resumes it
            log.warning(
                "background observation stopped", extra={"release": key, "reason": str(exc)}
            )
        except Exception:
            log.exception("background observation failed", extra={"release": key})
        finally:
            self._releases.pop(key, None)

    async def _pass(self, key: str, release: _Release, files: Sequence[IndexFile]) -> None:
        """Fetch, hash, sign and log ``files`` as one unit; concurrent passes over one
        release wait for each other (the second then finds the files observed)."""
        while (other := self._passes.get(key)) is not None:
            await asyncio.shield(other)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._passes[key] = done
        try:
            await self._observe_files(release, files)
        finally:
            del self._passes[key]
            done.set_result(None)

    async def _observe_files(self, release: _Release, files: Sequence[IndexFile]) -> None:
        # Already observed by a pass that ran meanwhile: not fetched again.
        missing = await self._missing(release, None)
        files = [f for f in files if f in missing]
        results = await asyncio.gather(
            *(self._observe_one(release.source, f) for f in files), return_exceptions=True
        )
        observations = [r for r in results if isinstance(r, SignedObservation)]
        failed = []
        for f, r in zip(files, results, strict=True):
            if isinstance(r, Skipped):
                self._skipped.add(file_identity(f.filename).key)
                log.warning("file not observed", extra={"file": f.url, "reason": str(r)})
                self.count("skipped", 1)
            elif isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                failed.append(f"{f.filename}: {_describe(r)}")
        if observations:
            await self.sequencer.submit(observations)
            release.done |= {o.statement.identity.key for o in observations}
            self.count("observed", len(observations))
            log.info(
                "observed",
                extra={
                    "project": release.project,
                    "version": release.version,
                    "files": len(observations),
                    "index": release.source.url,
                },
            )
        if failed:
            self.count("failed", len(failed))
            raise UpstreamError(
                f"could not fetch {len(failed)} file(s) from {release.source.url}: "
                + "; ".join(failed[:5])
            )

    async def _observe_one(self, source: Source, f: IndexFile) -> SignedObservation:
        try:
            digest, size = await self.fetcher.hash_file(source, f)
        except FormatError as exc:
            raise Skipped(str(exc)) from None
        try:
            st = Statement.for_file(f.filename, digest, size)
        except FormatError as exc:
            raise Skipped(f"{f.filename}: {exc}") from None
        return SignedObservation.sign(self.signer, st, source.url, int(time.time() * 1000))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
