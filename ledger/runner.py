"""Service plumbing shared by the log and the witness: running until SIGINT/SIGTERM,
mapping aiohttp's HTTP errors, and the access log.

Shutdown order: stop listening; let in-flight requests finish (up to 10 s);
run the app's cleanup (which, for the log, integrates or refuses whatever is
still queued and closes the database).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from ledger.errors import ConfigError

log = logging.getLogger("sigledger.runner")


async def run_app(
    app: web.Application, host: str, port: int, on_started: Callable[[str], None]
) -> None:
    """Serve ``app`` on host:port (port 0: any free port); ``on_started(url)`` once bound."""
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
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


access_log = logging.getLogger("sigledger.access")

_HTTP_KEYS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


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
