"""The client's memory of each log: the last verified checkpoint, per origin.

Layout: ``<state dir>/checkpoints/<hex SHA-256 of the origin>`` holds the
signed checkpoint note exactly as the log served it. It is only ever
written after its signature *and* its consistency with the previous one were
verified (trust on first use, then append-only), and it is replaced
atomically (write a temporary file, fsync, rename), so a crash leaves either
the old or the new checkpoint, never a mix. :class:`FileCheckpointStore` is the
CLI's :class:`~sigledger.client.trust.CheckpointStore`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sigledger.ledger.errors import ConfigError
from sigledger.ledger.service.files import write_atomically


class FileCheckpointStore:
    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir) / "checkpoints"

    def _path(self, origin: str) -> Path:
        return self.dir / hashlib.sha256(origin.encode()).hexdigest()

    def get(self, origin: str) -> bytes | None:
        """The last verified checkpoint note for ``origin``, or None on first use."""
        try:
            return self._path(origin).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read client state {self._path(origin)}: {exc}") from None

    def put(self, origin: str, note: bytes) -> None:
        """Atomically replace the stored checkpoint (call only after verifying it)."""
        path = self._path(origin)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(path, note)
        except OSError as exc:
            raise ConfigError(
                f"cannot write client state {path}: {exc}; set "
                "SIGLEDGER_STATE_DIR to a writable directory"
            ) from None
