"""Lint, formatting, types and architecture rules, as part of the test suite."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_MODULES = ["merkle", "note", "checkpoint", "tiles", "entry", "api", "tiletree", "errors"]
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


SOURCES = [d for d in ("ledger", "client", "tests", "bench") if (ROOT / d).is_dir()]


def test_ruff_lint() -> None:
    r = _run([*_tool("ruff"), "check", *SOURCES])
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run([*_tool("ruff"), "format", "--check", *SOURCES])
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run([*_tool("mypy")])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module: str) -> None:
    tree = ast.parse((ROOT / "ledger" / f"{module}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
            if node.module == "ledger":
                imported.update(f"ledger.{a.name}" for a in node.names)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ledger."):
            imported.add(node.module)
    assert not imported & FORBIDDEN, f"ledger/{module}.py imports {imported & FORBIDDEN}"
    impure = {
        m for m in imported if m.startswith("ledger.") and m.split(".")[1] not in PURE_MODULES
    }
    assert not impure, f"ledger/{module}.py imports non-pure modules {impure}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2, "README must start with the run and test commands"
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()
