"""The ``sigledger`` command: parse (:mod:`.parser`), run one command
(:mod:`.commands`), render the outcome (:mod:`.output`).

Exit codes: 0 success; 1 refused by the log or a verification failure; 2 usage
or configuration error; 3 network failure; 4 evidence of log misbehavior; 130
interrupted. Data goes to stdout (``--json`` for machines, errors included);
messages and progress go to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from sigledger.client.cli.output import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Ui,
    error_document,
    print_json,
)
from sigledger.client.cli.parser import UsageError, build_parser, protect_tool_args
from sigledger.ledger.errors import LedgerError


def main(argv: Sequence[str] | None = None) -> int:
    args_list = protect_tool_args(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(args_list)
        if extra:
            # Unknown flags after a command belong to that command: show its usage.
            args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as exc:
        return _usage_error(exc, json_wanted="--json" in args_list)
    ui = Ui(json=bool(args.json), quiet=args.quiet or 0, verbose=args.verbose or 0)
    from sigledger.client.cli.commands import HANDLERS

    try:
        return HANDLERS[args.handler](args, ui)
    except KeyboardInterrupt:
        return ui.report("interrupted", "interrupted", "", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other CLI tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL
    except LedgerError as exc:
        if ui.verbose:
            traceback.print_exc()
        return ui.fail(exc)
    except OSError as exc:  # a local file could not be read or written
        if ui.verbose:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        hint = "Check the path and its permissions, then run the command again."
        return ui.report("local_io", f"{where}{exc.strerror or exc}", hint, EXIT_FAIL)


def _usage_error(exc: UsageError, *, json_wanted: bool) -> int:
    message = f"{exc.prog}: error: {exc}"
    if json_wanted:
        print_json(
            error_document("usage", message, f"run '{exc.prog} --help' for the options", EXIT_USAGE)
        )
    sys.stderr.write(exc.usage)
    print(message, file=sys.stderr)
    return EXIT_USAGE
