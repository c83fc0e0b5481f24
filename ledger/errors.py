"""The sigledger exception hierarchy, split by fault domain.

Every error a user can meet derives from :class:`LedgerError`, whose
``diagnostics()`` returns a paragraph that says what failed and what to do.
The CLI catches only ``LedgerError``.

* :class:`FormatError` -- bytes from outside (a note, a checkpoint, an entry, a
  tile path, a request body) are not in the one canonical form we accept.
  Every parser of untrusted input raises this and nothing else.
* :class:`VerificationError` -- well-formed input whose signature or proof does
  not check out.
* :class:`LogMisbehaviorError` -- cryptographic evidence that a log broke its
  promises (two inconsistent signed checkpoints). Carries a self-contained
  report.
* :class:`NetworkError`, :class:`ConfigError` -- the environment, not the data.
* :class:`RequestError` -- a service did not do what a request asked. Each
  subclass has a stable machine ``code`` (the ``error`` field of the JSON
  error body) and JSON ``details``; the services raise them, one table maps
  them to HTTP statuses (:mod:`sigledger.ledger.service.http`), and a client
  turns the ``error`` code of an answer back into the same class
  (:func:`request_error_class`). Two branches: :class:`RefusedError` (the
  request itself is refused: sending it again unchanged gets the same answer)
  and :class:`UnavailableError` (try again later, after ``retry_after``
  seconds; also a :class:`NetworkError` to a client).

Impossible internal states are ``AssertionError("bad math in ...")``, never one
of these.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar


class LedgerError(Exception):
    """Base class for every error sigledger reports to a user."""

    hint: str = ""

    def diagnostics(self) -> str:
        text = str(self) or self.__class__.__name__
        if self.hint:
            text += f"\n\n{self.hint}"
        return text


class FormatError(LedgerError, ValueError):
    """Untrusted bytes are malformed or not in canonical form."""

    hint = "The input is not in the exact format sigledger accepts; nothing was changed."


class VerificationError(LedgerError):
    """A signature, proof or policy check failed."""

    hint = "Do not trust or install this artifact until the failure is understood."


class LogMisbehaviorError(VerificationError):
    """Signed evidence that a log contradicted itself (e.g. a split view).

    ``evidence`` is a JSON-serialisable mapping holding everything a third
    party needs to re-check the claim without trusting us (both signed notes
    and the proof hashes).
    """

    hint = (
        "The log signed two views of its history that cannot both be true. "
        "Keep the evidence below and report it to the log operator and to your "
        "security contacts."
    )

    def __init__(self, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.evidence = evidence


class NetworkError(LedgerError):
    """The log (or another service) could not be reached or answered badly."""

    hint = "Check the URL and your network connection, then try again."


class ConfigError(LedgerError):
    """A configuration file, key file or command-line usage problem."""

    hint = "Fix the configuration named above and run the command again."


# -- refusals by a service -------------------------------------------------------------


class RequestError(LedgerError):
    """A request a service did not carry out.

    ``code`` is the stable machine key; ``details`` holds extra JSON fields of
    the error body (for a client, what the service sent besides ``error`` and
    ``message``); ``retry_after`` is the number of seconds to wait before
    trying again, when that helps.
    """

    code: str = "bad_request"
    retry_after: int | None = None
    _by_code: ClassVar[dict[str, type[RequestError]]] = {}

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = dict(details or {})
        if retry_after is not None:
            self.retry_after = retry_after
        if code is not None:
            # A more specific code than the class's (a witness's unknown_log is a
            # NotFoundError), or one a client does not know, kept as sent.
            self.code = code

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any], code: str) -> RequestError:
        """The error as a client rebuilds it from an error body's fields."""
        return cls(message, details, code=code)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            RequestError._by_code.setdefault(cls.code, cls)


RequestError._by_code[RequestError.code] = RequestError


def request_error_class(code: str) -> type[RequestError] | None:
    """The error class whose ``code`` is ``code``, or None for a code we do not know."""
    return RequestError._by_code.get(code)


class RefusedError(RequestError):
    """The service refused the request itself; the same request gets the same answer."""

    code = "refused"


class MalformedRequestError(RefusedError):
    """A request body that does not parse (see :mod:`sigledger.ledger.wire`)."""

    code = "malformed"
    hint = "The statement is malformed; check the file name, project and version."


class BadQueryError(RefusedError):
    """Query parameters (or a lookup body) that do not parse or ask the impossible."""

    code = "bad_query"


class TooManyResultsError(RefusedError):
    code = "too_many_results"
    hint = "Ask for fewer digests per request."


class TooLargeError(RefusedError):
    """The request body is larger than the service accepts."""

    code = "too_large"
    hint = "Send fewer files per request."


class BadSignatureError(RefusedError):
    """A statement's signature does not verify; ``details["statements"]``: their indexes."""

    code = "bad_signature"
    hint = "The signature did not verify; check that --key is the key you meant."


class SignerNotAllowedError(RefusedError):
    """The log accepts statements only from listed submitters."""

    code = "signer_not_allowed"
    hint = "Ask the log operator to add your verifier key to the log's submitters."


class NotFoundError(RefusedError):
    code = "not_found"


class BindingConflictError(RefusedError):
    """A signer already logged a different hash for the same file.

    ``existing`` holds the (index, entry bytes) of the conflicting entries;
    in the error body they are ``"existing": [{"log_index", "entry"}]``.
    """

    code = "binding_conflict"
    hint = (
        "This key already logged a different hash for this file. A release file "
        "must never change: publish a new version instead."
    )

    def __init__(
        self,
        message: str,
        existing: list[tuple[int, bytes]] | None = None,
        details: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        self.existing = list(existing or [])
        if details is None:
            details = {
                "existing": [
                    {"log_index": i, "entry": base64.b64encode(d).decode()}
                    for i, d in self.existing
                ]
            }
        super().__init__(message, details, **kw)

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any], code: str) -> RequestError:
        return cls(message, _existing_from(details.get("existing")), details, code=code)


def _existing_from(value: object) -> list[tuple[int, bytes]]:
    """The conflicting entries named in an error body; what does not parse is left out
    (they are shown to a person, who can look them up; nothing trusts them)."""
    out: list[tuple[int, bytes]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and type(item.get("log_index")) is int:
            try:
                out.append(
                    (item["log_index"], base64.b64decode(item.get("entry", ""), validate=True))
                )
            except (binascii.Error, ValueError, TypeError):
                continue
    return out


class CheckpointConflictError(RefusedError):
    """The request's old size is not the size a witness last cosigned for the log
    (``size``): the client must resend from that size (tlog-witness)."""

    code = "conflict"

    def __init__(self, message: str, size: int, **kw: Any) -> None:
        self.size = size
        super().__init__(message, {"size": size}, **kw)

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any], code: str) -> RequestError:
        size = details.get("size")
        return cls(message, size if type(size) is int else -1, code=code)


class InconsistentCheckpointError(RefusedError):
    """A correctly signed checkpoint that does not extend the one cosigned before.

    The instance ``code`` says how: ``empty_tree_root``, ``proof_not_empty``,
    ``root_mismatch`` or ``bad_proof``.
    """

    code = "inconsistent"


class UnavailableError(RequestError, NetworkError):
    """The service cannot do it now; try again after ``retry_after`` seconds."""

    code = "unavailable"
    retry_after = 1
    hint = "The service is busy or restarting; try again in a moment."


class OverloadedError(UnavailableError):
    code = "overloaded"


class ShuttingDownError(UnavailableError):
    code = "shutting_down"
    retry_after = 5


class NotWitnessedError(UnavailableError):
    """Integrated, but the witnesses did not cosign the checkpoint in time."""

    code = "not_witnessed"
    retry_after = 5
    hint = (
        "Nothing is wrong with the files: the log keeps them and will publish them "
        "once enough witnesses cosign its checkpoint. Run the same command again "
        "later to fetch the receipts (submitting again is safe)."
    )


class WorkersRestartingError(UnavailableError):
    """No verification worker could take the request (the pool is being rebuilt)."""

    code = "workers_restarting"
    retry_after = 2


class RateLimitedError(UnavailableError):
    """A rate limit; ``details["limit"]`` names it."""

    code = "rate_limited"


class ServiceFaultError(RequestError, NetworkError):
    """The service found its own state broken (a bug or a damaged database)."""

    code = "internal"


class StorageInconsistentError(ServiceFaultError):
    code = "storage_inconsistent"
