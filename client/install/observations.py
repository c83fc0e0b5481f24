"""Submitting observations, and the alarm when the log refuses one.

:func:`add_observations` sends signed observations to a log's ``/add`` (one
request; the caller batches). The log binds one hash per (observer key, file)
forever and refuses a whole request that breaks the rule (409
``binding_conflict``, naming the first entries). The refused observations are
taken out and returned as :class:`Alarm` -- the evidence is both statements:
the logged entry (its bytes, as the log gave them, which any reader can decode
and check) and the refused observation (signed bytes, canonical encoding) --
and the rest is sent again.

An alarm means the index this observer reads changed a published file, or
served it differently to this observer than before.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sigledger.client.remote import LogClient
from sigledger.ledger.entry import SignedObservation, decode_entry, encode_signed
from sigledger.ledger.errors import BindingConflictError, FormatError
from sigledger.ledger.wire import Receipt

__all__ = ["Alarm", "add_observations"]


@dataclass(frozen=True, eq=False)
class Alarm:
    """This observer already logged another hash for a file it now sees served."""

    refused: SignedObservation  # the observation the log refused
    logged: tuple[tuple[int, bytes], ...]  # (log index, entry bytes) of the first one

    @property
    def filename(self) -> str:
        return self.refused.statement.filename

    @property
    def project(self) -> str:
        return self.refused.statement.project

    @property
    def message(self) -> str:
        st = self.refused.statement
        first = ", ".join(f"#{i}" for i, _ in self.logged) or "(not named)"
        hashes = []
        for _, data in self.logged:
            try:
                hashes.append("sha256:" + decode_entry(data).statement.sha256.hex())
            except FormatError:
                continue
        held = " and ".join(hashes) or "another hash"
        return (
            f"ALARM: {self.refused.index_url} served {st.filename} as sha256:{st.sha256.hex()}, "
            f"but observer {self.refused.signer_vkey()} logged {held} for it (entry {first}): "
            "the index changed a published file, or serves it differently"
        )

    def to_json(self) -> dict[str, Any]:
        st = self.refused.statement
        logged = []
        for index, data in self.logged:
            doc: dict[str, Any] = {"log_index": index, "entry": base64.b64encode(data).decode()}
            try:
                entry = decode_entry(data)
                doc.update(
                    kind=entry.signed.kind,
                    sha256=entry.statement.sha256.hex(),
                    size=entry.statement.size,
                    signer=entry.signed.signer_vkey(),
                    integrated_time_ms=entry.time_ms,
                    index_url=getattr(entry.signed, "index_url", None),
                    observed_ms=getattr(entry.signed, "observed_ms", None),
                )
            except FormatError as exc:
                doc["error"] = str(exc)
            logged.append(doc)
        return {
            "project": st.project,
            "version": st.version,
            "filename": st.filename,
            "index_url": self.refused.index_url,
            "message": self.message,
            "evidence": {
                "logged": logged,
                "refused": {
                    "kind": "observation",
                    "sha256": st.sha256.hex(),
                    "size": st.size,
                    "observed_ms": self.refused.observed_ms,
                    "signer": self.refused.signer_vkey(),
                    "signed": base64.b64encode(encode_signed(self.refused)).decode(),
                },
            },
        }


async def add_observations(
    client: LogClient, observations: Sequence[SignedObservation]
) -> tuple[list[tuple[SignedObservation, Receipt]], list[Alarm]]:
    """Submit ``observations``; the accepted ones with their (unverified) receipts,
    in order, and an alarm per observation the binding rule refused.

    Raises BindingConflictError when the log names no entry that explains the
    refusal, and whatever :meth:`LogClient.add` raises otherwise.
    """
    pending = list(observations)
    alarms: list[Alarm] = []
    while pending:
        try:
            receipts = await client.add(pending)
        except BindingConflictError as exc:
            kept, refused = _split(pending, exc)
            if not refused:
                raise
            alarms.extend(refused)
            pending = kept
            continue
        return list(zip(pending, receipts, strict=True)), alarms
    return [], alarms


def _split(
    batch: list[SignedObservation], exc: BindingConflictError
) -> tuple[list[SignedObservation], list[Alarm]]:
    existing: list[tuple[int, bytes, str, str, bytes]] = []
    for index, data in exc.existing:
        try:
            entry = decode_entry(data)
        except FormatError:
            continue
        st = entry.statement
        existing.append((index, data, entry.signed.signer_vkey(), st.identity.key, st.sha256))
    kept: list[SignedObservation] = []
    alarms: list[Alarm] = []
    for s in batch:
        vkey, key, digest = s.signer_vkey(), s.statement.identity.key, s.statement.sha256
        hits = tuple(
            (i, d) for i, d, who, k, h in existing if who == vkey and k == key and h != digest
        )
        if hits:
            alarms.append(Alarm(s, hits))
        else:
            kept.append(s)
    return kept, alarms
