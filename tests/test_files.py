"""Atomic file replacement (ledger/service/files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sigledger.ledger.service.files import write_atomically


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state"
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["state"]


def test_mode_is_set_even_over_a_leftover_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key"
    leftover = tmp_path / f"key.{os.getpid()}.tmp"
    leftover.write_bytes(b"old")
    leftover.chmod(0o644)
    write_atomically(path, b"secret", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == b"secret" and not leftover.exists()


def test_a_failed_replace_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomically(target, b"new")  # a non-empty directory cannot be replaced
    assert sorted(os.listdir(tmp_path)) == ["dir"]
    assert (target / "inside").read_bytes() == b"x"
