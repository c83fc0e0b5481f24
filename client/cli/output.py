"""What the command line prints: exit codes, errors, reports and progress.

Data goes to stdout (JSON with ``--json``); messages and progress go to stderr.
``-q`` silences messages (``-qq`` also notes), never errors or data.

Exit codes (also in ``sigledger --help``): see :data:`EXIT_MEANINGS`. With
``--json`` an error is a JSON object on stdout, format version 1::

    {"version": 1, "error": "<code>", "message": "...", "hint": "...",
     "exit_code": N, "exit_meaning": "...",
     "evidence": {...},   # log_misbehavior only: the signed evidence
     "details": {...}}    # extra fields of the log's error body, when it refused

``error`` is the log's error key when the log refused (``binding_conflict``,
``not_witnessed``, ...), else one of ``log_misbehavior``, ``usage``,
``configuration``, ``format``, ``network``, ``verification_failed``,
``failed``, ``local_io`` (a local file could not be read or written),
``interrupted``. Log misbehavior prints the object even without
``--json``: the evidence is data to keep.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sigledger.ledger.errors import (
    ConfigError,
    FormatError,
    LedgerError,
    LogMisbehaviorError,
    NetworkError,
    RequestError,
    VerificationError,
)

if TYPE_CHECKING:  # only for types: importing them would slow down every command
    from sigledger.client.install.environment import TargetEnvironment
    from sigledger.client.install.selection import Selection
    from sigledger.client.install.verdicts import Outcome
    from sigledger.client.monitor.fsck import FsckResult
    from sigledger.client.publish.submit import PublishResult

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NETWORK, EXIT_MISBEHAVIOR = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAIL: "refused by the log, or a check failed",
    EXIT_USAGE: "usage or configuration error",
    EXIT_NETWORK: "network failure: the log could not be reached or did not answer",
    EXIT_MISBEHAVIOR: "evidence of log misbehavior (printed as JSON on stdout)",
    EXIT_INTERRUPTED: "interrupted",
}
ERROR_FORMAT_VERSION = 1


def exit_code_for(exc: LedgerError) -> int:
    if isinstance(exc, LogMisbehaviorError):
        return EXIT_MISBEHAVIOR
    if isinstance(exc, ConfigError | FormatError):
        return EXIT_USAGE
    if isinstance(exc, NetworkError):
        return EXIT_NETWORK
    return EXIT_FAIL


def error_code(exc: LedgerError) -> str:
    if isinstance(exc, RequestError):
        return exc.code
    if isinstance(exc, LogMisbehaviorError):
        return "log_misbehavior"
    if isinstance(exc, ConfigError):
        return "configuration"
    if isinstance(exc, FormatError):
        return "format"
    if isinstance(exc, NetworkError):
        return "network"
    if isinstance(exc, VerificationError):
        return "verification_failed"
    return "failed"


def error_document(
    code: str, message: str, hint: str, exit_code: int, **extra: Any
) -> dict[str, Any]:
    return {
        "version": ERROR_FORMAT_VERSION,
        "error": code,
        "message": message,
        "hint": hint,
        "exit_code": exit_code,
        "exit_meaning": EXIT_MEANINGS[exit_code],
        **extra,
    }


def error_document_for(exc: LedgerError) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if isinstance(exc, LogMisbehaviorError):
        extra["evidence"] = exc.evidence
    if isinstance(exc, RequestError) and exc.details:
        extra["details"] = exc.details
    return error_document(error_code(exc), str(exc), exc.hint, exit_code_for(exc), **extra)


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


class Ui:
    """How one command run reports: JSON or text, how much chatter."""

    def __init__(self, *, json: bool = False, quiet: int = 0, verbose: int = 0) -> None:
        self.json = json
        self.quiet = quiet
        self.verbose = verbose

    def info(self, msg: str) -> None:
        """A message for people (stderr); ``-q`` silences it."""
        if not self.quiet:
            print(msg, file=sys.stderr)

    def note(self, msg: str) -> None:
        """A note worth more than chatter (stderr); only ``-qq`` silences it."""
        if self.quiet < 2:
            print(f"note: {msg}", file=sys.stderr)

    def error(self, msg: str) -> None:
        print(msg, file=sys.stderr)

    def data(self, doc: Any) -> None:
        print_json(doc)

    def fail(self, exc: LedgerError) -> int:
        """Report an error; return its exit code."""
        if self.json or isinstance(exc, LogMisbehaviorError):
            print_json(error_document_for(exc))
        return self._explain(exc.diagnostics(), exit_code_for(exc))

    def report(self, code: str, message: str, hint: str, exit_code: int) -> int:
        """Report an error that is not a LedgerError; return ``exit_code``."""
        if self.json:
            print_json(error_document(code, message, hint, exit_code))
        return self._explain(f"{message}\n\n{hint}" if hint else message, exit_code)

    def _explain(self, text: str, exit_code: int) -> int:
        self.error(f"error: {text}")
        if not self.verbose and not self.quiet and exit_code != EXIT_INTERRUPTED:
            self.error("(run sigledger with --verbose for details)")
        return exit_code

    def progress(
        self,
        label: str,
        total: int | None = None,
        *,
        min_total: int = 0,
        lines: Callable[[int, int], str] | None = None,
    ) -> Progress:
        return Progress(self, label, total, min_total=min_total, lines=lines)


class Progress:
    """A transient progress bar on a terminal (rich). Elsewhere nothing, or with
    ``lines`` a line on stderr at most every 5 seconds, and one at the end after
    those (a run shorter than 5 seconds prints none)."""

    def __init__(
        self,
        ui: Ui,
        label: str,
        total: int | None,
        *,
        min_total: int = 0,
        lines: Callable[[int, int], str] | None = None,
    ) -> None:
        self._ui = ui
        self._label = label
        self._bar: Any = None
        self._task: Any = None
        self._done = 0
        self._total = total
        self._last = time.monotonic()
        self._printed = False
        self._lines = lines if not ui.quiet else None
        self._enabled = not ui.json and not ui.quiet and sys.stderr.isatty()
        if total is not None and total < min_total:
            self._enabled = False

    def _start(self, total: int) -> None:
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(transient=True)
        self._task = self._bar.add_task(self._label, total=total)
        self._bar.start()

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (or of the total given at the start) finished."""
        self._done = done
        if total is not None:
            self._total = total
        if self._enabled:
            if self._bar is None:
                self._start(self._total or 0)
            self._bar.update(self._task, completed=done, total=self._total)
        elif self._lines is not None and self._total is not None:
            now = time.monotonic()
            # The last line only closes a series: a run quicker than the first
            # line prints nothing but its result, as on a terminal.
            if now - self._last >= 5 or (done == self._total and self._printed):
                self._last = now
                self._printed = True
                print(self._lines(done, self._total), file=sys.stderr)

    def advance(self, n: int = 1) -> None:
        self.update(self._done + n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


# --- reports ----------------------------------------------------------------------


def report_outcomes(
    ui: Ui,
    outcomes: Sequence[Outcome],
    log: dict[str, Any] | None,
    *,
    extra: dict[str, Any] | None = None,
    title: str = "sigledger verify",
    selection: Selection | None = None,
    env: TargetEnvironment | None = None,
) -> int:
    """``verify``'s report: JSON, a table on a terminal, else one line per artifact.

    ``extra`` adds fields to the JSON document (the install front-ends' ``tool``,
    ``installed`` and ``not_from_index``). ``selection`` (lock files) adds the
    files not for this environment (``not_for_environment``, each with its
    ``kind``: ``not_for_environment`` or ``not_attributable``; listed with
    ``-v``), the entries not from an index (``not_from_index``) and the target
    (``environment``). Every verified file that someone else logged with another
    hash gets a ``WARN`` line (``warnings`` in each JSON result)."""
    ok = all(o.ok for o in outcomes)
    skipped = selection.skipped if selection is not None else []
    local = selection.not_from_index if selection is not None else []
    if ui.json:
        results = [o.to_json() for o in outcomes]
        doc: dict[str, Any] = {"version": 1, "ok": ok, "log": log, "results": results}
        if selection is not None:
            doc["environment"] = env.describe() if env is not None else None
            doc["not_for_environment"] = [s.to_json() for s in skipped]
            doc["not_from_index"] = local
        ui.data({**doc, **(extra or {})})
        return EXIT_OK if ok else EXIT_FAIL
    if sys.stderr.isatty() and len(outcomes) > 1 and not ui.quiet and not ui.verbose:
        from rich.console import Console

        console = Console(stderr=True)
        console.print(outcome_table(outcomes, title, console.width))
    else:
        for o in outcomes:
            # failures are what a quiet run is for: they are always shown
            (ui.info if o.ok else ui.error)(
                f"{'OK' if o.ok else 'FAIL'}: {o.artifact.name}: {o.reason}"
            )
    for o in outcomes:
        for line in o.warning_lines():
            ui.error(f"WARN: {o.artifact.name}: {line}")
    for name in local:
        ui.note(f"{name}: not from an index, not checked")
    if ui.verbose:
        for s in skipped:
            label = (
                "not for this environment"
                if s.kind == "not_for_environment"
                else "not attributable"
            )
            ui.info(f"SKIP ({label}): {s.pin.name}: {s.reason}")
    failed = sum(not o.ok for o in outcomes)
    alarms = sum(o.alarm for o in outcomes)
    warned = sum(bool(o.warnings) for o in outcomes)
    attributable = sum(s.kind == "not_for_environment" for s in skipped)
    counts = [
        f"{attributable} not for this environment" if attributable else "",
        f"{len(skipped) - attributable} not attributable" if len(skipped) > attributable else "",
        f"{len(local)} not from an index" if local else "",
        f"{warned} with warnings" if warned else "",
    ]
    shown = ", ".join(c for c in counts if c)
    ui.info(
        f"{len(outcomes) - failed} of {len(outcomes)} verified"
        + (f", {alarms} ALARM(S)" if alarms else "")
        + (f" ({shown}; -v lists them)" if shown and skipped else f" ({shown})" if shown else "")
        + (f" against {log['origin']} at tree size {log['tree_size']}" if log else "")
        + (f" for {env.describe()}" if env is not None and selection is not None else "")
    )
    return EXIT_OK if ok else EXIT_FAIL


# A signed-note verifier key, "name+keyid+base64": the table shows "name+keyid".
_VKEY = re.compile(r"([^\s,()+]+\+[0-9a-f]{8})\+[A-Za-z0-9+/]{43,}=*")


def key_ids(text: str) -> str:
    """``text`` with every verifier key shortened to its name and key ID."""
    return _VKEY.sub(r"\1", text)


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, an ellipsis in the middle: both the
    project and the tags of a wheel's name stay readable."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def outcome_table(outcomes: Sequence[Outcome], title: str, width: int) -> Any:
    """The results as a rich Table for a terminal ``width`` columns wide: key IDs
    instead of whole keys, long file names shortened in the middle (``-v`` and
    ``--json`` show the full values)."""
    from rich.table import Table
    from rich.text import Text

    # After the borders (10) and the status (4): a file name gets at most 45% of
    # the rest, the reason (wrapped at words) all that is left.
    name_width = max(width - 14, 40) * 9 // 20
    table = Table(title=title, show_lines=False, width=width if width < 120 else None)
    table.add_column("", no_wrap=True)
    table.add_column("file", no_wrap=True)
    table.add_column("reason", ratio=1, overflow="fold")
    for o in outcomes:
        a = o.artifact
        if a.filename is not None:
            name = a.filename
        elif a.project is not None:  # a hash from a requirements file the log did not name
            name = f"{a.project} sha256:{a.sha256.hex()[:12]}"
        else:
            name = f"sha256:{a.sha256.hex()}"
        table.add_row(
            "[green]OK[/]" if o.ok else "[red]FAIL[/]",
            Text(shorten_middle(name, name_width)),  # Text: values are never markup
            Text(key_ids(o.reason)),
        )
    return table


PUBLISH_VERBS = {"added": "logged", "existing": "already logged", "dry-run": "would log"}


def report_published(
    ui: Ui,
    results: Sequence[PublishResult],
    skipped: Sequence[str],
    *,
    checked: bool,
    dry_run: bool,
) -> int:
    if ui.json:
        ui.data(
            {
                "version": 1,
                "results": [r.to_json() for r in results],
                "skipped": list(skipped),
            }
        )
        return EXIT_OK
    for r in results:
        st = r.signed.statement
        where = f" (entry #{r.receipt['log_index']})" if r.receipt else ""
        if r.logged_as:
            where += f" as {r.logged_as}"
        ui.info(f"OK: {st.filename} {PUBLISH_VERBS[r.status]}{where} sha256:{st.sha256.hex()}")
    if results and results[0].receipt_path is not None:
        ui.info(f"receipts in {results[0].receipt_path.parent}")
    if not checked and not dry_run:
        ui.note("checkpoint signatures not checked; pass --log-key to check them")
    return EXIT_OK


def report_fsck(ui: Ui, result: FsckResult) -> int:
    if ui.json:
        ui.data(result.to_json())
    else:
        report, cp = result.report, result.checkpoint
        for f in report.findings:
            where = f" (entry {f.index})" if f.index is not None else ""
            print(f"FAIL: {f.type}{where}: {f.message}")
        verdict = "OK" if report.ok else f"FAIL ({len(report.findings)} problems)"
        print(
            f"{verdict}: {cp.origin} at tree size {cp.size:,}: {report.entries_checked:,} "
            f"entries and {report.tiles_checked:,} hash tiles checked in {report.seconds:.1f} s"
        )
    return EXIT_OK if result.ok else EXIT_FAIL
