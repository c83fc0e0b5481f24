"""The ``sigledger`` command: a thin layer over :mod:`client` and :mod:`ledger`.

Exit codes: 0 success; 1 refused by the log or a verification failure; 2 usage
or configuration error; 3 network failure; 4 evidence of log misbehavior.
Data goes to stdout (``--json`` for machines); messages and progress go to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.errors import (
    ConfigError,
    FormatError,
    LedgerError,
    LogMisbehaviorError,
    NetworkError,
    VerificationError,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NETWORK, EXIT_MISBEHAVIOR = 0, 1, 2, 3, 4


def _env(name: str) -> str | None:
    return os.environ.get("SIGLEDGER_" + name) or None


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigledger",
        description="A transparency log for Python release files.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    p.add_argument("-V", "--version", action="version", version="%(prog)s 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser(
        "serve",
        help="run a log server",
        description="Run a log server. With no arguments it starts a log on "
        "127.0.0.1:8080 in ./sigledger-data, creating the log key on first start.",
    )
    s.add_argument("--data", metavar="DIR", help="data directory (env SIGLEDGER_DATA)")
    s.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on, port 0 = any "
        "free port (env SIGLEDGER_LISTEN; default 127.0.0.1:8080)",
    )
    s.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (env SIGLEDGER_CONFIG)"
    )
    s.add_argument("--origin", help="origin of a new log (default localhost/sigledger)")
    s.add_argument(
        "--log-format",
        choices=["json", "text", "auto"],
        help="log output format (default auto: text on a terminal, else JSON)",
    )

    k = sub.add_parser(
        "keygen",
        help="create a publisher signing key",
        description="Create an Ed25519 signing key (file mode 0600) and print "
        "its verifier key, which is your identity in the log.",
    )
    k.add_argument("--name", required=True, help="key name, e.g. your project or e-mail")
    k.add_argument("--out", metavar="FILE", help="where to write the key (default: ./<name>.key)")
    k.add_argument("--force", action="store_true", help="overwrite an existing key file")
    k.add_argument("--json", action="store_true", help="print JSON")

    pub = sub.add_parser(
        "publish",
        help="sign release files and log them",
        description="Hash, sign and submit wheels/sdists; write <file>.sigledger.json receipts.",
    )
    pub.add_argument("files", nargs="+", metavar="FILE", help="wheel or sdist files")
    pub.add_argument(
        "--log", metavar="URL", default=_env("LOG"), help="log URL (env SIGLEDGER_LOG)"
    )
    pub.add_argument(
        "--key", metavar="FILE", default=_env("KEY"), help="signing key file (env SIGLEDGER_KEY)"
    )
    pub.add_argument(
        "--log-key",
        metavar="VKEY",
        default=_env("LOG_KEY"),
        help="the log's verifier key: check the receipts' checkpoint signature "
        "(env SIGLEDGER_LOG_KEY)",
    )
    pub.add_argument("--dry-run", action="store_true", help="hash and sign, but submit nothing")
    pub.add_argument("--no-receipts", action="store_true", help="do not write receipt files")
    pub.add_argument("--json", action="store_true", help="print JSON results on stdout")

    c = sub.add_parser("checkpoint", help="show a log's current checkpoint")
    c.add_argument("--log", metavar="URL", default=_env("LOG"), help="log URL (env SIGLEDGER_LOG)")
    c.add_argument(
        "--log-key",
        metavar="VKEY",
        default=_env("LOG_KEY"),
        help="verify the checkpoint with this key (env SIGLEDGER_LOG_KEY)",
    )
    c.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "keygen":
            return cmd_keygen(args)
        if args.command == "publish":
            return asyncio.run(cmd_publish(args))
        if args.command == "checkpoint":
            return asyncio.run(cmd_checkpoint(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except LedgerError as exc:
        if args.verbose:
            raise
        _err(f"error: {exc.diagnostics()}")
        if not args.verbose:
            _err("(run sigledger with --verbose for details)")
        return exit_code_for(exc)
    parser.error(f"unknown command {args.command}")


def exit_code_for(exc: LedgerError) -> int:
    if isinstance(exc, LogMisbehaviorError):
        return EXIT_MISBEHAVIOR
    if isinstance(exc, ConfigError | FormatError):
        return EXIT_USAGE
    if isinstance(exc, NetworkError):
        return EXIT_NETWORK
    return EXIT_FAIL


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def cmd_serve(args: argparse.Namespace) -> int:
    from ledger.config import load_config
    from ledger.logs import configure_logging
    from ledger.server import run_server

    cfg = load_config(
        args.config,
        {
            "data": args.data,
            "listen": args.listen,
            "origin": args.origin,
            "log_format": args.log_format,
        },
    )
    configure_logging(cfg.log_format, cfg.log_level)
    asyncio.run(run_server(cfg, announce=_err))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from client.publish import generate_key, write_key
    from ledger.note import check_key_name

    check_key_name(args.name)
    signer = generate_key(args.name)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.name)
    out = Path(args.out) if args.out else Path(f"{safe}.key")
    write_key(out, signer, overwrite=args.force)
    if args.json:
        _print_json(
            {
                "key_file": str(out),
                "vkey": signer.vkey,
                "name": signer.name,
                "key_id": f"{signer.key_id:08x}",
            }
        )
    else:
        _err(f"wrote signing key to {out} (keep it secret; mode 0600)")
        _err("your verifier key (share it; installers pin it):")
        print(signer.vkey)
    return EXIT_OK


def _need(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise ConfigError(f"{flag} is required (or set {env})")
    return value


def _log_key(value: str | None) -> Any:
    if not value:
        return None
    from ledger.note import Verifier

    try:
        return Verifier.from_vkey(value)
    except FormatError as exc:
        raise ConfigError(f"--log-key is not a verifier key: {exc}") from None


async def cmd_publish(args: argparse.Namespace) -> int:
    from client.publish import load_key, publish
    from client.remote import LogRefusedError

    key = load_key(Path(_need(args.key, "--key", "SIGLEDGER_KEY")))
    url = None if args.dry_run else _need(args.log, "--log", "SIGLEDGER_LOG")
    paths = [Path(f) for f in args.files]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"{p} is not a file")
    log_key = _log_key(args.log_key)

    progress_cb = None
    progress_ctx = None
    if len(paths) > 20 and sys.stderr.isatty() and not args.json:
        from rich.progress import Progress

        progress_ctx = Progress(transient=True)
        task = progress_ctx.add_task("publishing", total=len(paths))
        progress_cb = lambda n: progress_ctx.advance(task, n)  # noqa: E731
        progress_ctx.start()
    try:
        results = await publish(
            url or "",
            key,
            paths,
            log_key=log_key,
            dry_run=args.dry_run,
            write_receipts=not args.no_receipts,
            progress=progress_cb,
        )
    except LogRefusedError as exc:
        if args.json:
            _print_json(
                {"version": 1, "error": exc.error_key, "message": str(exc), "details": exc.body}
            )
        raise
    finally:
        if progress_ctx is not None:
            progress_ctx.stop()
    if args.json:
        _print_json({"version": 1, "results": [r.to_json() for r in results]})
    else:
        for r in results:
            st = r.signed.statement
            where = f" (entry #{r.receipt['log_index']})" if r.receipt else ""
            verb = {"added": "logged", "existing": "already logged", "dry-run": "would log"}[
                r.status
            ]
            _err(f"OK: {st.filename} {verb}{where} sha256:{st.sha256.hex()}")
        if not log_key and not args.dry_run:
            _err("note: checkpoint signatures not checked; pass --log-key to check them")
    return EXIT_OK


async def cmd_checkpoint(args: argparse.Namespace) -> int:
    from client.remote import LogClient
    from ledger.checkpoint import open_checkpoint, parse_checkpoint
    from ledger.note import parse_note

    url = _need(args.log, "--log", "SIGLEDGER_LOG")
    log_key = _log_key(args.log_key)
    async with LogClient(url) as client:
        raw = await client.checkpoint()
    try:
        if log_key is not None:
            cp, note = open_checkpoint(raw, log_key)
        else:
            note = parse_note(raw)
            cp = parse_checkpoint(note.text)
    except FormatError as exc:
        raise VerificationError(f"the log's checkpoint is malformed: {exc}") from None
    if args.json:
        _print_json(
            {
                "version": 1,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root_hash": cp.root.hex(),
                "verified": log_key is not None,
                "checkpoint": raw.decode(),
            }
        )
    else:
        sys.stdout.write(raw.decode())
        _err(
            "signature verified" if log_key else "signature NOT verified (pass --log-key to verify)"
        )
    return EXIT_OK
