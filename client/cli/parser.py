"""The argparse tree of the ``sigledger`` command.

Conventions (those of pip and uv): ``-v/--verbose`` and ``-q/--quiet`` are
accepted before the command and after it; every command that reports takes
``--json``; a usage error names the command it belongs to and prints that
command's usage. Each command's parser records its handler's name
(``handler``, a key of :data:`sigledger.client.cli.commands.HANDLERS`) and
itself (``command_parser``). Building the tree imports nothing but argparse,
so ``sigledger --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from sigledger.client.cli.output import EXIT_MEANINGS


class UsageError(Exception):
    """A command line argparse refused; carries the usage of the parser that refused it."""

    def __init__(self, message: str, usage: str, prog: str) -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, so the caller can render them
    (as text, or as JSON with ``--json``) with the usage of the failing command."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage(), self.prog)


def _env(name: str) -> str | None:
    return os.environ.get("SIGLEDGER_" + name) or None


def _exit_codes() -> str:
    width = max(len(str(code)) for code in EXIT_MEANINGS)
    lines = [f"  {code:<{width}}  {meaning}" for code, meaning in EXIT_MEANINGS.items()]
    return "exit codes:\n" + "\n".join(lines)


def _chatter(p: argparse.ArgumentParser, default: Any) -> None:
    """``-v``/``-q``; after a command they default to SUPPRESS so they do not reset
    what was given before it."""
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="more detail: full values instead of tables, what was skipped, tracebacks",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="print only data and errors (-qq: no notes either)",
    )


def _json(p: argparse.ArgumentParser, what: str = "print JSON on stdout, errors included") -> None:
    p.add_argument("--json", action="store_true", help=what)


# Options several commands take: one definition each. ``env`` names the variable
# (SIGLEDGER_<env>) that gives the default.
_SHARED: dict[str, dict[str, Any]] = {
    "policy": {
        "flags": ("--policy",),
        "metavar": "FILE",
        "help": "trust policy (env SIGLEDGER_POLICY; default in your config directory)",
    },
    "log": {
        "flags": ("--log",),
        "metavar": "URL",
        "env": "LOG",
        "help": "log URL (env SIGLEDGER_LOG)",
    },
    "log_key": {
        "flags": ("--log-key",),
        "metavar": "VKEY",
        "env": "LOG_KEY",
        "help": "the log's verifier key (env SIGLEDGER_LOG_KEY)",
    },
    "requirement": {
        "flags": ("-r", "--requirement"),
        "action": "append",
        "default": [],
        "metavar": "FILE",
        "help": "a requirements file with --hash pins (repeatable)",
    },
    "lock": {
        "flags": ("--lock",),
        "action": "append",
        "default": [],
        "metavar": "FILE",
        "help": "a pylock.toml or uv.lock lock file (repeatable)",
    },
    "require_index_files": {
        "flags": ("--require-index-files",),
        "action": "store_true",
        "help": "fail on lock entries not from an index (editable trees, directories, VCS)",
    },
    "receipts": {"flags": ("--receipts",), "metavar": "DIR", "help": "receipts folder"},
}


def _shared(p: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Add shared options by name; ``helps`` rewords an option's help for this command."""
    for name in names:
        spec = dict(_SHARED[name])
        flags = spec.pop("flags")
        env = spec.pop("env", None)
        spec.setdefault("default", _env(env) if env else None)
        spec["help"] = helps.get(name, spec["help"])
        p.add_argument(*flags, **spec)


def _command(
    sub: Any, name: str, handler: str, *, reports: bool = True, **kw: Any
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, **kw)
    _chatter(p, argparse.SUPPRESS)
    if reports:
        _json(p)
    p.set_defaults(handler=handler, command_parser=p)
    return p


def build_parser() -> Parser:
    p = Parser(
        prog="sigledger",
        description="A transparency log for Python release files.",
        epilog=_exit_codes(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _chatter(p, 0)
    p.add_argument("-V", "--version", action="version", version="%(prog)s 0.1.0")
    p.set_defaults(json=False, command_parser=p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _serve(sub)
    _migrate(sub)
    _keygen(sub)
    _publish(sub)
    _verify(sub)
    _proxy(sub)
    _observe(sub)
    _frontends(sub)
    _policy(sub)
    _witness(sub)
    _checkpoint(sub)
    _monitor(sub)
    _fsck(sub)
    c = _command(
        sub,
        "completion",
        "completion",
        reports=False,
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish, e.g. "
        "'eval \"$(sigledger completion bash)\"' in ~/.bashrc, "
        "'sigledger completion fish > ~/.config/fish/completions/sigledger.fish'.",
    )
    c.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell")
    return p


def _serve(sub: Any) -> None:
    s = _command(
        sub,
        "serve",
        "serve",
        reports=False,
        help="run a log server",
        description="Run a log server. With no arguments it starts a log on "
        "127.0.0.1:8080 with its data in the user data directory "
        "(~/.local/share/sigledger/log on Linux; printed at start), creating the log key "
        "on first start.",
    )
    s.add_argument(
        "--data",
        metavar="DIR",
        help="data directory (env SIGLEDGER_DATA; default: the user data directory)",
    )
    s.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on, port 0 = any "
        "free port (env SIGLEDGER_LISTEN; default 127.0.0.1:8080)",
    )
    s.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (env SIGLEDGER_CONFIG)"
    )
    s.add_argument(
        "--database",
        metavar="URL",
        help="where the log is stored: sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or "
        "postgresql://USER@HOST:PORT/DBNAME (env SIGLEDGER_DATABASE; default: <data>/log.db)",
    )
    s.add_argument("--origin", help="origin of a new log (default localhost/sigledger)")
    s.add_argument(
        "--witness",
        action="append",
        default=None,
        metavar="'URL VKEY'",
        help="ask this witness to cosign every checkpoint (repeatable; env "
        "SIGLEDGER_WITNESSES, comma-separated)",
    )
    s.add_argument(
        "--witness-quorum",
        type=int,
        default=None,
        metavar="N",
        help="cosignatures required before a checkpoint is published",
    )
    s.add_argument(
        "--observe-index",
        action="append",
        default=None,
        metavar="'URL [FILE_PREFIX ...]'",
        help="observe releases of this simple-API index on demand: a lookup for a release "
        "the log has not observed fetches, hashes and logs its files (repeatable; env "
        "SIGLEDGER_OBSERVE_INDEX, comma-separated)",
    )
    s.add_argument(
        "--publish-dir",
        metavar="DIR",
        help="also write the checkpoint, tiles and entry bundles as static files under DIR "
        "(env SIGLEDGER_PUBLISH_DIR)",
    )
    s.add_argument(
        "--ha",
        action="store_true",
        default=None,
        help="run as one of several servers on one PostgreSQL log: the elected leader "
        "sequences, the others serve reads and forward /add and observing lookups "
        "(env SIGLEDGER_HA)",
    )
    s.add_argument(
        "--internal-url",
        metavar="URL",
        help="with --ha: the URL other servers forward /add to while this one leads "
        "(default: the listening address; env SIGLEDGER_INTERNAL_URL)",
    )
    s.add_argument(
        "--log-format",
        choices=["json", "text", "auto"],
        help="log output format (default auto: text on a terminal, else JSON)",
    )


def _keygen(sub: Any) -> None:
    k = _command(
        sub,
        "keygen",
        "keygen",
        help="create a publisher signing key",
        description="Create an Ed25519 signing key (file mode 0600) and print "
        "its verifier key, which is your identity in the log.",
    )
    k.add_argument("--name", required=True, help="key name, e.g. your project or e-mail")
    k.add_argument("--out", metavar="FILE", help="where to write the key (default: ./<name>.key)")
    k.add_argument("--force", action="store_true", help="overwrite an existing key file")


def _publish(sub: Any) -> None:
    pub = _command(
        sub,
        "publish",
        "publish",
        help="sign release files and log them",
        description="Hash, sign and submit wheels and sdists (other files are skipped). "
        "With --log-key the log's checkpoint is verified before anything is submitted. "
        "Receipts go to .sigledger/<file>.json next to each file (or --receipts DIR), "
        "where 'dist/*' does not reach.",
    )
    pub.add_argument("files", nargs="+", metavar="FILE", help="wheel or sdist files")
    pub.add_argument(
        "--key", metavar="FILE", default=_env("KEY"), help="signing key file (env SIGLEDGER_KEY)"
    )
    pub.add_argument("--dry-run", action="store_true", help="hash and sign, but submit nothing")
    pub.add_argument("--no-receipts", action="store_true", help="do not write receipt files")
    _shared(
        pub,
        "log",
        "log_key",
        "receipts",
        log_key="the log's verifier key: check its checkpoint before submitting and the "
        "receipts' checkpoint signatures (env SIGLEDGER_LOG_KEY)",
        receipts="write receipts to DIR/<file>.json (default: .sigledger/ next to each file)",
    )


def _lock_options(p: argparse.ArgumentParser) -> None:
    """The target environment of lock files (pip's options) and ``--all-files``."""
    g = p.add_argument_group(
        "target environment",
        "Lock files are checked for the environment they are installed on: markers are "
        "evaluated for it, and of each requirement's files only the one pip would install "
        "there is checked; the others are reported as not for this environment. Default: "
        "this interpreter. The options are pip's.",
    )
    g.add_argument("--python-version", metavar="X.Y[.Z]", default=None, help="Python version")
    g.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="TAG",
        help="platform tag, e.g. win_amd64 or manylinux2014_x86_64 (repeatable)",
    )
    g.add_argument(
        "--implementation", metavar="IMPL", default=None, help="cp, pp, ... (as in wheel tags)"
    )
    g.add_argument("--abi", action="append", default=[], metavar="ABI", help="ABI tag (repeatable)")
    g.add_argument(
        "--all-files",
        action="store_true",
        help="check every hash a lock file lists, for every environment, markers ignored",
    )


_WHICH_LOG = "which of the policy's logs to ask (default: the first)"


def _verify(sub: Any) -> None:
    v = _command(
        sub,
        "verify",
        "verify",
        help="check files, hashes or lock files against the log and your policy",
        description="Check that every artifact is in the log, signed by the signers your "
        "policy requires, under a checkpoint consistent with every one seen before. "
        "Lock files are checked for one environment (this interpreter, or the target "
        "options): the file pip would install for each requirement whose marker holds; "
        "the other listed files are reported as not for this environment, entries not "
        "from an index as not checked. Any failure fails the run.",
    )
    v.add_argument(
        "targets",
        nargs="*",
        metavar="FILE_OR_sha256:HEX",
        help="release files or sha256:<hex> digests",
    )
    _shared(
        v,
        "requirement",
        "lock",
        "require_index_files",
        "policy",
        "log",
        log=_WHICH_LOG,
    )
    v.add_argument(
        "--offline",
        action="store_true",
        help="use only the files' receipts (as 'publish' writes them) and the policy",
    )
    _shared(v, "receipts", receipts="with --offline, look for DIR/<file>.json first")
    _lock_options(v)


# The commands that run an installer, and the words that name them.
FRONTEND_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("pip", "install"),
    ("uv", "pip", "install"),
    ("uv", "sync"),
)
# sigledger's own options of those commands; every other word is the installer's.
_FRONTEND_FLAGS = frozenset({"--json", "--require-index-files", "-v", "--verbose", "-q", "--quiet"})
_FRONTEND_VALUES = frozenset({"--policy", "--log"})


def protect_tool_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--`` put where a front-end command's own options end.

    ``sigledger pip install --json --index-url URL demo``: ``--json`` is
    sigledger's, ``--index-url URL demo`` pip's. Left alone, argparse would take
    ``--index-url`` for an unknown option of sigledger's; after ``--`` the
    REMAINDER argument receives every word as it is. A ``--`` the user gave is kept.
    """
    words = list(argv)
    start = 0
    while start < len(words) and words[start].startswith("-") and words[start] != "--":
        start += 1  # global -v/-q
    for command in FRONTEND_COMMANDS:
        if tuple(words[start : start + len(command)]) != command:
            continue
        index = start + len(command)
        while index < len(words):
            word = words[index]
            name = word.partition("=")[0]
            if word == "--":
                return words
            if name in _FRONTEND_VALUES:
                index += 1 if "=" in word else 2
            elif word in _FRONTEND_FLAGS or re.fullmatch(r"-[vq]+", word):
                index += 1
            elif word in ("-h", "--help"):
                return words
            else:
                break
        return [*words[:index], "--", *words[index:]]
    return words


def tool_args(args: argparse.Namespace) -> list[str]:
    """The installer's arguments of a front-end command (without the ``--``)."""
    words = list(args.tool_args)
    return words[1:] if words[:1] == ["--"] else words


def _frontend(sub: Any, name: str, handler: str, tool: str, what: str, example: str) -> None:
    f = _command(
        sub,
        name,
        handler,
        help=f"verify what {tool} would install against the log, then install exactly that",
        description=f"Resolve with the real {tool} ({what}), verify every chosen file against "
        "the policy's log as 'verify' does, then install only those files with their "
        "hashes enforced. Nothing is installed when anything fails. sigledger's options come "
        f"first; every other argument is {tool}'s, e.g. 'sigledger {handler} --json "
        f"{example}'. Exit codes as for 'verify'. Format and behaviour: "
        "client/install/frontend.py.",
    )
    _shared(
        f,
        "policy",
        "log",
        "require_index_files",
        log=_WHICH_LOG,
        require_index_files="refuse packages not from an index (local directories, editable "
        "trees, VCS checkouts); by default they are installed unchecked and named in the report",
    )
    f.add_argument(
        "tool_args", nargs=argparse.REMAINDER, metavar="ARGS", help=f"{tool}'s own arguments"
    )


def _frontends(sub: Any) -> None:
    pip = sub.add_parser("pip", help="pip install, verified against the log first")
    _chatter(pip, argparse.SUPPRESS)
    pip.set_defaults(command_parser=pip)
    pip_sub = pip.add_subparsers(dest="pip_command", metavar="ACTION", required=True)
    _frontend(
        pip_sub,
        "install",
        "pip install",
        "pip",
        "pip install --dry-run --report",
        "--index-url URL sampleproject",
    )
    uv = sub.add_parser("uv", help="uv pip install / uv sync, verified against the log first")
    _chatter(uv, argparse.SUPPRESS)
    uv.set_defaults(command_parser=uv)
    uv_sub = uv.add_subparsers(dest="uv_command", metavar="ACTION", required=True)
    uv_pip = uv_sub.add_parser("pip", help="uv pip install, verified against the log first")
    _chatter(uv_pip, argparse.SUPPRESS)
    uv_pip.set_defaults(command_parser=uv_pip)
    uv_pip_sub = uv_pip.add_subparsers(dest="uv_pip_command", metavar="ACTION", required=True)
    _frontend(
        uv_pip_sub,
        "install",
        "uv pip install",
        "uv",
        "uv pip compile",
        "--python .venv/bin/python sampleproject",
    )
    _frontend(uv_sub, "sync", "uv sync", "uv", "uv lock, then uv.lock", "--no-dev")


def _proxy(sub: Any) -> None:
    px = _command(
        sub,
        "proxy",
        "proxy",
        reports=False,
        help="serve an index that shows and serves only logged, trusted files",
        description="Serve the simple repository API (PEP 503 HTML, PEP 691 JSON) of an "
        "upstream index, keeping only files the policy's log holds and trusts, with hashes "
        "from the log; downloads are checked against the logged hash before they are served. "
        "Point pip, uv, poetry or pdm at http://HOST:PORT/simple/ (--index-url). "
        "Format and behaviour: client/install/proxy.py.",
    )
    px.add_argument(
        "--upstream",
        required=True,
        metavar="URL_OR_DIR",
        help="the upstream simple index (e.g. https://pypi.org/simple/), or a directory "
        "(or file:// URL) of release files",
    )
    px.add_argument(
        "--listen", metavar="HOST:PORT", default="127.0.0.1:8090", help="default 127.0.0.1:8090"
    )
    _shared(px, "policy", "log", log=_WHICH_LOG)
    px.add_argument(
        "--unlisted",
        choices=["require-any-signer", "pass-through"],
        default="require-any-signer",
        help="projects without a rule (and no [default]) in the policy: require the file "
        "to be signed in the log by some signer (default; observations do not count), or "
        "serve it unverified with a warning. A policy from 'policy pin' has a [default] "
        "(the log's observer), so this never applies to it",
    )
    px.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="verified files and tiles (default: proxy/ in the user cache directory)",
    )
    px.add_argument(
        "--cache-size",
        type=int,
        default=2048,
        metavar="MB",
        help="bound of the verified file cache in MiB (default 2048)",
    )
    px.add_argument(
        "--state",
        metavar="DIR",
        default=None,
        help="checkpoint memory and the stop flag (default: proxy/ in the user state directory)",
    )
    px.add_argument(
        "--page-ttl",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="reuse a checked project page this long (default 30; 0: check every request)",
    )
    px.add_argument(
        "--observer-key",
        metavar="FILE",
        default=_env("OBSERVER_KEY"),
        help="log every verified download as an observation signed with this key "
        "(env SIGLEDGER_OBSERVER_KEY)",
    )
    px.add_argument(
        "--json-log", action="store_true", help="log one JSON object per line (default: text)"
    )


def _observe(sub: Any) -> None:
    ob = _command(
        sub,
        "observe",
        "observe",
        help="log the hash of every file an index serves, as an observer",
        description="Download the release files of PROJECTs (default: every project of the "
        "index) through the simple API, hash them and log signed observations under your "
        "observer key; a state file remembers what was observed, so a rerun submits only "
        "new files. If the log refuses an observation because this key already logged "
        "another hash for that file, the index changed a published file: an ALARM with "
        "both statements is reported and the exit status is 1 (also when a file could "
        "not be read; 3 when the log or the index cannot be reached). "
        "Format and behaviour: client/install/observe.py.",
    )
    ob.add_argument("projects", nargs="*", metavar="PROJECT", help="projects to observe")
    ob.add_argument(
        "--index",
        default=_env("INDEX"),
        metavar="URL",
        help="the simple index, e.g. https://pypi.org/simple/ (env SIGLEDGER_INDEX)",
    )
    _shared(ob, "log", "log_key", log_key="the log's verifier key: check every receipt")
    ob.add_argument(
        "--key",
        default=_env("KEY"),
        metavar="FILE",
        help="the observer's signing key file (sigledger keygen; env SIGLEDGER_KEY)",
    )
    ob.add_argument(
        "--state",
        metavar="FILE",
        default=None,
        help="what was observed (default: observe/ in the user state directory)",
    )
    ob.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="page reads and downloads at once (default 8)",
    )
    ob.add_argument(
        "--follow",
        action="store_true",
        help="keep going: observe new files every --interval seconds until interrupted "
        "(with --json, one JSON object per line and pass)",
    )
    ob.add_argument(
        "--interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --follow, the pause between passes (default 300)",
    )


def _policy(sub: Any) -> None:
    pol = sub.add_parser("policy", help="manage the trust policy")
    _chatter(pol, argparse.SUPPRESS)
    pol.set_defaults(command_parser=pol)
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    pin = _command(
        pol_sub,
        "pin",
        "policy pin",
        help="trust, per project, the signers the log shows for your locked hashes",
        description="Look up the given files and hashes, and the locked files in scope "
        "for the target environment (as 'verify' chooses them), and write a policy "
        "that requires, for each project, the signers that logged exactly those hashes. "
        "Files the log does not show are reported and not pinned; the policy is "
        "written for the rest (exit 1), or not at all with --strict.",
    )
    pin.add_argument(
        "targets",
        nargs="*",
        metavar="FILE_OR_sha256:HEX",
        help="release files or sha256:<hex> digests, as for 'verify'",
    )
    _shared(pin, "requirement", "lock", "log", "log_key", "policy", policy="policy file to update")
    pin.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="signers required per project (default: keep, else 1)",
    )
    pin.add_argument(
        "--strict",
        action="store_true",
        help="write nothing unless every file in scope is in the log",
    )
    _lock_options(pin)


def _witness(sub: Any) -> None:
    w = sub.add_parser("witness", help="run a witness (c2sp.org/tlog-witness)")
    _chatter(w, argparse.SUPPRESS)
    w.set_defaults(command_parser=w)
    w_sub = w.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    ws = _command(
        w_sub,
        "serve",
        "witness serve",
        reports=False,
        help="run a witness server",
        description="Cosign checkpoints of the configured logs, only ever consistently. With no "
        "arguments it starts on 127.0.0.1:8081 with its data in the user data directory "
        "(~/.local/share/sigledger/witness on Linux; printed at start), creating its key on "
        "first start.",
    )
    ws.add_argument(
        "--data",
        metavar="DIR",
        help="data directory (env SIGLEDGER_WITNESS_DATA; default: the user data directory)",
    )
    ws.add_argument("--listen", metavar="HOST:PORT", help="address (default 127.0.0.1:8081)")
    ws.add_argument("--config", metavar="FILE", help="TOML configuration file")
    ws.add_argument("--name", help="witness key name for a new witness")
    ws.add_argument(
        "--log",
        action="append",
        default=None,
        metavar="VKEY",
        help="witness this log (its verifier key; origin = key name); repeatable",
    )
    ws.add_argument("--log-format", choices=["json", "text", "auto"], help="log output format")


def _checkpoint(sub: Any) -> None:
    c = _command(sub, "checkpoint", "checkpoint", help="show a log's current checkpoint")
    _shared(
        c, "log", "log_key", log_key="verify the checkpoint with this key (env SIGLEDGER_LOG_KEY)"
    )


def _monitor(sub: Any) -> None:
    mon = _command(
        sub,
        "monitor",
        "monitor",
        help="follow logs, re-verify everything they serve and raise alarms",
        description="Follow logs through the tlog-tiles read API only: verify every new "
        "checkpoint (signature, witnesses, consistency), re-hash, decode and signature-check "
        "every entry, index them, and print one JSON line per alarm on stdout (format: "
        "client/monitor/watcher.py). The logs come from --log/--log-key pairs, else from the "
        "policy. With --once: exit 0 no alarm, 1 an alarm or a failed check, 3 a log "
        "unreachable, 4 evidence of log misbehavior.",
    )
    mon.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help="trust policy: its logs (unless --log is given), witnesses and projects "
        "(all watched) (env SIGLEDGER_POLICY; default in your config directory)",
    )
    mon.add_argument(
        "--log", action="append", default=[], metavar="URL", help="a log to follow (repeatable)"
    )
    mon.add_argument(
        "--log-key",
        action="append",
        default=[],
        metavar="VKEY",
        help="the verifier key of each --log, in the same order",
    )
    mon.add_argument(
        "--state",
        metavar="FILE",
        default=None,
        help="state database (default: monitor.db in the user state directory, "
        "or $SIGLEDGER_STATE_DIR)",
    )
    mon.add_argument("--once", action="store_true", help="catch up once, then exit")
    mon.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between passes without --once (default 60)",
    )
    mon.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="PROJECT",
        help="alarm on new releases and new signers of this project (repeatable)",
    )
    mon.add_argument("--webhook", metavar="URL", help="also POST every alarm as JSON here")
    mon.add_argument(
        "--stale-after",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="alarm when a checkpoint stays unchanged this long (default 86400)",
    )
    mon.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for large catch-ups (default: the CPU count)",
    )


def _fsck(sub: Any) -> None:
    fs = _command(
        sub,
        "fsck",
        "fsck",
        help="audit a whole log once",
        description="Fetch the checkpoint and every hash tile and entry bundle of a "
        "tlog-tiles log; check every tile against its parent and the root, re-hash, decode "
        "and signature-check every entry. Exit 1 on any failure.",
    )
    fs.add_argument("url", metavar="URL", help="log URL")
    _shared(fs, "log_key")
    fs.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for checking entries (default: the CPU count)",
    )


def _migrate(sub: Any) -> None:
    m = _command(
        sub,
        "migrate",
        "migrate",
        help="copy a log to another database and prove the copy",
        description="Copy a stopped log from one database to an empty other one (SQLite or "
        "PostgreSQL, either way): metadata, entries, hash tiles, tree heads and their signed "
        "notes, in batches. Then prove the copy: its entries and tiles must hash to every "
        "copied tree head and to the source's newest root. The target must be empty; the "
        "source is only read (after its schema is brought up to date, as a server would). "
        "URLs: sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or "
        "postgresql://USER@HOST:PORT/DBNAME (password from PGPASSWORD or ~/.pgpass).",
    )
    m.add_argument("--from", dest="source", required=True, metavar="URL", help="the log's database")
    m.add_argument("--to", dest="target", required=True, metavar="URL", help="an empty database")
    m.add_argument(
        "--batch",
        type=int,
        default=5000,
        metavar="ROWS",
        help="rows copied per transaction (default 5000)",
    )
