"""Service configuration: a TOML file, environment variables, flags.

:func:`load_settings` is the one loader behind every service's settings (the log's
:class:`ServerConfig` here, the witness's in :mod:`sigledger.ledger.witness.config`).
Precedence, highest first: command-line flags (``overrides``; None means "not
given"), environment variables (``<prefix><NAME>``), the TOML file (``path``, else
``$<prefix>CONFIG``), the dataclass defaults. Each scalar field is a TOML key
(``-`` and ``_`` alike) and an environment variable; values are coerced to the
field's type (lists come from the environment comma-separated). Unknown keys are
an error, so a typo never silently falls back to a default. The result is
``validate()``-d before it is returned.

Example ``sigledger.toml``::

    data = "/var/lib/sigledger"
    listen = "127.0.0.1:8080"
    origin = "log.example.org/releases"
    batch_max_age = 0.05
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import platformdirs

from sigledger.ledger.entry import check_index_url
from sigledger.ledger.errors import ConfigError, FormatError

ENV_PREFIX = "SIGLEDGER_"
APP_NAME = "sigledger"
DEFAULT_ORIGIN = "localhost/sigledger"
LOG_FORMATS = ("json", "text", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DATABASE_SCHEMES = ("sqlite:", "postgresql://", "postgres://")


def default_data_dir(service: str) -> str:
    """``<user data directory>/sigledger/<service>`` (``service``: ``log``, ``witness``):
    where pip and uv users expect an application's data (``~/.local/share`` on Linux),
    never clutter in whatever directory the command was started from."""
    return str(Path(platformdirs.user_data_dir(APP_NAME)) / service)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) to (host, port); ConfigError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ServiceSettings:
    """What every service's settings have: a data directory holding the database
    (``DB_FILE``) and, unless ``key_file`` says otherwise, the key (``KEY_FILE``),
    and a ``listen`` address."""

    DB_FILE: ClassVar[str]
    KEY_FILE: ClassVar[str]
    data: str
    listen: str
    key_file: str

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.DB_FILE

    @property
    def key_path(self) -> Path:
        return Path(self.key_file) if self.key_file else self.data_dir / self.KEY_FILE

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


@dataclass
class ServerConfig(ServiceSettings):
    """Every setting of ``sigledger serve``. Each field is also a TOML key and an
    environment variable (``SIGLEDGER_`` + the upper-cased name)."""

    DB_FILE = "log.db"
    KEY_FILE = "log.key"

    data: str = field(default_factory=lambda: default_data_dir("log"))
    """Data directory: holds ``log.db`` (SQLite, unless ``database`` names another
    database) and ``log.key`` (mode 0600). Default: ``log`` in the user data
    directory (``~/.local/share/sigledger/log`` on Linux); ``serve`` prints it."""
    database: str = ""
    """Where the log is stored: a SQLite file, ``sqlite:///ABSOLUTE/PATH`` or
    ``sqlite:RELATIVE/PATH``, or PostgreSQL, ``postgresql://USER@HOST:PORT/DBNAME``
    (password from PGPASSWORD or ~/.pgpass). Default: the file ``<data>/log.db``."""
    listen: str = "127.0.0.1:8080"
    """HOST:PORT to listen on. Port 0 picks a free port (printed at start)."""
    origin: str = ""
    """Checkpoint origin line and log key name, fixed when the log is created
    (default ``localhost/sigledger``). It should be the log's URL prefix without
    scheme, e.g. ``log.example.org/releases``. Later starts refuse a different one."""
    key_file: str = ""
    """Log signing key (Go ``PRIVATE+KEY+...`` format). Default: ``<data>/log.key``."""
    batch_max_size: int = 4096
    """Most statements integrated in one batch (one commit, one checkpoint)."""
    batch_max_age: float = 0.05
    """Seconds a statement may wait for its batch to fill before the batch is cut."""
    queue_max: int = 65536
    """Most statements waiting for integration; beyond that /add answers 503."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest accepted request body (413 beyond)."""
    max_statements: int = 1000
    """Most statements in one /add request."""
    request_timeout: float = 30.0
    """Seconds a client may take to send a request body; 408 beyond (slow or stalled
    clients cannot hold admission slots)."""
    verify_queue_bytes: int = 16 * 1024 * 1024
    """Most request-body bytes admitted but not yet verified; beyond that /add answers 503
    with Retry-After before reading the body (bounds memory under floods)."""
    verify_queue_requests: int = 256
    """Most /add requests admitted but not yet verified; beyond that 503 with Retry-After."""
    client_rate: float = 50.0
    """/add requests per second allowed per client address (0: no limit); 429 beyond."""
    client_burst: int = 500
    """/add requests a client address may send at once before client_rate applies."""
    signer_rate: float = 50.0
    """Statements per second allowed per signer key (0: no limit); 429 beyond."""
    signer_burst: int = 2000
    """Statements a signer key may submit at once before signer_rate applies."""
    client_ip_header: str = ""
    """Behind a reverse proxy: the header holding the client address (e.g.
    ``X-Forwarded-For``; its last item counts). Empty: the TCP peer address."""
    submitters_file: str = ""
    """Optional allowlist: signer verifier keys allowed to submit, one per line. Empty:
    anyone may submit. Re-read on SIGHUP."""
    verify_workers: int = max(1, (os.cpu_count() or 2) - 1)
    """Worker processes that validate and signature-check large /add requests (0: all in
    the server process). The default leaves one core to the event loop."""
    checkpoint_period: float = 1.0
    """While idle, seconds between storage checks and checkpoint re-publication."""
    stale_after: float = 30.0
    """/healthz fails when the checkpoint was last published longer ago than this."""
    tile_cache: int = 4096
    """Full tiles kept in memory for proof generation (about 17 KB each; the default
    holds every tile of a log of a million entries)."""
    read_cache_mb: int = 256
    """Memory (MB) for full hash tiles and full entry bundles served from memory after
    their first read (immutable, so never stale; least recently served dropped first);
    0 reads every one from storage."""
    witnesses: list[str] = dataclasses.field(default_factory=list)
    """Witnesses asked to cosign every checkpoint, each ``"URL VKEY"`` (the witness's
    submission URL and its cosignature verifier key). Environment: comma-separated."""
    witness_quorum: int = 0
    """Cosignatures required before a checkpoint is published (0 = witnesses optional).
    Until the quorum is met, new entries are stored but not published, submitters get
    503 with Retry-After, and /healthz fails."""
    witness_timeout: float = 3.0
    """Seconds to wait for witnesses per checkpoint; a dead witness costs at most this."""
    witness_refresh: float = 300.0
    """While idle, seconds between fresh witness cosignatures of the same checkpoint, so
    that monitors can tell an idle log from a frozen one."""
    publish_dir: str = ""
    """Static publication: also write every published checkpoint, with the hash tiles
    and entry bundles it needs, as files under this directory at the read API's paths
    (for nginx or a CDN; see :mod:`sigledger.ledger.log.publish`). Empty: off."""
    ha: bool = False
    """High availability (PostgreSQL only): several servers on one database, one of them
    (the leader, elected through the writer lock) sequences; the others serve reads and
    forward /add, and lookups that make the log observe, to it (see
    :mod:`sigledger.ledger.log.ha`). Off: a second server on the database is refused."""
    internal_url: str = ""
    """With ``ha``: the URL other servers reach this one at to forward /add (and
    observing lookups) while it leads (e.g. ``http://10.0.0.5:8080``). Default: the
    address it listens on."""
    observe_index: list[str] = dataclasses.field(default_factory=list)
    """Upstream indexes the log observes on demand (see :mod:`sigledger.ledger.log.observer`),
    each ``"URL [FILE_PREFIX ...]"``: a simple-API base URL (``https://pypi.org/simple/``)
    and the URL prefixes its files may also be served from besides the index's own host
    (``https://files.pythonhosted.org/packages/``). Tried in order. Empty: the log
    observes nothing itself. Environment: comma-separated."""
    observe_max_files: int = 20
    """Most files one lookup makes the log fetch while the client waits; a release
    with more files is answered 202 with Retry-After and observed in the background,
    this many files at a time."""
    observe_concurrency: int = 4
    """Downloads from upstream indexes in flight at once (the whole log)."""
    observe_max_file_mb: int = 1024
    """Largest release file (MB) the log downloads to observe; larger ones are skipped."""
    observe_timeout: float = 120.0
    """Seconds one download (or one index page) may take before it is abandoned."""
    observe_client_rate: float = 1.0
    """Lookups per second that make the log observe, per client address (0: no limit);
    429 beyond. Lookups of what the log already observed are not counted."""
    observe_client_burst: int = 20
    """Observing lookups a client address may make at once before observe_client_rate
    applies."""
    log_format: str = "auto"
    """``json`` (one object per line on stdout), ``text``, or ``auto``: text when
    stdout is a terminal, JSON otherwise (journald, containers, files)."""
    log_level: str = "info"

    def observe_sources(self) -> list[tuple[str, tuple[str, ...]]]:
        """(index URL, file URL prefixes) of each ``observe_index``; the index URL always
        ends with ``/`` (it is what observations name, so it is spelled one way)."""
        out = []
        for item in self.observe_index:
            url, *prefixes = item.split()
            for u in (url, *prefixes):
                scheme, sep, rest = u.partition("://")
                if not sep or scheme not in ("http", "https") or rest[:1] in ("", "/"):
                    raise ConfigError(
                        f"observe_index {item!r}: {u!r} is not an http(s) URL; write "
                        "'URL [FILE_PREFIX ...]', e.g. 'https://pypi.org/simple/ "
                        "https://files.pythonhosted.org/packages/'"
                    )
            base = url if url.endswith("/") else url + "/"
            try:
                check_index_url(base)  # what every observation from it names
            except FormatError as exc:
                raise ConfigError(f"observe_index {item!r}: {exc}") from None
            out.append((base, tuple(prefixes)))
        return out

    @property
    def database_url(self) -> str:
        """The ``database`` setting, or the SQLite file in the data directory."""
        if self.database:
            return self.database
        path = str(self.db_path)
        return f"sqlite://{path}" if path.startswith("/") else f"sqlite:{path}"

    def witness_endpoints(self) -> list[tuple[str, str]]:
        """(url, vkey) of each configured witness."""
        out = []
        for item in self.witnesses:
            url, _, vkey = item.strip().partition(" ")
            if not url.startswith(("http://", "https://")) or not vkey.strip():
                raise ConfigError(f"witness {item!r} must be 'URL VKEY'")
            out.append((url, vkey.strip()))
        return out

    def validate(self) -> None:
        self.host_port  # noqa: B018 (parses and raises)
        for name in (
            "batch_max_size",
            "queue_max",
            "max_request_bytes",
            "max_statements",
            "tile_cache",
            "verify_queue_bytes",
            "verify_queue_requests",
            "client_burst",
            "signer_burst",
            "observe_max_files",
            "observe_concurrency",
            "observe_max_file_mb",
            "observe_client_burst",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.read_cache_mb < 0:
            raise ConfigError("read_cache_mb must be 0 (no cache) or positive")
        for name in ("client_rate", "signer_rate", "observe_client_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (no limit) or positive")
        if self.client_ip_header and not self.client_ip_header.replace("-", "").isalnum():
            raise ConfigError(f"client_ip_header {self.client_ip_header!r} is not a header name")
        for name in (
            "batch_max_age",
            "checkpoint_period",
            "stale_after",
            "request_timeout",
            "observe_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if not 0 <= self.witness_quorum <= len(self.witnesses):
            raise ConfigError(
                f"witness_quorum must be between 0 and the number of witnesses "
                f"({len(self.witnesses)})"
            )
        if self.witness_timeout <= 0 or self.witness_refresh <= 0:
            raise ConfigError("witness_timeout and witness_refresh must be positive")
        self.witness_endpoints()
        self.observe_sources()
        if self.database and not self.database.startswith(DATABASE_SCHEMES):
            raise ConfigError(
                "database must be a URL: sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or "
                "postgresql://USER@HOST:PORT/DBNAME"
            )
        check_logging(self.log_format, self.log_level)
        if self.internal_url and not self.internal_url.startswith(("http://", "https://")):
            raise ConfigError(f"internal_url {self.internal_url!r} must be an http(s) URL")
        if any(c.isspace() for c in self.origin) or "+" in self.origin:
            raise ConfigError(f"origin {self.origin!r} must not contain spaces or '+'")


def check_logging(log_format: str, log_level: str) -> None:
    """ConfigError unless ``log_format`` and ``log_level`` are ones the services know."""
    if log_format not in LOG_FORMATS:
        raise ConfigError("log_format must be 'json', 'text' or 'auto'")
    if log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def coerce_setting(name: str, kind: Any, value: Any, source: str) -> Any:
    """Check and convert one setting from a file, the environment or a flag.

    ``kind`` is a dataclass field type (``int``, ``float``, ``str``, ``bool``,
    ``list[str]``, or their names); lists come from the environment comma-separated,
    booleans as ``true``/``false`` (or ``1``/``0``, ``yes``/``no``).
    """
    if kind in ("list[str]", list[str]):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {name} must be a list of strings")
        return value
    if kind in ("bool", bool):
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, not {value!r}")
        return value
    try:
        if kind in ("int", int):
            if isinstance(value, bool | float):
                raise TypeError
            return int(value)
        if kind in ("float", float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} has an invalid value {value!r}") from None


def read_config_file(path: str) -> dict[str, Any]:
    """The TOML table in ``path``; ConfigError saying what is wrong otherwise."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def settings_from_env(
    env: Mapping[str, str], prefix: str, kinds: Mapping[str, Any]
) -> dict[str, Any]:
    """Settings given as ``<prefix><NAME>`` environment variables."""
    out = {}
    for name, kind in kinds.items():
        value = env.get(prefix + name.upper())
        if value is not None:
            out[name] = coerce_setting(name, kind, value, prefix + name.upper())
    return out


class Settings(Protocol):
    """A settings dataclass: defaults in its fields, checks in ``validate``."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def validate(self) -> None: ...


S = TypeVar("S", bound=Settings)
Parse = Callable[[Any, str], Any]
"""Converts a non-scalar setting's value, given where it came from, or raises ConfigError."""


def load_settings(
    defaults: S,
    prefix: str,
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    tables: Mapping[str, tuple[str, Parse]] | None = None,
    flags: Mapping[str, Parse] | None = None,
) -> S:
    """``defaults`` updated from the file, the environment and ``overrides``, validated.

    Fields named in ``tables`` (file key -> (field, parser)) or ``flags`` (field ->
    parser of its override) are not scalars: they come only from where a parser is
    given, never from the environment.
    """
    env = os.environ if environ is None else environ
    special = {target for target, _ in (tables or {}).values()} | set(flags or {})
    kinds = {f.name: f.type for f in fields(defaults) if f.name not in special}
    values: dict[str, Any] = {}
    path = path or env.get(prefix + "CONFIG")
    if path:
        for key, value in read_config_file(path).items():
            name = key.replace("-", "_")
            if name in (tables or {}):
                target, parse = (tables or {})[name]
                values[target] = parse(value, path)
            elif name in kinds:
                values[name] = coerce_setting(name, kinds[name], value, path)
            else:
                known = [*kinds, *(tables or {})]
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
    values.update(settings_from_env(env, prefix, kinds))
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in (flags or {}):
            values[name] = (flags or {})[name](value, "command line")
        elif name in kinds:
            values[name] = coerce_setting(name, kinds[name], value, "command line")
        else:
            raise ConfigError(f"unknown setting {name!r}")
    cfg = dataclasses.replace(defaults, **values)
    cfg.validate()
    return cfg


def load_config(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """The log server's effective configuration (see :func:`load_settings`)."""
    return load_settings(ServerConfig(), ENV_PREFIX, path, overrides, environ)
