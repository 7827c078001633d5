"""`microbrain edge run` (placeholder until issue 4 lands; its owner replaces this file)."""

from __future__ import annotations

from microbrain.cli.errors import fail


def run() -> None:
    """Not built yet (issue 4)."""
    fail("'microbrain edge run' is not built yet (issue 4)", code=1)
