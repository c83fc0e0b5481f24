"""Verdicts on pins: is each pinned hash logged, and signed by whom the policy requires?

For every artifact (a file, a ``sha256:`` digest, a requirements.txt or
pylock.toml pin) :func:`check_artifacts` asks the log, through
:class:`~sigledger.client.trust.VerifiedLog` (so every answer is proven):

1. which entries attest this exact SHA-256 (lookup by hash);
2. which of those are for the pinned project (and version, file name and
   size, where the pin says);
3. whether the distinct signers and observers of those entries satisfy the
   policy's rule for the project (n of m trusted signers, k of n trusted
   observers, either or both: see :mod:`~sigledger.client.install.policy`);
4. whether any signer or observer the rule trusts logged a *different* hash for
   the same file -- an alarm: someone is being shown another file; the outcome
   holds both entries (``entries`` and ``conflicts``) as evidence.
5. whether anyone else (a key the rule does not trust) logged a different
   hash for the same file: the file still verifies, but each such entry is a
   warning (:attr:`Outcome.warnings`, ``WARN`` lines, ``"warnings"`` in JSON).

A file that is not in the log but whose filename is (someone changed the bytes)
is reported as ``not in the log: the log holds sha256:X for this file (entry
#N), you have sha256:Y``; :func:`check_artifacts` looks such files up by name.

The outcome of each artifact is an :class:`Outcome` with a one-line reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.policy import Policy
from sigledger.client.publish.submit import hash_file
from sigledger.client.receipts import check_witness_quorum, verify_receipt
from sigledger.client.trust import VerifiedEntry, VerifiedLog
from sigledger.ledger.entry import (
    SignedObservation,
    Statement,
    file_identity,
    parse_release_filename,
)
from sigledger.ledger.errors import FormatError, VerificationError

RESULT_FORMAT_VERSION = 1


def pin_from_file(path: Path) -> Pin:
    """The pin of a file on disk: its digest and size, and its project and version
    when its name is a wheel or sdist name (otherwise it matches by digest only)."""
    digest, size = hash_file(path)
    project: str | None
    version: str | None
    try:
        project, version = parse_release_filename(path.name)
    except FormatError:
        project = version = None
    filename = path.name if project else None
    return Pin(project, version, digest, filename, size, str(path), name=str(path))


def matches(pin: Pin, e: VerifiedEntry) -> bool:
    """The entry attests this pin: same bytes, and the same file by its identity
    (any spelling of the filename, any spelling of an equal version)."""
    st = e.entry.statement
    return (
        st.sha256 == pin.sha256
        and (pin.project is None or st.project == pin.project)
        and (pin.version is None or _same_version(st.version, pin.version))
        and (pin.filename is None or _same_file(st, pin.filename))
        and (pin.size is None or st.size == pin.size)
    )


@dataclass
class Outcome:
    artifact: Pin
    ok: bool
    reason: str
    alarm: bool = False
    project: str | None = None
    entries: list[VerifiedEntry] = field(default_factory=list)
    trusted: tuple[str, ...] = ()
    conflicts: list[VerifiedEntry] = field(default_factory=list)
    warnings: list[VerifiedEntry] = field(default_factory=list)

    def warning_lines(self) -> list[str]:
        """One sentence per warning entry, naming its index."""
        project = self.project or self.artifact.project
        return [
            f"entry #{e.index}: {'observer ' if kind(e) == 'observation' else ''}"
            f"{e.entry.signed.signer_vkey()} "
            f"(not trusted for {project}) "
            f"logged a different hash sha256:{e.entry.statement.sha256.hex()} for "
            f"{e.entry.statement.filename}"
            for e in self.warnings
        ]

    def to_json(self) -> dict[str, Any]:
        a = self.artifact
        return {
            "artifact": a.name,
            "sha256": a.sha256.hex(),
            "project": self.project or a.project,
            "version": a.version,
            "filename": a.filename,
            "ok": self.ok,
            "alarm": self.alarm,
            "reason": self.reason,
            "trusted_signers": list(self.trusted),
            "entries": [entry_json(e) for e in self.entries],
            "conflicting_entries": [entry_json(e) for e in self.conflicts],
            "warnings": [
                {**entry_json(e), "message": line}
                for e, line in zip(self.warnings, self.warning_lines(), strict=True)
            ],
        }


FileKey = str  # a file identity key (sigledger.ledger.entry.file_identity)


def _same_version(logged: str, wanted: str) -> bool:
    try:
        return Version(logged) == Version(wanted)
    except InvalidVersion:
        return logged == wanted


def _same_file(st: Statement, filename: str) -> bool:
    """``filename`` names the file ``st`` is about, in any spelling."""
    try:
        return st.identity == file_identity(filename)
    except FormatError:
        return st.filename == filename


class _Verdicts:
    """Signature checks of logged entries, each done once per run."""

    def __init__(self) -> None:
        self._ok: dict[int, bool] = {}

    def __call__(self, e: VerifiedEntry) -> bool:
        if e.index not in self._ok:
            self._ok[e.index] = e.entry.signed.verify()
        return self._ok[e.index]


def evaluate(
    policy: Policy,
    a: Pin,
    found: Sequence[VerifiedEntry],
    same_file: Mapping[FileKey, Sequence[VerifiedEntry]],
    signature_ok: Callable[[VerifiedEntry], bool] | None = None,
) -> Outcome:
    """Decide one artifact from verified entries: ``found`` attest its digest,
    ``same_file`` holds every known entry per file (for the conflict alarm)."""
    verified = signature_ok or _Verdicts()
    bad = [e for e in found if not verified(e)]
    if bad:
        return Outcome(
            a,
            False,
            f"the log holds entry #{bad[0].index} whose publisher signature does not verify",
            alarm=True,
            entries=bad,
        )
    matching = [e for e in found if matches(a, e)]
    if not matching:
        if found:
            other = found[0].entry.statement
            return Outcome(
                a,
                False,
                f"not logged for this release; the log has this hash "
                f"only as {other.project} {other.version} {other.filename}",
            )
        held = _held_for_file(a, same_file)
        if held:
            # One hash logged by several signers is named once, with all its entries.
            by_hash: dict[str, list[int]] = {}
            for e in held:
                by_hash.setdefault(e.entry.statement.sha256.hex(), []).append(e.index)
            digests = ", ".join(
                f"sha256:{h} (entry #{ids[0]})"
                if len(ids) == 1
                else f"sha256:{h} (entries {', '.join(f'#{i}' for i in ids)})"
                for h, ids in by_hash.items()
            )
            return Outcome(
                a,
                False,
                f"not in the log: the log holds {digests} for this file, "
                f"you have sha256:{a.sha256.hex()}",
                entries=held,
            )
        return Outcome(a, False, "not in the log")
    by_project: dict[str, list[VerifiedEntry]] = {}
    for e in matching:
        by_project.setdefault(e.entry.statement.project, []).append(e)
    outcome: Outcome | None = None
    for project, entries in sorted(by_project.items()):
        signers, observers = keys_by_kind(entries)
        decision = policy.evaluate(project, signers, observers)
        candidate = Outcome(
            a,
            decision.ok,
            decision.reason,
            project=project,
            entries=entries,
            trusted=decision.trusted + decision.observers,
        )
        if decision.ok or outcome is None:
            outcome = candidate
        if decision.ok:
            break
    assert outcome is not None
    conflicts = _conflicts(policy, outcome, same_file, verified)
    if conflicts:
        c = conflicts[0]
        st = c.entry.statement
        agreeing = ", ".join(f"#{e.index}" for e in outcome.entries)
        return Outcome(
            a,
            False,
            f"ALARM: trusted {role(c)} {c.entry.signed.signer_vkey()} logged a different hash "
            f"sha256:{st.sha256.hex()} for {st.filename} (entry #{c.index}; "
            f"entry {agreeing} logged sha256:{a.sha256.hex()})",
            alarm=True,
            project=outcome.project,
            entries=outcome.entries,
            trusted=outcome.trusted,
            conflicts=conflicts,
        )
    outcome.warnings = _others(outcome, same_file, verified)
    return outcome


def _held_for_file(
    a: Pin, same_file: Mapping[FileKey, Sequence[VerifiedEntry]]
) -> list[VerifiedEntry]:
    """The entries for the file ``a`` names (by its filename), whatever their hash."""
    if a.filename is None:
        return []
    try:
        key = file_identity(a.filename).key
    except FormatError:
        return []
    return [e for e in same_file.get(key, ()) if e.entry.statement.sha256 != a.sha256]


def _others(
    outcome: Outcome,
    same_file: Mapping[FileKey, Sequence[VerifiedEntry]],
    verified: Callable[[VerifiedEntry], bool],
) -> list[VerifiedEntry]:
    """Entries by any other signer that give another hash for the same file."""
    files = {_file_key(e) for e in outcome.entries}
    return [
        e
        for key in sorted(files)
        for e in same_file.get(key, ())
        if e.entry.statement.sha256 != outcome.artifact.sha256 and verified(e)
    ]


def _conflicts(
    policy: Policy,
    outcome: Outcome,
    same_file: Mapping[FileKey, Sequence[VerifiedEntry]],
    verified: Callable[[VerifiedEntry], bool],
) -> list[VerifiedEntry]:
    """Entries by signers or observers the rule trusts that give another hash for
    the same file."""
    if outcome.project is None:
        return []
    rule = policy.rule_for(outcome.project)
    if rule is None:
        return []
    files = {_file_key(e) for e in outcome.entries}
    return [
        e
        for key in sorted(files)
        for e in same_file.get(key, ())
        if e.entry.statement.sha256 != outcome.artifact.sha256
        and e.entry.signed.signer_vkey() in rule.trusted_keys
        and verified(e)
    ]


def _file_key(e: VerifiedEntry) -> FileKey:
    return e.entry.statement.identity.key


def kind(e: VerifiedEntry) -> str:
    """``"signature"`` (a publisher signed the file) or ``"observation"`` (an
    observer logged what an index served)."""
    return e.entry.signed.kind


def role(e: VerifiedEntry) -> str:
    """How a report names the key behind an entry."""
    return "observer" if kind(e) == "observation" else "signer"


def keys_by_kind(entries: Sequence[VerifiedEntry]) -> tuple[set[str], set[str]]:
    """The keys of the signature entries and those of the observation entries."""
    signers: set[str] = set()
    observers: set[str] = set()
    for e in entries:
        (observers if kind(e) == "observation" else signers).add(e.entry.signed.signer_vkey())
    return signers, observers


def entry_json(e: VerifiedEntry) -> dict[str, Any]:
    """One verified entry as reports show it (an observation adds where and when)."""
    st = e.entry.statement
    doc: dict[str, Any] = {
        "log_index": e.index,
        "kind": kind(e),
        "project": st.project,
        "version": st.version,
        "filename": st.filename,
        "sha256": st.sha256.hex(),
        "size": st.size,
        "signer": e.entry.signed.signer_vkey(),
        "integrated_time_ms": e.entry.time_ms,
        "tree_size": e.checkpoint.size,
    }
    if isinstance(e.entry.signed, SignedObservation):
        doc["index_url"] = e.entry.signed.index_url
        doc["observed_ms"] = e.entry.signed.observed_ms
    return doc


async def check_artifacts(
    log: VerifiedLog,
    policy: Policy,
    artifacts: Sequence[Pin],
    *,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Check every artifact; results in input order.

    The log's checkpoint is verified (and made consistent with the stored one)
    first, so a misbehaving log fails the whole run before any lookup. Then one
    batch lookup (per 1000 digests) fetches every entry for the digests and for
    the same files, each with its inclusion proof.
    """
    await log.checkpoint()
    digests = sorted({a.sha256.hex() for a in artifacts})
    entries = await log.lookup_hashes(digests, related=True)
    by_hash: dict[bytes, list[VerifiedEntry]] = {}
    same_file: dict[FileKey, list[VerifiedEntry]] = {}
    for e in entries:
        by_hash.setdefault(e.entry.statement.sha256, []).append(e)
        same_file.setdefault(_file_key(e), []).append(e)
    # A file whose bytes are not in the log may still be there by name: ask, so
    # the report can say which hash the log holds for it (and a log that observes
    # on demand observes it now, answering with its observation).
    unknown = {
        (a.project, a.version, a.filename)
        for a in artifacts
        if a.sha256 not in by_hash and a.filename and a.project and a.version
    }
    queries = [
        {"project": p, "version": v, "filename": f}
        for p, v, f in sorted(unknown, key=str)
        if p is not None and v is not None and f is not None
    ]
    known = {e.index for e in entries}
    for found in await asyncio.gather(*(log.lookup(**q) for q in queries)):
        for e in found:
            if e.index not in known:
                known.add(e.index)
                same_file.setdefault(_file_key(e), []).append(e)
                by_hash.setdefault(e.entry.statement.sha256, []).append(e)
    verdicts = _Verdicts()
    outcomes = []
    for a in artifacts:
        result = evaluate(policy, a, by_hash.get(a.sha256, []), same_file, verdicts)
        if progress is not None:
            progress(result)
        outcomes.append(result)
    return outcomes


def check_offline(policy: Policy, a: Pin, receipt: dict[str, Any]) -> Outcome:
    """Check an artifact with only its receipt and the policy (no network).

    Only the signer recorded in the receipt is known offline, so a rule
    needing more than one signer cannot be met this way.
    """
    origin = receipt.get("log", {}).get("origin") if isinstance(receipt.get("log"), dict) else None
    if not isinstance(origin, str):
        try:
            origin = str(receipt["inclusion_proof"]["checkpoint"]).split("\n", 1)[0]
        except (KeyError, TypeError):
            return Outcome(a, False, "the receipt names no log")
    trust = policy.log_for(origin)
    if trust is None:
        return Outcome(
            a, False, f"the receipt is from log {origin}, which the policy does not trust"
        )
    try:
        v = verify_receipt(receipt, log_key=trust.verifier)
    except VerificationError as exc:
        return Outcome(a, False, f"the receipt does not verify: {exc}")
    st = v.entry.statement
    if st.sha256 != a.sha256 and a.filename is not None and _same_file(st, a.filename):
        return Outcome(
            a,
            False,
            f"not in the log: the log holds sha256:{st.sha256.hex()} for this file "
            f"(entry #{v.index}, from the receipt), you have sha256:{a.sha256.hex()}",
        )
    if st.sha256 != a.sha256 or (a.filename is not None and not _same_file(st, a.filename)):
        return Outcome(
            a, False, f"the receipt is for {st.filename} sha256:{st.sha256.hex()}, not this file"
        )
    if v.checkpoint.origin != trust.origin:
        return Outcome(a, False, f"the receipt's checkpoint is for {v.checkpoint.origin}")
    try:
        check_witness_quorum(
            str(receipt["inclusion_proof"]["checkpoint"]).encode(),
            policy.witnesses.verifiers,
            policy.witnesses.quorum,
        )
    except VerificationError as exc:
        return Outcome(a, False, str(exc))
    vkey = v.entry.signed.signer_vkey()
    observed = v.entry.signed.kind == "observation"
    decision = policy.evaluate(st.project, [] if observed else [vkey], [vkey] if observed else [])
    return Outcome(
        a,
        decision.ok,
        decision.reason + " (offline, from the receipt)",
        project=st.project,
        trusted=decision.trusted + decision.observers,
    )
