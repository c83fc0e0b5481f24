"""Files replaced atomically: key files, client state, receipts, policies.

:func:`write_atomically` writes a temporary file beside the target (named with the
process id, so two writers never share one), flushes it to the disk and renames it
over the target: a crash leaves the old file or the new one, never a mix. A mode
(0600 for secrets) is set on the temporary file before any data is written.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (see the module docstring); OSError on failure."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # a leftover temporary file keeps its old mode otherwise
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
