"""``sigledger verify`` as a library: artifacts checked against a log, or offline
against their receipts.

:func:`verify_online` opens the policy's log as a
:class:`~sigledger.client.trust.VerifiedLog` (checkpoints remembered in the state
directory, verified tiles cached) and runs
:func:`~sigledger.client.install.checks.check_artifacts`. :func:`verify_offline`
checks each release file against its receipt (found as
:func:`sigledger.client.publish.files.find_receipt` says) and the policy alone;
only files can be checked that way, never bare digests or lock files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.install.checks import Outcome, check_artifacts, check_offline
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.policy import Policy, default_cache_dir, default_state_dir
from sigledger.client.publish.files import find_receipt, receipt_candidates
from sigledger.client.trust import VerifiedLog
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


async def verify_online(
    policy: Policy,
    artifacts: Sequence[Pin],
    *,
    log_url: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], LogState]:
    """Check ``artifacts`` against the policy's log at ``log_url`` (default: its first)."""
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
        outcomes = await check_artifacts(log, policy, artifacts, progress=progress)
        cp = await log.checkpoint()
    return outcomes, LogState(trust.url, trust.origin, cp.size, cp.root)


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
