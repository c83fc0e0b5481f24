"""``sigledger proxy``: a package index that shows and serves only logged, trusted files.

The proxy stands between installers (pip, uv, poetry, pdm: anything that reads
a simple repository API through ``--index-url``) and an upstream index: an
HTTP simple index (PyPI, a pypiserver, a devpi) or a local directory of
release files. Every page it serves is the upstream page *filtered and
rewritten* against the trust policy's log; every download is the upstream's
bytes *checked* against the hash the log holds.

URL layout
----------

``GET /simple/``
    The upstream's project list (PEP 503 HTML or PEP 691 JSON).
``GET /simple/<project>/``
    The project's files that pass the policy. A name that is not normalized
    (PEP 503: lower case, runs of ``-_.`` as one ``-``) is redirected (301) to
    the normalized one, as PyPI does; so is a missing trailing slash. The
    header ``X-Sigledger-Dropped: N`` counts the upstream files left out;
    ``X-Sigledger-Tree-Size`` names the log checkpoint the page was checked
    against.
``GET /files/<project>/<filename>``
    The file's bytes, only once they hash to the logged SHA-256.
``GET /files/<project>/<filename>.metadata``
    The PEP 658 core metadata, fetched from the upstream (its hash is the
    upstream's: the log attests release files, not their metadata; the
    installer still checks the metadata against the wheel it installs).
``GET /why/<project>/<filename>[?format=json]``
    Why a file is shown or left out (plain text, or JSON).
``GET /healthz``
    200 ``{"status": "ok", ...}`` when the log's checkpoint verifies; 503 with
    a reason otherwise, and with the evidence when the proxy has stopped.

Formats
-------

Pages are negotiated on ``Accept`` as PyPI does:
``application/vnd.pypi.simple.v1+json`` (PEP 691), ``application/vnd.pypi.simple.v1+html``
and ``text/html`` (PEP 503); the ``latest`` aliases are accepted; no
``Accept`` (or ``*/*``) gets HTML; nothing acceptable gets 406. ``?format=TYPE``
overrides the header. Pages carry ``Vary: Accept``. The JSON page is API
version 1.1 (PEP 700: ``size`` and ``versions``), or 1.0 when a size is not
known (only for ``--unlisted pass-through`` files the log does not hold).
Yanked marks, ``requires-python`` and PEP 658/714 metadata marks
(``data-core-metadata`` / ``data-dist-info-metadata``, ``core-metadata`` /
``dist-info-metadata``) are passed through.

Contracts
---------

* A file link is shown only when the policy's log holds an entry for that file
  (by its wheel/sdist identity) and :func:`~sigledger.client.install.verdicts.evaluate`
  accepts one logged hash for it: signed by enough signers the policy trusts
  for the project, no publisher signature failing, no trusted signer
  logging another hash for the same file. All entries of a project come from
  one proven lookup per page build (``GET /lookup?project=``, every entry with
  its inclusion proof, against a checkpoint accepted by
  :class:`~sigledger.client.trust.VerifiedLog`: signed by the pinned key,
  witnessed as the policy says, consistent with every checkpoint this proxy
  saw before, remembered in ``<state>/checkpoints``).
* The ``#sha256=`` fragment, the ``hashes`` value and the ``size`` come from
  the log, never from the upstream.
* A project without a rule in the policy (and no ``[default]``) follows
  ``--unlisted``: ``require-any-signer`` (the file must be signed in the log,
  by anyone; observations do not count, not even the log's own) or
  ``pass-through`` (shown even when not logged, with the upstream's hash, and
  a warning in the proxy's log). A policy written by ``sigledger policy pin``
  from a log with an observer key has a ``[default]`` trusting that key, so
  every project has a rule and ``--unlisted`` never applies: an unsigned file
  is served when the log observed the same hash (on demand, see below), and
  is not served otherwise.
* Downloads are written to a temporary file in the cache while hashed; the
  bytes are served only if the SHA-256 equals the logged one (and never more
  than the logged size is read). Verified files are kept in the cache under
  their hash, bounded in total size, least recently used first out (a file
  larger than the bound stays until the next one arrives). Requests for a file
  being downloaded wait for that download (single flight). Cached files are
  sent with ``sendfile`` (a ``HEAD`` gets the headers only). Project pages are
  reused for ``--page-ttl`` seconds: within it a request neither asks the log
  nor judges nor renders again (each format is rendered once per page).

Failure behaviour
-----------------

* Upstream bytes that do not match the log: ``409`` (installers retry 5xx
  answers, and pip then shows only "too many 502 error responses") with a
  plain-text body and an HTTP reason phrase (which pip prints) saying
  ``upstream served sha256:X for NAME but the log holds sha256:Y``; nothing is
  served or cached.
* A file the page left out: ``404`` with the reason.
* The log cannot be reached or its answers do not verify: ``503``/``502``;
  no page is served unchecked.
* When the policy trusts observers for a project, the newest versions on the
  upstream page that the log holds nothing for (at most three per page build)
  are looked up by version: a log configured to observe that index
  (``observe_index``) observes them then, and the page shows them if the
  policy accepts the log's observation.
* Upstream bytes that differ from the log's hash for a file the log holds
  (signed or *observed*: the default policy trusts the log's own observation):
  the same ``409``, and the evidence -- the logged entries (bytes, kind, key)
  and the hash served -- is logged at CRITICAL and appended as one JSON line
  to ``<state>/alarms.jsonl``.
* With ``--observer-key`` every download the proxy serves is logged as an
  observation under that key (batched, in the background; see
  :class:`ObservationSink`), so the proxy is an independent vantage point in
  the log. If the log refuses one because this key already observed other
  bytes for that file, that is an alarm with both statements as evidence
  (logged, and appended to ``alarms.jsonl``). When the proxy refuses bytes
  that differ from a trusted logged hash, it also logs its own observation of
  the bytes it got, before answering the ``409`` (read to the end, hashed, never
  stored; at most :data:`_REFUSED_MAX_BYTES` in :data:`_REFUSED_SECONDS`, else
  it is not observed): the disagreement becomes public
  in the log, where monitors report it with both statements. The ``409`` body
  and the alarm line say which entry holds it, or that this key had logged
  another hash for the file before (that alarm too), or why it was not logged.
* The log shows two histories (:class:`~sigledger.ledger.errors.LogMisbehaviorError`):
  the proxy stops. Every page and download answers ``503`` with a plain-text
  explanation, ``/healthz`` answers ``503`` with the evidence as JSON, the
  evidence is logged, and a flag file ``<state>/STOPPED-log-misbehavior.json``
  keeps a restarted proxy stopped until an operator removes it (the ``verify``
  command's exit status 4, for a long-running service).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import html
import json
import logging
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit
from urllib.request import url2pathname

import aiohttp
from aiohttp import web
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.observations import Alarm, add_observations
from sigledger.client.install.policy import LogTrust, Policy, SignerRule
from sigledger.client.install.verdicts import Outcome, entry_json, evaluate, kind
from sigledger.client.publish.submit import sign_observation
from sigledger.client.remote import LogClient
from sigledger.client.trust import VerifiedEntry, VerifiedLog
from sigledger.ledger.entry import (
    SignedObservation,
    Statement,
    file_identity,
    parse_release_filename,
)
from sigledger.ledger.errors import (
    ConfigError,
    FormatError,
    LedgerError,
    LogMisbehaviorError,
    NetworkError,
    VerificationError,
)
from sigledger.ledger.note import Signer
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.runner import run_app

__all__ = [
    "HTML",
    "HTML_V1",
    "JSON_V1",
    "STOP_FLAG",
    "FileCache",
    "IndexFile",
    "ProxyConfig",
    "ShownFile",
    "Verdict",
    "judge",
    "negotiate",
    "parse_html_page",
    "parse_html_projects",
    "parse_json_page",
    "parse_json_projects",
    "render_project_html",
    "render_project_json",
    "run_proxy",
]

log = logging.getLogger("sigledger.proxy")

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML = "text/html"
_MEDIA = {
    JSON_V1: JSON_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    HTML_V1: HTML_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    HTML: HTML,
}
_UPSTREAM_ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, {HTML};q=0.1"
UNLISTED_MODES = ("require-any-signer", "pass-through")
STOP_FLAG = "STOPPED-log-misbehavior.json"
_CHUNK = 1 << 16
_MAX_PAGE = 256 << 20  # an upstream page larger than this is refused
_MAX_METADATA = 16 << 20
_VIEWS = 1024  # project pages remembered
_HEX64 = re.compile(r"[0-9a-f]{64}")


class RefusedError(Exception):
    """An answer other than the one asked for: a status, a one-line reason (also
    the HTTP reason phrase, which pip prints) and a plain-text body."""

    def __init__(self, status: int, reason: str, body: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body or reason

    def response(self) -> web.Response:
        # The reason phrase must be one line of ASCII; the body says everything.
        phrase = " ".join(self.reason.split()).encode("ascii", "replace").decode()[:300]
        return web.Response(status=self.status, reason=phrase, text=self.body.rstrip() + "\n")


# ---------------------------------------------------------------------------
# Index pages: the model, parsers and renderers


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file link of an upstream project page, as the upstream describes it."""

    filename: str
    url: str  # absolute, without fragment
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)  # lower-case hex
    requires_python: str | None = None
    yanked: bool | str = False  # a reason string means yanked with that reason
    core_metadata: bool | Mapping[str, str] = False  # PEP 658/714: False, True or hashes
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ShownFile:
    """One file link of a page this proxy serves (hash and size from the log)."""

    filename: str
    sha256: str | None  # hex; None only for an unverified pass-through file
    size: int | None
    requires_python: str | None = None
    yanked: bool | str = False
    core_metadata: bool | Mapping[str, str] = False

    def url(self, project: str) -> str:
        return f"/files/{project}/{quote(self.filename)}"


def _is_filename(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _metadata_mark(value: object) -> bool | dict[str, str]:
    """PEP 658/714 ``data-core-metadata`` (a string) or ``core-metadata`` (JSON)."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str):
        name, sep, digest = value.partition("=")
        if not sep:
            return value.strip().lower() == "true"
        return {name.strip().lower(): digest.strip().lower()}
    if isinstance(value, dict):
        return {str(k).lower(): str(v).lower() for k, v in value.items() if isinstance(v, str)}
    return False


class _Anchors(HTMLParser):
    """Collects ``<a>`` elements (attributes, text) and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.base: str | None = None
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._finish()
            self._current = dict(attrs)
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._finish()

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def _finish(self) -> None:
        if self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None

    def close(self) -> None:
        super().close()
        self._finish()


def _anchors(text: str, page_url: str) -> tuple[list[tuple[dict[str, str | None], str]], str]:
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return parser.anchors, base


def _link_filename(url: str) -> str:
    # Installers name a file after its URL's last path segment, so this proxy does too.
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def parse_html_page(text: str, page_url: str) -> list[IndexFile]:
    """The file links of a PEP 503 project page (relative links resolved against
    ``page_url`` or the page's ``<base>``). Links without a usable filename are skipped."""
    anchors, base = _anchors(text, page_url)
    files: list[IndexFile] = []
    for attrs, label in anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(base, href.strip()))
        filename = _link_filename(url) or label
        if not _is_filename(filename):
            continue
        hashes: dict[str, str] = {}
        name, sep, digest = fragment.partition("=")
        if sep and name and digest:
            hashes[name.lower()] = digest.lower()
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        files.append(
            IndexFile(
                filename,
                url,
                hashes,
                attrs.get("data-requires-python") or None,
                yanked,
                _metadata_mark(metadata),
            )
        )
    return files


def parse_html_projects(text: str) -> list[str]:
    """Project names of a PEP 503 root page (link text, else the link's last segment)."""
    anchors, _ = _anchors(text, "http://index.invalid/simple/")
    names: list[str] = []
    for attrs, label in anchors:
        name = label or unquote((attrs.get("href") or "").rstrip("/").rsplit("/", 1)[-1])
        if name:
            names.append(name)
    return names


def _json_doc(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise FormatError(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{what} is not a JSON object")
    return doc


def parse_json_page(data: bytes | str, page_url: str) -> list[IndexFile]:
    """The files of a PEP 691 project page; FormatError if it is not one."""
    doc = _json_doc(data, "the upstream project page")
    items = doc.get("files")
    if not isinstance(items, list):
        raise FormatError("the upstream project page has no 'files' list")
    files: list[IndexFile] = []
    for item in items:
        if not isinstance(item, dict):
            raise FormatError("a file of the upstream project page is not an object")
        filename, href = item.get("filename"), item.get("url")
        if not isinstance(filename, str) or not isinstance(href, str):
            raise FormatError("a file of the upstream project page lacks filename or url")
        if not _is_filename(filename):
            continue
        raw_hashes = item.get("hashes")
        hashes = (
            {str(k).lower(): v.lower() for k, v in raw_hashes.items() if isinstance(v, str)}
            if isinstance(raw_hashes, dict)
            else {}
        )
        requires = item.get("requires-python")
        yanked = item.get("yanked", False)
        size = item.get("size")
        metadata = item.get("core-metadata", item.get("dist-info-metadata"))
        files.append(
            IndexFile(
                filename,
                urldefrag(urljoin(page_url, href))[0],
                hashes,
                requires if isinstance(requires, str) and requires else None,
                yanked if isinstance(yanked, (bool, str)) and yanked != "" else bool(yanked),
                _metadata_mark(metadata),
                size if type(size) is int and size >= 0 else None,
            )
        )
    return files


def parse_json_projects(data: bytes | str) -> list[str]:
    """Project names of a PEP 691 root page; FormatError if it is not one."""
    doc = _json_doc(data, "the upstream project list")
    items = doc.get("projects")
    if not isinstance(items, list):
        raise FormatError("the upstream project list has no 'projects' list")
    return [
        item["name"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def negotiate(accept: str | None) -> str | None:
    """The page format for an ``Accept`` header, as PyPI chooses it: the highest
    ``q`` wins, an exact type before a wildcard, the earlier before the later;
    None when nothing offered is acceptable."""
    if accept is None or not accept.strip():
        return HTML
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 < q <= 1.0:  # also refuses nan
            continue
        if media in _MEDIA:
            offer, exact = _MEDIA[media], 1
        elif media in ("*/*", "text/*"):
            offer, exact = HTML, 0
        elif media == "application/*":
            offer, exact = JSON_V1, 0
        else:
            continue
        rank = (q, exact, -index)
        if best is None or rank > best:
            best, chosen = rank, offer
    return chosen


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _metadata_attr(mark: bool | Mapping[str, str]) -> str | None:
    if mark is False:
        return None
    if mark is True or not mark:
        return "true"
    name = "sha256" if "sha256" in mark else sorted(mark)[0]
    return f"{name}={mark[name]}"


def _html_page(title: str, links: Sequence[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def render_project_html(project: str, files: Sequence[ShownFile]) -> str:
    """A PEP 503 page (with PEP 592 yanks and PEP 658/714 metadata marks)."""
    links = []
    for f in files:
        href = f.url(project) + (f"#sha256={f.sha256}" if f.sha256 else "")
        attrs = [f'href="{_attr(href)}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{_attr(f.requires_python)}"')
        if f.yanked is not False:
            reason = f.yanked if isinstance(f.yanked, str) else ""
            attrs.append(f'data-yanked="{_attr(reason)}"')
        mark = _metadata_attr(f.core_metadata)
        if mark is not None:
            attrs.append(f'data-core-metadata="{_attr(mark)}"')
            attrs.append(f'data-dist-info-metadata="{_attr(mark)}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a>")
    return _html_page(f"Links for {project}", links)


def _versions(files: Sequence[ShownFile]) -> list[str]:
    found: dict[str, Version | None] = {}
    for f in files:
        try:
            _, version = parse_release_filename(f.filename)
        except FormatError:
            continue
        try:
            found[version] = Version(version)
        except InvalidVersion:
            found[version] = None
    return sorted(found, key=lambda v: (found[v] is None, found[v] or Version("0"), v))


def render_project_json(project: str, files: Sequence[ShownFile]) -> dict[str, Any]:
    """A PEP 691 page; API version 1.1 (PEP 700) when every size is known."""
    out: list[dict[str, Any]] = []
    for f in files:
        item: dict[str, Any] = {
            "filename": f.filename,
            "url": f.url(project),
            "hashes": {"sha256": f.sha256} if f.sha256 else {},
            "yanked": f.yanked,
        }
        if f.requires_python:
            item["requires-python"] = f.requires_python
        if f.core_metadata is not False:
            mark: bool | dict[str, str] = (
                dict(f.core_metadata) if not isinstance(f.core_metadata, bool) else True
            )
            item["core-metadata"] = mark
            item["dist-info-metadata"] = mark
        if f.size is not None:
            item["size"] = f.size
        out.append(item)
    v11 = all(f.size is not None for f in files)
    doc: dict[str, Any] = {"meta": {"api-version": "1.1" if v11 else "1.0"}, "name": project}
    doc["files"] = out
    if v11:
        doc["versions"] = _versions(files)
    return doc


def render_index_html(projects: Sequence[str]) -> str:
    links = [
        f'<a href="/simple/{_attr(quote(str(canonicalize_name(p))))}/">{html.escape(p)}</a>'
        for p in projects
    ]
    return _html_page("Simple index", links)


def render_index_json(projects: Sequence[str]) -> dict[str, Any]:
    return {"meta": {"api-version": "1.0"}, "projects": [{"name": p} for p in projects]}


# ---------------------------------------------------------------------------
# Judging a page against the log


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one upstream file is shown, and why."""

    filename: str
    project: str
    served: bool
    reason: str
    upstream: IndexFile
    sha256: bytes | None = None  # what a download must hash to (from the log when verified)
    size: int | None = None
    verified: bool = False  # sha256 and size come from the log
    signers: tuple[str, ...] = ()
    entries: tuple[int, ...] = ()  # log indexes of the entries that decided it
    alarm: bool = False
    # Served, but someone the rule does not trust logged another hash for this file.
    warnings: tuple[str, ...] = ()
    # The entries that decided a served file (the evidence when a download differs).
    logged: tuple[VerifiedEntry, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def shown(self) -> ShownFile:
        up = self.upstream
        return ShownFile(
            self.filename,
            self.sha256.hex() if self.sha256 is not None else None,
            self.size,
            up.requires_python,
            up.yanked,
            up.core_metadata,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "filename": self.filename,
            "served": self.served,
            "verified": self.verified,
            "reason": self.reason,
            "alarm": self.alarm,
            "sha256": self.sha256.hex() if self.sha256 is not None else None,
            "size": self.size,
            "signers": list(self.signers),
            "log_entries": list(self.entries),
            "upstream_url": self.upstream.url,
            "upstream_sha256": self.upstream.hashes.get("sha256"),
        }


ANY_SIGNER = SignerRule(frozenset(), 1, any_signer=True)


def judge(
    policy: Policy,
    project: str,
    files: Sequence[IndexFile],
    entries: Sequence[VerifiedEntry],
    *,
    unlisted: str = "require-any-signer",
) -> dict[str, Verdict]:
    """A verdict per upstream file (upstream order; a repeated filename counts once).

    ``entries`` are the log's verified entries for ``project``. Each distinct
    logged hash of a file is evaluated as ``sigledger verify`` would; the file
    is shown when exactly one passes.
    """
    unruled = policy.rule_for(project) is None
    effective = dataclasses.replace(policy, default=ANY_SIGNER) if unruled else policy
    by_file: dict[str, list[VerifiedEntry]] = {}
    for e in entries:
        st = e.entry.statement
        if str(canonicalize_name(st.project)) == project:
            by_file.setdefault(st.identity.key, []).append(e)
    verdicts: dict[str, Verdict] = {}
    for f in files:
        if f.filename in verdicts:
            continue
        verdict = _judge_file(effective, project, f, by_file)
        if not verdict.served and unruled and unlisted == "pass-through":
            upstream_hash = f.hashes.get("sha256", "")
            verdict = dataclasses.replace(
                verdict,
                served=True,
                reason=f"served unverified (no policy rule; --unlisted pass-through): "
                f"{verdict.reason}",
                sha256=bytes.fromhex(upstream_hash) if _HEX64.fullmatch(upstream_hash) else None,
                size=f.size,
                verified=False,
            )
        verdicts[f.filename] = verdict
    return verdicts


def _judge_file(
    policy: Policy, project: str, f: IndexFile, by_file: Mapping[str, Sequence[VerifiedEntry]]
) -> Verdict:
    try:
        identity = file_identity(f.filename)
        _, version = parse_release_filename(f.filename)
    except FormatError:
        return Verdict(f.filename, project, False, "not a wheel or sdist filename", f)
    if identity.project != project:
        return Verdict(
            f.filename, project, False, f"the filename names project {identity.project}", f
        )
    found = by_file.get(identity.key, [])
    if not found:
        return Verdict(f.filename, project, False, "not in the log (no entry for this file)", f)
    outcomes: list[tuple[bytes, Outcome]] = []
    for digest in sorted({e.entry.statement.sha256 for e in found}):
        artifact = Pin(project, version, digest, f.filename, None, f.filename, name=f.filename)
        same = [e for e in found if e.entry.statement.sha256 == digest]
        outcomes.append((digest, evaluate(policy, artifact, same, by_file)))
    passed = [(d, o) for d, o in outcomes if o.ok]
    if len(passed) == 1:
        digest, outcome = passed[0]
        return Verdict(
            f.filename,
            project,
            True,
            outcome.reason,
            f,
            digest,
            outcome.entries[0].entry.statement.size,
            True,
            outcome.trusted,
            tuple(e.index for e in outcome.entries),
            warnings=tuple(outcome.warning_lines()),
            logged=tuple(outcome.entries),
        )
    if passed:
        reason = f"the log holds {len(passed)} different trusted hashes for this file"
        return Verdict(f.filename, project, False, "ALARM: " + reason, f, alarm=True)
    if len(outcomes) == 1:
        reason = outcomes[0][1].reason
    else:
        reason = "; ".join(f"sha256:{d.hex()[:16]}…: {o.reason}" for d, o in outcomes)
    return Verdict(
        f.filename,
        project,
        False,
        reason,
        f,
        signers=tuple(sorted({e.entry.signed.signer_vkey() for e in found})),
        entries=tuple(e.index for e in found),
        alarm=any(o.alarm for _, o in outcomes),
    )


@dataclass(frozen=True, slots=True)
class ProjectView:
    """A project page as judged at one checkpoint."""

    project: str
    verdicts: Mapping[str, Verdict]
    tree_size: int
    origin: str
    built: float  # time.monotonic()
    # Rendered page bodies by format: a view never changes, so each is rendered once.
    bodies: dict[str, bytes] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def body(self, chosen: str) -> bytes:
        """The page in the negotiated format (JSON, or HTML for either HTML type)."""
        kind = "json" if chosen == JSON_V1 else "html"
        body = self.bodies.get(kind)
        if body is None:
            shown = self.shown
            if kind == "json":
                body = json.dumps(render_project_json(self.project, shown)).encode()
            else:
                body = render_project_html(self.project, shown).encode()
            self.bodies[kind] = body
        return body

    @property
    def shown(self) -> list[ShownFile]:
        return [v.shown() for v in self.verdicts.values() if v.served]

    @property
    def dropped(self) -> int:
        return sum(1 for v in self.verdicts.values() if not v.served)


# ---------------------------------------------------------------------------
# Upstreams


class Upstream(Protocol):
    """Where pages and bytes come from (nothing from it is trusted)."""

    description: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def projects(self) -> list[str]: ...

    async def project_files(self, project: str) -> list[IndexFile] | None:
        """The project's files; None when the upstream has no such project."""

    def stream(self, f: IndexFile) -> AsyncIterator[bytes]: ...

    async def metadata(self, f: IndexFile) -> bytes: ...


class HttpUpstream(HttpClient):
    """A simple repository API over HTTP (``BASE/`` and ``BASE/<project>/``).

    ``timeout`` bounds connecting and each read, not a whole download."""

    user_agent = "sigledger-proxy/0.1"

    def __init__(self, base: str, *, timeout: float = 60.0) -> None:
        super().__init__(aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))
        self.base = base.rstrip("/")
        self.description = self.base + "/"

    async def _page(self, url: str) -> tuple[int, bytes, str, str]:
        try:
            async with self.session.get(url, headers={"Accept": _UPSTREAM_ACCEPT}) as resp:
                body = await resp.content.read(_MAX_PAGE + 1)
                if len(body) > _MAX_PAGE:
                    raise RefusedError(502, f"the upstream page {url} is too large")
                return resp.status, body, resp.content_type, str(resp.url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RefusedError(
                502, f"cannot reach the upstream index at {url}: {exc.__class__.__name__} {exc}"
            ) from None

    async def projects(self) -> list[str]:
        status, body, ctype, url = await self._page(self.base + "/")
        if status != 200:
            raise RefusedError(502, f"the upstream index answered {status} for {url}")
        try:
            if ctype.endswith("json"):
                return parse_json_projects(body)
            return parse_html_projects(body.decode("utf-8", "replace"))
        except FormatError as exc:
            raise RefusedError(502, f"the upstream project list is malformed: {exc}") from None

    async def project_files(self, project: str) -> list[IndexFile] | None:
        status, body, ctype, url = await self._page(f"{self.base}/{quote(project)}/")
        if status == 404:
            return None
        if status != 200:
            raise RefusedError(502, f"the upstream index answered {status} for {url}")
        try:
            if ctype.endswith("json"):
                files = parse_json_page(body, url)
            else:
                files = parse_html_page(body.decode("utf-8", "replace"), url)
        except FormatError as exc:
            raise RefusedError(502, f"the upstream page {url} is malformed: {exc}") from None
        # Files are fetched over HTTP only: a page must not make the proxy read local files.
        return [f for f in files if urlsplit(f.url).scheme in ("http", "https")]

    async def stream(self, f: IndexFile) -> AsyncIterator[bytes]:
        try:
            async with self.session.get(f.url) as resp:
                if resp.status != 200:
                    raise RefusedError(
                        502, f"the upstream answered {resp.status} for {f.filename} ({f.url})"
                    )
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RefusedError(
                502,
                f"downloading {f.filename} from the upstream failed: "
                f"{exc.__class__.__name__} {exc}",
            ) from None

    async def metadata(self, f: IndexFile) -> bytes:
        url = f.url + ".metadata"
        status, body, _, _ = await self._page(url)
        if status != 200:
            raise RefusedError(502, f"the upstream answered {status} for {url}")
        return body


class DirUpstream:
    """A directory of release files (any depth); ``<file>.metadata`` beside a file
    is its PEP 658 metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = str(self.root)

    async def start(self) -> None:
        if not await asyncio.to_thread(self.root.is_dir):
            raise ConfigError(f"--upstream {self.root} is not a directory")

    async def close(self) -> None:
        pass

    def _scan(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for path in sorted(self.root.rglob("*")):
            if path.suffix == ".metadata" or not path.is_file():
                continue
            try:
                project, _ = parse_release_filename(path.name)
            except FormatError:
                continue
            found.setdefault(project, []).append(path)
        return found

    async def projects(self) -> list[str]:
        return sorted(await asyncio.to_thread(self._scan))

    def _files(self, project: str) -> list[IndexFile] | None:
        paths = self._scan().get(project)
        if paths is None:
            return None
        files = []
        for path in paths:
            meta = path.with_name(path.name + ".metadata")
            mark: bool | dict[str, str] = False
            if meta.is_file():
                mark = {"sha256": hashlib.sha256(meta.read_bytes()).hexdigest()}
            files.append(IndexFile(path.name, path.as_uri(), {}, None, False, mark))
        return files

    async def project_files(self, project: str) -> list[IndexFile] | None:
        return await asyncio.to_thread(self._files, project)

    def _path(self, url: str) -> Path:
        parts = urlsplit(url)
        path = Path(url2pathname(parts.path)).resolve()
        if parts.scheme != "file" or not path.is_relative_to(self.root):
            raise RefusedError(502, f"{url} is outside the upstream directory")
        return path

    async def stream(self, f: IndexFile) -> AsyncIterator[bytes]:
        path = self._path(f.url)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise RefusedError(502, f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            while chunk := await asyncio.to_thread(fh.read, _CHUNK):
                yield chunk
        finally:
            fh.close()

    async def metadata(self, f: IndexFile) -> bytes:
        path = self._path(f.url + ".metadata")
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise RefusedError(502, f"cannot read {path}: {exc.strerror or exc}") from None


def open_upstream(spec: str) -> Upstream:
    """``--upstream``: an http(s) simple index URL, a ``file://`` URL or a directory."""
    if spec.startswith(("http://", "https://")):
        return HttpUpstream(spec)
    if spec.startswith("file://"):
        return DirUpstream(Path(url2pathname(urlsplit(spec).path)))
    path = Path(spec).expanduser()
    if path.is_dir():
        return DirUpstream(path)
    raise ConfigError(
        f"--upstream {spec!r} is neither an http(s) URL of a simple index "
        "(e.g. https://pypi.org/simple/) nor a directory of release files"
    )


# ---------------------------------------------------------------------------
# The file cache


class FileCache:
    """Verified files by SHA-256 under ``root/files``, at most ``max_bytes`` in all
    (least recently used out first; the newest file always stays), with
    temporary downloads in ``root/tmp`` and one download per key at a time."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.dir = root / "files"
        self.tmp = root / "tmp"
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # left by a crash; never served
            stale.unlink(missing_ok=True)
        self._lru: OrderedDict[str, int] = OrderedDict()
        self.total = 0
        present = [(p.stat().st_mtime, p.name, p.stat().st_size) for p in self.dir.iterdir()]
        for _, name, size in sorted(present):
            if _HEX64.fullmatch(name):
                self._lru[name] = size
                self.total += size
        self._evict()
        self._inflight: dict[str, asyncio.Task[Path]] = {}

    def temp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def get(self, sha256_hex: str) -> Path | None:
        if sha256_hex not in self._lru:
            return None
        path = self.dir / sha256_hex
        if not path.exists():
            self.total -= self._lru.pop(sha256_hex)
            return None
        self._lru.move_to_end(sha256_hex)
        return path

    def add(self, sha256_hex: str, tmp: Path) -> Path:
        """Move a verified temporary file into the cache; evict to the bound."""
        path = self.dir / sha256_hex
        size = tmp.stat().st_size
        os.replace(tmp, path)
        if sha256_hex in self._lru:
            self.total -= self._lru.pop(sha256_hex)
        self._lru[sha256_hex] = size
        self.total += size
        self._evict()
        return path

    def _evict(self) -> None:
        while self.total > self.max_bytes and len(self._lru) > 1:
            name, size = self._lru.popitem(last=False)
            self.total -= size
            # A reader that opened it keeps its bytes (POSIX unlink semantics).
            (self.dir / name).unlink(missing_ok=True)

    async def single_flight(self, key: str, produce: Callable[[], Awaitable[Path]]) -> Path:
        """``produce()`` once for concurrent callers with the same key; all get its result."""
        task = self._inflight.get(key)
        if task is None:

            async def run() -> Path:
                try:
                    return await produce()
                finally:
                    self._inflight.pop(key, None)

            task = asyncio.ensure_future(run())
            self._inflight[key] = task
        # shield: one caller going away must not cancel the download for the others
        return await asyncio.shield(task)


# ---------------------------------------------------------------------------
# The service


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str
    policy: Policy
    log: LogTrust
    host: str = "127.0.0.1"
    port: int = 8090
    cache_dir: Path = Path("sigledger-proxy-cache")
    state_dir: Path = Path("sigledger-proxy-state")
    cache_bytes: int = 2 << 30
    page_ttl: float = 30.0
    unlisted: str = "require-any-signer"
    observer: Signer | None = None  # logs what it downloads as observations under this key


ALARMS_FILE = "alarms.jsonl"
_OBSERVE_BATCH = 100
# Refused bytes past the logged size are hashed (to be observed) up to this many
# bytes and seconds; installers wait for the 409 meanwhile (pip gives up after 15 s
# without data), so both are bounded.
_REFUSED_MAX_BYTES = 1 << 30
_REFUSED_SECONDS = 5.0
_SUBMIT_SECONDS = 5.0  # how long a refusal waits for its observation to be logged
_FLUSH_SECONDS = 5.0  # at exit, how long pending observations may take to be logged
_ON_DEMAND_VERSIONS = 3  # versions per page build the log is asked to observe


class ObservationSink:
    """Logs the files the proxy downloaded as observations, in the background.

    Batches of up to :data:`_OBSERVE_BATCH`; a refusal by the binding rule (the
    index served this proxy other bytes for a file it observed before) is an
    alarm: logged with both statements and appended to ``alarms``. A log that
    cannot be reached costs the observations of that batch (a warning), never
    a download.
    """

    def __init__(self, log_url: str, signer: Signer, index_url: str, alarms: Path) -> None:
        self.client = LogClient(log_url)
        self.signer = signer
        self.index_url = index_url
        self.alarms_file = alarms
        self.queue: asyncio.Queue[SignedObservation] = asyncio.Queue()
        self.seen: set[tuple[str, bytes]] = set()
        # What became of each observation of refused bytes (see submit_now).
        self.refused: dict[tuple[str, bytes], dict[str, Any]] = {}
        self.logged = 0
        self.alarms: list[Alarm] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, filename: str, sha256: bytes, size: int) -> None:
        if (filename, sha256) in self.seen:
            return
        self.seen.add((filename, sha256))
        try:
            st = Statement.for_file(filename, sha256, size)
            signed = sign_observation(self.signer, st, self.index_url, int(time.time() * 1000))
        except FormatError as exc:
            log.warning("not observed %s: %s", filename, exc)
            return
        self.queue.put_nowait(signed)

    async def submit_now(self, filename: str, sha256: bytes, size: int) -> dict[str, Any]:
        """Log an observation of bytes the proxy refused, at once: what became of it,
        as JSON (``logged``, and ``log_index`` or ``alarm`` or ``error``), with a
        ``message`` for the refusal's answer. Bytes refused again are not submitted
        again (the log's answer would be the same)."""
        known = self.refused.get((filename, sha256))
        if known is not None:
            return known
        doc: dict[str, Any] = {"signer": self.signer.vkey, "sha256": sha256.hex(), "size": size}
        try:
            st = Statement.for_file(filename, sha256, size)
            signed = sign_observation(self.signer, st, self.index_url, int(time.time() * 1000))
            accepted, alarms = await asyncio.wait_for(
                add_observations(self.client, [signed]), _SUBMIT_SECONDS
            )
        except (FormatError, LedgerError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("observation of refused bytes not logged: %s", reason)
            return doc | {
                "logged": False,
                "error": reason,
                "message": f"This proxy's observation of the bytes it got was not logged: {reason}",
            }
        self.seen.add((filename, sha256))
        for alarm in alarms:
            self._alarm(alarm)
        if alarms:
            doc |= {"logged": False, "alarm": alarms[0].to_json(), "message": alarms[0].message}
        else:
            ((_, receipt),) = accepted
            self.logged += 1
            doc |= {
                "logged": True,
                "log_index": receipt.index,
                "message": (
                    f"This proxy logged the bytes it got as an observation under its key "
                    f"{self.signer.vkey} (entry #{receipt.index}): the disagreement is public."
                ),
            }
        self.refused[filename, sha256] = doc
        return doc

    async def start(self) -> None:
        await self.client.__aenter__()
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            try:
                await asyncio.wait_for(self.queue.join(), _FLUSH_SECONDS)
            except TimeoutError:
                log.warning("%d observation(s) not logged at exit", self.queue.qsize())
            self._task.cancel()
        await self.client.__aexit__(None, None, None)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < _OBSERVE_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                accepted, alarms = await add_observations(self.client, batch)
                self.logged += len(accepted)
                for alarm in alarms:
                    self._alarm(alarm)
            except LedgerError as exc:
                log.warning("observations not logged: %s", exc, extra={"count": len(batch)})
            finally:
                for _ in batch:
                    self.queue.task_done()

    def _alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)
        doc = alarm.to_json()
        log.critical(alarm.message, extra={"evidence": doc["evidence"]})
        write_alarm(self.alarms_file, doc)


def write_alarm(path: Path, doc: Mapping[str, Any]) -> None:
    """Append one alarm (JSON, one line) to ``path``; a failure is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps(doc, sort_keys=True) + "\n")
    except OSError as err:
        log.warning("cannot write the alarm file", extra={"file": str(path), "err": str(err)})


def _text(status: int, body: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=body.rstrip() + "\n", headers=headers)


class Proxy:
    """The proxy's state and HTTP handlers (see the module docstring)."""

    def __init__(self, cfg: ProxyConfig, upstream: Upstream) -> None:
        if cfg.unlisted not in UNLISTED_MODES:
            raise ConfigError(f"--unlisted must be one of {', '.join(UNLISTED_MODES)}")
        self.cfg = cfg
        self.upstream = upstream
        self.flag = cfg.state_dir / STOP_FLAG
        self.verified_log = VerifiedLog(
            cfg.log.url,
            cfg.log.verifier,
            FileCheckpointStore(cfg.state_dir),
            cfg.log.origin,
            tile_cache=cfg.cache_dir / "tiles",
            witnesses=cfg.policy.witnesses.verifiers,
            witness_quorum=cfg.policy.witnesses.quorum,
        )
        self.cache = FileCache(cfg.cache_dir, cfg.cache_bytes)
        self.stopped: dict[str, Any] | None = self._read_flag()
        self._views: OrderedDict[str, ProjectView] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._projects: tuple[float, list[str]] | None = None
        self.observations: ObservationSink | None = None
        if cfg.observer is not None:
            if not isinstance(upstream, HttpUpstream):
                raise ConfigError(
                    "--observer-key needs an HTTP upstream index: observations name the "
                    "index URL that served the file"
                )
            self.observations = ObservationSink(
                cfg.log.url, cfg.observer, upstream.description, cfg.state_dir / ALARMS_FILE
            )

    # --- stopping on misbehavior --------------------------------------------------

    def _read_flag(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.flag.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            doc = {"message": f"the stop flag {self.flag} is unreadable ({exc})", "evidence": {}}
        if not isinstance(doc, dict):
            doc = {"message": f"the stop flag {self.flag} is malformed", "evidence": {}}
        log.error(
            "stopped: the stop flag from an earlier run is present", extra={"flag": str(self.flag)}
        )
        return doc

    def _stop(self, exc: LogMisbehaviorError) -> None:
        if self.stopped is not None:
            return
        message = (
            f"sigledger proxy stopped: {exc} (log {self.cfg.log.url}). Nothing is served: "
            "every page and download answers 503 until an operator acts. The signed evidence "
            f"is at /healthz and in {self.flag}. Report it to the log operator; once it is "
            f"resolved, remove {self.flag} and restart the proxy."
        )
        self.stopped = {
            "status": "stopped",
            "message": message,
            "stopped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "flag_file": str(self.flag),
            "evidence": exc.evidence,
        }
        try:
            self.flag.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.flag.with_name(self.flag.name + ".tmp")
            tmp.write_text(json.dumps(self.stopped, indent=2) + "\n")
            tmp.replace(self.flag)
        except OSError as err:
            log.warning(
                "cannot write the stop flag", extra={"flag": str(self.flag), "err": str(err)}
            )
        log.critical("log misbehavior: proxy stopped", extra={"evidence": exc.evidence})

    def _stopped_text(self) -> web.Response:
        assert self.stopped is not None
        message = str(self.stopped.get("message", "sigledger proxy stopped"))
        return web.Response(
            status=503,
            reason="sigledger proxy stopped: the log showed two histories",
            text=message + "\n",
        )

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.stopped is not None and request.path != "/healthz":
            return self._stopped_text()
        try:
            return await handler(request)
        except LogMisbehaviorError as exc:
            self._stop(exc)
            if request.path == "/healthz":
                return self._health_stopped()
            return self._stopped_text()
        except RefusedError as exc:
            return exc.response()
        except NetworkError as exc:
            return RefusedError(
                503,
                f"cannot check files against the log: {exc}",
                f"cannot check files against the log {self.cfg.log.url}: {exc}\n"
                "Nothing unchecked is served; try again when the log answers.",
            ).response()
        except VerificationError as exc:
            log.warning("the log's answer did not verify", extra={"err": str(exc)})
            return RefusedError(502, f"the log's answer did not verify: {exc}").response()
        except LedgerError as exc:  # e.g. the log refused a lookup (LogRefusedError)
            return RefusedError(502, f"the log {self.cfg.log.url} answered: {exc}").response()

    # --- views ------------------------------------------------------------------------

    async def view(self, project: str) -> ProjectView:
        cached = self._fresh(project)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(project, asyncio.Lock())
        async with lock:
            cached = self._fresh(project)
            if cached is not None:
                return cached
            built = await self._build(project)
            self._views[project] = built
            self._views.move_to_end(project)
            while len(self._views) > _VIEWS:
                old, _ = self._views.popitem(last=False)
                self._locks.pop(old, None)
            return built

    def _fresh(self, project: str) -> ProjectView | None:
        cached = self._views.get(project)
        if cached is not None and time.monotonic() - cached.built < self.cfg.page_ttl:
            return cached
        return None

    async def _build(self, project: str) -> ProjectView:
        files = await self.upstream.project_files(project)
        if files is None:
            raise RefusedError(404, f"the upstream index has no project {project}")
        # The checkpoint first: a log showing two histories stops us before any lookup.
        cp = await self.verified_log.checkpoint()
        entries = await self.verified_log.lookup(project=project)
        entries += await self._observe_missing(project, files, entries)
        size = max([cp.size, *(e.checkpoint.size for e in entries)])
        verdicts = judge(self.cfg.policy, project, files, entries, unlisted=self.cfg.unlisted)
        for v in verdicts.values():
            extra = {"project": project, "file": v.filename, "reason": v.reason}
            if not v.served:
                log.info("dropped %s: %s", v.filename, v.reason, extra=extra)
            elif not v.verified:
                log.warning("serving %s unverified: %s", v.filename, v.reason, extra=extra)
            for line in v.warnings:
                log.warning("WARN: serving %s: %s", v.filename, line, extra=extra)
        return ProjectView(project, verdicts, size, self.verified_log.origin, time.monotonic())

    async def _observe_missing(
        self, project: str, files: Sequence[IndexFile], entries: Sequence[VerifiedEntry]
    ) -> list[VerifiedEntry]:
        """Ask the log about the newest versions the page lists that it holds nothing
        for, when the policy trusts observers for the project: a log that observes
        on demand observes them now (as sum.golang.org does for a module version it
        never saw). At most :data:`_ON_DEMAND_VERSIONS` per page build; a refusal or
        an error leaves those files off the page, as before."""
        rule = self.cfg.policy.rule_for(project)
        if rule is None or not rule.observers:
            return []
        held = {e.entry.statement.identity.key for e in entries}
        missing: set[Version] = set()
        for f in files:
            try:
                identity = file_identity(f.filename)
            except FormatError:
                continue
            if identity.project == project and identity.key not in held:
                with contextlib.suppress(InvalidVersion):
                    missing.add(Version(identity.version))
        wanted = sorted(missing, reverse=True)[:_ON_DEMAND_VERSIONS]
        found = await asyncio.gather(
            *(self.verified_log.lookup(project=project, version=str(v)) for v in wanted),
            return_exceptions=True,
        )
        known = {e.index for e in entries}
        out: list[VerifiedEntry] = []
        for version, answer in zip(wanted, found, strict=True):
            if isinstance(answer, LogMisbehaviorError):
                raise answer
            if isinstance(answer, BaseException):
                log.info("the log did not observe %s %s: %s", project, version, answer)
                continue
            for e in answer:
                if e.index not in known:
                    known.add(e.index)
                    out.append(e)
        return out

    # --- handlers -----------------------------------------------------------------------

    @staticmethod
    def _format(request: web.Request) -> str:
        wanted = request.query.get("format")
        chosen = negotiate(wanted if wanted else request.headers.get("Accept"))
        if chosen is None:
            raise RefusedError(
                406,
                "no acceptable page format",
                f"this index serves {JSON_V1}, {HTML_V1} and {HTML}",
            )
        return chosen

    @staticmethod
    def _page(chosen: str, body: bytes, **headers: str) -> web.Response:
        headers["Vary"] = "Accept"
        if chosen == JSON_V1:
            return web.Response(body=body, content_type=JSON_V1, headers=headers)
        return web.Response(body=body, content_type=chosen, charset="utf-8", headers=headers)

    async def index(self, request: web.Request) -> web.Response:
        chosen = self._format(request)
        now = time.monotonic()
        if self._projects is None or now - self._projects[0] >= self.cfg.page_ttl:
            self._projects = (now, await self.upstream.projects())
        names = self._projects[1]
        if chosen == JSON_V1:
            return self._page(chosen, json.dumps(render_index_json(names)).encode())
        return self._page(chosen, render_index_html(names).encode())

    async def project(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        try:
            name = str(canonicalize_name(raw, validate=True))
        except InvalidName:
            raise RefusedError(404, f"{raw!r} is not a valid project name") from None
        if raw != name or not request.path.endswith("/"):
            location = f"/simple/{name}/" + (
                f"?{request.query_string}" if request.query_string else ""
            )
            raise web.HTTPMovedPermanently(location)
        chosen = self._format(request)
        view = await self.view(name)
        return self._page(
            chosen,
            view.body(chosen),
            **{
                "X-Sigledger-Dropped": str(view.dropped),
                "X-Sigledger-Log": view.origin,
                "X-Sigledger-Tree-Size": str(view.tree_size),
            },
        )

    async def _verdict(self, request: web.Request, filename: str) -> Verdict:
        raw = request.match_info["project"]
        try:
            project = str(canonicalize_name(raw, validate=True))
        except InvalidName:
            raise RefusedError(404, f"{raw!r} is not a valid project name") from None
        view = await self.view(project)
        verdict = view.verdicts.get(filename)
        if verdict is None:
            raise RefusedError(404, f"the upstream index lists no file {filename} for {project}")
        return verdict

    async def why(self, request: web.Request) -> web.Response:
        verdict = await self._verdict(request, request.match_info["filename"])
        view = await self.view(verdict.project)
        doc = {**verdict.to_json(), "log": view.origin, "tree_size": view.tree_size}
        if request.query.get("format") == "json":
            return web.json_response(doc)
        lines = [
            f"{verdict.filename} ({verdict.project}): "
            + ("served" if verdict.served else "left out of the page"),
            f"reason: {verdict.reason}",
        ]
        if verdict.sha256 is not None:
            source = "the log" if verdict.verified else "the upstream (unverified)"
            lines.append(f"sha256: {verdict.sha256.hex()} (from {source})")
        up = verdict.upstream.hashes.get("sha256")
        if up:
            lines.append(f"upstream lists sha256: {up}")
        if verdict.signers:
            lines.append("signers: " + ", ".join(verdict.signers))
        if verdict.entries:
            lines.append("log entries: " + ", ".join(f"#{i}" for i in verdict.entries))
        lines.append(f"checked against {view.origin} at tree size {view.tree_size}")
        return _text(200, "\n".join(lines))

    async def file(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        if filename.endswith(".metadata"):
            return await self._metadata(request, filename.removesuffix(".metadata"))
        verdict = await self._verdict(request, filename)
        if not verdict.served:
            raise RefusedError(
                404,
                f"{filename} is not served: {verdict.reason}",
                f"{filename} is not served: {verdict.reason}\n"
                f"(see /why/{verdict.project}/{quote(filename)})",
            )
        if verdict.sha256 is not None:
            key = verdict.sha256.hex()
            path = self.cache.get(key)
            if path is None:
                path = await self.cache.single_flight(key, lambda: self._download(verdict))
        else:
            key = "unverified " + verdict.upstream.url
            path = await self.cache.single_flight(key, lambda: self._download(verdict))
        return await self._send(request, path, filename)

    async def _download(self, verdict: Verdict) -> Path:
        """Fetch the upstream bytes into a temporary file, hashing; keep them only if
        they are the logged ones."""
        tmp = self.cache.temp_path()
        digest = hashlib.sha256()
        size = 0
        limit = verdict.size if verdict.verified else None
        too_long = complete = False
        deadline = 0.0
        try:
            fh = await asyncio.to_thread(tmp.open, "wb")
            try:
                async for chunk in self.upstream.stream(verdict.upstream):
                    size += len(chunk)
                    digest.update(chunk)
                    if limit is not None and size > limit:
                        if not too_long:
                            too_long, deadline = True, time.monotonic() + _REFUSED_SECONDS
                        if (
                            self.observations is None
                            or size > _REFUSED_MAX_BYTES
                            or time.monotonic() > deadline
                        ):
                            break
                        continue  # hashed to the end (to be observed), never stored
                    fh.write(chunk)
                else:
                    complete = True
            except RefusedError:
                if not too_long:
                    raise
                # Refused all the same; only the observation of the bytes is lost.
            finally:
                fh.close()
            got = digest.hexdigest()
            if too_long:
                raise await self._mismatch(
                    verdict, f"more than the {limit} bytes", (got, size) if complete else None
                )
            if verdict.sha256 is not None and got != verdict.sha256.hex():
                raise await self._mismatch(verdict, f"sha256:{got}", (got, size))
            log.info(
                "downloaded %s",
                verdict.filename,
                extra={"project": verdict.project, "sha256": got, "size": size},
            )
            if self.observations is not None:
                self.observations.add(verdict.filename, bytes.fromhex(got), size)
            return self.cache.add(got, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    async def _mismatch(
        self, verdict: Verdict, served: str, got: tuple[str, int] | None
    ) -> RefusedError:
        """The refusal of bytes that are not the expected ones; ``got`` (their sha256
        and size, when read to the end) is observed when they contradict the log."""
        assert verdict.sha256 is not None
        want = verdict.sha256.hex()
        source = "the log holds" if verdict.verified else "the upstream page lists"
        reason = f"upstream served {served} for {verdict.filename} but {source} sha256:{want}"
        kinds = {kind(e) for e in verdict.logged}
        by = (
            "observed and signed"
            if len(kinds) > 1
            else "observed"
            if kinds == {"observation"}
            else "signed"
        )
        signed = f" ({by} by {', '.join(verdict.signers)})" if verdict.signers else ""
        extra = {"project": verdict.project, "upstream_url": verdict.upstream.url}
        evidence = ""
        if verdict.verified:
            observed = None
            if self.observations is not None and got is not None:
                observed = await self.observations.submit_now(
                    verdict.filename, bytes.fromhex(got[0]), got[1]
                )
            elif self.observations is not None:
                why = (
                    f"the upstream failed, or sent more than {_REFUSED_MAX_BYTES} bytes or "
                    f"took longer than {_REFUSED_SECONDS:g} s past the logged size"
                )
                observed = {
                    "logged": False,
                    "error": why,
                    "message": f"This proxy did not observe the bytes it got: {why}.",
                }
            doc: dict[str, Any] = {
                "message": reason,
                "project": verdict.project,
                "filename": verdict.filename,
                "upstream_url": verdict.upstream.url,
                "served": served,
                "logged": [
                    {**entry_json(e), "entry": base64.b64encode(e.data).decode()}
                    for e in verdict.logged
                ],
            }
            if observed is not None:
                doc["observed"] = observed
            write_alarm(self.cfg.state_dir / ALARMS_FILE, doc)
            log.critical(
                "refused %s: %s", verdict.filename, reason, extra={**extra, "evidence": doc}
            )
            evidence = "\nLogged entries (evidence):\n" + "".join(
                f"  #{e.index} {kind(e)} by {e.entry.signed.signer_vkey()}: "
                f"sha256:{e.entry.statement.sha256.hex()}\n"
                for e in verdict.logged
            )
            if observed is not None:
                evidence += observed["message"] + "\n"
        else:
            log.warning("refused %s: %s", verdict.filename, reason, extra=extra)
        return RefusedError(
            409,
            reason,
            f"{reason}{signed}.\nThe upstream index, or something between it and this "
            "proxy, is serving other bytes than the ones published to the log; nothing was "
            f"served or cached.{evidence}\nDetails: "
            f"/why/{verdict.project}/{quote(verdict.filename)}",
        )

    async def _send(self, request: web.Request, path: Path, filename: str) -> web.StreamResponse:
        # Open before answering: an eviction after this point cannot take the bytes away.
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            size = os.fstat(fh.fileno()).st_size
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                    "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                }
            )
            await resp.prepare(request)  # sends the headers
            if request.method != "HEAD" and size:
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("the client went away")
                # sendfile(2) from the verified file, or asyncio's own copy where the
                # transport cannot (the bytes are read in a thread then).
                await asyncio.get_running_loop().sendfile(transport, fh, 0, size)
            await resp.write_eof()
            return resp
        finally:
            fh.close()

    async def _metadata(self, request: web.Request, filename: str) -> web.Response:
        verdict = await self._verdict(request, filename)
        mark = verdict.upstream.core_metadata
        if not verdict.served or mark is False:
            raise RefusedError(404, f"no metadata is served for {filename}")
        body = await self.upstream.metadata(verdict.upstream)
        if len(body) > _MAX_METADATA:
            raise RefusedError(502, f"the upstream metadata of {filename} is too large")
        if isinstance(mark, Mapping):
            for name, want in mark.items():
                if name in hashlib.algorithms_guaranteed:
                    got = hashlib.new(name, body).hexdigest()
                    if got != want:
                        raise RefusedError(
                            502,
                            f"upstream served {name}:{got} for the metadata of {filename} "
                            f"but its page lists {name}:{want}",
                        )
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    def _health_stopped(self) -> web.Response:
        return web.json_response(self.stopped, status=503)

    async def healthz(self, request: web.Request) -> web.Response:
        if self.stopped is not None:
            return self._health_stopped()
        try:
            cp = await self.verified_log.checkpoint()
        except (NetworkError, VerificationError) as exc:
            if isinstance(exc, LogMisbehaviorError):
                raise
            return web.json_response(
                {"status": "unavailable", "reason": f"the log cannot be checked: {exc}"},
                status=503,
            )
        return web.json_response(
            {
                "status": "ok",
                "log": self.verified_log.origin,
                "log_url": self.cfg.log.url,
                "tree_size": cp.size,
                "upstream": self.upstream.description,
                "cached_bytes": self.cache.total,
                "observer": self.cfg.observer.vkey if self.cfg.observer else None,
                "observations_logged": self.observations.logged if self.observations else 0,
                "observation_alarms": len(self.observations.alarms) if self.observations else 0,
            }
        )

    # --- wiring -------------------------------------------------------------------------

    async def _startup(self, app: web.Application) -> None:
        await self.upstream.start()
        await self.verified_log.__aenter__()
        if self.observations is not None:
            await self.observations.start()

    async def _cleanup(self, app: web.Application) -> None:
        if self.observations is not None:
            await self.observations.close()
        await self.verified_log.__aexit__(None, None, None)
        await self.upstream.close()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/simple/", self.index)
        app.router.add_get("/simple", self.index)
        app.router.add_get("/simple/{project}/", self.project)
        app.router.add_get("/simple/{project}", self.project)
        app.router.add_get("/files/{project}/{filename}", self.file)
        app.router.add_get("/why/{project}/{filename}", self.why)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app


async def run_proxy(cfg: ProxyConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    proxy = Proxy(cfg, open_upstream(cfg.upstream))

    def started(url: str) -> None:
        log.info(
            "listening",
            extra={"url": url, "upstream": proxy.upstream.description, "log": cfg.log.url},
        )
        if announce is not None:
            state = "STOPPED (log misbehavior; see /healthz)" if proxy.stopped else "enforcing"
            announce(
                f"sigledger proxy listening on {url}/simple/ ({state})\n"
                f"upstream: {proxy.upstream.description}\n"
                f"log: {cfg.log.url} ({cfg.log.origin})"
            )

    await run_app(proxy.app(), cfg.host, cfg.port, started)
