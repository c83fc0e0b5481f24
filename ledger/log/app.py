"""The log's HTTP service (aiohttp): thin handlers that parse a request
(:mod:`sigledger.ledger.wire`), call one domain function (the admission
:class:`Gate`, the :class:`~sigledger.ledger.log.sequencer.Sequencer`, the
:class:`~sigledger.ledger.log.reads.LogReads`) and render its answer.

Routes (read side per c2sp.org/tlog-tiles@v0.1.0):

* ``GET /checkpoint`` -- the signed checkpoint note (``text/plain; charset=utf-8``).
* ``GET /tile/<L>/<N>[.p/<W>]`` -- hash tiles; ``GET /tile/entries/<N>[.p/<W>]`` --
  entry bundles. Both immutable once served; only sizes up to the published
  checkpoint are served.
* ``POST /add`` -- submit signed statements (see :mod:`sigledger.ledger.wire`); answers
  after integration with one receipt per statement.
* ``GET /lookup`` -- entries by sha256 or by project[/version[/filename]], each
  with an inclusion proof against the returned checkpoint; paged. With
  ``observe_index`` set, a lookup of a release the log's observer has not
  observed first observes it (:mod:`sigledger.ledger.log.observer`); ``202``
  with ``Retry-After`` while a large release is observed in the background. With
  ``ha``, a follower forwards such a lookup to the leader
  (:mod:`sigledger.ledger.log.ha`).
* ``GET /observer`` -- the verifier key of the log's observer key (one line,
  ``text/plain``): the key of the observations the log makes itself.
* ``GET /proof/consistency?old=M&new=N`` -- RFC 6962 consistency proof.
* ``GET /`` and below -- the read-only HTML explorer (:mod:`sigledger.ledger.log.explorer`).
* ``GET /healthz`` -- 200 while storage works and the checkpoint is fresh.
* ``GET /metrics`` -- Prometheus text format.

Handlers raise the domain errors of :mod:`sigledger.ledger.errors`; they are
answered as JSON bodies ``{"error": <stable code>, "message": <text>, ...}``
with the status of :mod:`sigledger.ledger.service.http` (400, 403, 404, 409,
413, 429/503 + Retry-After).
No request, however malformed, is answered with a 5xx; 503 means "retry
later" (overload, witnesses missing, workers restarting, shutting down).
Admission control and spam limits for ``/add`` are described in
:mod:`sigledger.ledger.service.admission`.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigledger.ledger import merkle
from sigledger.ledger import wire as api
from sigledger.ledger.entry import Signed
from sigledger.ledger.errors import (
    BadQueryError,
    BadSignatureError,
    BindingConflictError,
    ConfigError,
    FormatError,
    MalformedRequestError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    SignerNotAllowedError,
    UnavailableError,
)
from sigledger.ledger.log import explorer
from sigledger.ledger.log.cosigner import WitnessEndpoint, WitnessPool
from sigledger.ledger.log.database import (
    describe,
    open_storage,
    parse_database_url,
    sqlite_url,
)
from sigledger.ledger.log.observer import (
    COMPLETE_HEADER,
    Observer,
    observing_seconds,
    open_observer_key,
)
from sigledger.ledger.log.observer import NEW as NEW_RELEASE
from sigledger.ledger.log.publish import StaticPublisher
from sigledger.ledger.log.reads import LogReads
from sigledger.ledger.log.sequencer import Sequencer, SequencerConfig
from sigledger.ledger.log.store import LogStorage
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.admission import (
    Backlog,
    Submitters,
    TokenBuckets,
    client_address,
    retry_after,
)
from sigledger.ledger.service.config import DEFAULT_ORIGIN, ServerConfig
from sigledger.ledger.service.http import (
    health_response,
    json_error,
    metrics_response,
    service_app,
)
from sigledger.ledger.service.keys import read_key_file, service_key
from sigledger.ledger.service.metrics import SECONDS_BUCKETS, MetricSet
from sigledger.ledger.service.runner import read_body, run_app
from sigledger.ledger.service.workers import VerifyPool, WorkersUnavailableError
from sigledger.ledger.tiles import parse_tile_path
from sigledger.ledger.wire import Receipt

if TYPE_CHECKING:
    from sigledger.ledger.log.ha import Election

log = logging.getLogger("sigledger.server")

IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "public, max-age=2"


class Metrics(MetricSet):
    """The log's metrics (``sigledger_*``)."""

    def __init__(self) -> None:
        super().__init__("sigledger_http_requests")
        self.tree_size = self.gauge("sigledger_tree_size", "Entries in the published tree")
        self.checkpoint_time = self.gauge(
            "sigledger_checkpoint_timestamp_seconds", "When the checkpoint was last (re)published"
        )
        self.queued = self.gauge("sigledger_queue_statements", "Statements awaiting integration")
        self.batch_size = self.histogram(
            "sigledger_batch_entries",
            "New entries per integrated batch",
            (0, 1, 4, 16, 64, 256, 1024, 4096, 16384),
        )
        self.batch_seconds = self.histogram(
            "sigledger_batch_seconds", "Time to integrate one batch", SECONDS_BUCKETS
        )
        self.latency = self.histogram(
            "sigledger_integration_latency_seconds",
            "Time from submission to receipt",
            (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = self.counter("sigledger_errors", "Errors by category", "error")
        self.witnessed = self.gauge(
            "sigledger_witnessed", "1 when the newest commit is published with a witness quorum"
        )
        self.witness_ok = self.gauge(
            "sigledger_witness_last_cosignature_timestamp_seconds",
            "When each witness last cosigned",
            "witness",
        )
        self.unpublished = self.gauge(
            "sigledger_unpublished_entries",
            "Entries committed but not yet in a published checkpoint",
        )
        self.statements = self.counter(
            "sigledger_statements", "Submitted statements by outcome", "outcome"
        )
        self.worker_restarts = self.gauge(
            "sigledger_verify_worker_restarts",
            "Times the verification worker pool was rebuilt after a worker died",
        )
        self.backlog_bytes = self.gauge(
            "sigledger_verify_backlog_bytes", "Request-body bytes admitted but not yet verified"
        )
        self.backlog_requests = self.gauge(
            "sigledger_verify_backlog_requests", "/add requests admitted but not yet verified"
        )
        self.identity_violations = self.gauge(
            "sigledger_identity_violations",
            "(signer, file identity) pairs with more than one hash, logged before the "
            "identity rule (entries are immutable; monitors and fsck report each)",
        )
        self.loop_lag = self.histogram(
            "sigledger_event_loop_lag_seconds",
            "How late a 100 ms timer fires: time the event loop was busy with other work",
            SECONDS_BUCKETS,
        )
        self.limited = self.counter(
            "sigledger_rate_limited", "/add requests refused by a limit", "limit"
        )
        # Set when /metrics is read, so serving a tile costs no metric update beyond
        # the request counter.
        self.read_cache = self.gauge(
            "sigledger_read_cache",
            "Full tiles and bundles in memory: served from it (hits), not in it when asked "
            "for (misses), bytes held (bytes)",
            "measure",
        )
        self.observed = self.counter(
            "sigledger_observed_files",
            "Files the log observed on demand (observed), skipped for good (too large, "
            "inconsistent index), failed to fetch (failed), or observed before and now "
            "stated by the index with another hash (changed)",
            "outcome",
        )
        self.static_size = self.gauge(
            "sigledger_static_tree_size",
            "Tree size of the checkpoint in the static publication directory (publish_dir)",
        )


CONFIG_KEY = web.AppKey("config", ServerConfig)
SEQUENCER_KEY = web.AppKey("sequencer", Sequencer)
STORAGE_KEY: web.AppKey[LogStorage] = web.AppKey("storage")
METRICS_KEY = web.AppKey("metrics", Metrics)
SIGNER_KEY = web.AppKey("signer", Signer)
READS_KEY = web.AppKey("reads", LogReads)
VERIFY_POOL_KEY: web.AppKey[VerifyPool | None] = web.AppKey("verify_pool")
ELECTION_KEY: web.AppKey[Election] = web.AppKey("election")  # only with the ha setting
OBSERVER_SIGNER_KEY = web.AppKey("observer_signer", Signer)
OBSERVER_KEY: web.AppKey[Observer | None] = web.AppKey("observer")  # with observe_index
OFFLOAD_BYTES = 4096  # about a dozen statements: below that, a process hop costs more


class Gate:
    """The admission of ``POST /add`` (see :mod:`sigledger.ledger.service.admission`):
    each step refuses with a domain error and counts the refusal."""

    def __init__(self, cfg: ServerConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.clients = TokenBuckets(cfg.client_rate, cfg.client_burst)
        self.signers = TokenBuckets(cfg.signer_rate, cfg.signer_burst)
        self.observing = TokenBuckets(cfg.observe_client_rate, cfg.observe_client_burst)
        self.backlog = Backlog(cfg.verify_queue_bytes, cfg.verify_queue_requests)
        self.submitters = Submitters(Path(cfg.submitters_file) if cfg.submitters_file else None)
        self.ip_header = cfg.client_ip_header

    def client_of(self, request: web.Request) -> str:
        values = request.headers.getall(self.ip_header, []) if self.ip_header else []
        return client_address(request.remote, values, bool(self.ip_header))

    def admit_client(self, client: str) -> None:
        """The per-address limit: RateLimitedError beyond it."""
        wait = self.clients.take(client)
        if wait:
            self.metrics.limited.labels("client").inc()
            raise _rate_limited(
                "too many requests from this address",
                self.cfg.client_rate,
                self.cfg.client_burst,
                wait,
                {"limit": "client"},
            )

    def admit_observation(self, client: str) -> None:
        """The per-address limit on lookups that make the log observe: RateLimitedError."""
        wait = self.observing.take(client)
        if wait:
            self.metrics.limited.labels("observe").inc()
            raise _rate_limited(
                "too many lookups that make the log observe from this address",
                self.cfg.observe_client_rate,
                self.cfg.observe_client_burst,
                wait,
                {"limit": "observe"},
            )

    @contextmanager
    def verifying(self, announced: int | None) -> Iterator[None]:
        """Room in the verification backlog for a body of ``announced`` bytes while
        it is read and checked; OverloadedError if there is none."""
        cap = self.cfg.max_request_bytes
        reserved = cap if announced is None else min(announced, cap)
        if not self.backlog.try_enter(reserved):
            self.metrics.statements.labels("refused").inc()
            raise OverloadedError(
                "too many submissions are waiting for verification; retry shortly"
            )
        try:
            yield
        finally:
            self.backlog.leave(reserved)

    def admit_signers(self, statements: Sequence[Signed]) -> None:
        """The submitters list and the per-signer limit: SignerNotAllowedError or
        RateLimitedError for the first signer refused."""
        for vkey, count in collections.Counter(s.signer_vkey() for s in statements).items():
            if not self.submitters.allows(vkey):
                self.metrics.statements.labels("not_allowed").inc(len(statements))
                raise SignerNotAllowedError(
                    f"this log accepts statements only from listed submitters; {vkey} is not "
                    "one of them (ask the log operator to add it)",
                    {"signer": vkey},
                )
            wait = self.signers.take(vkey, count)
            if wait:
                self.metrics.limited.labels("signer").inc()
                raise _rate_limited(
                    f"too many statements from signer {vkey}",
                    self.cfg.signer_rate,
                    self.cfg.signer_burst,
                    wait,
                    {"limit": "signer", "signer": vkey},
                )


GATE_KEY = web.AppKey("gate", Gate)


# -- opening a log ---------------------------------------------------------------


async def open_log(cfg: ServerConfig) -> tuple[LogStorage, Signer, str]:
    """Open (or create, on first start) the log in ``cfg.database_url``, its key in
    ``cfg.data``.

    Returns storage, the log signer and the origin. Refuses to run a log with
    a key or origin other than the one it was created with, and to start a new log
    in another database while the data directory still holds a SQLite log.
    """
    # The data directory holds the key (and the SQLite file, unless another database is set).
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.key_path.exists():
        read_key_file(cfg.key_path)  # a key that cannot be used fails before a database is made
    sqlite_log_beside = _other_sqlite_log(cfg)
    storage = await open_storage(cfg.database_url, standby=cfg.ha)
    log.info("log storage opened", extra={"database": describe(cfg.database_url)})
    try:
        stored_origin = await storage.get_meta("origin")
        new = stored_origin is None
        if new and sqlite_log_beside:
            # A new log under the key of the one in log.db would fork that log's history.
            raise ConfigError(
                f"{cfg.db_path} holds a log but the database {describe(cfg.database)} is empty; "
                f"copy the log first (sigledger migrate --from {sqlite_url(cfg.db_path)} --to URL) "
                "or use another data directory for a new log"
            )
        if new and (await storage.latest_head() is not None or await storage.count_entries()):
            raise ConfigError(
                f"the database {describe(cfg.database_url)} holds entries or tree heads but no "
                "log metadata (an interrupted sigledger migrate?); empty it and migrate again"
            )
        origin = (cfg.origin or DEFAULT_ORIGIN) if stored_origin is None else stored_origin
        signer = service_key(
            "log",
            cfg.data_dir,
            cfg.key_path,
            new=new,
            vkey=None if new else await storage.get_meta("vkey"),
            generate=lambda: Signer.generate(origin),
            lost="a new key would be a different log",
            log=log,
        )
        if new:
            await storage.initialize(
                {"origin": origin, "vkey": signer.vkey}, merkle.EMPTY_ROOT, int(time.time() * 1000)
            )
            log.info("created new log", extra={"origin": origin, "vkey": signer.vkey})
        elif cfg.origin and cfg.origin != origin:
            raise ConfigError(
                f"the log in {describe(cfg.database_url)} has origin {origin!r}, not {cfg.origin!r}"
            )
    except BaseException:
        await storage.close()
        raise
    return storage, signer, origin


def _other_sqlite_log(cfg: ServerConfig) -> bool:
    """Whether ``<data>/log.db`` exists while the log is set to live elsewhere."""
    if not cfg.database or not cfg.db_path.exists():
        return False
    engine, where = parse_database_url(cfg.database)
    return engine != "sqlite" or Path(where).resolve() != cfg.db_path.resolve()


# -- app -------------------------------------------------------------------------


def create_app(cfg: ServerConfig) -> web.Application:
    metrics = Metrics()

    def count_error(_route: str, code: str) -> None:
        metrics.errors.labels(code).inc()

    app = service_app(json_error, cfg.max_request_bytes, metrics.requests, count_error)
    app[CONFIG_KEY] = cfg
    app[METRICS_KEY] = metrics
    app[GATE_KEY] = Gate(cfg, metrics)
    app.cleanup_ctx.append(_log_context)
    app.router.add_get("/checkpoint", handle_checkpoint)
    app.router.add_get("/tile/{path:.+}", handle_tile)
    app.router.add_post("/add", handle_add)
    app.router.add_get("/lookup", handle_lookup)
    app.router.add_get("/observer", handle_observer)
    app.router.add_post("/lookup", handle_batch_lookup)
    app.router.add_get("/proof/consistency", handle_consistency)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    explorer.add_routes(app, explorer.LogAccess(STORAGE_KEY, SEQUENCER_KEY, SIGNER_KEY))
    return app


async def _log_context(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG_KEY]
    metrics = app[METRICS_KEY]
    storage, signer, origin = await open_log(cfg)
    try:
        observer_signer = await open_observer_key(cfg.data_dir, storage, signer, origin)
    except BaseException:
        await storage.close()
        raise

    def on_batch(entries: int, seconds: float) -> None:
        metrics.batch_size.observe(entries)
        metrics.batch_seconds.observe(seconds)

    async def prove(old: int, new: int) -> list[bytes]:
        return await seq.prove_consistency(old, new)  # seq is bound below

    pool = None
    if cfg.witnesses:
        try:
            endpoints = [
                WitnessEndpoint(url, Verifier.from_vkey(vkey))
                for url, vkey in cfg.witness_endpoints()
            ]
        except FormatError as exc:
            await storage.close()
            raise ConfigError(f"witness key: {exc}") from None
        pool = WitnessPool(
            endpoints,
            cfg.witness_quorum,
            cfg.witness_timeout,
            prove,
        )
    seq = Sequencer(
        storage,
        signer,
        origin,
        SequencerConfig.of(cfg),
        on_batch=on_batch,
        witnesses=pool,
        static=StaticPublisher(storage, Path(cfg.publish_dir)) if cfg.publish_dir else None,
        standby=cfg.ha,
    )
    election = _election(cfg, storage, seq)
    try:
        if pool is not None:
            await pool.start()
        await (seq.start() if election is None else election.start())
    except BaseException:
        if election is not None:
            await election.close()
        if pool is not None:
            await pool.close()
        await storage.close()
        raise
    electing = None
    if election is not None:
        app[ELECTION_KEY] = election
        electing = asyncio.create_task(election.run(), name="sigledger-election")
    app[STORAGE_KEY] = storage
    app[SEQUENCER_KEY] = seq
    app[READS_KEY] = LogReads(storage, seq, cache_bytes=cfg.read_cache_mb << 20)
    await _report_identity_violations(storage, metrics)
    pool_ = VerifyPool(cfg.verify_workers) if cfg.verify_workers > 0 else None
    if pool_ is not None:
        pool_.start()
    app[VERIFY_POOL_KEY] = pool_
    app[SIGNER_KEY] = signer
    app[OBSERVER_SIGNER_KEY] = observer_signer
    observer = None
    if cfg.observe_index:
        observer = Observer(
            observer_signer,
            seq,
            storage,
            cfg,
            lambda outcome, n: metrics.observed.labels(outcome).inc(n),
        )
        await observer.start()
    app[OBSERVER_KEY] = observer
    lag = asyncio.create_task(_watch_loop_lag(metrics), name="sigledger-loop-lag")
    try:
        yield
    finally:
        lag.cancel()
        if observer is not None:
            await observer.close()
        if electing is not None:
            electing.cancel()
        if pool_ is not None:
            await pool_.close()
        await seq.stop()
        if election is not None:
            await election.close()
        if pool is not None:
            await pool.close()
        await storage.close()


def _election(cfg: ServerConfig, storage: LogStorage, seq: Sequencer) -> Election | None:
    """With the ha setting: this process's part in leader election (ha.py)."""
    if not cfg.ha:
        return None
    # Imported here, so that a log on SQLite never loads the PostgreSQL driver.
    from sigledger.ledger.log.ha import Election  # noqa: PLC0415
    from sigledger.ledger.log.postgres import PostgresStorage  # noqa: PLC0415

    assert isinstance(storage, PostgresStorage), "open_storage refuses ha without PostgreSQL"
    return Election(storage, seq, cfg.request_timeout)


async def _report_identity_violations(storage: LogStorage, metrics: Metrics) -> None:
    """Entries written before the identity rule may break it: keep serving (entries are
    immutable) and say so once per start, in the log and in /metrics."""
    violations = await storage.identity_violations()
    metrics.identity_violations.set(len(violations))
    for signer, identity, indexes in violations:
        log.warning(
            "a signer logged more than one hash for one file (entries written before the "
            "identity rule)",
            extra={"signer": signer, "identity": identity, "entries": indexes},
        )


async def _watch_loop_lag(metrics: Metrics, period: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        metrics.loop_lag.observe(max(0.0, loop.time() - due))


def _sequencer(request: web.Request) -> Sequencer:
    return request.app[SEQUENCER_KEY]


async def handle_checkpoint(request: web.Request) -> web.Response:
    pub = _sequencer(request).published
    assert pub is not None
    return web.Response(
        body=pub.note,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": CHECKPOINT_CACHE, "Access-Control-Allow-Origin": "*"},
    )


# Built once: every tile answer carries the same headers (CIMultiDict copies them).
_TILE_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Cache-Control": IMMUTABLE,
    "Access-Control-Allow-Origin": "*",
}


async def handle_tile(request: web.Request) -> web.Response:
    path = "tile/" + request.match_info["path"]
    reads = request.app[READS_KEY]
    # Full tiles and bundles served before come from memory, without parsing the path:
    # only canonical paths of full tiles are ever stored (LogReads.cached). Files under
    # publish_dir are not sent instead: aiohttp's FileResponse (stat and open per
    # request) answered about 3x fewer requests per second than bytes from memory.
    data = reads.cached(path)
    if data is None:
        try:
            ref = parse_tile_path(path)
        except FormatError as exc:
            raise NotFoundError(f"no such tile: {exc}") from None
        data = await reads.tile(ref, path)
    resp = web.Response(body=data, headers=_TILE_HEADERS)
    if path.startswith("tile/entries/"):
        resp.enable_compression()
    return resp


async def handle_add(request: web.Request) -> web.Response:
    gate = request.app[GATE_KEY]
    gate.admit_client(gate.client_of(request))  # cheapest first, before reading the body
    with gate.verifying(request.content_length):
        body = await read_body(request, request.app[CONFIG_KEY].request_timeout)
        election = request.app.get(ELECTION_KEY)
        if election is not None and not _sequencer(request).leading:
            return await election.forward(request, body)  # a follower: the leader sequences
        statements = await _checked_statements(request, body)
    gate.admit_signers(statements)
    receipts = await _sequenced(request, statements)
    return web.json_response(api.encode_add_answer(receipts))


async def _sequenced(request: web.Request, statements: Sequence[Signed]) -> list[Receipt]:
    """The receipts of verified, admitted statements, counted by outcome."""
    metrics = request.app[METRICS_KEY]
    started = time.monotonic()
    try:
        receipts = await _sequencer(request).submit(statements)
    except BindingConflictError:
        metrics.statements.labels("conflict").inc(len(statements))
        raise
    except UnavailableError:
        metrics.statements.labels("refused").inc(len(statements))
        raise
    metrics.latency.observe(time.monotonic() - started)
    for r in receipts:
        metrics.statements.labels(r.status).inc()
    return receipts


def _rate_limited(
    what: str, rate: float, burst: int, wait: float, details: dict[str, Any]
) -> RateLimitedError:
    """A refusal by a token bucket; ``details`` name the limit."""
    after = retry_after(wait)
    return RateLimitedError(
        f"{what} (limit {rate:g}/s, burst {burst}); retry after {after} s",
        details,
        retry_after=int(after),
    )


async def _checked_statements(request: web.Request, body: bytes) -> tuple[Signed, ...]:
    """Parse ``body`` and verify every signature; MalformedRequestError,
    BadSignatureError or WorkersRestartingError otherwise."""
    cfg = request.app[CONFIG_KEY]
    metrics = request.app[METRICS_KEY]
    pool = request.app[VERIFY_POOL_KEY]
    args = (body, request.content_type, cfg.max_statements)
    if pool is not None and len(body) >= OFFLOAD_BYTES:
        # Large requests: validation and Ed25519 run in a worker process, using
        # another core; the statements come back decoded.
        try:
            checked = await pool.run(api.check_add_request, *args)
        except WorkersUnavailableError:
            metrics.statements.labels("refused").inc()
            raise
    else:
        checked = api.check_add_request(*args)
    if checked.error is not None:
        metrics.statements.labels("malformed").inc()
        raise MalformedRequestError(checked.error)
    bad = list(checked.bad_signatures)
    if bad:
        metrics.statements.labels("bad_signature").inc(len(bad))
        raise BadSignatureError(
            f"signature does not verify for statement(s) {bad} "
            "(signed with another key, or the statement was changed)",
            {"statements": bad},
        )
    return checked.statements


async def handle_lookup(request: web.Request) -> web.Response:
    """Entries matching a hash or release, each with an inclusion proof against
    the one checkpoint returned alongside (one round trip verifies the answer)."""
    try:
        query = api.parse_lookup_query(request.query)
    except FormatError as exc:
        raise BadQueryError(str(exc)) from None
    observer = request.app[OBSERVER_KEY]
    need = await observer.needs(query) if observer is not None else None
    if observer is not None and need is not None:
        gate = request.app[GATE_KEY]
        client = gate.client_of(request)
        election = request.app.get(ELECTION_KEY)
        if election is not None:
            # Only the leader logs: a follower forwards the lookup (ha.py), vouching
            # for the client, whose limit the leader then applies.
            signer = request.app[SIGNER_KEY]
            if not _sequencer(request).leading:
                seconds = observing_seconds(request.app[CONFIG_KEY])
                relayed = await election.forward_lookup(request, signer, client, seconds)
                if relayed.status == 200 and relayed.headers.get(COMPLETE_HEADER):
                    observer.mark_complete(query)  # lookups of it stay here from now on
                return relayed
            client = election.vouched_client(signer, request) or client
        if need == NEW_RELEASE:  # a release the log has nothing of: the client pays
            gate.admit_observation(client)
        pending = await observer.observe(query, need)
        if pending is not None:
            return web.json_response(
                pending.to_json(),
                status=202,
                headers={
                    "Retry-After": str(pending.retry_after),
                    "Cache-Control": "no-store",
                    "Access-Control-Allow-Origin": "*",
                },
            )
    answer = await request.app[READS_KEY].lookup(query)
    headers = _LOOKUP_HEADERS
    election = request.app.get(ELECTION_KEY)
    if (
        observer is not None
        and election is not None
        and election.is_forward(request)
        and observer.complete(query)
    ):
        headers = {**headers, COMPLETE_HEADER: "1"}  # the follower keeps the next ones
    return web.json_response(answer.to_json(), headers=headers)


async def handle_observer(request: web.Request) -> web.Response:
    """The verifier key of the log's own observer key."""
    return web.Response(
        text=request.app[OBSERVER_SIGNER_KEY].vkey + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


async def handle_batch_lookup(request: web.Request) -> web.Response:
    """``POST /lookup``: many digests in one round trip (see api.parse_batch_lookup)."""
    body = await read_body(request, request.app[CONFIG_KEY].request_timeout)
    try:
        hashes, related = api.parse_batch_lookup(body)
    except FormatError as exc:
        raise BadQueryError(str(exc)) from None
    answer = await request.app[READS_KEY].lookup_hashes(hashes, related)
    return web.json_response(answer.to_json(), headers=_LOOKUP_HEADERS)


_LOOKUP_HEADERS = {"Cache-Control": CHECKPOINT_CACHE, "Access-Control-Allow-Origin": "*"}


async def handle_consistency(request: web.Request) -> web.Response:
    try:
        old, new = api.parse_consistency_query(request.query)
    except FormatError as exc:
        raise BadQueryError(str(exc)) from None
    answer = await request.app[READS_KEY].consistency(old, new)
    return web.json_response(
        answer.to_json(), headers={"Cache-Control": IMMUTABLE, "Access-Control-Allow-Origin": "*"}
    )


async def handle_healthz(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG_KEY]
    seq = _sequencer(request)
    pub = seq.published
    problems = []
    if not seq.healthy:
        problems.append(f"storage: {seq.last_error}")
    age = time.time() - pub.published_at if pub else float("inf")
    if seq.witnesses is not None and not seq.witnessed:
        problems.append(f"witnesses: {seq.last_witness_error}")
    if age > cfg.stale_after:
        problems.append(f"checkpoint last published {age:.0f}s ago (limit {cfg.stale_after:.0f}s)")
    pool = request.app[VERIFY_POOL_KEY]
    if seq.static is not None and seq.static.error is not None:
        problems.append(seq.static.error)
    if pool is not None and not pool.available:
        problems.append(
            f"verification workers: restarting after a worker died ({pool.restarts} restarts)"
        )
    return health_response(
        problems,
        leader=seq.leading,
        tree_size=pub.size if pub else None,
        checkpoint_age_seconds=round(age, 3),
        queued=seq.queued,
    )


async def handle_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    seq = _sequencer(request)
    if seq.published is not None:
        metrics.tree_size.set(seq.published.size)
        metrics.checkpoint_time.set(seq.published.published_at)
    metrics.queued.set(seq.queued)
    gate = request.app[GATE_KEY]
    metrics.backlog_bytes.set(gate.backlog.bytes)
    metrics.backlog_requests.set(gate.backlog.requests)
    pool = request.app[VERIFY_POOL_KEY]
    if pool is not None:
        metrics.worker_restarts.set(pool.restarts)
    metrics.witnessed.set(1 if seq.witnessed else 0)
    if seq.witnesses is not None:
        for url, st in seq.witnesses.status.items():
            metrics.witness_ok.labels(url).set(st.last_ok)
    full = request.app[READS_KEY].full
    for measure, value in (("hits", full.hits), ("misses", full.misses), ("bytes", full.bytes)):
        metrics.read_cache.labels(measure).set(value)
    if seq.static is not None:
        metrics.static_size.set(seq.static.stats.size)
    committed = seq.committed_size
    if seq.published is not None and committed is not None:
        metrics.unpublished.set(committed - seq.published.size)
    return metrics_response(metrics.registry)


# -- running -----------------------------------------------------------------------


async def run_server(cfg: ServerConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (see the service runner).

    Pending submissions are integrated and answered, or explicitly refused,
    before the database closes.
    """
    app = create_app(cfg)

    def started(url: str) -> None:
        # Everything loaded so far lives as long as the process: keep the cyclic
        # garbage collector from scanning it again and again (full collections
        # otherwise stall the event loop for tens of milliseconds under load).
        gc.freeze()
        if ELECTION_KEY in app:
            app[ELECTION_KEY].listening(cfg.internal_url or url)
        signer = app[SIGNER_KEY]
        observer = app[OBSERVER_SIGNER_KEY]
        pub = app[SEQUENCER_KEY].published
        log.info(
            "listening",
            extra={
                "url": url,
                "vkey": signer.vkey,
                "observer_vkey": observer.vkey,
                "observe_index": [u for u, _ in cfg.observe_sources()],
                "tree_size": pub.size if pub else 0,
            },
        )
        if announce is not None:
            announce(
                f"sigledger log {signer.name} listening on {url}\n"
                f"verifier key: {signer.vkey}\n"
                f"observer key: {observer.vkey}\n"
                f"data: {cfg.data_dir}"
            )

    host, port = cfg.host_port
    await run_app(app, host, port, started, on_reload=app[GATE_KEY].submitters.reload)
