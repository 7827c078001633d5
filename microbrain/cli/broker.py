"""`microbrain broker config` (placeholder until issue 4 lands; its owner replaces this file)."""

from __future__ import annotations

from microbrain.cli.errors import fail


def config() -> None:
    """Not built yet (issue 4)."""
    fail("'microbrain broker config' is not built yet (issue 4)", code=1)
