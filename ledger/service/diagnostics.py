"""Structured logging: one JSON object per line on stdout, or plain text.

Fields: ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``msg``, plus whatever a
call passes in ``extra=``. Secrets (keys) are never passed to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from sigledger.ledger.service.runner import client_fault

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line += "  " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class ClientFaultFilter(logging.Filter):
    """aiohttp logs requests its HTTP parser refuses (bad framing, bad chunking,
    unsupported encodings), and undecodable bodies a handler did not read, as
    errors with a traceback, although they are the client's fault (answered 400,
    or the connection closed). Log them as one info line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = client_fault(record.exc_info[1] if record.exc_info else None)
        if exc is not None:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "request refused by the HTTP parser", None
            record.__dict__["detail"] = " ".join(str(exc.message).split())[:300]
            record.exc_info = record.exc_text = None
        return True


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stdout.isatty() else "json"
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our per-request metrics; keep it at warning.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientFaultFilter) for f in server_log.filters):
        server_log.addFilter(ClientFaultFilter())
