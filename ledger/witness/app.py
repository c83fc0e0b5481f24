r"""A witness (c2sp.org/tlog-witness): cosign checkpoints of known logs, only ever
consistently, and remember the latest one per log.

Routes (submission and monitoring prefix: the server root):

* ``POST /add-checkpoint`` -- the tlog-witness request (:mod:`sigledger.ledger.witnessproto`).
* ``GET /<lowercase hex SHA-256(origin)>/checkpoint`` -- the latest checkpoint
  cosigned for that log: the log signature(s) the witness verified and its own
  cosignature (``text/plain; charset=utf-8``); 404 if it never cosigned one.
* ``GET /healthz`` -- 200 while the database answers.
* ``GET /metrics`` -- Prometheus text format.

``POST /add-checkpoint`` checks, in this order (the order of the status table
of tlog-witness HEAD, with the checks that need no state first):

====  ===========================================================================
413   body larger than ``max_request_bytes``
400   malformed body (strict parsing, see :mod:`sigledger.ledger.witnessproto`), or a note
      or checkpoint that does not parse
404   the checkpoint's origin is not a configured log (HEAD; the litewitness
      snapshot answered 403)
403   no valid signature by a configured key for that origin, or a signature by
      a configured key (matched on name and key ID) that fails to verify, or
      signature lines that do not parse (e.g. non-canonical base64)
400   old size > checkpoint size
409   old size differs from the size last cosigned for the origin (0 if never);
      body ``<size>\n``, ``Content-Type: text/x.tlog.size``
422   a size-0 checkpoint whose root is not SHA-256(""); old size 0 with a
      non-empty proof; old size == size with a different root (HEAD; v1.0.0
      said 409) or a non-empty proof; a consistency proof that does not verify
200   the state moved (compare-and-swap on the stored size and root, durable),
      then the body is one cosignature/v1 line ``— <name> <base64>\n``
====  ===========================================================================

Choices where the spec leaves room, or where v1.0.0 and HEAD differ:

* We follow HEAD (422 for same size and different root, 404 for an unknown
  origin); what v1.0.0 accepted with 200 is still accepted.
* Re-submitting the checkpoint last cosigned (old == size, same root, empty
  proof) returns a fresh cosignature with the current time.
* Cosignatures are Ed25519 cosignature/v1 (type 0x04), the format the
  deployed witness network speaks, with timestamp = the current POSIX time
  (never 0). They cover the whole checkpoint text, extension lines included
  (c2sp.org/tlog-cosignature@v1.0.1).
* Correctly signed checkpoints refused with 422 are kept as evidence in the
  database (bounded; two roots for one size and a bad size-0 root are kept in
  preference to failed proofs, which may be the client's fault) and logged.
* A checkpoint whose text parses but whose signature lines do not (our note
  parser accepts only canonical base64, Go's does not) is refused with 403,
  not 400: no signature by the log can be checked. The litewitness test
  sequence expects 403 for a signature altered into non-canonical base64.
* Error bodies other than 409 are one line of plain text, for people.
* Nothing changes the state but a 200.
* ``sign-subtree`` (optional in HEAD) is not implemented (404).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import Checkpoint, parse_checkpoint
from sigledger.ledger.errors import (
    BadSignatureError,
    CheckpointConflictError,
    ConfigError,
    FormatError,
    InconsistentCheckpointError,
    LedgerError,
    MalformedRequestError,
    NotFoundError,
    RefusedError,
    RequestError,
    VerificationError,
)
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    Note,
    Signer,
    Verifier,
    format_note,
    open_note,
    sign_cosignature,
)
from sigledger.ledger.service.http import (
    TEXT_TYPE,
    health_response,
    metrics_response,
    service_app,
    text_error,
)
from sigledger.ledger.service.keys import read_key_file, service_key
from sigledger.ledger.service.metrics import MetricSet
from sigledger.ledger.service.runner import read_body, run_app
from sigledger.ledger.witness.config import WitnessConfig
from sigledger.ledger.witness.store import WitnessHead, WitnessStore
from sigledger.ledger.witnessproto import (
    SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    format_size_body,
    parse_add_checkpoint,
)

__all__ = [
    "create_witness_app",
    "open_witness",
    "run_witness",
]

log = logging.getLogger("sigledger.witness")


# -- state, key and app ----------------------------------------------------------------


class WitnessMetrics(MetricSet):
    """The witness's metrics (``sigledger_witness_*``)."""

    def __init__(self) -> None:
        super().__init__("sigledger_witness_http_requests")
        self.cosignatures = self.counter(
            "sigledger_witness_cosignatures", "Cosignatures issued, by log origin", "origin"
        )
        self.refused = self.counter(
            "sigledger_witness_refused", "add-checkpoint requests refused, by reason", "reason"
        )
        self.tree_size = self.gauge(
            "sigledger_witness_tree_size",
            "Size of the latest checkpoint cosigned, by log origin",
            "origin",
        )


@dataclass
class WitnessState:
    """What the handlers share: open while the app runs."""

    store: WitnessStore
    signer: Signer
    logs: dict[str, tuple[Verifier, ...]]
    by_hash: dict[str, str]
    """Lowercase hex SHA-256(origin) -> origin, for the monitoring endpoint."""


CONFIG_KEY = web.AppKey("witness_config", WitnessConfig)
METRICS_KEY = web.AppKey("witness_metrics", WitnessMetrics)
STATE_KEY = web.AppKey("witness_state", WitnessState)


def _conflict(size: int) -> CheckpointConflictError:
    return CheckpointConflictError(
        f"the witness's latest checkpoint for this log has size {size}", size
    )


def _render_error(status: int, code: str, message: str, exc: RequestError | None) -> web.Response:
    """Errors are one line of text, but for 409: the size body tlog-witness defines.
    Its content type carries no parameter (sigsum clients reject one)."""
    if isinstance(exc, CheckpointConflictError):
        return web.Response(
            status=status,
            body=format_size_body(exc.size),
            headers={"Content-Type": SIZE_CONTENT_TYPE},
        )
    return text_error(status, code, message, exc)


def _read_witness_key(path: Path) -> Signer:
    signer = read_key_file(path)
    if signer.alg != ALG_COSIGNATURE_V1:
        raise ConfigError(
            f"key file {path} holds a type 0x{signer.alg:02x} key; a witness needs a "
            "cosignature/v1 (type 0x04) key"
        )
    return signer


async def open_witness(cfg: WitnessConfig) -> tuple[WitnessStore, Signer]:
    """Open (or create, on first start) the witness state in ``cfg.data``.

    Creates the key (type 0x04, mode 0600) on first start. Refuses to run
    with a key other than the one the state was created with: cosignatures
    by the old key would then vouch for checkpoints the new key never saw.
    """
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.key_path.exists():
        _read_witness_key(cfg.key_path)  # a key that cannot be used fails before the state
    store = await WitnessStore.open(cfg.db_path)
    try:
        vkey = await store.get_meta("vkey")
        signer = service_key(
            "witness",
            cfg.data_dir,
            cfg.key_path,
            new=vkey is None,
            vkey=vkey,
            generate=lambda: Signer.generate(cfg.name, ALG_COSIGNATURE_V1),
            read=_read_witness_key,
            lost="a new key needs a new data directory",
            log=log,
        )
        if vkey is None:
            await store.set_meta({"vkey": signer.vkey})
            log.info("created new witness", extra={"vkey": signer.vkey})
    except BaseException:
        await store.close()
        raise
    return store, signer


def create_witness_app(cfg: WitnessConfig) -> web.Application:
    """The witness's aiohttp application; the state opens on startup."""
    metrics = WitnessMetrics()

    def count_refusal(route: str, code: str) -> None:
        if route == "/add-checkpoint":
            metrics.refused.labels(code).inc()

    app = service_app(_render_error, cfg.max_request_bytes, metrics.requests, count_refusal)
    app[CONFIG_KEY] = cfg
    app[METRICS_KEY] = metrics
    app.cleanup_ctx.append(_witness_context)
    app.router.add_post("/add-checkpoint", handle_add_checkpoint)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", handle_get_checkpoint)
    return app


async def _witness_context(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG_KEY]
    metrics = app[METRICS_KEY]
    logs = cfg.log_verifiers()
    store, signer = await open_witness(cfg)
    try:
        for head in await store.heads():
            if head.origin in logs:
                metrics.tree_size.labels(head.origin).set(head.size)
    except BaseException:
        await store.close()
        raise
    by_hash = {hashlib.sha256(o.encode("utf-8")).hexdigest(): o for o in logs}
    app[STATE_KEY] = WitnessState(store, signer, logs, by_hash)
    if not logs:
        log.warning("no logs configured: every checkpoint will be refused (404)")
    for origin, keys in logs.items():
        log.info("witnessing log", extra={"origin": origin, "keys": [v.vkey for v in keys]})
    try:
        yield
    finally:
        await store.close()


# -- handlers ----------------------------------------------------------------------


def _consistency_problem(
    req: AddCheckpointRequest, cp: Checkpoint, old_root: bytes
) -> tuple[str, str] | None:
    """(reason, message) if the checkpoint does not extend ``(req.old_size, old_root)``."""
    if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
        return "empty_tree_root", "a checkpoint of size 0 must have the empty-tree root"
    if req.old_size == 0 and req.proof:
        return "proof_not_empty", "a request from old size 0 must have an empty proof"
    if req.old_size == cp.size and cp.root != old_root:
        return (
            "root_mismatch",
            f"the checkpoint has another root than the one cosigned for size {cp.size}",
        )
    try:
        merkle.check_consistency(req.old_size, cp.size, old_root, cp.root, req.proof)
    except VerificationError as exc:
        return "bad_proof", str(exc)
    return None


def _note_text(data: bytes) -> str:
    """The text of a signed note (what precedes its last empty line), without
    parsing the signature lines; the checks on those come with verification."""
    try:
        msg = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"checkpoint note is not valid UTF-8 at byte {exc.start}") from None
    split = msg.rfind("\n\n")
    if split < 0:
        raise FormatError("checkpoint note has no empty line before its signatures")
    return msg[: split + 1]


# Reasons that are conclusive evidence the log signed something it should not
# have; kept in preference to failed proofs (which may be the client's fault).
_CONCLUSIVE = frozenset({"empty_tree_root", "root_mismatch"})


async def handle_add_checkpoint(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG_KEY]
    state = request.app[STATE_KEY]
    metrics = request.app[METRICS_KEY]
    body = await read_body(request, cfg.request_timeout)
    try:
        req = parse_add_checkpoint(body)
        cp = parse_checkpoint(_note_text(req.checkpoint))
    except FormatError as exc:
        raise MalformedRequestError(str(exc)) from None
    verifiers = state.logs.get(cp.origin)
    if verifiers is None:
        raise NotFoundError(
            f"this witness does not witness {cp.origin[:200]!r}", code="unknown_log"
        )
    try:
        note, log_signatures = open_note(req.checkpoint, verifiers)
    except VerificationError as exc:
        raise BadSignatureError(str(exc)) from None
    except FormatError as exc:
        # The checkpoint is fine but its signature lines are not (e.g. base64
        # that is not canonical): no signature can be checked, so 403.
        raise BadSignatureError(f"unverifiable signatures: {exc}") from None
    if req.old_size > cp.size:
        raise RefusedError(
            f"old size {req.old_size} exceeds checkpoint size {cp.size}", code="old_too_large"
        )
    stored = await state.store.get_head(cp.origin)
    stored_size = stored.size if stored is not None else 0
    if req.old_size != stored_size:
        raise _conflict(stored_size)
    old_root = stored.root if stored is not None else merkle.EMPTY_ROOT
    problem = _consistency_problem(req, cp, old_root)
    if problem is not None:
        reason, message = problem
        await _keep_evidence(state, cfg, reason, message, cp, note.text, stored, body)
        raise InconsistentCheckpointError(message, code=reason)

    timestamp = max(1, int(time.time()))
    cosignature = sign_cosignature(state.signer, note.text, timestamp)
    served = format_note(Note(note.text, (*log_signatures, cosignature)))
    swapped = await state.store.compare_and_swap(
        cp.origin,
        req.old_size,
        cp.size,
        cp.root,
        served,
        old_root=stored.root if stored is not None else None,
    )
    if not swapped:
        # Another request moved the state since we read it.
        current = await state.store.get(cp.origin)
        raise _conflict(current[0] if current is not None else 0)
    metrics.cosignatures.labels(cp.origin).inc()
    metrics.tree_size.labels(cp.origin).set(cp.size)
    if cp.size != req.old_size:
        log.info("cosigned", extra={"origin": cp.origin, "old_size": req.old_size, "size": cp.size})
    return web.Response(
        body=cosignature.line().encode("utf-8"),
        headers={"Content-Type": TEXT_TYPE, "Cache-Control": "no-store"},
    )


async def _keep_evidence(
    state: WitnessState,
    cfg: WitnessConfig,
    reason: str,
    message: str,
    cp: Checkpoint,
    text: str,
    stored: WitnessHead | None,
    body: bytes,
) -> None:
    conclusive = reason in _CONCLUSIVE
    extra = {
        "origin": cp.origin,
        "reason": reason,
        "detail": message,
        "size": cp.size,
        "stored_size": stored.size if stored is not None else 0,
    }
    if conclusive:
        log.error("the log signed a checkpoint that contradicts its history", extra=extra)
    else:
        log.warning("refused a correctly signed checkpoint", extra=extra)
    if cfg.evidence_max > 0:
        await state.store.record_evidence(
            cp.origin,
            reason,
            text,
            stored,
            body,
            priority=1 if conclusive else 0,
            max_rows=cfg.evidence_max,
        )


async def handle_get_checkpoint(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    origin = state.by_hash.get(request.match_info["origin_hash"])
    if origin is None:
        raise NotFoundError("this witness does not witness that log", code="unknown_log")
    head = await state.store.get_head(origin)
    if head is None:
        raise NotFoundError("no checkpoint of that log cosigned yet")
    return web.Response(
        body=head.note,
        headers={"Content-Type": TEXT_TYPE, "Cache-Control": "no-cache"},
    )


async def handle_healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    problems = []
    try:
        await state.store.check()
    except LedgerError as exc:
        problems.append(f"storage: {exc}")
    return health_response(
        problems, name=state.signer.name, vkey=state.signer.vkey, logs=sorted(state.logs)
    )


async def handle_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    return metrics_response(metrics.registry)


# -- running -----------------------------------------------------------------------


async def run_witness(cfg: WitnessConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (in-flight requests
    finish, the database closes; see :mod:`sigledger.ledger.service.runner`)."""
    app = create_witness_app(cfg)

    def started(url: str) -> None:
        signer = app[STATE_KEY].signer
        log.info("listening", extra={"url": url, "vkey": signer.vkey, "key_name": signer.name})
        if announce is not None:
            announce(
                f"sigledger witness {signer.name} listening on {url}\n"
                f"verifier key: {signer.vkey}\n"
                f"data: {cfg.data_dir}"
            )

    host, port = cfg.host_port
    await run_app(app, host, port, started)
