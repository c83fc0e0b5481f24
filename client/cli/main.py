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

from sigledger.ledger.errors import (
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

    v = sub.add_parser(
        "verify",
        help="check files, hashes or lock files against the log and your policy",
        description="Check that every artifact is in the log, signed by the signers your "
        "policy requires, under a checkpoint consistent with every one seen before. "
        "All-or-nothing: any failure fails the run.",
    )
    v.add_argument(
        "targets",
        nargs="*",
        metavar="FILE_OR_sha256:HEX",
        help="release files or sha256:<hex> digests",
    )
    v.add_argument(
        "-r",
        "--requirement",
        action="append",
        default=[],
        metavar="FILE",
        help="a requirements file with --hash pins (repeatable)",
    )
    v.add_argument(
        "--lock",
        action="append",
        default=[],
        metavar="FILE",
        help="a pylock.toml lock file (repeatable)",
    )
    v.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help="trust policy (env SIGLEDGER_POLICY; default in your config directory)",
    )
    v.add_argument(
        "--log",
        metavar="URL",
        default=_env("LOG"),
        help="which of the policy's logs to ask (default: the first)",
    )
    v.add_argument(
        "--offline",
        action="store_true",
        help="use only <file>.sigledger.json receipts and the policy",
    )
    v.add_argument("--json", action="store_true", help="print JSON results on stdout")

    pol = sub.add_parser("policy", help="manage the trust policy")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    pin = pol_sub.add_parser(
        "pin",
        help="trust, per project, the signers the log shows for your locked hashes",
        description="Look up every locked hash in the log and write a policy that requires, "
        "for each project, the signers that logged exactly those hashes.",
    )
    pin.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE")
    pin.add_argument("--lock", action="append", default=[], metavar="FILE")
    pin.add_argument("--log", metavar="URL", default=_env("LOG"), help="log URL")
    pin.add_argument(
        "--log-key", metavar="VKEY", default=_env("LOG_KEY"), help="the log's verifier key"
    )
    pin.add_argument("--policy", metavar="FILE", default=None, help="policy file to update")
    pin.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="signers required per project (default: keep, else 1)",
    )
    pin.add_argument("--json", action="store_true", help="print JSON on stdout")

    w = sub.add_parser("witness", help="run a witness (c2sp.org/tlog-witness)")
    w_sub = w.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    ws = w_sub.add_parser(
        "serve",
        help="run a witness server",
        description="Cosign checkpoints of the configured logs, only ever consistently. With no "
        "arguments it starts on 127.0.0.1:8081 in ./sigledger-witness, creating its key on "
        "first start.",
    )
    ws.add_argument("--data", metavar="DIR", help="data directory (env SIGLEDGER_WITNESS_DATA)")
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

    c = sub.add_parser("checkpoint", help="show a log's current checkpoint")
    c.add_argument("--log", metavar="URL", default=_env("LOG"), help="log URL (env SIGLEDGER_LOG)")
    c.add_argument(
        "--log-key",
        metavar="VKEY",
        default=_env("LOG_KEY"),
        help="verify the checkpoint with this key (env SIGLEDGER_LOG_KEY)",
    )
    c.add_argument("--json", action="store_true", help="print JSON")

    mon = sub.add_parser(
        "monitor",
        help="follow logs, re-verify everything they serve and raise alarms",
        description="Follow logs through the tlog-tiles read API only: verify every new "
        "checkpoint (signature, witnesses, consistency), re-hash, decode and signature-check "
        "every entry, index them, and print one JSON line per alarm on stdout (format: "
        "client/monitor.py). The logs come from --log/--log-key pairs, else from the policy. "
        "With --once: exit 0 no alarm, 1 an alarm or a failed check, 3 a log unreachable, "
        "4 evidence of log misbehavior.",
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

    fs = sub.add_parser(
        "fsck",
        help="audit a whole log once",
        description="Fetch the checkpoint and every hash tile and entry bundle of a "
        "tlog-tiles log; check every tile against its parent and the root, re-hash, decode "
        "and signature-check every entry. Exit 1 on any failure.",
    )
    fs.add_argument("url", metavar="URL", help="log URL")
    fs.add_argument(
        "--log-key",
        metavar="VKEY",
        default=_env("LOG_KEY"),
        help="the log's verifier key (env SIGLEDGER_LOG_KEY)",
    )
    fs.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for checking entries (default: the CPU count)",
    )
    fs.add_argument("--json", action="store_true", help="print a JSON summary")
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
        if args.command == "verify":
            return asyncio.run(cmd_verify(args))
        if args.command == "policy":
            return asyncio.run(cmd_policy_pin(args))
        if args.command == "witness":
            return cmd_witness_serve(args)
        if args.command == "monitor":
            return asyncio.run(cmd_monitor(args))
        if args.command == "fsck":
            return asyncio.run(cmd_fsck(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other CLI tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL
    except LogMisbehaviorError as exc:
        # The evidence is data: print it whole on stdout so it can be saved and shared.
        print(
            json.dumps(
                {
                    "version": 1,
                    "error": "log_misbehavior",
                    "message": str(exc),
                    "evidence": exc.evidence,
                },
                indent=2,
            )
        )
        _err(f"error: {exc.diagnostics()}")
        return EXIT_MISBEHAVIOR
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
    from sigledger.ledger.log.app import run_server
    from sigledger.ledger.service.config import load_config
    from sigledger.ledger.service.diagnostics import configure_logging

    cfg = load_config(
        args.config,
        {
            "data": args.data,
            "listen": args.listen,
            "origin": args.origin,
            "witnesses": args.witness,
            "witness_quorum": args.witness_quorum,
            "log_format": args.log_format,
        },
    )
    configure_logging(cfg.log_format, cfg.log_level)
    asyncio.run(run_server(cfg, announce=_err))
    return EXIT_OK


def cmd_witness_serve(args: argparse.Namespace) -> int:
    from sigledger.ledger.service.diagnostics import configure_logging
    from sigledger.ledger.witness.app import run_witness
    from sigledger.ledger.witness.config import load_witness_config

    cfg = load_witness_config(
        args.config,
        {
            "data": args.data,
            "listen": args.listen,
            "name": args.name,
            "logs": args.log,
            "log_format": args.log_format,
        },
    )
    configure_logging(cfg.log_format, cfg.log_level)
    asyncio.run(run_witness(cfg, announce=_err))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from sigledger.client.publish.submit import generate_key, write_key
    from sigledger.ledger.note import check_key_name

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
    from sigledger.ledger.note import Verifier

    try:
        return Verifier.from_vkey(value)
    except FormatError as exc:
        raise ConfigError(f"--log-key is not a verifier key: {exc}") from None


async def cmd_publish(args: argparse.Namespace) -> int:
    from sigledger.client.publish.submit import load_key, publish
    from sigledger.client.remote import LogRefusedError, NotPublishedError

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
    except (LogRefusedError, NotPublishedError) as exc:
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
            if r.logged_as:
                where += f" as {r.logged_as}"
            verb = {"added": "logged", "existing": "already logged", "dry-run": "would log"}[
                r.status
            ]
            _err(f"OK: {st.filename} {verb}{where} sha256:{st.sha256.hex()}")
        if not log_key and not args.dry_run:
            _err("note: checkpoint signatures not checked; pass --log-key to check them")
    return EXIT_OK


async def cmd_checkpoint(args: argparse.Namespace) -> int:
    from sigledger.client.remote import LogClient
    from sigledger.ledger.checkpoint import open_checkpoint, parse_checkpoint
    from sigledger.ledger.note import parse_note

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


def _policy(path: str | None) -> Any:
    from sigledger.client.install.policy import PolicyError, default_policy_path, load_policy

    p = Path(path) if path else default_policy_path()
    if not p.exists():
        raise PolicyError(
            f"no trust policy at {p}; create one with 'sigledger policy pin -r requirements.txt "
            "--log URL --log-key VKEY' or pass --policy FILE"
        )
    return load_policy(p)


def _read_pins(requirements: list[str], locks: list[str]) -> list[Any]:
    from sigledger.client.install.lockfiles import read_pylock, read_requirements

    pins = []
    for r in requirements:
        pins.extend(read_requirements(r))
    for lock in locks:
        found, unhashed = read_pylock(lock)
        if unhashed:
            raise FormatError(
                f"{lock}: packages without a file hash cannot be checked against "
                f"the log: {', '.join(unhashed)}"
            )
        pins.extend(found)
    return pins


async def cmd_verify(args: argparse.Namespace) -> int:
    from sigledger.client.checkpoints import CheckpointStore
    from sigledger.client.install.checks import (
        Outcome,
        check_artifacts,
        check_offline,
        pin_from_file,
    )
    from sigledger.client.install.lockfiles import Pin, pins_from_args
    from sigledger.client.install.policy import default_cache_dir, default_state_dir
    from sigledger.client.trust import VerifiedLog

    policy = _policy(args.policy)
    artifacts: list[Pin] = []
    for t in args.targets:
        if t.startswith("sha256:"):
            artifacts.extend(pins_from_args([t]))
        elif t.endswith(".sigledger.json") and Path(t).is_file():
            continue  # a receipt (e.g. from dist/*), not an artifact
        elif Path(t).is_file():
            artifacts.append(pin_from_file(Path(t)))
        else:
            raise ConfigError(f"{t} is neither a file nor sha256:<hex>")
    pins = _read_pins(args.requirement, args.lock)
    artifacts.extend(pins)
    if not artifacts:
        raise ConfigError("nothing to verify: give files, sha256:<hex>, -r FILE or --lock FILE")

    if args.offline:
        if pins or any(a.filename is None and not Path(a.name).is_file() for a in artifacts):
            raise ConfigError(
                "--offline checks files against their <file>.sigledger.json "
                "receipts; hashes and lock files need the log"
            )
        outcomes = []
        for a in artifacts:
            receipt_path = Path(a.name + ".sigledger.json")
            try:
                receipt = json.loads(receipt_path.read_text())
            except FileNotFoundError:
                outcomes.append(Outcome(a, False, f"no receipt {receipt_path}"))
                continue
            except ValueError:
                outcomes.append(Outcome(a, False, f"receipt {receipt_path} is not JSON"))
                continue
            outcomes.append(check_offline(policy, a, receipt))
        return _report(args, outcomes, None)

    trust = policy.log_for(args.log) if args.log else policy.logs[0]
    if trust is None:
        raise ConfigError(f"the policy does not trust a log at {args.log}")
    progress = _progress(len(artifacts), args.json)
    try:
        async with VerifiedLog(
            trust.url,
            trust.verifier,
            CheckpointStore(default_state_dir()),
            trust.origin,
            tile_cache=default_cache_dir() / "tiles",
            witnesses=policy.witnesses.verifiers,
            witness_quorum=policy.witnesses.quorum,
        ) as log:
            outcomes = await check_artifacts(
                log,
                policy,
                artifacts,
                progress=(lambda _o: progress.advance()) if progress else None,
            )
            cp = await log.checkpoint()
    finally:
        if progress:
            progress.stop()
    return _report(
        args,
        outcomes,
        {
            "url": trust.url,
            "origin": trust.origin,
            "tree_size": cp.size,
            "root_hash": cp.root.hex(),
        },
    )


class _Progress:
    def __init__(self, total: int) -> None:
        from rich.progress import Progress

        self._p = Progress(transient=True)
        self._task = self._p.add_task("verifying", total=total)
        self._p.start()

    def advance(self) -> None:
        self._p.advance(self._task)

    def stop(self) -> None:
        self._p.stop()


def _progress(total: int, quiet: bool) -> _Progress | None:
    if quiet or total < 10 or not sys.stderr.isatty():
        return None
    return _Progress(total)


def _report(args: argparse.Namespace, outcomes: list[Any], log: dict[str, Any] | None) -> int:
    ok = all(o.ok for o in outcomes)
    if args.json:
        _print_json(
            {"version": 1, "ok": ok, "log": log, "results": [o.to_json() for o in outcomes]}
        )
    elif sys.stderr.isatty() and len(outcomes) > 1:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="sigledger verify", show_lines=False)
        for col in ("", "artifact", "project", "reason"):
            table.add_column(col, overflow="fold")
        for o in outcomes:
            table.add_row(
                "[green]OK[/]" if o.ok else "[red]FAIL[/]",
                o.artifact.name,
                o.project or o.artifact.project or "",
                o.reason,
            )
        Console(stderr=True).print(table)
    else:
        for o in outcomes:
            _err(f"{'OK' if o.ok else 'FAIL'}: {o.artifact.name}: {o.reason}")
    failed = sum(not o.ok for o in outcomes)
    alarms = sum(o.alarm for o in outcomes)
    if not args.json:
        _err(
            f"{len(outcomes) - failed} of {len(outcomes)} verified"
            + (f", {alarms} ALARM(S)" if alarms else "")
            + (f" against {log['origin']} at tree size {log['tree_size']}" if log else "")
        )
    return EXIT_OK if ok else EXIT_FAIL


async def cmd_policy_pin(args: argparse.Namespace) -> int:
    from sigledger.client.checkpoints import CheckpointStore
    from sigledger.client.install.checks import matches
    from sigledger.client.install.policy import (
        LogTrust,
        Policy,
        default_policy_path,
        default_state_dir,
        dump_policy,
        load_policy,
        pin_projects,
    )
    from sigledger.client.trust import VerifiedLog
    from sigledger.ledger.service.files import write_atomically

    url = _need(args.log, "--log", "SIGLEDGER_LOG")
    log_key = _log_key(_need(args.log_key, "--log-key", "SIGLEDGER_LOG_KEY"))
    pins = _read_pins(args.requirement, args.lock)
    if not pins:
        raise ConfigError("nothing to pin: give -r FILE or --lock FILE")
    path = Path(args.policy) if args.policy else default_policy_path()
    policy = load_policy(path) if path.exists() else Policy(logs=(), source=str(path))
    from sigledger.client.remote import normalize_url

    trust = LogTrust(normalize_url(url), log_key, log_key.name)
    signers: dict[str, set[str]] = {}
    missing: list[str] = []
    async with VerifiedLog(
        trust.url, trust.verifier, CheckpointStore(default_state_dir()), trust.origin
    ) as log:
        await log.checkpoint()

        artifacts = pins
        entries = await log.lookup_hashes(
            sorted({a.sha256.hex() for a in artifacts}), related=False
        )
        for a in artifacts:
            found = [e for e in entries if matches(a, e) and e.entry.signed.verify()]
            if not found:
                missing.append(a.name)
            for e in found:
                signers.setdefault(e.entry.statement.project, set()).add(
                    e.entry.signed.signer_vkey()
                )
    if missing:
        for name in sorted(missing):
            _err(f"FAIL: {name}: not in the log")
        raise VerificationError(
            f"{len(missing)} locked hash(es) are not in the log; the policy was not written"
        )
    new = pin_projects(policy, trust, signers, args.threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, dump_policy(new).encode())
    if args.json:
        _print_json(
            {
                "version": 1,
                "policy": str(path),
                "projects": {p: sorted(v) for p, v in sorted(signers.items())},
            }
        )
    else:
        for project, keys in sorted(signers.items()):
            _err(f"pinned {project}: {', '.join(sorted(keys))}")
        _err(f"wrote {path} ({len(signers)} projects)")
    return EXIT_OK


def _monitor_targets(args: argparse.Namespace, policy: Any) -> list[Any]:
    from sigledger.client.monitor.watcher import MonitorTarget
    from sigledger.client.remote import normalize_url

    witnesses = policy.witnesses.verifiers if policy is not None else ()
    quorum = policy.witnesses.quorum if policy is not None else 0
    if args.log or args.log_key:
        if len(args.log) != len(args.log_key):
            raise ConfigError("give one --log-key for each --log, in the same order")
        targets = []
        for url, vkey in zip(args.log, args.log_key, strict=True):
            key = _log_key(vkey)
            targets.append(MonitorTarget(normalize_url(url), key, key.name, witnesses, quorum))
        return targets
    if policy is None:
        raise ConfigError("no log to monitor: give --log URL --log-key VKEY or --policy FILE")
    return [MonitorTarget(t.url, t.verifier, t.origin, witnesses, quorum) for t in policy.logs]


async def cmd_monitor(args: argparse.Namespace) -> int:
    import signal

    from packaging.utils import canonicalize_name

    from sigledger.client.install.policy import default_policy_path, default_state_dir
    from sigledger.client.monitor.watcher import Monitor, exit_status

    if args.interval <= 0 or args.stale_after <= 0:
        raise ConfigError("--interval and --stale-after must be positive")
    if args.workers is not None and args.workers < 0:
        raise ConfigError("--workers must be at least 0")
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise ConfigError("--webhook must be an http:// or https:// URL")
    policy = None
    if args.policy or (not args.log and default_policy_path().exists()):
        policy = _policy(args.policy)
    targets = _monitor_targets(args, policy)
    watch = {str(canonicalize_name(p)) for p in args.watch}
    if policy is not None:
        watch.update(policy.projects)
    state = Path(args.state) if args.state else default_state_dir() / "monitor.db"
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    async with Monitor(
        targets,
        state,
        watch=watch,
        policy=policy,
        webhook=args.webhook,
        stale_after=args.stale_after,
        workers=workers,
    ) as monitor:
        if args.once:
            return exit_status(await monitor.run_once())
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await monitor.run_forever(args.interval, stop)
    return EXIT_OK


async def cmd_fsck(args: argparse.Namespace) -> int:
    import concurrent.futures
    import time

    from sigledger.client.monitor.audit import TileAuth, audit_log
    from sigledger.client.monitor.watcher import POOL_THRESHOLD, worker_pool
    from sigledger.client.remote import LogClient, LogRefusedError
    from sigledger.ledger.checkpoint import open_checkpoint

    key = _log_key(_need(args.log_key, "--log-key", "SIGLEDGER_LOG_KEY"))
    if args.workers is not None and args.workers < 0:
        raise ConfigError("--workers must be at least 0")
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    pool: concurrent.futures.Executor | None = None
    progress_ctx: Any = None
    async with LogClient(args.url) as client:
        note = await client.checkpoint()
        try:
            cp, _ = open_checkpoint(note, key, key.name)
        except FormatError as exc:
            raise VerificationError(f"the log's checkpoint is malformed: {exc}") from None
        except VerificationError as exc:
            raise VerificationError(
                f"the checkpoint from {client.url} is not signed by {key.vkey}: {exc}"
            ) from None
        if workers >= 2 and cp.size >= POOL_THRESHOLD:
            pool = worker_pool(workers)
        if sys.stderr.isatty() and not args.json:
            from rich.progress import Progress

            progress_ctx = Progress(transient=True)
            task = progress_ctx.add_task(f"fsck {cp.origin}", total=cp.size)
            progress_ctx.start()

            def progress(done: int) -> None:
                progress_ctx.update(task, completed=done)

        else:
            last = [time.monotonic()]

            def progress(done: int) -> None:
                if time.monotonic() - last[0] >= 5 or done == cp.size:
                    last[0] = time.monotonic()
                    _err(f"checked {done:,} of {cp.size:,} entries")

        try:
            report = await audit_log(TileAuth(client, cp, note), executor=pool, progress=progress)
        except LogRefusedError as exc:
            raise VerificationError(
                f"{client.url} does not serve data its checkpoint {cp.size} commits to: {exc}"
            ) from None
        finally:
            if progress_ctx is not None:
                progress_ctx.stop()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    summary = {
        "version": 1,
        "ok": report.ok,
        "log": {
            "url": report.url,
            "origin": cp.origin,
            "tree_size": cp.size,
            "root_hash": cp.root.hex(),
            "log_key": key.vkey,
        },
        "checkpoint": note.decode(),
        "entries_checked": report.entries_checked,
        "tiles_checked": report.tiles_checked,
        "tiles_unchecked": report.tiles_unchecked,
        "root_from_entries": report.root_from_entries.hex() if report.root_from_entries else None,
        "seconds": round(report.seconds, 3),
        "failures": [
            {"type": f.type, "index": f.index, "message": f.message, "evidence": f.evidence}
            for f in report.findings
        ],
    }
    if args.json:
        _print_json(summary)
    else:
        for f in report.findings:
            where = f" (entry {f.index})" if f.index is not None else ""
            print(f"FAIL: {f.type}{where}: {f.message}")
        verdict = "OK" if report.ok else f"FAIL ({len(report.findings)} problems)"
        print(
            f"{verdict}: {cp.origin} at tree size {cp.size:,}: {report.entries_checked:,} "
            f"entries and {report.tiles_checked:,} hash tiles checked in {report.seconds:.1f} s"
        )
    return EXIT_OK if report.ok else EXIT_FAIL
