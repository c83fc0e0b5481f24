"""``sigledger verify`` as a library: artifacts checked against a log, or offline
against their receipts.

:func:`verify_online` opens the policy's log as a
:class:`~sigledger.client.trust.VerifiedLog` (checkpoints remembered in the state
directory, verified tiles cached) and runs
:func:`~sigledger.client.install.verdicts.check_artifacts`. :func:`verify_offline`
checks each release file against its receipt (found as
:func:`sigledger.client.publish.files.find_receipt` says) and the policy alone;
only files can be checked that way, never bare digests or lock files.

Lock files are checked per environment: :func:`verify_online` takes their
requirements (:class:`~sigledger.client.install.inputs.LockInputs`) and a
:class:`~sigledger.client.install.environment.TargetEnvironment`, asks the log
first which file each bare requirements-file hash is, and then verifies what
:mod:`sigledger.client.install.selection` picks for that environment, returning
the selection with the outcomes for the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.install.environment import TargetEnvironment
from sigledger.client.install.inputs import LockInputs
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.policy import Policy, default_cache_dir, default_state_dir
from sigledger.client.install.selection import Selection, select, select_uvlock
from sigledger.client.install.verdicts import Outcome, check_artifacts, check_offline
from sigledger.client.publish.files import find_receipt, receipt_candidates
from sigledger.client.trust import VerifiedEntry, VerifiedLog
from sigledger.ledger.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LogState:
    """The log and checkpoint a run was verified against."""

    url: str
    origin: str
    tree_size: int
    root_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
        }


async def logged_by_hash(
    log: VerifiedLog, inputs: LockInputs, all_files: bool
) -> dict[bytes, list[VerifiedEntry]]:
    """The proven entries for every hash that carries no filename (requirements
    files), so the selection can tell which file each hash is."""
    if all_files:
        return {}
    digests = sorted({p.sha256.hex() for e in inputs.entries for p in e.pins if p.filename is None})
    found: dict[bytes, list[VerifiedEntry]] = {}
    if digests:
        for e in await log.lookup_hashes(digests, related=False):
            found.setdefault(e.entry.statement.sha256, []).append(e)
    return found


def select_inputs(
    env: TargetEnvironment,
    inputs: LockInputs,
    logged: dict[bytes, list[VerifiedEntry]],
    all_files: bool,
) -> Selection:
    """The selection for every requirement and lock file of one run."""
    selection = select(env, inputs.entries, logged=logged, all_files=all_files)
    for lock in inputs.uvlocks:
        selection.extend(select_uvlock(env, lock, all_files=all_files))
    return selection


async def verify_online(
    policy: Policy,
    artifacts: Sequence[Pin],
    *,
    log_url: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
    locks: LockInputs | None = None,
    env: TargetEnvironment | None = None,
    all_files: bool = False,
    selected: Callable[[Selection], None] | None = None,
) -> tuple[list[Outcome], LogState]:
    """Check ``artifacts``, and what ``env`` installs from ``locks``, against the
    policy's log at ``log_url`` (default: its first).

    The selection made from ``locks`` is handed to ``selected`` before the checks
    (for the progress total and the report); requirements that could not be
    given a file come first among the outcomes, as failures.
    """
    trust = policy.log_for(log_url) if log_url else policy.logs[0]
    if trust is None:
        raise ConfigError(f"the policy does not trust a log at {log_url}")
    async with VerifiedLog(
        trust.url,
        trust.verifier,
        FileCheckpointStore(default_state_dir()),
        trust.origin,
        tile_cache=default_cache_dir() / "tiles",
        witnesses=policy.witnesses.verifiers,
        witness_quorum=policy.witnesses.quorum,
    ) as log:
        to_check = list(artifacts)
        failed: list[Outcome] = []
        if locks:
            await log.checkpoint()  # a misbehaving log fails the run before any lookup
            logged = await logged_by_hash(log, locks, all_files)
            selection = select_inputs(env or TargetEnvironment.current(), locks, logged, all_files)
            if selected is not None:
                selected(selection)
            to_check.extend(selection.pins)
            failed = selection.failed
        outcomes = await check_artifacts(log, policy, to_check, progress=progress)
        cp = await log.checkpoint()
    return failed + outcomes, LogState(trust.url, trust.origin, cp.size, cp.root)


def verify_offline(
    policy: Policy, artifacts: Sequence[Pin], receipts_dir: Path | None = None
) -> list[Outcome]:
    """Check release files against their receipts and the policy (no network).

    Raises ConfigError when an artifact is not a file (a digest or a lock file
    entry has no receipt to find).
    """
    if any(not Path(a.name).is_file() for a in artifacts):
        raise ConfigError(
            "--offline checks files against their receipts; hashes and lock files need the log"
        )
    outcomes: list[Outcome] = []
    for a in artifacts:
        path = find_receipt(Path(a.name), receipts_dir)
        if path is None:
            tried = ", ".join(str(p) for p in receipt_candidates(Path(a.name), receipts_dir))
            outcomes.append(Outcome(a, False, f"no receipt (looked for {tried})"))
            continue
        try:
            receipt = json.loads(path.read_text())
        except ValueError:
            outcomes.append(Outcome(a, False, f"receipt {path} is not JSON"))
            continue
        if not isinstance(receipt, dict):
            outcomes.append(Outcome(a, False, f"receipt {path} is not a JSON object"))
            continue
        outcomes.append(check_offline(policy, a, receipt))
    return outcomes
