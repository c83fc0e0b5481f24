"""The installer's trust policy: which logs, which witnesses, whose signatures.

A policy is a TOML file (``policy.toml`` in the user configuration directory,
or ``$SIGLEDGER_POLICY``). Version 1::

    version = 1                       # required, exactly 1

    [[log]]                           # one or more: the logs this installer trusts
    url = "https://log.example.org"   # required, http:// or https://
    key = "log.example.org+1a2b3c4d+AV..."   # required: the log's signed-note
                                      # verifier key, Ed25519 (type 0x01)
    origin = "log.example.org"        # optional checkpoint origin; default: the key's name
    observer = "log.example.org/observer+5a6b7c8d+AT..."
                                      # optional: the log's own observer key (its
                                      # GET /observer), recorded by `policy pin`

    [witnesses]                       # optional
    keys = ["w1.example+5e6f7a8b+BA...", "w2.example+9c0d1e2f+BB..."]
                                      # verifier keys: cosignature/v1 (0x04) or Ed25519 (0x01)
    quorum = 2                        # required here: 0 <= quorum <= len(keys)

    [default]                         # optional: the rule for projects not listed below
    signers = ["alice@example.org+2c4c362e+AQOh..."]
    threshold = 1
    any-signer = false

    [project."requests"]              # one table per project
    signers = ["a@example.org+...", "b@example.org+...", "c@example.org+..."]
    threshold = 2
    observers = ["log.example.org/observer+...", "mirror.example/observer+..."]
    observer-threshold = 1
    require = "both"

A **rule** (``[default]`` or ``[project."NAME"]``) says whose logged
statements make a hash trusted. Two kinds count: *signatures* (a publisher
signed the file) and *observations* (an observer -- the log itself, a proxy,
a mirror -- logged the hash an index served it for that file, the first time
it saw it). A rule has these keys:

* ``signers``: publisher verifier keys, Ed25519 (type 0x01), no key twice.
  Required unless ``any-signer = true``.
* ``threshold`` (default 1): at least this many *distinct* listed signers must
  have logged the exact hash being installed (n of m). Between 1 and the number
  of signers.
* ``any-signer`` (default false): when true, a hash logged by *any* signer is
  accepted. That proves the file was published to the log (everyone sees the
  same file), not who made it, so it must be asked for explicitly; the
  threshold then only needs to be at least 1.
* ``observers``: observer verifier keys, Ed25519 (type 0x01), no key twice.
* ``observer-threshold`` (default 1): at least this many *distinct* listed
  observers must have logged an observation of the exact hash (k of n).
  Between 1 and the number of observers.
* ``require``: which part must hold -- ``"signers"`` (n of m signers),
  ``"observers"`` (k of n observers), ``"either"`` or ``"both"``. Default:
  the part that is listed, ``"either"`` when both are. A rule must list what
  its ``require`` needs.

Whatever ``require`` says, a listed signer or observer that logged a
*different* hash for the same file makes the check fail with both entries as
evidence (someone is being shown another file).

The default a new user gets, as with Go's checksum database, is "the log's own
observation suffices": ``sigledger policy pin`` records the log's observer key
(``GET /observer``) in the ``[[log]]`` table and, when the policy has no
``[default]`` yet, writes ``[default] observers = [<that key>]``. Observers
that logged the pinned hashes are recorded per project as signers are.
Policies written before observers existed load unchanged: a rule with only
``signers`` requires signers, as before.

Project names are canonicalized (PEP 503) when the policy is loaded; two tables
naming the same project (``[project.Foo_Bar]`` and ``[project.foo-bar]``) are
an error. A project with no table uses ``[default]``; without a ``[default]``,
it fails (``verify``), or the proxy's ``--unlisted`` decides (it needs a
signature by anyone, or passes the file through); with the ``[default]`` that
``policy pin`` writes, an unsigned project is trusted exactly when the log's
observer logged the same hash. Unknown keys and tables are errors, so a
misspelt key cannot weaken the policy silently. Every error is a
:class:`PolicyError` whose message starts ``FILE:LINE:``.

Witness keys are carried and validated here; the quorum is enforced by the
checkpoint verification code.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
import tomli_w
from packaging.utils import InvalidName, canonicalize_name

from sigledger.client.install.tomlpos import (
    TomlPath,
    TomlReader,
    key_path,
    short_repr,
    toml_decode_error,
)
from sigledger.ledger.errors import ConfigError, FormatError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, ALG_ED25519, Verifier

__all__ = [
    "POLICY_VERSION",
    "Decision",
    "LogTrust",
    "Policy",
    "PolicyError",
    "SignerRule",
    "WitnessPolicy",
    "default_policy_path",
    "default_state_dir",
    "dump_policy",
    "load_policy",
    "parse_policy",
    "pin_projects",
]

POLICY_VERSION = 1
APP_NAME = "sigledger"

_TOP_KEYS = ("version", "log", "witnesses", "default", "project")
_LOG_KEYS = ("url", "key", "origin", "observer")
_WITNESS_KEYS = ("keys", "quorum")
_RULE_KEYS = ("signers", "threshold", "any-signer", "observers", "observer-threshold", "require")
REQUIRE_MODES = ("signers", "observers", "either", "both")


class PolicyError(ConfigError):
    """The trust policy is missing, malformed or inconsistent."""

    hint = "Fix the trust policy named above; nothing was verified or installed."


@dataclass(frozen=True)
class LogTrust:
    """A trusted log: where it is, the key its checkpoints are signed with, its origin."""

    url: str
    verifier: Verifier
    origin: str
    observer: Verifier | None = None  # the log's own observer key, when known


@dataclass(frozen=True)
class WitnessPolicy:
    """Witness keys and how many of them must cosign a checkpoint."""

    verifiers: tuple[Verifier, ...] = ()
    quorum: int = 0


@dataclass(frozen=True)
class SignerRule:
    """Whose logged statements count for a project, and how many are needed."""

    signers: frozenset[str]  # canonical verifier keys (Verifier.vkey)
    threshold: int
    any_signer: bool = False
    observers: frozenset[str] = frozenset()  # observer verifier keys
    observer_threshold: int = 1
    require: str | None = None  # one of REQUIRE_MODES; None: derived (see mode)

    @property
    def mode(self) -> str:
        """``require``, else the listed part(s): signers, observers or either."""
        if self.require is not None:
            return self.require
        has_signers = bool(self.signers) or self.any_signer
        if self.observers and has_signers:
            return "either"
        return "observers" if self.observers else "signers"

    @property
    def trusted_keys(self) -> frozenset[str]:
        """Every key whose different hash for a file is an alarm."""
        return self.signers | self.observers


@dataclass(frozen=True)
class Decision:
    """The outcome of checking one hash against a signer rule."""

    ok: bool
    reason: str
    trusted: tuple[str, ...]  # trusted signers that logged the hash, sorted
    untrusted: tuple[str, ...]  # other signers that logged it, sorted
    observers: tuple[str, ...] = ()  # trusted observers that logged it, sorted


@dataclass(frozen=True)
class Policy:
    """A validated trust policy. ``source`` (the file it came from) is not compared."""

    logs: tuple[LogTrust, ...]
    witnesses: WitnessPolicy = WitnessPolicy()
    default: SignerRule | None = None  # None: unlisted projects fail
    projects: dict[str, SignerRule] = field(default_factory=dict)  # canonical name -> rule
    source: str = field(default="<memory>", compare=False)

    def rule_for(self, project: str) -> SignerRule | None:
        """The rule of ``project`` (any spelling), else the default rule, else None."""
        return self.projects.get(str(canonicalize_name(project)), self.default)

    def evaluate(
        self, project: str, signers: Iterable[str], observers: Iterable[str] = ()
    ) -> Decision:
        """Decide whether a hash is trusted for ``project``.

        ``signers`` are the verifier keys of every signer the log shows
        attesting this exact hash for this project, ``observers`` those of
        every observer that logged an observation of it. A key counts once
        however often it appears; keys outside the rule never count.
        """
        name = str(canonicalize_name(project))
        seen = set(signers)
        rule = self.rule_for(name)
        if rule is None:
            return Decision(
                False,
                f"no policy for project {name} and no [default]",
                (),
                tuple(sorted(seen)),
            )
        trusted = tuple(sorted(seen & rule.signers))
        untrusted = tuple(sorted(seen - rule.signers))
        watched = tuple(sorted(set(observers) & rule.observers))
        mode = rule.mode
        sig_ok, sig_reason = _signer_part(rule, seen, trusted, untrusted)
        if mode == "signers":
            seen_observers = sorted(set(observers))
            if not sig_ok and seen_observers:
                # Say what the log does hold: observations, which this rule does not count.
                sig_reason += (
                    f"; observed by {', '.join(seen_observers)}, but the policy for "
                    f"{name} requires signers"
                )
            return Decision(sig_ok, sig_reason, trusted, untrusted, watched)
        obs_ok, obs_reason = _observer_part(rule, set(observers), watched)
        if mode == "observers":
            return Decision(obs_ok, obs_reason, trusted, untrusted, watched)
        if mode == "both":
            ok = sig_ok and obs_ok
            reason = (
                f"{sig_reason}; and {obs_reason}"
                if ok
                else "; ".join(
                    r for good, r in ((sig_ok, sig_reason), (obs_ok, obs_reason)) if not good
                )
                + " (the policy requires signers and observers)"
            )
            return Decision(ok, reason, trusted, untrusted, watched)
        if sig_ok or obs_ok:
            return Decision(True, sig_reason if sig_ok else obs_reason, trusted, untrusted, watched)
        return Decision(
            False,
            f"{sig_reason}; and {obs_reason} (the policy accepts either)",
            trusted,
            untrusted,
            watched,
        )

    def log_for(self, url_or_origin: str) -> LogTrust | None:
        """The trusted log with this URL (a trailing "/" ignored) or this origin."""
        wanted = url_or_origin.rstrip("/")
        for log in self.logs:
            if log.url.rstrip("/") == wanted or log.origin == url_or_origin:
                return log
        return None


def _signer_part(
    rule: SignerRule, seen: set[str], trusted: tuple[str, ...], untrusted: tuple[str, ...]
) -> tuple[bool, str]:
    """Whether the signatures meet the rule (n of m, or any-signer), and why."""
    if rule.any_signer:
        if not seen:
            return False, "no signer has logged this hash"
        return True, (
            f"logged by {len(seen)} signer(s) and any-signer is set "
            "(this proves publication, not authorship)"
        )
    if not rule.signers:
        return False, "the rule lists no signers"
    if len(trusted) >= rule.threshold:
        return True, (
            f"signed by {len(trusted)} of {len(rule.signers)} trusted signers "
            f"(threshold {rule.threshold}): {', '.join(trusted)}"
        )
    if not trusted:
        detail = (
            f"signed only by: {', '.join(untrusted)}"
            if untrusted
            else "no signer has logged this hash"
        )
        return False, f"not signed by any trusted signer ({detail})"
    return False, (
        f"{rule.threshold} of {len(rule.signers)} required signers, "
        f"got {len(trusted)}: {', '.join(trusted)}"
    )


def _observer_part(rule: SignerRule, seen: set[str], watched: tuple[str, ...]) -> tuple[bool, str]:
    """Whether the observations meet the rule (k of n observers), and why."""
    if not rule.observers:
        return False, "the rule lists no observers"
    if len(watched) >= rule.observer_threshold:
        return True, (
            f"observed by {len(watched)} of {len(rule.observers)} trusted observers "
            f"(threshold {rule.observer_threshold}): {', '.join(watched)}"
        )
    if not watched:
        others = sorted(seen - rule.observers)
        detail = f"observed only by: {', '.join(others)}" if others else "no observation logged"
        return False, f"not observed by any trusted observer ({detail})"
    return False, (
        f"{rule.observer_threshold} of {len(rule.observers)} required observers, "
        f"got {len(watched)}: {', '.join(watched)}"
    )


# ---------------------------------------------------------------------------
# Reading


def _is_http_url(url: str) -> bool:
    if not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        return False


class _Parser(TomlReader):
    """Validates the parsed TOML and builds the Policy, pointing errors at lines."""

    error = PolicyError

    def verifier(self, path: TomlPath, value: object, algs: tuple[int, ...], role: str) -> Verifier:
        text = self.string(path, value)
        try:
            verifier = Verifier.from_vkey(text)
        except FormatError as exc:
            raise self.fail(path, f"{short_repr(text)} is not a verifier key: {exc}") from None
        if verifier.alg not in algs:
            raise self.fail(
                path,
                f"{short_repr(text)} is a type 0x{verifier.alg:02x} key; {role} needs "
                + " or ".join(f"type 0x{alg:02x}" for alg in algs),
            )
        return verifier

    def parse(self, data: dict[str, Any]) -> Policy:
        self.table((), data, _TOP_KEYS)
        if "version" not in data:
            raise self.fail((), f"missing version = {POLICY_VERSION}")
        version = data["version"]
        if self.integer(("version",), version) != POLICY_VERSION:
            raise self.fail(
                ("version",), f"unsupported policy version {version} (want {POLICY_VERSION})"
            )
        logs = self.logs(data.get("log"))
        witnesses = WitnessPolicy()
        if "witnesses" in data:
            witnesses = self.witnesses(data["witnesses"])
        default = None
        if "default" in data:
            default = self.rule(("default",), data["default"])
        projects: dict[str, SignerRule] = {}
        spelled: dict[str, str] = {}
        project_tables = data.get("project", {})
        if not isinstance(project_tables, dict):
            raise self.fail(("project",), 'must hold tables [project."NAME"]')
        for name, value in project_tables.items():
            path: TomlPath = ("project", name)
            try:
                canonical = str(canonicalize_name(name, validate=True))
            except InvalidName:
                raise self.fail(path, "is not a valid project name") from None
            if canonical in spelled:
                raise self.fail(
                    path,
                    f"names the same project as [project.{key_path((spelled[canonical],))}] "
                    f"({canonical})",
                )
            spelled[canonical] = name
            projects[canonical] = self.rule(path, value)
        return Policy(logs, witnesses, default, projects, self.source)

    def logs(self, value: object) -> tuple[LogTrust, ...]:
        if value is None or value == []:
            raise self.fail((), "no [[log]] table: a policy must trust at least one log")
        if not isinstance(value, list):
            raise self.fail(("log",), "must be an array of tables ([[log]])")
        logs: list[LogTrust] = []
        for index, entry in enumerate(value):
            path: TomlPath = ("log", index)
            table = self.table(path, entry, _LOG_KEYS)
            for required in ("url", "key"):
                if required not in table:
                    raise self.fail(path, f"missing {required}")
            url = self.string((*path, "url"), table["url"])
            if not _is_http_url(url):
                raise self.fail((*path, "url"), f"{short_repr(url)} is not an http(s) URL")
            verifier = self.verifier((*path, "key"), table["key"], (ALG_ED25519,), "a log")
            origin = verifier.name
            if "origin" in table:
                origin = self.string((*path, "origin"), table["origin"])
                if not origin or not origin.isprintable():
                    raise self.fail((*path, "origin"), "must be a non-empty line of text")
            for other in logs:
                if other.verifier == verifier:
                    raise self.fail((*path, "key"), "this log key is listed twice")
                if other.url.rstrip("/") == url.rstrip("/"):
                    raise self.fail((*path, "url"), "this log URL is listed twice")
                if other.origin == origin:
                    raise self.fail(path, f"origin {short_repr(origin)} is listed twice")
            observer = None
            if "observer" in table:
                observer = self.verifier(
                    (*path, "observer"), table["observer"], (ALG_ED25519,), "an observer"
                )
            logs.append(LogTrust(url, verifier, origin, observer))
        return tuple(logs)

    def witnesses(self, value: object) -> WitnessPolicy:
        path: TomlPath = ("witnesses",)
        table = self.table(path, value, _WITNESS_KEYS)
        verifiers: list[Verifier] = []
        for index, item in enumerate(self.strings((*path, "keys"), table.get("keys", []))):
            verifier = self.verifier(
                (*path, "keys", index), item, (ALG_COSIGNATURE_V1, ALG_ED25519), "a witness"
            )
            if verifier in verifiers:
                raise self.fail((*path, "keys", index), "this witness key is listed twice")
            verifiers.append(verifier)
        if "quorum" not in table:
            raise self.fail(path, "missing quorum")
        quorum = self.integer((*path, "quorum"), table["quorum"])
        if not 0 <= quorum <= len(verifiers):
            raise self.fail(
                (*path, "quorum"), f"must be between 0 and {len(verifiers)} (the number of keys)"
            )
        return WitnessPolicy(tuple(verifiers), quorum)

    def keys(self, path: TomlPath, value: object, role: str, noun: str) -> set[str]:
        found: set[str] = set()
        for index, item in enumerate(self.strings(path, value)):
            vkey = self.verifier((*path, index), item, (ALG_ED25519,), role).vkey
            if vkey in found:
                raise self.fail((*path, index), f"this {noun} is listed twice")
            found.add(vkey)
        return found

    def rule(self, path: TomlPath, value: object) -> SignerRule:
        table = self.table(path, value, _RULE_KEYS)
        any_signer = table.get("any-signer", False)
        if not isinstance(any_signer, bool):
            raise self.fail(
                (*path, "any-signer"), f"must be true or false, not {short_repr(any_signer)}"
            )
        signers = self.keys(
            (*path, "signers"), table.get("signers", []), "a release signer", "signer"
        )
        observers = self.keys(
            (*path, "observers"), table.get("observers", []), "an observer", "observer"
        )
        require: str | None = None
        if "require" in table:
            require = self.string((*path, "require"), table["require"])
            if require not in REQUIRE_MODES:
                raise self.fail(
                    (*path, "require"),
                    f"{short_repr(require)} is not one of " + ", ".join(REQUIRE_MODES),
                )
        needs_signers = require in ("signers", "both") or (require is None and not observers)
        needs_observers = require in ("observers", "both")
        if needs_signers and not signers and not any_signer:
            raise self.fail(
                path,
                "lists no signers (list some, or set any-signer = true to accept any signer"
                + (", or list observers)" if require is None else ")"),
            )
        if needs_observers and not observers:
            raise self.fail(path, f'lists no observers but require = "{require}"')
        threshold = self.integer((*path, "threshold"), table.get("threshold", 1))
        if threshold < 1:
            raise self.fail((*path, "threshold"), "must be at least 1")
        if signers and not any_signer and threshold > len(signers):
            raise self.fail(
                (*path, "threshold"),
                f"{threshold} is more than the {len(signers)} listed signer(s)",
            )
        observer_threshold = self.integer(
            (*path, "observer-threshold"), table.get("observer-threshold", 1)
        )
        if observer_threshold < 1:
            raise self.fail((*path, "observer-threshold"), "must be at least 1")
        if observers and observer_threshold > len(observers):
            raise self.fail(
                (*path, "observer-threshold"),
                f"{observer_threshold} is more than the {len(observers)} listed observer(s)",
            )
        return SignerRule(
            frozenset(signers),
            threshold,
            any_signer,
            frozenset(observers),
            observer_threshold,
            require,
        )


def parse_policy(text: str, source: str = "<memory>") -> Policy:
    """Parse and validate a policy document. Raises PolicyError (``SOURCE:LINE: ...``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_decode_error(exc, text)
        raise PolicyError(f"{source}:{line}: invalid TOML: {message}") from None
    return _Parser(text, source).parse(data)


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate a policy file. Raises PolicyError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: trust policy file does not exist") from None
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: cannot read the trust policy: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PolicyError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    return parse_policy(text, str(path))


# ---------------------------------------------------------------------------
# Writing


def _rule_table(rule: SignerRule) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if rule.signers or not rule.observers:
        table["signers"] = sorted(rule.signers)
    if rule.threshold != 1 or "signers" in table:
        table["threshold"] = rule.threshold
    if rule.any_signer:
        table["any-signer"] = True
    if rule.observers:
        table["observers"] = sorted(rule.observers)
        table["observer-threshold"] = rule.observer_threshold
    if rule.require is not None:
        table["require"] = rule.require
    return table


def dump_policy(policy: Policy) -> str:
    """The policy as TOML that :func:`parse_policy` reads back equal.

    Logs and witness keys keep their order; signers and projects are sorted, so
    the same policy always gives the same text. Defaults are left out.
    """
    logs: list[dict[str, Any]] = []
    for log in policy.logs:
        entry: dict[str, Any] = {"url": log.url, "key": log.verifier.vkey}
        if log.origin != log.verifier.name:
            entry["origin"] = log.origin
        if log.observer is not None:
            entry["observer"] = log.observer.vkey
        logs.append(entry)
    doc: dict[str, Any] = {"version": POLICY_VERSION, "log": logs}
    if policy.witnesses.verifiers or policy.witnesses.quorum:
        doc["witnesses"] = {
            "keys": [v.vkey for v in policy.witnesses.verifiers],
            "quorum": policy.witnesses.quorum,
        }
    if policy.default is not None:
        doc["default"] = _rule_table(policy.default)
    if policy.projects:
        doc["project"] = {
            name: _rule_table(policy.projects[name]) for name in sorted(policy.projects)
        }
    return tomli_w.dumps(doc)


def _checked_keys(where: str, name: str, vkeys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for vkey in vkeys:
        try:
            verifier = Verifier.from_vkey(vkey)
        except FormatError as exc:
            raise PolicyError(
                f"{where}: project {name}: {short_repr(vkey)} is not a verifier key: {exc}"
            ) from None
        if verifier.alg != ALG_ED25519:
            raise PolicyError(
                f"{where}: project {name}: {short_repr(vkey)} is not an Ed25519 (0x01) key"
            )
        found.add(verifier.vkey)
    return found


def pin_projects(
    policy: Policy,
    log: LogTrust,
    signers_by_project: Mapping[str, Iterable[str]],
    threshold: int | None = None,
    observers_by_project: Mapping[str, Iterable[str]] | None = None,
) -> Policy:
    """A copy of ``policy`` that trusts ``log`` and these signers (and observers)
    for these projects.

    ``log`` replaces the trusted log with the same key, or is added. Each
    project's rule lists the given signers plus those it already had; its
    threshold is ``threshold``, else the existing one, else 1. Observers are
    added the same way (their threshold is kept, else 1). When ``log`` names
    its observer key and the policy has no ``[default]``, the default becomes
    "the log's own observation suffices". Raises PolicyError (``SOURCE: ...``)
    for invalid keys, names or thresholds, and when ``log``'s URL or origin
    belongs to a log with another key (replacing a log key is left to a person
    editing the file).
    """
    where = policy.source
    if log.verifier.alg != ALG_ED25519:
        raise PolicyError(f"{where}: log key {log.verifier.vkey} is not an Ed25519 (0x01) key")
    logs = list(policy.logs)
    for index, existing in enumerate(logs):
        if existing.verifier == log.verifier:
            if log.observer is None and existing.observer is not None:
                log = dataclasses.replace(log, observer=existing.observer)
            logs[index] = log
            break
    else:
        logs.append(log)
    for other in logs:
        if other is log:
            continue
        if other.url.rstrip("/") == log.url.rstrip("/") or other.origin == log.origin:
            raise PolicyError(
                f"{where}: the log at {other.url} (origin {other.origin}) is trusted with "
                f"another key ({other.verifier.vkey}); edit the policy to replace it"
            )
    observed = observers_by_project or {}
    projects = dict(policy.projects)
    for project in sorted({*signers_by_project, *observed}):
        try:
            name = str(canonicalize_name(project, validate=True))
        except InvalidName:
            raise PolicyError(
                f"{where}: {short_repr(project)} is not a valid project name"
            ) from None
        old = projects.get(name)
        signers = set(old.signers) if old is not None else set()
        signers |= _checked_keys(where, name, signers_by_project.get(project, ()))
        observers = set(old.observers) if old is not None else set()
        observers |= _checked_keys(where, name, observed.get(project, ()))
        any_signer = old.any_signer if old is not None else False
        wanted = threshold if threshold is not None else old.threshold if old is not None else 1
        if not signers and not any_signer and not observers:
            raise PolicyError(f"{where}: project {name}: no signers to pin")
        if wanted < 1 or (signers and not any_signer and wanted > len(signers)):
            raise PolicyError(
                f"{where}: project {name}: threshold {wanted} is not between 1 and "
                f"{len(signers)} (the number of signers)"
            )
        require = old.require if old is not None else None
        if require in ("signers", "both") and not signers and not any_signer:
            require = None
        if require in ("observers", "both") and not observers:
            require = None
        projects[name] = SignerRule(
            frozenset(signers),
            wanted,
            any_signer,
            frozenset(observers),
            old.observer_threshold if old is not None else 1,
            require,
        )
    default = policy.default
    if default is None and log.observer is not None:
        default = SignerRule(frozenset(), 1, observers=frozenset({log.observer.vkey}))
    return Policy(tuple(logs), policy.witnesses, default, projects, policy.source)


# ---------------------------------------------------------------------------
# Locations


def default_policy_path() -> Path:
    """``$SIGLEDGER_POLICY``, else ``policy.toml`` in the user configuration directory."""
    value = os.environ.get("SIGLEDGER_POLICY")
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "policy.toml"


def default_state_dir() -> Path:
    """``$SIGLEDGER_STATE_DIR``, else the user state directory (verified checkpoints)."""
    value = os.environ.get("SIGLEDGER_STATE_DIR")
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_state_dir(APP_NAME))


def default_cache_dir() -> Path:
    """``$SIGLEDGER_CACHE_DIR``, else the user cache directory (verified tiles only)."""
    value = os.environ.get("SIGLEDGER_CACHE_DIR")
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME))
