"""The witness's settings (``sigledger witness serve``).

Loaded by :func:`sigledger.ledger.service.config.load_settings`: defaults < file
< ``SIGLEDGER_WITNESS_*`` environment < flags. Scalars are TOML keys and environment
variables; the logs to witness come only from ``[[log]]`` tables in the file
(``key``, optional ``origin``) or ``--log VKEY`` flags (which replace the file's list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sigledger.ledger.errors import ConfigError, FormatError
from sigledger.ledger.note import ALG_ED25519, Verifier, check_key_name
from sigledger.ledger.service.config import (
    ServiceSettings,
    check_logging,
    default_data_dir,
    load_settings,
)

__all__ = [
    "DEFAULT_NAME",
    "ENV_PREFIX",
    "WitnessConfig",
    "WitnessedLog",
    "load_witness_config",
]

ENV_PREFIX = "SIGLEDGER_WITNESS_"
DEFAULT_NAME = "localhost/witness"


@dataclass(frozen=True)
class WitnessedLog:
    """One log key the witness trusts. Several entries may share an origin
    (a log rotating its key): a checkpoint needs a valid signature by one of
    them, and no invalid signature by any of them."""

    key: str
    """The log's verifier key, ``<name>+<hex8 key ID>+<base64(0x01 || key)>`` (Ed25519)."""
    origin: str = ""
    """The checkpoint origin line. Default: the key name (tlog-checkpoint says
    the key name SHOULD be the origin)."""

    def verifier(self) -> Verifier:
        """The parsed key; raises ConfigError unless it is an Ed25519 (0x01) vkey."""
        try:
            verifier = Verifier.from_vkey(self.key)
        except FormatError as exc:
            raise ConfigError(f"log key {self.key!r} is not a verifier key: {exc}") from None
        if verifier.alg != ALG_ED25519:
            raise ConfigError(
                f"log key {self.key!r} has type 0x{verifier.alg:02x}; "
                "a log signs checkpoints with an Ed25519 (type 0x01) key"
            )
        return verifier

    @property
    def effective_origin(self) -> str:
        return self.origin or self.key.partition("+")[0]


@dataclass
class WitnessConfig(ServiceSettings):
    """Every setting of ``sigledger witness serve``. Scalar fields are also TOML
    keys and environment variables (``SIGLEDGER_WITNESS_`` + the upper-cased
    name); logs come from ``[[log]]`` tables in the file or ``--log`` flags."""

    DB_FILE = "witness.db"
    KEY_FILE = "witness.key"

    data: str = field(default_factory=lambda: default_data_dir("witness"))
    """Data directory: holds ``witness.db`` (SQLite) and, by default, ``witness.key``.
    Default: ``witness`` in the user data directory (``~/.local/share/sigledger/witness``
    on Linux); ``witness serve`` prints it."""
    listen: str = "127.0.0.1:8081"
    """HOST:PORT to listen on. Port 0 picks a free port (printed at start)."""
    name: str = DEFAULT_NAME
    """Key name of a new witness's key, used only when the key is created (later
    the key's own name counts). It names the witness in its cosignature lines,
    e.g. ``witness.example.org/w1``."""
    key_file: str = ""
    """Witness cosigning key: Go ``PRIVATE+KEY+...`` format with type 0x04
    (cosignature/v1), mode 0600. Default ``<data>/witness.key``, created on first start."""
    logs: list[WitnessedLog] = field(default_factory=list)
    """The logs to witness. Flags (``--log VKEY``) replace the file's list."""
    log_format: str = "auto"
    """``json`` (one object per line on stdout), ``text``, or ``auto``: text when
    stdout is a terminal, JSON otherwise."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning``, ``error`` or ``critical``."""
    max_request_bytes: int = 64 * 1024
    """Largest accepted request body (413 beyond). A request is a few hundred
    bytes plus up to 63 proof lines and the log's signatures."""
    evidence_max: int = 10000
    """Most refused-but-correctly-signed checkpoints kept as evidence."""
    request_timeout: float = 10.0
    """Seconds a client may take to send a request body; 408 beyond."""

    def log_verifiers(self) -> dict[str, tuple[Verifier, ...]]:
        """Trusted keys by origin. Raises ConfigError for a bad or ambiguous key."""
        out: dict[str, list[Verifier]] = {}
        for entry in self.logs:
            verifier = entry.verifier()
            origin = entry.effective_origin
            if not origin or any(ch < " " for ch in origin):
                raise ConfigError(f"log origin {origin!r} is empty or has a control character")
            keys = out.setdefault(origin, [])
            if verifier in keys:
                continue
            if any((v.name, v.key_id) == (verifier.name, verifier.key_id) for v in keys):
                raise ConfigError(
                    f"two different keys named {verifier.name}+{verifier.key_id:08x} for "
                    f"origin {origin!r}; signatures by them would be ambiguous"
                )
            keys.append(verifier)
        return {origin: tuple(keys) for origin, keys in out.items()}

    def validate(self) -> None:
        self.host_port  # noqa: B018 (parses and raises)
        try:
            check_key_name(self.name)
        except FormatError as exc:
            raise ConfigError(f"witness name: {exc}") from None
        if self.max_request_bytes < 1024:
            raise ConfigError("max_request_bytes must be at least 1024")
        if self.evidence_max < 0:
            raise ConfigError("evidence_max must not be negative")
        if self.request_timeout <= 0:
            raise ConfigError("request_timeout must be positive")
        check_logging(self.log_format, self.log_level)
        self.log_verifiers()


def _parse_log_tables(raw: Any, source: str) -> list[WitnessedLog]:
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'log' must be an array of tables ([[log]])")
    out = []
    for i, table in enumerate(raw, 1):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: log entry {i} is not a table ([[log]])")
        unknown = set(table) - {"key", "origin"}
        if unknown:
            raise ConfigError(f"{source}: log entry {i} has unknown setting(s) {sorted(unknown)}")
        key, origin = table.get("key"), table.get("origin", "")
        if not isinstance(key, str) or not key:
            raise ConfigError(f'{source}: log entry {i} needs key = "<verifier key>"')
        if not isinstance(origin, str):
            raise ConfigError(f"{source}: log entry {i}: origin must be a string")
        out.append(WitnessedLog(key, origin))
    return out


def _logs_override(value: Any, source: str) -> list[WitnessedLog]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{source}: logs has an invalid value {value!r}")
    out = []
    for item in value:
        if isinstance(item, WitnessedLog):
            out.append(item)
        elif isinstance(item, str):
            out.append(WitnessedLog(item))
        else:
            raise ConfigError(f"{source}: log {item!r} is not a verifier key")
    return out


def load_witness_config(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> WitnessConfig:
    """Build the effective configuration: defaults < file < environment < overrides.

    The file is ``path``, else ``$SIGLEDGER_WITNESS_CONFIG`` if set. Example::

        data = "/var/lib/sigledger-witness"
        listen = "0.0.0.0:8081"
        name = "witness.example.org/w1"

        [[log]]
        key = "log.example.org/releases+1234abcd+AV...="

        [[log]]                                   # origin other than the key name
        key = "go.sum database tree+033de0ae+Ac4z...="
        origin = "go.sum database tree"

    Override keys are the field names (``logs`` takes a list of vkey strings);
    a value of None means "not given". Unknown keys anywhere are a ConfigError.
    """
    return load_settings(
        WitnessConfig(),
        ENV_PREFIX,
        path,
        overrides,
        environ,
        tables={"log": ("logs", _parse_log_tables)},
        flags={"logs": _logs_override},
    )
