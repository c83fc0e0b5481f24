"""The log's HTTP service (aiohttp): thin handlers over the sequencer and storage.

Routes (read side per c2sp.org/tlog-tiles@v0.1.0):

* ``GET /checkpoint`` -- the signed checkpoint note (``text/plain; charset=utf-8``).
* ``GET /tile/<L>/<N>[.p/<W>]`` -- hash tiles; ``GET /tile/entries/<N>[.p/<W>]`` --
  entry bundles. Both immutable once served; only sizes up to the published
  checkpoint are served.
* ``POST /add`` -- submit signed statements (see :mod:`sigledger.ledger.wire`); answers
  after integration with one receipt per statement.
* ``GET /lookup`` -- entries by sha256 or by project[/version[/filename]], each
  with an inclusion proof against the returned checkpoint; paged.
* ``GET /proof/consistency?old=M&new=N`` -- RFC 6962 consistency proof.
* ``GET /`` and below -- the read-only HTML explorer (:mod:`sigledger.ledger.log.explorer`).
* ``GET /healthz`` -- 200 while storage works and the checkpoint is fresh.
* ``GET /metrics`` -- Prometheus text format.

Errors are JSON bodies ``{"error": <stable key>, "message": <text>}`` with the
status code of the failure (400, 403, 404, 409, 413, 429/503 + Retry-After).
No request, however malformed, is answered with a 5xx; 503 means "retry
later" (overload, witnesses missing, workers restarting, shutting down).
Admission control and spam limits for ``/add`` are described in
:mod:`sigledger.ledger.service.admission`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sigledger.ledger import merkle
from sigledger.ledger import wire as api
from sigledger.ledger.entry import SignedStatement, decode_entry
from sigledger.ledger.errors import ConfigError, FormatError, LedgerError
from sigledger.ledger.log import explorer
from sigledger.ledger.log.cosigner import WitnessEndpoint, WitnessPool
from sigledger.ledger.log.sequencer import (
    ConflictError,
    OverloadedError,
    Published,
    Sequencer,
    SequencerConfig,
    SubmissionError,
)
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.admission import (
    Backlog,
    Submitters,
    TokenBuckets,
    client_address,
    retry_after,
)
from sigledger.ledger.service.config import DEFAULT_ORIGIN, ServerConfig
from sigledger.ledger.service.keys import read_key_file, write_key_file
from sigledger.ledger.service.runner import (
    describe_http_error,
    finish_error,
    log_request,
    read_body,
    run_app,
)
from sigledger.ledger.service.workers import VerifyPool, WorkersUnavailableError
from sigledger.ledger.tiles import TILE_WIDTH, encode_entry_bundle, parse_tile_path, tile_width

log = logging.getLogger("sigledger.server")

IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "public, max-age=2"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tree_size = Gauge("sigledger_tree_size", "Entries in the published tree", registry=r)
        self.checkpoint_time = Gauge(
            "sigledger_checkpoint_timestamp_seconds",
            "When the checkpoint was last (re)published",
            registry=r,
        )
        self.queued = Gauge(
            "sigledger_queue_statements", "Statements awaiting integration", registry=r
        )
        self.batch_size = Histogram(
            "sigledger_batch_entries",
            "New entries per integrated batch",
            buckets=(0, 1, 4, 16, 64, 256, 1024, 4096, 16384),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sigledger_batch_seconds",
            "Time to integrate one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.latency = Histogram(
            "sigledger_integration_latency_seconds",
            "Time from submission to receipt",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.requests = Counter(
            "sigledger_http_requests",
            "HTTP requests by route and status",
            ["route", "code"],
            registry=r,
        )
        self.errors = Counter("sigledger_errors", "Errors by category", ["error"], registry=r)
        self.witnessed = Gauge(
            "sigledger_witnessed",
            "1 when the newest commit is published with a witness quorum",
            registry=r,
        )
        self.witness_ok = Gauge(
            "sigledger_witness_last_cosignature_timestamp_seconds",
            "When each witness last cosigned",
            ["witness"],
            registry=r,
        )
        self.unpublished = Gauge(
            "sigledger_unpublished_entries",
            "Entries committed but not yet in a published checkpoint",
            registry=r,
        )
        self.statements = Counter(
            "sigledger_statements", "Submitted statements by outcome", ["outcome"], registry=r
        )
        self.worker_restarts = Gauge(
            "sigledger_verify_worker_restarts",
            "Times the verification worker pool was rebuilt after a worker died",
            registry=r,
        )
        self.backlog_bytes = Gauge(
            "sigledger_verify_backlog_bytes",
            "Request-body bytes admitted but not yet verified",
            registry=r,
        )
        self.backlog_requests = Gauge(
            "sigledger_verify_backlog_requests",
            "/add requests admitted but not yet verified",
            registry=r,
        )
        self.identity_violations = Gauge(
            "sigledger_identity_violations",
            "(signer, file identity) pairs with more than one hash, logged before the "
            "identity rule (entries are immutable; monitors and fsck report each)",
            registry=r,
        )
        self.loop_lag = Histogram(
            "sigledger_event_loop_lag_seconds",
            "How late a 100 ms timer fires: time the event loop was busy with other work",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.limited = Counter(
            "sigledger_rate_limited", "/add requests refused by a limit", ["limit"], registry=r
        )


class APIError(LedgerError):
    """An error answered to an HTTP client with ``status`` and a stable ``error_key``."""

    def __init__(
        self,
        status: int,
        error_key: str,
        message: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.error_key = error_key
        self.extra = extra or {}
        self.headers = headers or {}


CONFIG_KEY = web.AppKey("config", ServerConfig)
SEQUENCER_KEY = web.AppKey("sequencer", Sequencer)
STORAGE_KEY = web.AppKey("storage", Storage)
METRICS_KEY = web.AppKey("metrics", Metrics)
SIGNER_KEY = web.AppKey("signer", Signer)
VERIFY_POOL_KEY: web.AppKey[VerifyPool | None] = web.AppKey("verify_pool")
OFFLOAD_BYTES = 4096  # about a dozen statements: below that, a process hop costs more


class Gate:
    """The admission state of ``POST /add`` (see :mod:`sigledger.ledger.service.admission`)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.clients = TokenBuckets(cfg.client_rate, cfg.client_burst)
        self.signers = TokenBuckets(cfg.signer_rate, cfg.signer_burst)
        self.backlog = Backlog(cfg.verify_queue_bytes, cfg.verify_queue_requests)
        self.submitters = Submitters(Path(cfg.submitters_file) if cfg.submitters_file else None)
        self.ip_header = cfg.client_ip_header

    def client_of(self, request: web.Request) -> str:
        values = request.headers.getall(self.ip_header, []) if self.ip_header else []
        return client_address(request.remote, values, bool(self.ip_header))


GATE_KEY = web.AppKey("gate", Gate)


# -- opening a log ---------------------------------------------------------------


async def open_log(cfg: ServerConfig) -> tuple[Storage, Signer, str]:
    """Open (or create, on first start) the log in ``cfg.data``.

    Returns storage, the log signer and the origin. Refuses to run a log with
    a key or origin other than the one it was created with.
    """
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    storage = await Storage.open(cfg.db_path)
    try:
        origin = await storage.get_meta("origin")
        if origin is None:
            origin = cfg.origin or DEFAULT_ORIGIN
            if cfg.key_path.exists():
                signer = read_key_file(cfg.key_path)
            else:
                signer = Signer.generate(origin)
                write_key_file(cfg.key_path, signer)
                log.info("generated log key", extra={"key_file": str(cfg.key_path)})
            await storage.initialize(
                {"origin": origin, "vkey": signer.vkey}, merkle.EMPTY_ROOT, int(time.time() * 1000)
            )
            log.info("created new log", extra={"origin": origin, "vkey": signer.vkey})
        else:
            if not cfg.key_path.exists():
                raise ConfigError(
                    f"the log in {cfg.data_dir} exists but its key {cfg.key_path} is missing; "
                    "restore the key file (a new key would be a different log)"
                )
            signer = read_key_file(cfg.key_path)
            vkey = await storage.get_meta("vkey")
            if signer.vkey != vkey:
                raise ConfigError(
                    f"key {cfg.key_path} ({signer.vkey}) is not the key of the log in "
                    f"{cfg.data_dir} ({vkey}); refusing to start"
                )
            if cfg.origin and cfg.origin != origin:
                raise ConfigError(
                    f"the log in {cfg.data_dir} has origin {origin!r}, not {cfg.origin!r}"
                )
    except BaseException:
        await storage.close()
        raise
    return storage, signer, origin


# -- app -------------------------------------------------------------------------


def create_app(cfg: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=cfg.max_request_bytes, middlewares=[_error_middleware])
    app[CONFIG_KEY] = cfg
    app[METRICS_KEY] = Metrics()
    app[GATE_KEY] = Gate(cfg)
    app.cleanup_ctx.append(_log_context)
    app.router.add_get("/checkpoint", handle_checkpoint)
    app.router.add_get("/tile/{path:.+}", handle_tile)
    app.router.add_post("/add", handle_add)
    app.router.add_get("/lookup", handle_lookup)
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
        SequencerConfig(
            batch_max_size=cfg.batch_max_size,
            batch_max_age=cfg.batch_max_age,
            queue_max=cfg.queue_max,
            checkpoint_period=cfg.checkpoint_period,
            tile_cache=cfg.tile_cache,
            cosign_refresh=cfg.witness_refresh,
        ),
        on_batch=on_batch,
        witnesses=pool,
    )
    try:
        if pool is not None:
            await pool.start()
        await seq.start()
    except BaseException:
        if pool is not None:
            await pool.close()
        await storage.close()
        raise
    app[STORAGE_KEY] = storage
    app[SEQUENCER_KEY] = seq
    await _report_identity_violations(storage, metrics)
    pool_ = VerifyPool(cfg.verify_workers) if cfg.verify_workers > 0 else None
    if pool_ is not None:
        pool_.start()
    app[VERIFY_POOL_KEY] = pool_
    app[SIGNER_KEY] = signer
    lag = asyncio.create_task(_watch_loop_lag(metrics), name="sigledger-loop-lag")
    try:
        yield
    finally:
        lag.cancel()
        if pool_ is not None:
            await pool_.close()
        await seq.stop()
        if pool is not None:
            await pool.close()
        await storage.close()


async def _report_identity_violations(storage: Storage, metrics: Metrics) -> None:
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


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    metrics = request.app[METRICS_KEY]
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    started = time.monotonic()
    try:
        resp = await handler(request)
    except APIError as exc:
        resp = _error_response(exc.status, exc.error_key, str(exc), exc.extra, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        key, message = describe_http_error(exc, request.app[CONFIG_KEY].max_request_bytes)
        resp = _error_response(exc.status, key, message, {}, {})
    error = ""
    if resp.status >= 400:
        finish_error(request, resp)
        error = getattr(resp, "error_key", str(resp.status))
        metrics.errors.labels(error).inc()
    log_request(request, resp.status, started, error)
    metrics.requests.labels(route_name, str(resp.status)).inc()
    return resp


def _error_response(
    status: int, key: str, message: str, extra: dict[str, Any], headers: dict[str, str]
) -> web.Response:
    resp = web.json_response(
        {"error": key, "message": message, **extra}, status=status, headers=headers
    )
    resp.error_key = key  # type: ignore[attr-defined]
    return resp


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


async def handle_tile(request: web.Request) -> web.Response:
    path = "tile/" + request.match_info["path"]
    try:
        ref = parse_tile_path(path)
    except FormatError as exc:
        raise APIError(404, "not_found", f"no such tile: {exc}") from None
    pub = _sequencer(request).published
    assert pub is not None
    level = 0 if ref.is_entries else ref.level
    if tile_width(level, ref.n, pub.size) < ref.width:
        raise APIError(404, "not_found", f"{path} is beyond the published tree size {pub.size}")
    storage = request.app[STORAGE_KEY]
    headers = {"Cache-Control": IMMUTABLE, "Access-Control-Allow-Origin": "*"}
    if ref.is_entries:
        start = ref.n * TILE_WIDTH
        entries = await storage.read_entries(start, start + ref.width)
        if len(entries) != ref.width:
            raise APIError(500, "storage_inconsistent", f"entries missing for {path}")
        resp = web.Response(
            body=encode_entry_bundle(entries),
            content_type="application/octet-stream",
            headers=headers,
        )
        resp.enable_compression()
        return resp
    data = await storage.read_tile(ref.level, ref.n)
    if data is None or len(data) < ref.width * 32:
        raise APIError(500, "storage_inconsistent", f"tile data missing for {path}")
    return web.Response(
        body=data[: ref.width * 32], content_type="application/octet-stream", headers=headers
    )


async def handle_add(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG_KEY]
    metrics = request.app[METRICS_KEY]
    gate = request.app[GATE_KEY]
    # Cheapest refusals first, before a byte of the body is read.
    wait = gate.clients.take(gate.client_of(request))
    if wait:
        metrics.limited.labels("client").inc()
        raise _rate_limited(
            "too many requests from this address",
            cfg.client_rate,
            cfg.client_burst,
            wait,
            {"limit": "client"},
        )
    announced = request.content_length
    reserved = cfg.max_request_bytes if announced is None else min(announced, cfg.max_request_bytes)
    if not gate.backlog.try_enter(reserved):
        metrics.statements.labels("refused").inc()
        raise APIError(
            503,
            "overloaded",
            "too many submissions are waiting for verification; retry shortly",
            {},
            {"Retry-After": "1"},
        )
    try:
        body = await read_body(request, cfg.request_timeout)
        statements = await _checked_statements(request, body)
    finally:
        gate.backlog.leave(reserved)
    for vkey, count in collections.Counter(s.signer_vkey() for s in statements).items():
        if not gate.submitters.allows(vkey):
            metrics.statements.labels("not_allowed").inc(len(statements))
            raise APIError(
                403,
                "signer_not_allowed",
                f"this log accepts statements only from listed submitters; {vkey} is not "
                "one of them (ask the log operator to add it)",
                {"signer": vkey},
            )
        wait = gate.signers.take(vkey, count)
        if wait:
            metrics.limited.labels("signer").inc()
            raise _rate_limited(
                f"too many statements from signer {vkey}",
                cfg.signer_rate,
                cfg.signer_burst,
                wait,
                {"limit": "signer", "signer": vkey},
            )
    started = time.monotonic()
    seq = _sequencer(request)
    try:
        receipts = await seq.submit(statements)
    except ConflictError as exc:
        metrics.statements.labels("conflict").inc(len(statements))
        raise APIError(
            409,
            exc.error_key,
            str(exc),
            {
                "existing": [
                    {"log_index": i, "entry": base64.b64encode(d).decode()} for i, d in exc.existing
                ]
            },
        ) from None
    except OverloadedError as exc:
        metrics.statements.labels("refused").inc(len(statements))
        raise APIError(
            exc.status, exc.error_key, str(exc), headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except SubmissionError as exc:
        raise APIError(exc.status, exc.error_key, str(exc)) from None
    metrics.latency.observe(time.monotonic() - started)
    for r in receipts:
        metrics.statements.labels("existing" if r.existing else "added").inc()
    return web.json_response({"receipts": [r.to_json() for r in receipts]})


def _rate_limited(
    what: str, rate: float, burst: int, wait: float, extra: dict[str, Any]
) -> APIError:
    """429 from a token bucket; ``extra`` names the limit."""
    after = retry_after(wait)
    return APIError(
        429,
        "rate_limited",
        f"{what} (limit {rate:g}/s, burst {burst}); retry after {after} s",
        extra,
        {"Retry-After": after},
    )


async def _checked_statements(request: web.Request, body: bytes) -> list[SignedStatement]:
    """Parse ``body`` and verify every signature; APIError 400/403/503 otherwise."""
    cfg = request.app[CONFIG_KEY]
    metrics = request.app[METRICS_KEY]
    pool = request.app[VERIFY_POOL_KEY]
    if pool is not None and len(body) >= OFFLOAD_BYTES:
        # Large requests: validation and Ed25519 run in a worker process, using
        # another core; the loop only rebuilds the accepted statements.
        try:
            error, bad = await pool.run(
                api.check_add_request, body, request.content_type, cfg.max_statements
            )
        except WorkersUnavailableError as exc:
            metrics.statements.labels("refused").inc()
            raise APIError(
                503, "workers_restarting", str(exc), {}, {"Retry-After": str(exc.retry_after)}
            ) from None
        statements = (
            [] if error or bad else api.decode_checked_add_request(body, request.content_type)
        )
    else:
        try:
            statements = api.parse_add_request(body, request.content_type, cfg.max_statements)
        except FormatError as exc:
            error, bad = str(exc), []
        else:
            error, bad = None, [i for i, s in enumerate(statements) if not s.verify()]
    if error is not None:
        metrics.statements.labels("malformed").inc()
        raise APIError(400, "malformed", error)
    if bad:
        metrics.statements.labels("bad_signature").inc(len(bad))
        raise APIError(
            403,
            "bad_signature",
            f"signature does not verify for statement(s) {bad} "
            "(signed with another key, or the statement was changed)",
            {"statements": bad},
        )
    return statements


async def handle_lookup(request: web.Request) -> web.Response:
    """Entries matching a hash or release, each with an inclusion proof against
    the one checkpoint returned alongside (one round trip verifies the answer)."""
    try:
        q = api.parse_lookup_query(request.query)
    except FormatError as exc:
        raise APIError(400, "bad_query", str(exc)) from None
    pub = _sequencer(request).published
    assert pub is not None
    rows = await request.app[STORAGE_KEY].lookup(
        below=pub.size,
        sha256=q.sha256,
        project=q.project,
        version=q.version,
        identity=q.identity,
        start=q.cursor,
        limit=q.limit + 1,
    )
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return await _lookup_answer(request, pub, rows, rows[-1][0] + 1 if more else None)


async def handle_batch_lookup(request: web.Request) -> web.Response:
    """``POST /lookup``: many digests in one round trip (see api.parse_batch_lookup)."""
    body = await read_body(request, request.app[CONFIG_KEY].request_timeout)
    try:
        hashes, related = api.parse_batch_lookup(body)
    except FormatError as exc:
        raise APIError(400, "bad_query", str(exc)) from None
    pub = _sequencer(request).published
    assert pub is not None
    storage = request.app[STORAGE_KEY]
    limit = api.BATCH_MAX_ENTRIES + 1
    rows = await storage.lookup_hashes(hashes, below=pub.size, limit=limit)
    if related and rows:
        files = {decode_entry(data).statement.identity.key for _i, data in rows}
        rows += await storage.lookup_identities(files, below=pub.size, limit=limit)
    unique = sorted(dict(rows).items())
    if len(unique) > api.BATCH_MAX_ENTRIES:
        raise APIError(
            400,
            "too_many_results",
            f"more than {api.BATCH_MAX_ENTRIES} matching entries; ask for fewer "
            "digests per request",
        )
    return await _lookup_answer(request, pub, unique, None)


async def _lookup_answer(
    request: web.Request, pub: Published, rows: list[tuple[int, bytes]], next_cursor: int | None
) -> web.Response:
    proofs = await _sequencer(request).prove_inclusions([i for i, _ in rows], pub.size)
    b64 = base64.b64encode
    return web.json_response(
        {
            "tree_size": pub.size,
            "checkpoint": pub.note.decode(),
            "entries": [
                {
                    "log_index": i,
                    "entry": b64(data).decode(),
                    "inclusion_proof": [b64(h).decode() for h in proof],
                }
                for (i, data), proof in zip(rows, proofs, strict=True)
            ],
            "next_cursor": next_cursor,
        },
        headers={"Cache-Control": CHECKPOINT_CACHE, "Access-Control-Allow-Origin": "*"},
    )


async def handle_consistency(request: web.Request) -> web.Response:
    try:
        old, new = api.parse_consistency_query(request.query)
    except FormatError as exc:
        raise APIError(400, "bad_query", str(exc)) from None
    seq = _sequencer(request)
    pub = seq.published
    assert pub is not None
    if new > pub.size:
        raise APIError(
            400, "bad_query", f"new ({new}) is beyond the published tree size {pub.size}"
        )
    proof = await seq.prove_consistency(old, new)
    return web.json_response(
        {"old_size": old, "new_size": new, "hashes": [base64.b64encode(h).decode() for h in proof]},
        headers={"Cache-Control": IMMUTABLE, "Access-Control-Allow-Origin": "*"},
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
    if pool is not None and not pool.available:
        problems.append(
            f"verification workers: restarting after a worker died ({pool.restarts} restarts)"
        )
    body = {
        "status": "fail" if problems else "ok",
        "problems": problems,
        "tree_size": pub.size if pub else None,
        "checkpoint_age_seconds": round(age, 3),
        "queued": seq.queued,
    }
    return web.json_response(
        body, status=503 if problems else 200, headers={"Cache-Control": "no-store"}
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
    committed = seq.committed_size
    if seq.published is not None and committed is not None:
        metrics.unpublished.set(committed - seq.published.size)
    resp = web.Response(body=generate_latest(metrics.registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    with suppress(Exception):
        resp.charset = "utf-8"
    return resp


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
        signer = app[SIGNER_KEY]
        pub = app[SEQUENCER_KEY].published
        log.info(
            "listening",
            extra={"url": url, "vkey": signer.vkey, "tree_size": pub.size if pub else 0},
        )
        if announce is not None:
            announce(
                f"sigledger log {signer.name} listening on {url}\n"
                f"verifier key: {signer.vkey}\n"
                f"data: {cfg.data_dir}"
            )

    host, port = cfg.host_port
    await run_app(app, host, port, started, on_reload=app[GATE_KEY].submitters.reload)
