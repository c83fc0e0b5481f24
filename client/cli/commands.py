"""One short function per command, over library calls.

Each takes the parsed arguments and a :class:`~sigledger.client.cli.output.Ui`
and returns the exit code; failures are raised as
:class:`~sigledger.ledger.errors.LedgerError` and rendered by
:func:`sigledger.client.cli.main.main`. Library modules are imported inside the
functions, so ``sigledger --help`` never loads aiohttp or the crypto stack.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigledger.client.cli.output import (
    EXIT_FAIL,
    EXIT_OK,
    Ui,
    report_fsck,
    report_outcomes,
    report_published,
)
from sigledger.ledger.errors import ConfigError, NetworkError, VerificationError

if TYPE_CHECKING:  # only for types: commands import the library when they run
    from sigledger.client.install.environment import TargetEnvironment
    from sigledger.client.install.policy import Policy
    from sigledger.client.monitor.watcher import MonitorTarget


def _need(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise ConfigError(f"{flag} is required (or set {env})")
    return value


def _workers(value: int | None) -> int:
    if value is not None and value < 0:
        raise ConfigError("--workers must be at least 0")
    return (os.cpu_count() or 1) if value is None else value


# --- services ---------------------------------------------------------------------


def _given(args: argparse.Namespace, **settings: str) -> dict[str, Any]:
    """Setting name -> the value of the flag that sets it (None when not given)."""
    return {setting: getattr(args, flag) for setting, flag in settings.items()}


def _run_service(cfg: Any, run: Callable[..., Coroutine[Any, Any, None]], ui: Ui) -> int:
    from sigledger.ledger.service.diagnostics import configure_logging
    from sigledger.ledger.service.runner import run_service

    configure_logging(cfg.log_format, cfg.log_level)
    run_service(run(cfg, announce=ui.error))
    return EXIT_OK


def serve(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.ledger.log.app import run_server
    from sigledger.ledger.service.config import load_config

    flags = _given(args, data="data", listen="listen", origin="origin", witnesses="witness")
    flags |= _given(args, witness_quorum="witness_quorum", log_format="log_format")
    flags |= _given(args, database="database", publish_dir="publish_dir")
    flags |= _given(args, ha="ha", internal_url="internal_url")
    flags |= _given(args, observe_index="observe_index")
    return _run_service(load_config(args.config, flags), run_server, ui)


def witness_serve(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.ledger.witness.app import run_witness
    from sigledger.ledger.witness.config import load_witness_config

    flags = _given(args, data="data", listen="listen", name="name", logs="log")
    flags |= _given(args, log_format="log_format")
    return _run_service(load_witness_config(args.config, flags), run_witness, ui)


# --- publishers -------------------------------------------------------------------


def keygen(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.publish.files import default_key_path
    from sigledger.client.publish.submit import generate_key, write_key
    from sigledger.ledger.note import check_key_name

    check_key_name(args.name)
    signer = generate_key(args.name)
    out = Path(args.out) if args.out else default_key_path(args.name)
    write_key(out, signer, overwrite=args.force)
    if ui.json:
        ui.data(
            {
                "key_file": str(out),
                "vkey": signer.vkey,
                "name": signer.name,
                "key_id": f"{signer.key_id:08x}",
            }
        )
    else:
        ui.info(f"wrote signing key to {out} (keep it secret; mode 0600)")
        ui.info("your verifier key (share it; installers pin it):")
        print(signer.vkey)
    return EXIT_OK


def publish(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.logkey import parse_log_key
    from sigledger.client.publish.files import receipts_folder, release_files
    from sigledger.client.publish.submit import load_key
    from sigledger.client.publish.submit import publish as publish_files

    key = load_key(Path(_need(args.key, "--key", "SIGLEDGER_KEY")))
    url = "" if args.dry_run else _need(args.log, "--log", "SIGLEDGER_LOG")
    receipts = receipts_folder(args.receipts)
    dists, skipped = release_files(Path(f) for f in args.files)
    for p in skipped:
        ui.note(f"skipping {p}: not a wheel or sdist")
    log_key = parse_log_key(args.log_key) if args.log_key else None
    with ui.progress("publishing", len(dists), min_total=21) as progress:
        results = asyncio.run(
            publish_files(
                url,
                key,
                dists,
                log_key=log_key,
                dry_run=args.dry_run,
                write_receipts=not args.no_receipts,
                receipts_dir=receipts,
                progress=progress.advance,
            )
        )
    return report_published(
        ui, results, [str(p) for p in skipped], checked=log_key is not None, dry_run=args.dry_run
    )


# --- installers -------------------------------------------------------------------


def _target(args: argparse.Namespace) -> TargetEnvironment:
    from sigledger.client.install.inputs import target_environment

    return target_environment(args.python_version, args.platform, args.implementation, args.abi)


def verify(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.install.inputs import artifacts_from_targets, read_locks, require_policy
    from sigledger.client.install.selection import Selection
    from sigledger.client.install.verify import select_inputs, verify_offline, verify_online

    policy = require_policy(args.policy)
    artifacts = artifacts_from_targets(args.targets)
    locks = read_locks(args.requirement, args.lock)
    if not artifacts and not locks:
        raise ConfigError("nothing to verify: give files, sha256:<hex>, -r FILE or --lock FILE")
    if args.offline:
        if locks:
            raise ConfigError(
                "--offline checks files against their receipts; hashes and lock files need the log"
            )
        receipts = Path(args.receipts) if args.receipts else None
        return report_outcomes(ui, verify_offline(policy, artifacts, receipts), None)
    if args.receipts:
        raise ConfigError("--receipts is for --offline; online checks ask the log")
    env = _target(args)
    # Markers and lock entries are checked before any network I/O: a usage error
    # (an undecidable marker) should not wait for the log.
    selection = select_inputs(env, locks, {}, args.all_files) if locks else Selection()
    if selection.not_from_index and args.require_index_files:
        for name in selection.not_from_index:
            ui.error(f"FAIL: {name}: not from an index, cannot be checked against the log")
        raise VerificationError(
            "not from an index, and --require-index-files was given: "
            + ", ".join(selection.not_from_index)
        )
    chosen: list[Selection] = []
    with ui.progress("verifying", len(artifacts) + len(selection.pins), min_total=10) as progress:

        def selected(final: Selection) -> None:
            # The log has said which file each bare hash is: fewer files to check.
            chosen.append(final)
            progress.update(0, len(artifacts) + len(final.pins))

        outcomes, log = asyncio.run(
            verify_online(
                policy,
                artifacts,
                log_url=args.log,
                progress=lambda _o: progress.advance(),
                locks=locks,
                env=env,
                all_files=args.all_files,
                selected=selected,
            )
        )
    return report_outcomes(
        ui, outcomes, log.to_json(), selection=chosen[0] if chosen else None, env=env
    )


def install_frontend(args: argparse.Namespace, ui: Ui) -> int:
    """``sigledger pip install`` / ``uv pip install`` / ``uv sync``: resolve, verify, install."""
    import sys
    import tempfile

    from sigledger.client.cli.parser import tool_args
    from sigledger.client.install.frontend import describe_local, make_frontend
    from sigledger.client.install.inputs import require_policy
    from sigledger.client.install.verify import verify_online

    tool = {"pip install": "pip", "uv pip install": "uv pip", "uv sync": "uv sync"}[args.handler]
    policy = require_policy(args.policy)
    # With --json stdout carries the report alone; the installer's chatter goes to stderr.
    frontend = make_frontend(tool, tool_args(args), out=sys.stderr if ui.json else None)
    with tempfile.TemporaryDirectory(prefix="sigledger-install-") as work:
        ui.info(f"resolving with {frontend.tool} ...")
        plan = frontend.resolve(Path(work))
        local = describe_local(plan.local)
        extra: dict[str, object] = {
            "tool": frontend.tool,
            "installed": False,
            "not_from_index": local,
            "project": plan.members,  # uv sync: the project's own packages, not checked
        }
        if local and args.require_index_files:
            for name in local:
                ui.error(f"FAIL: {name}: not from an index, cannot be checked against the log")
            raise VerificationError(
                f"not from an index, and --require-index-files was given: {', '.join(local)}; "
                "nothing was installed"
            )
        artifacts = plan.pins
        with ui.progress("verifying", len(artifacts), min_total=10) as progress:
            outcomes, log = asyncio.run(
                verify_online(
                    policy, artifacts, log_url=args.log, progress=lambda _o: progress.advance()
                )
            )
        title = f"sigledger {args.handler}"
        if not all(o.ok for o in outcomes):
            code = report_outcomes(ui, outcomes, log.to_json(), extra=extra, title=title)
            for o in outcomes:
                if o.reason.startswith("not in the log"):
                    ui.error(
                        f"  {o.artifact.filename or o.artifact.name}: no log entry holds "
                        f"sha256:{o.artifact.sha256.hex()}, the file {frontend.tool} would "
                        "install: nobody published it to the log, or it was replaced"
                    )
            ui.error(f"nothing was installed: {frontend.tool} was not run")
            return code
        if not ui.json:
            report_outcomes(ui, outcomes, log.to_json(), title=title)
            for name in local:
                ui.note(f"{name}: not from an index, not checked")
        frontend.install(plan, Path(work))
    extra["installed"] = True
    if ui.json:
        return report_outcomes(ui, outcomes, log.to_json(), extra=extra, title=title)
    ui.info(f"installed with {frontend.tool}: {len(plan.pins)} verified file(s)")
    return EXIT_OK


def proxy(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.install.inputs import require_policy
    from sigledger.client.install.policy import default_cache_dir, default_state_dir
    from sigledger.client.install.proxy import ProxyConfig, run_proxy
    from sigledger.client.publish.submit import load_key
    from sigledger.ledger.service.config import parse_listen
    from sigledger.ledger.service.diagnostics import configure_logging

    policy = require_policy(args.policy)
    trust = policy.log_for(args.log) if args.log else policy.logs[0]
    if trust is None:
        raise ConfigError(f"the policy does not trust a log at {args.log}")
    if args.cache_size < 1 or args.page_ttl < 0:
        raise ConfigError("--cache-size must be at least 1 and --page-ttl at least 0")
    host, port = parse_listen(args.listen)
    cfg = ProxyConfig(
        upstream=args.upstream,
        policy=policy,
        log=trust,
        host=host,
        port=port,
        cache_dir=Path(args.cache) if args.cache else default_cache_dir() / "proxy",
        state_dir=Path(args.state) if args.state else default_state_dir() / "proxy",
        cache_bytes=args.cache_size << 20,
        page_ttl=args.page_ttl,
        unlisted=args.unlisted,
        observer=load_key(Path(args.observer_key)) if args.observer_key else None,
    )
    configure_logging("json" if args.json_log else "text")
    # asyncio's own loop: the proxy sends files with loop.sendfile, which uvloop lacks.
    asyncio.run(run_proxy(cfg, announce=ui.error))
    return EXIT_OK


def observe(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.install.observe import (
        ObserverState,
        default_observe_state,
        observe_index,
    )
    from sigledger.client.logkey import parse_log_key
    from sigledger.client.publish.submit import load_key

    index = _need(args.index, "--index", "SIGLEDGER_INDEX")
    url = _need(args.log, "--log", "SIGLEDGER_LOG")
    key = load_key(Path(_need(args.key, "--key", "SIGLEDGER_KEY")))
    log_key = parse_log_key(args.log_key) if args.log_key else None
    if args.concurrency < 1 or args.interval < 0:
        raise ConfigError("--concurrency must be at least 1 and --interval at least 0")
    path = Path(args.state) if args.state else default_observe_state(index, url, key.vkey)
    state = ObserverState.load(path, index, url, key.vkey)
    alarms = errors = 0
    while True:
        with ui.progress(
            "observing", None, lines=lambda done, total: f"observing: {done}/{total} new files"
        ) as progress:
            try:
                report = asyncio.run(
                    observe_index(
                        index,
                        url,
                        key,
                        args.projects,
                        state=state,
                        log_key=log_key,
                        concurrency=args.concurrency,
                        progress=progress.update,
                    )
                )
            except NetworkError as exc:
                if not args.follow:
                    raise
                # A follower outlives a passing outage: say so, try again next pass.
                ui.error(f"FAIL: this pass: {exc}; trying again in {args.interval:g}s")
                time.sleep(args.interval)
                continue
        alarms += len(report.alarms)
        errors += len(report.errors)
        doc = {"version": 1, "state": str(path), **report.to_json()}
        if ui.json and args.follow:
            print(json.dumps(doc), flush=True)  # one line per pass (JSON lines)
        elif ui.json:
            ui.data(doc)
        else:
            for alarm in report.alarms:
                ui.error(alarm.message)
                print(json.dumps(alarm.to_json()["evidence"], indent=2))
            for err in report.errors:
                what = err.get("filename") or err.get("project")
                ui.error(f"FAIL: {what}: {err['reason']}")
            for skip in report.skipped:
                ui.note(f"skipped {skip['filename']}: {skip['reason']}")
            ui.info(
                f"observed {len(report.observed)} new file(s) of {report.files} on "
                f"{report.projects} project page(s) in {report.seconds:.1f}s "
                f"({len(report.alarms)} alarm(s), {len(report.errors)} error(s)); state {path}"
            )
            sys.stdout.flush()
        if not args.follow:
            break
        time.sleep(args.interval)
    return EXIT_FAIL if alarms or errors else EXIT_OK


def policy_pin(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.install.inputs import artifacts_from_targets, read_locks
    from sigledger.client.install.pin import pin_policy
    from sigledger.client.install.policy import default_policy_path
    from sigledger.client.install.verify import select_inputs
    from sigledger.client.logkey import parse_log_key

    url = _need(args.log, "--log", "SIGLEDGER_LOG")
    log_key = parse_log_key(_need(args.log_key, "--log-key", "SIGLEDGER_LOG_KEY"))
    artifacts = artifacts_from_targets(args.targets)
    locks = read_locks(args.requirement, args.lock)
    if not locks and not artifacts:
        raise ConfigError("nothing to pin: give files, sha256:<hex>, -r FILE or --lock FILE")
    env = _target(args)
    if locks:
        select_inputs(env, locks, {}, args.all_files)  # usage errors before any network I/O
    path = Path(args.policy) if args.policy else default_policy_path()
    result = asyncio.run(
        pin_policy(
            url,
            log_key,
            artifacts,
            path,
            threshold=args.threshold,
            locks=locks,
            env=env,
            all_files=args.all_files,
            strict=args.strict,
        )
    )
    projects = {p: sorted(v) for p, v in sorted(result.signers.items())}
    observed = {p: sorted(v) for p, v in sorted(result.observers.items())}
    selection = result.selection
    skipped = selection.skipped if selection is not None else []
    local = selection.not_from_index if selection is not None else []
    if ui.json:
        ui.data(
            {
                "version": 1,
                "ok": not result.missing,
                "policy": str(path),
                "written": result.written,
                "projects": projects,
                "observers": observed,
                "log_observer": result.log_observer,
                "policy_projects": result.policy_projects,
                "not_pinned": result.missing,
                "environment": env.describe(),
                "not_for_environment": [s.to_json() for s in skipped],
                "not_from_index": local,
            }
        )
        return EXIT_FAIL if result.missing else EXIT_OK
    else:
        for name in result.missing:
            ui.error(f"FAIL: {name}: not in the log, not pinned")
        for name in local:
            ui.note(f"{name}: not from an index, not pinned")
        if ui.verbose:
            for s in skipped:
                ui.info(f"SKIP: {s.pin.name}: {s.reason}")
        for project, keys in projects.items():
            ui.info(f"pinned {project}: {', '.join(keys)}")
        for project, keys in observed.items():
            ui.info(f"pinned {project} observers: {', '.join(keys)}")
        if result.log_observer:
            ui.info(f"the log's observer: {result.log_observer}")
        if result.written:
            counts = [
                f"{result.policy_projects} project(s) in the policy, "
                f"{len({*projects, *observed})} pinned now"
            ]
            if selection is not None:
                counts.append(f"{len(skipped)} file(s) not for {env.describe()}")
            ui.info(f"wrote {path} ({'; '.join(counts)})")
        elif not result.missing:
            ui.note(f"nothing to pin for {env.describe()}; {path} was not changed")
    if result.missing:
        if result.written:
            raise VerificationError(
                f"{len(result.missing)} locked file(s) are not in the log and were not "
                f"pinned; the policy was written for the rest ({path})"
            )
        raise VerificationError(
            f"{len(result.missing)} locked file(s) are not in the log; the policy was not "
            "written" + (" (--strict)" if args.strict else "")
        )
    return EXIT_OK


# --- auditors ---------------------------------------------------------------------


def checkpoint(args: argparse.Namespace, ui: Ui) -> int:
    import sys

    from sigledger.client.logkey import fetch_checkpoint, parse_log_key

    url = _need(args.log, "--log", "SIGLEDGER_LOG")
    log_key = parse_log_key(args.log_key) if args.log_key else None
    cp, raw, verified = asyncio.run(fetch_checkpoint(url, log_key))
    if ui.json:
        ui.data(
            {
                "version": 1,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root_hash": cp.root.hex(),
                "verified": verified,
                "checkpoint": raw.decode(),
            }
        )
    else:
        sys.stdout.write(raw.decode())
        if verified:
            ui.info("signature verified")
        else:
            ui.note("signature NOT verified (pass --log-key to verify)")
    return EXIT_OK


def monitor(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.install.inputs import require_policy
    from sigledger.client.install.policy import default_policy_path, default_state_dir
    from sigledger.client.monitor.targets import monitor_targets, watched_projects

    if args.interval <= 0 or args.stale_after <= 0:
        raise ConfigError("--interval and --stale-after must be positive")
    workers = _workers(args.workers)
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise ConfigError("--webhook must be an http:// or https:// URL")
    policy = None
    if args.policy or (not args.log and default_policy_path().exists()):
        policy = require_policy(args.policy)
    targets = monitor_targets(args.log, args.log_key, policy)
    watch = watched_projects(args.watch, policy)
    state = Path(args.state) if args.state else default_state_dir() / "monitor.db"
    return asyncio.run(_monitor(args, targets, state, watch, policy, workers))


async def _monitor(
    args: argparse.Namespace,
    targets: list[MonitorTarget],
    state: Path,
    watch: set[str],
    policy: Policy | None,
    workers: int,
) -> int:
    import signal

    from sigledger.client.monitor.watcher import Monitor, exit_status

    async with Monitor(
        targets,
        state,
        watch=watch,
        policy=policy,
        webhook=args.webhook,
        stale_after=args.stale_after,
        workers=workers,
    ) as mon:
        if args.once:
            return exit_status(await mon.run_once())
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await mon.run_forever(args.interval, stop)
    return EXIT_OK


def fsck(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.logkey import parse_log_key
    from sigledger.client.monitor.fsck import fsck as audit

    key = parse_log_key(_need(args.log_key, "--log-key", "SIGLEDGER_LOG_KEY"))
    workers = _workers(args.workers)
    lines = lambda done, total: f"checked {done:,} of {total:,} entries"  # noqa: E731
    with ui.progress(f"fsck {key.name}", lines=lines) as progress:
        result = asyncio.run(audit(args.url, key, workers=workers, progress=progress.update))
    return report_fsck(ui, result)


def completion(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.client.cli.completion import completion_script
    from sigledger.client.cli.parser import build_parser

    print(completion_script(build_parser(), args.shell), end="")
    return EXIT_OK


def migrate(args: argparse.Namespace, ui: Ui) -> int:
    from sigledger.ledger.log.migrate import migrate as copy_log

    current: dict[str, Any] = {}  # the stage under way and its progress bar

    def done_with_stage() -> None:
        if "bar" in current:
            current.pop("bar").__exit__(None, None, None)

    def progress(stage: str, done: int, total: int) -> None:
        if current.get("stage") != stage:
            done_with_stage()  # one bar at a time
            lines = lambda d, t: f"{stage}: {d:,} of {t:,}"  # noqa: E731
            current["stage"] = stage
            label = "proving the copy" if stage == "proof" else f"copying {stage}"
            current["bar"] = ui.progress(label, total, lines=lines).__enter__()
        current["bar"].update(done, total)

    try:
        report = asyncio.run(
            copy_log(args.source, args.target, batch=args.batch, progress=progress)
        )
    finally:
        done_with_stage()
    root = base64.b64encode(report.root).decode()
    if ui.json:
        ui.data(
            {
                "source": report.source,
                "target": report.target,
                "entries": report.entries,
                "tiles": report.tiles,
                "tree_heads": report.heads,
                "tree_size": report.size,
                "root": root,
            }
        )
    else:
        ui.info(
            f"copied {report.source} to {report.target}: entries {report.entries:,}, "
            f"hash tiles {report.tiles:,}, tree heads {report.heads:,}"
        )
        print(f"OK: the copy has the source's root at tree size {report.size:,}: {root}")
    return EXIT_OK


HANDLERS: dict[str, Callable[[argparse.Namespace, Ui], int]] = {
    "serve": serve,
    "migrate": migrate,
    "witness serve": witness_serve,
    "keygen": keygen,
    "publish": publish,
    "verify": verify,
    "proxy": proxy,
    "observe": observe,
    "pip install": install_frontend,
    "uv pip install": install_frontend,
    "uv sync": install_frontend,
    "policy pin": policy_pin,
    "checkpoint": checkpoint,
    "monitor": monitor,
    "fsck": fsck,
    "completion": completion,
}
