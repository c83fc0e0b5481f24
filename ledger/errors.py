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
    """Base class for every error sigledger reports to a user.

    A subclass declares what it adds in its class line: ``hint=`` (the advice
    :meth:`diagnostics` appends) and, below :class:`RequestError`, ``code=`` and
    ``retry_after=``; what it leaves out it inherits.
    """

    hint: str = ""

    def __init_subclass__(cls, *, hint: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hint is not None:
            cls.hint = hint

    def diagnostics(self) -> str:
        text = str(self) or self.__class__.__name__
        if self.hint:
            text += f"\n\n{self.hint}"
        return text


class FormatError(
    LedgerError,
    ValueError,
    hint="The input is not in the exact format sigledger accepts; nothing was changed.",
):
    """Untrusted bytes are malformed or not in canonical form."""


class VerificationError(
    LedgerError, hint="Do not trust or install this artifact until the failure is understood."
):
    """A signature, proof or policy check failed."""


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


class NetworkError(LedgerError, hint="Check the URL and your network connection, then try again."):
    """The log (or another service) could not be reached or answered badly."""


class ConfigError(LedgerError, hint="Fix the configuration named above and run the command again."):
    """A configuration file, key file or command-line usage problem."""


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

    def __init_subclass__(
        cls, *, code: str | None = None, retry_after: int | None = None, **kwargs: Any
    ) -> None:
        """``code=`` names the subclass's own code (the first class to name a code
        owns it for :func:`request_error_class`); ``retry_after=`` its wait."""
        super().__init_subclass__(**kwargs)
        if retry_after is not None:
            cls.retry_after = retry_after
        if code is not None:
            cls.code = code
            RequestError._by_code.setdefault(code, cls)


RequestError._by_code[RequestError.code] = RequestError


def request_error_class(code: str) -> type[RequestError] | None:
    """The error class whose ``code`` is ``code``, or None for a code we do not know."""
    return RequestError._by_code.get(code)


class RefusedError(RequestError, code="refused"):
    """The service refused the request itself; the same request gets the same answer."""


class MalformedRequestError(
    RefusedError,
    code="malformed",
    hint="The statement is malformed; check the file name, project and version.",
):
    """A request body that does not parse (see :mod:`sigledger.ledger.wire`)."""


class BadQueryError(RefusedError, code="bad_query"):
    """Query parameters (or a lookup body) that do not parse or ask the impossible."""


class TooManyResultsError(
    RefusedError, code="too_many_results", hint="Ask for fewer digests per request."
):
    """A lookup asked for more digests than one request may."""


class TooLargeError(RefusedError, code="too_large", hint="Send fewer files per request."):
    """The request body is larger than the service accepts."""


class BadSignatureError(
    RefusedError,
    code="bad_signature",
    hint="The signature did not verify; check that --key is the key you meant.",
):
    """A statement's signature does not verify; ``details["statements"]``: their indexes."""


class SignerNotAllowedError(
    RefusedError,
    code="signer_not_allowed",
    hint="Ask the log operator to add your verifier key to the log's submitters.",
):
    """The log accepts statements only from listed submitters."""


class NotFoundError(RefusedError, code="not_found"):
    """What the request names (a tile, an entry, a log) does not exist."""


class BindingConflictError(
    RefusedError,
    code="binding_conflict",
    hint=(
        "This key already logged a different hash for this file. A release file "
        "must never change: publish a new version instead."
    ),
):
    """A signer already logged a different hash for the same file.

    ``existing`` holds the (index, entry bytes) of the conflicting entries;
    in the error body they are ``"existing": [{"log_index", "entry"}]``.
    """

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


class CheckpointConflictError(RefusedError, code="conflict"):
    """The request's old size is not the size a witness last cosigned for the log
    (``size``): the client must resend from that size (tlog-witness)."""

    def __init__(self, message: str, size: int, **kw: Any) -> None:
        self.size = size
        super().__init__(message, {"size": size}, **kw)

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any], code: str) -> RequestError:
        size = details.get("size")
        return cls(message, size if type(size) is int else -1, code=code)


class InconsistentCheckpointError(RefusedError, code="inconsistent"):
    """A correctly signed checkpoint that does not extend the one cosigned before.

    The instance ``code`` says how: ``empty_tree_root``, ``proof_not_empty``,
    ``root_mismatch`` or ``bad_proof``.
    """


class UnavailableError(
    RequestError,
    NetworkError,
    code="unavailable",
    retry_after=1,
    hint="The service is busy or restarting; try again in a moment.",
):
    """The service cannot do it now; try again after ``retry_after`` seconds."""


class OverloadedError(UnavailableError, code="overloaded"):
    """The service cannot take on the request now (a full queue, a storage failure)."""


class NoLeaderError(UnavailableError, code="no_leader"):
    """A follower of a highly available log knows no leader to forward /add to (a
    takeover is under way); another server, or this one shortly, takes it."""


class ShuttingDownError(UnavailableError, code="shutting_down", retry_after=5):
    """The service is stopping; another instance (or this one, restarted) answers."""


class NotWitnessedError(
    UnavailableError,
    code="not_witnessed",
    retry_after=5,
    hint=(
        "Nothing is wrong with the files: the log keeps them and will publish them "
        "once enough witnesses cosign its checkpoint. Run the same command again "
        "later to fetch the receipts (submitting again is safe)."
    ),
):
    """Integrated, but the witnesses did not cosign the checkpoint in time."""


class WorkersRestartingError(UnavailableError, code="workers_restarting", retry_after=2):
    """No verification worker could take the request (the pool is being rebuilt)."""


class RateLimitedError(UnavailableError, code="rate_limited"):
    """A rate limit; ``details["limit"]`` names it."""


class ServiceFaultError(RequestError, NetworkError, code="internal"):
    """The service found its own state broken (a bug or a damaged database)."""


class StorageInconsistentError(ServiceFaultError, code="storage_inconsistent"):
    """The log's stored data contradicts itself (rows or tiles missing)."""
