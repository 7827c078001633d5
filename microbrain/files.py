"""Writing files that hold secrets."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), from the first byte.

    ``write_text`` then ``chmod`` leaves the secret world-readable (umask 022) until
    the chmod; here the file is created 0600, and an existing file is narrowed to 0600
    before anything is written into it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already exists
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1  # owned by `out` now
            out.write(text)
    finally:
        if fd >= 0:
            os.close(fd)
