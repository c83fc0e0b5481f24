"""Lint, formatting, types and architecture rules, as part of the test suite."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"aiohttp", "aiosqlite", "asyncio", "os", "socket", "sqlite3", "subprocess"}


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    assert found, f"{name} is not installed; install the test extras: pip install -e '.[test]'"
    return [found]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


SOURCES = [d for d in ("sigledger", "ledger", "client", "tests", "bench") if (ROOT / d).is_dir()]


def test_ruff_lint() -> None:
    r = _run([*_tool("ruff"), "check", *SOURCES])
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run([*_tool("ruff"), "format", "--check", *SOURCES])
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run([*_tool("mypy")])
    assert r.returncode == 0, r.stdout + r.stderr


def _imports(path: Path) -> set[str]:
    """Every module a source file imports (absolute names; relative ones resolved)."""
    package = ".".join(("sigledger", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _modules(folder: str, *, recursive: bool = True) -> list[Path]:
    pattern = "**/*.py" if recursive else "*.py"
    return sorted((ROOT / folder).glob(pattern))


def _ours(imported: set[str]) -> set[str]:
    return {m for m in imported if m.startswith("sigledger.")}


def _room(module: str) -> str:
    """``sigledger.ledger.log.app`` -> ``ledger.log``; root modules -> ``ledger``."""
    parts = module.split(".")[1:]
    rooms = {
        "ledger": {"log", "witness", "service"},
        "client": {"install", "monitor", "publish", "cli"},
    }
    if len(parts) >= 2 and parts[1] in rooms.get(parts[0], set()):
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


PURE = [p.stem for p in _modules("ledger", recursive=False) if p.stem != "__init__"]


@pytest.mark.parametrize("module", PURE)
def test_pure_formats_do_no_io(module: str) -> None:
    """Everything at the root of ``ledger/`` is a pure format: no I/O, only other formats."""
    imported = _imports(ROOT / "ledger" / f"{module}.py")
    roots = {m.split(".")[0] for m in imported}
    assert not roots & FORBIDDEN, f"ledger/{module}.py imports {roots & FORBIDDEN}"
    rooms = {_room(m) for m in _ours(imported)} - {"ledger"}
    assert not rooms, f"ledger/{module}.py imports from {rooms}; formats import only formats"


# Which rooms each room may import from: dependencies point down (DESIGN.md, Layout).
ALLOWED = {
    "ledger": {"ledger"},
    "ledger.service": {"ledger", "ledger.service"},
    "ledger.log": {"ledger", "ledger.service", "ledger.log"},
    "ledger.witness": {"ledger", "ledger.service", "ledger.witness"},
    "client": {"ledger", "ledger.service", "client"},
    "client.publish": {"ledger", "ledger.service", "client", "client.publish"},
    "client.install": {"ledger", "ledger.service", "client", "client.install", "client.publish"},
    "client.monitor": {"ledger", "ledger.service", "client", "client.monitor", "client.install"},
    # The command line is the one place that may start the services.
    "client.cli": {
        "ledger",
        "ledger.service",
        "ledger.log",
        "ledger.witness",
        "client",
        "client.install",
        "client.monitor",
        "client.publish",
        "client.cli",
    },
}


@pytest.mark.parametrize(
    "path",
    [p for folder in ("ledger", "client") for p in _modules(folder)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_dependencies_point_down(path: Path) -> None:
    room = _room(".".join(("sigledger", *path.relative_to(ROOT).with_suffix("").parts)))
    used = {
        _room(m) for m in _ours(_imports(path)) if m not in ("sigledger.ledger", "sigledger.client")
    }
    assert used <= ALLOWED[room], (
        f"{path.relative_to(ROOT)} ({room}) imports {used - ALLOWED[room]}"
    )


def test_installs_one_import_package() -> None:
    """Installed, the code is ``sigledger`` only: no bare ``ledger``/``client`` packages."""
    top = distribution("sigledger").read_text("top_level.txt")
    assert top is not None and top.split() == ["sigledger"], top
    for name in ("ledger", "client"):
        link = ROOT / "sigledger" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2, "README must start with the run and test commands"
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()
