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

Impossible internal states are ``AssertionError("bad math in ...")``, never one
of these.
"""

from __future__ import annotations

from typing import Any


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
