"""HTTP plumbing shared by the services: the one mapping from domain errors to
answers.

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

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
