"""The README's tour, run as written: a README that drifts from the code fails here.

Convention (also stated at the top of README.md, in an HTML comment):

* Every fenced ``console`` block of a file in :data:`SOURCES` is run, in the
  order of the file, in one temporary directory per file, by ``bash``, with
  ``sigledger`` on ``PATH`` running this checkout (``HOME`` is a temporary
  directory too; ``SIGLEDGER_*``, ``XDG_*``, ``PIP_*`` and ``UV_*`` are unset).
  A line ``$ COMMAND`` starts a command (continued by lines while it ends with
  ``\\``); the lines after it are what it prints, stdout and stderr together, as
  on a terminal.
* In expected output, ``...`` stands for any text, with the letters, digits and
  ``+/=`` around it (``sha256:...``, ``mT4k...=``); a line of just ``...`` for
  any number of lines. A verifier key written ``NAME+KEYID+AB...`` stands for the
  real key of that name: the first line that shows it learns it, later commands
  get the real key where they say ``NAME+KEYID+AB...``, and later output must show
  the same key; its key ID alone (``NAME+KEYID``) is read as the README writes it.
  Durations (``0.1 s``) and this interpreter's environment (see
  ``README_ENVIRONMENT``) are normalized.
* Loopback ports in commands (``127.0.0.1:8080``) are replaced by free ports, and
  back in the output; PyPI's index URL (:data:`README_INDEX`) and its files host
  (:data:`README_FILES`) by a local pypiserver serving the tour's release files
  and, as PyPI does, releases nobody in the tour signed (:data:`UNSIGNED`).
  ``pip`` and ``uv`` are those of the test extras, isolated from this machine's
  configuration.
* A command must exit 0, unless its comment says ``# exits N``.
* ``sigledger serve``, ``sigledger witness serve`` and ``sigledger proxy`` keep
  running in the background: their block shows what they print at start (they
  must print ``listening on``); one started on the port of a running one
  replaces it (a restart). All are stopped at the end. One expected to fail
  (``# exits N``) runs as any other command.
* ``deploy/README.md`` runs in a directory holding a copy of ``deploy/``
  (:data:`CHECKOUT`), as the repository root its commands name.
* ``<!-- tour: skip REASON -->`` before a fenced block: not run here, for that
  reason. ``<!-- tour: fixture NAME -->``: instead of that block (a ``sh`` block,
  say, that builds or downloads files), the test runs :data:`FIXTURES` ``[NAME]``,
  which makes the same files offline.

Adding to the tour is adding blocks to the README (and a fixture when a step
needs the network).
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sigledger.client.install.environment import TargetEnvironment
from tests.helpers import ROOT, pump_lines, tree_env
from tests.index import PyPIServer, free_port, installer_env, sdist, uv_exe, wheel

# Each file is one tour, in its own directory; the least number of commands it runs
# (a README that lost its tour fails too).
SOURCES = {ROOT / "README.md": 30, ROOT / "deploy" / "README.md": 4}
CHECKOUT = {ROOT / "deploy" / "README.md": ("deploy",)}
"""What a file's tour directory holds of the repository, as the repository root would."""
README_ENVIRONMENT = "cp312-manylinux_2_39_x86_64 (this interpreter)"
"""How the README writes the environment ``verify`` and ``policy pin`` check for."""
README_PORTS = (8080, 8081, 8090)
README_INDEX = "https://pypi.org/simple/"
"""Commands naming it get a local index serving the tour's release files instead."""
README_FILES = "https://files.pythonhosted.org/packages/"
"""Where PyPI's pages link the files: the local index's file prefix instead."""
UNSIGNED = (
    wheel("sampleproject", "3.0.0"),
    sdist("sampleproject", "3.0.0"),
    wheel("six", "1.17.0", tag="py2.py3-none-any"),
    sdist("six", "1.17.0"),
)
"""What the local index serves besides the tour's ``dist/``: an older release of
sampleproject and another project, which nobody in the tour signs."""
SERVICES = re.compile(r"^sigledger (serve|witness serve|proxy)\b")
COMMAND_TIMEOUT = 60.0
SERVICE_TIMEOUT = 30.0

DIRECTIVE = re.compile(r"<!--\s*tour:\s*(skip|fixture)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
EXITS = re.compile(r"#\s*exits\s+(\d+)\b")
LISTEN = re.compile(r"--listen\s+(\S+)")
# NAME+KEYID+AB... : a placeholder for the real verifier key of NAME
KEY_PLACEHOLDER = re.compile(r"([^\s'\"()+,]+)\+[0-9a-f]{8}\+[A-Za-z0-9+/]*\.\.\.")
REAL_KEY = r"\+[0-9a-f]{8}\+[A-Za-z0-9+/]{43,}=*"
ELLIPSIS = re.compile(r"[A-Za-z0-9+/=]*\.\.\.[A-Za-z0-9+/=]*")
DURATION = re.compile(r"\b\d+(?:\.\d+)? ?m?s\b")


@dataclass
class Command:
    text: str
    expected: list[str]
    line: int  # in the source file

    @property
    def exit_status(self) -> int:
        m = EXITS.search(self.text)
        return int(m.group(1)) if m else 0


@dataclass
class Block:
    source: Path
    line: int
    kind: str  # "console", "skip" or "fixture"
    argument: str = ""  # the skip's reason, the fixture's name
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}"


def parse_blocks(text: str, source: Path) -> list[Block]:
    """The console blocks of a Markdown file, and the blocks a directive names."""
    blocks: list[Block] = []
    lines = text.splitlines()
    directive: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := DIRECTIVE.search(line):
            directive = (m.group(1), m.group(2))
        fence = FENCE.match(line)
        if fence is None:
            i += 1
            continue
        start, closing = i + 1, fence.group(1)
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(closing):
            body.append(lines[i])
            i += 1
        i += 1
        if directive is not None:
            kind, argument = directive
            directive = None
            if not argument:
                raise ValueError(f"{source.name}:{start}: 'tour: {kind}' needs a reason or name")
            blocks.append(Block(source, start, kind, argument))
        elif fence.group(2) == "console":
            blocks.append(Block(source, start, "console", commands=parse_commands(body, start)))
    return blocks


def parse_commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for offset, line in enumerate(body):
        if continued:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(line[2:], [], first_line + offset + 1))
        elif commands:
            commands[-1].expected.append(line)
        else:
            raise ValueError(f"line {first_line + offset + 1}: output before any '$ ' command")
        continued = line.endswith("\\")
    return commands


def line_pattern(expected: str, keys: dict[str, str]) -> tuple[re.Pattern[str], list[str]]:
    """A regex for one expected line, and the key placeholders its groups capture."""
    out: list[str] = []
    captured: list[str] = []
    pos = 0
    expected = DURATION.sub("N s", expected)
    for m in re.finditer(f"{KEY_PLACEHOLDER.pattern}|{ELLIPSIS.pattern}", expected):
        out.append(re.escape(expected[pos : m.start()]))
        placeholder = m.group(0)
        if m.group(1) is None:
            out.append(r".*?")
        elif placeholder in keys:
            out.append(re.escape(keys[placeholder]))
        elif placeholder in captured:  # twice on one line: the same key
            out.append(f"(?P=k{captured.index(placeholder)})")
        else:
            out.append(f"(?P<k{len(captured)}>{re.escape(m.group(1))}{REAL_KEY})")
            captured.append(placeholder)
        pos = m.end()
    out.append(re.escape(expected[pos:]))
    return re.compile("".join(out)), captured


def _match(expected: list[str], actual: list[str], keys: dict[str, str]) -> dict[str, str] | None:
    """The keys learned if ``actual`` reads as ``expected``, else None."""
    if not expected:
        return None if actual else {}
    if expected[0].strip() == "...":
        for n in range(len(actual) + 1):
            learned = _match(expected[1:], actual[n:], keys)
            if learned is not None:
                return learned
        return None
    if not actual:
        return None
    pattern, captured = line_pattern(expected[0].rstrip(), keys)
    m = pattern.fullmatch(DURATION.sub("N s", actual[0].rstrip()))
    if m is None:
        return None
    learned = {p: m.group(f"k{i}") for i, p in enumerate(captured)}
    rest = _match(expected[1:], actual[1:], {**keys, **learned})
    return None if rest is None else {**learned, **rest}


def match_output(expected: list[str], actual: list[str], keys: dict[str, str]) -> bool:
    """Whether ``actual`` reads as ``expected``; learns the keys it shows into ``keys``."""
    learned = _match(expected, actual, keys)
    if learned is None:
        return False
    keys.update(learned)
    return True


class Tour:
    """One user's shell: a directory, a home, services running in the background."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "tour"
        self.home = tmp / "home"
        bin_dir = tmp / "bin"
        for d in (self.dir, self.home, bin_dir):
            d.mkdir()
        python = shlex.quote(sys.executable)
        # this checkout's sigledger, and the pip and uv of the test extras
        for name, command in (
            ("sigledger", f"{python} -m sigledger"),
            ("pip", f"{python} -m pip"),
            ("uv", shlex.quote(uv_exe())),
        ):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
            shim.chmod(0o755)
        # pip and uv see nothing of this machine's configuration; nor does sigledger
        env = {
            k: v
            for k, v in installer_env(tmp).items()
            if not k.startswith(("SIGLEDGER_", "XDG_")) and k != "CI"
        }
        env.update(
            HOME=str(self.home),
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",  # stdout and stderr in the order they were written
            PYTHONPATH=tree_env()["PYTHONPATH"],  # this checkout
        )
        self.env = env
        self.ports = {port: free_port() for port in README_PORTS}
        self.index: PyPIServer | None = None  # stands in for README_INDEX, started when named
        self.keys: dict[str, str] = {}
        self.services: dict[int, tuple[subprocess.Popen[str], threading.Thread]] = {}
        self.environment = TargetEnvironment.current().describe()

    # -- text in and out -----------------------------------------------------------

    def command_text(self, text: str) -> str:
        for placeholder, key in self.keys.items():
            text = text.replace(placeholder, key)
        for readme, real in self.ports.items():
            text = text.replace(f"127.0.0.1:{readme}", f"127.0.0.1:{real}")
        if README_INDEX in text or README_FILES in text:
            index = self.start_index()
            text = text.replace(README_INDEX, index)
            text = text.replace(README_FILES, index.replace("/simple/", "/packages/"))
        return text

    def start_index(self) -> str:
        """A real index (pypiserver) serving the tour's release files, in place of PyPI."""
        if self.index is None:
            files = self.dir.parent / "index"
            files.mkdir()
            for f in (self.dir / "dist").iterdir():
                if f.is_file():
                    (files / f.name).write_bytes(f.read_bytes())
            for name, data in UNSIGNED:
                (files / name).write_bytes(data)
            self.index = PyPIServer(files).start()
        return self.index.url

    def output_lines(self, text: str) -> list[str]:
        for readme, real in self.ports.items():
            text = text.replace(f"127.0.0.1:{real}", f"127.0.0.1:{readme}")
        if self.index is not None:
            text = text.replace(self.index.url, README_INDEX)
            text = text.replace(self.index.url.replace("/simple/", "/packages/"), README_FILES)
        for placeholder, key in self.keys.items():  # a learned key's ID, as the README wrote it
            m = KEY_PLACEHOLDER.fullmatch(placeholder)
            assert m is not None
            n = len(m.group(1)) + 9  # NAME+KEYID
            text = re.sub(re.escape(key[:n]) + r"(?!\+)", placeholder[:n], text)
        text = text.replace(str(self.home), "~").replace(self.environment, README_ENVIRONMENT)
        return text.splitlines()

    def check(self, cmd: Command, block: Block, lines: list[str], status: int | None) -> None:
        if status is not None and status != cmd.exit_status:
            pytest.fail(self.report(cmd, block, lines, f"exit status {status}"))
        if not match_output(cmd.expected, lines, self.keys):
            pytest.fail(self.report(cmd, block, lines, "different output"))

    def report(self, cmd: Command, block: Block, lines: list[str], what: str) -> str:
        return (
            f"{block.source.name}:{cmd.line}: {what} from\n  $ {cmd.text}\n"
            + "--- the README shows\n"
            + "\n".join(cmd.expected)
            + "\n--- it printed\n"
            + "\n".join(lines)
        )

    # -- running -------------------------------------------------------------------

    def run(self, block: Block) -> None:
        for cmd in block.commands:
            text = self.command_text(cmd.text)
            if SERVICES.match(text) and cmd.exit_status == 0:
                self.start_service(cmd, block, text)
                continue
            done = subprocess.run(
                ["bash", "-c", text],
                cwd=self.dir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            self.check(cmd, block, self.output_lines(done.stdout), done.returncode)

    def start_service(self, cmd: Command, block: Block, text: str) -> None:
        listen = LISTEN.search(text)
        port = int(listen.group(1).rpartition(":")[2]) if listen else 0
        if port in self.services:  # a restart: the old process goes first
            self.stop(*self.services.pop(port))
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + text],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        printed: list[str] = []
        assert proc.stdout is not None
        lines, reader = pump_lines(proc.stdout, printed)
        self.services[port] = (proc, reader)
        wanted = [*cmd.expected, "..."]
        deadline = time.monotonic() + SERVICE_TIMEOUT
        while True:
            shown = self.output_lines("".join(printed))
            if any("listening on" in s for s in shown) and match_output(wanted, shown, self.keys):
                return
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(self.report(cmd, block, shown, "no such start (or it exited)"))

    @staticmethod
    def stop(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()

    def close(self) -> None:
        for proc, reader in self.services.values():
            self.stop(proc, reader)
        self.services.clear()
        if self.index is not None:
            self.index.stop()


# -- fixtures: what a block that needs the network would have made ---------------------


def _dist(tour: Tour) -> None:
    """``sampleproject`` 4.0.0, a wheel and an sdist, as if built or downloaded."""
    dist = tour.dir / "dist"
    dist.mkdir()
    for name, data in (wheel("sampleproject", "4.0.0"), sdist("sampleproject", "4.0.0")):
        (dist / name).write_bytes(data)


def _requirements(tour: Tour) -> None:
    """requirements.txt as ``uv pip compile --generate-hashes`` writes it for the files."""
    files = [f for f in (tour.dir / "dist").iterdir() if f.is_file()]
    hashes = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    (tour.dir / "requirements.txt").write_text(
        "# This file was autogenerated by uv via the following command:\n"
        "#    uv pip compile --generate-hashes requirements.in -o requirements.txt\n"
        "sampleproject==4.0.0 \\\n"
        + " \\\n".join(f"    --hash=sha256:{h}" for h in hashes)
        + "\n    # via -r requirements.in\n"
    )


def _locks(tour: Tour) -> None:
    """pylock.toml and uv.lock as uv writes them for a project that needs sampleproject."""
    files = {f.name: f for f in (tour.dir / "dist").iterdir() if f.is_file()}
    whl, tgz = files["sampleproject-4.0.0-py3-none-any.whl"], files["sampleproject-4.0.0.tar.gz"]
    url = "https://files.pythonhosted.org/packages/sampleproject/"

    def pylock_file(f: Path) -> str:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        return (
            f'{{ url = "{url}{f.name}", upload-time = 2024-07-01T00:00:00Z, '
            f'size = {f.stat().st_size}, hashes = {{ sha256 = "{digest}" }} }}'
        )

    def uv_file(f: Path) -> str:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        return (
            f'{{ url = "{url}{f.name}", hash = "sha256:{digest}", size = {f.stat().st_size}, '
            'upload-time = "2024-07-01T00:00:00Z" }'
        )

    (tour.dir / "pylock.toml").write_text(
        "# This file was autogenerated by uv via the following command:\n"
        "#    uv export --format pylock.toml -o pylock.toml\n"
        'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = ">=3.11"\n\n'
        '[[packages]]\nname = "sampleproject"\nversion = "4.0.0"\n'
        'index = "https://pypi.org/simple"\n'
        f"sdist = {pylock_file(tgz)}\nwheels = [{pylock_file(whl)}]\n"
    )
    (tour.dir / "uv.lock").write_text(
        'version = 1\nrevision = 3\nrequires-python = ">=3.11"\n\n'
        '[[package]]\nname = "app"\nversion = "0.1.0"\nsource = { editable = "." }\n'
        'dependencies = [\n    { name = "sampleproject" },\n]\n\n'
        "[package.metadata]\n"
        'requires-dist = [{ name = "sampleproject", specifier = "==4.0.0" }]\n\n'
        '[[package]]\nname = "sampleproject"\nversion = "4.0.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        f"sdist = {uv_file(tgz)}\nwheels = [\n    {uv_file(whl)},\n]\n"
    )


FIXTURES: dict[str, Callable[[Tour], None]] = {
    "dist": _dist,
    "requirements": _requirements,
    "locks": _locks,
}


# -- the tests -------------------------------------------------------------------------


@pytest.fixture
def tour(tmp_path: Path) -> Iterator[Tour]:
    t = Tour(tmp_path)
    try:
        yield t
    finally:
        t.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("source", list(SOURCES), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_readme_tour_runs_as_written(tour: Tour, source: Path) -> None:
    for folder in CHECKOUT.get(source, ()):
        shutil.copytree(ROOT / folder, tour.dir / folder)
    ran = 0
    for block in parse_blocks(source.read_text(), source):
        if block.kind == "skip":
            continue
        if block.kind == "fixture":
            if block.argument not in FIXTURES:
                pytest.fail(f"{block.where}: no fixture {block.argument!r} in {__name__}")
            FIXTURES[block.argument](tour)
            continue
        tour.run(block)
        ran += len(block.commands)
    assert ran >= SOURCES[source]
    assert not [k for k in tour.keys if not tour.keys[k].startswith(k.split("+")[0] + "+")]


def test_the_convention_parses_and_matches(tmp_path: Path) -> None:
    """The harness itself: blocks, directives, continuations, wildcards, keys."""
    text = (
        "<!-- tour: skip needs PostgreSQL -->\n```console\n$ createdb x\n```\n"
        "<!-- tour: fixture dist -->\n```sh\npip download x\n```\n"
        "```sh\n$ not a console block\n```\n"
        "```console\n$ sigledger keygen \\\n    --name a\nwrote a\na+1a2b3c4d+AQ...\n"
        "$ echo 'a+1a2b3c4d+AQ...'   # exits 0\n...\nlast\n```\n"
    )
    skip, fixture, console = parse_blocks(text, tmp_path / "README.md")
    assert (skip.kind, skip.argument, fixture.kind, fixture.argument) == (
        "skip", "needs PostgreSQL", "fixture", "dist",
    )  # fmt: skip
    first, second = console.commands
    assert first.text == "sigledger keygen \\\n    --name a"
    assert first.expected == ["wrote a", "a+1a2b3c4d+AQ..."]
    key = "a+0badc0de+" + "B" * 43 + "="
    keys: dict[str, str] = {}
    assert not match_output(first.expected, ["wrote a", "b" + key[1:]], keys) and not keys
    assert match_output(first.expected, ["wrote a", key], keys)
    assert keys == {"a+1a2b3c4d+AQ...": key}
    other = "a+0badc0df+" + "C" * 43 + "="
    assert not match_output(["a+1a2b3c4d+AQ..."], [other], keys)  # the same key, always
    assert match_output(["...", "last"], ["x", "y", "last"], keys)
    assert match_output(["...", "last"], ["last"], keys)
    assert not match_output(["last"], ["last", "more"], keys)
    assert match_output(["OK: f sha256:... in 0.1 s"], ["OK: f sha256:abc in 12.5 s"], keys)
    assert not match_output(["OK: f sha256:..."], ["FAIL: f sha256:abc"], keys)
    assert second.exit_status == 0 and Command("x  # exits 4", [], 1).exit_status == 4
    # A learned key's ID alone reads as the README wrote it; the whole key stays.
    t = Tour(tmp_path)
    t.keys = dict(keys)
    assert t.output_lines(f"{key} (key ID a+0badc0de)") == [f"{key} (key ID a+1a2b3c4d)"]
