"""``sigledger policy pin`` as a library: trust, per project, the signers and
observers a log shows for the locked hashes.

The log's own observer key (``GET /observer``; a log without one answers 404)
is recorded in the policy's ``[[log]]`` table, and a policy without a
``[default]`` gets "the log's own observation suffices" as its default.

:func:`pin_policy` verifies the log's checkpoint against the given key (a wrong
key names the key the log signs with, see :mod:`sigledger.client.logkey`), looks
up every pinned SHA-256 and writes the policy with
:func:`~sigledger.client.install.policy.pin_projects` applied (the file is
replaced atomically).

Lock files are pinned per environment, as ``verify`` checks them: the files in
scope are those :mod:`sigledger.client.install.selection` picks for the target
(every listed file with ``all_files``). A file in scope that the log does not
show, or a requirement with no file for the target, is reported in
:attr:`PinResult.missing`; the projects of the rest are pinned and the policy
is written anyway, except with ``strict`` (all or nothing), where a single
missing file means nothing is written. A project with a missing file is still
pinned to the signers of its other files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.install.environment import TargetEnvironment
from sigledger.client.install.inputs import LockInputs
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.policy import (
    LogTrust,
    Policy,
    default_state_dir,
    dump_policy,
    load_policy,
    pin_projects,
)
from sigledger.client.install.selection import Selection
from sigledger.client.install.verdicts import kind, matches
from sigledger.client.install.verify import logged_by_hash, select_inputs
from sigledger.client.logkey import open_with_log_key
from sigledger.client.remote import LogClient, normalize_url
from sigledger.client.trust import VerifiedLog
from sigledger.ledger.errors import FormatError, NetworkError
from sigledger.ledger.note import ALG_ED25519, Verifier


@dataclass
class PinResult:
    policy_path: Path
    signers: dict[str, set[str]] = field(default_factory=dict)  # project -> verifier keys
    missing: list[str] = field(default_factory=list)  # pins the log does not show
    written: bool = False
    selection: Selection | None = None  # what the lock files put in scope
    policy_projects: int = 0  # projects with a rule in the policy as written
    observers: dict[str, set[str]] = field(default_factory=dict)  # project -> observer keys
    log_observer: str | None = None  # the log's own observer key, when it serves one


async def logged_keys(
    log: VerifiedLog, pins: Sequence[Pin]
) -> tuple[dict[str, set[str]], dict[str, set[str]], list[str]]:
    """Per project, the signers and the observers of entries that attest exactly
    the pinned files; and the names of the pins no verified entry attests."""
    artifacts = list(pins)
    entries = await log.lookup_hashes(sorted({a.sha256.hex() for a in artifacts}), related=False)
    signers: dict[str, set[str]] = {}
    observers: dict[str, set[str]] = {}
    missing: list[str] = []
    for a in artifacts:
        found = [e for e in entries if matches(a, e) and e.entry.signed.verify()]
        if not found:
            missing.append(a.name)
        for e in found:
            into = observers if kind(e) == "observation" else signers
            into.setdefault(e.entry.statement.project, set()).add(e.entry.signed.signer_vkey())
    return signers, observers, sorted(missing)


async def fetch_observer_key(client: LogClient) -> Verifier | None:
    """The log's own observer key (``GET /observer``), or None for a log that
    does not observe (404). Raises NetworkError when the log answers otherwise."""
    url = client.url + "/observer"
    try:
        async with client.session.get(url) as resp:
            body = await resp.content.read(4096)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NetworkError(f"cannot reach the log at {url}: {exc}") from None
    if status == 404:
        return None
    if status != 200:
        raise NetworkError(f"the log answered {status} for {url}")
    try:
        verifier = Verifier.from_vkey(body.decode("utf-8", "replace").strip())
    except FormatError as exc:
        raise NetworkError(f"{url} is not an observer verifier key: {exc}") from None
    if verifier.alg != ALG_ED25519:
        raise NetworkError(f"{url} is not an Ed25519 (0x01) observer key")
    return verifier


def existing_policy(path: Path) -> Policy:
    """The policy at ``path``, or an empty one to be written there."""
    return load_policy(path) if path.exists() else Policy(logs=(), source=str(path))


def write_policy(path: Path, policy: Policy) -> None:
    """Replace the policy file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_policy(policy))
    tmp.replace(path)


async def pin_policy(
    url: str,
    log_key: Verifier,
    pins: Sequence[Pin],
    policy_path: Path,
    *,
    threshold: int | None = None,
    state_dir: Path | None = None,
    locks: LockInputs | None = None,
    env: TargetEnvironment | None = None,
    all_files: bool = False,
    strict: bool = False,
) -> PinResult:
    """Pin the signers ``url`` shows for ``pins``, and for the files ``env``
    installs from ``locks``, into the policy at ``policy_path``.

    The existing policy (if any) is read first, so a bad file fails before any
    network I/O. Raises PolicyError for a threshold or key the policy cannot
    take, VerificationError for a checkpoint ``log_key`` did not sign.
    """
    policy = existing_policy(policy_path)
    trust = LogTrust(normalize_url(url), log_key, log_key.name)
    store = FileCheckpointStore(state_dir if state_dir is not None else default_state_dir())
    async with VerifiedLog(trust.url, trust.verifier, store, trust.origin) as log:
        note = await log.client.checkpoint()
        open_with_log_key(note, log_key, log.url, trust.origin)
        await log.accept(note)
        observer = await fetch_observer_key(log.client)
        trust = dataclasses.replace(trust, observer=observer)
        artifacts = list(pins)
        selection = None
        if locks:
            logged = await logged_by_hash(log, locks, all_files)
            selection = select_inputs(env or TargetEnvironment.current(), locks, logged, all_files)
            artifacts.extend(selection.pins)
        signers, observers, missing = await logged_keys(log, artifacts)
    if selection is not None:
        missing = sorted([*missing, *(f"{o.artifact.name}: {o.reason}" for o in selection.failed)])
    result = PinResult(
        policy_path,
        signers,
        missing,
        selection=selection,
        observers=observers,
        log_observer=observer.vkey if observer is not None else None,
    )
    if (signers or observers) and not (strict and missing):
        pinned = pin_projects(policy, trust, signers, threshold, observers)
        write_policy(policy_path, pinned)
        result.written = True
        result.policy_projects = len(pinned.projects)
    return result
