"""``sigledger observe``: log what an index serves, as an independent observer.

A mirror, a crawler or a proxy runs this to put its own vantage point into the
log: for every release file of the chosen projects (all of the index's
projects when none are named) it reads the project's simple-API page (PEP 691
JSON or PEP 503 HTML, as the proxy does), downloads the file, hashes it and
submits an *observation* signed with its observer key: "index U served file F
with sha256 H and size S at time T". Observations go to the log's ``/add`` in
batches (:data:`BATCH` per request) while the next files download.

Binding rule and alarms
-----------------------

The log binds one hash per (observer key, file) forever. When this observer
already logged another hash for a file, the log refuses the batch with the
first entry as evidence (409 ``binding_conflict``); the conflicting
observations are taken out, reported as :class:`Alarm` (both statements: the
logged entry and the refused observation, each as base64 bytes any reader can
decode and check) and the rest is submitted again. An alarm means the index
changed a published file, or served it differently to this observer.

State file
----------

What was observed is remembered per index, log and observer key, so a rerun
downloads and submits only new files. JSON, replaced atomically after each
batch (an interrupted run keeps what was logged)::

    {"version": 1, "index": "http://…/simple/", "log": "http://…", "observer": "<vkey>",
     "files": {"<filename>": {"sha256": "<hex>", "size": N, "log_index": N}}}

A file is downloaded again only when the index's page lists another sha256 for
it than the one observed (then its new bytes are submitted, and the log's
binding rule turns a change into an alarm). Default location:
``<user state dir>/observe/<digest of index, log and key>.json``.

Limits: :data:`MAX_FILE` bytes per file (a larger file is skipped and
reported), ``concurrency`` simultaneous page reads and downloads, upstream
timeouts on connect and each read (see
:class:`~sigledger.client.install.proxy.HttpUpstream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigledger.client.install.observations import Alarm, add_observations
from sigledger.client.install.policy import default_state_dir
from sigledger.client.install.proxy import HttpUpstream, IndexFile, RefusedError
from sigledger.client.publish.submit import sign_observation
from sigledger.client.receipts import verify_receipt
from sigledger.client.remote import LogClient, normalize_url
from sigledger.ledger.entry import SignedObservation, Statement
from sigledger.ledger.errors import ConfigError, FormatError, NetworkError, UnavailableError
from sigledger.ledger.note import Signer, Verifier

__all__ = [
    "BATCH",
    "MAX_FILE",
    "ObserveReport",
    "ObserverState",
    "default_observe_state",
    "observe_index",
]

STATE_VERSION = 1
BATCH = 500  # observations per /add request (the log takes up to 1000 by default)
MAX_FILE = 4 << 30  # bytes: a larger upstream file is skipped and reported
_LINGER = 0.05  # seconds the submitter waits for more observations to fill a batch
_BUSY_TRIES = 60  # /add answers "busy" (429, 503) this many times before a run gives up


def index_base(url: str) -> str:
    """The simple-API base URL as observations record it (one trailing slash)."""
    return url.rstrip("/") + "/"


def default_observe_state(index: str, log: str, observer: str) -> Path:
    """``<state dir>/observe/<digest>.json``: one state per index, log and key."""
    digest = hashlib.sha256(f"{index_base(index)}\n{normalize_url(log)}\n{observer}".encode())
    return default_state_dir() / "observe" / f"{digest.hexdigest()[:24]}.json"


class ObserverState:
    """The files this observer logged for one index (see the module doc)."""

    def __init__(self, path: Path, index: str, log: str, observer: str) -> None:
        self.path = path
        self.index = index_base(index)
        self.log = normalize_url(log)
        self.observer = observer
        self.files: dict[str, dict[str, Any]] = {}

    @classmethod
    def load(cls, path: Path, index: str, log: str, observer: str) -> ObserverState:
        """The state at ``path`` (empty when there is none). Raises ConfigError when
        it is unreadable or belongs to another index, log or key."""
        state = cls(path, index, log, observer)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the observer state: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ConfigError(f"{path}: not an observer state file (version {STATE_VERSION})")
        for name in ("index", "log", "observer"):
            if doc.get(name) != getattr(state, name):
                raise ConfigError(
                    f"{path}: this state is for {name} {doc.get(name)!r}, not "
                    f"{getattr(state, name)!r}; pass another --state FILE"
                )
        files = doc.get("files")
        if not isinstance(files, dict):
            raise ConfigError(f"{path}: malformed observer state (no files table)")
        state.files = {str(k): v for k, v in files.items() if isinstance(v, dict)}
        return state

    def save(self) -> None:
        """Replace the state file atomically."""
        doc = {
            "version": STATE_VERSION,
            "index": self.index,
            "log": self.log,
            "observer": self.observer,
            "files": self.files,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True))
        tmp.replace(self.path)

    def wanted(self, f: IndexFile) -> bool:
        """Whether ``f`` must be downloaded: never observed, or listed with another hash."""
        known = self.files.get(f.filename)
        if known is None:
            return True
        listed = f.hashes.get("sha256")
        return listed is not None and listed != known.get("sha256")


@dataclass
class ObserveReport:
    """What one pass over the index did."""

    index: str
    observer: str
    projects: int = 0
    files: int = 0  # file links seen on the pages
    observed: list[dict[str, Any]] = field(default_factory=list)  # logged in this pass
    skipped: list[dict[str, str]] = field(default_factory=list)  # not observable, and why
    errors: list[dict[str, str]] = field(default_factory=list)  # failed this pass (retry later)
    alarms: list[Alarm] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "observer": self.observer,
            "projects": self.projects,
            "files": self.files,
            "observed": self.observed,
            "skipped": self.skipped,
            "errors": self.errors,
            "alarms": [a.to_json() for a in self.alarms],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Seen:
    project: str
    file: IndexFile
    sha256: bytes
    size: int
    signed: SignedObservation


async def _download(upstream: HttpUpstream, f: IndexFile, limit: int) -> tuple[bytes, int] | str:
    """The file's sha256 and size, or why it could not be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in upstream.stream(f):
            size += len(chunk)
            if size > limit:
                return f"larger than {limit} bytes"
            digest.update(chunk)
    except RefusedError as exc:
        return exc.reason
    return digest.digest(), size


async def observe_index(
    index: str,
    log_url: str,
    signer: Signer,
    projects: Sequence[str] = (),
    *,
    state: ObserverState,
    log_key: Verifier | None = None,
    concurrency: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> ObserveReport:
    """Observe the new files of ``projects`` (default: every project of the index).

    ``progress(done, total)`` is called as files are handled. Raises
    NetworkError when the log or the index's project list cannot be read,
    LogRefusedError when the log refuses observations for another reason
    than the binding rule, VerificationError when a receipt does not verify.
    """
    base = index_base(index)
    report = ObserveReport(base, signer.vkey)
    started = time.monotonic()
    upstream = HttpUpstream(base)
    gate = asyncio.Semaphore(max(1, concurrency))
    queue: asyncio.Queue[_Seen | None] = asyncio.Queue(maxsize=2 * BATCH)
    done = 0
    total = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    async def page(project: str) -> list[tuple[str, IndexFile]]:
        async with gate:
            try:
                files = await upstream.project_files(project)
            except RefusedError as exc:
                report.errors.append({"project": project, "reason": exc.reason})
                return []
        if files is None:
            report.errors.append({"project": project, "reason": "the index has no such project"})
            return []
        return [(project, f) for f in files]

    async def fetch(project: str, f: IndexFile) -> None:
        try:
            async with gate:
                got = await _download(upstream, f, MAX_FILE)
            if isinstance(got, str):
                report.errors.append({"filename": f.filename, "reason": got})
                advance()
                return
            digest, size = got
            listed = f.hashes.get("sha256")
            if listed is not None and listed != digest.hex():
                report.errors.append(
                    {
                        "filename": f.filename,
                        "reason": f"the index page lists sha256:{listed} but the file "
                        f"hashes to sha256:{digest.hex()}",
                    }
                )
                advance()
                return
            st = Statement.for_file(f.filename, digest, size)
            signed = sign_observation(signer, st, base, int(time.time() * 1000))
            await queue.put(_Seen(project, f, digest, size, signed))
        except FormatError as exc:
            report.skipped.append({"filename": f.filename, "reason": str(exc)})
            advance()

    async def submit(log: LogClient, batch: list[_Seen]) -> None:
        if batch:
            for attempt in range(_BUSY_TRIES):
                try:
                    accepted, alarms = await add_observations(log, [s.signed for s in batch])
                    break
                except UnavailableError as exc:
                    # A crawler outruns the log's per-key rate: wait as told, then resend.
                    if attempt + 1 == _BUSY_TRIES:
                        raise
                    await asyncio.sleep(float(getattr(exc, "retry_after", 1) or 1))
            report.alarms.extend(alarms)
            refused = {id(a.refused) for a in alarms}
            batch = [s for s in batch if id(s.signed) not in refused]
            for s, (_, receipt) in zip(batch, accepted, strict=True):
                if log_key is not None:
                    verify_receipt(receipt, log_key=log_key, expect=s.signed.statement)
                state.files[s.file.filename] = {
                    "sha256": s.sha256.hex(),
                    "size": s.size,
                    "log_index": receipt.index,
                }
                report.observed.append(
                    {
                        "project": s.project,
                        "filename": s.file.filename,
                        "sha256": s.sha256.hex(),
                        "size": s.size,
                        "log_index": receipt.index,
                        "status": receipt.status,
                    }
                )
            state.save()
            advance(len(batch))

    async def submitter(log: LogClient) -> None:
        closed = False
        while not closed:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + _LINGER
            while len(batch) < BATCH:
                try:
                    item = await asyncio.wait_for(
                        queue.get(), max(0.0, deadline - time.monotonic())
                    )
                except TimeoutError:
                    break
                if item is None:
                    closed = True
                    break
                batch.append(item)
            before = len(report.alarms)
            await submit(log, batch)
            advance(len(report.alarms) - before)

    async with LogClient(log_url) as log, upstream:
        try:
            names = list(projects) if projects else await upstream.projects()
        except RefusedError as exc:
            raise NetworkError(f"cannot list the index's projects: {exc.reason}") from None
        report.projects = len(names)
        listed = [pair for found in await asyncio.gather(*map(page, names)) for pair in found]
        report.files = len(listed)
        todo = [(p, f) for p, f in listed if state.wanted(f)]
        total = len(todo)
        if progress is not None and total:
            progress(0, total)
        sub = asyncio.create_task(submitter(log))
        fetchers = asyncio.gather(*(fetch(p, f) for p, f in todo))
        both: set[asyncio.Future[Any]] = {sub, fetchers}
        try:
            # The submitter ends early only by failing (the log refused, or cannot
            # be reached): then the downloads, which may wait on the full queue, stop.
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if sub.done():
                sub.result()
            await fetchers
            await queue.put(None)
            await sub
        finally:
            for task in both:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    report.seconds = time.monotonic() - started
    return report
