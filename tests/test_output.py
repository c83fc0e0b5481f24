"""What ``verify`` prints where people read it (client/cli/output.py): on a terminal a
table that fits 80 columns (key IDs, file names shortened in the middle); piped, or
with ``-v``, one plain line per result with every value in full."""

from __future__ import annotations

import io
import re
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from sigledger.client.cli import output
from sigledger.client.cli.output import Ui, key_ids, outcome_table, report_outcomes, shorten_middle
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.verdicts import Outcome
from sigledger.ledger.note import Signer

ALICE = Signer.from_seed("alice@example.org", bytes([1]) * 32)
BOB = Signer.from_seed("bob@example.org", bytes([2]) * 32)
LONG = "averyverylongprojectname_with_parts-12.3.4.post1-cp312-cp312-manylinux_2_17_x86_64.whl"


def outcomes() -> list[Outcome]:
    def pin(name: str, digit: int) -> Pin:
        return Pin("averyverylongprojectname-with-parts", "12.3.4.post1", bytes([digit]) * 32,
                   name, None, "requirements.txt:3")  # fmt: skip

    signed = f"signed by 2 of 2 trusted signers (threshold 2): {ALICE.vkey}, {BOB.vkey}"
    return [
        Outcome(pin(LONG, 1), True, signed, project="averyverylongprojectname-with-parts"),
        Outcome(pin("small-1.0.tar.gz", 2), False, f"[default] not signed by {BOB.vkey}"),
    ]


def rendered(width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(outcome_table(outcomes(), "sigledger verify", console.width))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_table_fits_80_columns_with_key_ids_and_shortened_names() -> None:
    text = rendered(80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert ALICE.vkey not in text and BOB.vkey not in text
    assert ALICE.vkey.rsplit("+", 1)[0] + "," in text  # "alice@example.org+<key ID>"
    assert BOB.vkey.rsplit("+", 1)[0] in text
    assert "averyverylongp…_17_x86_64.whl" in text  # the project and the tags stay readable
    assert "[default]" in text  # values are text, never rich markup
    assert text.count("OK") == 1 and text.count("FAIL") == 1


def test_key_ids_and_shorten_middle() -> None:
    assert key_ids(f"by {ALICE.vkey}, {BOB.vkey}.") == (
        f"by {ALICE.vkey.rsplit('+', 1)[0]}, {BOB.vkey.rsplit('+', 1)[0]}."
    )
    assert key_ids("no keys here: a+b") == "no keys here: a+b"
    assert shorten_middle("abcdefghij", 10) == "abcdefghij"
    short = shorten_middle("abcdefghijk", 7)
    assert short == "abc…ijk" and len(short) == 7


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("verbose", [0, 1])
def test_report_on_a_terminal_and_piped(
    monkeypatch: pytest.MonkeyPatch, verbose: int, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert report_outcomes(Ui(verbose=verbose), outcomes(), None) == 1
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    if verbose:  # -v: the full values, one line each, as when piped
        assert f"OK: {LONG} (requirements.txt:3): signed by" in text and ALICE.vkey in text
    else:
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert ALICE.vkey not in text and "…" in text
    monkeypatch.undo()
    # piped: one plain line per result, full values, nothing else but the summary
    assert report_outcomes(Ui(), outcomes(), None) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        f"OK: {LONG} (requirements.txt:3): signed by 2 of 2 trusted signers (threshold 2): "
        f"{ALICE.vkey}, {BOB.vkey}"
    )
    assert lines[1].startswith("FAIL: small-1.0.tar.gz (requirements.txt:3): [default]")
    assert lines[2:] == ["1 of 2 verified"]


def test_plain_progress_lines_only_for_long_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped, a quick run prints only its result; a long one a line every 5 s and
    a last one to close the series."""
    clock = [0.0]
    monkeypatch.setattr(output, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    lines = lambda done, total: f"{done} of {total}"  # noqa: E731
    with Ui().progress("checking", 10, lines=lines) as progress:
        progress.update(4)
        progress.update(10)
    assert capsys.readouterr().err == ""
    with Ui().progress("checking", 10, lines=lines) as progress:
        clock[0] = 6.0
        progress.update(4)
        clock[0] = 7.0
        progress.update(10)
    assert capsys.readouterr().err == "4 of 10\n10 of 10\n"
