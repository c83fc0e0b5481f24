"""Which logs ``sigledger monitor`` follows and which projects it watches.

Logs come from ``--log URL --log-key VKEY`` pairs (in order), else from the
trust policy; witness keys and quorum always come from the policy, when there
is one. Watched projects are the ``--watch`` names plus every project the
policy lists, all PEP 503 canonical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from packaging.utils import canonicalize_name

from sigledger.client.install.policy import Policy
from sigledger.client.logkey import parse_log_key
from sigledger.client.monitor.watcher import MonitorTarget
from sigledger.client.remote import normalize_url
from sigledger.ledger.errors import ConfigError


def monitor_targets(
    urls: Sequence[str], log_keys: Sequence[str], policy: Policy | None
) -> list[MonitorTarget]:
    """One target per ``--log``/``--log-key`` pair, else per log the policy trusts."""
    witnesses = policy.witnesses.verifiers if policy is not None else ()
    quorum = policy.witnesses.quorum if policy is not None else 0
    if urls or log_keys:
        if len(urls) != len(log_keys):
            raise ConfigError("give one --log-key for each --log, in the same order")
        targets = []
        for url, vkey in zip(urls, log_keys, strict=True):
            key = parse_log_key(vkey)
            targets.append(MonitorTarget(normalize_url(url), key, key.name, witnesses, quorum))
        return targets
    if policy is None:
        raise ConfigError("no log to monitor: give --log URL --log-key VKEY or --policy FILE")
    return [MonitorTarget(t.url, t.verifier, t.origin, witnesses, quorum) for t in policy.logs]


def watched_projects(names: Iterable[str], policy: Policy | None) -> set[str]:
    """``--watch`` names and the policy's projects, canonical."""
    watch = {str(canonicalize_name(p)) for p in names}
    if policy is not None:
        watch.update(policy.projects)
    return watch
