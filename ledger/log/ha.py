"""Highly available sequencing: several ``sigledger serve --ha`` processes on one
PostgreSQL database, exactly one of which sequences at a time.

Election. The leader is whoever holds the writer advisory lock
(:data:`~sigledger.ledger.log.postgres.WRITER_LOCK`) on its writer session. Every
other process (a follower) tries ``pg_try_advisory_lock`` every :data:`PERIOD`
seconds. On taking the lock a process increments ``leader.epoch`` and writes its
internal URL into the leader row, loads the tree from storage (whatever the last
leader committed) and publishes the newest head; only then does it sequence.

Fencing. Every transaction of a leader that commits or publishes (``commit_batch``,
``save_notes``) first updates the leader row ``WHERE epoch = <its epoch>`` and while
its session still holds the lock; otherwise the transaction aborts with
:class:`~sigledger.ledger.log.postgres.FencedError`. So an old leader, paused or cut
off while another took over, can never commit a batch, and since a checkpoint is
signed only after its commit, never sign or publish one either. The leader also
checks the same condition every :data:`PERIOD` seconds while idle.

Step-down. On any storage failure while leading (fenced, the writer session lost, a
failed commit) the process stops sequencing at once: it cannot know whether it still
leads. Queued submissions get 503 (they are retried against the next leader), the
writer session is terminated (releasing the lock if it still held it) and the process
becomes a follower; it may win a later election like any other. A writer session is
never silently reconnected.

Followers serve every read from the database: the checkpoint is the newest
*published* tree head in storage (refreshed every :data:`PERIOD` seconds, never
moving backwards), tiles, entries, lookups and proofs are bounded by its size. They
accept ``POST /add`` by forwarding the request body to the leader's internal URL
(from the leader row) and relaying its answer; with no reachable leader they answer
503 with Retry-After (``no_leader``). A ``GET /lookup`` that makes the log observe
(``observe_index``, see :mod:`sigledger.ledger.log.observer`) is forwarded the same
way, since only the leader logs observations; every other lookup is answered from
the follower's own reads. The follower vouches for the client's address (header
:data:`CLIENT_HEADER`, signed with the log key in :data:`FORWARDED_HEADER`, see
:func:`vouch`), so that the leader applies the per-client limit on observing
lookups to the client, not to the follower; a lookup whose vouch does not verify
counts against the address that sent it.

Ordering guarantees come from storage: one root per size (the checkpoints primary
key), entries committed before any receipt is given, and the sequencer's reload of
the committed tree on takeover. Limit: a leader partitioned from the database keeps
its lock until PostgreSQL notices the session is gone (TCP keepalives, see
deploy/README.md); until then nobody else leads, but nobody can fork the log either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging

import aiohttp
from aiohttp import web

from sigledger.ledger.errors import NoLeaderError
from sigledger.ledger.log.observer import COMPLETE_HEADER
from sigledger.ledger.log.postgres import PostgresStorage
from sigledger.ledger.log.sequencer import Sequencer
from sigledger.ledger.note import Signer
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.sqlite import StorageError

__all__ = ["CLIENT_HEADER", "FORWARDED_HEADER", "PERIOD", "Election", "vouch", "vouched_client"]

log = logging.getLogger("sigledger.ha")

# Seconds between a follower's attempts to take the lead (and its read refreshes),
# and between a leader's checks that it still leads.
PERIOD = 0.5

# Marks a forwarded /add: its receiver never forwards it again (no loops while the
# leader row is stale).
FORWARDED_HEADER = "X-Sigledger-Forwarded"
# The client address a follower forwards an observing lookup for.
CLIENT_HEADER = "X-Sigledger-Client"
VOUCH_CONTEXT = b"sigledger forwarded lookup v1\n"

# Headers of the leader's answer that a follower relays.
_RELAYED = (
    "content-type",
    "retry-after",
    "cache-control",
    "access-control-allow-origin",
    COMPLETE_HEADER.lower(),
)


def _vouched_text(client: str, request: web.Request) -> bytes:
    # The path and the decoded query (however either server's HTTP library spells it).
    query = json.dumps(sorted(request.query.items()), ensure_ascii=False)
    return VOUCH_CONTEXT + "\n".join((client, request.path, query)).encode()


def vouch(signer: Signer, client: str, request: web.Request) -> str:
    """The :data:`FORWARDED_HEADER` value of ``request`` forwarded for ``client``:
    an Ed25519 signature by the log key (every server of the log holds it) over the
    client address, the path and the query, base64. A vouch copied from the
    internal network replays only that one lookup for that one address."""
    return base64.b64encode(signer.sign(_vouched_text(client, request))).decode()


def vouched_client(signer: Signer, request: web.Request) -> str | None:
    """The client address another server of this log forwarded ``request`` for, or
    None when it is not a vouched forward."""
    client = request.headers.get(CLIENT_HEADER)
    value = request.headers.get(FORWARDED_HEADER)
    if not client or not value:
        return None
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    ok = signer.verifier().verify(_vouched_text(client, request), signature)
    return client if ok else None


class _Forwarder(HttpClient):
    """The session a follower forwards /add requests to the leader over."""

    user_agent = "sigledger-log/0.1"


class Election:
    """One process's part in the election: run :meth:`run` as a task."""

    def __init__(self, storage: PostgresStorage, sequencer: Sequencer, timeout: float) -> None:
        self.storage = storage
        self.sequencer = sequencer
        self.timeout = timeout  # of a forwarded /add
        self.advertise = ""  # this process's internal URL; leads only once known
        self.leader_url: str | None = None  # the leader's, as a follower last read it
        self.epoch: int | None = None
        self.takeovers = 0
        self._ready = asyncio.Event()
        self._forwarder: _Forwarder | None = None

    def listening(self, url: str) -> None:
        """Called once the server listens: ``url`` is advertised to followers (the
        next fenced write, at most :data:`PERIOD` seconds away, names it)."""
        self.advertise = self.storage.holder = url.rstrip("/")
        self._ready.set()

    async def start(self, wait: float = 30.0) -> None:
        """Before serving: follow the published log, or, when none was ever published
        (a new log), take the lead to publish it. StorageError after ``wait`` seconds."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                await self.sequencer.follow()
                return
            except StorageError:
                epoch = await self.storage.try_lead(self.advertise)
                if epoch is not None:
                    await self._lead(epoch)
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(PERIOD)

    async def run(self) -> None:
        while True:
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), PERIOD)
            self._ready.clear()

    async def tick(self) -> None:
        """One round: check the lead, or try to take it, or follow."""
        seq, storage = self.sequencer, self.storage
        try:
            if seq.leading:
                await storage.check_leader()
                return
            if storage.epoch is not None:
                # The sequencer stepped down by itself (a failed write): let go of
                # the lock before anything else, so that another can take over.
                await storage.resign()
                self.epoch = None
            if self.advertise:
                epoch = await storage.try_lead(self.advertise)
                if epoch is not None:
                    await self._lead(epoch)
                    return
            await seq.follow()
            row = await storage.leader()
            self.leader_url = row[1] if row else None
        except StorageError as exc:
            if seq.leading or storage.epoch is not None:
                await seq.step_down(str(exc))
                await storage.resign()
                self.epoch = None
            else:
                log.warning("database unavailable to a follower", extra={"error": str(exc)})

    async def _lead(self, epoch: int) -> None:
        log.info("took the lead", extra={"epoch": epoch, "url": self.advertise})
        self.epoch = epoch
        self.takeovers += 1
        try:
            await self.sequencer.lead()
        except BaseException:
            await self.sequencer.step_down("loading the log failed")
            await self.storage.resign()
            self.epoch = None
            raise
        self.leader_url = self.advertise

    async def close(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.close()
        if self.sequencer.leading:
            await self.sequencer.step_down("shutting down")
        await self.storage.resign()

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        """Relay a follower's ``POST /add`` body to the leader and its answer back.

        A leader that cannot be reached may just have died: the leader row is read
        again at once and, if it names another leader, the request goes there (safe
        to repeat: the same statements get the same entries)."""
        headers = {FORWARDED_HEADER: "1", "Content-Type": request.content_type}
        return await self._forward(request, body, headers, self.timeout)

    @staticmethod
    def is_forward(request: web.Request) -> bool:
        """Whether ``request`` came from another server of the log (or claims to)."""
        return bool(request.headers.get(FORWARDED_HEADER))

    @staticmethod
    def vouched_client(signer: Signer, request: web.Request) -> str | None:
        """See :func:`vouched_client` (here for servers that import ha.py lazily)."""
        return vouched_client(signer, request)

    async def forward_lookup(
        self, request: web.Request, signer: Signer, client: str, seconds: float
    ) -> web.Response:
        """Relay a ``GET /lookup`` that makes the log observe to the leader, vouching
        for ``client`` (see :func:`vouch`), and its answer back; safe to repeat (a
        file observed once is never observed again)."""
        headers = {FORWARDED_HEADER: vouch(signer, client, request), CLIENT_HEADER: client}
        return await self._forward(request, None, headers, seconds)

    async def _forward(
        self, request: web.Request, body: bytes | None, headers: dict[str, str], seconds: float
    ) -> web.Response:
        if request.headers.get(FORWARDED_HEADER):
            raise NoLeaderError("this server stopped leading the log; retry")
        if self._forwarder is None:
            self._forwarder = _Forwarder(self.timeout)
            await self._forwarder.start()
        tried: set[str] = set()
        if not self.leader_url:
            # Not polled yet (just started) or between leaders: ask the database now
            # rather than refuse what a leader may well be there to take.
            with contextlib.suppress(StorageError):
                row = await self.storage.leader()
                self.leader_url = row[1] if row else None
        while True:
            url = self.leader_url
            if not url or url == self.advertise or url in tried:
                raise NoLeaderError("no leader is known right now (a takeover is under way)")
            tried.add(url)
            try:
                return await self._relay(
                    request.method, url + request.path_qs, body, headers, seconds
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("leader unreachable", extra={"url": url, "error": str(exc)})
                with contextlib.suppress(StorageError):
                    row = await self.storage.leader()
                    self.leader_url = row[1] if row else None

    async def _relay(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], seconds: float
    ) -> web.Response:
        assert self._forwarder is not None
        async with self._forwarder.session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            answer = await resp.read()
            relayed = {k: v for k, v in resp.headers.items() if k.lower() in _RELAYED}
            return web.Response(status=resp.status, body=answer, headers=relayed)
