"""HTTP plumbing shared by the services: the one mapping from domain errors to
answers, the request middleware (errors, access log, request metrics), and the
``/metrics`` and ``/healthz`` answers.

Services raise :class:`~sigledger.ledger.errors.RequestError` subclasses and
never name an HTTP status; :data:`STATUS` is the only table from error class
to status (the nearest class in the error's MRO wins):

====  =====================================================================
400   :class:`~sigledger.ledger.errors.RefusedError` (malformed, bad_query, ...)
403   bad_signature, signer_not_allowed
404   not_found (and codes kept from a subclass instance, e.g. unknown_log)
409   binding_conflict, conflict
413   too_large
422   inconsistent (a checkpoint that does not extend the cosigned one)
429   rate_limited
500   internal, storage_inconsistent
503   every other :class:`~sigledger.ledger.errors.UnavailableError`
      (overloaded, not_witnessed, shutting_down, workers_restarting)
====  =====================================================================

An :class:`~sigledger.ledger.errors.UnavailableError` answer carries
``Retry-After: <seconds>``. The log answers errors as JSON
(:func:`json_error`): ``{"error": <code>, "message": <text>, **details}``;
the witness as one line of text (:func:`text_error`), as tlog-witness expects.

:func:`service_middleware` turns a handler's domain error, or one of aiohttp's
own HTTP errors (unknown route 404, 405, 408, 413), into that answer, closes
the connection after an abandoned body, logs refusals
(:func:`~sigledger.ledger.service.runner.log_request`) and counts every
request by route and status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from sigledger.ledger.errors import (
    BadSignatureError,
    BindingConflictError,
    CheckpointConflictError,
    InconsistentCheckpointError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    RequestError,
    ServiceFaultError,
    SignerNotAllowedError,
    TooLargeError,
    UnavailableError,
)
from sigledger.ledger.service.runner import describe_http_error, finish_error, log_request

STATUS: Mapping[type[RequestError], int] = {
    RequestError: 400,
    RefusedError: 400,
    BadSignatureError: 403,
    SignerNotAllowedError: 403,
    NotFoundError: 404,
    BindingConflictError: 409,
    CheckpointConflictError: 409,
    TooLargeError: 413,
    InconsistentCheckpointError: 422,
    RateLimitedError: 429,
    ServiceFaultError: 500,
    UnavailableError: 503,
}

TEXT_TYPE = "text/plain; charset=utf-8"


def http_status(exc: RequestError) -> int:
    """The HTTP status that answers ``exc``."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    raise AssertionError(f"bad math in http_status: no status for {type(exc).__name__}")


def error_headers(exc: RequestError | None) -> dict[str, str]:
    if exc is not None and exc.retry_after is not None and isinstance(exc, UnavailableError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


ErrorRenderer = Callable[[int, str, str, RequestError | None], web.Response]
"""How a service spells an error answer: ``(status, code, message, error)``,
where ``error`` is None for aiohttp's own HTTP errors (404 route, 413, ...)."""


def json_error(status: int, code: str, message: str, exc: RequestError | None) -> web.Response:
    """``{"error": code, "message": message, **details}`` (the log's error body)."""
    details = exc.details if exc is not None else {}
    return web.json_response(
        {"error": code, "message": message, **details}, status=status, headers=error_headers(exc)
    )


def text_error(status: int, code: str, message: str, exc: RequestError | None) -> web.Response:
    """``<code>: <message>\\n`` as ``text/plain`` (the witness's error body)."""
    headers = {"Content-Type": TEXT_TYPE, **error_headers(exc)}
    return web.Response(status=status, body=f"{code}: {message}\n".encode(), headers=headers)


def error_response(exc: RequestError, render: ErrorRenderer = json_error) -> web.Response:
    """The answer to a request that failed with ``exc``."""
    return render(http_status(exc), exc.code, str(exc), exc)


def route_name(request: web.Request) -> str:
    """The route's pattern (``/tile/{path}``), so metrics labels stay few."""
    route = request.match_info.route.resource
    return route.canonical if route is not None else "unmatched"


def service_middleware(
    render: ErrorRenderer,
    max_request_bytes: int,
    requests: Counter,
    on_error: Callable[[str, str], None] | None = None,
) -> Middleware:
    """The middleware of a service that spells errors with ``render``.

    ``requests`` is a Counter labelled (route, code); ``on_error(route, code)``
    runs for every error answer (a service's own error metrics).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_name(request)
        started = time.monotonic()
        code = message = ""
        try:
            resp: web.StreamResponse = await handler(request)
        except RequestError as exc:
            code, message = exc.code, str(exc)
            resp = error_response(exc, render)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code, message = describe_http_error(exc, max_request_bytes)
            resp = render(exc.status, code, message, None)
        if resp.status >= 400:
            finish_error(request, resp)
            code = code or str(resp.status)
            if on_error is not None:
                on_error(route, code)
        log_request(request, resp.status, started, code, message)
        requests.labels(route, str(resp.status)).inc()
        return resp

    return middleware


def service_app(
    render: ErrorRenderer,
    max_request_bytes: int,
    requests: Counter,
    on_error: Callable[[str, str], None] | None = None,
) -> web.Application:
    """An application whose bodies are limited to ``max_request_bytes`` (413
    beyond) and whose requests pass :func:`service_middleware`."""
    middleware = service_middleware(render, max_request_bytes, requests, on_error)
    return web.Application(client_max_size=max_request_bytes, middlewares=[middleware])


def metrics_response(registry: CollectorRegistry) -> web.Response:
    """``GET /metrics``: the registry in the Prometheus text format."""
    resp = web.Response(body=generate_latest(registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    with suppress(Exception):
        resp.charset = "utf-8"
    return resp


def health_response(problems: list[str], **fields: Any) -> web.Response:
    """``GET /healthz``: 200 ``{"status": "ok", ...}`` or 503 ``{"status": "fail", ...}``."""
    body = {"status": "fail" if problems else "ok", "problems": problems, **fields}
    return web.json_response(
        body, status=503 if problems else 200, headers={"Cache-Control": "no-store"}
    )
