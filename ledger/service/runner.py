"""Service plumbing shared by the log and the witness: the event loop, running until
SIGINT/SIGTERM, reading request bodies, mapping aiohttp's HTTP errors, and the access log.

Services run on uvloop where it is installed (a dependency everywhere but Windows):
its C event loop and transports about halve aiohttp's cost per request, which is
most of what a lookup or a tile costs. Without it they run on asyncio's own loop.

Request bodies are the client's responsibility: a body that cannot be decoded
(invalid ``Content-Encoding: gzip``/``deflate`` data, a broken chunked
encoding) or that ends before its announced length is answered 400 by
:func:`read_body`, never 500.

Shutdown order: stop listening; let in-flight requests finish (up to 10 s);
run the app's cleanup (which, for the log, integrates or refuses whatever is
still queued and closes the database).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from sigledger.ledger.errors import ConfigError

log = logging.getLogger("sigledger.runner")

T = TypeVar("T")


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """Run a service's main coroutine to completion on the fastest loop available."""
    try:
        import uvloop  # noqa: PLC0415 (absent on Windows)
    except ImportError:  # pragma: no cover (uvloop is installed where it exists)
        return asyncio.run(main)
    return uvloop.run(main)


async def run_app(
    app: web.Application,
    host: str,
    port: int,
    on_started: Callable[[str], None],
    on_reload: Callable[[], object] | None = None,
) -> None:
    """Serve ``app`` on host:port (port 0: any free port); ``on_started(url)`` once bound.

    ``on_reload`` runs on SIGHUP (re-reading files such as an allowlist).
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sockets = list(getattr(site._server, "sockets", None) or [])
    bound_port = int(sockets[0].getsockname()[1]) if sockets else port
    shown_host = f"[{host}]" if ":" in host else host
    on_started(f"http://{shown_host}:{bound_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


_CLOSE_AFTER = "sigledger.close_after_response"


def client_fault(exc: BaseException | None) -> HttpProcessingError | None:
    """The HTTP parsing error behind ``exc`` when the client caused it (a 4xx), else None.

    aiohttp raises body errors as ``RequestPayloadError`` caused by the parser's
    ``HttpProcessingError``; framing errors are the latter itself.
    """
    if exc is not None and not isinstance(exc, HttpProcessingError):
        exc = exc.__cause__
    if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
        return exc
    return None


async def read_body(request: web.Request, seconds: float) -> bytes:
    """The whole request body; HTTP 400 when it cannot be read as announced, 408
    when it does not arrive within ``seconds`` (a stalled or slow client).

    aiohttp raises 413 itself beyond ``client_max_size``; that passes through.
    After a 400 or 408 the connection is closed once the answer is sent: the
    rest of a broken body must not be read as the next request.
    """
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except (RequestPayloadError, HttpProcessingError) as exc:
        cause = client_fault(exc)
        detail = " ".join(str(cause.message if cause is not None else exc).split())
        _abandon_body(request)
        raise web.HTTPBadRequest(
            reason="Undecodable Body", text=f"the request body cannot be decoded: {detail}"
        ) from None
    except (ConnectionError, asyncio.IncompleteReadError):
        # The client stopped sending (half-closed or reset) before the body ended.
        _abandon_body(request)
        raise web.HTTPBadRequest(
            reason="Truncated Body", text="the request body ended before its announced length"
        ) from None
    except TimeoutError:
        _abandon_body(request)
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {seconds:g} seconds"
        ) from None


def _abandon_body(request: web.Request) -> None:
    # Mark the body as ended so aiohttp does not try to drain (and re-raise) it,
    # and have the error answer close the connection.
    request.content.feed_eof()
    request[_CLOSE_AFTER] = True


def finish_error(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Close the connection after an error answer to a body that was abandoned."""
    if request.get(_CLOSE_AFTER):
        resp.force_close()
    return resp


access_log = logging.getLogger("sigledger.access")

_HTTP_KEYS = {
    400: "malformed",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
}


def describe_http_error(exc: web.HTTPException, max_request_bytes: int) -> tuple[str, str]:
    """A stable error key and a message for one of aiohttp's own HTTP errors."""
    key = _HTTP_KEYS.get(exc.status, "http_error")
    if exc.status == 413:
        return key, f"request body larger than {max_request_bytes} bytes"
    return key, exc.text or exc.reason or ""


def log_request(
    request: web.Request, status: int, started: float, error: str = "", detail: str = ""
) -> None:
    """Refusals at info level; every other request at debug level."""
    if not error and not access_log.isEnabledFor(logging.DEBUG):
        return
    extra: dict[str, object] = {
        "method": request.method,
        "path": request.path[:200],
        "status": status,
        "remote": request.remote,
        "ms": round(1000 * (time.monotonic() - started), 2),
    }
    if error:
        extra["error"] = error
        if detail:
            extra["detail"] = detail[:500]
        access_log.info("request refused", extra=extra)
    else:
        access_log.debug("request", extra=extra)
